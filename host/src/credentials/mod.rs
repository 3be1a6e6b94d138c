//! Upstream connections and the callers' credentials for them.
//!
//! The operator declares connections (`[[connection]]`: an OAuth 2.1
//! provider or an API key, the hosts it is for, and where the credential
//! goes in a request) and grants plugins `connections = [...]`. Each
//! caller's credential lives only in the host ([`store`], encrypted at
//! rest); when a plugin's request goes to a connection's host, the
//! outbound hook takes out any credential the plugin set and puts in the
//! caller's ([`inject`]). The plugin never holds it.

pub mod connect;
pub mod inject;
pub mod oauth;
pub mod store;
pub mod ticket;

use crate::capabilities::env::{RawFrom, from_source};
use crate::capabilities::net::allow::{Origin, Scheme};
use crate::diagnostics::{ConfigError, Source};
use inject::Inject;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use store::Store;
use toml::Spanned;

/// One `[[connection]]`.
#[derive(Debug, PartialEq, Eq)]
pub struct Connection {
    /// What grants and pages call it.
    pub name: String,
    /// How a caller gets a credential for it.
    pub kind: Kind,
    /// The origins its credential is sent to (and no others).
    pub hosts: Vec<Origin>,
    /// Where the credential goes in a request.
    pub inject: Inject,
    /// Where callers' credentials are kept.
    pub store: Arc<Store>,
}

impl Connection {
    /// Whether requests to `origin` carry this connection's credential.
    pub fn serves(&self, origin: &Origin) -> bool {
        self.hosts.contains(origin)
    }
}

/// How a caller gets a credential.
#[derive(Debug, PartialEq, Eq)]
pub enum Kind {
    /// The authorization-code flow with PKCE against a provider.
    OAuth2(OAuth2),
    /// The user types a key into Moat's own page.
    ApiKey,
}

/// An OAuth 2.1 provider, with Moat as its client.
#[derive(Clone, PartialEq, Eq)]
pub struct OAuth2 {
    /// Where the user is sent to sign in and consent.
    pub authorization_endpoint: String,
    /// Where codes and refresh tokens are exchanged.
    pub token_endpoint: String,
    /// Moat's client ID at the provider.
    pub client_id: String,
    /// Moat's client secret, when it is a confidential client.
    pub client_secret: Option<String>,
    /// Scopes asked for.
    pub scopes: Vec<String>,
    /// Where tokens are revoked (RFC 7009) when the user or an operator
    /// revokes them in Moat.
    pub revocation_endpoint: Option<String>,
}

