//! The soak: `moat serve --http` (the release binary, default flags) with
//! token checks and the audit log on, under 100 000 `tools/call` from 64
//! concurrent keep-alive clients, well-behaved calls mixed with every kind
//! of faulty one: out of fuel, past the deadline, past the memory cap, a
//! trap, oversized output, a denied host, bad arguments, an unknown tool,
//! a scope the policy refuses, and missing, forged and expired tokens.
//!
//! It checks that every request was answered as its kind should be, that
//! the server never exited, that its resident memory stays flat after the
//! warm-up (the curve is printed), that the audit log holds exactly one
//! record per request, of the kind it should be, and that `moat audit
//! verify` passes. Not part of `cargo test`: it takes a minute or two.
//!
//! Run: cargo build --release --bin moat && cargo bench -p moat-tests --bench soak [-- CALLS] [sync]
//! (`sync`: with `[audit] sync = true`).

use moat_tests::auth::{TestIssuer, TestKey, now};
use moat_tests::{MoatServer, Sandbox, audit_records, moat_bin, plugin_wasm};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const RESOURCE: &str = "http://moat.test/mcp";
const CLIENTS: usize = 64;
const DEFAULT_CALLS: usize = 100_000;
/// The second half's peak resident memory may be this much above the
/// first half's (allocator slack), and no more.
const RSS_SLACK: f64 = 1.25;

/// One kind of request in the mix.
struct Kind {
    /// The audit record's `kind` it leaves.
    audited: &'static str,
    /// Which token it carries.
    token: Token,
    tool: &'static str,
    args: fn() -> Value,
    /// The HTTP status it gets.
    status: u16,
    /// Text its answer contains.
    expect: &'static str,
    /// Its share of the mix.
    weight: usize,
}

#[derive(Clone, Copy)]
enum Token {
    Reader,
    Stranger,
    Forged,
    Expired,
    Missing,
}

