//! Moat as an OAuth 2.1 resource server over Streamable HTTP, with a real
//! issuer (keys generated here, JWKS served on 127.0.0.1): every request
//! needs a valid token meant for this resource, tools/list shows only the
//! granted tools, and a call of any other tool is refused with 403.

use moat_tests::auth::{TestIssuer, TestKey, claims, now};
use moat_tests::client::{call_text, tool_names};
use moat_tests::raw::{self, INIT};
use moat_tests::{MoatServer, Sandbox};
use rmcp::ServiceExt;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};

const RESOURCE: &str = "http://moat.test/mcp";

struct Protected {
    _dir: tempfile::TempDir,
    server: MoatServer,
    issuer: TestIssuer,
    key: TestKey,
}

async fn protected() -> Protected {
    let key = TestKey::new("k1", 7);
    let issuer = TestIssuer::start(&[&key]).await;
    let auth = format!(
        r#"[auth]
issuer = "{base}"
jwks_uri = "{base}/keys"
resource = "{RESOURCE}"
algorithms = ["EdDSA"]
scopes_supported = ["tools:read", "tools:admin"]

[[auth.rule]]
scopes = ["tools:read"]
tools = ["hello.*"]

[[auth.rule]]
scopes = ["tools:admin"]
tools = ["*"]
"#,
        base = issuer.base
    );
    let dir = Sandbox::builder().hello_and_files().toml(&auth).write();
    let server = MoatServer::start(dir.path(), &[]);
    Protected {
        _dir: dir,
        server,
        issuer,
        key,
    }
}

impl Protected {
    fn token(&self, scope: &str) -> String {
        self.key.sign(&claims(&self.issuer.base, RESOURCE, scope))
    }

    /// `DELETE` of `session` with `token`.
    async fn end_session(&self, token: &str, session: &str) -> reqwest::Response {
        reqwest::Client::new()
            .delete(&self.server.url)
            .header("authorization", format!("Bearer {token}"))
            .header("mcp-session-id", session)
            .header("mcp-protocol-version", "2025-11-25")
            .send()
            .await
            .unwrap()
    }

    /// A `tools:read` token for the subject `subject`.
    fn reader(&self, subject: &str) -> String {
        let mut c = claims(&self.issuer.base, RESOURCE, "tools:read");
        c["sub"] = json!(subject);
        self.key.sign(&c)
    }

    fn post(&self, token: Option<&str>) -> reqwest::RequestBuilder {
        raw::post(&self.server.url, token)
    }

    async fn client(&self, scope: &str) -> rmcp::service::RunningService<rmcp::RoleClient, ()> {
        let config = StreamableHttpClientTransportConfig::with_uri(self.server.url.clone())
            .auth_header(self.token(scope));
        ().serve(StreamableHttpClientTransport::from_config(config))
            .await
            .unwrap()
    }
}

