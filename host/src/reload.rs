//! Reloading a served config without dropping a call.
//!
//! SIGHUP, or `POST /reload` on the admin address (`moat reload`), re-reads
//! the config file. Every endpoint's plugins are loaded again off the
//! serving path (fetched, verified, compiled on a blocking thread; an
//! unchanged plugin's code comes from the compile cache), and only when
//! every endpoint loaded are they swapped in, each endpoint at once. A
//! call in flight finishes on the version it started on; clients are told
//! the lists changed. A config or plugin that fails to load leaves the
//! running set untouched and is reported.
//!
//! What a reload applies: `[[plugin]]` tables, `[trust]`, `[registries]`,
//! `[[auth.rule]]`, `confirm` and `confirm_destructive` (at the top level
//! and in each tenant). Everything else (listeners, token validation,
//! limits, audit, the runtime) is fixed at start; a reload that changes
//! it is refused and names what needs a restart.

use crate::config::Config;
use crate::mcp::{LiveEndpoint, Serving};
use crate::metrics::ReloadLabels;
use crate::runtime::{Allocator, Runtime, RuntimeOptions};
use crate::service::{Operations, ToolService};
use crate::source::lock::Lock;
use std::path::PathBuf;
use std::sync::Arc;

/// Keys a reload applies, wherever an endpoint is configured (the top
/// level, and each `[tenants.<name>]`).
const RELOADABLE: [&str; 5] = [
    "plugin",
    "trust",
    "registries",
    "confirm",
    "confirm_destructive",
];

/// Reloads one serving process's config.
pub struct Reloader {
    path: PathBuf,
    locked: bool,
    /// Served over stdio, where the launching process is trusted: no
    /// token, so no policy (as at the start).
    stdio: bool,
    runtime: Arc<Runtime>,
    ops: Operations,
    /// The served endpoints, by tenant (`None`: the top-level one).
    endpoints: Vec<(Option<String>, LiveEndpoint)>,
    /// The config text running now; held while a reload runs, so that
    /// reloads happen one at a time.
    running: tokio::sync::Mutex<Running>,
}

struct Running {
    text: String,
    options: RuntimeOptions,
}

/// What a reload changed.
#[derive(Debug, Default, serde::Serialize)]
pub struct Reloaded {
    /// Plugins loaded, over every endpoint.
    pub plugins: usize,
    /// `<endpoint>: <plugin>` added, removed or changed (another digest,
    /// or other grants and names).
    pub added: Vec<String>,
    /// Plugins no longer served.
    pub removed: Vec<String>,
    /// Plugins whose bytes changed.
    pub changed: Vec<String>,
}

impl Reloader {
    /// A reloader of the config at `path` (read as `text`, with
    /// `options`), whose `endpoints` are served.
    #[allow(clippy::too_many_arguments)] // One call site: `moat serve`.
    pub fn new(
        path: PathBuf,
        locked: bool,
        stdio: bool,
        text: String,
        options: RuntimeOptions,
        runtime: Arc<Runtime>,
        ops: Operations,
        endpoints: Vec<(Option<String>, LiveEndpoint)>,
    ) -> Reloader {
        Reloader {
            path,
            locked,
            stdio,
            runtime,
            ops,
            endpoints,
            running: tokio::sync::Mutex::new(Running { text, options }),
        }
    }

    /// Re-reads the config and swaps in its plugins; `Err` (naming the
    /// problem) leaves everything as it was. Logged and counted
    /// (`moat_reloads_total`).
    pub async fn reload(&self) -> anyhow::Result<Reloaded> {
        let outcome = self.apply().await;
        let labels = ReloadLabels {
            outcome: if outcome.is_ok() { "ok" } else { "failed" }.into(),
        };
        crate::metrics::get().reloads.get_or_create(&labels).inc();
        match &outcome {
            Ok(r) => tracing::info!(
                plugins = r.plugins,
                added = ?r.added,
                removed = ?r.removed,
                changed = ?r.changed,
                "reloaded {}",
                self.path.display()
            ),
            Err(e) => tracing::error!(
                "the reload of {} failed; the running plugins are kept: {e:#}",
                self.path.display()
            ),
        }
        outcome
    }

    async fn apply(&self) -> anyhow::Result<Reloaded> {
        let mut running = match self.running.try_lock() {
            Ok(running) => running,
            Err(_) => anyhow::bail!("a reload is running already; ask again once it has answered"),
        };
        let text = std::fs::read_to_string(&self.path).map_err(|e| {
            anyhow::anyhow!("cannot read the config file {}: {e}", self.path.display())
        })?;
        let config = Config::parse(&self.path, &text)?;
        fixed_parts_unchanged(&running.text, &text)?;
        let mut options = RuntimeOptions::for_config(&config);
        if !fits(options.allocator, running.options.allocator) {
            anyhow::bail!(
                "restart to apply this config: a plugin's memory_mib is larger than the running pool's instance slots"
            );
        }
        if self.locked {
            options = options.locked(Arc::new(Lock::read(&Lock::beside(&self.path))?));
        }
        let previous = self.runtime.replace_fetcher(&options.fetch);
        let loaded = self.load(&config).await;
        let next = match loaded {
            Ok(next) => next,
            Err(e) => {
                self.runtime.restore_fetcher(previous);
                return Err(e);
            }
        };
        let mut summary = Reloaded::default();
        for ((tenant, live), serving) in self.endpoints.iter().zip(next) {
            compare(
                tenant.as_deref(),
                &live.current().service,
                &serving.service,
                &mut summary,
            );
            live.replace(serving);
        }
        running.text = text;
        running.options.fetch = options.fetch;
        Ok(summary)
    }

