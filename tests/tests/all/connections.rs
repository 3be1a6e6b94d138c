//! Per-caller credentials injected at the egress boundary: a plugin
//! granted a connection reaches its host with the calling user's
//! credential, which the host adds and the plugin never holds. The
//! `testbed` plugin tries to get it anyway: its own `Authorization`
//! header, an upstream that echoes requests in its body and headers, a
//! compressed echo, a redirect to another host, a scan of its own memory.

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use moat::credentials::store::{Credential, Owner, Store};
use moat_tests::auth::{TestIssuer, TestKey, tenant_client, tenant_with_plugin};
use moat_tests::client::call_text;
use moat_tests::external::NodeScript;
use moat_tests::{MoatServer, Sandbox};
use serde_json::json;
use std::sync::{Arc, Mutex};

use moat_tests::client::Client;
use rmcp::ServiceExt;

/// Every `Authorization` header and query an upstream was sent.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<String>>>);

impl Seen {
    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// Notes what `request` carried.
fn record(seen: &Seen, request: &Request) {
    let auth = request
        .headers()
        .get("authorization")
        .map_or("-".to_string(), |v| v.to_str().unwrap().to_string());
    let query = request.uri().query().unwrap_or("-").to_string();
    seen.0.lock().unwrap().push(format!("{auth} {query}"));
}

/// `request`'s URI and headers, as text.
fn echo(request: &Request) -> String {
    let mut text = format!("{}\n", request.uri());
    for (name, value) in request.headers() {
        text.push_str(&format!("{name}: {}\n", value.to_str().unwrap()));
    }
    text
}

/// An API that knows alice's and bob's tokens, plus an echo of the whole
/// request (in the body and in a header), a compressed echo and a
/// redirect to `elsewhere`.
async fn upstream(elsewhere: String) -> (String, Seen) {
    let seen = Seen::default();
    let app = Router::new()
        .route(
            "/user",
            get(|State(seen): State<Seen>, request: Request| async move {
                record(&seen, &request);
                let login = match request.headers().get("authorization") {
                    Some(v) if v == "Bearer alice-token" => "alice",
                    Some(v) if v == "Bearer bob-token" => "bob",
                    _ => return (StatusCode::UNAUTHORIZED, "who are you?").into_response(),
                };
                (
                    [("set-cookie", "session=for-the-user")],
                    format!("login={login}"),
                )
                    .into_response()
            }),
        )
        .route(
            "/echo",
            get(|State(seen): State<Seen>, request: Request| async move {
                record(&seen, &request);
                let text = echo(&request);
                let mut headers = HeaderMap::new();
                if let Some(auth) = request.headers().get("authorization") {
                    headers.insert("x-echo-auth", auth.clone());
                }
                (headers, text).into_response()
            }),
        )
        .route(
            "/gzip",
            get(|State(seen): State<Seen>, request: Request| async move {
                record(&seen, &request);
                // Claims an encoding whatever was asked: the body is the
                // plain echo, which a checker that trusted the label
                // would pass through unread.
                ([("content-encoding", "gzip")], echo(&request)).into_response()
            }),
        )
        .route(
            "/redirect",
            get(
                move |State(seen): State<Seen>, request: Request| async move {
                    record(&seen, &request);
                    Response::builder()
                        .status(302)
                        .header("location", format!("{elsewhere}/steal"))
                        .body(axum::body::Body::empty())
                        .unwrap()
                },
            ),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, seen)
}

/// A host that is no connection's: it records what it is sent.
async fn elsewhere() -> (String, Seen) {
    let seen = Seen::default();
    let app = Router::new()
        .fallback(|State(seen): State<Seen>, request: Request| async move {
            let headers: Vec<String> = request
                .headers()
                .iter()
                .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap()))
                .collect();
            seen.0
                .lock()
                .unwrap()
                .push(format!("{} {}", request.uri(), headers.join("; ")));
            "nothing here"
        })
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, seen)
}

struct World {
    dir: tempfile::TempDir,
    server: MoatServer,
    issuer: TestIssuer,
    key: TestKey,
    store: Store,
    api: String,
    api_seen: Seen,
    keyed: String,
    keyed_seen: Seen,
    other: String,
    other_seen: Seen,
}

const STORE_KEY: [u8; 32] = [42; 32];

