//! Resources: data a client reads by URI, at a fixed URI or under a
//! template such as `notes://{name}`.

use crate::bindings::moat::plugin::types::{
    Completion, EmbeddedResource, ReadError, ResourceBody, ResourceLink as WitLink,
    ResourceTemplate as WitTemplate,
};
use crate::output::Body;
use crate::prompt::{Completer, Values};
use std::collections::BTreeMap;

/// The variables a URI filled in its template with, by name.
pub type Vars = BTreeMap<String, String>;

type Reader = Box<dyn Fn(&str, &Vars) -> Result<Body, String>>;

/// A resource at a fixed URI, or a family of them under a URI template.
/// Its reader runs in a fresh instance under the plugin's grants, like a
/// tool.
pub struct Resource {
    pub(crate) uri: &'static str,
    name: &'static str,
    title: Option<&'static str>,
    description: Option<&'static str>,
    mime_type: Option<&'static str>,
    reader: Reader,
    pub(crate) completers: Vec<(&'static str, Completer)>,
}

impl Resource {
    /// The resource at `uri`, read by `reader` (which gets the URI).
    pub fn new<B: Into<Body>>(
        uri: &'static str,
        name: &'static str,
        reader: impl Fn(&str) -> Result<B, String> + 'static,
    ) -> Self {
        Resource::build(
            uri,
            name,
            Box::new(move |uri, _| reader(uri).map(Into::into)),
        )
    }

    /// The resources whose URIs fit `template`: `{name}` stands for one or
    /// more characters other than `/`, `?` and `#`, and `reader` gets the
    /// URI and the values of its variables.
    pub fn template<B: Into<Body>>(
        template: &'static str,
        name: &'static str,
        reader: impl Fn(&str, &Vars) -> Result<B, String> + 'static,
    ) -> Self {
        Resource::build(
            template,
            name,
            Box::new(move |uri, vars| reader(uri, vars).map(Into::into)),
        )
    }

    fn build(uri: &'static str, name: &'static str, reader: Reader) -> Self {
        Resource {
            uri,
            name,
            title: None,
            description: None,
            mime_type: None,
            reader,
            completers: Vec::new(),
        }
    }

    /// A human-readable title.
    pub fn title(mut self, title: &'static str) -> Self {
        self.title = Some(title);
        self
    }

    /// What it is.
    pub fn description(mut self, description: &'static str) -> Self {
        self.description = Some(description);
        self
    }

    /// Its MIME type, such as `text/plain`.
    pub fn mime_type(mut self, mime_type: &'static str) -> Self {
        self.mime_type = Some(mime_type);
        self
    }

    /// Suggests values of a template's `variable` as the client types
    /// them: `complete` gets the partial value and the variables already
    /// chosen.
    pub fn complete(
        mut self,
        variable: &'static str,
        complete: impl Fn(&str, &Vars) -> Vec<String> + 'static,
    ) -> Self {
        self.completers.push((variable, Box::new(complete)));
        self
    }

    pub(crate) fn is_template(&self) -> bool {
        self.uri.contains('{')
    }

    pub(crate) fn link(&self) -> WitLink {
        WitLink {
            uri: self.uri.to_string(),
            name: self.name.to_string(),
            title: self.title.map(str::to_string),
            description: self.description.map(str::to_string),
            mime_type: self.mime_type.map(str::to_string),
            size: None,
        }
    }

    pub(crate) fn described_template(&self) -> WitTemplate {
        WitTemplate {
            uri_template: self.uri.to_string(),
            name: self.name.to_string(),
            title: self.title.map(str::to_string),
            description: self.description.map(str::to_string),
            mime_type: self.mime_type.map(str::to_string),
        }
    }

    /// The variables of `uri` if it is this resource's.
    pub(crate) fn fits(&self, uri: &str) -> Option<Vars> {
        if self.is_template() {
            fill(self.uri, uri)
        } else {
            (self.uri == uri).then(Vars::new)
        }
    }

    pub(crate) fn read(&self, uri: &str, vars: &Vars) -> Result<EmbeddedResource, ReadError> {
        let body = (self.reader)(uri, vars).map_err(ReadError::Failed)?;
        Ok(EmbeddedResource {
            uri: uri.to_string(),
            mime_type: self.mime_type.map(str::to_string),
            body: match body {
                Body::Text(t) => ResourceBody::Text(t),
                Body::Blob(b) => ResourceBody::Blob(b),
            },
        })
    }

    pub(crate) fn completion(&self, variable: &str, value: &str, context: &Vars) -> Completion {
        crate::prompt::complete(&self.completers, variable, value, context)
    }
}

/// Matches `uri` against `template`, returning the variables' values.
fn fill(template: &str, uri: &str) -> Option<Vars> {
    let mut vars = Vars::new();
    matches(template, uri, &mut vars).then_some(vars)
}

fn matches(template: &str, uri: &str, vars: &mut Vars) -> bool {
    let Some(open) = template.find('{') else {
        return template == uri;
    };
    let Some(rest) = uri.strip_prefix(&template[..open]) else {
        return false;
    };
    let Some(close) = template[open..].find('}') else {
        return false;
    };
    let name = &template[open + 1..open + close];
    let after = &template[open + close + 1..];
    let span = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    // Shortest value first; the template's next literal decides.
    for end in 1..=span {
        if !rest.is_char_boundary(end) {
            continue;
        }
        if matches(after, &rest[end..], vars) {
            vars.insert(name.to_string(), rest[..end].to_string());
            return true;
        }
    }
    false
}

impl From<&str> for Body {
    fn from(text: &str) -> Body {
        Body::Text(text.to_string())
    }
}

impl From<String> for Body {
    fn from(text: String) -> Body {
        Body::Text(text)
    }
}

impl From<Vec<u8>> for Body {
    fn from(bytes: Vec<u8>) -> Body {
        Body::Blob(bytes)
    }
}

/// Completion values from a list: those that start with `value`.
pub fn starting_with<'a>(value: &str, candidates: impl IntoIterator<Item = &'a str>) -> Values {
    candidates
        .into_iter()
        .filter(|c| c.starts_with(value))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fill_their_variables() {
        let vars = fill("test://template/{id}/data", "test://template/123/data").unwrap();
        assert_eq!(vars["id"], "123");
        let vars = fill("notes://{folder}/{name}.md", "notes://a/b.c.md").unwrap();
        assert_eq!(
            (vars["folder"].as_str(), vars["name"].as_str()),
            ("a", "b.c")
        );
        assert!(fill("test://template/{id}/data", "test://template/1/2/data").is_none());
        assert!(fill("test://template/{id}/data", "test://template//data").is_none());
    }
}
