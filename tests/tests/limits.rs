//! Fuel, memory, stack, time and output budgets: each runaway ends its own
//! call with a distinct, named error, and the plugin serves the next call.

use moat::runtime::CallError;
use moat_tests::Sandbox;
use serde_json::json;
use std::time::{Duration, Instant};

async fn testbed(grants: &str) -> Sandbox {
    Sandbox::builder().plugin("testbed", grants).build().await
}

async fn still_serves(sb: &Sandbox) {
    assert_eq!(sb.ok("testbed", "counter", json!({})).await, "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infinite_loop_ends_out_of_fuel() {
    let sb = testbed("fuel = 50_000_000\ntimeout_ms = 60_000").await;
    let err = sb.fails("testbed", "spin", json!({})).await;
    assert_eq!(err, CallError::OutOfFuel { budget: 50_000_000 });
    assert_eq!(err.kind(), "out_of_fuel");
    still_serves(&sb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infinite_loop_with_ample_fuel_times_out_at_its_deadline() {
    let sb = testbed("fuel = 1_000_000_000_000_000\ntimeout_ms = 300").await;
    let started = Instant::now();
    let err = sb.fails("testbed", "spin", json!({})).await;
    let took = started.elapsed();
    assert_eq!(
        err,
        CallError::TimedOut {
            limit: Duration::from_millis(300)
        }
    );
    assert!(took >= Duration::from_millis(300), "ended early: {took:?}");
    assert!(
        took < Duration::from_secs(3),
        "ended long after the deadline: {took:?}"
    );
    still_serves(&sb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_on_the_host_times_out_at_its_deadline() {
    let sb = testbed("timeout_ms = 300").await;
    let started = Instant::now();
    let err = sb.fails("testbed", "sleep", json!({ "ms": 60_000 })).await;
    assert_eq!(
        err,
        CallError::TimedOut {
            limit: Duration::from_millis(300)
        }
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        sb.ok("testbed", "sleep", json!({ "ms": 1 })).await,
        "slept 1 ms"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bomb_ends_with_the_memory_error() {
    let sb = testbed("memory_mib = 16").await;
    let report = sb.call("testbed", "allocate", json!({})).await;
    assert_eq!(
        report.result,
        Err(CallError::MemoryLimit { limit: 16 << 20 })
    );
    assert!(
        report.stats.peak_memory_bytes <= 16 << 20,
        "{:?}",
        report.stats
    );
    still_serves(&sb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_recursion_ends_with_stack_overflow() {
    let sb = testbed("").await;
    assert_eq!(
        sb.fails("testbed", "recurse", json!({})).await,
        CallError::StackOverflow
    );
    // Recursion within the stack limit is fine.
    sb.ok("testbed", "recurse", json!({ "depth": 1000 })).await;
    still_serves(&sb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panic_ends_with_a_trap_carrying_its_message() {
    let sb = testbed("").await;
    let err = sb
        .fails("testbed", "panic", json!({ "text": "kaboom" }))
        .await;
    let CallError::Trap(message) = &err else {
        panic!("{err:?}")
    };
    assert!(
        message.contains("panicked") && message.contains("kaboom"),
        "{message}"
    );
    assert_eq!(err.kind(), "trap");
    still_serves(&sb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_output_ends_with_output_too_large() {
    let sb = testbed("max_output_bytes = 1000").await;
    let err = sb
        .fails("testbed", "big_output", json!({ "bytes": 5000 }))
        .await;
    assert_eq!(
        err,
        CallError::OutputTooLarge {
            size: 5000,
            limit: 1000
        }
    );
    assert_eq!(
        sb.ok("testbed", "big_output", json!({ "bytes": 1000 }))
            .await
            .len(),
        1000
    );
    still_serves(&sb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_errors_unknown_tools_and_bad_arguments_are_distinct() {
    let sb = testbed("").await;
    assert_eq!(
        sb.tool_error("testbed", "fail", json!({ "text": "nope" }))
            .await,
        "nope"
    );
    assert_eq!(
        sb.fails("testbed", "no_such_tool", json!({})).await,
        CallError::UnknownTool("no_such_tool".into())
    );
    let err = sb.fails("testbed", "sleep", json!({ "ms": "soon" })).await;
    assert!(
        matches!(&err, CallError::InvalidArguments(m) if m.contains("invalid type")),
        "{err:?}"
    );
    still_serves(&sb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_runaway_does_not_hold_up_other_calls() {
    let sb = testbed("fuel = 1_000_000_000_000_000\ntimeout_ms = 2000").await;
    let (spun, quick) = tokio::join!(sb.fails("testbed", "spin", json!({})), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = Instant::now();
        sb.ok("testbed", "counter", json!({})).await;
        started.elapsed()
    });
    assert_eq!(spun.kind(), "timed_out");
    assert!(
        quick < Duration::from_millis(1500),
        "a quick call waited {quick:?} behind a spinning one"
    );
}

/// A plugin granted files runs each call on a thread of its own (see
/// `Runtime::run`): every budget holds there as it does on the workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_hold_for_a_plugin_that_runs_on_its_own_thread() {
    let sb = Sandbox::builder()
        .dir("shared")
        .plugin(
            "testbed",
            "dirs = [{ host = \"shared\", guest = \"/data\" }]\nfuel = 1_000_000_000_000_000\ntimeout_ms = 300\nmemory_mib = 16",
        )
        .plugin_from(
            "frugal",
            "testbed",
            "dirs = [{ host = \"shared\", guest = \"/data\" }]\nfuel = 50_000_000\ntimeout_ms = 60_000",
        )
        .build()
        .await;
    let timed_out = CallError::TimedOut {
        limit: Duration::from_millis(300),
    };
    assert_eq!(sb.fails("testbed", "spin", json!({})).await, timed_out);
    assert_eq!(
        sb.fails("testbed", "sleep", json!({ "ms": 60_000 })).await,
        timed_out
    );
    assert_eq!(
        sb.fails("testbed", "allocate", json!({})).await,
        CallError::MemoryLimit { limit: 16 << 20 }
    );
    assert_eq!(
        sb.fails("frugal", "spin", json!({})).await,
        CallError::OutOfFuel { budget: 50_000_000 }
    );
    still_serves(&sb).await;
}
