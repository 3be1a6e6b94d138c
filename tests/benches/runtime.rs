//! Runtime benchmark: a trivial call in a fresh instance (p50, p99) with
//! the pooling and the on-demand allocator, and plugin load time with a
//! cold and a warm compile cache. Results go to docs/BENCHMARKS.md.
//!
//! Run: cargo bench -p moat-tests --bench runtime

use moat::config::Config;
use moat::runtime::{Allocator, Runtime, RuntimeOptions};
use moat_tests::plugin_wasm;
use std::time::{Duration, Instant};

/// reqwest, with the TLS feature Moat's downloads turn on, needs rustls's
/// process-wide provider before any client is built, rmcp's included.
#[ctor::ctor(unsafe)]
fn rustls_provider() {
    moat::source::install_crypto();
}

/// The allocator the `moat` binary ships with.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CALLS: usize = 20_000;
const WARMUP: usize = 2_000;
const LOADS: usize = 10;

fn main() {
    // Parts: `pooling`, `on-demand`, `load`.
    let wants = moat_tests::bench::wants;
    let rt = moat_tests::bench::runtime();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "[runtime]\ncache = false\n[[plugin]]\nname = \"hello\"\nsource = {:?}\n",
            plugin_wasm("hello").display().to_string()
        );
        let config = Config::parse(&dir.path().join("moat.toml"), &text).unwrap();
        let pooling = RuntimeOptions::for_config(&config);
        let on_demand = RuntimeOptions {
            allocator: Allocator::OnDemand,
            ..pooling.clone()
        };

        println!("trivial call (hello.echo) in a fresh instance, {CALLS} sequential calls");
        let base = if wants("pooling") {
            let base = call_latencies(&pooling, &config).await;
            report("pooling", &base, None);
            Some(base)
        } else {
            None
        };
        if wants("parallel") {
            // Two callers at once on the two worker threads: what a loaded
            // server sees. Reported per call, as wall time / calls.
            let runtime = std::sync::Arc::new(Runtime::new(&pooling).unwrap());
            let plugin = std::sync::Arc::new(runtime.load(&config.plugins[0]).await.unwrap());
            let start = Instant::now();
            let mut tasks = Vec::new();
            for _ in 0..2 {
                let (runtime, plugin) = (runtime.clone(), plugin.clone());
                tasks.push(tokio::spawn(async move {
                    for _ in 0..CALLS / 2 {
                        assert!(
                            runtime
                                .call(&plugin, "echo", r#"{"message":"hi"}"#)
                                .await
                                .result
                                .is_ok()
                        );
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
            let per_call = start.elapsed() / CALLS as u32;
            println!(
                "  parallel (2 callers)   {:>9.1} us wall per call, {:.1} us CPU per call",
                per_call.as_secs_f64() * 1e6,
                2.0 * per_call.as_secs_f64() * 1e6
            );
        }
        if wants("on-demand") {
            let demand = call_latencies(&on_demand, &config).await;
            report("on-demand", &demand, base.as_deref());
        }
        if wants("load") {
            println!("\nplugin load (hello), {LOADS} loads each");
            let cache_dir = dir.path().join("cache");
            let cold = load_times(&config, &cache_dir, true).await;
            let warm = load_times(&config, &cache_dir, false).await;
            report("cold cache (compile)", &cold, None);
            report("warm cache", &warm, Some(&cold));
        }
    });
}

async fn call_latencies(options: &RuntimeOptions, config: &Config) -> Vec<Duration> {
    let runtime = Runtime::new(options).unwrap();
    let plugin = runtime.load(&config.plugins[0]).await.unwrap();
    let args = r#"{"message":"hi"}"#;
    for _ in 0..WARMUP {
        assert!(runtime.call(&plugin, "echo", args).await.result.is_ok());
    }
    let mut times = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let start = Instant::now();
        let report = runtime.call(&plugin, "echo", args).await;
        times.push(start.elapsed());
        assert!(report.result.is_ok());
    }
    times
}

async fn load_times(config: &Config, cache: &std::path::Path, cold: bool) -> Vec<Duration> {
    let mut times = Vec::with_capacity(LOADS);
    for _ in 0..LOADS {
        if cold {
            let _ = std::fs::remove_dir_all(cache);
        }
        let mut options = RuntimeOptions::for_config(config);
        options.cache_dir = Some(cache.to_path_buf());
        let runtime = Runtime::new(&options).unwrap();
        let start = Instant::now();
        runtime.load(&config.plugins[0]).await.unwrap();
        times.push(start.elapsed());
    }
    times
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn report(name: &str, times: &[Duration], baseline: Option<&[Duration]>) {
    let mut sorted = times.to_vec();
    sorted.sort();
    let p50 = percentile(&sorted, 0.50);
    let p99 = percentile(&sorted, 0.99);
    let ratio = baseline.map(|b| {
        let mut b = b.to_vec();
        b.sort();
        format!(
            "  ({:.2}x the first row's p50)",
            p50.as_secs_f64() / percentile(&b, 0.50).as_secs_f64()
        )
    });
    println!(
        "  {name:<22} p50 {:>9.1} us   p99 {:>9.1} us{}",
        p50.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6,
        ratio.unwrap_or_default()
    );
}
