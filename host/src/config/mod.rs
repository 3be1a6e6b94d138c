//! `moat.toml`: parsed once into typed, validated values.
//!
//! Unknown keys are rejected, and every error names the file, the line and
//! the fix. Each capability parses its own part of `[plugin.grants]` (see
//! [`crate::capabilities`]); this module owns the file, the plugin entries
//! and the mapping of byte offsets to lines.

mod auth;
mod http;
pub mod naming;
mod ops;
mod tenant;

pub use http::{HttpConfig, RESERVED_PATHS};
pub use naming::Naming;
pub use ops::{AdminConfig, AuditConfig, LimitBackend, QuotaConfig, ToolQuota};
pub use tenant::{Served, TenantConfig};

use crate::auth::AuthConfig;
use crate::capabilities::env::{RawFrom, RawValue, from_source};
use crate::capabilities::{GrantContext, Grants, RawGrants};
use crate::confirm::{ConfirmPolicy, ConfirmSettings};
use crate::diagnostics::{ConfigError, Origin, Source};
use crate::source::signature::{RawTrust, SignatureAt, parse_trust};
use crate::source::{PluginSource, RegistryConfig, Signing, Trust};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The top-level plugins, in file order, served at `[http] path` (and
    /// over stdio); empty when only tenants are configured.
    pub plugins: Vec<PluginConfig>,
    /// Engine-wide settings.
    pub runtime: RuntimeConfig,
    /// How to serve Streamable HTTP.
    pub http: HttpConfig,
    /// Token validation and tool policy for the top-level endpoint;
    /// `None`: no authentication.
    pub auth: Option<AuthConfig>,
    /// Further endpoints, each with its own plugins and auth.
    pub tenants: Vec<TenantConfig>,
    /// Where call records go; `None`: no audit log.
    pub audit: Option<AuditConfig>,
    /// Rate limits and concurrency caps.
    pub limits: QuotaConfig,
    /// The admin listener (`/metrics`).
    pub admin: AdminConfig,
    /// The top-level endpoint's tools that need a person's confirmation.
    pub confirm: ConfirmPolicy,
    /// How confirmations are asked, for every endpoint.
    pub confirmation: ConfirmSettings,
    /// How OCI registries are reached.
    pub registries: RegistryConfig,
    /// Upstream connections plugins may be granted, by name.
    pub connections: crate::credentials::Connections,
    /// Where callers' credentials are kept, if `[credentials]` is set.
    pub credentials: Option<crate::credentials::CredentialsConfig>,
}

impl Config {
    /// Calls that may run at once in the process: `[limits] max_in_flight`,
    /// else twice the instance pool, so a burst queues briefly for a slot
    /// instead of growing without bound.
    pub fn max_in_flight(&self) -> u32 {
        self.limits
            .max_in_flight
            .unwrap_or(self.runtime.max_instances.saturating_mul(2))
    }

    /// Every configured plugin, of every endpoint.
    pub fn all_plugins(&self) -> impl Iterator<Item = &PluginConfig> {
        self.plugins
            .iter()
            .chain(self.tenants.iter().flat_map(|t| &t.plugins))
    }
}

/// One `[[plugin]]` entry.
#[derive(Debug, Clone)]
pub struct PluginConfig {
    /// Its name in the config (and, by default, its tools' prefix).
    pub name: String,
    /// Where the component comes from.
    pub source: PluginSource,
    /// `source` as the config writes it (the key of its lock entry).
    pub source_text: String,
    /// When set, the component's SHA-256 must equal this (lowercase hex).
    pub sha256: Option<String>,
    /// What its publisher's signature must be.
    pub signing: Signing,
    /// What each call of this plugin may touch and use.
    pub grants: Grants,
    /// How its tools are named to clients.
    pub naming: Naming,
    /// The WIT of a component with exports of its own (a `.wit` file, a
    /// folder of them, or a binary WIT package): its doc comments describe
    /// the tools, since a component does not carry them.
    pub wit: Option<PathBuf>,
    /// Where the entry is written, for errors found after parsing (at load).
    pub origin: Origin,
}

/// `[runtime]`: settings for the whole engine.
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeConfig {
    /// Where compiled code is cached; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// Instances that may exist at once (the pooling allocator's size, and
    /// so the bound on concurrent calls).
    pub max_instances: u32,
    /// Bytes a plugin's component may have (a download is cut off there).
    pub max_plugin_bytes: u64,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            cache_dir: default_cache_dir(),
            max_instances: 128,
            max_plugin_bytes: crate::source::DEFAULT_MAX_PLUGIN_BYTES,
        }
    }
}