/// `[credentials]` with its key in `MOAT_TEST_STORE_KEY` and `settings`
/// (TOML lines, `dir` among them), then `connections`.
fn credentials_in(settings: &str, connections: &[String]) -> String {
    format!(
        "[credentials]\nkey = {{ from_env = \"MOAT_TEST_STORE_KEY\" }}\n{settings}\n\n{}",
        connections.join("\n")
    )
}

/// [`credentials_in`] the folder `creds`.
fn credentials(settings: &str, connections: &[String]) -> String {
    credentials_in(&format!("dir = \"creds\"\n{settings}"), connections)
}

/// An API-key connection `name` for `host`, with `more` (TOML lines).
fn api_key(name: &str, host: &str, more: &str) -> String {
    format!("[[connection]]\nname = \"{name}\"\nkind = \"api_key\"\nhosts = [\"{host}\"]\n{more}\n")
}

/// Tenants `acme` and `beta` serve `testbed` granted connection `gh` (a
/// bearer token for `api`) and `keyed` (a key in the query for `keyed`),
/// and `other`, which is no connection's host.
async fn world() -> World {
    let key = TestKey::new("k1", 14);
    let issuer = TestIssuer::start(&[&key]).await;
    let (other, other_seen) = elsewhere().await;
    let (api, api_seen) = upstream(other.clone()).await;
    let (keyed, keyed_seen) = upstream(other.clone()).await;
    let testbed = moat_tests::plugin_wasm("testbed").display().to_string();
    let tenant = |name: &str| {
        let grants = format!(
            "allow_hosts = [\"{api}\", \"{keyed}\", \"{other}\"]\nconnections = [\"gh\", \"keyed\"]"
        );
        tenant_with_plugin(name, &issuer, "testbed", &testbed, &grants)
    };
    let key_text = hex::encode(STORE_KEY);
    // Its issuer signs no browser in: this test is about the egress
    // boundary, and its credentials are put in the store directly.
    let dir = Sandbox::builder()
        .toml("[audit]\nfile = \"audit.jsonl\"\n")
        .toml(&credentials(
            "verify_browser_user = false",
            &[
                api_key("gh", &api, ""),
                api_key("keyed", &keyed, "inject = { query = \"api_key\" }"),
            ],
        ))
        .toml(&tenant("acme"))
        .toml(&tenant("beta"))
        .write();
    let server = MoatServer::start_with(
        dir.path(),
        "127.0.0.1:0",
        &[],
        &[("MOAT_TEST_STORE_KEY", &key_text)],
    );
    let store = Store::new(dir.path().join("creds"), &STORE_KEY);
    World {
        dir,
        server,
        issuer,
        key,
        store,
        api,
        api_seen,
        keyed,
        keyed_seen,
        other,
        other_seen,
    }
}

impl World {
    fn owner(&self, tenant: &str, subject: &str, connection: &str) -> Owner {
        Owner {
            tenant: Some(tenant.into()),
            issuer: self.issuer.base.clone(),
            subject: subject.into(),
            connection: connection.into(),
        }
    }

    fn give(&self, tenant: &str, subject: &str, connection: &str, secret: &str) {
        let credential = Credential {
            secret: secret.into(),
            refresh_token: None,
            expires_at: None,
            stored_at: moat_tests::auth::now(),
        };
        self.store
            .put(&self.owner(tenant, subject, connection), &credential)
            .unwrap();
    }

    /// Runs `moat connections ARGS --config` on this world's config.
    fn connections(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(moat_tests::moat_bin())
            .arg("connections")
            .args(args)
            .arg("--config")
            .arg(self.dir.path().join("moat.toml"))
            .env("MOAT_TEST_STORE_KEY", hex::encode(STORE_KEY))
            .output()
            .unwrap()
    }

    async fn client(&self, tenant: &str, subject: &str) -> Client {
        tenant_client(&self.server.base, tenant, &self.issuer, &self.key, subject).await
    }
}

/// Asserts that `client`'s call of `url` was answered with the link where
/// its caller connects `gh` (the request itself never left).
async fn asked_to_connect(client: &Client, url: &str) {
    let (failed, text) = call_text(client, "testbed.request", json!({ "url": url })).await;
    assert!(failed, "{text}");
    assert!(
        text.starts_with("needs_connection: `testbed.request` needs your gh account")
            && text.contains("/connect/"),
        "{text}"
    );
}

