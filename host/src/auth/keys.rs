//! The issuer's signing keys: fetched from its JWKS (configured, or found
//! in its RFC 8414 / OpenID Connect metadata), cached, and fetched again
//! when a token names an unknown key, at most once per interval. When the
//! issuer cannot be reached the cached keys stay in use.

use super::policy::Caller;
use super::token::{TokenError, TokenRules, validate};
use crate::tls::{Io, TLS};
use anyhow::{Context, bail};
use http_body_util::{BodyExt, Empty, Limited};
use jsonwebtoken::jwk::JwkSet;
use rustls::pki_types::ServerName;
use serde_json::Value;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use wasmtime_wasi_http::io::TokioIo;

/// Largest JWKS or metadata document accepted.
const MAX_DOCUMENT_BYTES: usize = 1 << 20;
/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// One issuer's keys, shared by every request of an endpoint.
pub struct IssuerKeys {
    issuer: String,
    /// The configured JWKS URI; `None`: discover it.
    configured: Option<String>,
    /// The least time between two fetches.
    interval: Duration,
    keys: RwLock<Arc<JwkSet>>,
    /// When keys were last fetched (successfully or not), and the JWKS URI
    /// discovery found.
    state: tokio::sync::Mutex<FetchState>,
    /// Fetches so far, for tests and metrics.
    fetches: Mutex<u64>,
}

#[derive(Default)]
struct FetchState {
    last: Option<Instant>,
    discovered: Option<String>,
}

impl IssuerKeys {
    /// Keys of `issuer`, from `jwks_uri` or discovered; none fetched yet.
    pub fn new(issuer: &str, jwks_uri: Option<&str>, interval: Duration) -> Self {
        IssuerKeys {
            issuer: issuer.to_string(),
            configured: jwks_uri.map(str::to_string),
            interval,
            keys: RwLock::new(Arc::new(JwkSet { keys: Vec::new() })),
            state: tokio::sync::Mutex::new(FetchState::default()),
            fetches: Mutex::new(0),
        }
    }

    /// How many times the keys were fetched.
    pub fn fetches(&self) -> u64 {
        *self.fetches.lock().expect("fetch counter")
    }

    /// Validates `token`, fetching the keys first when none are cached or
    /// when the token names a key the cache does not have (rate-limited).
    pub async fn validate(&self, token: &str, rules: &TokenRules) -> Result<Caller, TokenError> {
        let keys = self.keys.read().expect("key cache").clone();
        match validate(token, &keys, rules) {
            Err(e) if e.is_unknown_key() => {
                self.refresh_if_due().await;
                // Compared with what this token was checked against, not with
                // whether this request fetched: requests that waited on
                // another's fetch use its keys too.
                let fresh = self.keys.read().expect("key cache").clone();
                if Arc::ptr_eq(&fresh, &keys) {
                    Err(e)
                } else {
                    validate(token, &fresh, rules)
                }
            }
            other => other,
        }
    }

    /// Fetches the keys unless the last fetch was within the interval.
    async fn refresh_if_due(&self) {
        let mut state = self.state.lock().await;
        if state.last.is_some_and(|t| t.elapsed() < self.interval) {
            return;
        }
        state.last = Some(Instant::now());
        *self.fetches.lock().expect("fetch counter") += 1;
        match self.fetch(&mut state).await {
            Ok(set) => *self.keys.write().expect("key cache") = Arc::new(set),
            Err(e) => tracing::warn!(
                issuer = self.issuer,
                "could not fetch the issuer's keys; keeping the cached ones: {e:#}"
            ),
        }
    }

    async fn fetch(&self, state: &mut FetchState) -> anyhow::Result<JwkSet> {
        let uri = match (&self.configured, &state.discovered) {
            (Some(uri), _) | (None, Some(uri)) => uri.clone(),
            (None, None) => {
                let uri = discover_jwks_uri(&self.issuer).await?;
                state.discovered = Some(uri.clone());
                uri
            }
        };
        let document = get_json(&uri).await?;
        serde_json::from_value(document).with_context(|| format!("{uri} is not a JWK set"))
    }
}

/// Finds `jwks_uri` in the issuer's metadata.
async fn discover_jwks_uri(issuer_id: &str) -> anyhow::Result<String> {
    let (candidate, doc) = issuer_metadata(issuer_id).await?;
    match doc.get("jwks_uri").and_then(Value::as_str) {
        Some(uri) => Ok(uri.to_string()),
        None => bail!("{candidate} has no jwks_uri"),
    }
}

/// The issuer's RFC 8414 metadata, or else its OpenID Connect discovery
/// document, and where it was found.
pub async fn issuer_metadata(issuer_id: &str) -> anyhow::Result<(String, Value)> {
    let issuer = issuer_id.trim_end_matches('/');
    let url = url::Url::parse(issuer)?;
    let origin = url.origin().ascii_serialization();
    let path = url.path().trim_end_matches('/');
    let candidates = [
        format!("{origin}/.well-known/oauth-authorization-server{path}"),
        format!("{issuer}/.well-known/openid-configuration"),
    ];
    let mut last = None;
    for candidate in candidates {
        match get_json(&candidate).await {
            // RFC 8414 §3.3 (and OpenID Connect Discovery §4.3): metadata
            // naming another issuer is not this issuer's, whoever served it.
            Ok(doc) if doc.get("issuer").and_then(Value::as_str) != Some(issuer_id) => {
                last = Some(anyhow::anyhow!(
                    "{candidate} names the issuer {}, not {issuer_id}; it is not used",
                    doc.get("issuer").unwrap_or(&Value::Null)
                ));
            }
            Ok(doc) => return Ok((candidate, doc)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.expect("two candidates were tried"))
}

/// GETs a JSON document over http or https.
async fn get_json(uri: &str) -> anyhow::Result<Value> {
    tokio::time::timeout(FETCH_TIMEOUT, get_json_inner(uri))
        .await
        .with_context(|| format!("fetching {uri} timed out"))?
}

async fn get_json_inner(uri: &str) -> anyhow::Result<Value> {
    let url = url::Url::parse(uri).with_context(|| format!("{uri} is not a URL"))?;
    let host = url.host_str().context("the URL has no host")?.to_string();
    let port = url.port_or_known_default().context("the URL has no port")?;
    let tcp = TcpStream::connect((host.trim_matches(['[', ']']), port))
        .await
        .with_context(|| format!("connecting to {host}:{port}"))?;
    let io: Box<dyn Io> = match url.scheme() {
        "https" => {
            let name = ServerName::try_from(host.trim_matches(['[', ']']).to_string())?;
            Box::new(TLS.connect(name, tcp).await?)
        }
        "http" => Box::new(tcp),
        other => bail!("scheme {other} is not supported"),
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(connection);
    let path = &url[url::Position::BeforePath..];
    let request = http::Request::get(if path.is_empty() { "/" } else { path })
        .header(
            http::header::HOST,
            url[url::Position::BeforeHost..url::Position::AfterPort].to_string(),
        )
        .header(http::header::ACCEPT, "application/json")
        .body(Empty::<bytes::Bytes>::new())?;
    let response = sender.send_request(request).await?;
    if !response.status().is_success() {
        bail!("{uri} answered {}", response.status());
    }
    let body = Limited::new(response.into_body(), MAX_DOCUMENT_BYTES)
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("reading {uri}: {e}"))?
        .to_bytes();
    serde_json::from_slice(&body).with_context(|| format!("{uri} did not answer JSON"))
}