impl std::fmt::Debug for OAuth2 {
    /// Without the client secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuth2")
            .field("authorization_endpoint", &self.authorization_endpoint)
            .field("token_endpoint", &self.token_endpoint)
            .field("revocation_endpoint", &self.revocation_endpoint)
            .field("client_id", &self.client_id)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// Deletes `owner`'s credential from `store` and, for an OAuth
/// connection with a revocation endpoint, revokes its tokens at the
/// provider (`background`: on a task of its own, so a client that hangs
/// up does not stop it half-way); whether there was one. The provider's
/// failure is logged, not returned: Moat's copy is gone either way, and
/// the user can revoke the grant at the provider themselves.
pub async fn revoke(
    store: &Arc<Store>,
    connection: Option<&Connection>,
    owner: &store::Owner,
    background: bool,
) -> std::io::Result<bool> {
    // Under the owner's turn to refresh: a refresh under way stores its
    // new tokens first, and those are the ones revoked.
    let _turn = store.refreshing(owner).await;
    let (kept, whose) = (store.clone(), owner.clone());
    let (removed, credential) = tokio::task::spawn_blocking(move || {
        // One that no longer opens (another key, a damaged file) is
        // deleted all the same.
        let credential = kept.get(&whose).ok().flatten();
        Ok::<_, std::io::Error>((kept.remove(&whose)?, credential))
    })
    .await
    .map_err(std::io::Error::other)??;
    if let (true, Some(credential), Some(connection)) = (removed, credential, connection)
        && let Kind::OAuth2(oauth) = &connection.kind
        && oauth.revocation_endpoint.is_some()
    {
        let (oauth, name) = (oauth.clone(), connection.name.clone());
        let work = async move {
            if let Err(why) = oauth::revoke(&oauth, &credential).await {
                tracing::warn!(
                    connection = name,
                    "the provider did not revoke the tokens: {why}"
                );
            }
        };
        match background {
            true => drop(tokio::spawn(work)),
            false => work.await,
        }
    }
    Ok(removed)
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The connections of a config, by name.
pub type Connections = BTreeMap<String, Arc<Connection>>;

/// `[credentials]`: where callers' credentials are kept, and where
/// their browsers reach Moat's connect pages.
#[derive(Debug, Clone)]
pub struct CredentialsConfig {
    /// The encrypted store.
    pub store: Arc<Store>,
    /// The origin users' browsers reach Moat at (and the provider sends
    /// them back to); `None`: the address Moat listens on.
    pub public_url: Option<String>,
    /// Whether the person who opens a connect link must first sign in at
    /// the endpoint's issuer (`[auth.sign_in]`) as the caller it was made
    /// for; only an operator's explicit `false` turns this off.
    pub verify_browser_user: bool,
}

/// `[credentials]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCredentials {
    dir: Spanned<String>,
    key: Spanned<RawFrom>,
    public_url: Option<Spanned<String>>,
    verify_browser_user: Option<bool>,
}

/// `[[connection]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConnection {
    name: Spanned<String>,
    kind: Spanned<String>,
    hosts: Spanned<Vec<Spanned<String>>>,
    authorization_endpoint: Option<Spanned<String>>,
    token_endpoint: Option<Spanned<String>>,
    revocation_endpoint: Option<Spanned<String>>,
    client_id: Option<Spanned<String>>,
    client_secret_env: Option<Spanned<String>>,
    #[serde(default)]
    scopes: Vec<String>,
    inject: Option<Spanned<RawInject>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInject {
    header: Option<String>,
    format: Option<String>,
    query: Option<String>,
}

/// `[credentials]`, its key read now.
pub fn parse_credentials(
    src: &Source,
    raw: Spanned<RawCredentials>,
) -> Result<CredentialsConfig, ConfigError> {
    let span = raw.span();
    let RawCredentials {
        dir,
        key,
        public_url,
        verify_browser_user,
    } = raw.into_inner();
    let public_url = match public_url {
        None => None,
        Some(url) => match url::Url::parse(url.get_ref()) {
            Ok(u)
                if (u.scheme() == "https" || (u.scheme() == "http" && loopback(u.host_str())))
                    && u.path() == "/"
                    && u.query().is_none() =>
            {
                Some(url.get_ref().trim_end_matches('/').to_string())
            }
            _ => {
                return Err(src.error(
                    url.span(),
                    format!("public_url = {:?} is not an https:// origin", url.get_ref()),
                    "write where users' browsers reach Moat, such as \"https://tools.example.com\" (http:// only on loopback)",
                ));
            }
        },
    };
    let key_span = key.span();
    let (text, _) = from_source(src, key_span.clone(), "[credentials] key", key.into_inner())?;
    let key = store::parse_key(&text).ok_or_else(|| {
        src.error(
            key_span,
            "[credentials] key is not 32 bytes as hex or base64",
            "make one with `moat connections key` and keep it where `key` points",
        )
    })?;
    if dir.get_ref().is_empty() {
        return Err(src.error(
            span,
            "[credentials] dir is empty",
            "name a folder, such as \"credentials\"",
        ));
    }
    let dir: PathBuf = src.resolve(dir.get_ref());
    Ok(CredentialsConfig {
        store: Arc::new(Store::new(dir, &key)),
        public_url,
        verify_browser_user: verify_browser_user.unwrap_or(true),
    })
}

/// Every `[[connection]]`, checked; `store` is `[credentials]`'s.
pub fn parse(
    src: &Source,
    raw: Vec<Spanned<RawConnection>>,
    store: Option<&Arc<Store>>,
) -> Result<Connections, ConfigError> {
    let mut connections = Connections::new();
    for entry in raw {
        let span = entry.span();
        let Some(store) = store else {
            return Err(src.error(
                span,
                "a [[connection]] needs [credentials]: where callers' credentials are kept, and the key that encrypts them",
                "add [credentials] with dir = \"credentials\" and key = { from_env = \"MOAT_CREDENTIALS_KEY\" } (make a key with `moat connections key`)",
            ));
        };
        let connection = parse_one(src, entry.into_inner(), store.clone())?;
        let name = connection.name.clone();
        if connections
            .insert(name.clone(), Arc::new(connection))
            .is_some()
        {
            return Err(src.error(
                span,
                format!("connection `{name}` is declared twice"),
                "give each [[connection]] its own name",
            ));
        }
    }
    Ok(connections)
}

fn parse_one(
    src: &Source,
    raw: RawConnection,
    store: Arc<Store>,
) -> Result<Connection, ConfigError> {
    let name = raw.name.get_ref().clone();
    if let Err(why) = crate::config::check_name(&name) {
        return Err(src.error(
            raw.name.span(),
            format!("connection name {name:?} {why}"),
            "use letters, digits, `-` and `_`",
        ));
    }
    let hosts_span = raw.hosts.span();
    let mut hosts = Vec::new();
    for host in raw.hosts.into_inner() {
        let origin = Origin::parse(host.get_ref())
            .map_err(|e| src.error(host.span(), format!("hosts: {}", e.message), e.fix))?;
        if !secure(&origin) {
            return Err(src.error(
                host.span(),
                format!(
                    "hosts: credentials would cross the network in the clear to `{}`",
                    host.get_ref()
                ),
                "use https:// (plain http only for a loopback address)",
            ));
        }
        hosts.push(origin);
    }
    if hosts.is_empty() {
        return Err(src.error(
            hosts_span,
            format!("connection `{name}` names no hosts"),
            "list the origins its credential is for, such as [\"https://api.github.com\"]",
        ));
    }
    let url = |value: &Option<Spanned<String>>, key: &str| -> Result<String, ConfigError> {
        let Some(value) = value else {
            return Err(src.error(
                raw.kind.span(),
                format!("an oauth2 connection needs `{key}`"),
                format!("add {key} = \"https://…\" from the provider's documentation"),
            ));
        };
        match url::Url::parse(value.get_ref()) {
            Ok(u) if u.scheme() == "https" || (u.scheme() == "http" && loopback(u.host_str())) => {
                Ok(value.get_ref().clone())
            }
            _ => Err(src.error(
                value.span(),
                format!("{key} = {:?} is not an https:// URL", value.get_ref()),
                "write the full https:// URL (http:// only for a loopback test server)",
            )),
        }
    };
    let kind = match raw.kind.get_ref().as_str() {
        "oauth2" => {
            let client_secret = match &raw.client_secret_env {
                None => None,
                Some(var) => Some(std::env::var(var.get_ref()).map_err(|_| {
                    src.error(
                        var.span(),
                        format!(
                            "client_secret_env names {}, which is not set",
                            var.get_ref()
                        ),
                        format!("set {} in Moat's environment", var.get_ref()),
                    )
                })?),
            };
            Kind::OAuth2(OAuth2 {
                authorization_endpoint: url(&raw.authorization_endpoint, "authorization_endpoint")?,
                token_endpoint: url(&raw.token_endpoint, "token_endpoint")?,
                client_id: match &raw.client_id {
                    Some(id) if !id.get_ref().is_empty() => id.get_ref().clone(),
                    _ => {
                        return Err(src.error(
                            raw.kind.span(),
                            "an oauth2 connection needs `client_id`",
                            "register Moat as a client at the provider and write its client_id",
                        ));
                    }
                },
                client_secret,
                scopes: raw.scopes,
                revocation_endpoint: raw
                    .revocation_endpoint
                    .is_some()
                    .then(|| url(&raw.revocation_endpoint, "revocation_endpoint"))
                    .transpose()?,
            })
        }
        "api_key" => {
            let stray = [
                (
                    "authorization_endpoint",
                    raw.authorization_endpoint.is_some(),
                ),
                ("token_endpoint", raw.token_endpoint.is_some()),
                ("revocation_endpoint", raw.revocation_endpoint.is_some()),
                ("client_id", raw.client_id.is_some()),
                ("client_secret_env", raw.client_secret_env.is_some()),
                ("scopes", !raw.scopes.is_empty()),
            ];
            if let Some((key, _)) = stray.iter().find(|(_, set)| *set) {
                return Err(src.error(
                    raw.kind.span(),
                    format!("`{key}` belongs to oauth2 connections, and this one is api_key"),
                    format!("remove `{key}`, or write kind = \"oauth2\""),
                ));
            }
            Kind::ApiKey
        }
        other => {
            return Err(src.error(
                raw.kind.span(),
                format!("connection kind {other:?} is not known"),
                "write kind = \"oauth2\" or kind = \"api_key\"",
            ));
        }
    };
    let inject = match raw.inject {
        None => Inject::Header {
            name: http::header::AUTHORIZATION,
            format: "Bearer {token}".into(),
        },
        Some(inject) => parse_inject(src, inject)?,
    };
    Ok(Connection {
        name,
        kind,
        hosts,
        inject,
        store,
    })
}

fn parse_inject(src: &Source, raw: Spanned<RawInject>) -> Result<Inject, ConfigError> {
    let span = raw.span();
    let fail = |message: String| {
        src.error(
            span.clone(),
            message,
            "write inject = { header = \"Authorization\", format = \"Bearer {token}\" }, { header = \"X-Api-Key\" } or { query = \"api_key\" }",
        )
    };
    match raw.into_inner() {
        RawInject {
            header: Some(header),
            format,
            query: None,
        } => {
            let name = http::HeaderName::try_from(header.as_str())
                .map_err(|_| fail(format!("inject: {header:?} is not a header name")))?;
            let format = format.unwrap_or_else(|| match name == http::header::AUTHORIZATION {
                true => "Bearer {token}".into(),
                false => "{token}".into(),
            });
            if format.matches("{token}").count() != 1 {
                return Err(fail(format!(
                    "inject: format {format:?} must hold {{token}} once"
                )));
            }
            if http::HeaderValue::from_str(&format).is_err() {
                return Err(fail(format!(
                    "inject: format {format:?} cannot be a header value"
                )));
            }
            Ok(Inject::Header { name, format })
        }
        RawInject {
            header: None,
            format: None,
            query: Some(query),
        } if !query.is_empty() => Ok(Inject::Query(query)),
        _ => Err(fail(
            "inject must name one header (with an optional format) or one query parameter".into(),
        )),
    }
}

/// Whether a URL's host is this machine: `localhost` or a loopback
/// address (not merely a name that starts `127.`).
pub(crate) fn loopback(host: Option<&str>) -> bool {
    host.is_some_and(|h| {
        h == "localhost"
            || h.trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    })
}

/// Whether a credential may be sent to `origin`: over TLS, or to this
/// machine.
fn secure(origin: &Origin) -> bool {
    use crate::capabilities::net::allow::Host;
    origin.scheme == Scheme::Https
        || match &origin.host {
            Host::Ip(ip) => ip.is_loopback(),
            Host::Name(name) => name == "localhost",
        }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    /// A config with `[credentials]` (unless `store` is false), `connections`
    /// and one plugin granted `grants`.
    fn parse(store: bool, connections: &str, grants: &str) -> Result<Config, String> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.wasm"), b"not really wasm").unwrap();
        std::fs::write(dir.path().join("key"), "ab".repeat(32)).unwrap();
        let credentials = match store {
            true => "[credentials]\ndir = \"creds\"\nkey = { from_file = \"key\" }\n",
            false => "",
        };
        let text = format!(
            "{credentials}{connections}\n[[plugin]]\nname = \"p\"\nsource = \"p.wasm\"\n[plugin.grants]\n{grants}\n"
        );
        Config::parse(&dir.path().join("moat.toml"), &text).map_err(|e| format!("{e}"))
    }