/// What `testbed.request` learnt of `url`, sent with `headers`.
async fn request(client: &Client, url: &str, headers: &[(&str, &str)]) -> String {
    let (failed, text) = call_text(
        client,
        "testbed.request",
        json!({ "url": url, "headers": headers, "scan_for_reversed": "nekot-ecila" }),
    )
    .await;
    assert!(!failed, "{text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_callers_own_credential_reaches_the_upstream_and_never_the_plugin() {
    let w = world().await;
    w.give("acme", "alice", "gh", "alice-token");
    w.give("acme", "bob", "gh", "bob-token");
    // A key with characters a URL encodes: it comes back encoded.
    w.give("acme", "alice", "keyed", "alice-key/+=");
    let alice = w.client("acme", "alice").await;
    let bob = w.client("acme", "bob").await;

    // Each caller acts as themselves, and a header the plugin sets itself
    // is replaced, not sent beside the user's.
    let answer = request(&alice, &format!("{}/user", w.api), &[]).await;
    assert!(
        answer.starts_with("200\n") && answer.contains("login=alice"),
        "{answer}"
    );
    let answer = request(
        &bob,
        &format!("{}/user", w.api),
        &[("Authorization", "Bearer plugin-own"), ("Cookie", "s=1")],
    )
    .await;
    assert!(answer.contains("login=bob"), "bob stays bob: {answer}");
    assert_eq!(
        w.api_seen.all(),
        ["Bearer alice-token -", "Bearer bob-token -"]
    );

    // An upstream that echoes the request: the credential comes back
    // masked in the body and in the header, and is nowhere in the
    // plugin's memory after reading it all.
    // The plugin's asks for an encoding and a range of the answer are
    // not sent: either could bring the credential back unrecognised.
    let echo = request(
        &alice,
        &format!("{}/echo", w.api),
        &[("TE", "gzip"), ("Range", "bytes=20-30"), ("If-Range", "x")],
    )
    .await;
    assert!(!echo.contains("alice-token"), "{echo}");
    assert!(echo.contains("authorization: Bearer ***********"), "{echo}");
    assert!(echo.contains("x-echo-auth: Bearer ***********"), "{echo}");
    assert!(echo.contains("accept-encoding: identity"), "{echo}");
    for header in ["\nte:", "\nrange:", "\nif-range:"] {
        assert!(!echo.contains(header), "{header} in {echo}");
    }
    assert!(echo.ends_with("[in memory: 0]"), "{echo}");
    // A session the upstream opens for the user's token stays with Moat.
    let answer = request(&alice, &format!("{}/user", w.api), &[]).await;
    assert!(!answer.contains("set-cookie"), "{answer}");

    // A query credential replaces the plugin's parameter of that name,
    // and is masked where the upstream echoes the URL.
    let echo = request(&alice, &format!("{}/echo?api_key=mine&q=1", w.keyed), &[]).await;
    let sent = "alice-key%2F%2B%3D";
    assert!(
        echo.contains(&format!("/echo?q=1&api_key={}\n", "*".repeat(sent.len()))),
        "{echo}"
    );
    assert!(!echo.contains("alice-key"), "{echo}");
    assert_eq!(w.keyed_seen.all(), [format!("- q=1&api_key={sent}")]);

    // An answer labelled compressed cannot be checked: it is refused.
    let gzip = request(&alice, &format!("{}/gzip", w.api), &[]).await;
    assert!(gzip.contains("HttpRequestDenied"), "{gzip}");
    assert!(!gzip.contains("alice-token"), "{gzip}");

    // A redirect elsewhere: following it sends nothing of the user's.
    let redirect = request(&alice, &format!("{}/redirect", w.api), &[]).await;
    let location = redirect
        .lines()
        .find_map(|l| l.strip_prefix("location: "))
        .unwrap()
        .to_string();
    assert!(location.starts_with(&w.other), "{redirect}");
    request(&alice, &location, &[]).await;
    let mut before = w.api_seen.all().len();
    request(&alice, &format!("{}/user", w.other), &[]).await;
    for line in w.other_seen.all() {
        assert!(
            !line.contains("alice-token") && !line.contains("authorization"),
            "{line}"
        );
    }

    // The plugin's environment is empty: nothing was put there.
    assert_eq!(
        call_text(&alice, "testbed.env_count", json!({})).await.1,
        "0"
    );

    // Nobody else's calls carry alice's credential: carol has none, and
    // alice at another tenant is another caller.
    let carol = w.client("acme", "carol").await;
    asked_to_connect(&carol, &format!("{}/user", w.api)).await;
    let alice_at_beta = w.client("beta", "alice").await;
    asked_to_connect(&alice_at_beta, &format!("{}/user", w.api)).await;
    assert_eq!(
        w.api_seen.all().len(),
        before,
        "refused requests never leave"
    );

    // The operator lists who has connected (never the secrets) and
    // revokes alice's: her next call has no credential; the host serves on.
    let listed = w.connections(&["list"]);
    assert!(listed.status.success(), "{listed:?}");
    let listed = String::from_utf8(listed.stdout).unwrap();
    for line in [
        "acme\talice\tgh\t",
        "acme\tbob\tgh\t",
        "acme\talice\tkeyed\t",
    ] {
        assert!(listed.contains(line), "{listed}");
    }
    assert!(
        !listed.contains("token") && !listed.contains("alice-key"),
        "{listed}"
    );
    let revoked = w.connections(&[
        "revoke",
        "--tenant",
        "acme",
        "--subject",
        "alice",
        "--connection",
        "gh",
    ]);
    assert!(revoked.status.success(), "{revoked:?}");
    assert_eq!(w.store.get(&w.owner("acme", "alice", "gh")).unwrap(), None);
    assert!(
        w.store
            .get(&w.owner("acme", "alice", "keyed"))
            .unwrap()
            .is_some()
    );
    asked_to_connect(&alice, &format!("{}/user", w.api)).await;
    let answer = request(&bob, &format!("{}/user", w.api), &[]).await;
    assert!(answer.contains("login=bob"), "{answer}");
    before += 1;
    assert_eq!(w.api_seen.all().len(), before);

    // An expired credential is not sent.
    w.store
        .put(
            &w.owner("acme", "bob", "gh"),
            &Credential {
                secret: "bob-token".into(),
                refresh_token: None,
                expires_at: Some(moat_tests::auth::now() - 10),
                stored_at: moat_tests::auth::now() - 100,
            },
        )
        .unwrap();
    asked_to_connect(&bob, &format!("{}/user", w.api)).await;

    // No credential in the audit log, and the refusals are in it.
    let audit = std::fs::read_to_string(w.dir.path().join("audit.jsonl")).unwrap();
    for secret in ["alice-token", "bob-token", "alice-key"] {
        assert!(!audit.contains(secret), "{secret} is in the audit log");
    }
    assert!(
        audit.contains("needs the caller's `gh` connection, which they have not set up"),
        "{audit}"
    );
    let log = w.server.log();
    for secret in ["alice-token", "bob-token", "alice-key"] {
        assert!(!log.contains(secret), "{secret} is in Moat's log");
    }
    for client in [alice, bob, carol, alice_at_beta] {
        client.cancel().await.unwrap();
    }
}

/// The upstream of the OAuth test: panva's oidc-provider and an API that
/// takes only its tokens, and the MCP endpoint's authorization server
/// (tests/node/upstream.mjs).
struct Upstream {
    script: NodeScript,
    issuer: String,
    api: String,
    mcp: String,
}

/// Starts the upstream; it takes sign-ins once given Moat's redirect URIs
/// ([`Upstream::redirect_to`]).
fn start_upstream() -> Upstream {
    let tmp = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let mut script = NodeScript::start(tmp, "upstream.mjs", &[]);
    let issuer = script.said("issuer ");
    let api = script.said("api ");
    let mcp = script.said("mcp ");
    Upstream {
        script,
        issuer,
        api,
        mcp,
    }
}

impl Upstream {
    /// Registers Moat at `base` as the provider's client and the MCP
    /// authorization server's, which signs with `key`.
    fn redirect_to(&mut self, base: &str, key: &TestKey) {
        let setup = json!({
            "redirect": format!("{base}/connect/callback/gh"),
            "verify": format!("{base}/connect/verify"),
            "key": key.private_jwk(),
        });
        self.script.tell(&setup.to_string());
        self.script.said("ready");
        self.script.drain();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_connects_an_account_through_url_elicitation_and_calls_as_the_user() {
    let mut upstream = start_upstream();
    // The MCP authorization server's key, which signs the callers' tokens.
    let key = TestKey::new("k1", 15);
    let testbed = moat_tests::plugin_wasm("testbed").display().to_string();
    let grants = format!(
        "allow_hosts = [\"{}\"]\nconnections = [\"gh\"]",
        upstream.api
    );
    let gh = format!(
        r#"[[connection]]
name = "gh"
kind = "oauth2"
hosts = ["{api}"]
authorization_endpoint = "{provider}/auth"
token_endpoint = "{provider}/token"
revocation_endpoint = "{provider}/token/revocation"
client_id = "moat-upstream"
client_secret_env = "MOAT_TEST_GH_SECRET"
scopes = ["openid", "repo"]
"#,
        api = upstream.api,
        provider = upstream.issuer,
    );
    // Moat signs browsers in at the MCP authorization server, whose
    // endpoints and keys it finds in its metadata. No public_url: the
    // pages are where Moat listens.
    let sign_in =
        "sign_in = { client_id = \"moat\", client_secret_env = \"MOAT_TEST_SIGN_IN_SECRET\" }";
    let resource = moat_tests::auth::tenant_resource("acme");
    let admin = moat_tests::free_port();
    let dir = Sandbox::builder()
        .toml(&format!(
            "[audit]\nfile = \"audit.jsonl\"\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n"
        ))
        .toml(&credentials("", &[gh]))
        .toml(&moat_tests::auth::tenant_auth_at(
            "acme",
            &upstream.mcp,
            sign_in,
            &resource,
            "[\"testbed.*\"]",
        ))
        .toml(&moat_tests::auth::tenant_plugin(
            "acme", "testbed", &testbed, &grants,
        ))
        .write();
    let server = MoatServer::start_with(
        dir.path(),
        "127.0.0.1:0",
        &[],
        &[
            ("MOAT_TEST_STORE_KEY", &hex::encode(STORE_KEY)),
            ("MOAT_TEST_GH_SECRET", "upstream-secret-0123456789"),
            ("MOAT_TEST_SIGN_IN_SECRET", "sign-in-secret-0123456789"),
        ],
    );
    let base = server.base.clone();
    upstream.redirect_to(&base, &key);
    let store = Store::new(dir.path().join("creds"), &STORE_KEY);
    let token = |subject: &str| {
        let mut claims = moat_tests::auth::claims(&upstream.mcp, &resource, "tools:read");
        claims["sub"] = json!(subject);
        key.sign(&claims)
    };
    let url = format!("{base}/t/acme/mcp");
    let python = |step: &str, subject: &str| {
        moat_tests::external::run_python(
            std::path::Path::new(env!("CARGO_TARGET_TMPDIR")),
            "connect.py",
            |command| {
                command.args([
                    "--url",
                    &url,
                    "--token",
                    &token(subject),
                    "--subject",
                    subject,
                ]);
                command.args(["--api", &upstream.api, "--step", step]);
            },
            || format!("moat's log:\n{}", server.log()),
        )
    };

    // Alice is asked to connect, signs in at the provider as alice-gh,
    // and her next calls reach the API as alice-gh.
    let said = python("connect", "alice");
    for line in [
        "without url elicitation: the link is in the error",
        "url elicitation mode=legacy: asked, declined",
        "url elicitation mode=auto: asked, declined",
        "a link opened by another user: refused",
        "the form without signing in: refused",
        "signed in as the caller: the link's page",
        "a link as a sign-in's state: refused",
        "a sign-in finished in another browser: refused",
        "declined at the provider: nothing connected",
        "connected, back at /connect/callback/gh",
        "connected during the call mode=auto: login=alice-gh token=",
        "after connecting mode=legacy: login=alice-gh token=",
    ] {
        assert!(said.contains(line), "{line:?} in:\n{said}");
    }
    let first = said
        .lines()
        .find_map(|l| l.strip_prefix("after connecting mode=legacy: "))
        .unwrap()
        .to_string();

    // Bob has connected nothing: he is asked, whatever alice did.
    assert!(python("call", "bob").contains("tool error needs_connection"));

    // Alice's access token expires: the next call refreshes it with the
    // provider, stores the new one, and goes through.
    let owner = Owner {
        tenant: Some("acme".into()),
        issuer: upstream.mcp.clone(),
        subject: "alice".into(),
        connection: "gh".into(),
    };
    let mut stored = store.get(&owner).unwrap().expect("alice's credential");
    assert!(stored.refresh_token.is_some(), "{stored:?}");
    let old_secret = stored.secret.clone();
    stored.expires_at = Some(moat_tests::auth::now() - 10);
    store.put(&owner, &stored).unwrap();
    let refreshed = python("call", "alice");
    let line = refreshed
        .lines()
        .find_map(|l| l.strip_prefix("result "))
        .unwrap_or_else(|| panic!("{refreshed}"));
    assert!(line.starts_with("login=alice-gh token="), "{line}");
    assert_ne!(line, first, "a refreshed token is another token");
    let now_stored = store.get(&owner).unwrap().unwrap();
    assert_ne!(now_stored.secret, old_secret);
    assert!(!now_stored.expired(), "{now_stored:?}");

    // Alice revokes it herself; her next call asks her again.
    let http = reqwest::Client::new();
    let revoke = |bearer: Option<String>| {
        let mut request = http.delete(format!("{base}/connections/gh"));
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        request.send()
    };
    // Revoked at the provider too: the API no longer takes the token.
    let at_api = || {
        http.get(format!("{}/user", upstream.api))
            .bearer_auth(&now_stored.secret)
            .send()
    };
    assert_eq!(at_api().await.unwrap().status(), 200);
    assert_eq!(revoke(None).await.unwrap().status(), 401);
    assert_eq!(revoke(Some(token("alice"))).await.unwrap().status(), 204);
    // On a task of its own, after the answer.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while at_api().await.unwrap().status() != 401 {
        assert!(
            std::time::Instant::now() < deadline,
            "still valid at the provider"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(revoke(Some(token("alice"))).await.unwrap().status(), 404);
    assert_eq!(store.get(&owner).unwrap(), None);
    assert!(python("call", "alice").contains("tool error needs_connection"));

    // A client of 2025-11-25 with a session is asked on the call's own
    // stream; she connects again while the call waits.
    let said = python("reconnect", "alice");
    assert!(
        said.contains("connected during the call mode=legacy: login=alice-gh token="),
        "{said}"
    );
    let reconnected = store.get(&owner).unwrap().expect("connected again");

    // The provider revokes her grant behind Moat's back: the API refuses
    // the token (the plugin sees its 401), Moat marks the credential for
    // refresh, the refresh is refused too, and her next call asks her to
    // connect again.
    for (token, hint) in [
        (
            reconnected.refresh_token.as_deref().unwrap(),
            "refresh_token",
        ),
        (reconnected.secret.as_str(), "access_token"),
    ] {
        let revoked = http
            .post(format!("{}/token/revocation", upstream.issuer))
            .basic_auth("moat-upstream", Some("upstream-secret-0123456789"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={token}&token_type_hint={hint}"))
            .send()
            .await
            .unwrap();
        assert_eq!(revoked.status(), 200);
    }
    // A token stored in the last minute is not refreshed for a 401 (a
    // plugin could provoke one with every request); an older one is.
    let said = python("call", "alice");
    assert!(said.contains("result who are you?"), "{said}");
    assert_eq!(store.get(&owner).unwrap().unwrap(), reconnected);
    let aged = Credential {
        stored_at: reconnected.stored_at - 120,
        ..reconnected.clone()
    };
    store.put(&owner, &aged).unwrap();
    let said = python("call", "alice");
    assert!(said.contains("result who are you?"), "{said}");
    assert_eq!(store.get(&owner).unwrap().unwrap().expires_at, Some(0));
    assert!(python("call", "alice").contains("tool error needs_connection"));

    // Nothing of the user's tokens is in Moat's log.
    let log = server.log();
    for secret in [&now_stored.secret, &old_secret, &reconnected.secret] {
        assert!(!log.contains(secret.as_str()), "{log}");
    }

    // The audit log has what happened at the pages, for whom.
    let records = moat_tests::audit_records(&dir.path().join("audit.jsonl"));
    let events: Vec<String> = records
        .iter()
        .filter(|r| r["tool"] == "gh" && r["method"].is_string())
        .map(|r| {
            format!(
                "{} {} {} {}",
                r["method"], r["subject"], r["outcome"], r["kind"]
            )
        })
        .collect();
    for event in [
        r#""connect" "alice" "refused" "wrong_user""#,
        r#""connect" "alice" "refused" "not_signed_in""#,
        r#""connect" "alice" "refused" "other_browser""#,
        r#""connect" "alice" "refused" "provider_refused""#,
        r#""connect" "alice" "ok" "connected""#,
        r#""revoke" "alice" "ok" "revoked""#,
    ] {
        assert!(events.iter().any(|e| e == event), "{event} in {events:#?}");
    }
    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    for secret in [&now_stored.secret, &old_secret, &reconnected.secret] {
        assert!(!audit.contains(secret.as_str()));
    }

    // And the metrics count what happened to credentials.
    let metrics = moat_tests::metrics(admin).await;
    let count = |event: &str| {
        let name = format!(r#"moat_credential_events_total{{connection="gh",event="{event}"}}"#);
        moat_tests::sample(&metrics, &name).unwrap_or(0.0)
    };
    for (event, at_least) in [
        ("connected", 2.0),
        ("revoked", 1.0),
        ("refreshed", 1.0),
        ("refused_upstream", 1.0),
        ("refresh_failed", 1.0),
        ("injected", 4.0),
        ("missing", 4.0),
    ] {
        assert!(count(event) >= at_least, "{event}: {metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_stdio_the_local_user_types_a_key_into_a_local_page() {
    let (other, _) = elsewhere().await;
    let (api, api_seen) = upstream(other).await;
    let testbed = moat_tests::plugin_wasm("testbed").display().to_string();
    let dir = Sandbox::builder()
        .toml(&credentials("", &[api_key("gh", &api, "")]))
        .toml(&format!(
            r#"[[plugin]]
name = "testbed"
source = {testbed:?}
[plugin.grants]
allow_hosts = ["{api}"]
connections = ["gh"]
"#
        ))
        .write();
    let mut command = tokio::process::Command::new(moat_tests::moat_bin());
    command
        .args(["serve", "--stdio", "--config"])
        .arg(dir.path().join("moat.toml"))
        .env("MOAT_TEST_STORE_KEY", hex::encode(STORE_KEY))
        .current_dir(dir.path());
    let client = ().serve(rmcp::transport::TokioChildProcess::new(command).unwrap()).await.unwrap();

    // The call is answered with a link to a page on this machine.
    let user = format!("{api}/user");
    let (failed, text) = call_text(&client, "testbed.request", json!({ "url": user })).await;
    assert!(failed && text.starts_with("needs_connection: "), "{text}");
    let link = &text[text.find("http://127.0.0.1:").expect(&text)..];
    assert!(link.contains("/connect/"), "{link}");
    assert!(api_seen.all().is_empty(), "nothing was sent without a key");

    // The user opens it, types the key, and the next call uses it.
    let browser = reqwest::Client::new();
    let page = browser.get(link).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(page.contains("type=\"password\" name=\"key\""), "{page}");
    let saved = browser
        .post(link)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("key=alice-token")
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status(), 200);
    assert!(saved.text().await.unwrap().contains("Connected"));
    let answer = request(&client, &user, &[]).await;
    assert!(answer.contains("login=alice"), "{answer}");
    assert_eq!(api_seen.all(), ["Bearer alice-token -"]);

    // It belongs to the local user; an altered link connects nothing.
    let store = Store::new(dir.path().join("creds"), &STORE_KEY);
    let local = Owner {
        tenant: None,
        issuer: "local".into(),
        subject: "local".into(),
        connection: "gh".into(),
    };
    assert_eq!(store.get(&local).unwrap().unwrap().secret, "alice-token");

    // The upstream stops taking the key (revoked there, say): the call is
    // answered with the link again, and what is stored stays until the
    // user connects anew (a plugin that provokes a 401 deletes nothing).
    let stale = Credential {
        secret: "revoked-token".into(),
        refresh_token: None,
        expires_at: None,
        stored_at: moat_tests::auth::now(),
    };
    store.put(&local, &stale).unwrap();
    let (failed, text) = call_text(&client, "testbed.request", json!({ "url": user })).await;
    assert!(failed && text.starts_with("needs_connection: "), "{text}");
    assert!(text.contains("/connect/"), "{text}");
    assert_eq!(api_seen.all().last().unwrap(), "Bearer revoked-token -");
    assert_eq!(store.get(&local).unwrap().unwrap().secret, "revoked-token");

    let altered = format!("{link}x");
    let refused = browser.get(&altered).send().await.unwrap();
    assert_eq!(refused.status(), 400);
    assert!(refused.text().await.unwrap().contains("not valid"));

    // The operator revokes the local user's credential.
    let revoked = std::process::Command::new(moat_tests::moat_bin())
        .args(["connections", "revoke", "--local", "--config"])
        .arg(dir.path().join("moat.toml"))
        .env("MOAT_TEST_STORE_KEY", hex::encode(STORE_KEY))
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&revoked.stdout);
    assert!(revoked.status.success(), "{printed}");
    assert_eq!(printed, "revoked: gh of local\n");
    assert_eq!(store.get(&local).unwrap(), None);
    client.cancel().await.unwrap();
}

/// A provider's token endpoint that answers refreshes slowly (so that
/// replicas refreshing at once would overlap) and counts them; its
/// tokens are the ones [`upstream`] takes.
async fn counting_token_endpoint() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    let refreshes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = refreshes.clone();
    let app = Router::new().route(
        "/token",
        axum::routing::post(move |body: String| {
            let counted = counted.clone();
            async move {
                assert!(body.contains("grant_type=refresh_token"), "{body}");
                let n = counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                axum::Json(json!({
                    "access_token": "alice-token",
                    "token_type": "Bearer",
                    "expires_in": 3600,
                    "refresh_token": format!("rotated-{n}"),
                }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, refreshes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_sharing_a_limit_store_refresh_a_credential_once() {
    let redis = moat_tests::redis::RedisServer::start();
    let key = TestKey::new("k1", 16);
    let issuer = TestIssuer::start(&[&key]).await;
    let (other, _) = elsewhere().await;
    let (api, api_seen) = upstream(other).await;
    let (provider, refreshes) = counting_token_endpoint().await;
    let shared = tempfile::tempdir().unwrap();
    let creds = shared.path().join("creds");
    let testbed = moat_tests::plugin_wasm("testbed").display().to_string();
    let grants = format!("allow_hosts = [\"{api}\"]\nconnections = [\"gh\"]");
    let gh = format!(
        "[[connection]]\nname = \"gh\"\nkind = \"oauth2\"\nhosts = [\"{api}\"]\n\
         authorization_endpoint = \"{provider}/auth\"\ntoken_endpoint = \"{provider}/token\"\n\
         client_id = \"moat\"\n"
    );
    let replicas: Vec<_> = (0..2)
        .map(|_| {
            let dir = Sandbox::builder()
                .toml(&format!("[limits]\nbackend = \"{}\"\n", redis.url))
                .toml(&credentials_in(
                    &format!(
                        "dir = {:?}\nverify_browser_user = false",
                        creds.display().to_string()
                    ),
                    std::slice::from_ref(&gh),
                ))
                .toml(&tenant_with_plugin(
                    "acme", &issuer, "testbed", &testbed, &grants,
                ))
                .write();
            let server = MoatServer::start_with(
                dir.path(),
                "127.0.0.1:0",
                &[],
                &[("MOAT_TEST_STORE_KEY", &hex::encode(STORE_KEY))],
            );
            (dir, server)
        })
        .collect();

    // Alice's token has expired; calls on both replicas need it at once.
    let store = Store::new(creds, &STORE_KEY);
    let owner = Owner {
        tenant: Some("acme".into()),
        issuer: issuer.base.clone(),
        subject: "alice".into(),
        connection: "gh".into(),
    };
    let expired = Credential {
        secret: "expired-token".into(),
        refresh_token: Some("r0".into()),
        expires_at: Some(moat_tests::auth::now() - 10),
        stored_at: moat_tests::auth::now() - 100,
    };
    store.put(&owner, &expired).unwrap();
    let mut clients = Vec::new();
    for (_, server) in &replicas {
        for _ in 0..2 {
            clients.push(tenant_client(&server.base, "acme", &issuer, &key, "alice").await);
        }
    }
    let user = format!("{api}/user");
    let answers = futures::future::join_all(clients.iter().map(|c| request(c, &user, &[]))).await;
    for answer in &answers {
        assert!(
            answer.starts_with("200\n") && answer.contains("login=alice"),
            "{answer}"
        );
    }
    // One refresh among both replicas: a provider that rotates refresh
    // tokens would take a second use of r0 as theft.
    assert_eq!(refreshes.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert!(
        api_seen
            .all()
            .iter()
            .all(|s| s.starts_with("Bearer alice-token"))
    );
    let stored = store.get(&owner).unwrap().unwrap();
    assert_eq!(stored.refresh_token.as_deref(), Some("rotated-0"));
    for client in clients {
        client.cancel().await.unwrap();
    }
}
