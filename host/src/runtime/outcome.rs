//! How a call ended, named: traps, limits and the deadline become
//! [`CallError`] kinds, and a plugin's result is checked against the
//! output cap and converted.

use super::bindings::moat::plugin::types::{
    CallResult, Content as WitContent, ContentAnnotations, ContentKind as WitKind, ResourceBody,
    Role as WitRole,
};
use super::capture::printable;
use super::error::{CallError, NotGranted};
use super::state::{CallState, truncate};
use crate::capabilities::Limits;
use crate::capabilities::fs::writes::WriteLimit;
use crate::capabilities::limits::DeadlineExceeded;
use crate::tool::{self, Content, ContentKind, ToolOutput};
use wasmtime::Trap;
use wasmtime::component::ResourceTableError;

/// Sends what the guest wrote to stdout and stderr to the host's log, and
/// returns stderr (where a Rust panic leaves its message).
pub(super) fn log_captured(state: &CallState) -> String {
    let plugin = &*state.plugin;
    let (out, out_dropped) = state.stdout.take();
    let (err, err_dropped) = state.stderr.take();
    for line in out.lines() {
        let line = printable(line);
        tracing::debug!(target: "moat::plugin", plugin, stream = "stdout", "{line}");
    }
    for line in err.lines() {
        let line = printable(line);
        tracing::debug!(target: "moat::plugin", plugin, stream = "stderr", "{line}");
    }
    if out_dropped + err_dropped > 0 {
        tracing::debug!(target: "moat::plugin", plugin, dropped = out_dropped + err_dropped, "plugin output over the capture limit was dropped");
    }
    err
}

pub(super) fn classify(
    e: &wasmtime::Error,
    limits: &Limits,
    memory_hit: bool,
    stderr: &str,
) -> CallError {
    if let Some(large) = e.downcast_ref::<super::generic::ResultTooLarge>() {
        return CallError::OutputTooLarge {
            size: large.size,
            limit: limits.max_output_bytes,
        };
    }
    if e.downcast_ref::<DeadlineExceeded>().is_some() {
        return CallError::TimedOut {
            limit: limits.timeout,
        };
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => CallError::OutOfFuel {
            budget: limits.fuel,
        },
        Some(Trap::StackOverflow) => CallError::StackOverflow,
        Some(Trap::Interrupt) => CallError::TimedOut {
            limit: limits.timeout,
        },
        // A refused memory.grow usually ends in an abort: name the cause.
        _ if memory_hit => CallError::MemoryLimit {
            limit: limits.memory_bytes,
        },
        Some(trap) => match panic_message(stderr) {
            Some(message) => CallError::Trap(format!("panicked: {message}")),
            // Languages that keep a stack in linear memory (Rust, C) overflow
            // it with an out-of-bounds access, not a wasm stack overflow.
            None if *trap == Trap::MemoryOutOfBounds => CallError::Trap(format!(
                "{trap} (a stack overflow in the plugin's own stack also ends this way)"
            )),
            None => CallError::Trap(trap.to_string()),
        },
        None => host_refusal(e, limits),
    }
}

/// Names an error a host function returned to end the call: the plugin
/// exited, held too many handles, used a function it was not granted, or
/// asked for more than the host gives (such as too many random bytes).
fn host_refusal(e: &wasmtime::Error, limits: &Limits) -> CallError {
    let mut chain = e.chain();
    if let Some(exit) = chain.find_map(|c| c.downcast_ref::<wasmtime_wasi::I32Exit>()) {
        return CallError::Exited(exit.0);
    }
    if e.chain().any(|c| {
        matches!(
            c.downcast_ref::<ResourceTableError>(),
            Some(ResourceTableError::Full)
        )
    }) {
        return CallError::HandleLimit {
            limit: limits.max_handles,
        };
    }
    if let Some(limit) = e.chain().find_map(|c| c.downcast_ref::<WriteLimit>()) {
        return CallError::WriteLimit { limit: limit.limit };
    }
    if let Some(denied) = e.chain().find_map(|c| c.downcast_ref::<NotGranted>()) {
        let what = match denied.0.starts_with("wasi:http/") {
            true => format!("{} (outbound HTTP; grant allow_hosts)", denied.0),
            false => denied.0.clone(),
        };
        return CallError::NotGranted(what);
    }
    let cause = e.root_cause().to_string();
    // wasmtime's refusal to lift more than the store's hostcall fuel.
    if cause.contains("fuel allocated for hostcalls") {
        return CallError::HostRefused(format!(
            "the plugin handed the host more data at once than a call may: reading it would take over {} MiB of host memory (the call's memory_mib, or what an output of at most {} bytes needs)",
            limits.hostcall_bytes() >> 20,
            limits.max_output_bytes
        ));
    }
    CallError::HostRefused(printable(truncate(&cause, 1024)).into_owned())
}

