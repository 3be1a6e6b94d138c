//! `[tenants.<name>]`: independent MCP endpoints served by one process.
//!
//! A tenant repeats the single-tenant shape (`[[plugin]]`, `[auth]`) inside
//! its own table and is served at `/t/<name>/mcp` unless it names a `path`.
//! Tenants share the engine and the instance pool and nothing else: each
//! has its own plugins (so its own grants), token audience and policy.
//! [`Served`] views the top-level endpoint and every tenant alike.

use super::auth;
use super::{
    Config, PluginConfig, QuotaConfig, RawPlugin, check_name, http, ops, parse_confirm,
    parse_plugins,
};
use crate::auth::AuthConfig;
use crate::confirm::ConfirmPolicy;
use crate::diagnostics::{ConfigError, Source};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::ops::Range;
use toml::Spanned;

/// One `[tenants.<name>]` table.
#[derive(Debug, Clone)]
pub struct TenantConfig {
    /// The table's key; it names the tenant in logs and paths.
    pub name: String,
    /// Where its MCP endpoint is served.
    pub path: String,
    /// Its plugins, with its grants.
    pub plugins: Vec<PluginConfig>,
    /// Its token rules and policy; `None`: no authentication.
    pub auth: Option<AuthConfig>,
    /// Its limits: the top-level `[limits]` with the keys its own
    /// `[tenants.<name>.limits]` sets replaced; `None`: the top-level ones.
    pub limits: Option<QuotaConfig>,
    /// Its tools that need a person's confirmation: its own `confirm`
    /// list, and `confirm_destructive` as it sets it, else as the top
    /// level does.
    pub confirm: ConfirmPolicy,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTenant {
    path: Option<Spanned<String>>,
    #[serde(default, rename = "plugin")]
    plugins: Vec<Spanned<RawPlugin>>,
    auth: Option<auth::RawAuth>,
    limits: Option<ops::RawQuota>,
    #[serde(default)]
    confirm: Vec<Spanned<String>>,
    confirm_destructive: Option<bool>,
    trust: Option<crate::source::signature::RawTrust>,
}

pub(super) fn parse(
    src: &Source,
    raw: BTreeMap<Spanned<String>, Spanned<RawTenant>>,
    top_limits: &QuotaConfig,
    top_destructive: bool,
    top_trust: &crate::source::Trust,
    connections: &crate::credentials::Connections,
) -> Result<Vec<TenantConfig>, ConfigError> {
    let in_tenant = crate::capabilities::GrantContext {
        in_tenant: true,
        connections,
    };
    let mut tenants = Vec::with_capacity(raw.len());
    for (name, table) in raw {
        let span = table.span();
        let table = table.into_inner();
        check_name(name.get_ref()).map_err(|why| {
            src.error(
                name.span(),
                format!("tenant name `{}` {why}", name.get_ref()),
                "use 1 to 64 characters from a-z, 0-9, `_` and `-`, starting with a letter",
            )
        })?;
        let context = |e: ConfigError| ConfigError {
            message: format!("tenant `{}`: {}", name.get_ref(), e.message),
            ..e
        };
        let path = match &table.path {
            Some(path) => http::endpoint_path(src, path, "path").map_err(context)?,
            None => format!("/t/{}/mcp", name.get_ref()),
        };
        if table.plugins.is_empty() {
            return Err(context(src.error(
                span,
                "no plugins are configured",
                format!(
                    "add a [[tenants.{}.plugin]] table with `name` and `source`",
                    name.get_ref()
                ),
            )));
        }
        // A tenant without [trust] of its own trusts whom the top level does.
        let trust = match table.trust {
            Some(raw) => crate::source::signature::parse_trust(src, raw).map_err(context)?,
            None => top_trust.clone(),
        };
        let plugins = parse_plugins(src, table.plugins, &trust, &in_tenant).map_err(context)?;
        let auth = table
            .auth
            .map(|a| auth::parse(src, a))
            .transpose()
            .map_err(context)?;
        let limits = table
            .limits
            .map(|l| ops::parse_tenant_quota(src, l, top_limits))
            .transpose()
            .map_err(context)?;
        let confirm = parse_confirm(
            src,
            table.confirm,
            table.confirm_destructive.unwrap_or(top_destructive),
        )
        .map_err(context)?;
        tenants.push(TenantConfig {
            name: name.into_inner(),
            path,
            plugins,
            auth,
            limits,
            confirm,
        });
    }
    Ok(tenants)
}

/// One MCP endpoint to serve: the top-level one or a tenant's.
#[derive(Debug, Clone, Copy)]
pub struct Served<'a> {
    /// The tenant's name; `None` for the top-level endpoint.
    pub tenant: Option<&'a str>,
    /// The HTTP path.
    pub path: &'a str,
    /// Its plugins.
    pub plugins: &'a [PluginConfig],
    /// Its token rules and policy.
    pub auth: Option<&'a AuthConfig>,
    /// Its rate limits and tenant concurrency cap.
    pub limits: &'a QuotaConfig,
    /// Its tools that need a person's confirmation.
    pub confirm: &'a ConfirmPolicy,
}

