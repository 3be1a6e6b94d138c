//! Tools and their results as the host sees them: plain data shaped like
//! MCP's, independent of wasmtime and of any transport.

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

/// One item of MCP content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// Text.
    Text(String),
    /// An image.
    Image {
        /// MIME type, such as `image/png`.
        mime_type: String,
        /// Raw bytes.
        data: Vec<u8>,
    },
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
            content: vec![Content::Text(text.into())],
            structured: None,
            is_error,
        }
    }

    /// The text of all text content, joined by newlines.
    pub fn joined_text(&self) -> String {
        let texts: Vec<&str> = self
            .content
            .iter()
            .filter_map(|c| match c {
                Content::Text(t) => Some(t.as_str()),
                Content::Image { .. } => None,
            })
            .collect();
        texts.join("\n")
    }
}
