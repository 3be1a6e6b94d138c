//! The filesystem capability: only preopened directories, read-only unless
//! granted `rw`, and no way out through `..`, absolute paths or symlinks.

use moat::runtime::CallError;
use moat_tests::{Sandbox, make_fifo};
use serde_json::json;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;
use std::time::Duration;

async fn files_sandbox() -> Sandbox {
    Sandbox::builder()
        .file("demo/hello.txt", "hello from the demo\nsecond line\n")
        .file("demo/sub/notes.md", "a note about hello\n")
        .file(
            "demo/sub/people.json",
            r#"[{"name":"ada","team":"x"},{"name":"bob","team":"y"},{"name":"cy","team":"x"},7]"#,
        )
        .file("secret.txt", "top secret")
        .plugin("files", r#"dirs = [{ host = "demo", guest = "/data", mode = "ro" }]"#)
        .plugin("testbed", r#"dirs = [{ host = "demo", guest = "/data", mode = "ro" }, { host = "out", guest = "/out", mode = "rw" }]"#)
        .dir("out")
        .build()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_plugin_lists_reads_and_searches_inside_its_preopen() {
    let sb = files_sandbox().await;
    let read = sb.ok("files", "read", json!({ "path": "hello.txt" })).await;
    assert_eq!(read, "hello from the demo\nsecond line\n");

    let list = sb.call("files", "list", json!({})).await.result.unwrap();
    let names: Vec<&str> = list.structured.as_ref().unwrap()["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["hello.txt", "sub"]);

    let found = sb
        .call("files", "search", json!({ "query": "hello" }))
        .await
        .result
        .unwrap();
    let matches = &found.structured.as_ref().unwrap()["matches"];
    assert_eq!(matches.as_array().unwrap().len(), 2, "{matches}");

    let capped = sb
        .ok(
            "files",
            "read",
            json!({ "path": "hello.txt", "max_bytes": 5 }),
        )
        .await;
    assert_eq!(capped, "hello\n[truncated at 5 bytes]");
}

/// `files.search` looks for the query in a whole file at once; each line
/// that contains it is reported once, numbered and cut as `str::lines`
/// cuts it, which is the reference here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_search_reports_the_lines_str_lines_finds() {
    let text = "alpha beta\r\nbeta beta gamma\n\nx\r\ngamma\nlast beta\r";
    let sb = Sandbox::builder()
        .file("demo/t.txt", text)
        .plugin(
            "files",
            r#"dirs = [{ host = "demo", guest = "/data", mode = "ro" }]"#,
        )
        .build()
        .await;
    for query in ["beta", "a\nx", "x\r", "\r", "", "gamma\n", "last", "t"] {
        let expected: Vec<_> = text
            .lines()
            .enumerate()
            .filter(|(_, line)| line.contains(query))
            .map(|(i, line)| json!({ "path": "t.txt", "line": i + 1, "text": line }))
            .collect();
        let found = sb
            .call("files", "search", json!({ "query": query }))
            .await
            .result
            .unwrap();
        let found = &found.structured.as_ref().unwrap()["matches"];
        assert_eq!(found, &json!(expected), "query {query:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_plugin_selects_from_a_json_array_inside_its_preopen_only() {
    let sb = files_sandbox().await;
    let selected = sb
        .call(
            "files",
            "select",
            json!({ "path": "sub/people.json", "field": "team", "equals": "x", "limit": 1 }),
        )
        .await
        .result
        .unwrap();
    assert_eq!(
        selected.structured.unwrap(),
        json!({ "count": 2, "items": [{ "name": "ada", "team": "x" }] })
    );
    let message = sb
        .tool_error(
            "files",
            "select",
            json!({ "path": "hello.txt", "field": "team", "equals": "x" }),
        )
        .await;
    assert!(message.contains("not a JSON array"), "{message}");
    // Outside the preopen, nothing is read.
    let message = sb
        .tool_error(
            "files",
            "select",
            json!({ "path": "../secret.txt", "field": "team", "equals": "x" }),
        )
        .await;
    assert!(message.contains("Operation not permitted"), "{message}");
    let still = sb.ok("files", "read", json!({ "path": "hello.txt" })).await;
    assert_eq!(still, "hello from the demo\nsecond line\n");
}

/// `files.select` runs on the SDK's arena (`Tool::arena`: memory a call
/// frees is kept until the instance is dropped). It gives the answer
/// serde_json gives natively for a document of thousands of objects, and
/// one whose tree does not fit the memory grant ends the call as
/// `memory_limit` within the grant; the next calls, on the arena and off
/// it, are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_on_the_arena_answers_as_natively_and_keeps_to_its_memory_grant() {
    let records = |n: usize| {
        let items: Vec<_> = (0..n)
            .map(|i| {
                json!({ "id": i, "team": format!("team {}", i % 7), "tags": ["a", format!("t{i}")],
                        "bio": format!("record {i} {}", "x".repeat(i % 40)) })
            })
            .collect();
        serde_json::to_string(&items).unwrap()
    };
    let fits = records(4_000);
    let sb = Sandbox::builder()
        .file("demo/fits.json", &fits)
        .file("demo/too-big.json", &records(60_000))
        .file("demo/hello.txt", "hello")
        .plugin(
            "files",
            "dirs = [{ host = \"demo\", guest = \"/data\", mode = \"ro\" }]\nmemory_mib = 16",
        )
        .build()
        .await;

    let all: Vec<serde_json::Value> = serde_json::from_str(&fits).unwrap();
    let team: Vec<_> = all.iter().filter(|v| v["team"] == "team 3").collect();
    let selected = sb
        .call(
            "files",
            "select",
            json!({ "path": "fits.json", "field": "team", "equals": "team 3", "limit": 50 }),
        )
        .await
        .result
        .unwrap();
    assert_eq!(
        selected.structured.unwrap(),
        json!({ "count": team.len(), "items": team[..50] })
    );

    sb.runs_out_of_memory(
        "files",
        "select",
        json!({ "path": "too-big.json", "field": "team", "equals": "team 3" }),
        16 << 20,
    )
    .await;

    let again = sb
        .call(
            "files",
            "select",
            json!({ "path": "fits.json", "field": "id", "equals": 3999 }),
        )
        .await
        .result
        .unwrap();
    assert_eq!(again.structured.unwrap()["count"], 1);
    assert_eq!(
        sb.ok("files", "read", json!({ "path": "hello.txt" })).await,
        "hello"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_cannot_read_outside_its_preopen() {
    let sb = files_sandbox().await;
    let secret = sb.path("secret.txt").display().to_string();
    std::os::unix::fs::symlink(sb.path("secret.txt"), sb.path("demo/escape")).unwrap();
    std::os::unix::fs::symlink("../secret.txt", sb.path("demo/escape-relative")).unwrap();

    // Escapes through `..` or a symlink are refused by the sandbox...
    for path in [
        "../secret.txt",
        "sub/../../secret.txt",
        "escape",
        "escape-relative",
    ] {
        let message = sb
            .tool_error("files", "read", json!({ "path": path }))
            .await;
        assert!(
            message.contains("Operation not permitted"),
            "{path}: {message}"
        );
    }
    // ...and absolute paths outside the preopens do not exist for the plugin.
    for path in [secret.as_str(), "/etc/passwd"] {
        let message = sb
            .tool_error("files", "read", json!({ "path": path }))
            .await;
        assert!(
            message.contains("No such file or directory"),
            "{path}: {message}"
        );
    }
    for path in [
        "/data/../secret.txt",
        &secret,
        "/etc/passwd",
        "/data/escape",
        "/proc/self/environ",
    ] {
        let message = sb
            .tool_error("testbed", "read_file", json!({ "path": path }))
            .await;
        assert!(!message.contains("top secret"), "{path}: {message}");
    }
    // Still serving.
    assert_eq!(
        sb.ok("files", "read", json!({ "path": "sub/notes.md" }))
            .await,
        "a note about hello\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_preopen_refuses_writes_and_read_write_accepts_them() {
    let sb = files_sandbox().await;
    let refused = sb
        .tool_error(
            "testbed",
            "write_file",
            json!({ "path": "/data/new.txt", "content": "x" }),
        )
        .await;
    assert!(
        refused.contains("/data/new.txt: Operation not permitted"),
        "{refused}"
    );
    assert!(!sb.path("demo/new.txt").exists());
    let overwrite = sb
        .tool_error(
            "testbed",
            "write_file",
            json!({ "path": "/data/hello.txt", "content": "x" }),
        )
        .await;
    assert!(
        overwrite.contains("/data/hello.txt: Operation not permitted"),
        "{overwrite}"
    );
    assert_eq!(
        std::fs::read_to_string(sb.path("demo/hello.txt")).unwrap(),
        "hello from the demo\nsecond line\n"
    );

    let wrote = sb
        .ok(
            "testbed",
            "write_file",
            json!({ "path": "/out/result.txt", "content": "written" }),
        )
        .await;
    assert_eq!(wrote, "wrote 7 bytes to /out/result.txt");
    assert_eq!(
        std::fs::read_to_string(sb.path("out/result.txt")).unwrap(),
        "written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_outside_the_preopens_is_writable() {
    let sb = files_sandbox().await;
    let outside = sb.path("pwned.txt").display().to_string();
    for path in [
        "/out/../pwned.txt",
        "/pwned.txt",
        "/tmp/pwned.txt",
        "pwned.txt",
        &outside,
    ] {
        sb.tool_error(
            "testbed",
            "write_file",
            json!({ "path": path, "content": "x" }),
        )
        .await;
    }
    assert!(!sb.path("pwned.txt").exists());
    assert!(!std::path::Path::new("/tmp/pwned.txt").exists());
    std::os::unix::fs::symlink(sb.path("."), sb.path("out/link")).unwrap();
    sb.tool_error(
        "testbed",
        "write_file",
        json!({ "path": "/out/link/pwned.txt", "content": "x" }),
    )
    .await;
    assert!(!sb.path("pwned.txt").exists());
    assert_eq!(sb.ok("testbed", "counter", json!({})).await, "1");
}

/// A sandbox whose testbed may write into `out/` under `grants`.
async fn writer(grants: &str) -> Sandbox {
    Sandbox::builder()
        .dir("out")
        .plugin(
            "testbed",
            &format!("dirs = [{{ host = \"out\", guest = \"/out\", mode = \"rw\" }}]\n{grants}"),
        )
        .build()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_past_the_call_budget_end_the_call_and_the_next_call_has_its_own() {
    // Creating the file counts 4 KiB, its bytes the rest.
    let sb = writer("max_write_bytes = 10_000").await;
    let write = |path: &str, bytes: usize| json!({ "path": format!("/out/{path}"), "content": "w".repeat(bytes) });
    for _ in 0..2 {
        sb.ok("testbed", "write_file", write("fits.txt", 900)).await;
    }
    let err = sb
        .fails("testbed", "write_file", write("big.txt", 20_000))
        .await;
    assert_eq!(err, CallError::WriteLimit { limit: 10_000 });
    assert_eq!(err.kind(), "write_limit");
    let written = std::fs::metadata(sb.path("out/big.txt")).map_or(0, |m| m.len());
    assert!(written <= 10_000, "{written} bytes reached the disk");
    assert_eq!(std::fs::read(sb.path("out/fits.txt")).unwrap().len(), 900);
    assert_eq!(sb.ok("testbed", "counter", json!({})).await, "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlinks_in_a_writable_directory_need_their_own_grant() {
    let link = json!({ "dir": "/out", "target": "../../etc/passwd", "link": "trap" });
    let sb = writer("").await;
    let refused = sb.tool_error("testbed", "symlink", link.clone()).await;
    assert!(refused.contains("not-permitted"), "{refused}");
    assert!(sb.path("out/trap").symlink_metadata().is_err());
    assert_eq!(sb.ok("testbed", "counter", json!({})).await, "1");

    let sb = writer("allow_symlinks = true").await;
    assert_eq!(sb.ok("testbed", "symlink", link).await, "linked");
    let made = std::fs::read_link(sb.path("out/trap")).unwrap();
    assert_eq!(made, std::path::Path::new("../../etc/passwd"));
}

/// A file operation that never returns (here: opening a FIFO nobody
/// writes to) ends its call at the deadline and holds only that call's
/// thread: with more such calls than the runtime has workers, other calls,
/// of file plugins and of plugins without files, are still served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_file_operation_stalls_only_its_own_call() {
    let sb = Sandbox::builder()
        .file("demo/hello.txt", "hello from the demo\n")
        .plugin(
            "files",
            r#"dirs = [{ host = "demo", guest = "/data" }]
timeout_ms = 300"#,
        )
        .plugin("hello", "")
        .build()
        .await;
    let pipe = sb.path("demo/pipe");
    make_fifo(&pipe);
    let sb = Arc::new(sb);

    // Each call is a task of its own, as the transports run them.
    let stuck: Vec<_> = (0..4)
        .map(|_| {
            let sb = sb.clone();
            tokio::spawn(async move { sb.call("files", "read", json!({ "path": "pipe" })).await })
        })
        .collect();
    let scenario = tokio::spawn({
        let sb = sb.clone();
        async move {
            for call in stuck {
                let report = call.await.unwrap();
                assert!(
                    matches!(report.result, Err(CallError::TimedOut { limit }) if limit == Duration::from_millis(300)),
                    "{:?}",
                    report.result
                );
            }
            // The four calls are still stuck in open(2); everyone else is served.
            assert_eq!(
                sb.ok("hello", "greet", json!({ "name": "next" })).await,
                "Hello, next!"
            );
            assert_eq!(
                sb.ok("files", "read", json!({ "path": "hello.txt" })).await,
                "hello from the demo\n"
            );
        }
    });
    // The watchdog is a thread of its own: it fires even if every runtime
    // worker is blocked.
    let (expired, watchdog) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(30));
        let _ = expired.send(());
    });
    let finished = tokio::select! {
        finished = scenario => Some(finished),
        _ = watchdog => None,
    };
    // Let the stuck opens return (a writer appears and leaves at once), so
    // their threads end with the test; the FIFO lives as long as `sb`.
    let writer = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&pipe);
    assert!(writer.is_ok(), "{writer:?}");
    drop((writer, sb));
    finished
        .expect("calls were not served while file operations were blocked")
        .unwrap();
}