/// The user's cache folder for compiled plugins (`$XDG_CACHE_HOME/moat` or
/// `~/.cache/moat`), if one can be named.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("MOAT_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("moat"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default, rename = "plugin")]
    plugins: Vec<Spanned<RawPlugin>>,
    #[serde(default)]
    runtime: Option<Spanned<RawRuntime>>,
    #[serde(default)]
    http: Option<http::RawHttp>,
    #[serde(default)]
    auth: Option<auth::RawAuth>,
    #[serde(default)]
    tenants: BTreeMap<Spanned<String>, Spanned<tenant::RawTenant>>,
    audit: Option<Spanned<ops::RawAudit>>,
    limits: Option<ops::RawQuota>,
    admin: Option<ops::RawAdmin>,
    #[serde(default)]
    confirm: Vec<Spanned<String>>,
    confirm_destructive: Option<bool>,
    confirm_timeout_ms: Option<Spanned<u64>>,
    confirm_state_key: Option<Spanned<RawFrom>>,
    confirm_store: Option<Spanned<RawValue>>,
    registries: Option<crate::source::config::RawRegistries>,
    trust: Option<RawTrust>,
    credentials: Option<Spanned<crate::credentials::RawCredentials>>,
    #[serde(default, rename = "connection")]
    connections: Vec<Spanned<crate::credentials::RawConnection>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlugin {
    name: Spanned<String>,
    source: Spanned<String>,
    sha256: Option<Spanned<String>>,
    /// A detached minisign signature: a file, or an https:// URL.
    signature: Option<Spanned<String>>,
    /// Only this trusted publisher's signature counts.
    publisher: Option<Spanned<String>>,
    require_signature: Option<bool>,
    prefix: Option<Spanned<String>>,
    #[serde(default)]
    rename: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    tools: BTreeMap<String, Spanned<naming::RawToolSetting>>,
    wit: Option<Spanned<String>>,
    /// `false`: serve none of the plugin's resources (a second copy of a
    /// plugin, under another name and grants, would claim the same URIs).
    resources: Option<bool>,
    #[serde(default)]
    grants: RawGrants,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRuntime {
    cache_dir: Option<Spanned<String>>,
    cache: Option<bool>,
    max_instances: Option<Spanned<u32>>,
    max_plugin_mib: Option<Spanned<u64>>,
}

impl Config {
    /// Reads and validates the config file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_text(path).map(|(config, _)| config)
    }

    /// Reads and validates the config file at `path`; also returns its
    /// text as parsed.
    pub fn load_text(path: &Path) -> Result<(Config, String), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            origin: Origin {
                file: path.to_path_buf(),
                line: 1,
                column: 1,
            },
            message: format!("cannot read the config file: {e}"),
            fix: "check the path given with --config".into(),
        })?;
        Ok((Config::parse(path, &text)?, text))
    }

    /// Validates `text` as if read from `file` (relative paths are resolved
    /// against `file`'s folder).
    pub fn parse(file: &Path, text: &str) -> Result<Config, ConfigError> {
        let src = Source::new(file, text);
        let raw: RawConfig = toml::from_str(text).map_err(|e| syntax_error(&src, &e))?;
        let runtime = match raw.runtime {
            None => RuntimeConfig::default(),
            Some(r) => parse_runtime(&src, r.into_inner())?,
        };
        let http = match raw.http {
            None => HttpConfig::default(),
            Some(h) => http::parse(&src, h)?,
        };
        let auth = raw.auth.map(|a| auth::parse(&src, a)).transpose()?;
        if raw.plugins.is_empty() && raw.tenants.is_empty() {
            return Err(src.error(
                0..0,
                "no plugins are configured",
                "add a [[plugin]] table with `name` and `source` (see README.md, \"Configuration\")",
            ));
        }
        let trust = raw
            .trust
            .map(|t| parse_trust(&src, t))
            .transpose()?
            .unwrap_or_default();
        let registries = raw
            .registries
            .map(|r| crate::source::parse_registries(&src, r))
            .transpose()?
            .unwrap_or_default();
        let credentials = raw
            .credentials
            .map(|c| crate::credentials::parse_credentials(&src, c))
            .transpose()?;
        let connections = crate::credentials::parse(
            &src,
            raw.connections,
            credentials.as_ref().map(|c| &c.store),
        )?;
        let top = GrantContext {
            in_tenant: false,
            connections: &connections,
        };
        let plugins = parse_plugins(&src, raw.plugins, &trust, &top)?;
        let tenant_spans: Vec<Range<usize>> = raw.tenants.values().map(|t| t.span()).collect();
        let limits = match raw.limits {
            Some(l) => ops::parse_quota(&src, l)?,
            None => QuotaConfig::default(),
        };
        let confirm = parse_confirm(&src, raw.confirm, raw.confirm_destructive.unwrap_or(false))?;
        let tenants = tenant::parse(
            &src,
            raw.tenants,
            &limits,
            confirm.destructive,
            &trust,
            &connections,
        )?;
        let key_span = raw.confirm_state_key.as_ref().map(|k| k.span());
        let mut confirmation =
            parse_confirmation(&src, raw.confirm_timeout_ms, raw.confirm_state_key, &http)?;
        confirmation.store = raw
            .confirm_store
            .map(|store| ops::redis_url(&src, store, "confirm_store"))
            .transpose()?;
        if let (Some(_), None, Some(key)) =
            (&confirmation.state_key, &confirmation.store, &key_span)
        {
            // Each replica (and each restart) would remember only its own
            // redemptions: one "yes" could run once on every replica.
            return Err(src.error(
                key.clone(),
                "confirm_state_key is set without confirm_store",
                "set confirm_store = \"redis://…\" so that replicas sharing the key share which confirmations were used; one process needs neither",
            ));
        }
        let config = Config {
            plugins,
            runtime,
            http,
            auth,
            tenants,
            audit: raw.audit.map(|a| ops::parse_audit(&src, a)).transpose()?,
            limits,
            admin: match raw.admin {
                Some(a) => ops::parse_admin(&src, a)?,
                None => AdminConfig::default(),
            },
            confirm,
            confirmation,
            registries,
            connections,
            credentials,
        };
        config.check_endpoints(&src, &tenant_spans)?;
        config.check_sign_in(&src, &tenant_spans)?;
        Ok(config)
    }
}

