//! End-to-end load: `tools/call` of `hello.greet` over Streamable HTTP
//! (stateless, JSON responses) with keep-alive and concurrent clients,
//! against Moat (plain; with `[audit]` to a file and `[limits]`; with
//! `[auth]`, a bearer JWT on every request) and against a native baseline
//! in the same run: the same tool written
//! directly in an rmcp server, no sandbox. Three tools that do work have
//! a pair each: `search` (files.search over 20 files), `cpu`
//! (data.select: parse a 1 MB JSON array) and `fetch` (fetch.get of a
//! 16 KiB document from a server on 127.0.0.1). The `sse` sides are one
//! session of sequential calls from Python's http.client (which writes and
//! reads the way Node's fetch does), against Moat and against the native
//! server as axum serves it by default (Nagle on) and with Nagle off.
//! Results go to docs/BENCHMARKS.md.
//!
//! Run: cargo bench -p moat-tests --bench http

use moat::config::Config;
use moat::runtime::{Runtime, RuntimeOptions};
use moat::service::{Operations, ToolService};
use moat::transport::http::Mount;
use moat_tests::auth::{TestIssuer, TestKey, claims};
use moat_tests::bench::{GREET, Load, MEASURE, WARMUP, Workload, load, report};
use moat_tests::native::{NativeTools, write_corpus, write_records};
use moat_tests::plugin_wasm;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// reqwest, with the TLS feature Moat's downloads turn on, needs rustls's
/// process-wide provider before any client is built, rmcp's included.
#[ctor::ctor(unsafe)]
fn rustls_provider() {
    moat::source::install_crypto();
}

/// The allocator the `moat` binary ships with, for both sides alike.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CLIENTS: usize = 8;
/// Rounds alternate native and Moat, so drift on this shared machine hits
/// both sides alike; the median round of each side is reported.
const ROUNDS: usize = 3;

/// A tool that does some: read 20 files of 100 lines and find 20 lines.
const SEARCH: Workload = Workload {
    tool: "files.search",
    args: || json!({ "query": "needle" }),
    expect: "needle in file 19",
};

/// A tool that computes: parse a 1 MB JSON array (5 000 objects) and
/// select the 500 whose `team` matches, returning the count and the first
/// 20.
const SELECT: Workload = Workload {
    tool: "data.select",
    args: || json!({ "path": "records.json", "field": "team", "equals": "team 3" }),
    expect: "\"count\":500",
};

/// [`SELECT`] by the same component granted `fuel = false` (`lean`): its
/// code runs without fuel checks.
const SELECT_UNMETERED: Workload = Workload {
    tool: "lean.select",
    ..SELECT
};

/// A tool that calls out: GET a 16 KiB text document from a server on
/// 127.0.0.1 ([`UPSTREAM`]).
const FETCH: Workload = Workload {
    tool: "fetch.get",
    args: || json!({ "url": format!("{}/doc", UPSTREAM.get().unwrap()) }),
    expect: "end of the document",
};