impl Config {
    /// Every endpoint: the top-level one (when it has plugins), then the
    /// tenants in name order.
    pub fn served(&self) -> Vec<Served<'_>> {
        let top = (!self.plugins.is_empty()).then(|| Served {
            tenant: None,
            path: &self.http.path,
            plugins: &self.plugins,
            auth: self.auth.as_ref(),
            limits: &self.limits,
            confirm: &self.confirm,
        });
        top.into_iter()
            .chain(self.tenants.iter().map(|t| Served {
                tenant: Some(&t.name),
                path: &t.path,
                plugins: &t.plugins,
                auth: t.auth.as_ref(),
                limits: t.limits.as_ref().unwrap_or(&self.limits),
                confirm: &t.confirm,
            }))
            .collect()
    }

    /// The endpoint of `tenant` (`None`: the top-level one), if it exists.
    pub fn endpoint(&self, tenant: Option<&str>) -> Option<Served<'_>> {
        self.served().into_iter().find(|s| s.tenant == tenant)
    }

    /// Endpoints must not share a path (one would hide the other), a
    /// resource URI (a token for one would be accepted at the other) or a
    /// metadata path.
    pub(super) fn check_endpoints(
        &self,
        src: &Source,
        tenant_spans: &[Range<usize>],
    ) -> Result<(), ConfigError> {
        let served = self.served();
        let offset = served.len() - tenant_spans.len();
        let name = |s: &Served| {
            s.tenant.map_or("the top-level endpoint".to_string(), |t| {
                format!("tenant `{t}`")
            })
        };
        for (i, later) in served.iter().enumerate() {
            for earlier in &served[..i] {
                let clash = if nested(earlier.path, later.path) {
                    Some((
                        format!(
                            "its path {} overlaps the path {} of {}",
                            later.path,
                            earlier.path,
                            name(earlier)
                        ),
                        "give each endpoint a path of its own, neither inside the other",
                    ))
                } else if let (Some(a), Some(b)) = (earlier.auth, later.auth) {
                    if a.token.resource.eq_ignore_ascii_case(&b.token.resource) {
                        Some((
                            format!(
                                "its resource {} is also the resource of {}, so each would accept the other's tokens",
                                b.token.resource,
                                name(earlier)
                            ),
                            "give each endpoint its own resource URI (its public URL)",
                        ))
                    } else if crate::auth::token::metadata_path(&a.token.resource)
                        == crate::auth::token::metadata_path(&b.token.resource)
                    {
                        Some((
                            format!(
                                "its resource {} has the same path as the resource of {}, so their metadata would be served at one URL",
                                b.token.resource,
                                name(earlier)
                            ),
                            "give each endpoint a resource URI with its own path",
                        ))
                    } else {
                        None
                    }
                } else {
                    None
                };
                if let Some((message, fix)) = clash {
                    // `later` comes after `earlier`, so it is always a tenant.
                    let span = tenant_spans[i - offset].clone();
                    return Err(src.error(span, format!("{}: {message}", name(later)), fix));
                }
            }
        }
        Ok(())
    }

    /// Every protected endpoint whose plugins use connections can check
    /// that the person who finishes a connect link is its caller
    /// (`[auth.sign_in]`), unless the operator turned that off: MCP
    /// requires it of URL elicitation, and without it a caller who gets
    /// someone else to open their link acts as that person.
    pub(super) fn check_sign_in(
        &self,
        src: &Source,
        tenant_spans: &[Range<usize>],
    ) -> Result<(), ConfigError> {
        if !self
            .credentials
            .as_ref()
            .is_some_and(|c| c.verify_browser_user)
        {
            return Ok(());
        }
        let served = self.served();
        let offset = served.len() - tenant_spans.len();
        for (i, endpoint) in served.iter().enumerate() {
            let Some(auth) = endpoint.auth else { continue };
            let connecting = endpoint
                .plugins
                .iter()
                .find(|p| !p.grants.net.connections.is_empty());
            if let (None, Some(plugin)) = (&auth.sign_in, connecting) {
                let (span, place) = match endpoint.tenant {
                    Some(t) => (tenant_spans[i - offset].clone(), format!("tenant `{t}`")),
                    None => (0..0, "the top-level endpoint".to_string()),
                };
                return Err(src.error(
                    span,
                    format!(
                        "{place} serves `{}`, which uses connections, but its [auth] has no sign_in: \
                         Moat could not check that whoever opens a connect link is the caller it was made for",
                        plugin.name
                    ),
                    "register Moat as a client at the issuer (redirect URI <public_url>/connect/verify) and add \
                     [auth.sign_in] client_id = \"…\" with client_secret_env; or set [credentials] \
                     verify_browser_user = false to accept that risk",
                ));
            }
        }
        Ok(())
    }
}

