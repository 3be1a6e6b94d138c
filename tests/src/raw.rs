//! MCP requests sent by hand over HTTP, for tests that look at statuses
//! and headers an MCP client library hides.

use serde_json::{Value, json};

/// `initialize` at the 2025-11-25 revision.
pub const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#;

/// A POST to the MCP endpoint `url` with the headers every client sends,
/// and `token` as a bearer token when given.
pub fn post(url: &str, token: Option<&str>) -> reqwest::RequestBuilder {
    let request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    match token {
        Some(t) => request.header("authorization", format!("Bearer {t}")),
        None => request,
    }
}

/// What came back: the status, the headers and the body (JSON when it is
/// JSON, else a string).
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The response headers.
    pub headers: reqwest::header::HeaderMap,
    /// The body.
    pub body: Value,
}

impl Answer {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The text of the result's first content block.
    pub fn text(&self) -> Option<&str> {
        self.body["result"]["content"][0]["text"].as_str()
    }
}

/// A `tools/call` of `tool` with `args`, outside any session (for a
/// stateless endpoint).
pub async fn call_tool(url: &str, token: Option<&str>, tool: &str, args: Value) -> Answer {
    request(
        url,
        token,
        "tools/call",
        json!({ "name": tool, "arguments": args }),
    )
    .await
}

/// A request of `method` with `params`, outside any session (for a
/// stateless endpoint).
pub async fn request(url: &str, token: Option<&str>, method: &str, params: Value) -> Answer {
    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
    let response = post(url, token)
        .header("mcp-protocol-version", "2025-11-25")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    answer(response).await
}

/// Reads `response` whole.
pub async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    Answer {
        status,
        headers,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
    }
}
