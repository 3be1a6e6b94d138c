//! Several tenants in one Moat process: each at its own path with its own
//! audience, plugins, grants and policy. The same `files` plugin runs for
//! two tenants over two directories; a token for one tenant is refused at
//! the other; sessions and metadata are per tenant.

use moat_tests::auth::{TestIssuer, TestKey, claims, tenant_auth};
use moat_tests::client::{call_text, tool_names};
use moat_tests::raw::{self, INIT};
use moat_tests::{MoatServer, Sandbox};
use rmcp::ServiceExt;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use serde_json::{Value, json};

fn resource(tenant: &str) -> String {
    format!("http://moat.test/t/{tenant}/mcp")
}

struct Tenants {
    dir: tempfile::TempDir,
    server: MoatServer,
    issuer: TestIssuer,
    key: TestKey,
}

/// `acme` reads `acme-data/`, `beta` reads `beta-data/`; both trust one
/// issuer, so only the audience tells their tokens apart. `beta` grants
/// `files.list` alone.
async fn tenants() -> Tenants {
    tenants_with("").await
}

/// [`tenants`] with `extra` TOML in the config.
async fn tenants_with(extra: &str) -> Tenants {
    let key = TestKey::new("k1", 11);
    let issuer = TestIssuer::start(&[&key]).await;
    let files = moat_tests::plugin_wasm("files").display().to_string();
    let tenant = |name: &str, tools: &str| {
        let auth = tenant_auth(name, &issuer, &resource(name), tools);
        format!(
            r#"{auth}
[[tenants.{name}.plugin]]
name = "files"
source = {files:?}
[tenants.{name}.plugin.grants]
dirs = [{{ host = "{name}-data", guest = "/data" }}]
"#
        )
    };
    let dir = Sandbox::builder()
        .file("acme-data/a.txt", "alpha")
        .file("beta-data/b.txt", "bravo")
        .toml(extra)
        .toml(&tenant("acme", r#"["files.*"]"#))
        .toml(&tenant("beta", r#"["files.list"]"#))
        .write();
    let server = MoatServer::start(dir.path(), &[]);
    Tenants {
        dir,
        server,
        issuer,
        key,
    }
}

impl Tenants {
    fn url(&self, tenant: &str) -> String {
        format!("{}/t/{tenant}/mcp", self.server.base)
    }

    fn token(&self, tenant: &str) -> String {
        self.key
            .sign(&claims(&self.issuer.base, &resource(tenant), "tools:read"))
    }

    fn post(&self, tenant: &str, token: &str) -> reqwest::RequestBuilder {
        raw::post(&self.url(tenant), Some(token))
    }

    /// Sends `initialize` to `tenant`'s endpoint with `token`.
    async fn initialize(&self, tenant: &str, token: &str) -> reqwest::Response {
        self.post(tenant, token).body(INIT).send().await.unwrap()
    }

    async fn client(
        &self,
        tenant: &str,
        token: String,
    ) -> rmcp::service::RunningService<rmcp::RoleClient, ()> {
        let config =
            StreamableHttpClientTransportConfig::with_uri(self.url(tenant)).auth_header(token);
        ().serve(StreamableHttpClientTransport::from_config(config))
            .await
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_plugin_serves_each_tenant_over_its_own_directory_and_policy() {
    let t = tenants_with("[audit]\nfile = \"audit.jsonl\"").await;

    let acme = t.client("acme", t.token("acme")).await;
    let names = tool_names(&acme).await;
    assert_eq!(
        names,
        ["files.list", "files.read", "files.search", "files.select"]
    );
    assert_eq!(
        call_text(&acme, "files.read", json!({ "path": "a.txt" })).await,
        (false, "alpha".to_string())
    );
    let (is_error, text) = call_text(&acme, "files.read", json!({ "path": "b.txt" })).await;
    assert!(is_error, "beta's file is not in acme's directory: {text}");
    acme.cancel().await.unwrap();

    let beta = t.client("beta", t.token("beta")).await;
    let names = tool_names(&beta).await;
    assert_eq!(
        names,
        ["files.list"],
        "beta's policy grants only files.list"
    );
    let (is_error, listing) = call_text(&beta, "files.list", json!({})).await;
    assert!(!is_error, "{listing}");
    assert!(listing.contains("b.txt"), "{listing}");
    assert!(!listing.contains("a.txt"), "{listing}");
    beta.cancel().await.unwrap();

    // Beta's policy refuses files.read at the HTTP layer with a 403 naming
    // the scope, although acme may call the same tool.
    let read = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"files.read","arguments":{"path":"b.txt"}}}"#;
    let token = t.token("beta");
    let session = t.initialize("beta", &token).await.headers()["mcp-session-id"].clone();
    let response = t
        .post("beta", &token)
        .header("mcp-session-id", session)
        .header("mcp-protocol-version", "2025-11-25")
        .body(read)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let challenge = response.headers()["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.contains(r#"error="insufficient_scope""#),
        "{challenge}"
    );

    // The tenant and the caller reach every record.
    let audit = std::fs::read_to_string(t.dir.path().join("audit.jsonl")).unwrap();
    let records: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let read = |tenant: &str, kind: &str| {
        records.iter().any(|r| {
            r["tenant"] == tenant
                && r["tool"] == "files.read"
                && r["kind"] == kind
                && r["subject"] == "svc-account"
        })
    };
    assert!(read("acme", "ok"), "{audit}");
    assert!(read("acme", "tool_error"), "{audit}");
    assert!(read("beta", "forbidden"), "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_for_one_tenant_is_refused_at_another() {
    let t = tenants().await;
    let response = t.initialize("beta", &t.token("acme")).await;
    assert_eq!(response.status(), 401);
    let challenge = response.headers()["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.contains(r#"error="invalid_token""#),
        "{challenge}"
    );
    assert!(
        challenge.contains("not meant for this resource"),
        "{challenge}"
    );
    assert!(
        challenge.contains(
            r#"resource_metadata="http://moat.test/.well-known/oauth-protected-resource/t/beta/mcp""#
        ),
        "{challenge}"
    );

    // The same token is good where it belongs, and beta still serves its own.
    for tenant in ["acme", "beta"] {
        let response = t.initialize(tenant, &t.token(tenant)).await;
        assert_eq!(response.status(), 200, "{tenant}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_and_sessions_belong_to_one_tenant() {
    let t = tenants().await;
    for tenant in ["acme", "beta"] {
        let metadata: Value = reqwest::get(format!(
            "{}/.well-known/oauth-protected-resource/t/{tenant}/mcp",
            t.server.base
        ))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        assert_eq!(metadata["resource"], resource(tenant));
        assert_eq!(metadata["authorization_servers"], json!([t.issuer.base]));
    }
    // Two protected endpoints: the root form would be ambiguous.
    let root = reqwest::get(format!(
        "{}/.well-known/oauth-protected-resource",
        t.server.base
    ))
    .await
    .unwrap();
    assert_eq!(root.status(), 404);

    let response = t.initialize("acme", &t.token("acme")).await;
    assert_eq!(response.status(), 200);
    let session = response.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    let list = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;
    let response = t
        .post("beta", &t.token("beta"))
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .body(list)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404, "acme's session is unknown at beta");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_serves_the_tenant_it_is_told_to_without_tokens() {
    let t = tenants().await;
    let mut command = tokio::process::Command::new(moat_tests::moat_bin());
    command
        .args(["serve", "--stdio", "--tenant", "beta", "--config"])
        .arg(t.dir.path().join("moat.toml"))
        .current_dir(t.dir.path());
    let client = ().serve(TokioChildProcess::new(command).unwrap()).await.unwrap();
    // The launching process is trusted: beta's HTTP policy does not apply.
    let (is_error, text) = call_text(&client, "files.read", json!({ "path": "b.txt" })).await;
    assert_eq!((is_error, text.as_str()), (false, "bravo"));
    let (is_error, _) = call_text(&client, "files.read", json!({ "path": "a.txt" })).await;
    assert!(is_error, "acme's file is not in beta's directory");
    client.cancel().await.unwrap();

    let out = std::process::Command::new(moat_tests::moat_bin())
        .args(["serve", "--stdio", "--config"])
        .arg(t.dir.path().join("moat.toml"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--tenant") && stderr.contains("acme, beta"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_lists_every_tenant_with_its_grants() {
    let t = tenants().await;
    let out = std::process::Command::new(moat_tests::moat_bin())
        .args(["check", "--config"])
        .arg(t.dir.path().join("moat.toml"))
        .current_dir(t.dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    for expected in [
        "tenant acme at /t/acme/mcp",
        "acme-data -> /data",
        "tenant beta at /t/beta/mcp",
        "beta-data -> /data",
        "ok: 2 endpoint(s), 2 plugin(s), 8 tool(s)",
    ] {
        assert!(stdout.contains(expected), "{expected:?} in:\n{stdout}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenants_callers_never_draw_on_another_tenants_rate_limits() {
    // The same issuer and subject call both tenants; acme has the
    // top-level limit of one call, beta a burst of three of its own.
    let t = tenants_with(
        "[http]\nstateless = true\n[limits]\ncalls_per_minute = 1\nburst = 1\n\
         [tenants.beta.limits]\ncalls_per_minute = 1\nburst = 3\n",
    )
    .await;
    let call = |tenant: &'static str| {
        let (url, token) = (t.url(tenant), t.token(tenant));
        async move { raw::call_tool(&url, Some(&token), "files.list", json!({})).await }
    };
    let first = call("acme").await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert!(first.body["result"].is_object(), "{}", first.body);
    assert_eq!(call("acme").await.status, 429);
    for _ in 0..3 {
        let answer = call("beta").await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert!(answer.body["result"].is_object(), "{}", answer.body);
    }
    let limited = call("beta").await;
    assert_eq!(limited.status, 429);
    assert!(limited.header("retry-after").is_some());
}