/// The message of a Rust panic printed to stderr, if there is one.
fn panic_message(stderr: &str) -> Option<String> {
    let start = stderr.find("panicked at ")?;
    let rest = &stderr[start + "panicked at ".len()..];
    let end = rest.find("\nnote:").unwrap_or(rest.len());
    let message = rest[..end].trim().replace('\n', " ");
    Some(truncate(&message, 1024).to_string())
}

/// How many times longer JSON can become when parsed and written again
/// (a number in exponent form written out in full), with room to spare.
const MAX_JSON_GROWTH: usize = 5;

/// Bytes a JSON string adds beyond its escaped text: `{"type":"text","text":""},`.
const TEXT_ITEM_BYTES: usize = 26;
/// `{"type":"image","data":"","mimeType":""},`.
const IMAGE_ITEM_BYTES: usize = 41;
/// At least the framing of any other item (audio, a resource link, an
/// embedded resource) with every optional field present: its size is
/// bounded from above, not reproduced.
const OTHER_ITEM_BYTES: usize = 160;
/// At least the framing of annotations with every field present, beside
/// the roles and the timestamp's text.
const ANNOTATION_BYTES: usize = 96;
/// At least one role of an audience, quoted, with its comma.
const ROLE_BYTES: usize = 12;

/// The length of `text` as the body of a JSON string (escapes included).
/// Every result is measured, and a tool's text can be megabytes: each
/// kind of escape is counted in a pass of its own, a loop of compares the
/// compiler turns into vector instructions (one pass with a `match` per
/// byte is not vectorised).
fn json_len(text: &str) -> usize {
    let bytes = text.as_bytes();
    // Summed in `u8`s per block of 255 bytes, so that a vector holds 16
    // of them (a `usize` count would widen every byte to 64 bits).
    let count = |escaped: fn(u8) -> bool| -> usize {
        bytes
            .chunks(255)
            .map(|block| block.iter().fold(0u8, |n, &b| n + escaped(b) as u8) as usize)
            .sum()
    };
    // `"` and `\` take one more byte, control characters five (`\u00XX`)
    // but four fewer for those with a short escape (`\n`).
    let quoted = count(|b| b == b'"' || b == b'\\');
    let controls = count(|b| b < 0x20);
    let short = count(|b| matches!(b, b'\n' | b'\r' | b'\t' | 0x08 | 0x0c));
    bytes.len() + quoted + 5 * controls - 4 * short
}

/// Base64 of `n` bytes.
fn base64_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

fn opt_len(text: &Option<String>) -> usize {
    text.as_deref().map_or(0, json_len)
}

/// The bytes one item takes in the response: text and images exactly,
/// the other kinds and annotations bounded from above.
fn item_size(item: &WitContent) -> usize {
    let kind = match &item.kind {
        WitKind::Text(t) => TEXT_ITEM_BYTES + json_len(t),
        WitKind::Image(i) => IMAGE_ITEM_BYTES + base64_len(i.data.len()) + json_len(&i.mime_type),
        WitKind::Audio(a) => OTHER_ITEM_BYTES + base64_len(a.data.len()) + json_len(&a.mime_type),
        WitKind::ResourceLink(l) => {
            OTHER_ITEM_BYTES
                + json_len(&l.uri)
                + json_len(&l.name)
                + opt_len(&l.title)
                + opt_len(&l.description)
                + opt_len(&l.mime_type)
                + 20
        }
        WitKind::Resource(r) => {
            OTHER_ITEM_BYTES
                + json_len(&r.uri)
                + opt_len(&r.mime_type)
                + match &r.body {
                    ResourceBody::Text(t) => json_len(t),
                    ResourceBody::Blob(b) => base64_len(b.len()),
                }
        }
    };
    kind + item.annotations.as_ref().map_or(0, |a| {
        ANNOTATION_BYTES + a.audience.len() * ROLE_BYTES + opt_len(&a.last_modified)
    })
}

