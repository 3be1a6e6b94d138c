//! Turns malformed request bodies into the JSON-RPC errors the
//! specification prescribes, before they reach the MCP service: invalid
//! JSON is a parse error (-32700), JSON that is not a JSON-RPC 2.0 message
//! is an invalid request (-32600), and an oversized body is 413.

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// The body limit, in bytes, shared with the middleware.
#[derive(Clone, Copy)]
pub struct BodyLimit(pub usize);

/// Middleware: checks a POST body before the MCP service sees it.
pub async fn check_body(State(limit): State<BodyLimit>, request: Request, next: Next) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let bytes = match to_bytes(body, limit.0).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "Payload Too Large: the request body exceeds {} bytes\n",
                    limit.0
                ),
            )
                .into_response();
        }
    };
    let problem = match serde_json::from_slice::<Value>(&bytes) {
        Err(e) => Some((
            -32700,
            format!("Parse error: the body is not valid JSON ({e})"),
        )),
        Ok(value) => jsonrpc_problem(&value).map(|why| (-32600, format!("Invalid Request: {why}"))),
    };
    if let Some((code, message)) = problem {
        let error =
            json!({ "jsonrpc": "2.0", "id": null, "error": { "code": code, "message": message } });
        return (StatusCode::BAD_REQUEST, axum::Json(error)).into_response();
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// Why `value` is not one JSON-RPC 2.0 message, if it is not.
fn jsonrpc_problem(value: &Value) -> Option<&'static str> {
    let Some(message) = value.as_object() else {
        return Some(if value.is_array() {
            "batches are not supported; send one JSON-RPC message per request"
        } else {
            "the body must be a JSON-RPC 2.0 message (a JSON object)"
        });
    };
    if message.get("jsonrpc") != Some(&Value::from("2.0")) {
        return Some("`jsonrpc` must be \"2.0\"");
    }
    let is_call = message.get("method").is_some_and(Value::is_string);
    let is_reply = message.contains_key("result") || message.contains_key("error");
    if !is_call && !is_reply {
        return Some("a message needs a string `method`, or a `result` or `error`");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_single_jsonrpc_messages_pass() {
        let ok = [
            json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list" }),
            json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }),
            json!({ "jsonrpc": "2.0", "id": 1, "result": {} }),
        ];
        for value in ok {
            assert_eq!(jsonrpc_problem(&value), None, "{value}");
        }
        let bad = [
            json!([{ "jsonrpc": "2.0", "id": 1, "method": "tools/list" }]),
            json!("tools/list"),
            json!({ "id": 1, "method": "tools/list" }),
            json!({ "jsonrpc": "1.0", "id": 1, "method": "tools/list" }),
            json!({ "jsonrpc": "2.0", "id": 1, "method": 7 }),
            json!({ "jsonrpc": "2.0", "id": 1 }),
        ];
        for value in bad {
            assert!(jsonrpc_problem(&value).is_some(), "{value}");
        }
    }
}