/// Whether one path equals the other or lies below it.
fn nested(a: &str, b: &str) -> bool {
    let below = |outer: &str, inner: &str| {
        inner
            .strip_prefix(outer)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    below(a, b) || below(b, a)
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::diagnostics::ConfigError;

    const PLUGIN: &str = "name = \"p\"\nsource = \"p.wasm\"\n";

    fn parse(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.wasm"), b"not really wasm").unwrap();
        Config::parse(&dir.path().join("moat.toml"), text)
    }

    fn auth(resource: &str) -> String {
        format!("issuer = \"https://auth.example.com\"\nresource = \"{resource}\"\n")
    }

    #[test]
    fn tenants_get_their_own_path_plugins_and_auth() {
        let text = format!(
            "[tenants.acme.auth]\n{}[[tenants.acme.plugin]]\n{PLUGIN}\n[tenants.beta]\npath = \"/beta\"\n[[tenants.beta.plugin]]\n{PLUGIN}",
            auth("https://tools.example.com/t/acme/mcp")
        );
        let config = parse(&text).unwrap();
        assert!(config.plugins.is_empty());
        let served = config.served();
        assert_eq!(served.len(), 2);
        assert_eq!(served[0].tenant, Some("acme"));
        assert_eq!(served[0].path, "/t/acme/mcp");
        assert_eq!(
            served[0].auth.unwrap().token.resource,
            "https://tools.example.com/t/acme/mcp"
        );
        assert_eq!(served[1].tenant, Some("beta"));
        assert_eq!(served[1].path, "/beta");
        assert!(served[1].auth.is_none());
        assert_eq!(config.all_plugins().count(), 2);
        assert!(config.endpoint(None).is_none());
        assert_eq!(config.endpoint(Some("beta")).unwrap().path, "/beta");
    }

    #[test]
    fn a_tenant_has_its_own_limits_or_the_top_level_ones() {
        let text = format!(
            "[limits]\ncalls_per_minute = 10\nmax_concurrent_per_tenant = 7\n[[plugin]]\n{PLUGIN}\n[[tenants.a.plugin]]\n{PLUGIN}\n[tenants.b.limits]\ncalls_per_minute = 99\nmax_concurrent_per_tenant = 2\n[[tenants.b.plugin]]\n{PLUGIN}\n[tenants.c.limits]\nmax_concurrent_per_tenant = 3\n[[tenants.c.plugin]]\n{PLUGIN}"
        );
        let config = parse(&text).unwrap();
        let rates: Vec<_> = config
            .served()
            .iter()
            .map(|s| {
                (
                    s.limits.calls_per_minute,
                    s.limits.max_concurrent_per_tenant,
                )
            })
            .collect();
        // c sets only its cap: it keeps the top-level rate.
        assert_eq!(
            rates,
            [
                (Some(10), Some(7)),
                (Some(10), Some(7)),
                (Some(99), Some(2)),
                (Some(10), Some(3))
            ]
        );

        for (key, value) in [
            ("max_in_flight", "5"),
            ("refusals_per_minute", "5"),
            ("backend", "\"redis://r\""),
        ] {
            let text =
                format!("[tenants.b.limits]\n{key} = {value}\n[[tenants.b.plugin]]\n{PLUGIN}");
            let e = parse(&text).unwrap_err();
            assert!(e.message.contains("process-wide"), "{e}");
            assert!(e.fix.contains("top-level [limits]"), "{e}");
            assert_eq!(e.origin.line, 2, "{e}");
        }
    }

    #[test]
    fn the_top_level_endpoint_and_tenants_live_side_by_side() {
        let text = format!("[[plugin]]\n{PLUGIN}\n[[tenants.acme.plugin]]\n{PLUGIN}");
        let config = parse(&text).unwrap();
        let paths: Vec<_> = config.served().iter().map(|s| s.path).collect();
        assert_eq!(paths, ["/mcp", "/t/acme/mcp"]);
    }

    #[test]
    fn clashing_tenants_are_refused_with_the_place_and_fix() {
        let cases = [
            (
                format!(
                    "[auth]\n{}[[plugin]]\n{PLUGIN}\n[tenants.b.auth]\n{}[[tenants.b.plugin]]\n{PLUGIN}",
                    auth("https://x.example/mcp"),
                    auth("HTTPS://X.example/mcp")
                ),
                "accept the other's tokens",
                8,
            ),
            (
                format!(
                    "[tenants.a.auth]\n{}[[tenants.a.plugin]]\n{PLUGIN}\n[tenants.b.auth]\n{}[[tenants.b.plugin]]\n{PLUGIN}",
                    auth("https://a.example/mcp"),
                    auth("https://b.example/mcp")
                ),
                "metadata would be served at one URL",
                8,
            ),
            (
                format!(
                    "[[plugin]]\n{PLUGIN}\n[tenants.a]\npath = \"/mcp/a\"\n[[tenants.a.plugin]]\n{PLUGIN}"
                ),
                "overlaps the path /mcp",
                5,
            ),
            (
                "[tenants.a]\npath = \"/x/{id}\"\n[[tenants.a.plugin]]\nname = \"p\"\nsource = \"p.wasm\"\n".to_string(),
                "cannot be an MCP endpoint",
                2,
            ),
            ("[tenants.a]\n".to_string(), "no plugins", 1),
            (
                format!("[tenants.Acme]\n[[tenants.Acme.plugin]]\n{PLUGIN}"),
                "tenant name `Acme`",
                1,
            ),
            (
                format!("[tenants.a]\nplugins = []\n[[tenants.a.plugin]]\n{PLUGIN}"),
                "unknown field `plugins`",
                2,
            ),
        ];
        for (text, message, line) in cases {
            let err = parse(&text).unwrap_err();
            assert!(err.message.contains(message), "{text}\n=> {err}");
            assert_eq!(err.origin.line, line, "{err}");
        }
    }
}