    const GH: &str = "[[connection]]\nname = \"gh\"\nkind = \"oauth2\"\nhosts = [\"https://api.github.com\"]\n\
        authorization_endpoint = \"https://github.com/login/oauth/authorize\"\n\
        token_endpoint = \"https://github.com/login/oauth/access_token\"\nclient_id = \"abc\"\nscopes = [\"repo\"]\n";

    #[test]
    fn a_granted_connection_adds_its_credential_to_hosts_already_allowed() {
        let config = parse(
            true,
            GH,
            "allow_hosts = [\"https://api.github.com\"]\nconnections = [\"gh\"]",
        )
        .unwrap();
        let net = &config.plugins[0].grants.net;
        assert_eq!(net.connections.len(), 1);
        assert_eq!(net.connections[0].name, "gh");
        // Credentials are no grant that names the caller (which stdio
        // never gets): the local user owns their own there.
        assert!(!config.plugins[0].grants.per_caller());
        // The client secret is never printed.
        assert!(!format!("{:?}", config.connections).contains("secret\""));
    }

    #[test]
    fn connection_mistakes_are_errors_with_a_fix() {
        let allow = "allow_hosts = [\"https://api.github.com\"]\nconnections = [\"gh\"]";
        let cases = [
            (false, GH, allow, "needs [credentials]"),
            (
                true,
                GH,
                "connections = [\"gh\"]",
                "which allow_hosts does not grant",
            ),
            (
                true,
                GH,
                "allow_hosts = [\"https://api.github.com\"]\nconnections = [\"gl\"]",
                "`gl` is not declared",
            ),
            (
                true,
                "[[connection]]\nname = \"k\"\nkind = \"api_key\"\nhosts = [\"http://api.example.com\"]",
                "",
                "in the clear",
            ),
            (
                true,
                "[[connection]]\nname = \"k\"\nkind = \"oauth2\"\nhosts = [\"https://a.example\"]\n\
                 authorization_endpoint = \"https://a.example/auth\"\n\
                 token_endpoint = \"http://127.evil.example/token\"\nclient_id = \"x\"",
                "",
                "token_endpoint = \"http://127.evil.example/token\" is not an https:// URL",
            ),
            (
                true,
                "[[connection]]\nname = \"k\"\nkind = \"api_key\"\nhosts = [\"https://a.example/v1\"]",
                "",
                "not a bare origin",
            ),
            (
                true,
                "[[connection]]\nname = \"k\"\nkind = \"api_key\"\nclient_id = \"x\"\nhosts = [\"https://a.example\"]",
                "",
                "belongs to oauth2 connections",
            ),
            (
                true,
                "[[connection]]\nname = \"k\"\nkind = \"api_key\"\nrevocation_endpoint = \"https://a.example/r\"\nhosts = [\"https://a.example\"]",
                "",
                "`revocation_endpoint` belongs to oauth2 connections",
            ),
            (
                true,
                &format!("{GH}revocation_endpoint = \"http://github.com/revoke\"\n"),
                "",
                "revocation_endpoint = \"http://github.com/revoke\" is not an https:// URL",
            ),
            (
                true,
                "[[connection]]\nname = \"k\"\nkind = \"basic\"\nhosts = [\"https://a.example\"]",
                "",
                "is not known",
            ),
            (
                true,
                "[[connection]]\nname = \"k\"\nkind = \"oauth2\"\nhosts = [\"https://a.example\"]",
                "",
                "needs `authorization_endpoint`",
            ),
            (
                true,
                "[[connection]]\nname = \"k\"\nkind = \"api_key\"\nhosts = [\"https://a.example\"]\ninject = { header = \"X-Key\", format = \"no token\" }",
                "",
                "must hold {token} once",
            ),
            (
                true,
                &format!(
                    "{GH}[[connection]]\nname = \"gh2\"\nkind = \"api_key\"\nhosts = [\"https://api.github.com\"]\n"
                ),
                "allow_hosts = [\"https://api.github.com\"]\nconnections = [\"gh\", \"gh2\"]",
                "both for one host",
            ),
        ];
        for (store, connections, grants, expected) in cases {
            let e = parse(store, connections, grants).unwrap_err();
            assert!(e.contains(expected), "{connections} / {grants}: {e}");
        }
    }

