//! One protected MCP endpoint: who may call it (a bearer token from its
//! issuer, meant for its resource URI) and what each caller may use.
//! Transports ask it to authenticate a request and to authorize a tool;
//! it answers with the caller or with the challenge to send back.

use super::AuthConfig;
use super::keys::IssuerKeys;
use super::policy::{Caller, Policy};
use super::token::metadata_path;
use super::token::{TokenError, TokenRules};
use crate::credentials::OAuth2;
use http::{HeaderMap, StatusCode, Uri};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Verified tokens kept, at most; past it the cache is emptied.
const MAX_CACHED_TOKENS: usize = 10_000;

/// The state of one protected endpoint.
pub struct Endpoint {
    config: AuthConfig,
    keys: IssuerKeys,
    /// Verified tokens by SHA-256, until they expire: a client sends the
    /// same token with every request, and a signature check costs far more
    /// than a hash.
    verified: Mutex<HashMap<[u8; 32], Caller>>,
    /// `[auth.sign_in]` with its endpoints found, once found.
    sign_in: tokio::sync::OnceCell<OAuth2>,
    /// When finding them last failed, and why.
    sign_in_failed: Mutex<Option<(std::time::Instant, String)>>,
}

/// How long a failure to find the sign-in's endpoints is kept.
const DISCOVERY_RETRY: std::time::Duration = std::time::Duration::from_secs(30);

/// `configured` with the endpoints `issuer`'s metadata names where it
/// does not; the metadata must say the issuer takes PKCE with S256
/// (without it a code that leaks, through a browser's history or a
/// proxy's log, could be redeemed by whoever holds it).
async fn sign_in_client(configured: &super::SignIn, issuer: &str) -> Result<OAuth2, String> {
    let metadata = match (
        &configured.authorization_endpoint,
        &configured.token_endpoint,
    ) {
        (Some(_), Some(_)) => Value::Null,
        _ => {
            let (_, metadata) = super::keys::issuer_metadata(issuer)
                .await
                .map_err(|e| format!("the issuer's metadata: {e:#}"))?;
            let s256 = metadata
                .get("code_challenge_methods_supported")
                .and_then(Value::as_array)
                .is_some_and(|m| m.iter().any(|m| m == "S256"));
            if !s256 {
                return Err("the issuer's metadata does not say it takes PKCE with S256".into());
            }
            metadata
        }
    };
    // Codes and the client's secret cross to these: over TLS, or on this
    // machine.
    let endpoint = |set: &Option<String>, key: &str| {
        set.clone()
            .or_else(|| metadata.get(key)?.as_str().map(str::to_string))
            .filter(|u| {
                url::Url::parse(u).is_ok_and(|u| {
                    u.scheme() == "https"
                        || (u.scheme() == "http" && crate::credentials::loopback(u.host_str()))
                })
            })
            .ok_or_else(|| format!("the issuer's metadata names no https:// {key}"))
    };
    Ok(OAuth2 {
        authorization_endpoint: endpoint(
            &configured.authorization_endpoint,
            "authorization_endpoint",
        )?,
        token_endpoint: endpoint(&configured.token_endpoint, "token_endpoint")?,
        client_id: configured.client_id.clone(),
        client_secret: configured.client_secret.clone(),
        scopes: vec!["openid".into()],
        revocation_endpoint: None,
    })
}

/// A refusal: the status and the `WWW-Authenticate` value to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// 400, 401 or 403.
    pub status: StatusCode,
    /// The `WWW-Authenticate` header value.
    pub header: String,
    /// What was refused and why, for the response body and the log.
    pub reason: String,
}

impl Endpoint {
    /// An endpoint protected as `config` says.
    pub fn new(config: AuthConfig) -> Self {
        let keys = IssuerKeys::new(
            &config.token.issuer,
            config.jwks_uri.as_deref(),
            config.jwks_refetch_interval,
        );
        Endpoint {
            config,
            keys,
            verified: Mutex::new(HashMap::new()),
            sign_in: tokio::sync::OnceCell::new(),
            sign_in_failed: Mutex::new(None),
        }
    }

    /// The configuration it enforces.
    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// Where the protected-resource metadata of this endpoint is served:
    /// the resource URI with `/.well-known/oauth-protected-resource`
    /// inserted before its path (RFC 9728).
    pub fn metadata_url(&self) -> String {
        match url::Url::parse(&self.config.token.resource) {
            Ok(url) => format!(
                "{}{}",
                url.origin().ascii_serialization(),
                metadata_path(&self.config.token.resource)
            ),
            Err(_) => self.config.token.resource.clone(),
        }
    }

    /// The path part of [`Self::metadata_url`].
    pub fn metadata_path(&self) -> String {
        metadata_path(&self.config.token.resource)
    }

    /// The RFC 9728 metadata document.
    pub fn metadata(&self) -> Value {
        json!({
            "resource": self.config.token.resource,
            "authorization_servers": self.config.authorization_servers,
            "scopes_supported": self.config.scopes_supported,
            "bearer_methods_supported": ["header"],
        })
    }

    fn challenge(
        &self,
        status: StatusCode,
        error: Option<&str>,
        scope: Option<String>,
        reason: String,
    ) -> Challenge {
        let mut header = format!("Bearer resource_metadata=\"{}\"", self.metadata_url());
        let scope = scope.or_else(|| {
            (!self.config.challenge_scopes.is_empty())
                .then(|| self.config.challenge_scopes.join(" "))
        });
        if let Some(scope) = scope {
            header.push_str(&format!(", scope=\"{scope}\""));
        }
        if let Some(error) = error {
            header.push_str(&format!(
                ", error=\"{error}\", error_description=\"{}\"",
                reason.replace('"', "'")
            ));
        }
        Challenge {
            status,
            header,
            reason,
        }
    }

