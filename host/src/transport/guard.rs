//! Turns malformed request bodies into the JSON-RPC errors the
//! specification prescribes, before they reach the MCP service: invalid
//! JSON is a parse error (-32700), JSON that is not one JSON-RPC 2.0
//! message is an invalid request (-32600), and an oversized body is 413.

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::json;

/// Reads the checked body of a POST, or the error response for it.
pub async fn read_body(body: axum::body::Body, limit: usize) -> Result<Bytes, Response> {
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Payload Too Large: the request body exceeds {limit} bytes\n"),
        )
            .into_response()
    })?;
    match problem(&bytes) {
        None => Ok(bytes),
        Some((code, message)) => {
            let error = json!({ "jsonrpc": "2.0", "id": null, "error": { "code": code, "message": message } });
            Err((StatusCode::BAD_REQUEST, axum::Json(error)).into_response())
        }
    }
}

/// The tool a `tools/call` body names, if it is one.
pub fn called_tool(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Call {
        method: String,
        params: Option<Params>,
    }
    #[derive(Deserialize)]
    struct Params {
        name: Option<String>,
    }
    let call: Call = serde_json::from_slice(body).ok()?;
    (call.method == "tools/call").then_some(call.params?.name?)
}

/// The JSON-RPC error code and message for a body that is not one
/// JSON-RPC 2.0 message.
fn problem(bytes: &[u8]) -> Option<(i32, String)> {
    match serde_json::from_slice::<Shape>(bytes) {
        Ok(shape) => shape.problem().map(|why| (-32600, format!("Invalid Request: {why}"))),
        // Not an object of the right shape: tell invalid JSON from valid
        // JSON of another shape.
        Err(e) => Some(match serde_json::from_slice::<IgnoredAny>(bytes) {
            Err(_) => (-32700, format!("Parse error: the body is not valid JSON ({e})")),
            Ok(_) => (
                -32600,
                "Invalid Request: the body must be one JSON-RPC 2.0 message, a JSON object (batches are not supported)".into(),
            ),
        }),
    }
}

/// The members that decide whether an object is a JSON-RPC message,
/// parsed without building a value tree: this runs on every request.
#[derive(Deserialize)]
struct Shape {
    jsonrpc: Option<Version>,
    method: Option<Method>,
    result: Option<IgnoredAny>,
    error: Option<IgnoredAny>,
}

/// Whether a value was the string "2.0".
struct Version(bool);

/// Whether a value was a string.
struct Method(bool);

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Version(serde_json::Value::deserialize(d)? == "2.0"))
    }
}

impl<'de> Deserialize<'de> for Method {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Method(serde_json::Value::deserialize(d)?.is_string()))
    }
}

impl Shape {
    fn problem(&self) -> Option<&'static str> {
        if !self.jsonrpc.as_ref().is_some_and(|v| v.0) {
            return Some("`jsonrpc` must be \"2.0\"");
        }
        let is_call = self.method.as_ref().is_some_and(|m| m.0);
        if !is_call && self.result.is_none() && self.error.is_none() {
            return Some("a message needs a string `method`, or a `result` or `error`");
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_single_jsonrpc_messages_pass() {
        let ok = [
            r#"{ "jsonrpc": "2.0", "id": 1, "method": "tools/list" }"#,
            r#"{ "jsonrpc": "2.0", "method": "notifications/initialized" }"#,
            r#"{ "jsonrpc": "2.0", "id": 1, "result": {} }"#,
        ];
        for body in ok {
            assert_eq!(problem(body.as_bytes()), None, "{body}");
        }
        let bad = [
            (
                r#"[{ "jsonrpc": "2.0", "id": 1, "method": "tools/list" }]"#,
                -32600,
            ),
            (r#""tools/list""#, -32600),
            (r#"{ "id": 1, "method": "tools/list" }"#, -32600),
            (
                r#"{ "jsonrpc": "1.0", "id": 1, "method": "tools/list" }"#,
                -32600,
            ),
            (r#"{ "jsonrpc": "2.0", "id": 1, "method": 7 }"#, -32600),
            (r#"{ "jsonrpc": "2.0", "id": 1 }"#, -32600),
            (r#"{ "jsonrpc": "2.0", "id": 1, "method""#, -32700),
            ("not json", -32700),
        ];
        for (body, code) in bad {
            assert_eq!(problem(body.as_bytes()).map(|p| p.0), Some(code), "{body}");
        }
    }
}
