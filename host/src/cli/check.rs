//! `moat check` and `moat inspect`: what a config or a plugin offers.

use super::load_config;
use crate::config::Config;
use crate::runtime::{Plugin, Runtime, RuntimeOptions};
use crate::service::{Operations, ToolService};
use crate::source::Provenance;
use crate::source::lock::Lock;
use serde_json::json;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

/// Loads every plugin of a config and prints its tools and grants.
pub(super) async fn check(path: Option<&Path>) -> anyhow::Result<ExitCode> {
    let loaded = load_config(path)?;
    let config = &loaded.config;
    // The same loading as `serve` (schemas compiled, names checked), with
    // no audit log: a running server may hold it.
    let runtime = Arc::new(Runtime::new(
        &RuntimeOptions::for_config(config).fresh_tags(),
    )?);
    let services = ToolService::load_all(config, runtime, &Operations::default()).await?;
    let mut tools = 0;
    for (served, service) in &services {
        let auth = served.auth.map_or("no authentication".to_string(), |a| {
            format!("tokens from {} for {}", a.token.issuer, a.token.resource)
        });
        match served.tenant {
            Some(tenant) => println!("tenant {tenant} at {} ({auth})", served.path),
            None => println!("endpoint {} ({auth})", served.path),
        }
        for plugin in service.plugins() {
            tools += plugin.tools.len();
            println!("plugin {}", plugin.name);
            print_provenance(&plugin.provenance, "  ", "none checked");
            println!(
                "  compile  {:.1} ms ({:?})",
                plugin.load.compile.as_secs_f64() * 1e3,
                plugin.load.cache
            );
            println!("  tools");
            for tool in &plugin.tools {
                println!(
                    "    {}  {}",
                    plugin.naming.exposed(&plugin.name, &tool.name),
                    tool.description
                );
            }
            print_offers(plugin);
            print_grants(plugin);
        }
    }
    print_operations(config);
    let found: Vec<&Provenance> = services
        .iter()
        .flat_map(|(_, service)| service.plugins())
        .map(|p| &p.provenance)
        .collect();
    let drift = match path.map(Lock::beside).filter(|lock| lock.exists()) {
        Some(lock) => print_drift(&Lock::read(&lock)?, &found),
        None => 0,
    };
    if drift > 0 {
        println!(
            "drift: {drift} plugin(s) differ from the lock file; review them, then run `moat lock`, or `moat serve --locked` refuses them"
        );
        return Ok(ExitCode::from(1));
    }
    println!(
        "ok: {} endpoint(s), {} plugin(s), {tools} tool(s) from {}",
        config.served().len(),
        config.all_plugins().count(),
        loaded.label
    );
    Ok(ExitCode::SUCCESS)
}

/// Compares what each source gives now with what `lock` says; prints
/// each difference and returns how many there are.
fn print_drift(lock: &Lock, found: &[&Provenance]) -> usize {
    let mut drift = 0;
    for now in found {
        match lock.entry(&now.source) {
            None => {
                drift += 1;
                println!(
                    "drift    {} is not in {}",
                    now.source,
                    lock.path().display()
                );
            }
            Some(locked) if locked.sha256 != now.sha256 || locked.resolved != now.resolved => {
                drift += 1;
                println!(
                    "drift    {} now resolves to {} (sha256 {}); {} says {} (sha256 {})",
                    now.source,
                    now.resolved,
                    now.sha256,
                    lock.path().display(),
                    locked.resolved,
                    locked.sha256
                );
            }
            Some(locked) if locked.signer != now.signer => {
                drift += 1;
                println!(
                    "drift    {} is now signed by {}; {} says {}",
                    now.source,
                    now.signer.as_deref().unwrap_or("no checked publisher"),
                    lock.path().display(),
                    locked.signer.as_deref().unwrap_or("no checked publisher")
                );
            }
            Some(_) => {}
        }
    }
    if drift == 0 {
        println!(
            "lock     {}: every plugin is as locked",
            lock.path().display()
        );
    }
    drift
}

