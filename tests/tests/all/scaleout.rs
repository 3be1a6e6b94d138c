//! Scale-out: stateless replicas behind nginx sharing their limits through
//! a real Redis. A caller's rate and a tenant's cap hold across replicas;
//! any replica answers any call; a replica killed mid-run loses no call a
//! client retries and no record; with Redis down, calls fail closed, or
//! open when configured so, and the tokenless throttle falls back to each
//! replica's own.

use moat::config::{LimitBackend, QuotaConfig};
use moat::quota::shared::{LimitStore, SharedLimits, SharedThrottle};
use moat::quota::{RefusalThrottle, Throttled};
use moat_tests::nginx::Nginx;
use moat_tests::redis::RedisServer;
use moat_tests::{MoatServer, Sandbox, audit_records, free_port, raw};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Three replicas of one configuration (each with its own audit file and
/// compile cache), with `limits` in `[limits]`.
fn replicas(redis: &str, limits: &str, count: usize) -> Vec<(tempfile::TempDir, MoatServer)> {
    (0..count)
        .map(|_| {
            let dir = Sandbox::builder()
                .plugin("hello", "")
                .plugin("testbed", "")
                .toml(&format!(
                    "[http]\nstateless = true\ntrusted_proxies = [\"127.0.0.1\"]\n\
                     [audit]\nfile = \"audit.jsonl\"\n\
                     [limits]\nbackend = \"{redis}\"\n{limits}\n\
                     [limits.tools.\"hello.echo\"]\ncalls_per_minute = 100000\nburst = 1000\n\
                     [limits.tools.\"testbed.sleep\"]\ncalls_per_minute = 100000\nburst = 1000\n"
                ))
                .write();
            let server = MoatServer::start(dir.path(), &[]);
            (dir, server)
        })
        .collect()
}

/// The audit records of every replica, each with its replica's index.
fn all_records(replicas: &[(tempfile::TempDir, MoatServer)]) -> Vec<(usize, Value)> {
    replicas
        .iter()
        .enumerate()
        .flat_map(|(i, (dir, _))| {
            audit_records(&dir.path().join("audit.jsonl"))
                .into_iter()
                .map(move |r| (i, r))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_behind_nginx_share_limits_through_redis() {
    let redis = RedisServer::start();
    let mut group = replicas(
        &redis.url,
        "calls_per_minute = 60\nburst = 5\nmax_concurrent_per_tenant = 1",
        3,
    );
    let upstreams: Vec<String> = group.iter().map(|(_, s)| s.authority()).collect();
    let port = free_port();
    let nginx_dir = tempfile::tempdir().unwrap();
    let nginx = Nginx::start(nginx_dir.path(), port, &upstreams, None);
    let url = format!("http://127.0.0.1:{port}/mcp");

    // Any replica answers any stateless call.
    for i in 0..30 {
        let echo = raw::call_tool(
            &url,
            None,
            "hello.echo",
            json!({ "message": format!("e{i}") }),
        )
        .await;
        assert_eq!(echo.text(), Some(format!("e{i}").as_str()), "{}", echo.body);
    }
    let served: HashSet<usize> = all_records(&group)
        .iter()
        .filter(|(_, r)| r["tool"] == "hello.echo")
        .map(|(i, _)| *i)
        .collect();
    assert_eq!(served.len(), 3, "round-robin reaches every replica");

    // One caller's rate holds across replicas: 5 at once, then one a
    // second, wherever the calls land (alone, each replica would admit 5).
    let started = Instant::now();
    let mut admitted = 0;
    let mut limited = 0;
    for _ in 0..24 {
        let answer = raw::call_tool(&url, None, "hello.greet", json!({ "name": "r" })).await;
        match answer.status {
            200 => admitted += 1,
            429 => {
                assert!(
                    answer
                        .body
                        .as_str()
                        .unwrap()
                        .contains("rate limit of 60 calls per minute"),
                    "{}",
                    answer.body
                );
                limited += 1;
            }
            other => panic!("{other}: {}", answer.body),
        }
    }
    let refill = started.elapsed().as_secs() as usize + 1;
    assert!(
        (5..=5 + refill).contains(&admitted) && limited == 24 - admitted,
        "admitted {admitted} within {refill} s"
    );
    let greeted: HashSet<usize> = all_records(&group)
        .iter()
        .filter(|(_, r)| r["tool"] == "hello.greet" && r["outcome"] == "ok")
        .map(|(i, _)| *i)
        .collect();
    assert!(greeted.len() >= 2, "admitted calls spread over replicas");

    // The tenant's cap of one call at once holds across replicas: while
    // one sleeps on the first replica, the second refuses.
    let first = group[0].1.url.clone();
    let sleeping = tokio::spawn(async move {
        raw::call_tool(&first, None, "testbed.sleep", json!({ "ms": 1500 })).await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let busy = raw::call_tool(
        &group[1].1.url,
        None,
        "hello.echo",
        json!({ "message": "b" }),
    )
    .await;
    assert_eq!(busy.status, 429, "{}", busy.body);
    assert!(
        busy.body
            .as_str()
            .unwrap()
            .contains("too many calls running for this tenant"),
        "{}",
        busy.body
    );
    assert_eq!(sleeping.await.unwrap().status, 200);
    // Its place was given back.
    let freed = raw::call_tool(
        &group[1].1.url,
        None,
        "hello.echo",
        json!({ "message": "f" }),
    )
    .await;
    assert_eq!(freed.text(), Some("f"), "{}", freed.body);

    // A replica killed mid-run: every call a client retries succeeds, and
    // every answered call has its record in some replica's file.
    let mut answered = Vec::new();
    for i in 0..45 {
        if i == 15 {
            group[2].1.kill();
        }
        let message = format!("k{i}");
        let mut tries = 0;
        loop {
            tries += 1;
            let answer =
                raw::call_tool(&url, None, "hello.echo", json!({ "message": message })).await;
            if answer.status == 200 {
                assert_eq!(answer.text(), Some(message.as_str()));
                answered.push(message);
                break;
            }
            // A place the killed replica held frees when its lease ends.
            assert!(tries < 20, "call {i} failed {tries} times: {}", answer.body);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    let recorded: HashSet<String> = all_records(&group)
        .iter()
        .filter(|(_, r)| r["outcome"] == "ok")
        .filter_map(|(_, r)| r["arguments"]["message"].as_str().map(str::to_string))
        .collect();
    for message in &answered {
        assert!(recorded.contains(message), "no record of {message}");
    }
    drop(nginx);
    drop(redis);

    // Redis gone: calls fail closed within the backend's timeout, with a
    // status that says the service, not the caller, is the matter.
    let asked = Instant::now();
    let closed = raw::call_tool(
        &group[0].1.url,
        None,
        "hello.echo",
        json!({ "message": "c" }),
    )
    .await;
    assert_eq!(closed.status, 503, "{}", closed.body);
    assert_eq!(closed.header("retry-after"), Some("1"));
    assert!(
        closed
            .body
            .as_str()
            .unwrap()
            .contains("shared limit store cannot be reached"),
        "{}",
        closed.body
    );
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    let refused = all_records(&group).into_iter().find(|(_, r)| {
        r["kind"] == "limits_unavailable"
            && r["reason"]
                .as_str()
                .unwrap_or("")
                .contains("shared limit store")
    });
    assert!(refused.is_some(), "the refusal is audited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_calls_run_when_configured_to_fail_open() {
    let mut redis = RedisServer::start();
    let group = replicas(
        &redis.url,
        "calls_per_minute = 60\nburst = 2\non_backend_failure = \"admit\"\nbackend_timeout_ms = 100",
        1,
    );
    let url = &group[0].1.url;
    for _ in 0..2 {
        assert_eq!(
            raw::call_tool(url, None, "hello.greet", json!({ "name": "o" }))
                .await
                .status,
            200
        );
    }
    assert_eq!(
        raw::call_tool(url, None, "hello.greet", json!({ "name": "o" }))
            .await
            .status,
        429
    );
    redis.stop();
    for _ in 0..3 {
        let open = raw::call_tool(url, None, "hello.greet", json!({ "name": "o" })).await;
        assert_eq!(open.text(), Some("Hello, o!"), "{}", open.body);
    }
    assert!(
        group[0]
            .1
            .log()
            .contains("the shared limit store (Redis) failed")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_the_tokenless_throttle_and_fall_back_to_their_own() {
    let mut redis = RedisServer::start();
    let backend = LimitBackend {
        url: redis.url.clone(),
        timeout: Duration::from_millis(500),
        fail_open: false,
    };
    // Two replicas' throttles: 3 refusals a minute per source, 5 records a
    // minute per endpoint.
    let replica = || {
        SharedThrottle::new(
            LimitStore::new(&backend).unwrap(),
            RefusalThrottle::new(3, 5, 64),
        )
    };
    let (a, b) = (replica(), replica());
    let peer: IpAddr = "203.0.113.5".parse().unwrap();
    assert_eq!(a.check("top", peer).await, Throttled::No);
    assert_eq!(b.check("top", peer).await, Throttled::No);
    assert_eq!(a.check("top", peer).await, Throttled::No);
    // The fourth, on either replica, is throttled and recorded once.
    assert!(matches!(
        b.check("top", peer).await,
        Throttled::Limited { limited, record: true } if limited.reason.contains("from 203.0.113.5")
    ));
    assert!(matches!(
        a.check("top", peer).await,
        Throttled::Limited { record: false, .. }
    ));
    // Another endpoint counts apart.
    assert_eq!(a.check("tenant:x", peer).await, Throttled::No);
    // The endpoint's ceiling of records: one more source, then unrecorded.
    let other: IpAddr = "198.51.100.9".parse().unwrap();
    assert_eq!(b.check("top", other).await, Throttled::No);
    assert!(matches!(
        a.check("top", other).await,
        Throttled::Unrecorded(Some(reason)) if reason.contains("at this endpoint")
    ));

    // Rates and the cap in one round trip, shared by both replicas' limits.
    let config = QuotaConfig {
        calls_per_minute: Some(60),
        burst: 2,
        max_concurrent_per_tenant: Some(1),
        ..QuotaConfig::default()
    };
    let store = LimitStore::new(&backend).unwrap();
    let one = SharedLimits::new(store.clone(), "top", &config);
    let two = SharedLimits::new(store, "top", &config);
    let held = one.admit("alice", "hello.greet", true).await.unwrap();
    let full = two.admit("bob", "hello.greet", true).await.err().unwrap();
    assert!(full.reason.contains("for this tenant"), "{full:?}");
    drop(held);
    // The place is given back in the background.
    let deadline = Instant::now() + Duration::from_secs(5);
    let second = loop {
        match two.admit("alice", "hello.greet", true).await {
            Ok(slot) => break slot,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("{e:?}"),
        }
    };
    drop(second);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let spent = one.admit("alice", "hello.greet", true).await.err().unwrap();
    assert!(spent.reason.contains("rate limit of 60"), "{spent:?}");

    // A script still queued when its call gave up (Redis paused past the
    // timeout) takes a place when it runs at last; the place is given
    // back, so the tenant is not locked out until the lease ends.
    let impatient = LimitStore::new(&LimitBackend {
        timeout: Duration::from_millis(100),
        ..backend.clone()
    })
    .unwrap();
    let capped = QuotaConfig {
        max_concurrent_per_tenant: Some(1),
        ..QuotaConfig::default()
    };
    let limits = SharedLimits::new(impatient, "paused", &capped);
    drop(limits.admit("warm", "t", true).await.unwrap());
    redis.cli(&["CLIENT", "PAUSE", "600", "ALL"]);
    let timed_out = limits.admit("dave", "t", true).await.err().unwrap();
    assert!(timed_out.unavailable, "{timed_out:?}");
    tokio::time::sleep(Duration::from_millis(900)).await;
    let admitted = limits.admit("dave", "t", true).await;
    assert!(admitted.is_ok(), "{:?}", admitted.err());

    // Redis down: the throttle falls back to this replica's own (a fresh
    // source is answered and recorded), and limits fail closed.
    redis.stop();
    let fresh: IpAddr = "192.0.2.1".parse().unwrap();
    assert_eq!(a.check("top", fresh).await, Throttled::No);
    let closed = one.admit("carol", "hello.greet", true).await.err().unwrap();
    assert!(closed.reason.contains("cannot be reached"), "{closed:?}");
}
