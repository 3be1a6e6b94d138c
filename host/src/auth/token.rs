//! Bearer token validation against an issuer's keys. Pure: the key set is
//! given; fetching and caching it is the caller's business.
//!
//! A token is accepted only when its algorithm is allowed (never `none`;
//! HMAC only with a shared secret configured for the issuer, so a public
//! key can never serve as an HMAC secret), its signature verifies with the
//! issuer key its `kid` names, `iss` is the issuer, `aud` contains this
//! endpoint's resource URI (RFC 8707; scheme and host compared without
//! regard to case), `exp` has not passed and `nbf` has, within the leeway.

use super::policy::Caller;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde_json::{Map, Value};
use std::collections::BTreeSet;

/// What an endpoint requires of its tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRules {
    /// The only accepted `iss`.
    pub issuer: String,
    /// This endpoint's canonical resource URI; `aud` must contain it.
    pub resource: String,
    /// Accepted signing algorithms.
    pub algorithms: Vec<Algorithm>,
    /// Clock skew tolerated for `exp` and `nbf`, in seconds.
    pub leeway_s: u64,
    /// The claim holding roles (a string or an array of strings).
    pub roles_claim: Option<String>,
    /// A shared secret, the only way HMAC algorithms are accepted.
    pub hmac_secret: Option<Vec<u8>>,
    /// Accept only JWT access tokens (`typ` `at+jwt`, RFC 9068), so that
    /// an ID token or another JWT from the same issuer is refused.
    pub require_at_jwt: bool,
    /// The longest lifetime (`exp` minus `iat`) accepted, in seconds.
    pub max_lifetime_s: Option<u64>,
}

