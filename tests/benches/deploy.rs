//! Deployed shapes, measured: `replicas` compares one `moat serve` behind
//! nginx with three behind the same nginx (round-robin), beside one
//! served directly (what nginx costs); `limiter` compares each call's
//! rate-limit decision in this process with the same decision in Redis,
//! end to end (one replica, a limit no call reaches) and alone (the
//! decision in a loop). Stateless `hello.greet` calls from 16 keep-alive
//! clients; rounds alternate the sides, and the median round is reported.
//!
//! Run: cargo build --release --bin moat && cargo bench -p moat-tests --bench deploy
//! (one part: `-- replicas` or `-- limiter`)

use moat::config::{LimitBackend, QuotaConfig};
use moat::quota::LocalLimiter;
use moat::quota::shared::{LimitStore, SharedLimits};
use moat_tests::bench::{GREET, Load, load, report, runtime, wants};
use moat_tests::nginx::Nginx;
use moat_tests::redis::RedisServer;
use moat_tests::{MoatServer, Sandbox, free_port};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// reqwest, with the TLS feature Moat's downloads turn on, needs rustls's
/// process-wide provider before any client is built, rmcp's included.
#[ctor::ctor(unsafe)]
fn rustls_provider() {
    moat::source::install_crypto();
}

/// The allocator the `moat` binary ships with.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CLIENTS: usize = 16;
const ROUNDS: usize = 3;
/// Decisions timed one after another in the `limiter` part's loop.
const DECISIONS: usize = 20_000;

/// A stateless replica serving `hello`, with `limits` in `[limits]`.
fn replica(limits: &str) -> (TempDir, MoatServer) {
    let dir = Sandbox::builder()
        .plugin("hello", "")
        .toml(&format!(
            "[http]\nstateless = true\ntrusted_proxies = [\"127.0.0.1\"]\n[limits]\n{limits}\n"
        ))
        .write();
    let server = MoatServer::start(dir.path(), &[]);
    (dir, server)
}

/// nginx on a free port in front of `replicas`; its URL.
fn proxy(dir: &TempDir, replicas: &[(TempDir, MoatServer)]) -> (Nginx, String) {
    let upstreams: Vec<String> = replicas
        .iter()
        .map(|(_, s)| s.base.trim_start_matches("http://").to_string())
        .collect();
    let port = free_port();
    let nginx = Nginx::start(dir.path(), port, &upstreams, None);
    (nginx, format!("http://127.0.0.1:{port}/mcp"))
}

/// Runs every side `ROUNDS` times, alternating; reports each side's median
/// round against the first side's.
async fn compare(sides: &[(&str, String)]) {
    let mut rounds: Vec<Vec<Load>> = sides.iter().map(|_| Vec::new()).collect();
    for _ in 0..ROUNDS {
        for (i, (_, url)) in sides.iter().enumerate() {
            rounds[i].push(load(url, None, GREET, CLIENTS).await);
        }
    }
    let medians: Vec<Load> = rounds
        .into_iter()
        .map(|mut r| {
            r.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
            r.swap_remove(ROUNDS / 2)
        })
        .collect();
    for (i, (name, _)) in sides.iter().enumerate() {
        report(name, &medians[i], (i > 0).then(|| &medians[0]));
    }
}

/// µs per decision over [`DECISIONS`] sequential ones.
async fn per_decision<F: std::future::Future<Output = bool>>(
    mut decide: impl FnMut(usize) -> F,
) -> f64 {
    for i in 0..1000 {
        assert!(decide(i).await);
    }
    let start = Instant::now();
    for i in 0..DECISIONS {
        assert!(decide(i).await);
    }
    start.elapsed().as_secs_f64() * 1e6 / DECISIONS as f64
}

fn main() {
    runtime().block_on(async {
        if wants("replicas") {
            println!("replicas: {CLIENTS} clients, stateless hello.greet");
            let one = vec![replica("")];
            let three = vec![replica(""), replica(""), replica("")];
            let dir = tempfile::tempdir().unwrap();
            let (_a, to_one) = proxy(&dir, &one);
            let other = tempfile::tempdir().unwrap();
            let (_b, to_three) = proxy(&other, &three);
            compare(&[
                ("nginx -> 1 replica", to_one),
                ("nginx -> 3 replicas", to_three),
                ("1 replica, direct", one[0].1.url.clone()),
            ])
            .await;
        }
        if wants("limiter") {
            let redis = RedisServer::start();
            // A limit no call reaches: the decision is made, never refused.
            let rate =
                "calls_per_minute = 1000000\nburst = 1000000\nmax_concurrent_per_tenant = 10000";
            println!("limiter: one replica, {CLIENTS} clients, every call rate-limited and capped");
            let local = replica(rate);
            let shared = replica(&format!("{rate}\nbackend = \"{}\"", redis.url));
            compare(&[
                ("in memory", local.1.url.clone()),
                ("redis", shared.1.url.clone()),
            ])
            .await;

            println!("limiter: one decision at a time ({DECISIONS} sequential)");
            let config = QuotaConfig {
                calls_per_minute: Some(1_000_000),
                burst: 1_000_000,
                max_concurrent_per_tenant: Some(10_000),
                ..QuotaConfig::default()
            };
            let memory = LocalLimiter::new(&config);
            let in_memory = per_decision(|i| {
                let ok = memory
                    .check(&format!("caller-{}", i % 100), "hello.greet")
                    .is_ok();
                async move { ok }
            })
            .await;
            let store = LimitStore::new(&LimitBackend {
                url: redis.url.clone(),
                timeout: Duration::from_millis(250),
                fail_open: false,
            })
            .unwrap();
            let in_redis = |config: QuotaConfig| {
                let limits = SharedLimits::new(store.clone(), "top", &config);
                async move {
                    per_decision(|i| {
                        let limits = &limits;
                        async move {
                            limits
                                .admit(&format!("caller-{}", i % 100), "hello.greet", true)
                                .await
                                .is_ok()
                        }
                    })
                    .await
                }
            };
            let both = in_redis(config.clone()).await;
            let rate_only = in_redis(QuotaConfig {
                max_concurrent_per_tenant: None,
                ..config
            })
            .await;
            println!("  {:<18} {in_memory:>9.2} us per decision", "in memory");
            for (name, us, what) in [
                (
                    "redis",
                    both,
                    "rate and tenant place in one script; the place given back after",
                ),
                ("redis, rate only", rate_only, "one script"),
            ] {
                println!(
                    "  {name:<18} {us:>9.2} us per decision  ({:.0}x in memory; {what})",
                    us / in_memory
                );
            }
        }
    });
}
