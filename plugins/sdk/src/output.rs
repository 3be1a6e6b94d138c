//! What a tool returns, and how it becomes MCP content.

use crate::bindings::moat::plugin::types::{
    Audio, CallResult, Content as WitContent, ContentAnnotations, ContentKind, EmbeddedResource,
    Image, ResourceBody, ResourceLink as WitResourceLink, Role,
};
use schemars::JsonSchema;
use serde::Serialize;
use std::fmt::Display;

/// One item of MCP content.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Content {
    /// Text shown to the model.
    Text(String),
    /// An image, for example a PNG.
    Image {
        /// The MIME type, such as `image/png`.
        mime_type: String,
        /// The raw bytes.
        data: Vec<u8>,
    },
    /// Sound, for example a WAV file.
    Audio {
        /// The MIME type, such as `audio/wav`.
        mime_type: String,
        /// The raw bytes.
        data: Vec<u8>,
    },
    /// A pointer to a resource the client may fetch.
    ResourceLink(ResourceLink),
    /// A resource's contents, inline: text, or bytes.
    Resource {
        /// Its URI.
        uri: String,
        /// Its MIME type.
        mime_type: Option<String>,
        /// Its text or bytes.
        body: Body,
    },
    /// Content with hints for the client: who it is for, how important it
    /// is, when it last changed (see [`Content::annotated`]).
    Annotated(Box<Content>, Annotations),
}

/// What an embedded resource holds.
#[derive(Debug, Clone)]
pub enum Body {
    /// Text.
    Text(String),
    /// Bytes (Moat base64-encodes them).
    Blob(Vec<u8>),
}

/// A pointer to a resource.
#[derive(Debug, Clone, Default)]
pub struct ResourceLink {
    /// Its URI.
    pub uri: String,
    /// Its programmatic name.
    pub name: String,
    /// A human-readable title.
    pub title: Option<String>,
    /// What it is.
    pub description: Option<String>,
    /// Its MIME type.
    pub mime_type: Option<String>,
    /// Its size in bytes.
    pub size: Option<u64>,
}

/// MCP content annotations.
#[derive(Debug, Default, Clone)]
pub struct Annotations {
    /// For the person (`user`) and/or the model (`assistant`); empty: not said.
    pub audience: Vec<Audience>,
    /// Importance from 0 (least) to 1 (most); Moat clamps it to that range.
    pub priority: Option<f32>,
    /// When it last changed (ISO 8601).
    pub last_modified: Option<String>,
}

/// Who content is for.
#[derive(Debug, Clone, Copy)]
pub enum Audience {
    /// The person.
    User,
    /// The model.
    Assistant,
}

impl Content {
    /// This content with `annotations` (replacing any it had).
    pub fn annotated(self, annotations: Annotations) -> Content {
        match self {
            Content::Annotated(inner, _) => Content::Annotated(inner, annotations),
            plain => Content::Annotated(Box::new(plain), annotations),
        }
    }

    pub(crate) fn into_wit(self) -> WitContent {
        let kind = match self {
            Content::Annotated(inner, a) => {
                return WitContent {
                    annotations: Some(ContentAnnotations {
                        audience: a
                            .audience
                            .iter()
                            .map(|r| match r {
                                Audience::User => Role::User,
                                Audience::Assistant => Role::Assistant,
                            })
                            .collect(),
                        priority: a.priority,
                        last_modified: a.last_modified,
                    }),
                    ..inner.into_wit()
                };
            }
            Content::Text(t) => ContentKind::Text(t),
            Content::Image { mime_type, data } => ContentKind::Image(Image { mime_type, data }),
            Content::Audio { mime_type, data } => ContentKind::Audio(Audio { mime_type, data }),
            Content::ResourceLink(l) => ContentKind::ResourceLink(WitResourceLink {
                uri: l.uri,
                name: l.name,
                title: l.title,
                description: l.description,
                mime_type: l.mime_type,
                size: l.size,
            }),
            Content::Resource {
                uri,
                mime_type,
                body,
            } => ContentKind::Resource(EmbeddedResource {
                uri,
                mime_type,
                body: match body {
                    Body::Text(text) => ResourceBody::Text(text),
                    Body::Blob(bytes) => ResourceBody::Blob(bytes),
                },
            }),
        };
        WitContent {
            kind,
            annotations: None,
        }
    }
}

