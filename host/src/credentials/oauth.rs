//! Moat as an OAuth 2.1 client of a connection's provider: the
//! authorization request with PKCE (S256), the code exchange, and
//! refreshing a token before it expires.

use super::OAuth2;
use super::store::Credential;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::{SecureRandom, SystemRandom};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::sync::OnceLock;
use std::time::Duration;

/// Bytes of a token endpoint's answer Moat reads.
const MAX_ANSWER_BYTES: usize = 64 << 10;

/// A PKCE code verifier (32 random bytes, base64url) and its S256
/// challenge.
pub fn pkce() -> (String, String) {
    let mut bytes = [0; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system's random numbers");
    let verifier = URL_SAFE_NO_PAD.encode(bytes);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// Where to send the user's browser to sign in at the provider, with
/// `extra` parameters.
pub fn authorization_url(
    oauth: &OAuth2,
    redirect_uri: &str,
    state: &str,
    challenge: &str,
    extra: &[(&str, &str)],
) -> String {
    let mut url = url::Url::parse(&oauth.authorization_endpoint).expect("checked at load");
    {
        let mut query = url.query_pairs_mut();
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", &oauth.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("state", state)
            .append_pair("code_challenge", challenge)
            .append_pair("code_challenge_method", "S256");
        if !oauth.scopes.is_empty() {
            query.append_pair("scope", &oauth.scopes.join(" "));
        }
        query.extend_pairs(extra);
    }
    url.into()
}

/// The credential a code from the provider is worth.
pub async fn exchange_code(
    oauth: &OAuth2,
    code: &str,
    redirect_uri: &str,
    verifier: &str,
) -> Result<Credential, String> {
    let answer = redeem(oauth, code, redirect_uri, verifier).await?;
    Ok(answer.credential(None))
}

/// The ID token a code from an OpenID Connect provider is worth (not yet
/// validated).
pub async fn sign_in(
    oauth: &OAuth2,
    code: &str,
    redirect_uri: &str,
    verifier: &str,
) -> Result<String, String> {
    let answer = redeem(oauth, code, redirect_uri, verifier).await?;
    answer
        .id_token
        .ok_or_else(|| "the issuer's answer has no ID token".to_string())
}

async fn redeem(
    oauth: &OAuth2,
    code: &str,
    redirect_uri: &str,
    verifier: &str,
) -> Result<Answer, String> {
    token_request(
        oauth,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
        ],
    )
    .await
}

/// A fresh credential for `old`, which holds a refresh token.
pub async fn refresh(oauth: &OAuth2, old: &Credential) -> Result<Credential, String> {
    let token = old
        .refresh_token
        .as_deref()
        .ok_or("nothing to refresh with")?;
    let answer = token_request(
        oauth,
        &[("grant_type", "refresh_token"), ("refresh_token", token)],
    )
    .await?;
    Ok(answer.credential(Some(token)))
}

/// A token endpoint's answer (RFC 6749 §5.1); extra fields are ignored.
#[derive(Deserialize)]
struct Answer {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    id_token: Option<String>,
}

impl Answer {
    /// The credential it gives; `old_refresh` is kept when the provider
    /// does not rotate refresh tokens (it sends none back).
    fn credential(self, old_refresh: Option<&str>) -> Credential {
        let now = super::now();
        Credential {
            secret: self.access_token,
            refresh_token: self.refresh_token.or(old_refresh.map(str::to_string)),
            expires_at: self.expires_in.map(|s| now.saturating_add(s)),
            stored_at: now,
        }
    }
}

/// An error answer (RFC 6749 §5.2).
#[derive(Deserialize)]
struct Refused {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

async fn token_request(oauth: &OAuth2, form: &[(&str, &str)]) -> Result<Answer, String> {
    let mut response = post(oauth, &oauth.token_endpoint, form)
        .await
        .map_err(|e| format!("the provider's token endpoint cannot be reached: {e}"))?;
    let status = response.status();
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("the provider's answer broke off: {e}"))?
    {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err("the provider's answer is too large".into());
        }
        body.extend_from_slice(&chunk);
    }
    if !status.is_success() {
        return Err(match serde_json::from_slice::<Refused>(&body) {
            Ok(r) => format!(
                "the provider refused: {}{}",
                r.error,
                r.error_description
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            ),
            Err(_) => format!("the provider answered HTTP {status}"),
        });
    }
    let answer: Answer = serde_json::from_slice(&body)
        .map_err(|_| "the provider's answer has no access token".to_string())?;
    if answer
        .token_type
        .as_deref()
        .is_some_and(|t| !t.eq_ignore_ascii_case("bearer"))
    {
        return Err("the provider gave a token that is not a bearer token".into());
    }
    if answer.access_token.is_empty() {
        return Err("the provider gave an empty access token".into());
    }
    Ok(answer)
}

/// POSTs `form` to `endpoint` of `oauth`'s provider as its client.
async fn post(
    oauth: &OAuth2,
    endpoint: &str,
    form: &[(&str, &str)],
) -> reqwest::Result<reqwest::Response> {
    let mut request = client().post(endpoint);
    let mut form: Vec<(&str, &str)> = form.to_vec();
    match &oauth.client_secret {
        // client_secret_basic, which every server must take (RFC 6749
        // §2.3.1): both parts form-encoded, then base64.
        Some(secret) => {
            let encode =
                |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let basic = STANDARD.encode(format!("{}:{}", encode(&oauth.client_id), encode(secret)));
            request = request.header("authorization", format!("Basic {basic}"));
        }
        None => form.push(("client_id", &oauth.client_id)),
    }
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    request
        .header("accept", "application/json")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
}

/// Revokes `credential`'s tokens at the provider (RFC 7009), when it has
/// a revocation endpoint: the refresh token (which ends the grant at most
/// providers), then the access token (for those where it does not).
pub async fn revoke(oauth: &OAuth2, credential: &Credential) -> Result<(), String> {
    let Some(endpoint) = &oauth.revocation_endpoint else {
        return Ok(());
    };
    let tokens = [
        (credential.refresh_token.as_deref(), "refresh_token"),
        (Some(credential.secret.as_str()), "access_token"),
    ];
    // Each is tried whatever became of the one before: a provider that
    // takes only one kind still revokes that one.
    let mut failures = Vec::new();
    for (token, hint) in tokens {
        let Some(token) = token else { continue };
        let form = [("token", token), ("token_type_hint", hint)];
        match post(oauth, endpoint, &form).await {
            Ok(answer) if answer.status().is_success() => {}
            Ok(answer) => failures.push(format!("{hint}: HTTP {}", answer.status())),
            Err(e) => failures.push(format!("{hint}: cannot be reached: {e}")),
        }
    }
    match failures.is_empty() {
        true => Ok(()),
        false => Err(format!(
            "the revocation endpoint failed ({})",
            failures.join("; ")
        )),
    }
}

/// The client of token endpoints: Mozilla's and the system's CA roots
/// (plain http only where a connection's endpoint is on loopback, which
/// the config allows), no redirects followed, bounded in time.
fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        crate::source::install_crypto();
        let roots = crate::source::roots()
            .into_iter()
            .filter_map(|der| reqwest::Certificate::from_der(&der).ok());
        reqwest::Client::builder()
            .tls_certs_only(roots)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(20))
            .user_agent(concat!("moat/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a client with rustls and ring builds")
    })
}
