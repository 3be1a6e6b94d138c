//! Environment: explicit values only. The host's own environment is never
//! passed through, so a secret in the host's environment cannot leak. A
//! value is written in the config, or taken once at load from a named host
//! variable (`{ from_env = "GITHUB_TOKEN" }`) or a file
//! (`{ from_file = "/run/secrets/api_key" }`), so that secrets need not
//! sit in `moat.toml`. Values are never printed, logged or audited.
//!
//! A literal value may name the caller (`USER_ID = "{subject}"`, see
//! [`super::per_caller`]): the variable is set, to the value filled from
//! the verified token, only in calls that have one.

use super::per_caller::{Placeholder, Principal, Template};
use crate::diagnostics::{ConfigError, Source};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use toml::Spanned;
use wasmtime_wasi::WasiCtxBuilder;

/// Bytes a `from_file` value may have.
const MAX_FILE_VALUE: u64 = 64 << 10;

/// The variables a plugin sees, in name order.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct EnvGrant {
    /// Name and value pairs.
    pub vars: Vec<(String, String)>,
    /// Where each value came from, in the same order.
    pub origins: Vec<EnvOrigin>,
    /// Variables whose value names the caller, in name order.
    pub per_caller: Vec<(String, Template)>,
}

/// Where a granted value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvOrigin {
    /// Written in the config.
    Literal,
    /// The host variable of this name, read at load.
    Env(String),
    /// This file, read at load.
    File(PathBuf),
}

impl fmt::Display for EnvOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvOrigin::Literal => f.write_str("literal"),
            EnvOrigin::Env(name) => write!(f, "from env {name}"),
            EnvOrigin::File(path) => write!(f, "from file {}", path.display()),
        }
    }
}

impl fmt::Debug for EnvGrant {
    /// Names and origins only: values may be secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(
                self.vars
                    .iter()
                    .zip(&self.origins)
                    .map(|((name, _), origin)| (name, origin as &dyn fmt::Debug)),
            )
            .entries(
                self.per_caller
                    .iter()
                    .map(|(name, _)| (name, &"per caller" as &dyn fmt::Debug)),
            )
            .finish()
    }
}

/// One value of `env` as written.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawValue {
    Literal(String),
    From(RawFrom),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFrom {
    from_env: Option<String>,
    from_file: Option<String>,
}

/// `[plugin.grants] env`; `{tenant}` is allowed when the plugin serves a
/// tenant.
pub(super) fn parse(
    src: &Source,
    raw: BTreeMap<String, Spanned<RawValue>>,
    in_tenant: bool,
) -> Result<EnvGrant, ConfigError> {
    let mut grant = EnvGrant::default();
    for (name, value) in raw {
        let span = value.span();
        if name.is_empty() || name.contains(['=', '\0']) {
            return Err(src.error(
                span,
                format!("environment variable name {name:?} is not valid"),
                "use a non-empty name without `=` or NUL",
            ));
        }
        let (text, origin) = match value.into_inner() {
            RawValue::Literal(text) => match Template::parse(&text) {
                Some(t) if !in_tenant && t.placeholders().any(|p| p == Placeholder::Tenant) => {
                    return Err(src.error(
                        span,
                        format!("the value of `{name}` names {{tenant}}, and this plugin serves the top-level endpoint, which has no tenant"),
                        "remove {tenant}, or configure the plugin under [tenants.NAME]",
                    ));
                }
                Some(template) => {
                    grant.per_caller.push((name, template));
                    continue;
                }
                None => (text, EnvOrigin::Literal),
            },
            RawValue::From(from) => from_source(src, span.clone(), &format!("`{name}`"), from)?,
        };
        if text.contains('\0') {
            return Err(src.error(
                span,
                format!("the value of environment variable `{name}` contains a NUL byte"),
                "remove the NUL byte",
            ));
        }
        grant.vars.push((name, text));
        grant.origins.push(origin);
    }
    Ok(grant)
}