/// `confirm = [...]`: tool names, `*` matching any run of characters.
fn parse_confirm(
    src: &Source,
    patterns: Vec<Spanned<String>>,
    destructive: bool,
) -> Result<ConfirmPolicy, ConfigError> {
    let mut tools = Vec::with_capacity(patterns.len());
    for pattern in patterns {
        let text = pattern.get_ref();
        let plain = !text.is_empty()
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.*".contains(&b));
        if !plain {
            return Err(src.error(
                pattern.span(),
                format!("confirm pattern {text:?} is not a tool name"),
                "write `<plugin>.<tool>` names as `moat check` lists them; `*` matches any run of characters",
            ));
        }
        tools.push(pattern.into_inner());
    }
    Ok(ConfirmPolicy { tools, destructive })
}

/// `confirm_timeout_ms` and `confirm_state_key`.
fn parse_confirmation(
    src: &Source,
    timeout: Option<Spanned<u64>>,
    key: Option<Spanned<RawFrom>>,
    http: &HttpConfig,
) -> Result<ConfirmSettings, ConfigError> {
    let mut settings = ConfirmSettings::default();
    if let Some(ms) = &timeout {
        settings.timeout = std::time::Duration::from_millis(src.ranged(
            ms,
            "confirm_timeout_ms",
            1_000,
            3_600_000,
        )?);
        // With sessions the question is asked inside the HTTP request.
        if settings.timeout >= http.request_timeout {
            return Err(src.error(
                ms.span(),
                "confirm_timeout_ms is not shorter than [http] request_timeout_ms",
                "shorten confirm_timeout_ms or lengthen request_timeout_ms: a person's answer must arrive before the request ends",
            ));
        }
    } else if settings.timeout >= http.request_timeout {
        settings.timeout = http.request_timeout.mul_f64(0.9);
    }
    if let Some(key) = key {
        let span = key.span();
        let (text, _) = from_source(src, span.clone(), "confirm_state_key", key.into_inner())?;
        let bytes = text.trim().as_bytes().to_vec();
        if bytes.len() < 32 {
            return Err(src.error(
                span,
                format!("confirm_state_key has {} bytes; at least 32 are needed", bytes.len()),
                "use a random value such as the output of `openssl rand -hex 32`, the same on every replica",
            ));
        }
        settings.state_key = Some(bytes);
    }
    Ok(settings)
}

/// Parses a list of `[[plugin]]` entries; names must be distinct.
/// The `[[plugin]]` entries of the top-level endpoint, or of a tenant
/// (`context.in_tenant`).
fn parse_plugins(
    src: &Source,
    raw: Vec<Spanned<RawPlugin>>,
    trust: &Trust,
    context: &GrantContext,
) -> Result<Vec<PluginConfig>, ConfigError> {
    let mut seen = HashSet::new();
    let mut plugins = Vec::with_capacity(raw.len());
    for entry in raw {
        let span = entry.span();
        let plugin = parse_plugin(src, span.clone(), entry.into_inner(), trust, context)?;
        if !seen.insert(plugin.name.clone()) {
            return Err(src.error(
                span,
                format!("plugin `{}` is configured twice", plugin.name),
                "give each [[plugin]] a distinct `name`",
            ));
        }
        plugins.push(plugin);
    }
    Ok(plugins)
}

