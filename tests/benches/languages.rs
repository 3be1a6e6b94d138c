//! The price of a plugin's language: the same tool (`count` of the
//! `moat new` templates: lines, words and characters of a text) written in
//! Rust, JavaScript (componentize-js) and Python (componentize-py), each
//! built as its template's README says. For each: the component's size, a
//! cold load (compile, no cache), a warm load (the compile cache), and a
//! call in a fresh instance with the pooling allocator and the on-demand
//! one. Results go to docs/BENCHMARKS.md.
//!
//! Run: cargo build --release --bin moat && cargo bench -p moat-tests --bench languages

use moat::config::Config;
use moat::runtime::{Allocator, Runtime, RuntimeOptions};
use moat_tests::languages::new_project;
use std::path::Path;
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

const CALLS: usize = 300;
const WARMUP: usize = 30;
const COLD_LOADS: usize = 3;
const WARM_LOADS: usize = 5;
const ARGS: &str = r#"{"text":"hello wide world\nbye"}"#;

fn main() {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let moat = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/moat");
    assert!(
        moat.is_file(),
        "build the binary first: cargo build --release --bin moat"
    );
    let dir = tempfile::tempdir().unwrap();
    let rt = moat_tests::bench::runtime();
    let mut baseline: Option<Row> = None;
    println!(
        "{:<8} {:>9} {:>11} {:>11} {:>12} {:>12} {:>14}",
        "language", "size MB", "cold load", "warm load", "call p50", "call p99", "on-demand p50"
    );
    for lang in ["rust", "js", "python"] {
        let (_, wasm) = new_project(&moat, tmp, dir.path(), &format!("bench-{lang}"), lang);
        let row = rt.block_on(measure(&wasm, dir.path()));
        let ratio = |f: fn(&Row) -> Duration| match &baseline {
            Some(b) => format!(" ({:.1}x)", f(&row).as_secs_f64() / f(b).as_secs_f64()),
            None => String::new(),
        };
        println!(
            "{lang:<8} {:>9.2} {:>11} {:>11} {:>12} {:>12} {:>14}",
            row.size as f64 / 1e6,
            format!("{}{}", ms(row.cold), ratio(|r| r.cold)),
            format!("{}{}", ms(row.warm), ratio(|r| r.warm)),
            format!("{}{}", us(row.p50), ratio(|r| r.p50)),
            us(row.p99),
            format!("{}{}", us(row.on_demand), ratio(|r| r.on_demand)),
        );
        baseline.get_or_insert(row);
    }
}

struct Row {
    size: u64,
    cold: Duration,
    warm: Duration,
    p50: Duration,
    p99: Duration,
    on_demand: Duration,
}

async fn measure(wasm: &Path, dir: &Path) -> Row {
    let text = format!(
        "[[plugin]]\nname = \"count\"\nsource = {:?}\n",
        wasm.display().to_string()
    );
    let config = Config::parse(&dir.join("moat.toml"), &text).unwrap();
    let cache = dir.join("cache");
    let load = |cold: bool| {
        let (config, cache) = (&config, &cache);
        async move {
            if cold {
                let _ = std::fs::remove_dir_all(cache);
            }
            let mut options = RuntimeOptions::for_config(config);
            options.cache_dir = Some(cache.to_path_buf());
            let runtime = Runtime::new(&options).unwrap();
            let start = Instant::now();
            runtime.load(&config.plugins[0]).await.unwrap();
            start.elapsed()
        }
    };
    let mut cold = Vec::new();
    for _ in 0..COLD_LOADS {
        cold.push(load(true).await);
    }
    let mut warm = Vec::new();
    for _ in 0..WARM_LOADS {
        warm.push(load(false).await);
    }
    let pooling = RuntimeOptions {
        cache_dir: Some(cache.clone()),
        ..RuntimeOptions::for_config(&config)
    };
    let on_demand = RuntimeOptions {
        allocator: Allocator::OnDemand,
        ..pooling.clone()
    };
    let calls = calls(&pooling, &config).await;
    let on_demand = calls_p50(&on_demand, &config).await;
    Row {
        size: std::fs::metadata(wasm).unwrap().len(),
        cold: median(cold),
        warm: median(warm),
        p50: percentile(&calls, 0.5),
        p99: percentile(&calls, 0.99),
        on_demand,
    }
}

/// Sorted latencies of sequential calls, each in a fresh instance.
async fn calls(options: &RuntimeOptions, config: &Config) -> Vec<Duration> {
    let runtime = Runtime::new(options).unwrap();
    let plugin = runtime.load(&config.plugins[0]).await.unwrap();
    for _ in 0..WARMUP {
        assert!(runtime.call(&plugin, "count", ARGS).await.result.is_ok());
    }
    let mut times = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let start = Instant::now();
        let report = runtime.call(&plugin, "count", ARGS).await;
        times.push(start.elapsed());
        assert!(report.result.is_ok(), "{:?}", report.result);
    }
    times.sort();
    times
}

async fn calls_p50(options: &RuntimeOptions, config: &Config) -> Duration {
    percentile(&calls(options, config).await, 0.5)
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    percentile(&times, 0.5)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

fn us(d: Duration) -> String {
    format!("{:.0} us", d.as_secs_f64() * 1e6)
}