const MIX: &[Kind] = &[
    Kind {
        audited: "ok",
        token: Token::Reader,
        tool: "hello.greet",
        args: || json!({ "name": "soak" }),
        status: 200,
        expect: "Hello, soak!",
        weight: 8,
    },
    Kind {
        audited: "out_of_fuel",
        token: Token::Reader,
        tool: "lean.spin",
        args: || json!({}),
        status: 200,
        expect: "out of fuel",
        weight: 1,
    },
    Kind {
        audited: "timed_out",
        token: Token::Reader,
        tool: "hasty.sleep",
        args: || json!({ "ms": 10_000 }),
        status: 200,
        expect: "timed out",
        weight: 1,
    },
    Kind {
        audited: "memory_limit",
        token: Token::Reader,
        tool: "testbed.allocate",
        args: || json!({}),
        status: 200,
        expect: "memory limit",
        weight: 1,
    },
    Kind {
        audited: "trap",
        token: Token::Reader,
        tool: "testbed.panic",
        args: || json!({ "text": "soak" }),
        status: 200,
        expect: "plugin crashed",
        weight: 1,
    },
    Kind {
        audited: "output_too_large",
        token: Token::Reader,
        tool: "testbed.big_output",
        args: || json!({ "bytes": 1 << 20 }),
        status: 200,
        expect: "output too large",
        weight: 1,
    },
    // A denied request is the plugin's to handle: the call itself is ok.
    Kind {
        audited: "ok",
        token: Token::Reader,
        tool: "testbed.get_many",
        args: || json!({ "url": "http://127.0.0.1:9", "times": 1 }),
        status: 200,
        expect: "HttpRequestDenied",
        weight: 1,
    },
    Kind {
        audited: "invalid_arguments",
        token: Token::Reader,
        tool: "hello.greet",
        args: || json!({ "name": 7 }),
        status: 200,
        expect: "name",
        weight: 1,
    },
    Kind {
        audited: "unknown_tool",
        token: Token::Reader,
        tool: "hello.nope",
        args: || json!({}),
        status: 200,
        expect: "hello.nope",
        weight: 1,
    },
    Kind {
        audited: "forbidden",
        token: Token::Stranger,
        tool: "hello.greet",
        args: || json!({ "name": "x" }),
        status: 403,
        expect: "hello.greet",
        weight: 1,
    },
    Kind {
        audited: "unauthenticated",
        token: Token::Forged,
        tool: "hello.greet",
        args: || json!({ "name": "x" }),
        status: 401,
        expect: "",
        weight: 1,
    },
    Kind {
        audited: "unauthenticated",
        token: Token::Expired,
        tool: "hello.greet",
        args: || json!({ "name": "x" }),
        status: 401,
        expect: "",
        weight: 1,
    },
    Kind {
        audited: "unauthenticated",
        token: Token::Missing,
        tool: "hello.greet",
        args: || json!({ "name": "x" }),
        status: 401,
        expect: "",
        weight: 1,
    },
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let calls: usize = args
        .iter()
        .find_map(|a| a.parse().ok())
        .unwrap_or(DEFAULT_CALLS);
    let sync = args.iter().any(|a| a == "sync");
    // reqwest, with the TLS feature Moat's downloads turn on, needs
    // rustls's process-wide provider before any client is built.
    moat::source::install_crypto();
    // The clients share the two cores with the server: two workers.
    let runtime = moat_tests::bench::runtime();
    let key = TestKey::new("soak", 41);
    let forger = TestKey::new("soak", 42);
    let issuer = runtime.block_on(TestIssuer::start(&[&key]));
    let claims = |scope: &str, exp: u64| {
        json!({ "iss": issuer.base, "aud": RESOURCE, "sub": "soak", "client_id": "soak",
                "exp": exp, "nbf": now() - 5, "scope": scope })
    };
    let hour = now() + 3600;
    let tokens = Arc::new(Tokens {
        reader: key.sign(&claims("tools:call", hour)),
        stranger: key.sign(&claims("other:scope", hour)),
        forged: forger.sign(&claims("tools:call", hour)),
        expired: key.sign(&claims("tools:call", now() - 120)),
    });
    let dir = Sandbox::builder()
        .plugin("hello", "")
        .plugin(
            "testbed",
            "timeout_ms = 10_000\nmemory_mib = 16\nmax_output_bytes = 65536\n\
             allow_hosts = [\"https://api.example.com\"]",
        )
        // The same component on a small fuel budget and on a short
        // deadline, each to run out of it whatever the load: under 64
        // concurrent calls on two cores, a CPU-bound call's wall-clock
        // time says little.
        .toml(&copy("lean", "fuel = 5_000_000\ntimeout_ms = 10_000"))
        .toml(&copy("hasty", "timeout_ms = 100"))
        .toml(&format!(
            "[http]\nstateless = true\n\
             [audit]\nfile = \"audit/moat-audit.jsonl\"\nsync = {sync}\n\
             [limits]\ncalls_per_minute = 1_000_000\nburst = 1_000_000\n\
             max_concurrent_per_tenant = {CLIENTS}\n\
             refusals_per_minute = 1_000_000\nrefusals_per_minute_total = 1_000_000\n\
             [auth]\nissuer = \"{base}\"\njwks_uri = \"{base}/keys\"\nresource = \"{RESOURCE}\"\nalgorithms = [\"EdDSA\"]\n\
             [[auth.rule]]\nscopes = [\"tools:call\"]\ntools = [\"hello.*\", \"testbed.*\", \"lean.*\", \"hasty.*\"]\n",
            base = issuer.base
        ))
        .write();
    let mut server = MoatServer::start(dir.path(), &[]);
    let pid = server.pid();
    println!(
        "soak: {calls} tools/call from {CLIENTS} clients, {} kinds of request, auth and audit on (sync = {sync})",
        MIX.len()
    );

    let schedule: Arc<Vec<usize>> = Arc::new(
        MIX.iter()
            .enumerate()
            .flat_map(|(i, kind)| std::iter::repeat_n(i, kind.weight))
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let answered: Vec<BTreeMap<usize, usize>> = runtime.block_on(async {
        let sampler = tokio::spawn(sample_rss(pid, calls, done.clone()));
        let mut clients = Vec::new();
        for _ in 0..CLIENTS {
            let (url, tokens, schedule, next, done) = (
                server.url.clone(),
                tokens.clone(),
                schedule.clone(),
                next.clone(),
                done.clone(),
            );
            clients.push(tokio::spawn(async move {
                let client = reqwest::Client::builder()
                    .pool_max_idle_per_host(1)
                    .timeout(Duration::from_secs(60))
                    .build()
                    .unwrap();
                let mut answered = BTreeMap::new();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= calls {
                        return answered;
                    }
                    let kind = schedule[n % schedule.len()];
                    send(&client, &url, &tokens, &MIX[kind], n).await;
                    *answered.entry(kind).or_default() += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        let mut answered = Vec::new();
        for client in clients {
            answered.push(client.await.unwrap());
        }
        let curve = sampler.await.unwrap();
        print_curve(&curve);
        answered
    });
    let elapsed = started.elapsed();
    assert!(
        server.wait(Duration::ZERO).is_none(),
        "the server exited under load"
    );
    println!(
        "  {calls} answered in {:.1} s ({:.0} calls/s)",
        elapsed.as_secs_f64(),
        calls as f64 / elapsed.as_secs_f64()
    );

    // Every record is written before its answer is sent; stop the server
    // (gracefully) so the log is complete and closed.
    server.terminate();
    assert!(
        server
            .wait(Duration::from_secs(30))
            .is_some_and(|s| s.success()),
        "the server did not stop cleanly"
    );
    println!(
        "  the server's log: {} bytes (refusals and errors are logged at the default level)",
        server.log().len()
    );
    let mut sent: BTreeMap<&str, usize> = BTreeMap::new();
    for per_client in &answered {
        for (kind, n) in per_client {
            *sent.entry(MIX[*kind].audited).or_default() += n;
        }
    }
    let file = dir.path().join("audit/moat-audit.jsonl");
    let mut audited: BTreeMap<&str, usize> = BTreeMap::new();
    let records = audit_records(&file);
    for record in &records {
        let kind = record["kind"].as_str().unwrap();
        let known = MIX.iter().find(|k| k.audited == kind).map(|k| k.audited);
        *audited
            .entry(known.unwrap_or_else(|| panic!("an unexpected record: {record}")))
            .or_default() += 1;
    }
    println!("  audit records by kind: {audited:?}");
    assert_eq!(audited, sent, "records by kind against requests by kind");
    assert_eq!(records.len(), calls, "one record per request");
    let verify = std::process::Command::new(moat_bin())
        .args(["audit", "verify"])
        .arg(&file)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success(), "moat audit verify: {said}");
    println!("  moat audit verify: {}", said.trim());
}

/// A `[[plugin]]` serving the `testbed` component as `name`, with
/// `grants`, without its resources (the first copy serves those).
fn copy(name: &str, grants: &str) -> String {
    format!(
        "[[plugin]]\nname = \"{name}\"\nsource = {:?}\nresources = false\n[plugin.grants]\n{grants}\n",
        plugin_wasm("testbed").display().to_string()
    )
}

/// The tokens the mix carries.
struct Tokens {
    reader: String,
    stranger: String,
    forged: String,
    expired: String,
}

/// Sends request `n` of `kind` and checks its answer.
async fn send(client: &reqwest::Client, url: &str, tokens: &Tokens, kind: &Kind, n: usize) {
    let token = match kind.token {
        Token::Reader => Some(&tokens.reader),
        Token::Stranger => Some(&tokens.stranger),
        Token::Forged => Some(&tokens.forged),
        Token::Expired => Some(&tokens.expired),
        Token::Missing => None,
    };
    let body = json!({ "jsonrpc": "2.0", "id": n, "method": "tools/call",
        "params": { "name": kind.tool, "arguments": (kind.args)() } });
    let mut request = client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .body(body.to_string());
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("request {n} ({}) got no answer: {e}", kind.audited));
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert_eq!(
        status, kind.status,
        "request {n} ({}): {text}",
        kind.audited
    );
    assert!(
        text.contains(kind.expect),
        "request {n} ({}): {text}",
        kind.audited
    );
}

/// The server's resident memory, sampled every 50 ms: the lowest and
/// highest sample in each tenth of the calls. (One sample says little:
/// 64 calls in flight may each hold up to their memory cap.)
async fn sample_rss(pid: u32, calls: usize, done: Arc<AtomicUsize>) -> Vec<(u64, u64)> {
    let mut tenths = vec![(u64::MAX, 0); 10];
    loop {
        let answered = done.load(Ordering::Relaxed);
        let kib = rss_kib(pid);
        let tenth = &mut tenths[(answered * 10 / calls.max(1)).min(9)];
        *tenth = (tenth.0.min(kib), tenth.1.max(kib));
        if answered >= calls {
            return tenths;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `VmRSS` of process `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// Prints the curve and fails if the second half's peak is above the
/// first half's (after the first tenth, the warm-up) by more than
/// [`RSS_SLACK`]: memory that grows with the calls served.
fn print_curve(tenths: &[(u64, u64)]) {
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!("  resident memory (MiB) in each tenth of the calls, lowest and highest sample:");
    for (i, (low, high)) in tenths.iter().enumerate() {
        println!(
            "    {:>3}% {:>7.1} {:>7.1}",
            (i + 1) * 10,
            mib(*low),
            mib(*high)
        );
    }
    let peak = |part: &[(u64, u64)]| part.iter().map(|t| t.1).max().unwrap();
    let (first, second) = (peak(&tenths[1..5]), peak(&tenths[5..]));
    println!(
        "  peak after the warm-up: {:.1} MiB in the first half, {:.1} MiB in the second ({:.2}x)",
        mib(first),
        mib(second),
        second as f64 / first as f64
    );
    assert!(
        second as f64 <= first as f64 * RSS_SLACK,
        "resident memory grew {:.2}x over the run",
        second as f64 / first as f64
    );
}
