//! The config's side of sources: `source` and `sha256` of a plugin, and
//! `[registries]`.

use super::PluginSource;
use super::oci::OciRef;
use crate::capabilities::env::{RawValue, from_source};
use crate::diagnostics::{ConfigError, Source};
use serde::Deserialize;
use std::fmt;
use std::path::PathBuf;
use toml::Spanned;

/// `[registries]`: how OCI registries are reached.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RegistryConfig {
    /// Registries (`host[:port]`) reached over plain HTTP; every other one
    /// over HTTPS.
    pub insecure: Vec<String>,
    /// A Docker-style `config.json` with credentials per registry.
    pub credentials: Option<PathBuf>,
    /// Credentials given in the config (from the environment or a file).
    pub logins: Vec<Login>,
}

/// A user name and password for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    /// The registry, `host[:port]`.
    pub registry: String,
    /// The user name.
    pub username: String,
    /// The password or token.
    pub password: String,
}

impl fmt::Debug for RegistryConfig {
    /// Registries and user names only: passwords are never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryConfig")
            .field("insecure", &self.insecure)
            .field("credentials", &self.credentials)
            .field(
                "logins",
                &self
                    .logins
                    .iter()
                    .map(|l| format!("{}@{}", l.username, l.registry))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRegistries {
    #[serde(default)]
    insecure: Vec<Spanned<String>>,
    credentials: Option<Spanned<String>>,
    #[serde(default)]
    login: Vec<Spanned<RawLogin>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLogin {
    registry: Spanned<String>,
    username: Spanned<RawValue>,
    password: Spanned<RawValue>,
}

/// Parses `[registries]`.
pub(crate) fn parse_registries(
    src: &Source,
    raw: RawRegistries,
) -> Result<RegistryConfig, ConfigError> {
    let mut config = RegistryConfig::default();
    for host in raw.insecure {
        let text = host.get_ref();
        if !registry_name(text) {
            return Err(src.error(
                host.span(),
                format!("insecure registry {text:?} is not a host[:port]"),
                "write the registry as it appears in references, such as \"127.0.0.1:5000\"",
            ));
        }
        config.insecure.push(host.into_inner());
    }
    config.credentials = raw.credentials.map(|c| src.resolve(c.get_ref()));
    for login in raw.login {
        let span = login.span();
        let login = login.into_inner();
        if !registry_name(login.registry.get_ref()) {
            return Err(src.error(
                login.registry.span(),
                format!(
                    "registry {:?} is not a host[:port]",
                    login.registry.get_ref()
                ),
                "write the registry as it appears in references, such as \"ghcr.io\"",
            ));
        }
        let value = |v: Spanned<RawValue>, what: &str| -> Result<String, ConfigError> {
            let span = v.span();
            match v.into_inner() {
                RawValue::Literal(text) => Ok(text),
                RawValue::From(from) => Ok(from_source(src, span, what, from)?.0),
            }
        };
        let username = value(login.username, "the registry user name")?;
        let password = match login.password.get_ref() {
            RawValue::Literal(_) => {
                return Err(src.error(
                    login.password.span(),
                    "a registry password is written in the config itself",
                    "take it from the environment or a file: password = { from_env = \"REGISTRY_TOKEN\" }",
                ));
            }
            RawValue::From(_) => value(login.password, "the registry password")?,
        };
        if config
            .logins
            .iter()
            .any(|l| l.registry == *login.registry.get_ref())
        {
            return Err(src.error(
                span,
                format!("registry {} has two logins", login.registry.get_ref()),
                "keep one [[registries.login]] per registry",
            ));
        }
        config.logins.push(Login {
            registry: login.registry.into_inner(),
            username,
            password,
        });
    }
    Ok(config)
}

/// `host[:port]`, as OCI references name registries.
fn registry_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 255
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
}

/// The https:// URL `at` (the plugin's `what`: its source or signature),
/// refused when it does not parse or carries credentials, which would be
/// printed in messages and written to the lock file.
pub(crate) fn https_url(
    src: &Source,
    at: &Spanned<String>,
    what: &str,
    file: &str,
) -> Result<url::Url, ConfigError> {
    let text = at.get_ref().trim();
    let url = url::Url::parse(text).map_err(|e| {
        src.error(
            at.span(),
            format!("{what} `{text}` is not a URL: {e}"),
            format!("write the full https:// URL of the {file}"),
        )
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(src.error(
            at.span(),
            format!(
                "the {what} URL on {} carries credentials",
                url.host_str().unwrap_or_default()
            ),
            format!("serve the {file} without credentials in its URL"),
        ));
    }
    Ok(url)
}

/// Parses a plugin's `source`, with its `sha256` pin already checked.
pub fn parse_source(
    src: &Source,
    source: &Spanned<String>,
    pinned: bool,
) -> Result<PluginSource, ConfigError> {
    let text = source.get_ref().trim();
    if let Some(reference) = text.strip_prefix("oci://") {
        return OciRef::parse(reference).map(PluginSource::Oci).map_err(|why| {
            src.error(
                source.span(),
                format!("source `{text}` is not an OCI reference: {why}"),
                "write oci://<registry>/<repository>:<tag> or oci://<registry>/<repository>@sha256:<digest>",
            )
        });
    }
    if text.starts_with("https://") {
        let url = https_url(src, source, "source", ".wasm file")?;
        if !pinned {
            // What a URL serves can change under it: only a digest says
            // which bytes were meant.
            return Err(src.error(
                source.span(),
                format!("source `{text}` is a URL without a sha256 pin"),
                format!(
                    "add sha256 = \"<digest>\" with the digest of the file you reviewed (`curl -sL {text} | sha256sum`), or use an oci:// reference (`moat lock` pins its digest)"
                ),
            ));
        }
        return Ok(PluginSource::Https(url));
    }
    if let Some((scheme, _)) = text.split_once("://") {
        return Err(src.error(
            source.span(),
            format!("source `{text}` has scheme `{scheme}`, which Moat does not fetch from"),
            "use a file path, an https:// URL with sha256, or an oci:// reference (plain http:// is refused: anyone on the path could swap the plugin)",
        ));
    }
    let path = src.resolve(text);
    if !path.is_file() {
        return Err(src.error(
            source.span(),
            format!("source `{text}` is not a file"),
            format!(
                "build the plugin, or correct `source` (resolved to {}; relative paths start at the config file's folder)",
                path.display()
            ),
        ));
    }
    Ok(PluginSource::File(path))
}
