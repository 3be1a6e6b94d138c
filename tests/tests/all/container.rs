//! The container image, built from the repository's Dockerfile with podman
//! and run as a user would: it starts in its default (demo) mode, answers
//! its health check and a tool call through a published port, runs as a
//! non-root user on a read-only root filesystem, and serves a mounted
//! production config (the Kubernetes example's) that names `[auth]`.
//!
//! No registry is reachable here, so the runtime stage's base image is a
//! Debian root filesystem made by `mmdebstrap` from Debian's packages (what
//! debian:bookworm-slim holds), and the build stage is replaced by this
//! build's own `moat` binary and plugins (`--build-context build=…`): the
//! runtime stage, its user, cache, health check and command are the
//! Dockerfile's own.

use moat_tests::client::{call_text, tool_names};
use moat_tests::{free_port, moat_bin, plugin_wasm};
use rmcp::ServiceExt;
use rmcp::transport::StreamableHttpClientTransport;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const BASE: &str = "localhost/moat-test-base:bookworm";
const IMAGE: &str = "localhost/moat-test:latest";

/// This VM's root lacks CAP_SYS_RESOURCE, so the OCI runtime cannot raise
/// rlimits to podman's defaults (above the hard limits); ask for less.
const ULIMITS: [&str; 4] = [
    "--ulimit",
    "nofile=4096:4096",
    "--ulimit",
    "nproc=4096:4096",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `program` with `args`; panics with its output unless it succeeds.
fn run(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} ({e}): Debian: apt-get install podman mmdebstrap")
        });
    assert!(
        out.status.success(),
        "{program} {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The base image: Debian bookworm's minimal system, made once and kept
/// as a tar under the target folder.
fn base_image(tmp: &Path) {
    let exists = Command::new("podman")
        .args(["image", "exists", BASE])
        .status()
        .is_ok_and(|s| s.success());
    if exists {
        return;
    }
    let tar = tmp.join("bookworm-minbase.tar");
    if !tar.is_file() {
        let partial = tmp.join("bookworm-minbase.tar.partial");
        run(
            "mmdebstrap",
            &[
                "--quiet",
                "--variant=minbase",
                "--format=tar",
                "bookworm",
                partial.to_str().unwrap(),
            ],
        );
        std::fs::rename(&partial, &tar).unwrap();
    }
    run("podman", &["import", tar.to_str().unwrap(), BASE]);
}

/// Removes the container `name` when dropped.
struct Container(String);

impl Container {
    fn exec(&self, args: &[&str]) -> Output {
        let mut all = vec!["exec", self.0.as_str()];
        all.extend_from_slice(args);
        Command::new("podman").args(&all).output().unwrap()
    }

    fn logs(&self) -> String {
        let out = Command::new("podman")
            .args(["logs", &self.0])
            .output()
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- container log ---\n{}", self.logs());
        }
        let _ = Command::new("podman").args(["rm", "-f", &self.0]).output();
    }
}

/// Starts `IMAGE` with `extra` options and `command` (none: the image's
/// own), publishing its port 8080 on 127.0.0.1; returns it and its base URL.
fn start(name: &str, extra: &[&str], command: &[&str]) -> (Container, String) {
    let _ = Command::new("podman").args(["rm", "-f", name]).output();
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:8080");
    let mut args = vec!["run", "--detach", "--name", name, "--read-only"];
    args.extend_from_slice(&ULIMITS);
    args.extend_from_slice(&["--publish", &publish]);
    args.extend_from_slice(extra);
    args.push(IMAGE);
    args.extend_from_slice(command);
    run("podman", &args);
    (Container(name.into()), format!("http://127.0.0.1:{port}"))
}

