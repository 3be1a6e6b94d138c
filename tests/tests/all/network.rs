//! The network capability against real HTTP servers on 127.0.0.1: only
//! granted scheme, host and port; names judged by the addresses they
//! resolve to; URL tricks judged by the real destination; response caps,
//! hung upstreams and raw sockets. After every refusal the host serves.

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use moat::runtime::CallError;
use moat_tests::Sandbox;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A real HTTP server on an ephemeral loopback port that counts the
/// requests it receives and notes the client address each came from (one
/// address per TCP connection).
struct Upstream {
    port: u16,
    hits: Arc<AtomicUsize>,
    peers: Arc<Mutex<Vec<SocketAddr>>>,
}

async fn upstream() -> Upstream {
    let hits = Arc::new(AtomicUsize::new(0));
    let peers = Arc::new(Mutex::new(Vec::new()));
    let counted = hits.clone();
    let seen = peers.clone();
    let app = Router::new()
        .route("/", get(|| async { "plain upstream text" }))
        .route(
            "/close",
            get(|| async { ([("connection", "close")], "closing upstream text") }),
        )
        .route(
            "/page",
            get(|| async {
                axum::response::Html("<html><script>x()</script><body><h1>Title &amp; more</h1><p>Body text</p></body></html>")
            }),
        )
        .route("/big", get(|| async { "y".repeat(300_000) }))
        .route(
            "/upload",
            axum::routing::post(|body: axum::body::Bytes| async move { format!("got {}", body.len()) }),
        )
        .route(
            "/hang",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                "never"
            }),
        )
        .layer(axum::middleware::from_fn(
            move |ConnectInfo(peer): ConnectInfo<SocketAddr>,
                  req,
                  next: axum::middleware::Next| {
                counted.fetch_add(1, Ordering::SeqCst);
                seen.lock().unwrap().push(peer);
                async move { next.run(req).await }
            },
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Upstream { port, hits, peers }
}

impl Upstream {
    /// `http://127.0.0.1:<port><path>`.
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// An `allow_hosts` grant for exactly this server over plain HTTP.
    fn grant(&self) -> String {
        allow(&[self.url("")])
    }

    /// The TCP connections its requests came on so far.
    fn connections(&self) -> usize {
        let peers = self.peers.lock().unwrap();
        peers.iter().collect::<std::collections::HashSet<_>>().len()
    }
}

/// Fetches `url` with the fetch plugin, expecting success; returns the text.
async fn fetched(sb: &Sandbox, url: &str) -> String {
    sb.ok("fetch", "get", json!({ "url": url })).await
}

async fn fetcher(grants: &str) -> Sandbox {
    Sandbox::builder().plugin("fetch", grants).build().await
}

fn allow(entries: &[String]) -> String {
    format!("allow_hosts = {entries:?}")
}

async fn refused(sb: &Sandbox, url: &str) {
    let message = sb.tool_error("fetch", "get", json!({ "url": url })).await;
    assert!(
        message.contains("HttpRequestDenied"),
        "{url} was not refused: {message}"
    );
}

async fn still_serves(sb: &Sandbox, port: u16) {
    // A fresh instance of the same plugin, still under its grant.
    let message = sb
        .tool_error(
            "fetch",
            "get",
            json!({ "url": format!("http://example.invalid:{port}/") }),
        )
        .await;
    assert!(message.contains("HttpRequestDenied"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_granted_host_is_reachable_and_html_becomes_text() {
    let up = upstream().await;
    let sb = fetcher(&up.grant()).await;
    let text = fetched(&sb, &up.url("/")).await;
    assert_eq!(text, "plain upstream text");
    let page = fetched(&sb, &up.url("/page")).await;
    assert_eq!(page, "Title & more Body text");
    assert_eq!(up.hits.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ungranted_hosts_ports_and_schemes_are_refused_before_any_connection() {
    let up = upstream().await;
    let p = up.port;
    // Without allow_hosts, wasi:http itself is missing: the first call of
    // it ends the call, before any request exists.
    let nothing = fetcher("").await;
    for _ in 0..2 {
        let err = nothing
            .fails(
                "fetch",
                "get",
                json!({ "url": format!("http://127.0.0.1:{p}/") }),
            )
            .await;
        assert_eq!(err.kind(), "not_granted", "{err}");
    }

    let sb = fetcher(&allow(&[format!("https://127.0.0.1:{p}")])).await;
    refused(&sb, &format!("http://127.0.0.1:{p}/")).await; // wrong scheme
    refused(&sb, &format!("https://127.0.0.1:{}/", p + 1)).await; // wrong port
    refused(&sb, "https://127.0.0.1/").await; // default port is not the granted one
    refused(&sb, &format!("https://127.0.0.2:{p}/")).await; // another address
    assert_eq!(
        up.hits.load(Ordering::SeqCst),
        0,
        "a refused request reached the server"
    );
    still_serves(&sb, p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_granted_name_that_resolves_to_loopback_needs_loopback_granted() {
    let up = upstream().await;
    let p = up.port;
    let by_name = fetcher(&allow(&[format!("http://localhost:{p}")])).await;
    refused(&by_name, &format!("http://localhost:{p}/")).await;
    assert_eq!(up.hits.load(Ordering::SeqCst), 0);

    let with_ip = fetcher(&allow(&[
        format!("http://localhost:{p}"),
        format!("http://127.0.0.1:{p}"),
    ]))
    .await;
    let text = with_ip
        .ok(
            "fetch",
            "get",
            json!({ "url": format!("http://localhost:{p}/") }),
        )
        .await;
    assert_eq!(text, "plain upstream text");
    // Letter case and a trailing dot name the same host.
    let text = with_ip
        .ok(
            "fetch",
            "get",
            json!({ "url": format!("http://LocalHost.:{p}/") }),
        )
        .await;
    assert_eq!(text, "plain upstream text");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_tricks_are_judged_by_the_real_destination() {
    let up = upstream().await;
    let p = up.port;
    // Only a name is granted; every trick below really goes to 127.0.0.1.
    let sb = fetcher(&allow(&[format!("http://granted.example:{p}")])).await;
    for url in [
        format!("http://granted.example@127.0.0.1:{p}/"),
        format!("http://2130706433:{p}/"),
        format!("http://0x7f000001:{p}/"),
        format!("http://0177.0.0.1:{p}/"),
        format!("http://127.1:{p}/"),
        format!("http://[::ffff:127.0.0.1]:{p}/"),
        format!("http://[::1]:{p}/"),
    ] {
        refused(&sb, &url).await;
    }
    assert_eq!(up.hits.load(Ordering::SeqCst), 0);

    // Granting the address makes the same spellings work: they are it.
    let ip = fetcher(&allow(&[format!("http://127.0.0.1:{p}")])).await;
    for url in [
        format!("http://2130706433:{p}/"),
        format!("http://[::ffff:127.0.0.1]:{p}/"),
    ] {
        assert_eq!(
            ip.ok("fetch", "get", json!({ "url": url })).await,
            "plain upstream text"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wildcard_grants_subdomains_but_not_the_apex() {
    let up = upstream().await;
    let p = up.port;
    let sb = fetcher(&allow(&[format!("http://*.moat.localhost:{p}")])).await;
    refused(&sb, &format!("http://moat.localhost:{p}/")).await;
    refused(&sb, &format!("http://moat.localhost.evil.example:{p}/")).await;
    // A subdomain passes the URL check and reaches name resolution (which
    // has no such name here): not a sandbox refusal.
    let message = sb
        .tool_error(
            "fetch",
            "get",
            json!({ "url": format!("http://sub.moat.localhost:{p}/") }),
        )
        .await;
    assert!(!message.contains("HttpRequestDenied"), "{message}");
    assert!(message.contains("DnsError"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_over_the_cap_ends_with_a_named_error() {
    let up = upstream().await;
    let grant = format!("{}\nmax_response_bytes = 100000", up.grant());
    let sb = fetcher(&grant).await;
    over_the_cap(&sb, &up).await;
}

/// Fetches `/big` (300 kB) under a 100 kB `max_response_bytes`: the
/// call names the cap, and the next call is served.
async fn over_the_cap(sb: &Sandbox, up: &Upstream) {
    let message = sb
        .tool_error(
            "fetch",
            "get",
            json!({ "url": up.url("/big"), "max_bytes": 1_000_000 }),
        )
        .await;
    assert!(message.contains("body size exceeds limit"), "{message}");
    assert_eq!(fetched(sb, &up.url("/")).await, "plain upstream text");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_never_answers_ends_the_call_at_its_deadline() {
    let up = upstream().await;
    let sb = fetcher(&format!("{}\n{HANG_LIMITS}", up.grant())).await;
    let started = Instant::now();
    times_out_on_hang(&sb, &up).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(fetched(&sb, &up.url("/")).await, "plain upstream text");
}

/// A call deadline shorter than the outbound request timeout, so that a
/// hung upstream meets the call's deadline first.
const HANG_LIMITS: &str = "timeout_ms = 500\nhttp_timeout_ms = 60000";

/// Fetching `/hang` under [`HANG_LIMITS`] ends at the call's deadline.
async fn times_out_on_hang(sb: &Sandbox, up: &Upstream) {
    let err = sb
        .fails("fetch", "get", json!({ "url": up.url("/hang") }))
        .await;
    assert_eq!(
        err,
        CallError::TimedOut {
            limit: Duration::from_millis(500)
        }
    );
}

/// A plugin granted files runs each call on a thread of its own (see
/// `Runtime::run`); its network I/O and its deadline work there too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_with_files_reaches_granted_hosts_and_hung_ones_time_out() {
    let up = upstream().await;
    let grant = format!(
        "{}\n{HANG_LIMITS}\ndirs = [{{ host = \"shared\", guest = \"/data\" }}]",
        up.grant()
    );
    let sb = Sandbox::builder()
        .dir("shared")
        .plugin("fetch", &grant)
        .build()
        .await;
    assert_eq!(fetched(&sb, &up.url("/")).await, "plain upstream text");
    times_out_on_hang(&sb, &up).await;
    refused(&sb, "http://example.invalid/").await;
    assert_eq!(fetched(&sb, &up.url("/")).await, "plain upstream text");
    assert_eq!(up.hits.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_per_call_are_capped() {
    let up = upstream().await;
    let grant = format!("{}\nmax_http_requests = 2", up.grant());
    let sb = Sandbox::builder().plugin("testbed", &grant).build().await;
    let url = up.url("");
    // The cap is per call: every call gets its two requests again.
    for _ in 0..2 {
        let outcomes = sb
            .ok("testbed", "get_many", json!({ "url": url, "times": 3 }))
            .await;
        assert_eq!(outcomes, "200 200 ErrorCode::HttpRequestDenied");
    }
    assert_eq!(up.hits.load(Ordering::SeqCst), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_verifies_the_server_certificate_against_public_roots() {
    // A real TLS server on loopback with a self-signed certificate: the
    // grant allows it, the TLS layer must still refuse it.
    let key = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let cert = key.cert.der().clone();
    let private =
        rustls::pki_types::PrivateKeyDer::try_from(key.signing_key.serialize_der()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], private)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let handshakes = Arc::new(AtomicUsize::new(0));
    let counted = handshakes.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = acceptor.accept(tcp).await;
            });
        }
    });
    let sb = fetcher(&allow(&[format!("https://127.0.0.1:{port}")])).await;
    let message = sb
        .tool_error(
            "fetch",
            "get",
            json!({ "url": format!("https://127.0.0.1:{port}/") }),
        )
        .await;
    assert!(
        !message.contains("HttpRequestDenied"),
        "the grant allows it: {message}"
    );
    assert!(
        message.to_lowercase().contains("tls") || message.contains("certificate"),
        "{message}"
    );
    assert_eq!(
        handshakes.load(Ordering::SeqCst),
        1,
        "the TLS server was reached once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_over_its_cap_is_refused_before_it_is_sent_whole() {
    let up = upstream().await;
    let grant = format!("{}\nmax_request_bytes = 1000", up.grant());
    let sb = Sandbox::builder().plugin("testbed", &grant).build().await;
    let post = |bytes: u64| json!({ "url": up.url("/upload"), "bytes": bytes });
    assert_eq!(
        sb.ok("testbed", "post_bytes", post(1000)).await,
        "200 got 1000"
    );
    let refused = sb.ok("testbed", "post_bytes", post(50_000)).await;
    assert!(refused.contains("HttpRequestBodySize"), "{refused}");
    assert_eq!(sb.ok("testbed", "post_bytes", post(10)).await, "200 got 10");
    // The request cut short took its (kept) connection with it.
    assert_eq!(up.connections(), 2);
}

/// A plugin's requests to one origin share a kept-alive connection, but
/// only a response read to its end gives the connection back: a response
/// cut short (by the plugin or by the cap) closes it, so no call ever
/// reads what was meant for another. Plugins never share connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_kept_alive_per_plugin_and_only_after_a_whole_response() {
    let up = upstream().await;
    let grant = format!("{}\nmax_response_bytes = 100000", up.grant());
    let sb = Sandbox::builder()
        .plugin("fetch", &grant)
        .plugin_from("other", "fetch", &grant)
        .build()
        .await;
    let kept = || sb.plugin("fetch").grants.net.pool.idle();
    for _ in 0..3 {
        assert_eq!(fetched(&sb, &up.url("/")).await, "plain upstream text");
    }
    assert_eq!((up.hits.load(Ordering::SeqCst), up.connections()), (3, 1));
    assert_eq!(kept(), 1);

    // Read in part: the plugin stops after its first chunk of 300 kB.
    let cut = sb
        .ok(
            "fetch",
            "get",
            json!({ "url": up.url("/big"), "max_bytes": 10 }),
        )
        .await;
    assert!(cut.starts_with("yyyyyyyyyy"), "{cut}");
    assert_eq!(kept(), 0);
    assert_eq!(fetched(&sb, &up.url("/")).await, "plain upstream text");
    assert_eq!(up.connections(), 2);

    // Over the cap: the body fails, and its connection is not kept.
    over_the_cap(&sb, &up).await;
    assert_eq!(up.connections(), 3);

    // The server closes: the next request opens a new connection.
    let closing = fetched(&sb, &up.url("/close")).await;
    assert_eq!(closing, "closing upstream text");
    assert_eq!(fetched(&sb, &up.url("/")).await, "plain upstream text");
    assert_eq!(up.connections(), 4);

    // Another plugin with the same grant has connections of its own.
    assert_eq!(
        sb.ok("other", "get", json!({ "url": up.url("/") })).await,
        "plain upstream text"
    );
    assert_eq!(up.connections(), 5);
    assert_eq!(kept(), 1);
}

/// Idle connections are bounded per plugin, however many hosts it may
/// reach: the oldest is closed to make room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_keeps_a_bounded_number_of_idle_connections() {
    let max = moat::capabilities::net::outbound::MAX_IDLE;
    let mut ups = Vec::new();
    for _ in 0..max + 4 {
        ups.push(upstream().await);
    }
    let urls: Vec<String> = ups.iter().map(|u| u.url("")).collect();
    let sb = fetcher(&allow(&urls)).await;
    for up in &ups {
        assert_eq!(fetched(&sb, &up.url("/")).await, "plain upstream text");
    }
    assert_eq!(sb.plugin("fetch").grants.net.pool.idle(), max);
    // The first hosts' connections were closed; the last ones' are reused.
    assert_eq!(fetched(&sb, &ups[0].url("/")).await, "plain upstream text");
    assert_eq!(ups[0].connections(), 2);
    let last = ups.last().unwrap();
    assert_eq!(fetched(&sb, &last.url("/")).await, "plain upstream text");
    assert_eq!(last.connections(), 1);
}
