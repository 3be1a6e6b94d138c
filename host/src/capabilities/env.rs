//! Environment: explicit values only. The host's own environment is never
//! passed through, so a secret in the host's environment cannot leak.

use crate::config::{ConfigError, Source};
use std::collections::BTreeMap;
use toml::Spanned;
use wasmtime_wasi::WasiCtxBuilder;

/// The variables a plugin sees, in name order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvGrant {
    /// Name and value pairs.
    pub vars: Vec<(String, String)>,
}

pub(super) fn parse(
    src: &Source,
    raw: BTreeMap<String, Spanned<String>>,
) -> Result<EnvGrant, ConfigError> {
    let mut vars = Vec::with_capacity(raw.len());
    for (name, value) in raw {
        if name.is_empty() || name.contains(['=', '\0']) {
            return Err(src.error(
                value.span(),
                format!("environment variable name {name:?} is not valid"),
                "use a non-empty name without `=` or NUL",
            ));
        }
        if value.get_ref().contains('\0') {
            return Err(src.error(
                value.span(),
                format!("the value of environment variable `{name}` contains a NUL byte"),
                "remove the NUL byte",
            ));
        }
        vars.push((name, value.into_inner()));
    }
    Ok(EnvGrant { vars })
}

pub(super) fn apply(grant: &EnvGrant, wasi: &mut WasiCtxBuilder) {
    wasi.envs(&grant.vars);
}
