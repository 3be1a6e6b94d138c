//! Tools and their results as the host sees them: plain data shaped like
//! MCP's, independent of wasmtime and of any transport.

pub mod template;

use serde::Serialize;
use serde_json::{Map, Value};

/// One tool of a loaded plugin, as described by the plugin at load.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolInfo {
    /// The plugin's own name for it (MCP lists `<plugin>.<name>`).
    pub name: String,
    /// Human-readable title.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// What the tool does.
    pub description: String,
    /// JSON Schema of the arguments object.
    pub input_schema: Map<String, Value>,
    /// JSON Schema of structured results, if declared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<Map<String, Value>>,
    /// MCP annotations (hints only).
    pub annotations: Annotations,
}

/// MCP tool annotations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Annotations {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_only_hint: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destructive_hint: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotent_hint: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_world_hint: Option<bool>,
}

/// One item of MCP content, with the annotations the plugin gave it.
#[derive(Debug, Clone, PartialEq)]
pub struct Content {
    /// What it is.
    pub kind: ContentKind,
    /// Hints for clients (audience, priority, last change).
    pub annotations: Option<ContentAnnotations>,
}

impl Content {
    /// Text without annotations.
    pub fn text(text: impl Into<String>) -> Content {
        Content {
            kind: ContentKind::Text(text.into()),
            annotations: None,
        }
    }
}

/// The kinds of MCP content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContentKind {
    /// Text.
    Text(String),
    /// An image.
    Image {
        /// MIME type, such as `image/png`.
        mime_type: String,
        /// Raw bytes.
        data: Vec<u8>,
    },
    /// Sound.
    Audio {
        /// MIME type, such as `audio/wav`.
        mime_type: String,
        /// Raw bytes.
        data: Vec<u8>,
    },
    /// A pointer to a resource.
    ResourceLink(ResourceLink),
    /// A resource's contents, inline.
    Resource {
        /// Its URI.
        uri: String,
        /// Its MIME type.
        mime_type: Option<String>,
        /// Its contents.
        body: ResourceBody,
    },
}

/// A pointer to a resource the client may fetch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
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

/// What an embedded resource holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceBody {
    /// Text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

/// Who content is meant for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The person.
    User,
    /// The model.
    Assistant,
}

/// MCP content annotations.
#[derive(Debug, Clone, PartialEq)]
pub struct ContentAnnotations {
    /// Who the content is for; empty: not said.
    pub audience: Vec<Role>,
    /// Importance from 0 to 1.
    pub priority: Option<f32>,
    /// When it last changed (ISO 8601).
    pub last_modified: Option<String>,
}

/// What a call that ran to completion returned.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutput {
    /// Unstructured content.
    pub content: Vec<Content>,
    /// Structured content, a JSON value.
    pub structured: Option<Value>,
    /// The tool reports failure.
    pub is_error: bool,
}

impl ToolOutput {
    /// A result holding one text and the error flag.
    pub fn text(text: impl Into<String>, is_error: bool) -> Self {
        ToolOutput {
            content: vec![Content::text(text)],
            structured: None,
            is_error,
        }
    }

    /// The text of all text content, joined by newlines.
    pub fn joined_text(&self) -> String {
        let texts: Vec<&str> = self
            .content
            .iter()
            .filter_map(|c| match &c.kind {
                ContentKind::Text(t) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        texts.join("\n")
    }
}

/// A family of resources whose URIs fit a template, as its plugin listed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TemplateInfo {
    /// An RFC 6570 template, such as `notes://{folder}/{name}`.
    pub uri_template: String,
    /// Its programmatic name.
    pub name: String,
    /// A human-readable title.
    pub title: Option<String>,
    /// What the resources are.
    pub description: Option<String>,
    /// Their MIME type.
    pub mime_type: Option<String>,
}

/// One prompt of a loaded plugin, as described by the plugin at load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PromptInfo {
    /// The plugin's own name for it.
    pub name: String,
    /// A human-readable title.
    pub title: Option<String>,
    /// What it is for.
    pub description: Option<String>,
    /// Its arguments.
    pub arguments: Vec<PromptArgument>,
}

/// One argument of a prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PromptArgument {
    /// Its name.
    pub name: String,
    /// What it is for.
    pub description: Option<String>,
    /// Whether the prompt needs it.
    pub required: bool,
}

/// A prompt, filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptOutput {
    /// What this filled-in prompt is.
    pub description: Option<String>,
    /// Its messages: who says each, and what.
    pub messages: Vec<(Role, Content)>,
}

/// Suggested values for an argument.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Completion {
    /// Best first.
    pub values: Vec<String>,
    /// How many there are in all, if known.
    pub total: Option<u32>,
    /// Whether there are more than `values`.
    pub has_more: bool,
}

/// What a plugin answered to a request other than a tool call.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// A resource's contents: embedded-resource items.
    Read(Vec<Content>),
    /// A prompt, filled in.
    Prompt(PromptOutput),
    /// Completion values.
    Completion(Completion),
}

/// What [`crate::service`] needs to know of an answer to record it.
pub trait Reported {
    /// The plugin reports failure in the answer itself.
    fn is_error(&self) -> bool;
}

impl Reported for ToolOutput {
    fn is_error(&self) -> bool {
        self.is_error
    }
}

impl Reported for Answer {
    fn is_error(&self) -> bool {
        false
    }
}

impl Reported for () {
    fn is_error(&self) -> bool {
        false
    }
}
