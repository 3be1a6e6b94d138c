//! Behind a reverse proxy: nginx terminating TLS (from a CA made for the
//! test) in front of Moat, driven by the official Python SDK over https.
//! Forwarding headers are believed from the trusted proxy alone, and only
//! the kind it writes: the client's own address is recorded, and the host
//! the client asked for is the one the rebinding check reads.

use moat_tests::auth::{TestIssuer, TestKey, claims};
use moat_tests::external::run_python;
use moat_tests::nginx::{Nginx, TestCa};
use moat_tests::{MoatServer, Sandbox, audit_records, free_port, raw};
use serde_json::{Value, json};
use std::net::IpAddr;

/// A `tools/call` outside any session from the local address `from`,
/// with extra `headers`.
async fn call_from(
    from: &str,
    url: &str,
    token: Option<&str>,
    tool: &str,
    args: Value,
    headers: &[(&str, &str)],
) -> raw::Answer {
    let client = reqwest::Client::builder()
        .local_address(from.parse::<IpAddr>().unwrap())
        .build()
        .unwrap();
    let mut request = client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": { "name": tool, "arguments": args } });
    raw::answer(request.body(body.to_string()).send().await.unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_nginx_over_tls_the_python_sdk_works_and_only_the_proxy_is_believed() {
    let key = TestKey::new("k1", 3);
    let issuer = TestIssuer::start(&[&key]).await;
    let public = free_port();
    let resource = format!("https://localhost:{public}/mcp");
    let dir = Sandbox::builder()
        .plugin("hello", "")
        .toml(&format!(
            r#"[http]
stateless = true
trusted_proxies = ["127.0.0.1"]
[audit]
file = "audit.jsonl"
[auth]
issuer = "{base}"
jwks_uri = "{base}/keys"
resource = "{resource}"
algorithms = ["EdDSA"]
[[auth.rule]]
scopes = ["tools"]
tools = ["*"]
"#,
            base = issuer.base
        ))
        .write();
    let ca = TestCa::new(dir.path());
    let server = MoatServer::start(dir.path(), &[]);
    let nginx = Nginx::start(dir.path(), public, &[server.authority()], Some(&ca));
    let token = key.sign(&claims(&issuer.base, &resource, "tools"));

    let tmp = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let out = run_python(
        tmp,
        "behind_proxy.py",
        |c| {
            c.arg(&resource).arg(&ca.ca_pem).arg(&token);
        },
        || format!("{}\n{}", server.log(), nginx.log()),
    );
    assert!(
        out.contains("ok metadata resource=https://localhost:"),
        "{out}"
    );
    assert_eq!(out.matches("ok call over https").count(), 2, "{out}");
    assert!(
        out.contains("ok a Host of the client's choosing is refused"),
        "{out}"
    );

    // Straight to Moat from 127.0.0.2, which is no trusted proxy: its
    // forwarding headers change neither the address on record nor the
    // host that the rebinding check reads.
    let forged = [
        ("x-forwarded-for", "203.0.113.66"),
        ("x-forwarded-host", "evil.example"),
        ("forwarded", "for=203.0.113.66;host=evil.example"),
    ];
    let direct = call_from(
        "127.0.0.2",
        &server.url,
        Some(&token),
        "hello.greet",
        json!({ "name": "direct" }),
        &forged,
    )
    .await;
    assert_eq!(direct.status, 200, "{}", direct.body);
    assert_eq!(direct.text(), Some("Hello, direct!"));
    // From the trusted proxy the forwarded host is the one checked: a
    // name no client should use is refused as rebinding is.
    let rebound = call_from(
        "127.0.0.1",
        &server.url,
        Some(&token),
        "hello.greet",
        json!({ "name": "rebound" }),
        &[("x-forwarded-host", "evil.example")],
    )
    .await;
    assert_eq!(rebound.status, 403, "{}", rebound.body);
    // And the trusted proxy names the client.
    let named = call_from(
        "127.0.0.1",
        &server.url,
        Some(&token),
        "hello.greet",
        json!({ "name": "named" }),
        &[("x-forwarded-for", "198.51.100.23, 127.0.0.1")],
    )
    .await;
    assert_eq!(named.status, 200, "{}", named.body);

    let records = audit_records(&dir.path().join("audit.jsonl"));
    let peer_of = |name: &str| {
        records
            .iter()
            .find(|r| r["arguments"]["name"] == name)
            .map(|r| r["peer"].clone())
            .unwrap_or_else(|| panic!("no record of {name}: {records:?}"))
    };
    assert_eq!(peer_of("direct"), "127.0.0.2");
    assert_eq!(peer_of("named"), "198.51.100.23");
    // Through nginx, the client (the Python SDK, on 127.0.0.1) is named.
    assert_eq!(peer_of("tls"), "127.0.0.1");
    assert_eq!(peer_of("forged-through-proxy"), "127.0.0.3");
    for forged in ["203.0.113.66", "198.51.100.77", "198.51.100.78"] {
        assert!(records.iter().all(|r| r["peer"] != forged), "{forged}");
    }
    // Moat still serves.
    let after = raw::call_tool(
        &server.url,
        Some(&token),
        "hello.greet",
        json!({ "name": "x" }),
    )
    .await;
    assert_eq!(after.text(), Some("Hello, x!"));
}
