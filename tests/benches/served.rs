//! The served binaries, from clients outside them, as users run them:
//! `moat serve` with its default flags and log level, against
//! `native-mcp`, the same tools in a plain rmcp server (this crate's
//! binary), in the same run.
//!
//! - `stdio`: a raw JSON-RPC client on the child's pipes sends
//!   `tools/call hello.greet` one after another (what a desktop client
//!   does), against `moat serve --stdio` (the embedded configuration) and
//!   `native-mcp --stdio`.
//! - `http`: `wrk` (Debian's package), 2 threads and 8 keep-alive
//!   connections, POSTs the same call to `moat serve --http` with
//!   `[http] stateless = true` and to `native-mcp --http`.
//!
//! - `noisy`: two tenants of one `moat serve`: tenant `b`'s `hello.greet`
//!   under `wrk -c8`, alone and while tenant `a` keeps its concurrency cap
//!   full of calls that spin until their deadline (a second `wrk`, at
//!   `a`'s cap and at twice it).
//!
//! Rounds alternate the sides; the median round of each side is reported,
//! with what Moat wrote to its log per call.
//!
//! Run: cargo build --release --bin moat && cargo bench -p moat-tests --bench served [stdio|http|noisy]

use moat_tests::bench::{GREET, Load, MEASURE, WARMUP, report, wants};
use moat_tests::native::write_corpus;
use moat_tests::{free_port, moat_bin, plugin_wasm};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

const ROUNDS: usize = 3;
const CONNECTIONS: usize = 8;
/// Tenant `a`'s concurrency cap in `noisy`.
const CAP: usize = 4;

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus");
    write_corpus(&corpus);
    let native = PathBuf::from(env!("CARGO_BIN_EXE_native-mcp"));
    let moat = moat_bin();
    if wants("stdio") {
        println!("stdio: one client, sequential tools/call hello.greet");
        let sides = [
            Side::new("native", &native, &["--stdio", corpus.to_str().unwrap()]),
            Side::new("moat", &moat, &["serve", "--stdio"]),
        ];
        compare(&sides, dir.path(), stdio_round);
    }
    if wants("http") {
        println!("http: wrk -t2 -c{CONNECTIONS}, stateless tools/call hello.greet");
        let config = dir.path().join("moat.toml");
        std::fs::write(
            &config,
            format!(
                "[http]\nstateless = true\n[[plugin]]\nname = \"hello\"\nsource = {:?}\n",
                plugin_wasm("hello").display().to_string()
            ),
        )
        .unwrap();
        let (native_port, moat_port) = (free_port(), free_port());
        let native_addr = format!("127.0.0.1:{native_port}");
        let moat_addr = format!("127.0.0.1:{moat_port}");
        let sides = [
            Side::new(
                "native",
                &native,
                &["--http", &native_addr, corpus.to_str().unwrap()],
            )
            .at(&native_addr),
            Side::new(
                "moat",
                &moat,
                &[
                    "serve",
                    "--http",
                    &moat_addr,
                    "--config",
                    config.to_str().unwrap(),
                ],
            )
            .at(&moat_addr),
        ];
        compare(&sides, dir.path(), http_round);
    }
    if wants("noisy") {
        noisy(dir.path(), &moat);
    }
}

