//! MCP over stdio and Streamable HTTP (stateful and stateless), driven by
//! rmcp's client against the real `moat` binary.

use moat_tests::{MoatServer, Sandbox, moat_bin};
use rmcp::model::{CallToolRequestParams, CallToolResult, ErrorCode};
use rmcp::model::{ClientConfig, ProtocolVersion};
use rmcp::service::{RoleClient, RunningService, ServiceError};
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{ClientHandler, ServiceExt};
use serde_json::{Value, json};
use tempfile::TempDir;

fn config(extra_toml: &str) -> TempDir {
    Sandbox::builder()
        .file("demo/a.txt", "alpha")
        .plugin("hello", "")
        .plugin(
            "files",
            r#"dirs = [{ host = "demo", guest = "/data", mode = "ro" }]"#,
        )
        .plugin("testbed", "timeout_ms = 300\nmax_output_bytes = 100")
        .toml(extra_toml)
        .write()
}

fn args(value: Value) -> serde_json::Map<String, Value> {
    value.as_object().unwrap().clone()
}

async fn call<H: ClientHandler>(
    client: &RunningService<RoleClient, H>,
    name: &str,
    arguments: Value,
) -> Result<CallToolResult, ServiceError> {
    client
        .call_tool(CallToolRequestParams::new(name.to_string()).with_arguments(args(arguments)))
        .await
}

fn text(result: &CallToolResult) -> String {
    result.content[0]
        .as_text()
        .expect("text content")
        .text
        .clone()
}

fn protocol_error(result: Result<CallToolResult, ServiceError>) -> rmcp::ErrorData {
    match result {
        Err(ServiceError::McpError(e)) => e,
        other => panic!("expected a protocol error, got {other:?}"),
    }
}