    #[test]
    fn a_protected_endpoint_with_connections_signs_browsers_in_unless_told_not_to() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.wasm"), b"not really wasm").unwrap();
        std::fs::write(dir.path().join("key"), "ab".repeat(32)).unwrap();
        let text = |verify: &str, sign_in: &str| {
            format!(
                "[credentials]\ndir = \"creds\"\nkey = {{ from_file = \"key\" }}\n{verify}\n{GH}\n\
                 [auth]\nissuer = \"https://auth.example.com\"\nresource = \"https://tools.example.com/mcp\"\n{sign_in}\n\
                 [[plugin]]\nname = \"p\"\nsource = \"p.wasm\"\n[plugin.grants]\n\
                 allow_hosts = [\"https://api.github.com\"]\nconnections = [\"gh\"]\n"
            )
        };
        let parse = |text: String| Config::parse(&dir.path().join("moat.toml"), &text);
        let e = parse(text("", "")).unwrap_err().to_string();
        assert!(
            e.contains("serves `p`, which uses connections, but its [auth] has no sign_in"),
            "{e}"
        );
        assert!(e.contains("/connect/verify"), "{e}");

        let sign_in = "[auth.sign_in]\nclient_id = \"moat\"\nclient_secret_env = \"MOAT_UNSET_SECRET_FOR_TEST\"";
        let e = parse(text("", sign_in)).unwrap_err().to_string();
        assert!(
            e.contains("client_secret_env names \"MOAT_UNSET_SECRET_FOR_TEST\", which is not set"),
            "{e}"
        );

        for id in ["", "https://tools.example.com/mcp"] {
            let e = parse(text("", &format!("[auth.sign_in]\nclient_id = {id:?}")))
                .unwrap_err()
                .to_string();
            assert!(e.contains("is empty or this endpoint's resource"), "{e}");
        }

        let config = parse(text("", "[auth.sign_in]\nclient_id = \"moat\"")).unwrap();
        let sign_in = config.auth.unwrap().sign_in.unwrap();
        assert_eq!(
            (sign_in.client_id.as_str(), sign_in.client_secret),
            ("moat", None)
        );
        assert_eq!(
            sign_in.token_endpoint, None,
            "found in the issuer's metadata"
        );

        let config = parse(text("verify_browser_user = false", "")).unwrap();
        assert!(!config.credentials.unwrap().verify_browser_user);
    }
}