fn syntax_error(src: &Source, e: &toml::de::Error) -> ConfigError {
    let span = e.span().unwrap_or(0..0);
    let message = e.message().trim().to_string();
    let fix = if message.starts_with("unknown field") {
        "remove the key or correct its spelling; README.md lists every key"
    } else if message.starts_with("missing field") {
        "add the key; README.md lists the keys each table needs"
    } else if message.starts_with("invalid type") || message.starts_with("invalid value") {
        "give the key a value of the type README.md lists for it"
    } else {
        "correct the TOML syntax at this place"
    };
    src.error(span, message, fix)
}

fn parse_runtime(src: &Source, raw: RawRuntime) -> Result<RuntimeConfig, ConfigError> {
    let mut runtime = RuntimeConfig::default();
    if let Some(dir) = raw.cache_dir {
        runtime.cache_dir = Some(src.resolve(dir.get_ref()));
    }
    if raw.cache == Some(false) {
        runtime.cache_dir = None;
    }
    if let Some(n) = raw.max_instances {
        if !(1..=10_000).contains(n.get_ref()) {
            return Err(src.error(
                n.span(),
                format!("max_instances = {} is out of range", n.get_ref()),
                "use a value from 1 to 10000",
            ));
        }
        runtime.max_instances = *n.get_ref();
    }
    if let Some(mib) = raw.max_plugin_mib {
        runtime.max_plugin_bytes = src.ranged(&mib, "max_plugin_mib", 1, 4096)? << 20;
    }
    Ok(runtime)
}

fn parse_plugin(
    src: &Source,
    span: Range<usize>,
    raw: RawPlugin,
    trust: &Trust,
    context: &GrantContext,
) -> Result<PluginConfig, ConfigError> {
    let name = raw.name.get_ref();
    if let Err(why) = check_name(name) {
        return Err(src.error(
            raw.name.span(),
            format!("plugin name `{name}` {why}"),
            "use 1 to 64 characters from a-z, 0-9, `_` and `-`, starting with a letter",
        ));
    }
    let at_plugin = |e: ConfigError| ConfigError {
        message: format!("plugin `{name}`: {}", e.message),
        ..e
    };
    let signing = parse_signing(src, &raw, trust).map_err(at_plugin)?;
    let sha256 = match raw.sha256 {
        None => None,
        Some(pin) => {
            let hex = pin.get_ref().trim().to_ascii_lowercase();
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(at_plugin(src.error(
                    pin.span(),
                    "sha256 is not 64 hexadecimal digits",
                    "paste the digest printed by `sha256sum <plugin.wasm>` or `moat inspect`",
                )));
            }
            Some(hex)
        }
    };
    let source =
        crate::source::parse_source(src, &raw.source, sha256.is_some()).map_err(at_plugin)?;
    let grants = Grants::parse(src, raw.grants, context).map_err(at_plugin)?;
    let mut naming = naming::parse(src, raw.prefix, raw.rename, raw.tools).map_err(at_plugin)?;
    naming.hide_resources = raw.resources == Some(false);
    let wit = match &raw.wit {
        None => None,
        Some(at) => {
            let path = src.resolve(at.get_ref().trim());
            if !path.exists() {
                return Err(at_plugin(src.error(
                    at.span(),
                    format!("wit `{}` does not exist", path.display()),
                    "write the path of the component's WIT: a .wit file, its folder, or a binary WIT package (.wasm)",
                )));
            }
            Some(path)
        }
    };
    Ok(PluginConfig {
        name: name.clone(),
        source,
        source_text: raw.source.get_ref().trim().to_string(),
        sha256,
        signing,
        grants,
        naming,
        wit,
        origin: src.origin(span.start),
    })
}

