//! The stateless answer to a plain `tools/call`, given without rmcp's
//! per-request service (see [`McpHandler::answer_directly`]): the most
//! frequent request of a stateless endpoint, answered as rmcp would answer
//! it. Only a request rmcp would take as it is comes here: its headers
//! (below) and its body ([`super::body::Checked::plain`]) leave rmcp
//! nothing to check, negotiate or refuse; any other goes to rmcp.

use crate::mcp::McpHandler;
use crate::service::{AdmittedCall, Refusal};
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use http::Uri;
use http::header::{ACCEPT, CONTENT_TYPE, HOST, ORIGIN};
use http::uri::Authority;
use rmcp::model::RequestId;
use tokio_util::sync::CancellationToken;

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
    json && event_stream && content_type && version && plain_authorities(headers)
}

/// Whether `Host` (once) and `Origin` (at most once) name their hosts in
/// the one form on which Moat's rebinding check ([`super::rebinding`])
/// and rmcp's agree: an authority and an origin as the `http` crate parses
/// them, without a trailing dot (Moat's check drops it, rmcp's does not).
/// Anything else, such as a bare IPv6 `Host`, goes to rmcp to be judged.
fn plain_authorities(headers: &HeaderMap) -> bool {
    let only = |name| {
        let mut values = headers.get_all(name).iter();
        match (values.next(), values.next()) {
            (one, None) => Ok(one.and_then(|v| v.to_str().ok())),
            _ => Err(()),
        }
    };
    let plain = |authority: Option<&Authority>| authority.is_some_and(|a| !a.host().ends_with('.'));
    let host = match only(HOST) {
        Ok(Some(host)) => Authority::try_from(host).ok(),
        _ => return false,
    };
    let origin = match only(ORIGIN) {
        Ok(None) => true,
        Ok(Some(origin)) => Uri::try_from(origin)
            .ok()
            .is_some_and(|uri| uri.scheme().is_some() && plain(uri.authority())),
        Err(()) => false,
    };
    plain(host.as_ref()) && origin
}

/// What answers the plain calls of one endpoint.
#[derive(Clone)]
pub struct Direct {
    handler: McpHandler,
    /// Cancelled when shutdown's grace period is over.
    closing: CancellationToken,
}

impl Direct {
    /// Plain calls answered by `handler`, until `closing` is cancelled.
    pub fn new(handler: McpHandler, closing: CancellationToken) -> Direct {
        Direct { handler, closing }
    }

    /// The HTTP response to the plain call `id` that `admission` admitted
    /// (or refused), as rmcp's stateless JSON mode sends it; the admission
    /// back when the call needs more than a plain answer. A call still
    /// running when shutdown's grace period is over is answered 503 (as
    /// rmcp ends its own then); it goes on until the process exits.
    pub async fn answer(
        &self,
        id: RequestId,
        admission: Result<AdmittedCall, Refusal>,
    ) -> Result<Response, Result<AdmittedCall, Refusal>> {
        let message = tokio::select! {
            message = self.handler.answer_directly(id, admission) => message?,
            () = self.closing.cancelled() => {
                return Ok((
                    http::StatusCode::SERVICE_UNAVAILABLE,
                    "Service Unavailable: the server is shutting down, and the call did not \
                     finish within its grace period\n",
                )
                    .into_response());
            }
        };
        let body = serde_json::to_vec(&message).expect("a JSON-RPC message serializes");
        Ok(Response::builder()
            .status(http::StatusCode::OK)
            .header(CONTENT_TYPE, JSON)
            .body(Body::from(body))
            .expect("valid response"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::test_headers;

    #[test]
    fn only_headers_rmcp_takes_as_they_are_are_plain() {
        let both = ("accept", "application/json, text/event-stream");
        let json = ("content-type", "application/json");
        let host = ("host", "localhost:8080");
        let plain = [
            vec![host, both, json],
            vec![
                host,
                ("Accept", "text/event-stream"),
                ("accept", "Application/JSON"),
                ("content-type", "application/json; charset=utf-8"),
            ],
            vec![host, both, json, ("mcp-protocol-version", "2025-06-18")],
            vec![host, both, json, ("mcp-protocol-version", "2025-11-25")],
            vec![("host", "[::1]:80"), both, json],
            vec![host, both, json, ("origin", "http://localhost:5173")],
        ];
        for pairs in plain {
            assert!(plain_headers(&test_headers(&pairs)), "{pairs:?}");
        }
        let not_plain = [
            vec![both, json],
            vec![("host", "localhost.:8080"), both, json],
            vec![("host", "::1"), both, json],
            vec![("host", "a b"), both, json],
            vec![host, host, both, json],
            vec![host, both, json, ("origin", "http://localhost.:5173")],
            vec![host, both, json, ("origin", "null")],
            vec![host, both, json, ("origin", " http://localhost:5173")],
            vec![
                host,
                both,
                json,
                ("origin", "http://localhost:5173"),
                ("origin", "http://localhost:5173"),
            ],
            vec![host, json],
            vec![host, ("accept", "application/json"), json],
            vec![host, ("accept", "*/*"), json],
            vec![
                host,
                ("accept", "application/json;q=0, text/event-stream"),
                json,
            ],
            vec![
                host,
                ("accept", "application/json, text/event-stream;q=1"),
                json,
            ],
            vec![
                host,
                ("accept", "\"application/json\", text/event-stream"),
                json,
            ],
            vec![host, both],
            vec![host, both, ("content-type", "text/plain")],
            vec![host, both, json, ("mcp-protocol-version", "2026-07-28")],
            vec![host, both, json, ("mcp-protocol-version", "2099-01-01")],
            vec![
                host,
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