    /// The caller a request's bearer token describes, or the challenge.
    /// Tokens are accepted only from the `Authorization` header.
    pub async fn authenticate(&self, uri: &Uri, headers: &HeaderMap) -> Result<Caller, Challenge> {
        if uri
            .query()
            .is_some_and(|q| q.split('&').any(|p| p.starts_with("access_token=")))
        {
            return Err(self.challenge(
                StatusCode::BAD_REQUEST,
                Some("invalid_request"),
                None,
                "tokens are accepted only in the Authorization header, never in the URL".into(),
            ));
        }
        if headers.get_all(http::header::AUTHORIZATION).iter().count() > 1 {
            // Two credentials, even identical ones, leave it open which one
            // a proxy or an application would have used (RFC 6750 §2.1
            // allows one): refuse rather than pick.
            return Err(self.challenge(
                StatusCode::BAD_REQUEST,
                Some("invalid_request"),
                None,
                "the request carries more than one Authorization header".into(),
            ));
        }
        let Some(value) = headers.get(http::header::AUTHORIZATION) else {
            return Err(self.challenge(
                StatusCode::UNAUTHORIZED,
                None,
                None,
                "this endpoint needs a bearer token".into(),
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|t| !t.is_empty());
        let Some(token) = token else {
            return Err(self.challenge(
                StatusCode::UNAUTHORIZED,
                Some("invalid_request"),
                None,
                "the Authorization header must be `Bearer <token>`".into(),
            ));
        };
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if let Some(caller) = self.verified.lock().expect("token cache").get(&digest)
            && now <= caller.expires_at.saturating_add(self.config.token.leeway_s)
        {
            return Ok(caller.clone());
        }
        let caller = self
            .keys
            .validate(token, &self.config.token)
            .await
            .map_err(|e| {
                self.challenge(
                    StatusCode::UNAUTHORIZED,
                    Some("invalid_token"),
                    None,
                    e.to_string(),
                )
            })?;
        let mut verified = self.verified.lock().expect("token cache");
        if verified.len() >= MAX_CACHED_TOKENS {
            verified.retain(|_, c| now <= c.expires_at);
            if verified.len() >= MAX_CACHED_TOKENS {
                verified.clear();
            }
        }
        verified.insert(digest, caller.clone());
        Ok(caller)
    }

    /// Moat's OpenID Connect client at the issuer (`[auth.sign_in]`),
    /// asking for `openid` only, with the endpoints the issuer's metadata
    /// names where the config does not; `None` without `[auth.sign_in]`.
    /// A failure to find them is kept for a while: every link opened
    /// meanwhile would otherwise fetch the metadata again.
    pub async fn sign_in(&self) -> Option<Result<&OAuth2, String>> {
        let configured = self.config.sign_in.as_ref()?;
        if let Some(found) = self.sign_in.get() {
            return Some(Ok(found));
        }
        if let Some((at, why)) = &*self.sign_in_failed.lock().expect("sign-in failure")
            && at.elapsed() < DISCOVERY_RETRY
        {
            return Some(Err(why.clone()));
        }
        let issuer = &self.config.token.issuer;
        let found = self
            .sign_in
            .get_or_try_init(|| sign_in_client(configured, issuer))
            .await;
        if let Err(why) = &found {
            *self.sign_in_failed.lock().expect("sign-in failure") =
                Some((std::time::Instant::now(), why.clone()));
        }
        Some(found)
    }

    /// Who an OpenID Connect ID token from the issuer names, checked as a
    /// token is (signature by the issuer's keys, `iss`, `exp`, `nbf`),
    /// and as OpenID Connect asks of a client: `aud` holds Moat's client ID
    /// exactly, `azp` (required with several audiences) is that client,
    /// and `nonce` is the one the sign-in was sent with.
    pub async fn validate_id_token(&self, token: &str, nonce: &str) -> Result<Caller, String> {
        let client_id = self
            .config
            .sign_in
            .as_ref()
            .map_or("", |s| s.client_id.as_str());
        let rules = TokenRules {
            resource: client_id.to_string(),
            roles_claim: None,
            hmac_secret: None,
            require_at_jwt: false,
            max_lifetime_s: None,
            ..self.config.token.clone()
        };
        let caller = self
            .keys
            .validate(token, &rules)
            .await
            .map_err(|e| e.to_string())?;
        // Signed by the issuer (checked above): what `validate` does not
        // look at.
        let claims: serde_json::Map<String, Value> =
            jsonwebtoken::dangerous::insecure_decode_claims(token)
                .map_err(|_| TokenError::Malformed.to_string())?;
        let audiences: Vec<&str> = match claims.get("aud") {
            Some(Value::String(one)) => vec![one],
            Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let azp = claims.get("azp").and_then(Value::as_str);
        if !audiences.contains(&client_id)
            || azp.is_some_and(|a| a != client_id)
            || (audiences.len() > 1 && azp.is_none())
        {
            return Err("the ID token is not meant for this server's sign-in".into());
        }
        if claims.get("nonce").and_then(Value::as_str) != Some(nonce) {
            return Err("the ID token is not the answer to this sign-in (its nonce)".into());
        }
        Ok(caller)
    }

    /// The 403 for a caller that may not use `tool` under `policy` (the
    /// endpoint's now: a reload may have changed its rules).
    pub fn forbidden(&self, tool: &str, policy: Option<&Policy>) -> Challenge {
        let scope = policy
            .unwrap_or(&self.config.policy)
            .scopes_for(tool)
            .map(|s| s.iter().cloned().collect::<Vec<_>>().join(" "));
        self.challenge(
            StatusCode::FORBIDDEN,
            Some("insufficient_scope"),
            scope,
            format!("the token does not grant the tool `{tool}`"),
        )
    }
}