/// The bytes the result takes in the response: every item with its JSON
/// framing and escapes, binary data as base64, and the structured content.
/// An empty item costs its framing, so a flood of them meets the cap too.
fn wire_size(result: &CallResult) -> usize {
    let content: usize = result.content.iter().map(item_size).sum();
    content + result.structured.as_ref().map_or(0, String::len)
}

/// One item as the host keeps it.
fn content(item: WitContent) -> Content {
    let kind = match item.kind {
        WitKind::Text(t) => ContentKind::Text(t),
        WitKind::Image(i) => ContentKind::Image {
            mime_type: i.mime_type,
            data: i.data,
        },
        WitKind::Audio(a) => ContentKind::Audio {
            mime_type: a.mime_type,
            data: a.data,
        },
        WitKind::ResourceLink(l) => ContentKind::ResourceLink(tool::ResourceLink {
            uri: l.uri,
            name: l.name,
            title: l.title,
            description: l.description,
            mime_type: l.mime_type,
            size: l.size,
        }),
        WitKind::Resource(r) => ContentKind::Resource {
            uri: r.uri,
            mime_type: r.mime_type,
            body: match r.body {
                ResourceBody::Text(t) => tool::ResourceBody::Text(t),
                ResourceBody::Blob(b) => tool::ResourceBody::Blob(b),
            },
        },
    };
    Content {
        kind,
        annotations: item.annotations.map(annotations),
    }
}

fn annotations(a: ContentAnnotations) -> tool::ContentAnnotations {
    tool::ContentAnnotations {
        audience: a
            .audience
            .into_iter()
            .map(|r| match r {
                WitRole::User => tool::Role::User,
                WitRole::Assistant => tool::Role::Assistant,
            })
            .collect(),
        priority: a.priority,
        last_modified: a.last_modified,
    }
}

