//! Caller identity: who called, for plugins granted `caller_identity`.
//!
//! By default a plugin never learns who called it: the token stays in the
//! host and the caller is known only to the policy and the log. A plugin
//! that keeps data per user may be granted the caller's identity, which
//! its call then sees as environment variables (never the token itself).

use super::Grants;
use super::per_caller::Principal;
use crate::auth::policy::Caller;
use crate::service::CallContext;
use wasmtime_wasi::WasiCtxBuilder;

/// What one call's grants know of its caller, made at admission: only
/// what the plugin's grants use, so a plugin granted nothing of the kind
/// costs nothing per call.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// The variables of `caller_identity` (empty unless granted).
    pub env: Vec<(String, String)>,
    /// The verified caller, for grants that name it (see
    /// [`super::per_caller`]); `None` when none does or nobody is verified.
    pub principal: Option<Principal>,
    /// Whose credentials the call's requests carry (see
    /// [`crate::credentials`]): the verified caller, or over stdio the
    /// local user ([`LOCAL_ISSUER`]); `None` when the plugin has no
    /// connections or nobody can own one.
    pub owner: Option<Principal>,
}

/// The issuer of the one local user over stdio: no issuer's URL, so no
/// token's caller is ever them.
pub const LOCAL_ISSUER: &str = "local";

/// The scope of a call in `context` (whose caller is `None` over stdio,
/// or HTTP without `[auth]`) of a plugin with `grants`, at `tenant`.
pub fn scope(grants: &Grants, context: &CallContext<'_>, tenant: Option<&str>) -> Scope {
    let caller = context.caller;
    let per_caller = grants.per_caller();
    let connects = !grants.net.connections.is_empty();
    let env = match grants.caller_identity {
        true => env(caller, tenant),
        false => Vec::new(),
    };
    if !per_caller && !connects {
        // The common case: nothing to build per call.
        return Scope {
            env,
            ..Scope::default()
        };
    }
    // A token without `sub` names nobody: its callers would all share one
    // folder, and one account.
    let verified = caller.filter(|c| !c.subject.is_empty()).map(|c| Principal {
        tenant: tenant.map(str::to_string),
        issuer: c.issuer.clone(),
        subject: c.subject.clone(),
    });
    let local = || Principal {
        tenant: tenant.map(str::to_string),
        issuer: LOCAL_ISSUER.into(),
        subject: "local".into(),
    };
    Scope {
        env,
        principal: verified.clone().filter(|_| per_caller),
        owner: match (verified, context.local) {
            _ if !connects => None,
            (Some(verified), _) => Some(verified),
            (None, true) => Some(local()),
            (None, false) => None,
        },
    }
}

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
fn env(caller: Option<&Caller>, tenant: Option<&str>) -> Vec<(String, String)> {
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

/// Gives a fresh call the identity [`scope`] made for it at admission
/// (empty unless the plugin is granted `caller_identity`).
pub(super) fn apply(scope: &Scope, wasi: &mut WasiCtxBuilder) {
    wasi.envs(&scope.env);
}

fn join(set: &std::collections::BTreeSet<String>) -> String {
    set.iter().map(String::as_str).collect::<Vec<_>>().join(" ")
}
