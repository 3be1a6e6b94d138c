//! What every benchmark binary starts with, and the HTTP load both the
//! `http` and `deploy` benchmarks apply.

use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Time each side runs before it is measured.
pub const WARMUP: Duration = Duration::from_secs(1);
/// Time each side is measured for.
pub const MEASURE: Duration = Duration::from_secs(3);

/// A tool that does no work: the sandbox's fixed cost shows in full.
pub const GREET: Workload = Workload {
    tool: "hello.greet",
    args: || json!({ "name": "bench" }),
    expect: "Hello, bench!",
};

/// The runtime benchmarks run on: two workers, like the `moat` binary on
/// this 2-core machine.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Whether the part `name` runs: `cargo bench` passes `--bench`; other
/// arguments name the parts to run (all of them when none is named), which
/// keeps a profile clean and lets a side run beside just its baseline.
pub fn wants(name: &str) -> bool {
    let mut named = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .peekable();
    named.peek().is_none() || named.any(|part| part == name)
}

/// What the clients call, and a piece of the answer that shows it worked.
#[derive(Clone, Copy)]
pub struct Workload {
    /// The tool.
    pub tool: &'static str,
    /// Its arguments.
    pub args: fn() -> Value,
    /// Text every answer contains.
    pub expect: &'static str,
}

/// What one side of a benchmark did.
pub struct Load {
    /// Calls answered.
    pub calls: usize,
    /// In this time.
    pub elapsed: Duration,
    /// Each call's latency, sorted.
    pub latencies: Vec<Duration>,
}

impl Load {
    /// Calls per second.
    pub fn rate(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }
}

/// `clients` keep-alive clients calling `work` outside any session at
/// `url` (with `token`) for [`WARMUP`], then for [`MEASURE`].
pub async fn load(url: &str, token: Option<&str>, work: Workload, clients: usize) -> Load {
    let authorization = token.map(|t| format!("Bearer {t}"));
    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": { "name": work.tool, "arguments": (work.args)() } })
    .to_string();
    let run = |duration: Duration| {
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let (url, body, authorization) = (url.to_string(), body.clone(), authorization.clone());
            tasks.push(tokio::spawn(async move {
                // One keep-alive connection per client.
                let client = reqwest::Client::builder()
                    .pool_max_idle_per_host(1)
                    .build()
                    .unwrap();
                let mut latencies = Vec::new();
                let start = Instant::now();
                while start.elapsed() < duration {
                    let t = Instant::now();
                    let mut request = client.post(&url);
                    if let Some(value) = &authorization {
                        request = request.header("authorization", value);
                    }
                    let response = request
                        .header("content-type", "application/json")
                        .header("accept", "application/json, text/event-stream")
                        .header("mcp-protocol-version", "2025-11-25")
                        .body(body.clone())
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status(), 200, "{:?}", response.headers());
                    let text = response.text().await.unwrap();
                    assert!(text.contains(work.expect), "{text}");
                    latencies.push(t.elapsed());
                }
                latencies
            }));
        }
        tasks
    };
    for task in run(WARMUP) {
        task.await.unwrap();
    }
    let start = Instant::now();
    let mut latencies = Vec::new();
    for task in run(MEASURE) {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = start.elapsed();
    latencies.sort();
    Load {
        calls: latencies.len(),
        elapsed,
        latencies,
    }
}

/// Prints one side's rate and latencies, and its ratio to `baseline`.
pub fn report(name: &str, load: &Load, baseline: Option<&Load>) {
    let rate = load.rate();
    let pct = |p: f64| {
        load.latencies[((load.latencies.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e6
    };
    let ratio = baseline
        .map(|b| format!("  ({:.2}x its baseline)", rate / b.rate()))
        .unwrap_or_default();
    println!(
        "  {name:<18} {rate:>9.0} calls/s   p50 {:>7.0} us   p99 {:>7.0} us{ratio}",
        pct(0.50),
        pct(0.99)
    );
}