/// Why a token was refused. The message is safe to send to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a JWT, or its header or claims are unreadable.
    #[error("the token is malformed")]
    Malformed,
    /// The header's algorithm is not accepted here.
    #[error("the token's algorithm {0} is not accepted")]
    AlgorithmNotAllowed(String),
    /// No issuer key has the token's `kid`.
    #[error("the token is signed with an unknown key")]
    UnknownKey,
    /// The signature does not verify.
    #[error("the token's signature is invalid")]
    BadSignature,
    /// `exp` has passed.
    #[error("the token has expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `iss` is not this endpoint's issuer.
    #[error("the token was issued by another issuer")]
    WrongIssuer,
    /// `aud` does not name this endpoint.
    #[error("the token is not meant for this resource")]
    WrongAudience,
    /// A required claim is missing.
    #[error("the token has no `{0}` claim")]
    MissingClaim(&'static str),
    /// The header names extensions that must be understood (RFC 7515
    /// §4.1.11); Moat understands none.
    #[error("the token's header requires extensions this server does not understand: {0}")]
    CriticalExtension(String),
    /// `typ` is not `at+jwt` where JWT access tokens are required.
    #[error("the token is not a JWT access token (typ must be at+jwt)")]
    NotAnAccessToken,
    /// `exp` is further from `iat` than the endpoint allows.
    #[error("the token lives {lifetime} s, longer than the {max} s this endpoint accepts")]
    TooLongLived {
        /// `exp - iat`.
        lifetime: u64,
        /// The configured maximum.
        max: u64,
    },
    /// An identity claim holds a NUL byte: a plugin reading it as a C
    /// string (wasi-libc's environment) would see a shorter name, maybe
    /// another user's.
    #[error("the token's `{0}` claim contains a NUL byte")]
    NulInClaim(&'static str),
}

impl TokenError {
    /// Whether fetching the issuer's keys again could help.
    pub fn is_unknown_key(&self) -> bool {
        matches!(self, TokenError::UnknownKey)
    }
}

/// Validates `token` with `keys` under `rules`; returns the caller it
/// describes.
pub fn validate(token: &str, keys: &JwkSet, rules: &TokenRules) -> Result<Caller, TokenError> {
    let header = decode_header(token).map_err(|_| TokenError::Malformed)?;
    let alg = header.alg;
    if let Some(crit) = &header.crit {
        // An empty list is itself invalid (RFC 7515 §4.1.11).
        let names: Vec<String> = crit.iter().map(|c| format!("{c:?}")).collect();
        return Err(TokenError::CriticalExtension(names.join(", ")));
    }
    if rules.require_at_jwt
        && !header.typ.as_deref().is_some_and(|t| {
            t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt")
        })
    {
        return Err(TokenError::NotAnAccessToken);
    }
    if !rules.algorithms.contains(&alg) {
        return Err(TokenError::AlgorithmNotAllowed(format!("{alg:?}")));
    }
    let key = if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
        let secret = rules
            .hmac_secret
            .as_ref()
            .ok_or_else(|| TokenError::AlgorithmNotAllowed(format!("{alg:?}")))?;
        DecodingKey::from_secret(secret)
    } else {
        issuer_key(keys, header.kid.as_deref(), alg)?
    };

    let mut validation = Validation::new(alg);
    validation.algorithms = vec![alg];
    validation.leeway = rules.leeway_s;
    validation.validate_nbf = true;
    validation.set_issuer(&[rules.issuer.as_str()]);
    // The audience is compared below, with RFC 8707's case rules.
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    let claims = decode::<Map<String, Value>>(token, &key, &validation)
        .map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::ImmatureSignature => TokenError::NotYetValid,
                ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
                ErrorKind::InvalidSignature => TokenError::BadSignature,
                ErrorKind::MissingRequiredClaim(claim) => {
                    TokenError::MissingClaim(match claim.as_str() {
                        "exp" => "exp",
                        "iss" => "iss",
                        _ => "aud",
                    })
                }
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidKeyFormat => {
                    TokenError::BadSignature
                }
                _ => TokenError::Malformed,
            }
        })?
        .claims;

    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => return Err(TokenError::MissingClaim("aud")),
    };
    let resource = canonical_resource(&rules.resource);
    if !audiences.iter().any(|a| canonical_resource(a) == resource) {
        return Err(TokenError::WrongAudience);
    }
    if let Some(max) = rules.max_lifetime_s {
        let iat = claims
            .get("iat")
            .and_then(Value::as_u64)
            .ok_or(TokenError::MissingClaim("iat"))?;
        let exp = claims
            .get("exp")
            .and_then(Value::as_u64)
            .unwrap_or(u64::MAX);
        // Measured from when it was issued, and from now: an `iat` set in
        // the future does not stretch the lifetime.
        let now = jsonwebtoken::get_current_timestamp();
        let lifetime = exp.saturating_sub(iat).max(exp.saturating_sub(now));
        if lifetime > max.saturating_add(rules.leeway_s) {
            return Err(TokenError::TooLongLived { lifetime, max });
        }
    }

    for claim in ["sub", "client_id", "azp"] {
        if claims
            .get(claim)
            .and_then(Value::as_str)
            .is_some_and(|v| v.contains('\0'))
        {
            return Err(TokenError::NulInClaim(claim));
        }
    }

    let strings = |claim: &str| -> BTreeSet<String> {
        match claims.get(claim) {
            Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            _ => BTreeSet::new(),
        }
    };
    let mut scopes = strings("scope");
    scopes.extend(strings("scp"));
    let roles = rules
        .roles_claim
        .as_deref()
        .map(strings)
        .unwrap_or_default();
    // Both reach plugins granted caller_identity, as environment values.
    for (claim, set) in [("scope", &scopes), ("roles", &roles)] {
        if set.iter().any(|v| v.contains('\0')) {
            return Err(TokenError::NulInClaim(claim));
        }
    }
    Ok(Caller {
        issuer: claims
            .get("iss")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        subject: claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        client_id: ["client_id", "azp"]
            .iter()
            .find_map(|c| claims.get(*c).and_then(Value::as_str))
            .map(str::to_string),
        scopes,
        roles,
        expires_at: claims.get("exp").and_then(Value::as_u64).unwrap_or(0),
    })
}