/// What every transport must do, in one conversation.
async fn exercise<H: ClientHandler>(client: &RunningService<RoleClient, H>) {
    let tools = client.list_all_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    for expected in [
        "files.list",
        "files.read",
        "files.search",
        "hello.echo",
        "hello.greet",
        "testbed.spin",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    let greet = tools.iter().find(|t| t.name == "hello.greet").unwrap();
    assert_eq!(greet.input_schema["required"], json!(["name"]));
    assert_eq!(
        greet.annotations.as_ref().unwrap().read_only_hint,
        Some(true)
    );
    let search = tools.iter().find(|t| t.name == "files.search").unwrap();
    assert!(
        search.output_schema.is_some(),
        "declared output schemas are listed"
    );

    let hello = call(client, "hello.greet", json!({ "name": "MCP" }))
        .await
        .unwrap();
    assert_eq!(text(&hello), "Hello, MCP!");
    assert_ne!(hello.is_error, Some(true));

    let read = call(client, "files.read", json!({ "path": "a.txt" }))
        .await
        .unwrap();
    assert_eq!(text(&read), "alpha");
    let listing = call(client, "files.list", json!({})).await.unwrap();
    assert_eq!(
        listing.structured_content.unwrap()["entries"][0]["name"],
        "a.txt"
    );

    // A plugin's own error: a result with isError and its message.
    let failed = call(client, "testbed.fail", json!({ "text": "nope" }))
        .await
        .unwrap();
    assert_eq!(failed.is_error, Some(true));
    assert_eq!(text(&failed), "nope");

    // Limits: isError with a stable, named reason.
    for (tool, arguments, kind) in [
        ("testbed.sleep", json!({ "ms": 10_000 }), "timed_out"),
        (
            "testbed.big_output",
            json!({ "bytes": 101 }),
            "output_too_large",
        ),
        ("testbed.recurse", json!({}), "stack_overflow"),
    ] {
        let limited = call(client, tool, arguments).await.unwrap();
        assert_eq!(limited.is_error, Some(true), "{tool}");
        assert!(
            text(&limited).starts_with(&format!("{kind}: ")),
            "{tool}: {}",
            text(&limited)
        );
        assert_eq!(limited.meta.as_ref().unwrap().0["moat/error"]["kind"], kind);
    }

    // Arguments are checked against the schema before the plugin runs.
    let bad = protocol_error(call(client, "hello.greet", json!({ "name": 5 })).await);
    assert_eq!(bad.code, ErrorCode::INVALID_PARAMS);
    assert!(bad.message.contains("/name"), "{}", bad.message);
    assert_eq!(bad.data.unwrap()["field"], "/name");
    let missing = protocol_error(call(client, "hello.greet", json!({})).await);
    assert_eq!(missing.code, ErrorCode::INVALID_PARAMS);
    assert!(
        missing.message.contains("\"name\" is a required property"),
        "{}",
        missing.message
    );

    // An unknown tool is the protocol's error.
    let unknown = protocol_error(call(client, "nope.nothing", json!({})).await);
    assert_eq!(unknown.code, ErrorCode::INVALID_PARAMS);
    assert!(unknown.message.contains("unknown tool `nope.nothing`"));

    // And after all of that, it still serves.
    let again = call(client, "hello.echo", json!({ "message": "still here" }))
        .await
        .unwrap();
    assert_eq!(text(&again), "still here");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_serves_tools_to_an_rmcp_client() {
    let dir = config("");
    let mut command = tokio::process::Command::new(moat_bin());
    command
        .args(["serve", "--stdio", "--config"])
        .arg(dir.path().join("moat.toml"))
        .stderr(std::process::Stdio::null());
    // Pin the oldest revision Moat promises; HTTP tests use rmcp's default.
    let mut hello = ClientConfig::default();
    hello.protocol_version = ProtocolVersion::V_2025_06_18;
    let client = hello
        .serve(TokioChildProcess::new(command).unwrap())
        .await
        .unwrap();
    let info = client.peer_info().expect("initialized");
    assert_eq!(info.server_info.as_ref().unwrap().name, "moat");
    assert_eq!(info.protocol_version, ProtocolVersion::V_2025_06_18);
    exercise(&client).await;
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamable_http_serves_tools_with_sessions() {
    let dir = config("");
    let server = MoatServer::start(dir.path(), &[]);
    let client =
        ().serve(StreamableHttpClientTransport::from_uri(server.url.clone()))
            .await
            .unwrap();
    exercise(&client).await;
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamable_http_serves_tools_statelessly() {
    let dir = config("[http]\nstateless = true");
    let server = MoatServer::start(dir.path(), &[]);
    let client =
        ().serve(StreamableHttpClientTransport::from_uri(server.url.clone()))
            .await
            .unwrap();
    exercise(&client).await;
    client.cancel().await.unwrap();
}

#[test]
fn stdio_stdout_carries_only_protocol_messages() {
    use std::io::{BufRead, Write};
    let dir = config("");
    let mut child = std::process::Command::new(moat_bin())
        .args(["serve", "--stdio", "--config"])
        .arg(dir.path().join("moat.toml"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for message in [
        json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": { "name": "raw", "version": "1" } } }),
        json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }),
        json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
            "name": "testbed.print", "arguments": { "text": "LEAK-MARKER" } } }),
    ] {
        writeln!(stdin, "{message}").unwrap();
    }
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    while let Some(Ok(line)) = lines.next() {
        let message: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("stdout carried a line that is not JSON-RPC ({e}): {line}"));
        assert_eq!(message["jsonrpc"], "2.0", "{line}");
        assert!(
            !line.contains("LEAK-MARKER"),
            "plugin output reached stdout: {line}"
        );
        let done = message["id"] == 2;
        seen.push(message);
        if done {
            break;
        }
    }
    drop(stdin);
    let status = child.wait().unwrap();
    assert!(status.success());
    let last = seen.last().unwrap();
    assert_eq!(last["result"]["content"][0]["text"], "printed", "{last}");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!stderr.is_empty());
}
