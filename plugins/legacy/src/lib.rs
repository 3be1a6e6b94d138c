//! A plugin built against `moat:plugin@0.1.0` with wit-bindgen alone, as
//! plugins were before 0.2.0: tests/tests/all/compat.rs checks that Moat
//! still loads and serves it unchanged.

wit_bindgen::generate!({
    path: "../../wit/v0.1.0",
    world: "plugin",
});

use exports::moat::plugin::tools::{CallError, CallResult, Guest, Tool};
use moat::plugin::log::{Level, log};
use moat::plugin::types::{Annotations, Content, Image};

struct Legacy;

impl Guest for Legacy {
    fn describe() -> Vec<Tool> {
        vec![Tool {
            name: "shout".into(),
            title: None,
            description: "Says the text louder, with a picture.".into(),
            input_schema:
                r#"{"type":"object","properties":{"text":{"type":"string"}},"required":["text"]}"#
                    .into(),
            output_schema: None,
            annotations: Annotations {
                read_only: Some(true),
                destructive: None,
                idempotent: None,
                open_world: None,
            },
        }]
    }

    fn call(name: String, arguments: String) -> Result<CallResult, CallError> {
        if name != "shout" {
            return Err(CallError::UnknownTool(name));
        }
        log(Level::Info, "shouting");
        // The arguments were checked against the schema: one string field.
        let text = arguments
            .split("\"text\":")
            .nth(1)
            .and_then(|rest| rest.trim().strip_prefix('"'))
            .and_then(|rest| rest.split('"').next())
            .ok_or_else(|| CallError::InvalidArguments("text is missing".into()))?;
        Ok(CallResult {
            content: vec![
                Content::Text(text.to_uppercase()),
                Content::Image(Image {
                    mime_type: "image/gif".into(),
                    data: b"GIF89a".to_vec(),
                }),
            ],
            structured: None,
            is_error: false,
        })
    }
}

export!(Legacy);
