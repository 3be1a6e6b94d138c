//! Rate limits and concurrency caps: over a limit, HTTP answers 429 with
//! `Retry-After` and stdio a JSON-RPC error; the refusal is audited and
//! counted; the caller recovers when the bucket refills. `/metrics` on the
//! admin address reflects the calls made.

use moat_tests::auth::{TestIssuer, TestKey, claims};
use moat_tests::raw;
use moat_tests::{MoatServer, Sandbox, free_port, moat_bin, sample};
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::TokioChildProcess;
use serde_json::{Value, json};
use std::time::Duration;

/// A `tools/call` over stateless HTTP: status, `Retry-After`, JSON body.
async fn call(url: &str, tool: &str, args: Value) -> (u16, Option<String>, Value) {
    let answer = raw::call_tool(url, None, tool, args).await;
    let retry = answer.header("retry-after").map(str::to_string);
    (answer.status, retry, answer.body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_answers_429_with_retry_after_is_audited_and_recovers() {
    let admin = free_port();
    let dir = Sandbox::builder()
        .plugin("hello", "")
        .toml(&format!(
            "[http]\nstateless = true\n[audit]\nfile = \"audit.jsonl\"\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n\
             [limits]\ncalls_per_minute = 60\nburst = 3\n\
             [limits.tools.\"hello.echo\"]\ncalls_per_minute = 6000\nburst = 100\n"
        ))
        .write();
    let check = std::process::Command::new(moat_bin())
        .args(["check", "--config"])
        .arg(dir.path().join("moat.toml"))
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&check.stdout);
    assert!(
        printed.contains("limits   60 calls/min per caller (burst 3); hello.echo 6000 calls/min (burst 100); 256 calls at once in all; 120 tokenless refusals/min per address (IPv6 per /64), 1200 per endpoint")
            && printed.contains(&format!("metrics  http://127.0.0.1:{admin}/metrics")),
        "{printed}"
    );
    let server = MoatServer::start(dir.path(), &[]);
    let greet = json!({ "name": "q" });
    for _ in 0..3 {
        let (status, _, body) = call(&server.url, "hello.greet", greet.clone()).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, retry, body) = call(&server.url, "hello.greet", greet.clone()).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(retry.as_deref(), Some("1"), "one call per second refills");
    assert!(
        body.as_str()
            .unwrap()
            .contains("rate limit of 60 calls per minute"),
        "{body}"
    );
    // A tool with its own rate is not held back by the caller-wide bucket.
    let (status, _, body) = call(&server.url, "hello.echo", json!({ "message": "m" })).await;
    assert_eq!(
        (status, body["result"]["content"][0]["text"].as_str()),
        (200, Some("m"))
    );

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, _, body) = call(&server.url, "hello.greet", greet.clone()).await;
    assert_eq!(status, 200, "recovered: {body}");

    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    let limited: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["kind"] == "rate_limited")
        .collect();
    assert_eq!(limited.len(), 1, "{audit}");
    assert_eq!(limited[0]["tool"], "hello.greet");
    assert_eq!(limited[0]["outcome"], "refused");

    let metrics = moat_tests::metrics(admin).await;
    let calls =
        r#"moat_calls_total{tenant="default",plugin="hello",tool="hello.greet",outcome="ok"}"#;
    assert_eq!(sample(&metrics, calls), Some(4.0), "{metrics}");
    let echo =
        r#"moat_calls_total{tenant="default",plugin="hello",tool="hello.echo",outcome="ok"}"#;
    assert_eq!(sample(&metrics, echo), Some(1.0), "{metrics}");
    let limited = r#"moat_rate_limited_total{tenant="default",kind="rate_limited"}"#;
    assert_eq!(sample(&metrics, limited), Some(1.0), "{metrics}");
    let durations = r#"moat_call_duration_seconds_count{tenant="default",tool="hello.greet"}"#;
    assert_eq!(sample(&metrics, durations), Some(4.0), "{metrics}");
    assert_eq!(
        sample(&metrics, "moat_calls_in_flight"),
        Some(0.0),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"moat_plugin_load_seconds{tenant="default",plugin="hello",cache="#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_runs_at_most_its_concurrent_calls() {
    let dir = Sandbox::builder()
        .plugin("testbed", "")
        .toml("[http]\nstateless = true\n[limits]\nmax_concurrent_per_tenant = 1\n")
        .write();
    let server = MoatServer::start(dir.path(), &[]);
    let slow =
        |url: String| async move { call(&url, "testbed.sleep", json!({ "ms": 1500 })).await };
    let first = tokio::spawn(slow(server.url.clone()));
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (status, retry, body) = slow(server.url.clone()).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(retry.as_deref(), Some("1"));
    assert!(
        body.as_str()
            .unwrap()
            .contains("too many calls running for this tenant"),
        "{body}"
    );
    let (status, _, body) = first.await.unwrap();
    assert_eq!(
        (status, body["result"]["content"][0]["text"].as_str()),
        (200, Some("slept 1500 ms"))
    );
    let (status, _, _) = call(&server.url, "testbed.sleep", json!({ "ms": 1 })).await;
    assert_eq!(status, 200, "the slot is free again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_stdio_a_limit_is_a_json_rpc_error() {
    let dir = Sandbox::builder()
        .plugin("hello", "")
        .toml("[limits]\ncalls_per_minute = 60\nburst = 2\n")
        .write();
    let mut command = tokio::process::Command::new(moat_bin());
    command
        .args(["serve", "--stdio", "--config"])
        .arg(dir.path().join("moat.toml"));
    let client = ().serve(TokioChildProcess::new(command).unwrap()).await.unwrap();
    let greet = || {
        CallToolRequestParams::new("hello.greet")
            .with_arguments(json!({ "name": "s" }).as_object().unwrap().clone())
    };
    for _ in 0..2 {
        client.call_tool(greet()).await.unwrap();
    }
    let error = client.call_tool(greet()).await.unwrap_err().to_string();
    assert!(
        error.contains("rate limit of 60 calls per minute"),
        "{error}"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    client.call_tool(greet()).await.unwrap();
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_without_tokens_cannot_fill_the_audit_log() {
    let key = TestKey::new("k1", 31);
    let issuer = TestIssuer::start(&[&key]).await;
    let dir = Sandbox::builder()
        .plugin("hello", "")
        .toml(&format!(
            "[http]\nstateless = true\n[audit]\nfile = \"audit.jsonl\"\n[limits]\nrefusals_per_minute = 5\n\
             [auth]\nissuer = \"{base}\"\njwks_uri = \"{base}/keys\"\nresource = \"http://moat.test/mcp\"\nalgorithms = [\"EdDSA\"]\n\
             [[auth.rule]]\nscopes = [\"tools:read\"]\ntools = [\"*\"]\n",
            base = issuer.base
        ))
        .write();
    let server = MoatServer::start(dir.path(), &[]);
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let answer = raw::call_tool(
            &server.url,
            Some("not-a-jwt"),
            "hello.greet",
            json!({ "name": "x" }),
        )
        .await;
        if answer.status == 429 {
            assert!(answer.header("retry-after").is_some());
        }
        statuses.push(answer.status);
    }
    assert_eq!(statuses, [[401; 5].as_slice(), &[429; 7]].concat());

    // Callers with a valid token from the same address are not held back.
    let token = key.sign(&claims(&issuer.base, "http://moat.test/mcp", "tools:read"));
    let answer = raw::call_tool(
        &server.url,
        Some(&token),
        "hello.greet",
        json!({ "name": "ok" }),
    )
    .await;
    assert_eq!((answer.status, answer.text()), (200, Some("Hello, ok!")));

    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    let kinds: Vec<String> = audit
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        kinds,
        [vec!["unauthenticated"; 5], vec!["throttled", "ok"]].concat()
    );
    for line in audit.lines() {
        assert!(line.contains(r#""peer":"127.0.0.1""#), "{line}");
    }
}