/// Tenant `b`'s calls alone, and beside tenant `a` saturated with calls
/// that spin for their whole 100 ms deadline.
fn noisy(dir: &Path, moat: &Path) {
    println!(
        "noisy neighbour: tenant b's hello.greet under wrk -t2 -c{CONNECTIONS}, alone and beside tenant a's spinning calls"
    );
    let config = dir.join("tenants.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\nstateless = true\n\
             [tenants.a]\n[tenants.a.limits]\nmax_concurrent_per_tenant = {CAP}\n\
             [[tenants.a.plugin]]\nname = \"testbed\"\nsource = {:?}\n\
             [tenants.a.plugin.grants]\ntimeout_ms = 100\nfuel = 100_000_000_000\n\
             [tenants.b]\n[[tenants.b.plugin]]\nname = \"hello\"\nsource = {:?}\n",
            plugin_wasm("testbed").display().to_string(),
            plugin_wasm("hello").display().to_string()
        ),
    )
    .unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let side = Side::new(
        "moat",
        moat,
        &[
            "serve",
            "--http",
            &addr,
            "--config",
            config.to_str().unwrap(),
        ],
    )
    .at(&addr);
    let mut child = side.start(&dir.join("tenants.log"));
    let b = format!("http://{addr}/t/b/mcp");
    let a = format!("http://{addr}/t/a/mcp");
    let greet = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": { "name": GREET.tool, "arguments": (GREET.args)() } })
    .to_string();
    wait_for(&b, &greet);
    let spin = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": { "name": "testbed.spin", "arguments": {} } })
    .to_string();
    let greet_script = script(&dir.join("greet.lua"), &greet);
    let spin_script = script(&dir.join("spin.lua"), &spin);
    // The neighbour at its cap (every one of its calls spins) and at twice
    // its cap (half of its requests are refused with 429 as fast as it can
    // send them, which costs the transport's CPU too).
    let neighbours = [CAP, 2 * CAP];
    let mut alone = Vec::new();
    let mut beside: Vec<Vec<Load>> = neighbours.iter().map(|_| Vec::new()).collect();
    for _ in 0..ROUNDS {
        wrk(&b, &greet_script, WARMUP);
        alone.push(wrk(&b, &greet_script, MEASURE));
        for (connections, loads) in neighbours.iter().zip(&mut beside) {
            // The neighbour's load runs a little longer than the
            // measurement, on its own connections; its answers are errors
            // (deadline) or 429 (its cap), which is what a noisy tenant
            // gets.
            let neighbour = Command::new("wrk")
                .args(["-t1", &format!("-c{connections}")])
                .arg(format!("-d{}s", (WARMUP + MEASURE).as_secs() + 2))
                .arg("-s")
                .arg(&spin_script)
                .arg(&a)
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            wrk(&b, &greet_script, WARMUP);
            loads.push(wrk(&b, &greet_script, MEASURE));
            neighbour.wait_with_output().unwrap();
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let median = |loads: &mut Vec<Load>| {
        loads.sort_by(|x, y| x.rate().total_cmp(&y.rate()));
        loads.remove(loads.len() / 2)
    };
    let alone = median(&mut alone);
    report("b alone", &alone, None);
    let p99 = |l: &Load| l.latencies[98].as_secs_f64();
    for (connections, mut loads) in neighbours.into_iter().zip(beside) {
        let beside = median(&mut loads);
        report(
            &format!("b beside a (c={connections})"),
            &beside,
            Some(&alone),
        );
        println!(
            "  b's p99 beside a at c={connections}: {:.1}x its p99 alone",
            p99(&beside) / p99(&alone)
        );
    }
}

/// Waits until `url` answers `body`.
fn wait_for(url: &str, body: &str) -> String {
    let started = Instant::now();
    loop {
        match curl(url, body) {
            Some(answer) => return answer,
            None if started.elapsed() < Duration::from_secs(60) => {
                std::thread::sleep(Duration::from_millis(50))
            }
            None => panic!("nothing answered on {url}"),
        }
    }
}

/// A wrk script at `path` that POSTs `body` as an MCP client would.
fn script(path: &Path, body: &str) -> PathBuf {
    std::fs::write(
        path,
        format!(
            "wrk.method = \"POST\"\nwrk.body = {body:?}\n\
             wrk.headers[\"Content-Type\"] = \"application/json\"\n\
             wrk.headers[\"Accept\"] = \"application/json, text/event-stream\"\n\
             wrk.headers[\"MCP-Protocol-Version\"] = \"2025-11-25\"\n"
        ),
    )
    .unwrap();
    path.to_path_buf()
}

/// A server to start: its binary, arguments and, for HTTP, its address.
struct Side {
    name: &'static str,
    program: PathBuf,
    args: Vec<String>,
    addr: Option<String>,
}

impl Side {
    fn new(name: &'static str, program: &Path, args: &[&str]) -> Side {
        Side {
            name,
            program: program.to_path_buf(),
            args: args.iter().map(|a| a.to_string()).collect(),
            addr: None,
        }
    }

    fn at(self, addr: &str) -> Side {
        Side {
            addr: Some(addr.to_string()),
            ..self
        }
    }

    /// Starts it with its stderr to `log`, its stdio piped.
    fn start(&self, log: &Path) -> Child {
        Command::new(&self.program)
            .args(&self.args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap()
    }
}

/// Runs `round` on each side in turn, [`ROUNDS`] times, and reports the
/// median round of each, Moat's against the native one.
fn compare(sides: &[Side; 2], dir: &Path, round: impl Fn(&Side, &Path) -> Load) {
    let mut loads: [Vec<Load>; 2] = [Vec::new(), Vec::new()];
    let mut logged = 0;
    for _ in 0..ROUNDS {
        for (i, side) in sides.iter().enumerate() {
            let log = dir.join(format!("{}.log", side.name));
            let load = round(side, &log);
            if i == 1 {
                logged += std::fs::metadata(&log).unwrap().len() as usize;
            }
            loads[i].push(load);
        }
    }
    let median = |loads: &mut Vec<Load>| {
        loads.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
        loads.remove(loads.len() / 2)
    };
    let [mut native, mut moat] = loads;
    let calls: usize = moat.iter().map(|l| l.calls).sum();
    let (native, moat) = (median(&mut native), median(&mut moat));
    report(sides[0].name, &native, None);
    report(sides[1].name, &moat, Some(&native));
    println!(
        "  moat's log: {logged} bytes in {ROUNDS} rounds ({:.1} bytes a measured call)",
        logged as f64 / calls.max(1) as f64
    );
}

/// The JSON-RPC client of a stdio server.
struct Pipe {
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    next: u64,
}

impl Pipe {
    /// Sends a request and reads lines until its response.
    fn request(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let line = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
        let mut text = String::new();
        loop {
            text.clear();
            assert!(
                self.stdout.read_line(&mut text).unwrap() > 0,
                "the server hung up"
            );
            let message: Value = serde_json::from_str(&text).unwrap();
            if message["id"] == json!(id) {
                return message;
            }
        }
    }
}

/// One stdio round: start the server, initialize, call for [`WARMUP`]
/// then [`MEASURE`], and close its stdin.
fn stdio_round(side: &Side, log: &Path) -> Load {
    let mut child = side.start(log);
    let mut pipe = Pipe {
        stdin: child.stdin.take().unwrap(),
        stdout: BufReader::new(child.stdout.take().unwrap()),
        next: 0,
    };
    let init = pipe.request(
        "initialize",
        json!({ "protocolVersion": "2025-11-25", "capabilities": {},
                "clientInfo": { "name": "bench", "version": "1" } }),
    );
    assert!(init.get("result").is_some(), "{init}");
    writeln!(
        pipe.stdin,
        "{}",
        json!({ "jsonrpc": "2.0", "method": "notifications/initialized" })
    )
    .unwrap();
    let params = json!({ "name": GREET.tool, "arguments": (GREET.args)() });
    let mut run = |duration: Duration| {
        let mut latencies = Vec::new();
        let start = Instant::now();
        while start.elapsed() < duration {
            let t = Instant::now();
            let answer = pipe.request("tools/call", params.clone());
            latencies.push(t.elapsed());
            assert!(answer.to_string().contains(GREET.expect), "{answer}");
        }
        (latencies, start.elapsed())
    };
    run(WARMUP);
    let (mut latencies, elapsed) = run(MEASURE);
    drop(pipe);
    child.wait().unwrap();
    latencies.sort();
    Load {
        calls: latencies.len(),
        elapsed,
        latencies,
    }
}

/// One HTTP round: start the server, check one call's answer, run `wrk`
/// for [`WARMUP`] and then [`MEASURE`], and stop the server.
fn http_round(side: &Side, log: &Path) -> Load {
    let mut child = side.start(log);
    let addr = side.addr.as_deref().unwrap();
    let url = format!("http://{addr}/mcp");
    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": { "name": GREET.tool, "arguments": (GREET.args)() } })
    .to_string();
    let answer = wait_for(&url, &body);
    assert!(answer.contains(GREET.expect), "{answer}");
    let script = script(&log.with_extension("lua"), &body);
    wrk(&url, &script, WARMUP);
    let load = wrk(&url, &script, MEASURE);
    child.kill().unwrap();
    child.wait().unwrap();
    load
}

/// One POST of `body` to `url` over a plain socket: the response's body,
/// or `None` when nothing listens yet.
fn curl(url: &str, body: &str) -> Option<String> {
    use std::io::Read;
    let rest = url.trim_start_matches("http://");
    let (addr, path) = rest.split_at(rest.find('/').unwrap());
    let mut socket = std::net::TcpStream::connect(addr).ok()?;
    write!(
        socket,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2025-11-25\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut response = String::new();
    socket.read_to_string(&mut response).ok()?;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    Some(response)
}

/// `wrk` on `url` for `duration`: its rate, and its latency percentiles as
/// the latencies (50th, 75th, 90th and 99th, each standing for its share).
fn wrk(url: &str, script: &Path, duration: Duration) -> Load {
    let out = Command::new("wrk")
        .args(["-t2", &format!("-c{CONNECTIONS}"), "--latency"])
        .arg(format!("-d{}s", duration.as_secs().max(1)))
        .arg("-s")
        .arg(script)
        .arg(url)
        .output()
        .expect("wrk is installed (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("Non-2xx"), "{text}");
    assert!(!text.contains("Socket errors"), "{text}");
    let field = |label: &str| -> &str {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no `{label}` in:\n{text}"));
        line.trim_start()[label.len()..].trim()
    };
    let rate: f64 = field("Requests/sec:").parse().unwrap();
    let percentile = |p: &str| parse_duration(field(p));
    let (p50, p75, p90, p99) = (
        percentile("50%"),
        percentile("75%"),
        percentile("90%"),
        percentile("99%"),
    );
    // 100 latencies shaped like wrk's distribution, so `report` reads the
    // same p50 and p99 from them.
    let latencies: Vec<Duration> = (0..100)
        .map(|i| match i {
            0..50 => p50,
            50..75 => p75,
            75..90 => p90,
            _ => p99,
        })
        .collect();
    Load {
        calls: (rate * duration.as_secs_f64()) as usize,
        elapsed: duration,
        latencies,
    }
}

/// wrk's `123.45us`, `1.20ms` or `2.00s`.
fn parse_duration(text: &str) -> Duration {
    let split = text.find(|c: char| c.is_ascii_alphabetic()).unwrap();
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().unwrap();
    Duration::from_secs_f64(match unit {
        "us" => number / 1e6,
        "ms" => number / 1e3,
        "s" => number,
        "m" => number * 60.0,
        other => panic!("unit {other} in {text}"),
    })
}