/// `signature`, `publisher` and `require_signature` of a plugin under the
/// endpoint's `trust`.
fn parse_signing(src: &Source, raw: &RawPlugin, trust: &Trust) -> Result<Signing, ConfigError> {
    let publisher = match &raw.publisher {
        None => None,
        Some(name) if trust.publishers.iter().any(|p| p.name == *name.get_ref()) => {
            Some(name.get_ref().clone())
        }
        Some(name) => {
            return Err(src.error(
                name.span(),
                format!("publisher `{}` is not trusted at this endpoint", name.get_ref()),
                "add it under [[trust.publisher]] (for a tenant, [[tenants.<name>.trust.publisher]]) with its minisign public key",
            ));
        }
    };
    let signature = match &raw.signature {
        None => None,
        Some(at) => {
            let text = at.get_ref().trim();
            if text.starts_with("https://") {
                let url = crate::source::config::https_url(src, at, "signature", ".minisig file")?;
                Some(SignatureAt::Url(url))
            } else if text.contains("://") {
                return Err(src.error(
                    at.span(),
                    format!("signature `{text}` is neither a file nor an https:// URL"),
                    "write the path or https:// URL of the .minisig file",
                ));
            } else {
                Some(SignatureAt::File(src.resolve(text)))
            }
        }
    };
    let required =
        trust.require_signature || raw.require_signature == Some(true) || publisher.is_some();
    if required && trust.publishers.is_empty() {
        return Err(src.error(
            raw.source.span(),
            "a signature is required, but no publisher is trusted",
            "add [[trust.publisher]] with the name and minisign public key of the plugin's publisher",
        ));
    }
    if raw.require_signature == Some(false) && trust.require_signature {
        return Err(src.error(
            raw.source.span(),
            "require_signature = false, but [trust] requires a signature of every plugin",
            "sign the plugin, or serve it at an endpoint whose [trust] does not require signatures",
        ));
    }
    Ok(Signing {
        publishers: trust.publishers.clone(),
        required,
        publisher,
        signature,
    })
}

