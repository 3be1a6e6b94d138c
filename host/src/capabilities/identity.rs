//! Caller identity: who called, for plugins granted `caller_identity`.
//!
//! By default a plugin never learns who called it: the token stays in the
//! host and the caller is known only to the policy and the log. A plugin
//! that keeps data per user may be granted the caller's identity, which
//! its call then sees as environment variables (never the token itself).

use crate::auth::policy::Caller;
use wasmtime_wasi::WasiCtxBuilder;

/// The variables a granted call sees; absent values are left out.
pub const VARIABLES: &[&str] = &[
    "MOAT_CALLER_SUBJECT",
    "MOAT_CALLER_CLIENT_ID",
    "MOAT_CALLER_SCOPES",
    "MOAT_CALLER_ROLES",
    "MOAT_TENANT",
];

/// The environment describing `caller` (`None` over stdio, or HTTP
/// without `[auth]`) at `tenant`.
pub fn env(caller: Option<&Caller>, tenant: Option<&str>) -> Vec<(String, String)> {
    let mut vars = Vec::new();
    let mut set = |name: &str, value: String| vars.push((name.to_string(), value));
    if let Some(caller) = caller {
        set(VARIABLES[0], caller.subject.clone());
        if let Some(client) = &caller.client_id {
            set(VARIABLES[1], client.clone());
        }
        set(VARIABLES[2], join(&caller.scopes));
        set(VARIABLES[3], join(&caller.roles));
    }
    if let Some(tenant) = tenant {
        set(VARIABLES[4], tenant.to_string());
    }
    vars
}

/// Gives a fresh call the identity [`env`] made for it at admission
/// (empty unless the plugin is granted `caller_identity`).
pub(super) fn apply(identity: &[(String, String)], wasi: &mut WasiCtxBuilder) {
    wasi.envs(identity);
}

fn join(set: &std::collections::BTreeSet<String>) -> String {
    set.iter().map(String::as_str).collect::<Vec<_>>().join(" ")
}