/// `moat lock`: loads every plugin as `serve` would (fetched, verified,
/// compiled, described) and writes what each source resolved to.
pub(super) async fn lock(path: &Path) -> anyhow::Result<ExitCode> {
    let lock = Lock::beside(path);
    if lock == path {
        anyhow::bail!(
            "the lock file would be written over the config {}; name the config *.toml",
            path.display()
        );
    }
    let config = crate::config::Config::load(path)?;
    let runtime = Arc::new(Runtime::new(
        &RuntimeOptions::for_config(&config).fresh_tags(),
    )?);
    let services = ToolService::load_all(&config, runtime, &Operations::default()).await?;
    let entries: Vec<Provenance> = services
        .iter()
        .flat_map(|(_, service)| service.plugins())
        .map(|p| p.provenance.clone())
        .collect();
    for entry in &entries {
        println!(
            "{}\n  resolved {}\n  sha256   {}\n  signer   {}",
            entry.source,
            entry.resolved,
            entry.sha256,
            entry.signer.as_deref().unwrap_or("none checked")
        );
    }
    Lock::write(&lock, entries)?;
    println!("wrote {}", lock.display());
    Ok(ExitCode::SUCCESS)
}

/// Where a plugin came from and who signed it, each line after `indent`;
/// `unsigned` says what no checked signature means here.
fn print_provenance(p: &crate::source::Provenance, indent: &str, unsigned: &str) {
    println!("{indent}source   {}", p.source);
    if p.resolved != p.source {
        println!("{indent}resolved {}", p.resolved);
    }
    println!("{indent}sha256   {}", p.sha256);
    match &p.signer {
        Some(s) => println!("{indent}signer   publisher `{s}` (signature verified)"),
        None => println!("{indent}signer   {unsigned}"),
    }
}

/// The plugin's resources, templates and prompts, if it offers any.
fn print_offers(plugin: &Plugin) {
    if plugin.naming.hide_resources {
        println!("  resources not served (resources = false)");
    } else {
        for (kind, uri, about) in resource_lines(plugin) {
            println!("  {kind:<8} {uri}  {about}");
        }
    }
    for p in &plugin.prompts {
        println!(
            "  prompt   {}  {}",
            plugin.naming.prefixed(&plugin.name, &p.name),
            p.description.as_deref().unwrap_or_default()
        );
    }
}

/// Each resource and template of `plugin`: its kind, URI (or template)
/// and what it is.
fn resource_lines(plugin: &Plugin) -> impl Iterator<Item = (&'static str, &str, &str)> {
    fn about<'a>(description: &'a Option<String>, name: &'a str) -> &'a str {
        description.as_deref().unwrap_or(name)
    }
    let fixed = plugin
        .resources
        .iter()
        .map(move |r| ("resource", r.uri.as_str(), about(&r.description, &r.name)));
    let templated = plugin.templates.iter().map(move |t| {
        (
            "template",
            t.uri_template.as_str(),
            about(&t.description, &t.name),
        )
    });
    fixed.chain(templated)
}

/// The audit log, limits and metrics settings, as they will apply.
fn print_operations(config: &Config) {
    match &config.audit {
        None => println!("audit    none"),
        Some(a) => {
            let mut sinks: Vec<String> = a.file.iter().map(|f| f.display().to_string()).collect();
            if a.stdout {
                sinks.push("stdout".into());
            }
            println!(
                "audit    {} (rotate at {} bytes{}, {})",
                sinks.join(" and "),
                a.max_file_bytes,
                if a.sync { ", fsync" } else { "" },
                if a.fail_closed {
                    "calls refused while it cannot be written"
                } else {
                    "calls served while it cannot be written"
                }
            );
        }
    }
    let l = &config.limits;
    let mut limits = Vec::new();
    if let Some(rate) = l.calls_per_minute {
        limits.push(format!("{rate} calls/min per caller (burst {})", l.burst));
    }
    for (tool, q) in &l.tools {
        limits.push(format!(
            "{tool} {} calls/min (burst {})",
            q.calls_per_minute, q.burst
        ));
    }
    if let Some(n) = l.max_concurrent_per_tenant {
        limits.push(format!("{n} calls at once per endpoint"));
    }
    limits.push(format!("{} calls at once in all", config.max_in_flight()));
    limits.push(format!(
        "{} tokenless refusals/min per address (IPv6 per /{}), {} per endpoint",
        l.refusals_per_minute, l.ipv6_prefix, l.refusals_per_minute_total
    ));
    println!("limits   {}", limits.join("; "));
    if let Some(backend) = &l.backend {
        println!(
            "shared   limits shared by replicas through Redis (answer within {} ms, else calls {})",
            backend.timeout.as_millis(),
            if backend.fail_open {
                "are admitted without shared limits"
            } else {
                "are refused"
            }
        );
    }
    if !config.http.trusted_proxies.is_empty() {
        let proxies: Vec<String> = config
            .http
            .trusted_proxies
            .iter()
            .map(ToString::to_string)
            .collect();
        let headers = match config.http.proxy_headers {
            crate::transport::forwarded::ProxyHeaders::XForwarded => {
                "X-Forwarded-For and X-Forwarded-Host"
            }
            crate::transport::forwarded::ProxyHeaders::Forwarded => "Forwarded",
        };
        println!(
            "proxies  client address and host read from {headers} sent by {} only",
            proxies.join(", ")
        );
    }
    match config.admin.listen {
        Some(addr) => println!("metrics  http://{addr}/metrics"),
        None => println!("metrics  not served (set [admin] listen or --admin)"),
    }
}

