//! What a tool returns, and how it becomes MCP content.

use crate::bindings::moat::plugin::types::{CallResult, Content as WitContent, Image};
use schemars::JsonSchema;
use serde::Serialize;
use std::fmt::Display;

/// One item of MCP content.
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
            content: self
                .content
                .into_iter()
                .map(|c| match c {
                    Content::Text(t) => WitContent::Text(t),
                    Content::Image { mime_type, data } => {
                        WitContent::Image(Image { mime_type, data })
                    }
                })
                .collect(),
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
