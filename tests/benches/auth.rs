//! Cost of authenticating a request: full JWT validation (signature, then
//! claims) against the cached verification of a token already seen.
//! Results go to docs/BENCHMARKS.md.
//!
//! Run: cargo bench -p moat-tests --bench auth

use http::{HeaderMap, HeaderValue, Uri};
use moat::auth::endpoint::Endpoint;
use moat::config::Config;
use moat_tests::auth::{TestIssuer, TestKey, claims};
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

const ROUNDS: u32 = 20_000;

fn main() {
    let rt = moat_tests::bench::runtime();
    rt.block_on(async {
        let key = TestKey::new("k1", 9);
        let issuer = TestIssuer::start(&[&key]).await;
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "[auth]\nissuer = \"{base}\"\njwks_uri = \"{base}/keys\"\nresource = \"http://moat.test/mcp\"\nalgorithms = [\"EdDSA\"]\n[[plugin]]\nname = \"hello\"\nsource = {:?}\n",
            plugin_wasm("hello").display().to_string(),
            base = issuer.base
        );
        let config = Config::parse(&dir.path().join("moat.toml"), &text).unwrap();
        let auth = config.auth.unwrap();
        let endpoint = Endpoint::new(auth.clone());
        let uri: Uri = "/mcp".parse().unwrap();
        let token = key.sign(&claims(&issuer.base, "http://moat.test/mcp", "tools:read"));
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
        endpoint.authenticate(&uri, &headers).await.unwrap(); // fetches the keys

        // Cold: a fresh token each time, so the cache never helps.
        let tokens: Vec<HeaderMap> = (0..ROUNDS)
            .map(|i| {
                let mut c = claims(&issuer.base, "http://moat.test/mcp", "tools:read");
                c["jti"] = i.into();
                let mut h = HeaderMap::new();
                h.insert("authorization", HeaderValue::from_str(&format!("Bearer {}", key.sign(&c))).unwrap());
                h
            })
            .collect();
        let start = Instant::now();
        for h in &tokens {
            endpoint.authenticate(&uri, h).await.unwrap();
        }
        let cold = start.elapsed() / ROUNDS;

        let start = Instant::now();
        for _ in 0..ROUNDS {
            endpoint.authenticate(&uri, &headers).await.unwrap();
        }
        let cached = start.elapsed() / ROUNDS;
        println!("authenticate a request with an EdDSA JWT, {ROUNDS} rounds each");
        report("full validation", cold, None);
        report("cached token", cached, Some(cold));
    });
}

fn report(name: &str, per: Duration, baseline: Option<Duration>) {
    let ratio = baseline
        .map(|b| {
            format!(
                "  ({:.3}x the first row)",
                per.as_secs_f64() / b.as_secs_f64()
            )
        })
        .unwrap_or_default();
    println!(
        "  {name:<16} {:>8.2} us per request{ratio}",
        per.as_secs_f64() * 1e6
    );
}
