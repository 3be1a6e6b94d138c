//! The host's content items as MCP content blocks.

use crate::tool::{Content, ContentAnnotations, ContentKind, ResourceBody, Role};
use base64::Engine as _;
use rmcp::model::{Annotations, ContentBlock, Resource, ResourceContents};

fn base64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// `item` as an MCP content block.
pub(super) fn block(item: Content) -> ContentBlock {
    let annotations = item.annotations.map(annotations);
    match item.kind {
        ContentKind::Text(text) => {
            let mut block = rmcp::model::TextContent::new(text);
            block.annotations = annotations;
            ContentBlock::Text(block)
        }
        ContentKind::Image { mime_type, data } => {
            let mut block = rmcp::model::ImageContent::new(base64(&data), mime_type);
            block.annotations = annotations;
            ContentBlock::Image(block)
        }
        ContentKind::Audio { mime_type, data } => {
            let mut block = rmcp::model::AudioContent::new(base64(&data), mime_type);
            block.annotations = annotations;
            ContentBlock::Audio(block)
        }
        ContentKind::ResourceLink(link) => {
            let mut resource = Resource::new(link.uri, link.name);
            resource.title = link.title;
            resource.description = link.description;
            resource.mime_type = link.mime_type;
            resource.size = link.size;
            resource.annotations = annotations;
            ContentBlock::ResourceLink(resource)
        }
        ContentKind::Resource {
            uri,
            mime_type,
            body,
        } => {
            let contents = match body {
                ResourceBody::Text(text) => ResourceContents::TextResourceContents {
                    uri,
                    mime_type,
                    text,
                    meta: None,
                },
                ResourceBody::Blob(bytes) => ResourceContents::BlobResourceContents {
                    uri,
                    mime_type,
                    blob: base64(&bytes),
                    meta: None,
                },
            };
            let mut block = rmcp::model::EmbeddedResource::new(contents);
            block.annotations = annotations;
            ContentBlock::Resource(block)
        }
    }
}

fn annotations(a: ContentAnnotations) -> Annotations {
    let mut out = Annotations::default();
    out.audience = (!a.audience.is_empty()).then(|| {
        a.audience
            .into_iter()
            .map(|r| match r {
                Role::User => rmcp::model::Role::User,
                Role::Assistant => rmcp::model::Role::Assistant,
            })
            .collect()
    });
    // The schema's range; a value outside it would make strict clients
    // refuse the whole result.
    out.priority = a
        .priority
        .filter(|p| p.is_finite())
        .map(|p| p.clamp(0.0, 1.0));
    out.last_modified = a.last_modified;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_stay_within_the_schema() {
        for (given, sent) in [
            (Some(f32::NAN), None),
            (Some(f32::INFINITY), None),
            (Some(5.0), Some(1.0)),
            (Some(-1.0), Some(0.0)),
            (Some(0.5), Some(0.5)),
        ] {
            let a = annotations(ContentAnnotations {
                audience: Vec::new(),
                priority: given,
                last_modified: None,
            });
            assert_eq!(a.priority, sent, "{given:?}");
            assert!(a.audience.is_none());
        }
    }
}
