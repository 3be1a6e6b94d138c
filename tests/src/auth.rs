//! A real token issuer for tests: Ed25519 keys, JWTs signed with them, and
//! a JWKS plus RFC 8414 metadata served over HTTP on 127.0.0.1.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use base64::Engine as _;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// A signing key with its key id.
pub struct TestKey {
    /// The `kid` its tokens carry.
    pub kid: &'static str,
    signing: SigningKey,
}

impl TestKey {
    /// A key derived from `seed` (distinct seeds, distinct keys).
    pub fn new(kid: &'static str, seed: u8) -> TestKey {
        TestKey {
            kid,
            signing: SigningKey::from_bytes(&[seed; 32]),
        }
    }

    /// The public key as a JWK.
    pub fn jwk(&self) -> Value {
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(self.signing.verifying_key().to_bytes());
        json!({ "kty": "OKP", "crv": "Ed25519", "x": x, "kid": self.kid, "alg": "EdDSA" })
    }

    /// The private key as a JWK, for an issuer in another process that
    /// signs with it too.
    pub fn private_jwk(&self) -> Value {
        let mut jwk = self.jwk();
        jwk["d"] =
            json!(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.signing.to_bytes()));
        jwk
    }

    /// A JWT over `claims`.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.into());
        let der = self.signing.to_pkcs8_der().unwrap();
        encode(&header, claims, &EncodingKey::from_ed_der(der.as_bytes())).unwrap()
    }
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The resource URI (the audience) of tenant `name` in these tests.
pub fn tenant_resource(name: &str) -> String {
    format!("http://moat.test/t/{name}/mcp")
}

/// Tenant `name` trusting `issuer`, whose scope `tools:read` may call
/// every tool of its one plugin, `plugin` from `source`, granted `grants`
/// (TOML lines).
pub fn tenant_with_plugin(
    name: &str,
    issuer: &TestIssuer,
    plugin: &str,
    source: &str,
    grants: &str,
) -> String {
    let auth = tenant_auth(
        name,
        issuer,
        &tenant_resource(name),
        &format!("[\"{plugin}.*\"]"),
    );
    format!("{auth}\n{}", tenant_plugin(name, plugin, source, grants))
}

/// Plugin `plugin` of tenant `name`, from `source`, granted `grants` (TOML
/// lines).
pub fn tenant_plugin(name: &str, plugin: &str, source: &str, grants: &str) -> String {
    format!(
        "[[tenants.{name}.plugin]]\nname = \"{plugin}\"\nsource = {source:?}\n\
         [tenants.{name}.plugin.grants]\n{grants}\n"
    )
}

/// A client of tenant `name` at `server_base`, as `subject` with a token
/// `key` signed for `issuer`.
pub async fn tenant_client(
    server_base: &str,
    name: &str,
    issuer: &TestIssuer,
    key: &TestKey,
    subject: &str,
) -> crate::client::Client {
    use rmcp::ServiceExt;
    use rmcp::transport::StreamableHttpClientTransport;
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
    let mut token = claims(&issuer.base, &tenant_resource(name), "tools:read");
    token["sub"] = json!(subject);
    let config =
        StreamableHttpClientTransportConfig::with_uri(format!("{server_base}/t/{name}/mcp"))
            .auth_header(key.sign(&token));
    ().serve(StreamableHttpClientTransport::from_config(config))
        .await
        .unwrap()
}

/// `[tenants.<name>.auth]` trusting `issuer` (EdDSA keys at its `/keys`)
/// for `resource`, with one rule: scope `tools:read` may call `tools` (a
/// TOML array).
pub fn tenant_auth(name: &str, issuer: &TestIssuer, resource: &str, tools: &str) -> String {
    let jwks = format!("jwks_uri = \"{}/keys\"", issuer.base);
    tenant_auth_at(name, &issuer.base, &jwks, resource, tools)
}

/// `[tenants.<name>.auth]` trusting the issuer at `base` (EdDSA keys where
/// `more`, TOML lines, says, or else in its metadata) for `resource`, with
/// one rule: scope `tools:read` may call `tools` (a TOML array).
pub fn tenant_auth_at(name: &str, base: &str, more: &str, resource: &str, tools: &str) -> String {
    format!(
        r#"[tenants.{name}.auth]
issuer = "{base}"
resource = "{resource}"
algorithms = ["EdDSA"]
scopes_supported = ["tools:read"]
{more}

[[tenants.{name}.auth.rule]]
scopes = ["tools:read"]
tools = {tools}
"#
    )
}

/// Claims for `issuer`, audience `aud`, with `scope`, valid for 5 minutes.
pub fn claims(issuer: &str, aud: &str, scope: &str) -> Value {
    json!({ "iss": issuer, "aud": aud, "sub": "svc-account", "client_id": "test-client",
            "exp": now() + 300, "nbf": now() - 5, "scope": scope })
}

/// A running issuer; tests may change the key set it serves.
#[derive(Clone)]
pub struct TestIssuer {
    /// `http://127.0.0.1:<port>`, also its `iss`.
    pub base: String,
    /// The JWKS served at `/keys`; `None` makes it answer 500.
    pub jwks: Arc<Mutex<Option<Value>>>,
}

async fn jwks(State(issuer): State<TestIssuer>) -> Result<axum::Json<Value>, StatusCode> {
    issuer
        .jwks
        .lock()
        .unwrap()
        .clone()
        .map(axum::Json)
        .ok_or(StatusCode::INTERNAL_SERVER_ERROR)
}

impl TestIssuer {
    /// Serves `keys` at `/keys` and RFC 8414 metadata pointing there.
    pub async fn start(keys: &[&TestKey]) -> TestIssuer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let issuer = TestIssuer {
            base: base.clone(),
            jwks: Arc::new(Mutex::new(Some(
                json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() }),
            ))),
        };
        let metadata = json!({ "issuer": base, "jwks_uri": format!("{base}/keys") });
        let app = Router::new()
            .route("/keys", get(jwks))
            .route(
                "/.well-known/oauth-authorization-server",
                get(move || async move { axum::Json(metadata) }),
            )
            .with_state(issuer.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        issuer
    }

    /// Replaces the served key set.
    pub fn serve_keys(&self, keys: &[&TestKey]) {
        *self.jwks.lock().unwrap() =
            Some(json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() }));
    }
}