/// `http://127.0.0.1:<port>`: the server `fetch.get` reads from.
static UPSTREAM: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Serves a 16 KiB text document at `/doc`, keep-alive, as any web
/// server would; sets [`UPSTREAM`].
async fn serve_upstream() {
    let mut doc: String = (0..16)
        .map(|i| format!("{i:>4} {}\n", "lorem ipsum dolor sit amet ".repeat(37)))
        .collect();
    doc.push_str("end of the document\n");
    let app = axum::Router::new().route(
        "/doc",
        axum::routing::get(move || {
            let doc = doc.clone();
            async move { ([("content-type", "text/plain")], doc) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    UPSTREAM
        .set(format!("http://{}", listener.local_addr().unwrap()))
        .unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
}

/// How the native server is served.
#[derive(Clone, Copy, PartialEq)]
enum Native {
    /// Stateless, JSON answers: the load sides.
    Stateless,
    /// Sessions and event streams, as axum serves by default (Nagle on).
    Sessions,
    /// Sessions, with Nagle's algorithm off, as Moat serves.
    SessionsNoDelay,
}

async fn serve_native(corpus: &Path, mode: Native) -> String {
    let native = NativeTools::new(corpus, &data(corpus));
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(mode != Native::Stateless)
        .with_json_response(mode == Native::Stateless);
    let service = StreamableHttpService::new(
        move || Ok(native.clone()),
        LocalSessionManager::default().into(),
        config,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let app = axum::Router::new().nest_service("/mcp", service);
    if mode == Native::SessionsNoDelay {
        use axum::serve::ListenerExt;
        let listener = listener.tap_io(|tcp| tcp.set_nodelay(true).unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    } else {
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    }
    url
}

/// The folder `data.select` reads, beside `corpus`.
fn data(corpus: &Path) -> std::path::PathBuf {
    corpus.with_file_name("data")
}

/// Serves `hello`, `files` over `corpus`, `data` and `lean` (the `files`
/// component over [`data`], `lean` with `fuel = false`) and `fetch` (allowed [`UPSTREAM`]) with Moat; `extra` is
/// appended to the config.
async fn serve_moat(dir: &Path, corpus: &Path, extra: &str) -> String {
    serve_moat_with(dir, corpus, "stateless = true", extra).await
}

/// [`serve_moat`] with `http` as the body of its `[http]` table.
async fn serve_moat_with(dir: &Path, corpus: &Path, http: &str, extra: &str) -> String {
    let text = format!(
        "[runtime]\ncache = false\n[http]\n{http}\n\
         [[plugin]]\nname = \"hello\"\nsource = {:?}\n\
         [[plugin]]\nname = \"files\"\nsource = {files:?}\n[plugin.grants]\ndirs = [{{ host = {:?}, guest = \"/data\" }}]\n\
         [[plugin]]\nname = \"data\"\nsource = {files:?}\n[plugin.grants]\ndirs = [{{ host = {:?}, guest = \"/data\" }}]\n\
         [[plugin]]\nname = \"lean\"\nsource = {files:?}\n[plugin.grants]\nfuel = false\ndirs = [{{ host = {data:?}, guest = \"/data\" }}]\n\
         [[plugin]]\nname = \"fetch\"\nsource = {:?}\n[plugin.grants]\nallow_hosts = [{:?}]\n{extra}",
        plugin_wasm("hello").display().to_string(),
        corpus.display().to_string(),
        data(corpus).display().to_string(),
        plugin_wasm("fetch").display().to_string(),
        UPSTREAM.get().unwrap(),
        files = plugin_wasm("files").display().to_string(),
        data = data(corpus).display().to_string(),
    );
    let config = Config::parse(&dir.join("moat.toml"), &text).unwrap();
    let ops = Operations::for_config(&config).unwrap();
    let runtime = Arc::new(Runtime::new(&RuntimeOptions::for_config(&config)).unwrap());
    let mounts = ToolService::load_all(&config, runtime, &ops)
        .await
        .unwrap()
        .into_iter()
        .map(|(served, service)| Mount::new(served, service))
        .collect();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    tokio::spawn(async move {
        moat::transport::http::serve(mounts, listener, &config.http, None, std::future::pending())
            .await
            .unwrap()
    });
    url
}

/// How the clients of a side call.
#[derive(Clone, Copy)]
enum Client {
    /// [`CLIENTS`] reqwest clients, stateless.
    Reqwest(Workload),
    /// One session of sequential calls from Python's http.client.
    HttpClient,
}

/// One session of `hello.greet` calls from Python's http.client.
async fn sequential_http_client(url: &str) -> Load {
    http_client_session(url, WARMUP).await;
    let measured = http_client_session(url, MEASURE).await;
    let mut latencies: Vec<Duration> = measured["latencies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| Duration::from_secs_f64(s.as_f64().unwrap()))
        .collect();
    latencies.sort();
    Load {
        calls: latencies.len(),
        elapsed: Duration::from_secs_f64(measured["elapsed"].as_f64().unwrap()),
        latencies,
    }
}

/// Runs tests/python/sequential_calls.py on `url` for `seconds`, off the
/// runtime's workers (the server runs on them).
async fn http_client_session(url: &str, seconds: Duration) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/sequential_calls.py");
    let url = url.to_string();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg(script)
            .arg(url)
            .arg(seconds.as_secs_f64().to_string())
            .output()
            .expect("python3 runs")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `work` on `url`, sending `token` as a bearer token when given.
fn main() {
    let rt = moat_tests::bench::runtime();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let corpus = dir.path().join("corpus");
        write_corpus(&corpus);
        write_records(&data(&corpus));
        serve_upstream().await;
        let native = serve_native(&corpus, Native::Stateless).await;
        let moat = serve_moat(dir.path(), &corpus, "").await;
        // (side, url, token, client, native baseline side, rounds)
        let mut served = Vec::new();
        let (greet, search) = (Client::Reqwest(GREET), Client::Reqwest(SEARCH));
        served.push(("native", native.clone(), None, greet, None, Vec::new()));
        served.push(("moat", moat.clone(), None, greet, Some("native"), Vec::new()));
        // The issuer outlives the rounds: Moat fetches its keys once, then
        // finds the client's token in its cache of verified tokens.
        let key = TestKey::new("k1", 5);
        let issuer = TestIssuer::start(&[&key]).await;
        {
            // Limits high enough never to refuse, so every call pays for
            // the check; every call's record is written before its answer.
            let ops = "[audit]\nfile = \"audit.jsonl\"\n[limits]\ncalls_per_minute = 1000000\nburst = 1000000\n";
            let dir = dir.path().join("audit");
            std::fs::create_dir(&dir).unwrap();
            let url = serve_moat(&dir, &corpus, ops).await;
            served.push(("moat+audit", url, None, greet, Some("native"), Vec::new()));
            // The same with every answer waiting for its record to be on
            // disk (ext4 here; tmpfs would make a flush free).
            let sync = "[audit]\nfile = \"audit.jsonl\"\nsync = true\n[limits]\ncalls_per_minute = 1000000\nburst = 1000000\n";
            let dir = dir.join("sync");
            std::fs::create_dir(&dir).unwrap();
            let url = serve_moat(&dir, &corpus, sync).await;
            served.push(("moat+audit-sync", url, None, greet, Some("moat+audit"), Vec::new()));
        }
        {
            let auth = format!(
                "[auth]\nissuer = \"{base}\"\njwks_uri = \"{base}/keys\"\nresource = \"http://moat.test/mcp\"\nalgorithms = [\"EdDSA\"]\n[[auth.rule]]\nscopes = [\"tools:read\"]\ntools = [\"hello.*\"]\n",
                base = issuer.base
            );
            let token = key.sign(&claims(&issuer.base, "http://moat.test/mcp", "tools:read"));
            let dir = dir.path().join("auth");
            std::fs::create_dir(&dir).unwrap();
            let url = serve_moat(&dir, &corpus, &auth).await;
            served.push(("moat+auth", url, Some(token), greet, Some("native"), Vec::new()));
        }
        served.push(("native search", native.clone(), None, search, None, Vec::new()));
        served.push(("moat search", moat.clone(), None, search, Some("native search"), Vec::new()));
        let (select, fetch) = (Client::Reqwest(SELECT), Client::Reqwest(FETCH));
        served.push(("native cpu", native.clone(), None, select, None, Vec::new()));
        served.push(("moat cpu", moat.clone(), None, select, Some("native cpu"), Vec::new()));
        let unmetered = Client::Reqwest(SELECT_UNMETERED);
        served.push(("moat cpu unmetered", moat.clone(), None, unmetered, Some("native cpu"), Vec::new()));
        served.push(("native fetch", native, None, fetch, None, Vec::new()));
        served.push(("moat fetch", moat, None, fetch, Some("native fetch"), Vec::new()));
        {
            let sessions = dir.path().join("sessions");
            std::fs::create_dir(&sessions).unwrap();
            let http = Client::HttpClient;
            let nagle = serve_native(&corpus, Native::Sessions).await;
            let no_delay = serve_native(&corpus, Native::SessionsNoDelay).await;
            let moat = serve_moat_with(&sessions, &corpus, "", "").await;
            served.push(("native sse", nagle, None, http, Some("native sse nodelay"), Vec::new()));
            served.push(("native sse nodelay", no_delay, None, http, None, Vec::new()));
            served.push(("moat sse", moat, None, http, Some("native sse nodelay"), Vec::new()));
        }
        // Sides: `native`, `moat`, `moat+audit`, `moat+audit-sync`, `moat+auth`,
        // `native search`, `moat search`, `native cpu`, `moat cpu`,
        // `native fetch`, `moat fetch`, `native sse`,
        // `native sse nodelay`, `moat sse`.
        served.retain(|side| moat_tests::bench::wants(side.0));
        println!(
            "tools/call over HTTP, {CLIENTS} keep-alive clients, {ROUNDS} alternating rounds of {MEASURE:?}"
        );
        for _ in 0..ROUNDS {
            for (_, url, token, client, _, rounds) in served.iter_mut() {
                rounds.push(match client {
                    Client::Reqwest(work) => load(url, token.as_deref(), *work, CLIENTS).await,
                    Client::HttpClient => sequential_http_client(url).await,
                });
            }
        }
        let medians: Vec<(&str, Option<&str>, Load)> = served
            .into_iter()
            .map(|(name, _, _, _, baseline, mut rounds)| {
                rounds.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
                (name, baseline, rounds.swap_remove(ROUNDS / 2))
            })
            .collect();
        for (name, baseline, load) in &medians {
            let base = medians
                .iter()
                .find(|(n, _, _)| Some(*n) == *baseline)
                .map(|(_, _, l)| l);
            report(name, load, base);
        }
        // How well concurrent calls shared the flushes of the sync side.
        let flushes = moat::metrics::get().audit_flushes.get();
        if flushes > 0 {
            let log = dir.path().join("audit/sync/audit.jsonl");
            let records = std::fs::read_to_string(log).unwrap().lines().count();
            println!(
                "  moat+audit-sync: {records} records in {flushes} flushes ({:.1} a flush)",
                records as f64 / flushes as f64
            );
        }
    });
}