    /// Loads every endpoint of `config` (all or nothing).
    async fn load(&self, config: &Config) -> anyhow::Result<Vec<Arc<Serving>>> {
        let mut next = Vec::with_capacity(self.endpoints.len());
        for (tenant, live) in &self.endpoints {
            let mut served = config.endpoint(tenant.as_deref()).ok_or_else(|| {
                anyhow::anyhow!(
                    "restart to apply this config: it no longer has {}",
                    tenant
                        .as_deref()
                        .map_or("top-level plugins".to_string(), |t| format!("tenant `{t}`"))
                )
            })?;
            if self.stdio {
                served.auth = None;
            }
            let mut service = ToolService::load(self.runtime.clone(), served, &self.ops).await?;
            // The same limits (a reload cannot change them): calls running
            // on the old version keep counting against the new one's caps.
            service.keep_limits(&live.current().service);
            next.push(Serving::new(Arc::new(service)));
        }
        Ok(next)
    }
}

/// Whether plugins that need `new` fit the running pool, `running`.
fn fits(new: Allocator, running: Allocator) -> bool {
    match (new, running) {
        (
            Allocator::Pooling {
                max_memory_bytes: new,
                ..
            },
            Allocator::Pooling {
                max_memory_bytes: slots,
                ..
            },
        ) => new <= slots,
        (new, running) => new == running,
    }
}

/// Lists what changed between `old` and `new` at one endpoint.
fn compare(tenant: Option<&str>, old: &ToolService, new: &ToolService, summary: &mut Reloaded) {
    let at = |name: &str| match tenant {
        Some(t) => format!("{t}: {name}"),
        None => name.to_string(),
    };
    summary.plugins += new.plugins().len();
    for plugin in new.plugins() {
        match old.plugins().iter().find(|p| p.name == plugin.name) {
            None => summary.added.push(at(&plugin.name)),
            Some(before) if before.sha256 != plugin.sha256 => {
                summary.changed.push(at(&plugin.name))
            }
            Some(_) => {}
        }
    }
    for plugin in old.plugins() {
        if !new.plugins().iter().any(|p| p.name == plugin.name) {
            summary.removed.push(at(&plugin.name));
        }
    }
}

/// Refuses a new config that changes what only a restart applies, naming
/// the first such key.
fn fixed_parts_unchanged(old: &str, new: &str) -> anyhow::Result<()> {
    let fixed = |text: &str| -> anyhow::Result<toml::Table> {
        let mut table: toml::Table = text.parse()?;
        strip(&mut table);
        if let Some(toml::Value::Table(tenants)) = table.get_mut("tenants") {
            for (_, tenant) in tenants.iter_mut() {
                if let toml::Value::Table(tenant) = tenant {
                    strip(tenant);
                }
            }
        }
        Ok(table)
    };
    let (old, new) = (fixed(old)?, fixed(new)?);
    if old == new {
        return Ok(());
    }
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    let differs = keys
        .into_iter()
        .find(|k| old.get(*k) != new.get(*k))
        .map_or("the config".to_string(), |k| format!("`{k}`"));
    anyhow::bail!(
        "restart to apply this config: {differs} changed, and a reload applies only [[plugin]], [trust], [registries], [[auth.rule]], confirm and confirm_destructive"
    )
}

/// Removes the keys a reload applies from an endpoint's table.
fn strip(table: &mut toml::Table) {
    for key in RELOADABLE {
        table.remove(key);
    }
    if let Some(toml::Value::Table(auth)) = table.get_mut("auth") {
        auth.remove("rule");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_may_change_plugins_and_rules_but_not_listeners() {
        let old = "[http]\nlisten = \"127.0.0.1:1\"\n[auth]\nissuer = \"a\"\n[[auth.rule]]\ntools = [\"x.*\"]\n[[plugin]]\nname = \"x\"\nsource = \"x.wasm\"\n";
        let new = old.replace("x.*", "*").replace("x.wasm", "y.wasm")
            + "[tenants.t]\n[[tenants.t.plugin]]\nname = \"z\"\nsource = \"z.wasm\"\n";
        let err = fixed_parts_unchanged(old, &new).unwrap_err().to_string();
        assert!(err.contains("`tenants` changed"), "{err}");
        let new = old.replace("x.*", "*").replace("x.wasm", "y.wasm");
        fixed_parts_unchanged(old, &new).unwrap();
        let new = old.replace("127.0.0.1:1", "127.0.0.1:2");
        let err = fixed_parts_unchanged(old, &new).unwrap_err().to_string();
        assert!(err.contains("`http` changed"), "{err}");
    }
}