/// The key for `kid` (or the only key, when the token names none) that
/// fits `alg`.
fn issuer_key(keys: &JwkSet, kid: Option<&str>, alg: Algorithm) -> Result<DecodingKey, TokenError> {
    let candidates: Vec<_> = keys
        .keys
        .iter()
        .filter(|k| kid.is_none() || k.common.key_id.as_deref() == kid)
        .collect();
    let jwk = match (kid, candidates.as_slice()) {
        (_, [only]) => *only,
        _ => return Err(TokenError::UnknownKey),
    };
    // A key that declares its algorithm is used for that algorithm only.
    if let Some(declared) = jwk.common.key_algorithm
        && format!("{declared:?}") != format!("{alg:?}")
    {
        return Err(TokenError::BadSignature);
    }
    DecodingKey::from_jwk(jwk).map_err(|_| TokenError::UnknownKey)
}

/// A resource URI with scheme and host lowercased and any default port
/// dropped, for comparison; other text (the path) is kept as written.
pub fn canonical_resource(uri: &str) -> String {
    match url::Url::parse(uri) {
        Ok(url) => {
            let mut out = format!("{}://{}", url.scheme(), url.host_str().unwrap_or(""));
            if let Some(port) = url.port() {
                out.push_str(&format!(":{port}"));
            }
            let path = url.path();
            if path != "/" {
                out.push_str(path);
            }
            out
        }
        Err(_) => uri.to_string(),
    }
}

