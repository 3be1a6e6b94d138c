//! Each call runs in a fresh instance with an empty environment unless
//! granted, and many calls run at once.

use moat_tests::Sandbox;
use serde_json::json;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_state_does_not_survive_between_calls() {
    let sb = Sandbox::builder().plugin("testbed", "").build().await;
    for _ in 0..5 {
        assert_eq!(sb.ok("testbed", "counter", json!({})).await, "1");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_a_call_leaves_in_memory_is_visible_to_the_next() {
    let sb = Sandbox::builder().plugin("testbed", "").build().await;
    let marker = "caller-A-secret-3f9c1e";
    // Within the call that left it, the scan finds the residue...
    let left = sb
        .ok("testbed", "remember", json!({ "text": marker }))
        .await;
    let found: usize = left.rsplit("residue=").next().unwrap().parse().unwrap();
    assert!(
        left.contains(&format!("global={marker:?}")) && found > 1000,
        "{left}"
    );
    // ...and no later call sees any of it.
    for _ in 0..3 {
        let seen = sb.ok("testbed", "recall", json!({ "text": marker })).await;
        assert_eq!(seen, "global=\"\" residue=0");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_is_empty_unless_granted() {
    // SAFETY: set before any thread of this test reads the environment.
    unsafe { std::env::set_var("MOAT_TEST_HOST_SECRET", "host-only") };
    let sb = Sandbox::builder()
        .plugin("testbed", "")
        .plugin_from(
            "granted",
            "testbed",
            r#"env = { GREETING = "hi there", TOKEN = "t0k" }"#,
        )
        .build()
        .await;
    assert_eq!(sb.ok("testbed", "env_count", json!({})).await, "0");
    for name in ["MOAT_TEST_HOST_SECRET", "HOME", "PATH"] {
        assert_eq!(
            sb.ok("testbed", "env", json!({ "name": name })).await,
            "<unset>"
        );
        assert_eq!(
            sb.ok("granted", "env", json!({ "name": name })).await,
            "<unset>"
        );
    }
    assert_eq!(sb.ok("granted", "env_count", json!({})).await, "2");
    assert_eq!(
        sb.ok("granted", "env", json!({ "name": "GREETING" })).await,
        "hi there"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_calls_all_succeed() {
    let sb = Arc::new(Sandbox::builder().plugin("hello", "").build().await);
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..64 {
        let sb = sb.clone();
        calls.spawn(async move {
            let text = sb
                .ok("hello", "greet", json!({ "name": format!("caller {i}") }))
                .await;
            (i, text)
        });
    }
    let mut done = 0;
    while let Some(joined) = calls.join_next().await {
        let (i, text) = joined.expect("a call task panicked");
        assert_eq!(text, format!("Hello, caller {i}!"));
        done += 1;
    }
    assert_eq!(done, 64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_sockets_are_denied() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let sb = Sandbox::builder().plugin("testbed", "").build().await;
    let refused = sb
        .tool_error("testbed", "connect", json!({ "text": addr }))
        .await;
    assert!(refused.contains(&addr), "{refused}");
    listener.set_nonblocking(true).unwrap();
    assert!(
        listener.accept().is_err(),
        "the plugin reached the listener"
    );
    assert_eq!(sb.ok("testbed", "counter", json!({})).await, "1");
}