/// Plugin names become the prefix of MCP tool names and tenant names a
/// part of URLs, so both keep to a conservative alphabet.
pub(crate) fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 64 {
        return Err("must be 1 to 64 characters long");
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err("must start with a lowercase letter");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        return Err("may only contain a-z, 0-9, `_` and `-`");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_in(dir: &Path, text: &str) -> Result<Config, ConfigError> {
        Config::parse(&dir.join("moat.toml"), text)
    }

    fn fixture() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.wasm"), b"not really wasm").unwrap();
        std::fs::create_dir(dir.path().join("demo")).unwrap();
        dir
    }

    #[test]
    fn minimal_plugin_gets_default_grants() {
        let dir = fixture();
        let config = parse_in(
            dir.path(),
            "[[plugin]]\nname = \"p\"\nsource = \"p.wasm\"\n",
        )
        .unwrap();
        let plugin = &config.plugins[0];
        assert_eq!(plugin.name, "p");
        assert_eq!(plugin.source, PluginSource::File(dir.path().join("p.wasm")));
        assert_eq!(plugin.grants, Grants::default());
        assert_eq!(plugin.origin.line, 1);
    }

    #[test]
    fn fuel_is_a_count_or_false() {
        let dir = fixture();
        let limits = |fuel: &str| {
            let text = format!(
                "[[plugin]]\nname = \"p\"\nsource = \"p.wasm\"\n[plugin.grants]\nfuel = {fuel}\n"
            );
            parse_in(dir.path(), &text).map(|c| c.plugins[0].grants.limits)
        };
        let off = limits("false").unwrap();
        assert!(!off.metered);
        let on = limits("true").unwrap();
        assert!(on.metered);
        assert_eq!(on.fuel, crate::capabilities::Limits::default().fuel);
        assert_eq!(limits("7_000").unwrap().fuel, 7_000);
        for wrong in ["\"lots\"", "-1", "1.5"] {
            let err = limits(wrong).unwrap_err();
            assert_eq!(err.origin.line, 5, "{wrong}: {err}");
            assert!(
                err.message.contains("a number of fuel units, or false"),
                "{wrong}: {err}"
            );
        }
        assert!(limits("0").unwrap_err().message.contains("out of range"));
    }

    #[test]
    fn errors_name_line_and_fix() {
        let dir = fixture();
        let cases: &[(&str, usize, &str, &str)] = &[
            (
                "[[plugin]]\nname = \"p\"\nsource = \"p.wasm\"\nfule = 1\n",
                4,
                "unknown field `fule`",
                "spelling",
            ),
            (
                "[[plugin]]\nname = \"p\"\n",
                1,
                "missing field `source`",
                "add the key",
            ),
            (
                "[[plugin]]\nname = \"P!\"\nsource = \"p.wasm\"\n",
                2,
                "plugin name `P!`",
                "a-z",
            ),
            (
                "[[plugin]]\nname = \"p\"\nsource = \"nope.wasm\"\n",
                3,
                "is not a file",
                "build the plugin",
            ),
            (
                "[[plugin]]\nname = \"p\"\nsource = \"p.wasm\"\nsha256 = \"abc\"\n",
                4,
                "64 hexadecimal",
                "sha256sum",
            ),
            (
                "[[plugin]]\nname = \"p\"\nsource = \"p.wasm\"\n[[plugin]]\nname = \"p\"\nsource = \"p.wasm\"\n",
                4,
                "configured twice",
                "distinct",
            ),
            (
                "[runtime]\nmax_instances = 0\n",
                2,
                "out of range",
                "1 to 10000",
            ),
            ("", 1, "no plugins", "[[plugin]]"),
            (
                "[[plugin]]\nname = \"p\"\nsource = \"p.wasm\"\n[plugin.grants]\nallow_hosts = [\"https://ok.example\",\n  \"ftp://x\"]\n",
                6,
                "allow_hosts: `ftp://x` has scheme `ftp`",
                "http://",
            ),
            (
                "[[plugin]]\nname = \"p\"\nsource = \"p.wasm\"\n[plugin.grants]\nmax_http_requests = 0\n",
                5,
                "out of range",
                "1 to 10000",
            ),
            ("[[plugin]\n", 1, "", "TOML syntax"),
            (
                "[http]\ntrusted_proxies = [\"127.0.0.1\", \"nginx\"]\n",
                2,
                "trusted proxy \"nginx\" is not an address",
                "10.0.0.0/8",
            ),
            (
                "[http]\ntrusted_proxies = [\"0.0.0.0/0\"]\n",
                2,
                "is every address",
                "proxies' own addresses",
            ),
            (
                "[http]\nproxy_headers = \"x-real-ip\"\n",
                2,
                "not a choice",
                "RFC 7239",
            ),
            (
                "[limits]\nbackend = \"http://redis:6379\"\n[[plugin]]\nname = \"p\"\nsource = \"p.wasm\"\n",
                2,
                "backend is not a redis:// URL",
                "redis://127.0.0.1:6379/0",
            ),
            (
                "[limits]\nbackend = \"redis://r\"\non_backend_failure = \"ignore\"\n[[plugin]]\nname = \"p\"\nsource = \"p.wasm\"\n",
                3,
                "not a choice",
                "\"admit\"",
            ),
            (
                "[limits]\nbackend_timeout_ms = 100\n[[plugin]]\nname = \"p\"\nsource = \"p.wasm\"\n",
                2,
                "need a backend",
                "backend = ",
            ),
        ];
        for (text, line, message, fix) in cases {
            let err = parse_in(dir.path(), text).unwrap_err();
            assert_eq!(err.origin.line, *line, "{text:?}: {err}");
            assert!(err.message.contains(message), "{text:?}: {err}");
            assert!(err.fix.contains(fix), "{text:?}: {err}");
            assert!(err.to_string().contains("moat.toml:"), "{err}");
        }
    }

    #[test]
    fn proxies_and_a_shared_backend_are_read() {
        let dir = fixture();
        let config = parse_in(
            dir.path(),
            "[http]\ntrusted_proxies = [\"127.0.0.1\", \"10.1.2.3/8\", \"::1\"]\n\
             [limits]\nbackend = \"redis://r:6379/2\"\n\
             [[plugin]]\nname = \"p\"\nsource = \"p.wasm\"\n",
        )
        .unwrap();
        let nets: Vec<String> = config
            .http
            .trusted_proxies
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(nets, ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]);
        let backend = config.limits.backend.unwrap();
        assert_eq!(backend.url, "redis://r:6379/2");
        assert_eq!(backend.timeout, std::time::Duration::from_millis(250));
        assert!(!backend.fail_open);
        // The URL may carry a password: never printed.
        assert!(!format!("{backend:?}").contains("redis://"));
    }

    #[test]
    fn auth_section_builds_token_rules_and_policy() {
        let dir = fixture();
        let text = "[auth]\nissuer = \"https://auth.example.com\"\nresource = \"https://tools.example.com/mcp\"\nalgorithms = [\"ES256\"]\nroles_claim = \"roles\"\n[[auth.rule]]\nscopes = [\"tools:read\"]\ntools = [\"hello.*\"]\n[[plugin]]\nname = \"p\"\nsource = \"p.wasm\"\n";
        let auth = parse_in(dir.path(), text).unwrap().auth.unwrap();
        assert_eq!(auth.token.issuer, "https://auth.example.com");
        assert_eq!(auth.token.algorithms, vec![jsonwebtoken::Algorithm::ES256]);
        assert_eq!(auth.token.leeway_s, 30);
        assert_eq!(
            auth.authorization_servers,
            vec!["https://auth.example.com".to_string()]
        );
        let caller = crate::auth::policy::Caller {
            scopes: ["tools:read".to_string()].into(),
            ..Default::default()
        };
        assert!(auth.policy.allows(&caller, "hello.greet"));
        assert!(!auth.policy.allows(&caller, "files.read"));
    }

    #[test]
    fn challenge_scopes_default_to_the_supported_ones_and_must_be_among_them() {
        let dir = fixture();
        let head = "[[plugin]]\nname = \"p\"\nsource = \"p.wasm\"\n[auth]\nissuer = \"https://a.example\"\nresource = \"https://t.example/mcp\"\nscopes_supported = [\"r\", \"w\"]\n";
        let auth = parse_in(dir.path(), head).unwrap().auth.unwrap();
        assert_eq!(auth.challenge_scopes, ["r", "w"]);
        let text = format!("{head}challenge_scopes = [\"r\"]\n");
        let auth = parse_in(dir.path(), &text).unwrap().auth.unwrap();
        assert_eq!(auth.challenge_scopes, ["r"]);
        let text = format!("{head}challenge_scopes = [\"admin\"]\n");
        let err = parse_in(dir.path(), &text).unwrap_err();
        assert_eq!(err.origin.line, 8, "{err}");
        assert!(
            err.message.contains("\"admin\" is not in scopes_supported"),
            "{err}"
        );
    }

    #[test]
    fn runtime_section_sets_cache_and_pool() {
        let dir = fixture();
        let text = "[runtime]\ncache_dir = \"c\"\nmax_instances = 8\n[[plugin]]\nname = \"p\"\nsource = \"p.wasm\"\n";
        let config = parse_in(dir.path(), text).unwrap();
        assert_eq!(config.runtime.cache_dir, Some(dir.path().join("c")));
        assert_eq!(config.runtime.max_instances, 8);
        let text = "[runtime]\ncache = false\n[[plugin]]\nname = \"p\"\nsource = \"p.wasm\"\n";
        assert_eq!(parse_in(dir.path(), text).unwrap().runtime.cache_dir, None);
    }

    /// A minisign public key with key ID `id` (its bytes `id` repeated).
    fn key(id: u8) -> String {
        use base64::Engine as _;
        let mut bytes = b"Ed".to_vec();
        bytes.extend([id; 8]);
        bytes.extend([7u8; 32]);
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    #[test]
    fn trust_is_per_endpoint_and_tenants_inherit_the_top_level_one() {
        let dir = fixture();
        let text = format!(
            "[trust]\nrequire_signature = true\n[[trust.publisher]]\nname = \"acme\"\nkey = \"{}\"\n\
             [[plugin]]\nname = \"p\"\nsource = \"p.wasm\"\n\
             [tenants.a]\n[[tenants.a.plugin]]\nname = \"p\"\nsource = \"p.wasm\"\n\
             [tenants.b.trust]\n[[tenants.b.trust.publisher]]\nname = \"bee\"\nkey = \"{}\"\n\
             [[tenants.b.plugin]]\nname = \"p\"\nsource = \"p.wasm\"\npublisher = \"bee\"\n",
            key(1),
            key(2)
        );
        let config = parse_in(dir.path(), &text).unwrap();
        let top = &config.plugins[0].signing;
        assert!(top.required);
        assert_eq!(top.publishers[0].name, "acme");
        assert_eq!(top.publishers[0].key_id, "0101010101010101");
        let a = &config.tenants[0].plugins[0].signing;
        assert!(a.required, "tenant a inherits [trust]");
        assert_eq!(a.publishers[0].name, "acme");
        let b = &config.tenants[1].plugins[0].signing;
        assert_eq!(b.publishers.len(), 1);
        assert_eq!(b.publishers[0].name, "bee");
        assert_eq!(b.publisher.as_deref(), Some("bee"));
        assert!(b.required, "naming a publisher requires its signature");
    }

    #[test]
    fn trust_errors_name_the_line_and_the_fix() {
        let dir = fixture();
        let plugin = "[[plugin]]\nname = \"p\"\nsource = \"p.wasm\"\n";
        let cases: Vec<(String, usize, &str, &str)> = vec![
            (
                format!("{plugin}publisher = \"acme\"\n"),
                4,
                "publisher `acme` is not trusted",
                "[[trust.publisher]]",
            ),
            (
                format!("{plugin}require_signature = true\n"),
                3,
                "no publisher is trusted",
                "[[trust.publisher]]",
            ),
            (
                format!("[[trust.publisher]]\nname = \"a\"\nkey = \"RWQ nonsense\"\n{plugin}"),
                3,
                "not a minisign public key",
                "starts with RW",
            ),
            (
                format!(
                    "[[trust.publisher]]\nname = \"a\"\nkey = \"{}\"\n[[trust.publisher]]\nname = \"b\"\nkey = \"{}\"\n{plugin}",
                    key(3),
                    key(3)
                ),
                6,
                "as publisher `a`'s has",
                "list each key once",
            ),
            (
                format!("[trust]\nrequire_signature = true\n[[trust.publisher]]\nname = \"a\"\nkey = \"{}\"\n{plugin}require_signature = false\n", key(4)),
                8,
                "requires a signature of every plugin",
                "sign the plugin",
            ),
            (
                "[[plugin]]\nname = \"p\"\nsource = \"https://u:pw@example.com/p.wasm\"\nsha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"\n".into(),
                3,
                "carries credentials",
                "without credentials",
            ),
            (
                "[[plugin]]\nname = \"p\"\nsource = \"http://example.com/p.wasm\"\n".into(),
                3,
                "scheme `http`",
                "plain http:// is refused",
            ),
            (
                "[[plugin]]\nname = \"p\"\nsource = \"oci://tool:1.0\"\n".into(),
                3,
                "not an OCI reference",
                "oci://<registry>/<repository>:<tag>",
            ),
            (
                "[registries]\ninsecure = [\"a b\"]\n[[plugin]]\nname = \"p\"\nsource = \"p.wasm\"\n".into(),
                2,
                "is not a host[:port]",
                "127.0.0.1:5000",
            ),
            (
                "[[registries.login]]\nregistry = \"ghcr.io\"\nusername = \"me\"\npassword = \"hunter2\"\n[[plugin]]\nname = \"p\"\nsource = \"p.wasm\"\n".into(),
                4,
                "written in the config itself",
                "from_env",
            ),
        ];
        for (text, line, message, fix) in &cases {
            let err = parse_in(dir.path(), text).unwrap_err();
            assert_eq!(err.origin.line, *line, "{text:?}: {err}");
            assert!(err.message.contains(message), "{text:?}: {err}");
            assert!(err.fix.contains(fix), "{text:?}: {err}");
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// A config using most of what a config can say.
        const RICH: &str = "[http]\nstateless = true\n[audit]\nfile = \"a.jsonl\"\n\
            [limits]\ncalls_per_minute = 60\n[[plugin]]\nname = \"p\"\nsource = \"p.wasm\"\n\
            prefix = \"x\"\n[plugin.tools]\nt = false\n[plugin.grants]\n\
            dirs = [{ host = \"demo\", guest = \"/data\", mode = \"ro\" }]\n\
            env = { A = \"b\" }\nallow_hosts = [\"https://*.example.com\"]\nfuel = 1000000\n";

        proptest! {
            /// No text panics the parser; a refusal says what is wrong.
            #[test]
            fn any_text_is_parsed_or_refused(text in "\\PC{0,200}") {
                let dir = fixture();
                if let Err(e) = parse_in(dir.path(), &text) {
                    prop_assert!(!e.message.is_empty());
                }
            }

            /// A valid config with anything inserted anywhere is parsed or
            /// refused with a message, never a panic.
            #[test]
            fn an_edited_config_is_parsed_or_refused(at in any::<prop::sample::Index>(), insert in "\\PC{0,12}") {
                let dir = fixture();
                prop_assert!(parse_in(dir.path(), RICH).is_ok());
                let mut text = RICH.to_string();
                let mut at = at.index(text.len() + 1);
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                text.insert_str(at, &insert);
                if let Err(e) = parse_in(dir.path(), &text) {
                    prop_assert!(!e.message.is_empty());
                }
            }

            /// A plugin's name, prefix and grants read back as written.
            #[test]
            fn names_and_grants_read_back(
                name in "[a-z][a-z0-9_-]{0,20}",
                prefix in "[a-z][a-z0-9_]{0,10}",
                fuel in 1u64..1_000_000_000_000,
                value in "[ -~]{0,20}",
            ) {
                let dir = fixture();
                let text = format!(
                    "[[plugin]]\nname = {name:?}\nsource = \"p.wasm\"\nprefix = {prefix:?}\n\
                     [plugin.grants]\nfuel = {fuel}\nenv = {{ V = {value:?} }}\n"
                );
                let config = parse_in(dir.path(), &text).unwrap();
                let plugin = &config.plugins[0];
                prop_assert_eq!(&plugin.name, &name);
                prop_assert_eq!(plugin.naming.prefix.as_deref(), Some(prefix.as_str()));
                prop_assert_eq!(plugin.grants.limits.fuel, fuel);
                prop_assert_eq!(&plugin.grants.env.vars, &vec![("V".to_string(), value)]);
            }
        }
    }
}