/// Waits until `base`/healthz answers 200.
async fn healthy(base: &str, container: &Container) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = reqwest::get(format!("{base}/healthz")).await
            && r.status() == 200
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no /healthz within 60 s:\n{}",
            container.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_starts_serves_and_runs_as_non_root_on_a_read_only_root() {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR")).join("container");
    std::fs::create_dir_all(&tmp).unwrap();
    base_image(&tmp);

    // The build stage's output, as the Dockerfile's build stage lays it out.
    let artifacts = tmp.join("artifacts");
    let _ = std::fs::remove_dir_all(&artifacts);
    std::fs::create_dir_all(artifacts.join("out/plugins")).unwrap();
    std::fs::copy(moat_bin(), artifacts.join("out/moat")).unwrap();
    for plugin in ["hello", "files"] {
        std::fs::copy(
            plugin_wasm(plugin),
            artifacts.join(format!("out/plugins/{plugin}.wasm")),
        )
        .unwrap();
    }
    let root = repo();
    let context = format!("build={}", artifacts.display());
    let base = format!("RUNTIME_IMAGE={BASE}");
    let mut build = vec![
        "build",
        "--format",
        "docker",
        "--target",
        "runtime",
        "--build-arg",
        &base,
        "--build-context",
        &context,
        "--tag",
        IMAGE,
        "--file",
    ];
    let dockerfile = root.join("Dockerfile");
    build.push(dockerfile.to_str().unwrap());
    build.extend_from_slice(&ULIMITS);
    build.push(root.to_str().unwrap());
    run("podman", &build);

    // The default command: demo mode, which starts and serves.
    let (demo, url) = start("moat-test-demo", &[], &[]);
    healthy(&url, &demo).await;
    let client = ()
        .serve(StreamableHttpClientTransport::from_uri(format!(
            "{url}/mcp"
        )))
        .await
        .unwrap();
    assert!(
        tool_names(&client)
            .await
            .contains(&"files.read".to_string())
    );
    let (error, text) = call_text(
        &client,
        "hello.greet",
        serde_json::json!({ "name": "podman" }),
    )
    .await;
    assert_eq!((error, text.as_str()), (false, "Hello, podman!"));
    let (error, text) = call_text(
        &client,
        "files.read",
        serde_json::json!({ "path": "README.txt" }),
    )
    .await;
    assert!(!error && !text.is_empty(), "{text}");
    client.cancel().await.unwrap();
    let log = demo.logs();
    assert!(
        log.contains("no authentication is configured"),
        "demo mode says so: {log}"
    );
    // Plugins were compiled into the image, for its user: loading them
    // again finds every one in the cache.
    let check = demo.exec(&["moat", "check", "--config", "/etc/moat/moat.toml"]);
    let printed = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{printed}");
    assert_eq!(printed.matches("(Hit)").count(), 2, "{printed}");

    // Not root, and the root filesystem cannot be written.
    let id = demo.exec(&["id"]);
    assert_eq!(
        String::from_utf8_lossy(&id.stdout).trim(),
        "uid=10001(moat) gid=10001(moat) groups=10001(moat)"
    );
    let owner = demo.exec(&["stat", "-c", "%u:%g %a", "/var/cache/moat"]);
    assert_eq!(
        String::from_utf8_lossy(&owner.stdout).trim(),
        "10001:10001 700"
    );
    // The user owns its cache folder, and still cannot write there.
    let write = demo.exec(&["sh", "-c", "echo x >> /var/cache/moat/x"]);
    assert!(!write.status.success(), "the cache was writable");
    assert!(
        String::from_utf8_lossy(&write.stderr).contains("Read-only file system"),
        "{}",
        String::from_utf8_lossy(&write.stderr)
    );
    let mounts = demo.exec(&["cat", "/proc/self/mounts"]);
    let mounts = String::from_utf8_lossy(&mounts.stdout);
    let root_mount = mounts.lines().find(|l| l.split(' ').nth(1) == Some("/"));
    assert!(
        root_mount.is_some_and(|l| l.split(' ').nth(3).unwrap().starts_with("ro")),
        "{mounts}"
    );
    // The image's HEALTHCHECK runs and passes.
    run("podman", &["healthcheck", "run", "moat-test-demo"]);
    drop(demo);

    // A mounted production config: [auth], audit to stdout, limits from a
    // Redis named in the environment. The same file the Kubernetes example
    // mounts; its issuer is not contacted until a token arrives.
    let config = root.join("deploy/kubernetes/moat.toml");
    let mount = format!("{}:/etc/moat/moat.toml:ro", config.display());
    let (production, url) = start(
        "moat-test-production",
        &[
            "--volume",
            &mount,
            "--env",
            "MOAT_REDIS_URL=redis://127.0.0.1:9/0",
        ],
        &["serve", "--config", "/etc/moat/moat.toml"],
    );
    healthy(&url, &production).await;
    let refused = reqwest::Client::new()
        .post(format!("{url}/mcp"))
        .header("host", "tools.example.com")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(moat_tests::raw::INIT)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let challenge = refused.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        challenge.contains("https://tools.example.com/.well-known/oauth-protected-resource/mcp"),
        "{challenge}"
    );
    // The refusal went to the audit log on stdout.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !production.logs().contains("\"kind\":\"unauthenticated\"") {
        assert!(Instant::now() < deadline, "{}", production.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