/// The path of the RFC 9728 metadata for `resource`: its path with
/// `/.well-known/oauth-protected-resource` in front.
pub fn metadata_path(resource: &str) -> String {
    let path = url::Url::parse(resource).map_or(String::new(), |u| u.path().to_string());
    format!(
        "/.well-known/oauth-protected-resource{}",
        path.trim_end_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use ed25519_dalek::SigningKey;
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;
    use std::time::{SystemTime, UNIX_EPOCH};

    const ISSUER: &str = "https://auth.example.test";
    const RESOURCE: &str = "https://tools.example.test/mcp";

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
            json!({ "kty": "OKP", "crv": "Ed25519", "x": x, "kid": self.kid, "alg": "EdDSA", "use": "sig" })
        }

        fn sign(&self, claims: &Value) -> String {
            self.sign_with(claims, |_| {})
        }

        /// Signs with a header `edit` has changed.
        fn sign_with(&self, claims: &Value, edit: impl FnOnce(&mut Header)) -> String {
            let der = self.signing.to_pkcs8_der().unwrap();
            let mut header = Header::new(Algorithm::EdDSA);
            header.kid = Some(self.kid.into());
            edit(&mut header);
            encode(&header, claims, &EncodingKey::from_ed_der(der.as_bytes())).unwrap()
        }
    }

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn claims() -> Value {
        json!({
            "iss": ISSUER, "aud": RESOURCE, "sub": "alice", "client_id": "cli",
            "exp": now() + 300, "nbf": now() - 10, "scope": "tools:read tools:write", "roles": ["admin"],
        })
    }

    fn with(patch: Value) -> Value {
        let mut c = claims();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    }

    fn rules() -> TokenRules {
        TokenRules {
            issuer: ISSUER.into(),
            resource: RESOURCE.into(),
            algorithms: vec![Algorithm::EdDSA, Algorithm::RS256],
            leeway_s: 5,
            roles_claim: Some("roles".into()),
            hmac_secret: None,
            require_at_jwt: false,
            max_lifetime_s: None,
        }
    }

    #[test]
    fn critical_extensions_access_token_type_and_lifetime_are_checked() {
        let key = Key::new("k1", 1);
        let keys = keyset(&[&key]);
        let crit = key.sign_with(&claims(), |h| h.crit = Some(vec!["exp-x".into()]));
        assert!(matches!(
            validate(&crit, &keys, &rules()),
            Err(TokenError::CriticalExtension(names)) if names.contains("exp-x")
        ));
        let empty_crit = key.sign_with(&claims(), |h| h.crit = Some(vec![]));
        assert!(validate(&empty_crit, &keys, &rules()).is_err());

        let strict = TokenRules {
            require_at_jwt: true,
            ..rules()
        };
        let plain = key.sign(&claims());
        assert!(validate(&plain, &keys, &rules()).is_ok());
        assert_eq!(
            validate(&plain, &keys, &strict),
            Err(TokenError::NotAnAccessToken)
        );
        for typ in ["at+jwt", "application/at+JWT"] {
            let token = key.sign_with(&claims(), |h| h.typ = Some(typ.into()));
            assert!(validate(&token, &keys, &strict).is_ok(), "{typ}");
        }

        let short = TokenRules {
            max_lifetime_s: Some(600),
            ..rules()
        };
        let issued =
            |lifetime: u64| with(json!({ "iat": now() - 10, "exp": now() - 10 + lifetime }));
        assert!(validate(&key.sign(&issued(600)), &keys, &short).is_ok());
        assert_eq!(
            validate(&key.sign(&issued(86_400)), &keys, &short),
            Err(TokenError::TooLongLived {
                lifetime: 86_400,
                max: 600
            })
        );
        assert_eq!(
            validate(&key.sign(&claims()), &keys, &short),
            Err(TokenError::MissingClaim("iat"))
        );
        // An `iat` in the future does not make a year-long token short.
        let postdated = with(json!({ "iat": now() + 86_000, "exp": now() + 86_400 }));
        assert!(matches!(
            validate(&key.sign(&postdated), &keys, &short),
            Err(TokenError::TooLongLived { max: 600, .. })
        ));
    }

    fn keyset(keys: &[&Key]) -> JwkSet {
        serde_json::from_value(json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() }))
            .unwrap()
    }

    fn b64(value: &Value) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
    }

    #[test]
    fn a_valid_token_describes_its_caller() {
        let key = Key::new("k1", 1);
        let caller = validate(&key.sign(&claims()), &keyset(&[&key]), &rules()).unwrap();
        assert_eq!(caller.subject, "alice");
        assert_eq!(caller.client_id.as_deref(), Some("cli"));
        assert!(caller.scopes.contains("tools:write"));
        assert!(caller.roles.contains("admin"));
        // An audience array and differently cased scheme and host still match.
        let loud = with(json!({ "aud": ["other", "HTTPS://Tools.Example.Test:443/mcp"] }));
        assert!(validate(&key.sign(&loud), &keyset(&[&key]), &rules()).is_ok());
    }

    #[test]
    fn bad_tokens_are_refused_with_the_reason() {
        let key = Key::new("k1", 1);
        let stranger = Key::new("k1", 2);
        let keys = keyset(&[&key]);
        let good = key.sign(&claims());
        let (head, rest) = good.split_once('.').unwrap();
        let (_, signature) = rest.split_once('.').unwrap();
        let tampered_payload = format!(
            "{head}.{}.{signature}",
            b64(&with(json!({ "sub": "mallory" })))
        );
        let mut sig = signature.to_string();
        sig.replace_range(0..1, if sig.starts_with('A') { "B" } else { "A" });
        let tampered_signature = format!("{head}.{}.{sig}", rest.split_once('.').unwrap().0);
        let none = format!(
            "{}.{}.",
            b64(&json!({ "alg": "none", "typ": "JWT" })),
            b64(&claims())
        );
        // HS256 keyed with the issuer's public key bytes: the classic
        // algorithm-confusion attack.
        let public = key.signing.verifying_key().to_bytes();
        let confused = encode(
            &Header::new(Algorithm::HS256),
            &claims(),
            &EncodingKey::from_secret(&public),
        )
        .unwrap();
        let cases: Vec<(String, TokenError)> = vec![
            (
                key.sign(&with(json!({ "exp": now() - 60 }))),
                TokenError::Expired,
            ),
            (
                key.sign(&with(json!({ "nbf": now() + 60 }))),
                TokenError::NotYetValid,
            ),
            (
                key.sign(&with(json!({ "iss": "https://evil.example" }))),
                TokenError::WrongIssuer,
            ),
            (
                key.sign(&with(
                    json!({ "aud": "https://tools.example.test/t/other/mcp" }),
                )),
                TokenError::WrongAudience,
            ),
            (
                key.sign(&with(json!({ "aud": null }))),
                TokenError::MissingClaim("aud"),
            ),
            (
                key.sign(&with(json!({ "exp": null }))),
                TokenError::MissingClaim("exp"),
            ),
            (stranger.sign(&claims()), TokenError::BadSignature),
            (Key::new("k9", 1).sign(&claims()), TokenError::UnknownKey),
            (tampered_payload, TokenError::BadSignature),
            (tampered_signature, TokenError::BadSignature),
            (none, TokenError::Malformed),
            (confused, TokenError::AlgorithmNotAllowed("HS256".into())),
            ("not.a.token".into(), TokenError::Malformed),
            (
                key.sign(&with(json!({ "sub": "admin\0-not-really" }))),
                TokenError::NulInClaim("sub"),
            ),
            (
                key.sign(&with(json!({ "azp": "cli\0" }))),
                TokenError::NulInClaim("azp"),
            ),
            (
                key.sign(&with(json!({ "scope": ["tools:read", "x\0y"] }))),
                TokenError::NulInClaim("scope"),
            ),
        ];
        for (token, expected) in cases {
            assert_eq!(
                validate(&token, &keys, &rules()),
                Err(expected.clone()),
                "{expected}"
            );
        }
    }

    #[test]
    fn leeway_and_rotation() {
        let old = Key::new("old", 1);
        let new = Key::new("new", 3);
        let just_expired = with(json!({ "exp": now() - 2 }));
        assert!(validate(&old.sign(&just_expired), &keyset(&[&old]), &rules()).is_ok());
        let token = new.sign(&claims());
        assert_eq!(
            validate(&token, &keyset(&[&old]), &rules()),
            Err(TokenError::UnknownKey)
        );
        assert!(validate(&token, &keyset(&[&old, &new]), &rules()).is_ok());
    }

    #[test]
    fn hmac_needs_an_explicit_secret() {
        let mut r = rules();
        r.algorithms.push(Algorithm::HS256);
        let token = encode(
            &Header::new(Algorithm::HS256),
            &claims(),
            &EncodingKey::from_secret(b"s3cret"),
        )
        .unwrap();
        assert_eq!(
            validate(&token, &JwkSet { keys: vec![] }, &r),
            Err(TokenError::AlgorithmNotAllowed("HS256".into()))
        );
        r.hmac_secret = Some(b"s3cret".to_vec());
        assert!(validate(&token, &JwkSet { keys: vec![] }, &r).is_ok());
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// No string, and no three base64url parts, panics the check;
            /// none passes it.
            #[test]
            fn any_string_is_refused(
                token in "\\PC{0,120}",
                parts in prop::collection::vec("[A-Za-z0-9_-]{0,60}", 3),
            ) {
                let keys = keyset(&[&Key::new("k1", 1)]);
                prop_assert!(validate(&token, &keys, &rules()).is_err());
                prop_assert!(validate(&parts.join("."), &keys, &rules()).is_err());
            }

            /// A header and claims of any JSON, signed or not, are refused
            /// or accepted without a panic; a signed token with the right
            /// issuer, audience and times gives back its subject and scopes.
            #[test]
            fn signed_claims_read_back(
                sub in "\\PC{1,30}",
                scopes in prop::collection::btree_set("[a-z:]{1,12}", 0..4),
                garbage in "\\PC{0,40}",
            ) {
                let key = Key::new("k1", 1);
                let keys = keyset(&[&key]);
                let scope = scopes.iter().cloned().collect::<Vec<_>>().join(" ");
                let token = key.sign(&with(json!({ "sub": sub, "scope": scope })));
                let caller = validate(&token, &keys, &rules()).unwrap();
                prop_assert_eq!(caller.subject, sub);
                prop_assert_eq!(caller.scopes, scopes);
                let forged = format!("{}.{}.", b64(&json!({ "alg": "none" })), b64(&json!(garbage)));
                prop_assert!(validate(&forged, &keys, &rules()).is_err());
            }
        }
    }
}