/// A complete tool result: content, optional structured JSON, error flag.
pub struct Output {
    /// What the model sees.
    pub content: Vec<Content>,
    /// Structured content, for tools that declare an output schema.
    pub structured: Option<serde_json::Value>,
    /// The tool ran but failed; the content explains why.
    pub is_error: bool,
}

impl Output {
    /// A successful text result.
    pub fn text(text: impl Into<String>) -> Self {
        Output {
            content: vec![Content::Text(text.into())],
            structured: None,
            is_error: false,
        }
    }

    /// A failed result whose text the model sees.
    pub fn error(message: impl Into<String>) -> Self {
        Output {
            is_error: true,
            ..Output::text(message)
        }
    }

    pub(crate) fn into_wit(self) -> CallResult {
        CallResult {
            content: self.content.into_iter().map(Content::into_wit).collect(),
            structured: self
                .structured
                .map(|v| serde_json::to_string(&v).expect("a JSON value always serializes")),
            is_error: self.is_error,
        }
    }
}

/// Structured output: serialized as the result's structured content (and as
/// text, for clients that only read text), with an output schema derived
/// from `T`. `T` must serialize to a JSON object.
pub struct Json<T>(pub T);

/// Anything a tool handler may return.
///
/// `String` and `&str` become text; [`Json`] becomes structured content;
/// [`Output`] is used as is; `Result<T, E>` turns `Err` into an error result
/// carrying `E`'s message.
pub trait IntoOutput {
    /// The schema of the structured content this type produces, if any.
    fn output_schema() -> Option<String> {
        None
    }
    /// Converts into the result.
    fn into_output(self) -> Output;
}

impl IntoOutput for Output {
    fn into_output(self) -> Output {
        self
    }
}

impl IntoOutput for String {
    fn into_output(self) -> Output {
        Output::text(self)
    }
}

impl IntoOutput for &str {
    fn into_output(self) -> Output {
        Output::text(self)
    }
}

impl<T: Serialize + JsonSchema> IntoOutput for Json<T> {
    fn output_schema() -> Option<String> {
        Some(crate::tool::schema_of::<T>())
    }

    fn into_output(self) -> Output {
        match serde_json::to_value(&self.0) {
            Ok(value) => Output {
                content: vec![Content::Text(value.to_string())],
                structured: Some(value),
                is_error: false,
            },
            Err(e) => Output::error(format!("could not serialize the result: {e}")),
        }
    }
}

/// Structured output, like [`Json`], with a text rendering of its own
/// (a table, say) for clients and models that read only text.
pub struct Rendered<T> {
    /// The structured content; must serialize to a JSON object.
    pub value: T,
    /// What text-only readers see instead of the JSON.
    pub text: String,
}

impl<T: Serialize + JsonSchema> IntoOutput for Rendered<T> {
    fn output_schema() -> Option<String> {
        Some(crate::tool::schema_of::<T>())
    }

    fn into_output(self) -> Output {
        match serde_json::to_value(&self.value) {
            Ok(value) => Output {
                content: vec![Content::Text(self.text)],
                structured: Some(value),
                is_error: false,
            },
            Err(e) => Output::error(format!("could not serialize the result: {e}")),
        }
    }
}

impl<T: IntoOutput, E: Display> IntoOutput for Result<T, E> {
    fn output_schema() -> Option<String> {
        T::output_schema()
    }

    fn into_output(self) -> Output {
        match self {
            Ok(v) => v.into_output(),
            Err(e) => Output::error(e.to_string()),
        }
    }
}
