//! `[auth]` and `[[auth.rule]]`: who issues tokens for this endpoint, what
//! they must say, and which tools each scope or role unlocks.

use crate::auth::policy::{Policy, Rule, ToolPattern, UriPattern};
use crate::auth::token::TokenRules;
use crate::auth::{AuthConfig, SignIn};
use crate::diagnostics::{ConfigError, Source};
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use std::time::Duration;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuth {
    issuer: Spanned<String>,
    jwks_uri: Option<Spanned<String>>,
    resource: Spanned<String>,
    #[serde(default)]
    algorithms: Option<Spanned<Vec<Spanned<String>>>>,
    leeway_s: Option<Spanned<u64>>,
    #[serde(default)]
    scopes_supported: Vec<String>,
    challenge_scopes: Option<Vec<Spanned<String>>>,
    roles_claim: Option<String>,
    hmac_secret_env: Option<Spanned<String>>,
    authorization_servers: Option<Vec<Spanned<String>>>,
    jwks_refetch_interval_s: Option<Spanned<u64>>,
    #[serde(default)]
    require_jwt_access_token: bool,
    max_token_lifetime_s: Option<Spanned<u64>>,
    #[serde(default, rename = "rule")]
    rules: Vec<RawRule>,
    sign_in: Option<RawSignIn>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSignIn {
    client_id: Spanned<String>,
    client_secret_env: Option<Spanned<String>>,
    authorization_endpoint: Option<Spanned<String>>,
    token_endpoint: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    tools: Vec<Spanned<String>>,
    #[serde(default)]
    resources: Vec<Spanned<String>>,
    #[serde(default)]
    prompts: Vec<Spanned<String>>,
}

/// Algorithms accepted when `algorithms` is not written.
const DEFAULT_ALGORITHMS: &[Algorithm] = &[Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];

pub(super) fn parse(src: &Source, raw: RawAuth) -> Result<AuthConfig, ConfigError> {
    let url = |value: &Spanned<String>, key: &str| -> Result<String, ConfigError> {
        let parsed = url::Url::parse(value.get_ref()).ok().filter(|u| {
            u.scheme() == "https"
                || (u.scheme() == "http" && crate::credentials::loopback(u.host_str()))
        });
        match parsed {
            Some(_) => Ok(value.get_ref().clone()),
            None => Err(src.error(
                value.span(),
                format!("{key} = {:?} is not an https:// URL", value.get_ref()),
                "write the full URL, such as \"https://auth.example.com\" (http:// only for a loopback test server)",
            )),
        }
    };
    let issuer = url(&raw.issuer, "issuer")?;
    // The resource URI names this endpoint (it is what `aud` must carry);
    // plain http is allowed for it, since Moat may sit behind a proxy.
    let resource = match url::Url::parse(raw.resource.get_ref()) {
        Ok(u)
            if matches!(u.scheme(), "http" | "https")
                && u.host().is_some()
                && u.fragment().is_none() =>
        {
            raw.resource.get_ref().clone()
        }
        _ => {
            return Err(src.error(
                raw.resource.span(),
                format!(
                    "resource = {:?} is not an absolute http(s) URL",
                    raw.resource.get_ref()
                ),
                "write this endpoint's public URL, such as \"https://tools.example.com/mcp\"",
            ));
        }
    };
    let jwks_uri = raw
        .jwks_uri
        .as_ref()
        .map(|j| url(j, "jwks_uri"))
        .transpose()?;
    let authorization_servers = match &raw.authorization_servers {
        Some(servers) => servers
            .iter()
            .map(|s| url(s, "authorization_servers"))
            .collect::<Result<_, _>>()?,
        None => vec![issuer.clone()],
    };

    let algorithms = match &raw.algorithms {
        None => DEFAULT_ALGORITHMS.to_vec(),
        Some(list) => list
            .get_ref()
            .iter()
            .map(|name| {
                name.get_ref().parse::<Algorithm>().map_err(|_| {
                    src.error(
                        name.span(),
                        format!("algorithm {:?} is not supported", name.get_ref()),
                        "use RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA (or HS256 with hmac_secret_env)",
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    let hmac = algorithms
        .iter()
        .any(|a| matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512));
    let hmac_secret = match (&raw.hmac_secret_env, hmac) {
        (Some(var), true) => {
            Some(
                std::env::var(var.get_ref())
                    .map_err(|_| {
                        src.error(
                        var.span(),
                        format!("hmac_secret_env names {:?}, which is not set", var.get_ref()),
                        "set that environment variable to the shared secret before starting Moat",
                    )
                    })?
                    .into_bytes(),
            )
        }
        (None, true) => {
            let span = raw
                .algorithms
                .as_ref()
                .map_or(raw.issuer.span(), |a| a.span());
            return Err(src.error(
                span,
                "an HMAC algorithm is allowed but no shared secret is configured",
                "add hmac_secret_env = \"NAME\" naming the variable that holds the issuer's shared secret, or remove HS* from algorithms",
            ));
        }
        (Some(var), false) => {
            return Err(src.error(
                var.span(),
                "hmac_secret_env is set but no HMAC algorithm is allowed",
                "add \"HS256\" to algorithms, or remove hmac_secret_env",
            ));
        }
        (None, false) => None,
    };

    // Every pattern of a rule, parsed, or the error at the first bad one.
    fn patterns<P>(
        src: &Source,
        written: &[Spanned<String>],
        what: &str,
        parse: fn(&str) -> Option<P>,
        hint: &str,
    ) -> Result<Vec<P>, ConfigError> {
        written
            .iter()
            .map(|pattern| {
                parse(pattern.get_ref()).ok_or_else(|| {
                    src.error(
                        pattern.span(),
                        format!("{what} pattern {:?} is not valid", pattern.get_ref()),
                        hint,
                    )
                })
            })
            .collect()
    }
    let mut rules = Vec::with_capacity(raw.rules.len());
    for rule in raw.rules {
        let tools = patterns(
            src,
            &rule.tools,
            "tool",
            ToolPattern::parse,
            "use \"*\", \"prefix.*\" or a tool's name as clients see it, such as \"files.read\"",
        )?;
        let prompts = patterns(
            src,
            &rule.prompts,
            "prompt",
            ToolPattern::parse,
            "use \"*\", \"prefix.*\" or a prompt's name as clients see it",
        )?;
        let resources = patterns(
            src,
            &rule.resources,
            "resource",
            UriPattern::parse,
            "use \"*\", a URI prefix ending in `*` such as \"notes://public/*\", or an exact URI or URI template",
        )?;
        rules.push(Rule {
            scopes: rule.scopes.into_iter().collect(),
            roles: rule.roles.into_iter().collect(),
            tools,
            resources,
            prompts,
        });
    }

    Ok(AuthConfig {
        token: TokenRules {
            issuer,
            resource,
            algorithms,
            leeway_s: match &raw.leeway_s {
                Some(v) => src.ranged(v, "leeway_s", 0, 600)?,
                None => 30,
            },
            roles_claim: raw.roles_claim,
            hmac_secret,
            require_at_jwt: raw.require_jwt_access_token,
            max_lifetime_s: raw
                .max_token_lifetime_s
                .as_ref()
                .map(|v| src.ranged(v, "max_token_lifetime_s", 1, 31_536_000))
                .transpose()?,
        },
        jwks_uri,
        authorization_servers,
        challenge_scopes: match raw.challenge_scopes {
            None => raw.scopes_supported.clone(),
            Some(scopes) => {
                for scope in &scopes {
                    if !raw.scopes_supported.contains(scope.get_ref()) {
                        return Err(src.error(
                            scope.span(),
                            format!(
                                "challenge scope {:?} is not in scopes_supported",
                                scope.get_ref()
                            ),
                            "list it in scopes_supported too, or correct its spelling",
                        ));
                    }
                }
                scopes.into_iter().map(Spanned::into_inner).collect()
            }
        },
        scopes_supported: raw.scopes_supported,
        jwks_refetch_interval: Duration::from_secs(match &raw.jwks_refetch_interval_s {
            Some(v) => src.ranged(v, "jwks_refetch_interval_s", 1, 86_400)?,
            None => 60,
        }),
        policy: Policy { rules },
        sign_in: match raw.sign_in {
            None => None,
            Some(sign_in) => Some(SignIn {
                client_id: {
                    let id = sign_in.client_id;
                    // Its ID tokens name it in `aud`: were it the resource,
                    // they would pass for access tokens here.
                    if id.get_ref().is_empty() || id.get_ref() == raw.resource.get_ref() {
                        return Err(src.error(
                            id.span(),
                            format!("sign_in client_id {:?} is empty or this endpoint's resource", id.get_ref()),
                            "write the client ID the issuer registered for Moat's sign-in",
                        ));
                    }
                    id.into_inner()
                },
                client_secret: sign_in
                    .client_secret_env
                    .map(|var| {
                        std::env::var(var.get_ref()).map_err(|_| {
                            src.error(
                                var.span(),
                                format!(
                                    "client_secret_env names {:?}, which is not set",
                                    var.get_ref()
                                ),
                                "set that environment variable to Moat's client secret at the issuer before starting Moat",
                            )
                        })
                    })
                    .transpose()?,
                authorization_endpoint: sign_in
                    .authorization_endpoint
                    .map(|u| url(&u, "authorization_endpoint"))
                    .transpose()?,
                token_endpoint: sign_in
                    .token_endpoint
                    .map(|u| url(&u, "token_endpoint"))
                    .transpose()?,
            }),
        },
    })
}
