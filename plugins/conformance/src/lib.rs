//! The tools the official MCP conformance suite
//! (`@modelcontextprotocol/conformance`) calls, served by Moat in
//! tests/tests/all/conformance.rs with `prefix = ""` so that they keep the
//! suite's names. Each returns exactly what its scenario asks for.

use moat_plugin::prelude::*;

/// A tool without arguments.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Nothing {}

/// The arguments of `json_schema_2020_12_tool`: its schema must keep
/// `$schema`, `$defs.address` and `additionalProperties: false`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Person {
    /// A name.
    name: Option<String>,
    /// Where the person lives.
    address: Option<Address>,
}

/// A postal address (listed under `$defs` as `address`).
#[derive(Deserialize, JsonSchema)]
#[schemars(rename = "address")]
struct Address {
    street: Option<String>,
    city: Option<String>,
}

/// A 1×1 red PNG.
const RED_PIXEL: &[u8] = &[
    137, 80, 78, 71, 13, 10, 26, 10, 0, 0, 0, 13, 73, 72, 68, 82, 0, 0, 0, 1, 0, 0, 0, 1, 8, 2, 0,
    0, 0, 144, 119, 83, 222, 0, 0, 0, 12, 73, 68, 65, 84, 120, 156, 99, 248, 207, 192, 0, 0, 3, 1,
    1, 0, 201, 254, 146, 239, 0, 0, 0, 0, 73, 69, 78, 68, 174, 66, 96, 130,
];

/// A WAV file of eight silent 8-bit samples.
const SILENCE: &[u8] = &[
    82, 73, 70, 70, 44, 0, 0, 0, 87, 65, 86, 69, 102, 109, 116, 32, 16, 0, 0, 0, 1, 0, 1, 0, 64,
    31, 0, 0, 64, 31, 0, 0, 1, 0, 8, 0, 100, 97, 116, 97, 8, 0, 0, 0, 128, 128, 128, 128, 128, 128,
    128, 128,
];

fn items(content: Vec<Content>) -> Output {
    Output {
        content,
        structured: None,
        is_error: false,
    }
}

fn red_pixel() -> Content {
    Content::Image {
        mime_type: "image/png".into(),
        data: RED_PIXEL.to_vec(),
    }
}

fn image(_: Nothing) -> Output {
    items(vec![red_pixel()])
}

fn audio(_: Nothing) -> Output {
    items(vec![Content::Audio {
        mime_type: "audio/wav".into(),
        data: SILENCE.to_vec(),
    }])
}

fn embedded(_: Nothing) -> Output {
    items(vec![Content::Resource {
        uri: "test://embedded-resource".into(),
        mime_type: Some("text/plain".into()),
        body: Body::Text("This is an embedded resource content.".into()),
    }])
}

fn mixed(_: Nothing) -> Output {
    items(vec![
        Content::Text("Multiple content types test:".into()),
        red_pixel(),
        Content::Resource {
            uri: "test://mixed-content-resource".into(),
            mime_type: Some("application/json".into()),
            body: Body::Text(r#"{"test":"data","value":123}"#.into()),
        },
    ])
}

fn with_progress(_: Nothing) -> &'static str {
    for (i, step) in [0.0, 50.0, 100.0].into_iter().enumerate() {
        if i > 0 {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        moat_plugin::progress::report(step, Some(100.0), None);
    }
    "Progress reported: 0, 50 and 100 of 100."
}

fn with_logging(_: Nothing) -> &'static str {
    moat_plugin::log::info("Tool execution started");
    std::thread::sleep(std::time::Duration::from_millis(50));
    moat_plugin::log::info("Tool processing data");
    std::thread::sleep(std::time::Duration::from_millis(50));
    moat_plugin::log::info("Tool execution completed");
    "Logged three messages."
}

moat_plugin::plugin![
    Tool::new(
        "test_tool_with_progress",
        "Reports progress 0, 50 and 100 of 100 (conformance: tools-call-with-progress).",
        with_progress
    )
    .read_only(),
    Tool::new(
        "test_tool_with_logging",
        "Logs three messages at info level (conformance: tools-call-with-logging).",
        with_logging
    )
    .read_only(),
    Tool::new(
        "test_simple_text",
        "Returns a fixed text (conformance: tools-call-simple-text).",
        |_: Nothing| "This is a simple text response for testing."
    )
    .read_only(),
    Tool::new(
        "test_image_content",
        "Returns a 1x1 red PNG (conformance: tools-call-image).",
        image
    )
    .read_only(),
    Tool::new(
        "test_audio_content",
        "Returns a short WAV file (conformance: tools-call-audio).",
        audio
    )
    .read_only(),
    Tool::new(
        "test_embedded_resource",
        "Returns an embedded text resource (conformance: tools-call-embedded-resource).",
        embedded
    )
    .read_only(),
    Tool::new(
        "test_multiple_content_types",
        "Returns text, an image and a resource (conformance: tools-call-mixed-content).",
        mixed
    )
    .read_only(),
    Tool::new(
        "test_error_handling",
        "Always reports an error (conformance: tools-call-error).",
        |_: Nothing| Output::error("This tool intentionally returns an error for testing")
    )
    .read_only(),
    Tool::new(
        "json_schema_2020_12_tool",
        "Tool with JSON Schema 2020-12 features",
        |p: Person| format!(
            "{} at {}",
            p.name.unwrap_or_default(),
            p.address
                .map(|a| format!(
                    "{}, {}",
                    a.street.unwrap_or_default(),
                    a.city.unwrap_or_default()
                ))
                .unwrap_or_default()
        )
    )
    .read_only(),
];
