//! The stateless answer to a plain `tools/call`, given without rmcp's
//! per-request service (see [`McpHandler::answer_directly`]): the most
//! frequent request of a stateless endpoint, answered as rmcp would answer
//! it. Only a request rmcp would take as it is comes here: its headers
//! (below) and its body ([`super::body::Checked::plain`]) leave rmcp
//! nothing to check, negotiate or refuse; any other goes to rmcp.

use crate::mcp::McpHandler;
use crate::service::{AdmittedCall, Refusal};
use axum::body::Body;
use axum::response::Response;
use http::HeaderMap;
use http::header::{ACCEPT, CONTENT_TYPE};
use rmcp::model::RequestId;

/// The protocol versions a plain call may name in `MCP-Protocol-Version`:
/// rmcp's known versions before 2026-07-28, whose requests need no
/// per-request metadata or standard headers. An absent header is 2025-03-26.
const PLAIN_VERSIONS: &[&str] = &["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

const JSON: &str = "application/json";
const EVENT_STREAM: &str = "text/event-stream";

/// Whether `headers` are ones rmcp's stateless service takes without a
/// question: `Accept` names both media types (without parameters, which
/// rmcp weighs), `Content-Type` is JSON, and the protocol version, if
/// named once, is one of [`PLAIN_VERSIONS`]. Stricter than rmcp where
/// that is simpler: a request this refuses is not refused, it goes to rmcp.
pub fn plain_headers(headers: &HeaderMap) -> bool {
    let (mut json, mut event_stream) = (false, false);
    for value in headers.get_all(ACCEPT) {
        let Ok(value) = value.to_str() else {
            return false;
        };
        if value.contains('"') {
            return false;
        }
        for entry in value.split(',').map(str::trim) {
            json |= entry.eq_ignore_ascii_case(JSON);
            event_stream |= entry.eq_ignore_ascii_case(EVENT_STREAM);
        }
    }
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            let essence = v.split_once(';').map_or(v, |(essence, _)| essence);
            essence.trim().eq_ignore_ascii_case(JSON)
        });
    let mut versions = headers.get_all("mcp-protocol-version").iter();
    let version = match (versions.next(), versions.next()) {
        (None, _) => true,
        (Some(version), None) => PLAIN_VERSIONS.iter().any(|v| version == v),
        (Some(_), Some(_)) => false,
    };
    json && event_stream && content_type && version
}

/// The HTTP response to the plain call `id` that `admission` admitted (or
/// refused), as rmcp's stateless JSON mode sends it; the admission back
/// when the call needs more than a plain answer.
pub async fn answer(
    handler: &McpHandler,
    id: RequestId,
    admission: Result<AdmittedCall, Refusal>,
) -> Result<Response, Result<AdmittedCall, Refusal>> {
    let message = handler.answer_directly(id, admission).await?;
    let body = serde_json::to_vec(&message).expect("a JSON-RPC message serializes");
    Ok(Response::builder()
        .status(http::StatusCode::OK)
        .header(CONTENT_TYPE, JSON)
        .body(Body::from(body))
        .expect("valid response"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::test_headers;

    #[test]
    fn only_headers_rmcp_takes_as_they_are_are_plain() {
        let both = ("accept", "application/json, text/event-stream");
        let json = ("content-type", "application/json");
        let plain = [
            vec![both, json],
            vec![
                ("Accept", "text/event-stream"),
                ("accept", "Application/JSON"),
                ("content-type", "application/json; charset=utf-8"),
            ],
            vec![both, json, ("mcp-protocol-version", "2025-06-18")],
            vec![both, json, ("mcp-protocol-version", "2025-11-25")],
        ];
        for pairs in plain {
            assert!(plain_headers(&test_headers(&pairs)), "{pairs:?}");
        }
        let not_plain = [
            vec![json],
            vec![("accept", "application/json"), json],
            vec![("accept", "*/*"), json],
            vec![("accept", "application/json;q=0, text/event-stream"), json],
            vec![("accept", "application/json, text/event-stream;q=1"), json],
            vec![("accept", "\"application/json\", text/event-stream"), json],
            vec![both],
            vec![both, ("content-type", "text/plain")],
            vec![both, json, ("mcp-protocol-version", "2026-07-28")],
            vec![both, json, ("mcp-protocol-version", "2099-01-01")],
            vec![
                both,
                json,
                ("mcp-protocol-version", "2025-06-18"),
                ("mcp-protocol-version", "2025-06-18"),
            ],
        ];
        for pairs in not_plain {
            assert!(!plain_headers(&test_headers(&pairs)), "{pairs:?}");
        }
    }
}