/// The value `from` names, read now; `what` names it in errors.
pub(crate) fn from_source(
    src: &Source,
    span: std::ops::Range<usize>,
    what: &str,
    from: RawFrom,
) -> Result<(String, EnvOrigin), ConfigError> {
    match from {
        RawFrom {
            from_env: Some(var),
            from_file: None,
        } => match std::env::var(&var) {
            Ok(text) => Ok((text, EnvOrigin::Env(var))),
            Err(_) => Err(src.error(
                span,
                format!("{what} is to come from the host variable {var}, which is not set (or not UTF-8)"),
                format!("set {var} in Moat's environment, or grant another value"),
            )),
        },
        RawFrom {
            from_env: None,
            from_file: Some(file),
        } => {
            let path = src.resolve(&file);
            let text = read_value(&path).map_err(|why| {
                src.error(
                    span,
                    format!("{what} is to come from {}, which {why}", path.display()),
                    "point from_file at a readable file of at most 64 KiB (its one trailing newline is dropped)",
                )
            })?;
            Ok((text, EnvOrigin::File(path)))
        }
        _ => Err(src.error(
            span,
            format!("{what} must name exactly one of from_env and from_file"),
            "write { from_env = \"VAR\" } or { from_file = \"/run/secrets/name\" }",
        )),
    }
}

/// A secret file's text without its one trailing newline, or why not.
fn read_value(path: &std::path::Path) -> Result<String, String> {
    let metadata = std::fs::metadata(path).map_err(|e| format!("cannot be read ({})", e.kind()))?;
    // A FIFO or a device would hold the config's load forever.
    if !metadata.is_file() {
        return Err("is not a regular file".into());
    }
    let size = metadata.len();
    if size > MAX_FILE_VALUE {
        return Err(format!("has {size} bytes"));
    }
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("cannot be read ({})", e.kind()))?;
    let text = text.strip_suffix('\n').unwrap_or(&text);
    Ok(text.strip_suffix('\r').unwrap_or(text).to_string())
}

/// Sets the granted variables, and those naming the caller when there is
/// a verified `principal`.
pub(super) fn apply(grant: &EnvGrant, wasi: &mut WasiCtxBuilder, principal: Option<&Principal>) {
    wasi.envs(&grant.vars);
    if let Some(who) = principal {
        for (name, template) in &grant.per_caller {
            wasi.env(name, template.fill(who));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn parse(dir: &std::path::Path, env: &str) -> Result<Config, crate::diagnostics::ConfigError> {
        std::fs::write(dir.join("p.wasm"), b"not really wasm").unwrap();
        let text = format!(
            "[[plugin]]\nname = \"p\"\nsource = \"p.wasm\"\n[plugin.grants]\nenv = {{ {env} }}\n"
        );
        Config::parse(&dir.join("moat.toml"), &text)
    }

    #[test]
    fn values_come_from_the_config_a_host_variable_or_a_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("key.txt"), "file-secret\n").unwrap();
        // PATH is set in every test environment.
        let path = std::env::var("PATH").unwrap();
        let config = parse(
            dir.path(),
            r#"A = "plain", B = { from_env = "PATH" }, C = { from_file = "key.txt" }"#,
        )
        .unwrap();
        let env = &config.plugins[0].grants.env;
        assert_eq!(
            env.vars,
            [
                ("A".to_string(), "plain".to_string()),
                ("B".to_string(), path.clone()),
                ("C".to_string(), "file-secret".to_string()),
            ]
        );
        // Debug output names origins, never values.
        let shown = format!("{env:?}");
        assert!(
            shown.contains("from_env") || shown.contains("Env(\"PATH\")"),
            "{shown}"
        );
        assert!(
            !shown.contains("file-secret") && !shown.contains(&path),
            "{shown}"
        );
    }

    #[test]
    fn a_missing_source_is_an_error_with_the_place_and_fix() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (
                r#"K = { from_env = "MOAT_TEST_SURELY_UNSET_7Q" }"#,
                "not set",
            ),
            (r#"K = { from_file = "missing.txt" }"#, "cannot be read"),
            (
                r#"K = { from_env = "PATH", from_file = "x" }"#,
                "exactly one",
            ),
            (r#"K = { }"#, "exactly one"),
        ];
        for (env, expected) in cases {
            let e = parse(dir.path(), env).unwrap_err();
            assert!(e.message.contains(expected), "{env}: {e}");
            assert_eq!(e.origin.line, 5, "{env}: {e}");
        }
    }
}