/// What `moat inspect` looks at.
pub(super) struct Inspected<'a> {
    /// The plugin: a file, an oci:// reference or an https:// URL.
    pub source: &'a str,
    /// The digest an https:// source must have.
    pub sha256: Option<&'a str>,
    /// Whose `[registries]`, `[trust]` and `[runtime]` apply.
    pub config: Option<&'a Path>,
    /// The WIT whose doc comments describe a generic component's tools.
    pub wit: Option<&'a Path>,
}

/// A one-plugin config for `inspect`: `source` with every grant denied,
/// and `[registries]`, `[trust]` and `[runtime]` from `config` (whose
/// folder its relative paths start from).
fn inspect_config(at: Inspected) -> anyhow::Result<crate::config::Config> {
    let Inspected {
        source,
        sha256,
        config,
        wit,
    } = at;
    let mut table = toml::Table::new();
    if let Some(path) = config {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        let raw: toml::Table = text
            .parse()
            .map_err(|e| anyhow::anyhow!("{} is not TOML: {e}", path.display()))?;
        for key in ["registries", "trust", "runtime"] {
            if let Some(value) = raw.get(key) {
                table.insert(key.into(), value.clone());
            }
        }
    }
    let remote = source.contains("://");
    let mut plugin = toml::Table::new();
    plugin.insert("name".into(), "plugin".into());
    plugin.insert(
        "source".into(),
        if remote {
            source.to_string()
        } else {
            std::path::absolute(source)?.to_string_lossy().into_owned()
        }
        .into(),
    );
    if let Some(pin) = sha256 {
        plugin.insert("sha256".into(), pin.into());
    }
    if let Some(wit) = wit {
        let wit = std::path::absolute(wit)?;
        plugin.insert("wit".into(), wit.to_string_lossy().into_owned().into());
    }
    table.insert(
        "plugin".into(),
        toml::Value::Array(vec![toml::Value::Table(plugin)]),
    );
    let text = toml::to_string(&table)?;
    match config {
        Some(path) => Ok(crate::config::Config::parse(path, &text)?),
        // No file to point into: the error names the plugin instead.
        None => crate::config::Config::parse(&std::env::current_dir()?.join("moat.toml"), &text)
            .map_err(|e| anyhow::anyhow!("{source}: {}\n  fix: {}", e.message, e.fix)),
    }
}

