//! The filesystem capability: only preopened directories, read-only unless
//! granted `rw`, and no way out through `..`, absolute paths or symlinks.

use moat_tests::Sandbox;
use serde_json::json;

async fn files_sandbox() -> Sandbox {
    Sandbox::builder()
        .file("demo/hello.txt", "hello from the demo\nsecond line\n")
        .file("demo/sub/notes.md", "a note about hello\n")
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
