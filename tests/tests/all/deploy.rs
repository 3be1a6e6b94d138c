//! What deploying needs beside the server itself: Kubernetes manifests
//! valid against the API's schemas, `moat probe` for images without curl,
//! and an audit log on stdout that a log collector can keep and verify.

use moat_tests::external::run_python;
use moat_tests::{MoatServer, Sandbox, free_port, raw};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

#[test]
fn the_kubernetes_manifests_are_valid_and_keep_their_promises() {
    let tmp = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes");
    let out = run_python(
        tmp,
        "validate_kubernetes.py",
        |c| {
            c.arg(&folder);
        },
        String::new,
    );
    for kind in [
        "Deployment",
        "Service",
        "ConfigMap",
        "Secret",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
    ] {
        assert!(out.contains(&format!("ok {kind} ")), "{kind}: {out}");
    }
    assert!(out.contains("ok the Deployment runs non-root"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_answers_for_health_checks_by_its_exit_code() {
    let dir = Sandbox::builder().plugin("hello", "").write();
    let server = MoatServer::start(dir.path(), &[]);
    let probe = |url: String| {
        std::process::Command::new(moat_tests::moat_bin())
            .args(["probe", &url, "--timeout-ms", "2000"])
            .output()
            .unwrap()
    };
    let healthy = probe(format!("{}/healthz", server.base));
    assert_eq!(healthy.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&healthy.stdout).contains("200 OK"));
    let missing = probe(format!("{}/nothing-here", server.base));
    assert_eq!(missing.status.code(), Some(1));
    let closed = probe(format!("http://127.0.0.1:{}/healthz", free_port()));
    assert_eq!(closed.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&closed.stderr).contains("cannot connect"));
    let tls = probe("https://127.0.0.1:1/healthz".into());
    assert_eq!(tls.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_audit_log_on_stdout_stdout_holds_a_chain_that_verifies() {
    let dir = Sandbox::builder()
        .plugin("hello", "")
        .toml("[http]\nstateless = true\n[audit]\nstdout = true\n")
        .write();
    let port = free_port();
    let stdout = dir.path().join("collected.jsonl");
    let stderr = dir.path().join("stderr.log");
    let mut child = std::process::Command::new(moat_tests::moat_bin())
        .args(["serve", "--http", &format!("127.0.0.1:{port}"), "--config"])
        .arg(dir.path().join("moat.toml"))
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::get(format!("{base}/healthz")).await.is_err() {
        assert!(Instant::now() < deadline, "not serving");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let url = format!("{base}/mcp");
    let greet = raw::call_tool(&url, None, "hello.greet", json!({ "name": "s" })).await;
    assert_eq!(greet.text(), Some("Hello, s!"));
    let refused = raw::call_tool(&url, None, "hello.greet", json!({ "nom": 1 })).await;
    assert!(refused.body["error"].is_object(), "{}", refused.body);
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());

    // What a log collector keeps of stdout is the chain, nothing else.
    let text = std::fs::read_to_string(&stdout).unwrap();
    let records: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(records.iter().any(|r| r["kind"] == "ok"), "{text}");
    assert!(
        records.iter().any(|r| r["kind"] == "invalid_arguments"),
        "{text}"
    );
    let verify = std::process::Command::new(moat_tests::moat_bin())
        .args(["audit", "verify"])
        .arg(&stdout)
        .output()
        .unwrap();
    assert!(verify.status.success(), "{verify:?}");
    let log = std::fs::read_to_string(&stderr).unwrap();
    assert!(log.contains("moat: serving 2 tools"), "{log}");
}