fn challenge(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("www-authenticate")
        .expect("a WWW-Authenticate challenge")
        .to_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_gets_401_pointing_at_the_resource_metadata() {
    let p = protected().await;
    let response = p.post(None).body(INIT).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let header = challenge(&response);
    assert!(header.starts_with("Bearer "), "{header}");
    assert!(
        header.contains(
            r#"resource_metadata="http://moat.test/.well-known/oauth-protected-resource/mcp""#
        ),
        "{header}"
    );
    assert!(
        header.contains(r#"scope="tools:read tools:admin""#),
        "{header}"
    );
    assert!(
        !header.contains("error="),
        "no token sent, so no error: {header}"
    );

    for path in [
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource",
    ] {
        let metadata: Value = reqwest::get(format!("{}{path}", p.server.base))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(metadata["resource"], RESOURCE, "{path}");
        assert_eq!(metadata["authorization_servers"], json!([p.issuer.base]));
        assert_eq!(metadata["bearer_methods_supported"], json!(["header"]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_get_401_invalid_token_and_the_server_keeps_serving() {
    let p = protected().await;
    let base = p.issuer.base.clone();
    let stranger = TestKey::new("k1", 8);
    let mut expired = claims(&base, RESOURCE, "tools:read");
    expired["exp"] = json!(now() - 600);
    let cases = [
        ("expired", p.key.sign(&expired)),
        (
            "another tenant's audience",
            p.key
                .sign(&claims(&base, "http://moat.test/t/other/mcp", "tools:read")),
        ),
        (
            "another server's audience",
            p.key.sign(&claims(
                &base,
                "https://elsewhere.example/mcp",
                "tools:read",
            )),
        ),
        (
            "wrong issuer",
            p.key
                .sign(&claims("https://evil.example", RESOURCE, "tools:read")),
        ),
        (
            "a key the issuer does not have",
            stranger.sign(&claims(&base, RESOURCE, "tools:read")),
        ),
        ("garbage", "not-a-jwt".to_string()),
    ];
    for (what, token) in cases {
        let response = p.post(Some(&token)).body(INIT).send().await.unwrap();
        assert_eq!(response.status(), 401, "{what}");
        assert!(
            challenge(&response).contains(r#"error="invalid_token""#),
            "{what}"
        );
    }
    let in_query = reqwest::Client::new()
        .post(format!(
            "{}?access_token={}",
            p.server.url,
            p.token("tools:read")
        ))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(INIT)
        .send()
        .await
        .unwrap();
    assert_eq!(in_query.status(), 400);
    assert!(challenge(&in_query).contains(r#"error="invalid_request""#));

    // A session opened with a valid token does not stand in for one.
    let opened = p
        .post(Some(&p.token("tools:read")))
        .body(INIT)
        .send()
        .await
        .unwrap();
    assert_eq!(opened.status(), 200);
    let session = opened.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    let without = p
        .post(None)
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .body(r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(without.status(), 401);

    let client = p.client("tools:read").await;
    let greeted = call_text(&client, "hello.greet", json!({ "name": "token" })).await;
    assert_eq!(greeted, (false, "Hello, token!".to_string()));
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_list_shows_only_granted_tools_and_other_calls_get_403() {
    let p = protected().await;
    let reader = p.client("tools:read").await;
    let names = tool_names(&reader).await;
    assert_eq!(names, ["hello.echo", "hello.greet"]);
    reader.cancel().await.unwrap();

    let admin = p.client("tools:admin").await;
    let names = tool_names(&admin).await;
    assert_eq!(
        names,
        [
            "files.list",
            "files.read",
            "files.search",
            "files.select",
            "hello.echo",
            "hello.greet"
        ]
    );
    admin.cancel().await.unwrap();

    // A reader calling files.read: refused at the door, with what it lacks.
    let call = json!({ "jsonrpc": "2.0", "id": 5, "method": "tools/call",
        "params": { "name": "files.read", "arguments": { "path": "a.txt" } } });
    let reader = p.token("tools:read");
    let opened = p.post(Some(&reader)).body(INIT).send().await.unwrap();
    let session = opened.headers()["mcp-session-id"].clone();
    let response = p
        .post(Some(&reader))
        .header("mcp-session-id", session)
        .header("mcp-protocol-version", "2025-11-25")
        .body(call.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let header = challenge(&response);
    assert!(
        header.contains(r#"error="insufficient_scope""#)
            && header.contains(r#"scope="tools:admin""#),
        "{header}"
    );
    assert!(!response.text().await.unwrap().contains("alpha"));

    // The same call with the admin scope works.
    let admin = p.client("tools:admin").await;
    let read = call_text(&admin, "files.read", json!({ "path": "a.txt" })).await;
    assert_eq!(read, (false, "alpha".to_string()));
    admin.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_plugins_granted_caller_identity_learn_who_called() {
    let key = TestKey::new("k1", 7);
    let issuer = TestIssuer::start(&[&key]).await;
    let dir = Sandbox::builder()
        .plugin_from("whoami", "testbed", "caller_identity = true")
        // The same plugin again: its resources are the first copy's.
        .toml(&format!(
            "[[plugin]]\nname = \"anon\"\nsource = {:?}\nresources = false\n",
            moat_tests::plugin_wasm("testbed").display().to_string()
        ))
        .toml(&format!(
            "[auth]\nissuer = \"{base}\"\njwks_uri = \"{base}/keys\"\nresource = \"{RESOURCE}\"\nalgorithms = [\"EdDSA\"]\n[[auth.rule]]\nscopes = [\"tools:read\"]\ntools = [\"*\"]\n",
            base = issuer.base
        ))
        .write();
    let server = MoatServer::start(dir.path(), &[]);
    let token = key.sign(&claims(&issuer.base, RESOURCE, "tools:read"));
    let config =
        StreamableHttpClientTransportConfig::with_uri(server.url.clone()).auth_header(token);
    let client = ().serve(StreamableHttpClientTransport::from_config(config)).await.unwrap();
    let call = async |tool: &str, args: Value| call_text(&client, tool, args).await.1;
    let env = async |tool: &str, name: &str| call(tool, json!({ "name": name })).await;

    assert_eq!(
        env("whoami.env", "MOAT_CALLER_SUBJECT").await,
        "svc-account"
    );
    assert_eq!(
        env("whoami.env", "MOAT_CALLER_CLIENT_ID").await,
        "test-client"
    );
    assert_eq!(env("whoami.env", "MOAT_CALLER_SCOPES").await, "tools:read");
    assert_eq!(env("whoami.env", "MOAT_CALLER_ROLES").await, "");
    // Subject, client, scopes and roles; never the token.
    assert_eq!(call("whoami.env_count", json!({})).await, "4");

    assert_eq!(env("anon.env", "MOAT_CALLER_SUBJECT").await, "<unset>");
    assert_eq!(call("anon.env_count", json!({})).await, "0");
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_belongs_to_the_caller_that_created_it() {
    let p = protected().await;
    let (alice, bob) = (p.reader("alice"), p.reader("bob"));
    let opened = p.post(Some(&alice)).body(INIT).send().await.unwrap();
    assert_eq!(opened.status(), 200);
    let session = opened.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    let in_session = |token: &str, body: &'static str| {
        p.post(Some(token))
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", "2025-11-25")
            .body(body)
    };
    let initialized = in_session(
        &alice,
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(initialized.status(), 202);
    let list = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;

    // Bob's token is valid, but the session is Alice's: to him it does
    // not exist, for any method.
    let stolen = in_session(&bob, list).send().await.unwrap();
    assert_eq!(stolen.status(), 404);
    let deleted = p.end_session(&bob, &session).await;
    assert_eq!(deleted.status(), 404);

    // Alice still has it, and ends it with a DELETE: 204, then it is gone.
    let listed = in_session(&alice, list).send().await.unwrap();
    assert_eq!(listed.status(), 200);
    assert!(listed.text().await.unwrap().contains("hello.greet"));
    let delete = || p.end_session(&alice, &session);
    assert_eq!(delete().await.status(), 204);
    assert_eq!(delete().await.status(), 404);
    assert_eq!(in_session(&alice, list).send().await.unwrap().status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_authorization_headers_are_refused_even_when_identical() {
    let p = protected().await;
    let token = p.token("tools:read");
    let doubled = p
        .post(Some(&token))
        .header("authorization", format!("Bearer {token}"))
        .body(INIT)
        .send()
        .await
        .unwrap();
    assert_eq!(doubled.status(), 400);
    assert!(challenge(&doubled).contains(r#"error="invalid_request""#));
    assert!(
        doubled
            .text()
            .await
            .unwrap()
            .contains("more than one Authorization")
    );
    let single = p.post(Some(&token)).body(INIT).send().await.unwrap();
    assert_eq!(single.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_holds_at_most_64_sessions_and_others_are_not_held_back() {
    let p = protected().await;
    let (greedy, other) = (p.reader("greedy"), p.reader("other"));
    let mut sessions = Vec::new();
    for _ in 0..64 {
        let opened = p.post(Some(&greedy)).body(INIT).send().await.unwrap();
        assert_eq!(opened.status(), 200);
        sessions.push(opened.headers()["mcp-session-id"].clone());
    }
    let refused = p.post(Some(&greedy)).body(INIT).send().await.unwrap();
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().get("retry-after").is_some());
    assert_eq!(
        p.post(Some(&other))
            .body(INIT)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // Closing one makes room for one.
    let last = sessions.pop().unwrap();
    let closed = p.end_session(&greedy, last.to_str().unwrap()).await;
    assert_eq!(closed.status(), 204);
    assert_eq!(
        p.post(Some(&greedy))
            .body(INIT)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}
