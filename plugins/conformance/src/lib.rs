//! The tools, resources and prompts the official MCP conformance suite
//! (`@modelcontextprotocol/conformance`) asks for, served by Moat in
//! tests/tests/all/conformance.rs with `prefix = ""` so that they keep the
//! suite's names. Each returns exactly what its scenario asks for.

use moat_plugin::client::{ClientError, Elicited};
use moat_plugin::prelude::*;
use moat_plugin::serde_json;

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

/// The arguments of `test_sampling`.
#[derive(Deserialize, JsonSchema)]
struct Sampling {
    /// The prompt to send to the model.
    prompt: String,
}

/// The arguments of `test_elicitation`.
#[derive(Deserialize, JsonSchema)]
struct Elicitation {
    /// The message to show the person.
    message: String,
}

fn sampling(args: Sampling) -> Result<String, ClientError> {
    let answer = moat_plugin::client::sample_text(&args.prompt, 100)?;
    Ok(format!("LLM response: {answer}"))
}

/// Asks with `schema` and reports what the person did.
fn elicit(message: &str, schema: serde_json::Value) -> Result<String, ClientError> {
    Ok(match moat_plugin::client::elicit(message, &schema)? {
        Elicited::Accepted(content) => format!("User response: action=accept, content={content}"),
        Elicited::Declined => "User response: action=decline".into(),
        Elicited::Cancelled => "User response: action=cancel".into(),
    })
}

fn elicitation(args: Elicitation) -> Result<String, ClientError> {
    elicit(
        &args.message,
        serde_json::json!({
            "type": "object",
            "properties": {
                "username": { "type": "string", "description": "User's response" },
                "email": { "type": "string", "description": "User's email address" }
            },
            "required": ["username", "email"]
        }),
    )
}

fn elicitation_defaults(_: Nothing) -> Result<String, ClientError> {
    elicit(
        "Test client default value handling - please accept with defaults",
        serde_json::json!({
            "type": "object",
            "properties": {
                "name": { "type": "string", "description": "User name", "default": "John Doe" },
                "age": { "type": "integer", "description": "User age", "default": 30 },
                "score": { "type": "number", "description": "User score", "default": 95.5 },
                "status": {
                    "type": "string",
                    "description": "User status",
                    "enum": ["active", "inactive", "pending"],
                    "default": "active"
                },
                "verified": { "type": "boolean", "description": "Verification status", "default": true }
            }
        }),
    )
}

fn elicitation_enums(_: Nothing) -> Result<String, ClientError> {
    elicit(
        "Choose options",
        serde_json::json!({
            "type": "object",
            "properties": {
                "untitledSingle": { "type": "string", "enum": ["option1", "option2", "option3"] },
                "titledSingle": {
                    "type": "string",
                    "oneOf": [
                        { "const": "value1", "title": "First Option" },
                        { "const": "value2", "title": "Second Option" },
                        { "const": "value3", "title": "Third Option" }
                    ]
                },
                "legacyEnum": {
                    "type": "string",
                    "enum": ["opt1", "opt2", "opt3"],
                    "enumNames": ["Option One", "Option Two", "Option Three"]
                },
                "untitledMulti": {
                    "type": "array",
                    "items": { "type": "string", "enum": ["option1", "option2", "option3"] }
                },
                "titledMulti": {
                    "type": "array",
                    "items": {
                        "anyOf": [
                            { "const": "value1", "title": "First Choice" },
                            { "const": "value2", "title": "Second Choice" },
                            { "const": "value3", "title": "Third Choice" }
                        ]
                    }
                }
            }
        }),
    )
}

moat_plugin::plugin![
    Tool::new(
        "test_sampling",
        "Asks the client's model to answer a prompt (conformance: tools-call-sampling).",
        sampling
    ),
    Tool::new(
        "test_elicitation",
        "Asks the person for a username and email (conformance: tools-call-elicitation).",
        elicitation
    ),
    Tool::new(
        "test_elicitation_sep1034_defaults",
        "Asks with a default for every primitive type (conformance: elicitation-sep1034-defaults).",
        elicitation_defaults
    ),
    Tool::new(
        "test_elicitation_sep1330_enums",
        "Asks with all five kinds of enum (conformance: elicitation-sep1330-enums).",
        elicitation_enums
    ),
    Resource::new("test://static-text", "static-text", |_| {
        Ok("This is the content of the static text resource.")
    })
    .description("A fixed text (conformance: resources-read-text).")
    .mime_type("text/plain"),
    Resource::new("test://static-binary", "static-binary", |_| Ok(
        RED_PIXEL.to_vec()
    ))
    .description("A 1x1 red PNG (conformance: resources-read-binary).")
    .mime_type("image/png"),
    Resource::new("test://watched-resource", "watched-resource", |_| {
        Ok("A resource clients subscribe to.")
    })
    .description("A resource to subscribe to (conformance: resources-subscribe).")
    .mime_type("text/plain"),
    Resource::template("test://template/{id}/data", "template", |_, vars| {
        Ok(serde_json::json!({
            "id": vars["id"],
            "templateTest": true,
            "data": format!("Data for ID: {}", vars["id"]),
        })
        .to_string())
    })
    .description("Data for any ID (conformance: resources-templates-read).")
    .mime_type("application/json")
    .complete("id", |value, _| moat_plugin::starting_with(
        value,
        ["123", "124", "200"]
    )),
    Prompt::new("test_simple_prompt", "A prompt without arguments.", |_| {
        Ok(vec![Message::user("This is a simple prompt for testing.")])
    }),
    Prompt::new(
        "test_prompt_with_arguments",
        "A prompt with two arguments.",
        |args| Ok(vec![Message::user(format!(
            "Prompt with arguments: arg1='{}', arg2='{}'",
            args["arg1"], args["arg2"]
        ))])
    )
    .argument("arg1", "First test argument")
    .argument("arg2", "Second test argument")
    .complete("arg1", |value, _| moat_plugin::starting_with(
        value,
        ["paris", "park", "party", "test", "testing"]
    )),
    Prompt::new(
        "test_prompt_with_embedded_resource",
        "A prompt that embeds a resource.",
        |args| Ok(vec![
            Message::user(Content::Resource {
                uri: args["resourceUri"].clone(),
                mime_type: Some("text/plain".into()),
                body: Body::Text("Embedded resource content for testing.".into()),
            }),
            Message::user("Please process the embedded resource above."),
        ])
    )
    .argument("resourceUri", "URI of the resource to embed"),
    Prompt::new("test_prompt_with_image", "A prompt with an image.", |_| {
        Ok(vec![
            Message::user(red_pixel()),
            Message::user("Please analyze the image above."),
        ])
    }),
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
