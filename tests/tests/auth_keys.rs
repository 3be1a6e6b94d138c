//! The issuer's keys, fetched from a real JWKS server on 127.0.0.1:
//! fetched on first use, refetched once for an unknown key (rate-limited),
//! rotated, discovered from RFC 8414 metadata, and kept when the issuer
//! fails.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use base64::Engine as _;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use moat::auth::keys::IssuerKeys;
use moat::auth::token::{TokenError, TokenRules};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const RESOURCE: &str = "http://127.0.0.1/mcp";

struct Key {
    kid: &'static str,
    signing: SigningKey,
}

impl Key {
    fn new(kid: &'static str, seed: u8) -> Key {
        Key {
            kid,
            signing: SigningKey::from_bytes(&[seed; 32]),
        }
    }

    fn jwk(&self) -> Value {
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(self.signing.verifying_key().to_bytes());
        json!({ "kty": "OKP", "crv": "Ed25519", "x": x, "kid": self.kid, "alg": "EdDSA" })
    }

    fn token(&self, issuer: &str) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let claims = json!({ "iss": issuer, "aud": RESOURCE, "sub": "svc", "exp": now + 300, "scope": "tools:read" });
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.into());
        let der = self.signing.to_pkcs8_der().unwrap();
        encode(&header, &claims, &EncodingKey::from_ed_der(der.as_bytes())).unwrap()
    }
}

/// What the issuer serves; tests change it while running.
#[derive(Clone)]
struct Issuer {
    jwks: Arc<Mutex<Option<Value>>>,
}

async fn jwks(State(issuer): State<Issuer>) -> Result<axum::Json<Value>, StatusCode> {
    issuer
        .jwks
        .lock()
        .unwrap()
        .clone()
        .map(axum::Json)
        .ok_or(StatusCode::INTERNAL_SERVER_ERROR)
}

async fn start_issuer(keys: &[&Key]) -> (Issuer, String) {
    let issuer = Issuer {
        jwks: Arc::new(Mutex::new(Some(
            json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() }),
        ))),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let metadata = json!({ "issuer": base, "jwks_uri": format!("{base}/keys") });
    let app = Router::new()
        .route("/keys", get(jwks))
        .route(
            "/.well-known/oauth-authorization-server",
            get(move || async move { axum::Json(metadata) }),
        )
        .with_state(issuer.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (issuer, base)
}

fn rules(issuer: &str) -> TokenRules {
    TokenRules {
        issuer: issuer.into(),
        resource: RESOURCE.into(),
        algorithms: vec![Algorithm::EdDSA],
        leeway_s: 5,
        roles_claim: None,
        hmac_secret: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_fetched_once_and_refetched_once_per_interval_for_unknown_kids() {
    let old = Key::new("old", 1);
    let new = Key::new("new", 2);
    let (issuer, base) = start_issuer(&[&old]).await;
    let keys = IssuerKeys::new(
        &base,
        Some(&format!("{base}/keys")),
        Duration::from_secs(3600),
    );
    let rules = rules(&base);

    let caller = keys.validate(&old.token(&base), &rules).await.unwrap();
    assert_eq!(caller.subject, "svc");
    keys.validate(&old.token(&base), &rules).await.unwrap();
    assert_eq!(keys.fetches(), 1, "a cached key needs no fetch");

    // The issuer rotates, but the refetch budget was spent on the first
    // fetch: an unknown kid is refused without another fetch.
    *issuer.jwks.lock().unwrap() = Some(json!({ "keys": [old.jwk(), new.jwk()] }));
    assert_eq!(
        keys.validate(&new.token(&base), &rules).await,
        Err(TokenError::UnknownKey)
    );
    assert_eq!(keys.fetches(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_is_picked_up_and_a_failing_issuer_keeps_the_cache() {
    let old = Key::new("old", 1);
    let new = Key::new("new", 2);
    let (issuer, base) = start_issuer(&[&old]).await;
    let keys = IssuerKeys::new(&base, None, Duration::from_millis(200));
    let rules = rules(&base);
    keys.validate(&old.token(&base), &rules).await.unwrap();

    tokio::time::sleep(Duration::from_millis(250)).await;
    *issuer.jwks.lock().unwrap() = Some(json!({ "keys": [old.jwk(), new.jwk()] }));
    keys.validate(&new.token(&base), &rules).await.unwrap();
    assert_eq!(keys.fetches(), 2);

    // The issuer breaks: an unknown kid triggers a failing fetch, and the
    // keys already cached keep working.
    tokio::time::sleep(Duration::from_millis(250)).await;
    *issuer.jwks.lock().unwrap() = None;
    let stranger = Key::new("stranger", 3);
    assert_eq!(
        keys.validate(&stranger.token(&base), &rules).await,
        Err(TokenError::UnknownKey)
    );
    assert_eq!(keys.fetches(), 3);
    keys.validate(&old.token(&base), &rules).await.unwrap();
    keys.validate(&new.token(&base), &rules).await.unwrap();
}