fn print_grants(plugin: &Plugin) {
    let g = &plugin.grants;
    println!("  grants");
    if g.dirs.is_empty() {
        println!("    dirs     none");
    }
    for dir in &g.dirs {
        let mut host = dir.host.display().to_string();
        for segment in &dir.per_caller {
            host = format!("{host}/{segment}");
        }
        let per_caller = match dir.per_caller.is_empty() {
            true => "",
            false => ", per caller, made on first use",
        };
        println!(
            "    dir      {host} -> {} ({:?}{per_caller})",
            dir.guest, dir.mode
        );
    }
    // Values may be secrets: only names and where values come from.
    let names: Vec<String> = g
        .env
        .vars
        .iter()
        .zip(&g.env.origins)
        .map(|((name, _), origin)| match origin {
            crate::capabilities::env::EnvOrigin::Literal => name.clone(),
            origin => format!("{name} ({origin})"),
        })
        .chain(
            g.env
                .per_caller
                .iter()
                .map(|(name, _)| format!("{name} (per caller)")),
        )
        .collect();
    println!(
        "    env      {}",
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    );
    if g.dirs
        .iter()
        .any(|d| d.mode == crate::capabilities::Mode::Rw)
    {
        println!(
            "    writes   {} bytes per call, symlinks {}",
            g.max_write_bytes,
            if g.allow_symlinks {
                "allowed"
            } else {
                "refused"
            }
        );
    }
    let net = &g.net;
    if net.allow.is_empty() {
        println!("    network  none");
    } else {
        println!(
            "    network  {} ({} requests per call, {} bytes per response, {} ms per request)",
            net.allow.entries().join(", "),
            net.max_requests,
            net.max_response_bytes,
            net.request_timeout.as_millis()
        );
    }
    for connection in &net.connections {
        let hosts: Vec<String> = connection.hosts.iter().map(ToString::to_string).collect();
        println!(
            "    connect  {} for {}: the caller's credential, added by the host",
            connection.name,
            hosts.join(", ")
        );
    }
    if let Some(sampling) = g.sampling {
        println!("    sampling {} tokens per call", sampling.max_tokens);
    }
    if g.elicitation {
        println!("    elicitation allowed");
    }
    if g.caller_identity {
        println!(
            "    identity {}",
            crate::capabilities::identity::VARIABLES.join(", ")
        );
    }
    let l = &g.limits;
    let fuel = match l.metered {
        true => l.fuel.to_string(),
        false => "not counted".to_string(),
    };
    println!(
        "    limits   fuel {fuel}, memory {} MiB, timeout {} ms, output {} bytes, {} handles",
        l.memory_bytes >> 20,
        l.timeout.as_millis(),
        l.max_output_bytes,
        l.max_handles
    );
}

/// Prints a plugin file's tools, schemas and imports.
pub(super) async fn inspect(at: Inspected<'_>, as_json: bool) -> anyhow::Result<ExitCode> {
    let config = inspect_config(at)?;
    let mut options = RuntimeOptions::permissive(config.runtime.cache_dir.clone()).fresh_tags();
    options.fetch.registries = config.registries.clone();
    options.fetch.max_bytes = config.runtime.max_plugin_bytes;
    let runtime = Runtime::new(&options)?;
    let plugin = runtime.load(&config.plugins[0]).await?;
    let p = &plugin.provenance;
    if as_json {
        let value = json!({
            "source": p.source,
            "resolved": p.resolved,
            "sha256": p.sha256,
            "signer": p.signer,
            "tools": plugin.tools,
            "resources": plugin.resources,
            "resourceTemplates": plugin.templates,
            "prompts": plugin.prompts,
            "imports": plugin.imports,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    print_provenance(
        p,
        "",
        "none checked (--config with [[trust.publisher]] checks one)",
    );
    println!("tools");
    for tool in &plugin.tools {
        println!("  {}  {}", tool.name, tool.description);
        println!(
            "    annotations    {}",
            serde_json::to_string(&tool.annotations)?
        );
        println!(
            "    input schema   {}",
            serde_json::to_string(&tool.input_schema)?
        );
        if let Some(schema) = &tool.output_schema {
            println!("    output schema  {}", serde_json::to_string(schema)?);
        }
    }
    if !plugin.resources.is_empty() || !plugin.templates.is_empty() {
        println!("resources");
        for (_, uri, about) in resource_lines(&plugin) {
            println!("  {uri}  {about}");
        }
    }
    if !plugin.prompts.is_empty() {
        println!("prompts");
        for p in &plugin.prompts {
            let arguments: Vec<String> = p
                .arguments
                .iter()
                .map(|a| format!("{}{}", a.name, if a.required { "" } else { "?" }))
                .collect();
            println!(
                "  {}({})  {}",
                p.name,
                arguments.join(", "),
                p.description.as_deref().unwrap_or_default()
            );
        }
    }
    println!("imports (what it could use if granted)");
    for import in &plugin.imports {
        println!("  {import}");
    }
    Ok(ExitCode::SUCCESS)
}
