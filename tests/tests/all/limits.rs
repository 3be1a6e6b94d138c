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
    sb.runs_out_of_memory("testbed", "allocate", json!({}), 16 << 20)
        .await;
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
    // The size counts what the response carries: the text and its framing.
    assert_eq!(
        err,
        CallError::OutputTooLarge {
            size: 5026,
            limit: 1000
        }
    );
    assert_eq!(
        sb.ok("testbed", "big_output", json!({ "bytes": 900 }))
            .await
            .len(),
        900
    );
    still_serves(&sb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_empty_items_meets_the_output_cap() {
    // 100,000 empty items carry no content bytes, but 2.6 MB of JSON.
    let sb = testbed("max_output_bytes = 100_000").await;
    let err = sb
        .fails("testbed", "empty_items", json!({ "count": 100_000 }))
        .await;
    assert_eq!(
        err,
        CallError::OutputTooLarge {
            size: 2_600_000,
            limit: 100_000
        }
    );
    let report = sb
        .call("testbed", "empty_items", json!({ "count": 10 }))
        .await;
    assert_eq!(report.result.unwrap().content.len(), 10);
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

/// A guest still running wasm at an epoch tick moves off the runtime's
/// workers to a thread of its own (see `Runtime::run`), so more spinning
/// guests than workers cannot hold up a quick call; their deadline still
/// ends them there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spinning_guests_move_off_the_workers_and_still_end_at_their_deadline() {
    let sb = testbed("fuel = 1_000_000_000_000_000\ntimeout_ms = 2000").await;
    let moved = || moat::metrics::get().cpu_bound_calls.get();
    let before = moved();
    let spinners = futures::future::join_all((0..6).map(|_| async {
        let err = sb.fails("testbed", "spin", json!({})).await;
        (err, Instant::now())
    }));
    let (spun, quick) = tokio::join!(spinners, async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        sb.ok("testbed", "counter", json!({})).await;
        Instant::now()
    });
    for (err, ended) in &spun {
        assert_eq!(err.kind(), "timed_out");
        assert!(quick < *ended, "a quick call ended after a spinning one");
    }
    // Other tests of this binary may move calls too: the count only grows.
    assert!(
        moved() >= before + 6,
        "{} of 6 spinning calls were moved",
        moved() - before
    );
    assert_eq!(sb.ok("testbed", "counter", json!({})).await, "1");
}

/// `fuel = false`: the plugin runs in an engine without fuel checks,
/// beside the metered one, and its deadline alone bounds it; a plugin
/// that counts fuel in the same host still runs out of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_without_fuel_is_bounded_by_its_deadline_alone() {
    let sb = Sandbox::builder()
        .plugin("testbed", "fuel = false\ntimeout_ms = 300")
        .plugin_from(
            "frugal",
            "testbed",
            "fuel = 50_000_000\ntimeout_ms = 60_000",
        )
        .build()
        .await;
    assert_eq!(
        sb.fails("testbed", "spin", json!({})).await,
        CallError::TimedOut {
            limit: Duration::from_millis(300)
        }
    );
    assert_eq!(
        sb.fails("frugal", "spin", json!({})).await,
        CallError::OutOfFuel { budget: 50_000_000 }
    );
    let free = sb.call("testbed", "counter", json!({})).await;
    assert_eq!(free.stats.fuel_used, 0);
    let counted = sb.call("frugal", "counter", json!({})).await;
    assert!(counted.stats.fuel_used > 0);
    assert_eq!(sb.ok("testbed", "counter", json!({})).await, "1");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_without_allow_hosts_has_no_working_wasi_http() {
    // Not even a request object: nothing is allocated on its behalf.
    let sb = testbed("").await;
    let err = sb
        .fails("testbed", "hoard_bodies", json!({ "count": 1000 }))
        .await;
    assert_eq!(err.kind(), "not_granted", "{err}");
    let message = err.to_string();
    assert!(
        message.contains("wasi:http/types") && message.contains("allow_hosts"),
        "{message}"
    );
    still_serves(&sb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsent_http_bodies_are_bounded_per_body_and_by_the_handle_cap() {
    let sb = testbed(r#"allow_hosts = ["http://127.0.0.1:1"]"#).await;
    // Each body buffers at most one 16 KiB chunk on the host.
    let buffered: u64 = sb
        .ok("testbed", "hoard_bodies", json!({ "count": 100 }))
        .await
        .parse()
        .unwrap();
    assert!(buffered > 0 && buffered <= 100 * 16 * 1024, "{buffered}");
    // And a call holds at most 1,024 handles: a request, its body and its
    // stream each take one.
    let err = sb
        .fails("testbed", "hoard_bodies", json!({ "count": 2000 }))
        .await;
    assert_eq!(err, CallError::HandleLimit { limit: 1024 });
    still_serves(&sb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_files_are_capped_per_call() {
    let sb = Sandbox::builder()
        .file("data/x.txt", "x")
        .plugin("testbed", r#"dirs = [{ host = "data", guest = "/data" }]"#)
        .build()
        .await;
    let held = sb
        .ok(
            "testbed",
            "open_many",
            json!({ "path": "/data/x.txt", "count": 500 }),
        )
        .await;
    assert_eq!(held, "holding 500");
    let err = sb
        .fails(
            "testbed",
            "open_many",
            json!({ "path": "/data/x.txt", "count": 20_000 }),
        )
        .await;
    assert_eq!(err, CallError::HandleLimit { limit: 1024 });
    still_serves(&sb).await;

    // The budget is the plugin's to set.
    let sb = Sandbox::builder()
        .file("data/x.txt", "x")
        .plugin(
            "testbed",
            "dirs = [{ host = \"data\", guest = \"/data\" }]\nmax_handles = 64",
        )
        .build()
        .await;
    let err = sb
        .fails(
            "testbed",
            "open_many",
            json!({ "path": "/data/x.txt", "count": 100 }),
        )
        .await;
    assert_eq!(err, CallError::HandleLimit { limit: 64 });
    still_serves(&sb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_and_host_refusals_are_named_not_called_crashes() {
    let sb = testbed("").await;
    // WASI 0.2 passes only success or failure: status 3 arrives as 1.
    let err = sb.fails("testbed", "exit", json!({ "count": 3 })).await;
    assert_eq!(err, CallError::Exited(1));
    let err = sb
        .fails("testbed", "random", json!({ "bytes": 1u64 << 40 }))
        .await;
    assert_eq!(err.kind(), "host_refused", "{err}");
    assert!(err.to_string().contains("exceeds limit"), "{err}");
    assert_eq!(
        sb.ok("testbed", "random", json!({ "bytes": 16 })).await,
        "16"
    );
    still_serves(&sb).await;
}
