//! Streamable HTTP at the edges: hostile headers, bad protocol versions,
//! oversized and malformed bodies, unknown sessions, health endpoints and
//! graceful shutdown. After every refusal the server still serves.

use moat_tests::{MoatServer, Sandbox, make_fifo};
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use serde_json::{Value, json};
use std::time::Duration;
use tempfile::TempDir;

const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#;

fn config() -> TempDir {
    Sandbox::builder()
        .plugin("hello", "")
        .plugin("testbed", "timeout_ms = 10000")
        .toml("[http]\nmax_body_bytes = 65536\nshutdown_grace_ms = 5000")
        .write()
}

fn post(server: &MoatServer) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .post(&server.url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
}

/// A full, normal conversation with rmcp's client.
async fn still_serves(server: &MoatServer) {
    let client =
        ().serve(StreamableHttpClientTransport::from_uri(server.url.clone()))
            .await
            .unwrap();
    let args = json!({ "name": "again" }).as_object().unwrap().clone();
    let result = client
        .call_tool(CallToolRequestParams::new("hello.greet").with_arguments(args))
        .await
        .unwrap();
    assert_eq!(result.content[0].as_text().unwrap().text, "Hello, again!");
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_origin_is_refused_with_403() {
    let dir = config();
    let server = MoatServer::start(dir.path(), &[]);
    let refused = post(&server)
        .header("origin", "https://evil.example")
        .body(INIT)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let allowed = post(&server)
        .header("origin", "http://localhost:6274")
        .body(INIT)
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), 200);
    still_serves(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_host_is_refused() {
    let dir = config();
    let server = MoatServer::start(dir.path(), &[]);
    // What a DNS-rebinding page would send: its own name in Host.
    let refused = post(&server)
        .header("host", "rebind.evil.example")
        .body(INIT)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    still_serves(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_protocol_version_is_400() {
    let dir = config();
    let server = MoatServer::start(dir.path(), &[]);
    let refused = post(&server)
        .header("mcp-protocol-version", "1999-01-01")
        .body(INIT)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    assert!(
        refused
            .text()
            .await
            .unwrap()
            .contains("Unsupported MCP-Protocol-Version")
    );
    still_serves(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_body_is_413() {
    let dir = config();
    let server = MoatServer::start(dir.path(), &[]);
    let padding = "x".repeat(70_000);
    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": "ping", "params": { "pad": padding } });
    let refused = post(&server).body(body.to_string()).send().await.unwrap();
    assert_eq!(refused.status(), 413);
    still_serves(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_a_parse_error_and_non_jsonrpc_an_invalid_request() {
    let dir = config();
    let server = MoatServer::start(dir.path(), &[]);
    for (body, code) in [
        (r#"{"jsonrpc":"2.0","id":1,"method""#, -32700),
        ("not json at all", -32700),
        (r#"{"hello":"world"}"#, -32600),
        (r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#, -32600),
    ] {
        let response = post(&server).body(body).send().await.unwrap();
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["jsonrpc"], "2.0");
        assert_eq!(error["id"], Value::Null);
        assert_eq!(error["error"]["code"], code, "{body}: {error}");
    }
    still_serves(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_session_is_404() {
    let dir = config();
    let server = MoatServer::start(dir.path(), &[]);
    let refused = post(&server)
        .header("mcp-session-id", "7d0c4b5e-0000-4000-8000-000000000000")
        .body(r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 404);
    let delete = |session: &str| {
        reqwest::Client::new()
            .delete(&server.url)
            .header("mcp-session-id", session)
            .header("mcp-protocol-version", "2025-11-25")
            .send()
    };
    let unknown = delete("7d0c4b5e-0000-4000-8000-000000000000")
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    still_serves(&server).await;

    // A session that exists ends with 204, as the official SDKs expect.
    let opened = post(&server)
        .body(moat_tests::raw::INIT)
        .send()
        .await
        .unwrap();
    let session = opened.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(delete(&session).await.unwrap().status(), 204);
    assert_eq!(delete(&session).await.unwrap().status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness_are_served_outside_the_mcp_route() {
    let dir = config();
    let server = MoatServer::start(dir.path(), &[]);
    for path in ["/healthz", "/readyz"] {
        let response = reqwest::get(format!("{}{path}", server.base))
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_in_flight_calls_finish() {
    let dir = config();
    let mut server = MoatServer::start(dir.path(), &[]);
    let client =
        ().serve(StreamableHttpClientTransport::from_uri(server.url.clone()))
            .await
            .unwrap();
    let args = json!({ "ms": 1500 }).as_object().unwrap().clone();
    let slow = tokio::spawn(async move {
        let result = client
            .call_tool(CallToolRequestParams::new("testbed.sleep").with_arguments(args))
            .await;
        (client, result)
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    server.terminate();
    let (_client, result) = tokio::time::timeout(Duration::from_secs(20), slow)
        .await
        .expect("the in-flight call never finished")
        .unwrap();
    let result = result.expect("the in-flight call was cut off by shutdown");
    assert_eq!(result.content[0].as_text().unwrap().text, "slept 1500 ms");
    let status = tokio::task::spawn_blocking(move || {
        let status = server.wait(Duration::from_secs(10));
        (status, server.log())
    })
    .await
    .unwrap();
    let (status, log) = status;
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "moat did not stop cleanly:\n{log}"
    );
    assert!(log.contains("shutting down"), "{log}");
}

/// The same for plain calls on a stateless endpoint (answered without
/// rmcp's service): one that ends within the grace period gets its
/// answer; one still running when it is over gets 503, not a reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_plain_stateless_calls_within_the_grace_period_and_503_after() {
    let dir = Sandbox::builder()
        .plugin("testbed", "timeout_ms = 20000")
        .toml("[http]\nstateless = true\nshutdown_grace_ms = 1500")
        .write();
    let mut server = MoatServer::start(dir.path(), &[]);
    let sleep = |ms: u64| {
        let body = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": { "name": "testbed.sleep", "arguments": { "ms": ms } } });
        let request = post(&server).body(body.to_string());
        tokio::spawn(async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        })
    };
    let (short, long) = (sleep(700), sleep(15000));
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.terminate();
    let (status, body) = short.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("slept 700 ms"), "{body}");
    let (status, body) = tokio::time::timeout(Duration::from_secs(10), long)
        .await
        .expect("the long call got no answer")
        .unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("shutting down"), "{body}");
    let (status, log) = tokio::task::spawn_blocking(move || {
        let status = server.wait(Duration::from_secs(10));
        (status, server.log())
    })
    .await
    .unwrap();
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_stuck_in_a_file_operation_neither_stalls_the_server_nor_its_shutdown() {
    let dir = Sandbox::builder()
        .plugin("hello", "")
        .plugin(
            "files",
            "dirs = [{ host = \"shared\", guest = \"/data\" }]\ntimeout_ms = 300",
        )
        .dir("shared")
        .toml("[http]\nshutdown_grace_ms = 500")
        .write();
    // A FIFO nobody writes to: opening it for reading never returns.
    make_fifo(&dir.path().join("shared/pipe"));
    let mut server = MoatServer::start(dir.path(), &[]);
    let conversation = async {
        let client =
            ().serve(StreamableHttpClientTransport::from_uri(server.url.clone()))
                .await
                .unwrap();
        // Each stuck call holds a thread; none holds a runtime worker.
        for _ in 0..3 {
            let args = json!({ "path": "pipe" }).as_object().unwrap().clone();
            let stuck = client
                .call_tool(CallToolRequestParams::new("files.read").with_arguments(args))
                .await
                .unwrap();
            assert_eq!(stuck.is_error, Some(true));
            assert_eq!(stuck.meta.unwrap().0["moat/error"]["kind"], "timed_out");
        }
        client.cancel().await.unwrap();
        still_serves(&server).await;
    };
    tokio::time::timeout(Duration::from_secs(60), conversation)
        .await
        .expect("the server stopped answering while calls were stuck");

    server.terminate();
    let (status, log) = tokio::task::spawn_blocking(move || {
        let status = server.wait(Duration::from_secs(10));
        (status, server.log())
    })
    .await
    .unwrap();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "moat did not stop while calls were stuck:\n{log}"
    );
    assert!(log.contains("blocked in a file operation"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_rmcp_refuses_spends_no_rate_limit_and_leaves_no_call_record() {
    // A page that rebinds its name to this loopback server, and clients
    // that send the wrong media types: rmcp refuses them, and admission
    // must not have charged or recorded them first.
    let dir = Sandbox::builder()
        .plugin("hello", "")
        .toml(
            "[http]\nstateless = true\n[audit]\nfile = \"audit.jsonl\"\n\
             [limits]\ncalls_per_minute = 1\nburst = 1\n",
        )
        .write();
    let server = MoatServer::start(dir.path(), &[]);
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"nope.nope","arguments":{}}}"#;
    let refused = [
        post(&server).header("host", "rebound.example"),
        post(&server).header("origin", "http://rebound.example"),
        reqwest::Client::new()
            .post(&server.url)
            .header("content-type", "text/plain")
            .header("accept", "application/json, text/event-stream"),
    ];
    for request in refused {
        let response = request
            .header("mcp-protocol-version", "2025-11-25")
            .body(call)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_client_error(), "{}", response.status());
    }
    // The caller's one call a minute is still there.
    let answer =
        moat_tests::raw::call_tool(&server.url, None, "hello.greet", json!({ "name": "x" })).await;
    assert_eq!(answer.text(), Some("Hello, x!"), "{}", answer.body);
    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    let kinds: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["kind"].clone())
        .collect();
    assert_eq!(kinds, [json!("ok")], "{audit}");
}

/// At the default level the log says what an operator needs (start-up,
/// refusals), not a line per request: in stateless mode rmcp starts a
/// session per request and logs its start and end, which only `debug`
/// shows; a refusal is one line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_log_has_no_line_per_request_but_names_refusals() {
    let dir = Sandbox::builder()
        .plugin("hello", "")
        .toml("[http]\nstateless = true")
        .write();
    let calls = 40;
    let mut logs = Vec::new();
    for env in [&[][..], &[("RUST_LOG", "debug")][..]] {
        let server = MoatServer::start_with(dir.path(), "127.0.0.1:0", &[], env);
        for i in 0..calls {
            let name = format!("n{i}");
            let answer = moat_tests::raw::call_tool(
                &server.url,
                None,
                "hello.greet",
                json!({ "name": name }),
            )
            .await;
            assert_eq!(answer.text(), Some(format!("Hello, {name}!").as_str()));
        }
        let refused = moat_tests::raw::call_tool(&server.url, None, "nope.nope", json!({})).await;
        assert!(
            refused.body.to_string().contains("unknown tool"),
            "{}",
            refused.body
        );
        still_serves(&server).await;
        logs.push(server.log());
    }
    let (default, debug) = (&logs[0], &logs[1]);
    assert!(default.contains("call refused"), "{default}");
    // One line for the refusal: Moat's, not rmcp's again.
    assert_eq!(default.matches("unknown tool").count(), 1, "{default}");
    assert!(!default.contains("response error"), "{default}");
    assert!(
        default.lines().count() < 10,
        "{} lines for {calls} calls:\n{default}",
        default.lines().count()
    );
    assert!(!default.contains("Service initialized"), "{default}");
    // The lines are there to be had at debug, for the requests rmcp
    // serves (a plain call is answered without them: see below).
    assert!(debug.contains("Service initialized"), "{debug}");
}

/// A plain stateless `tools/call` (nothing but the tool and its arguments,
/// before protocol 2026-07-28) is answered without rmcp's per-request
/// service; its answer must be the one rmcp gives. The same calls with an
/// empty `_meta`, which rmcp reads as no metadata, go through rmcp: the
/// statuses, content types and bodies must be the same bytes, for results,
/// tool errors, traps, refusals, non-object structured content (which
/// peers before 2026-07-28 get as text) and both kinds of ID. rmcp's debug
/// lines tell which way each went.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_stateless_call_is_answered_as_rmcp_answers_it() {
    let dir = Sandbox::builder()
        .plugin("hello", "")
        .plugin("testbed", "")
        .plugin("typed", "")
        .toml("[http]\nstateless = true\n[audit]\nfile = \"audit.jsonl\"")
        .write();
    let server = MoatServer::start_with(dir.path(), "127.0.0.1:0", &[], &[("RUST_LOG", "debug")]);
    let calls = [
        ("hello.greet", json!({ "name": "x" })),
        ("hello.greet", json!({ "name": 7 })),
        ("nope.nope", json!({})),
        ("testbed.panic", json!({ "text": "boom" })),
        ("testbed.fail", json!({ "text": "no" })),
        ("typed.add", json!({ "a": 2, "b": 3 })),
        (
            "typed.middle",
            json!({ "a": { "x": 0, "y": 0 }, "b": { "x": 2, "y": 4 } }),
        ),
    ];
    let mut sent = 0;
    for id in [json!(7), json!("call-1")] {
        for version in [None, Some("2025-03-26"), Some("2025-11-25")] {
            for (tool, arguments) in &calls {
                let mut answers = Vec::new();
                for params in [
                    json!({ "name": tool, "arguments": arguments }),
                    json!({ "name": tool, "arguments": arguments, "_meta": {} }),
                ] {
                    let body = json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params });
                    let mut request = post(&server).body(body.to_string());
                    if let Some(version) = version {
                        request = request.header("mcp-protocol-version", version);
                    }
                    let response = request.send().await.unwrap();
                    let status = response.status();
                    let content_type = response.headers()["content-type"].clone();
                    answers.push((status, content_type, response.text().await.unwrap()));
                    sent += 1;
                }
                assert_eq!(answers[0], answers[1], "{tool} {id} {version:?}");
                assert_eq!(answers[0].0, 200);
            }
        }
    }
    // The answers were about something: a result, and a refusal.
    let answer =
        moat_tests::raw::call_tool(&server.url, None, "hello.greet", json!({ "name": "y" })).await;
    assert_eq!(answer.text(), Some("Hello, y!"), "{}", answer.body);
    let refused = moat_tests::raw::call_tool(&server.url, None, "nope.nope", json!({})).await;
    assert_eq!(refused.body["error"]["code"], -32602, "{}", refused.body);
    // What rmcp refuses is refused, though Moat's own checks would let it
    // by: a host with a final dot, a bare IPv6 host, a `result` of null
    // beside the method. The tool does not run (the admitted call is
    // recorded as abandoned).
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"hello.greet","arguments":{"name":"z"}}}"#;
    let port = server
        .url
        .trim_end_matches("/mcp")
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    let refused = [
        post(&server)
            .header("host", format!("localhost.:{port}"))
            .body(call),
        post(&server).header("host", "::1").body(call),
        post(&server).body(call.replace("}}}", "}},\"result\":null}")),
    ];
    for request in refused {
        let response = request.send().await.unwrap();
        assert!(response.status().is_client_error(), "{}", response.status());
    }
    // A client that gives up does not cut its call short: it runs, and is
    // audited, whole.
    let gave_up = post(&server)
        .timeout(std::time::Duration::from_millis(100))
        .body(r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"testbed.sleep","arguments":{"ms":600}}}"#)
        .send()
        .await;
    assert!(gave_up.is_err(), "{gave_up:?}");
    still_serves(&server).await;
    // Half the calls (those with `_meta`) and the session of `still_serves`
    // started rmcp services; the plain ones did not.
    let log = server.log();
    let services = log.matches("Service initialized").count();
    assert!(
        services >= sent / 2 && services < sent / 2 + 5,
        "{services} of {sent}:\n{log}"
    );
    // Every call is audited, whichever way it went.
    let audit = dir.path().join("audit.jsonl");
    let mut records = moat_tests::audit_records(&audit);
    for _ in 0..50 {
        if records.len() >= sent + 4 + 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        records = moat_tests::audit_records(&audit);
    }
    assert_eq!(records.len(), sent + 4 + 3, "{records:?}");
    let slept = records.iter().find(|r| r["tool"] == "testbed.sleep");
    assert_eq!(slept.map(|r| &r["kind"]), Some(&json!("ok")), "{records:?}");
    // Two IDs, three versions, two ways, `y` and `still_serves`: not `z`.
    let greeted = records
        .iter()
        .filter(|r| r["tool"] == "hello.greet" && r["kind"] == "ok")
        .count();
    assert_eq!(greeted, 2 * 3 * 2 + 2, "{records:?}");
}