/// Converts the plugin's result, enforcing the output cap; also returns
/// the result's size in bytes (see [`wire_size`]).
pub(super) fn convert(
    result: CallResult,
    limits: &Limits,
) -> Result<(ToolOutput, usize), CallError> {
    let size = wire_size(&result);
    if size > limits.max_output_bytes {
        return Err(CallError::OutputTooLarge {
            size,
            limit: limits.max_output_bytes,
        });
    }
    let raw_structured = result.structured.as_ref().map_or(0, String::len);
    let structured: Option<serde_json::Value> = match result.structured {
        None => None,
        Some(json) => Some(serde_json::from_str(&json).map_err(|e| {
            CallError::Tool(format!(
                "the plugin returned structured content that is not JSON: {e}"
            ))
        })?),
    };
    // Written again, JSON can grow (`1e15` becomes `1000000000000000.0`,
    // 4.5 times its length; strings never grow): the cap is on what goes
    // out. Measured only when that growth could pass the cap, so the
    // usual result is not serialized twice.
    let could_pass = size - raw_structured + raw_structured.saturating_mul(MAX_JSON_GROWTH)
        > limits.max_output_bytes;
    let size = match &structured {
        Some(value) if could_pass => {
            let written = serde_json::to_string(value).map_or(usize::MAX, |t| t.len());
            let size = size - raw_structured + written;
            if size > limits.max_output_bytes {
                return Err(CallError::OutputTooLarge {
                    size,
                    limit: limits.max_output_bytes,
                });
            }
            size
        }
        _ => size,
    };
    let output = ToolOutput {
        content: result.content.into_iter().map(content).collect(),
        structured,
        is_error: result.is_error,
    };
    Ok((output, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_measures_what_serde_json_writes() {
        let alphabet: Vec<char> = (0u8..0x80)
            .map(char::from)
            .chain(['é', '€', '😀'])
            .collect();
        for len in 0..=200 {
            for offset in [0, 7, 31, 64] {
                let text: String = (0..len)
                    .map(|i| alphabet[(i * 13 + offset) % alphabet.len()])
                    .collect();
                let written = serde_json::to_string(&text).unwrap().len() - 2;
                assert_eq!(json_len(&text), written, "{text:?}");
            }
        }
        // The most a block can add: 32 control characters of 6 bytes.
        assert_eq!(json_len(&"\u{1}".repeat(64)), 6 * 64);
        assert_eq!(json_len(&"\"\\\n\u{1}".repeat(1000)), 12 * 1000);
    }

    #[test]
    fn the_output_size_is_what_the_response_carries() {
        let item = |kind: WitKind| WitContent {
            kind,
            annotations: None,
        };
        let text = |t: &str| item(WitKind::Text(t.to_string()));
        let result = |content: Vec<WitContent>, structured: Option<&str>| CallResult {
            content,
            structured: structured.map(str::to_string),
            is_error: false,
        };
        for (content, structured) in [
            (vec![text("hello")], None),
            (
                vec![text(""), text("a\"b\\c\nd\u{1}"), text("ünï")],
                Some(r#"{"a":1}"#),
            ),
            (
                vec![item(WitKind::Image(
                    super::super::bindings::moat::plugin::types::Image {
                        mime_type: "image/png".into(),
                        data: vec![7; 10],
                    },
                ))],
                None,
            ),
        ] {
            let r = result(content, structured);
            let items: Vec<serde_json::Value> = r
                .content
                .iter()
                .map(|c| match &c.kind {
                    WitKind::Text(t) => serde_json::json!({ "type": "text", "text": t }),
                    WitKind::Image(i) => serde_json::json!({
                        "type": "image",
                        "data": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &i.data),
                        "mimeType": i.mime_type,
                    }),
                    _ => unreachable!("only text and images are measured exactly"),
                })
                .collect();
            // Each item's JSON plus its comma, and the structured text.
            let expected: usize = items.iter().map(|i| i.to_string().len() + 1).sum::<usize>()
                + r.structured.as_ref().map_or(0, String::len);
            assert_eq!(wire_size(&r), expected);
        }
    }

    #[test]
    fn other_kinds_and_annotations_are_bounded_from_above() {
        use super::super::bindings::moat::plugin::types::{Audio, EmbeddedResource, ResourceLink};
        let long = "x\"y".repeat(300);
        let annotations = ContentAnnotations {
            audience: vec![WitRole::User, WitRole::Assistant],
            priority: Some(0.123_456_79),
            last_modified: Some("2026-12-02T01:02:03.456789+00:00".into()),
        };
        let items = [
            WitKind::Audio(Audio {
                mime_type: long.clone(),
                data: vec![1; 1000],
            }),
            WitKind::ResourceLink(ResourceLink {
                uri: long.clone(),
                name: long.clone(),
                title: Some(long.clone()),
                description: Some(long.clone()),
                mime_type: Some(long.clone()),
                size: Some(u64::MAX),
            }),
            WitKind::Resource(EmbeddedResource {
                uri: long.clone(),
                mime_type: Some(long.clone()),
                body: ResourceBody::Text(long.clone()),
            }),
            WitKind::Resource(EmbeddedResource {
                uri: long.clone(),
                mime_type: None,
                body: ResourceBody::Blob(vec![0; 1001]),
            }),
        ];
        for kind in items {
            let item = WitContent {
                kind,
                annotations: Some(annotations.clone()),
            };
            let bound = item_size(&item);
            // The JSON MCP carries for it, as rmcp writes it.
            let converted = content(item);
            let json = serde_json::to_string(&crate::mcp::content_json(converted)).unwrap();
            assert!(json.len() < bound, "{} > {bound}: {json}", json.len() + 1);
        }
    }

    #[test]
    fn structured_content_is_measured_as_it_goes_out() {
        // 5 bytes each as the plugin wrote them, 18 as JSON writes them.
        let numbers = format!("[{}]", vec!["1e15"; 1000].join(","));
        let result = CallResult {
            content: Vec::new(),
            structured: Some(numbers.clone()),
            is_error: false,
        };
        let limits = Limits {
            max_output_bytes: numbers.len() * 2,
            ..Limits::default()
        };
        assert!(matches!(
            convert(result, &limits),
            Err(CallError::OutputTooLarge { size, .. }) if size > numbers.len() * 3
        ));
    }

    #[test]
    fn panic_message_is_extracted() {
        let stderr = "\nthread '<unnamed>' panicked at testbed/src/lib.rs:62:5:\nboom\nnote: run with `RUST_BACKTRACE=1`\n";
        assert_eq!(
            panic_message(stderr).as_deref(),
            Some("testbed/src/lib.rs:62:5: boom")
        );
        assert_eq!(panic_message("just output"), None);
    }
}
