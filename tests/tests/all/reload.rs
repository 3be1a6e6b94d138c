//! Reloading while serving: SIGHUP and `moat reload` swap plugins in
//! without dropping a call, every call runs on the version live when it
//! started, clients are told the lists changed, and a reload that fails
//! keeps the running plugins.

use moat_tests::client::{Client, call_text, connect, tool_names};
use moat_tests::external::python_with_sdk;
use moat_tests::{MoatServer, audit_records, free_port, moat_bin, plugin_wasm};
use rmcp::model::CallToolRequestParams;
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The hello component with a custom section naming `n` appended: the
/// same code, other bytes (so another digest), as a rebuild would be.
fn variant(n: u64) -> Vec<u8> {
    let mut bytes = std::fs::read(plugin_wasm("hello")).unwrap();
    let name = b"moat-test-version";
    let payload = n.to_le_bytes();
    let size = 1 + name.len() + payload.len();
    assert!(size < 128 && name.len() < 128, "one-byte LEB128 lengths");
    bytes.extend_from_slice(&[0, size as u8, name.len() as u8]);
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(&payload);
    bytes
}

fn sha256(bytes: &[u8]) -> String {
    moat_tests::registry::digest(bytes)
        .trim_start_matches("sha256:")
        .to_string()
}

/// Writes the config serving version `n` (atomically, as an editor that
/// renames does).
fn write_config(dir: &Path, n: u64, extra: &str) {
    let text = format!(
        "[runtime]\ncache_dir = \"cache\"\n[audit]\nfile = \"audit.log\"\n\
         [[plugin]]\nname = \"hello\"\nsource = \"hello-{n}.wasm\"\n\
         [plugin.grants]\nenv = {{ GREETING = \"v{n}\" }}\n{extra}"
    );
    std::fs::write(dir.join("moat.toml.new"), text).unwrap();
    std::fs::rename(dir.join("moat.toml.new"), dir.join("moat.toml")).unwrap();
}

fn reload(dir: &Path, admin: &str) -> std::process::Output {
    Command::new(moat_bin())
        .args(["reload", "--admin", admin])
        .current_dir(dir)
        .output()
        .unwrap()
}

/// The count of reloads with `outcome` on the server's /metrics.
fn reloads(admin: &str, outcome: &str) -> u64 {
    let mut tcp = std::net::TcpStream::connect(admin).unwrap();
    write!(tcp, "GET /metrics HTTP/1.0\r\nHost: {admin}\r\n\r\n").unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut tcp, &mut text).unwrap();
    let prefix = format!("moat_reloads_total{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |n| n.trim().parse().unwrap())
}

/// Which version answered: "v7, c3-41!" is 7.
fn version_of(text: &str) -> u64 {
    text.strip_prefix('v')
        .and_then(|t| t.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a versioned greeting: {text:?}"))
}

/// Version bounds shared with the calling clients: `requested` rises
/// before a reload is asked for, `done` once it has answered.
#[derive(Default)]
struct Versions {
    requested: AtomicU64,
    done: AtomicU64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reloads_swap_plugins_without_dropping_a_call_and_clients_hear_of_it() {
    const FLIPS: u64 = 20;
    const CLIENTS: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let mut digests = HashMap::new();
    for n in 0..=FLIPS {
        let bytes = variant(n);
        digests.insert(sha256(&bytes), n);
        std::fs::write(dir.path().join(format!("hello-{n}.wasm")), bytes).unwrap();
    }
    write_config(dir.path(), 0, "");
    let admin = format!("127.0.0.1:{}", free_port());
    let server = MoatServer::start(dir.path(), &["--admin", &admin]);

    // The official Python SDK listens, both ways.
    let python = python_with_sdk(Path::new(env!("CARGO_TARGET_TMPDIR")));
    let mut listener = Command::new(python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("python/list_changed.py"))
        .arg(&server.url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(listener.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready", "{}", server.log());

    let versions = Arc::new(Versions::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut callers = Vec::new();
    for c in 0..CLIENTS {
        let (url, versions, stop) = (server.url.clone(), versions.clone(), stop.clone());
        callers.push(tokio::spawn(async move {
            let client: Client = connect(&url).await;
            let mut seen = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let name = format!("c{c}-{i}");
                let lower = versions.done.load(Ordering::SeqCst);
                let (is_error, text) =
                    call_text(&client, "hello.greet", json!({ "name": name })).await;
                let upper = versions.requested.load(Ordering::SeqCst);
                assert!(!is_error, "call {name} failed: {text}");
                let version = version_of(&text);
                assert!(
                    (lower..=upper).contains(&version),
                    "call {name} ran on v{version}, outside v{lower}..=v{upper} live while it ran"
                );
                assert_eq!(text, format!("v{version}, {name}!"));
                seen.push((name, version));
                i += 1;
            }
            seen
        }));
    }

    let started = Instant::now();
    // Every fifth version also serves the files plugin: the tool list
    // changes then (and back at the next), and only then are clients told.
    let files = format!(
        "[[plugin]]\nname = \"files\"\nsource = {:?}\n",
        plugin_wasm("files").display().to_string()
    );
    for n in 1..=FLIPS {
        write_config(dir.path(), n, if n % 5 == 0 { &files } else { "" });
        versions.requested.store(n, Ordering::SeqCst);
        if n % 2 == 0 {
            let out = reload(dir.path(), &admin);
            let said = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{said}{}", server.log());
            assert!(said.contains(r#""changed":["hello"]"#), "{said}");
        } else {
            server.hangup();
            let deadline = Instant::now() + Duration::from_secs(60);
            while reloads(&admin, "ok") < n {
                assert!(
                    Instant::now() < deadline,
                    "SIGHUP did not reload:\n{}",
                    server.log()
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        versions.done.store(n, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::SeqCst);
    let mut ran = HashMap::new();
    for caller in callers {
        for (name, version) in caller.await.unwrap() {
            ran.insert(name, version);
        }
    }
    let distinct: HashSet<u64> = ran.values().copied().collect();
    println!(
        "{} calls by {CLIENTS} clients over {FLIPS} reloads in {:?}; {} versions answered",
        ran.len(),
        started.elapsed(),
        distinct.len()
    );
    assert!(distinct.len() > (FLIPS / 2) as usize, "{distinct:?}");
    assert!(distinct.contains(&FLIPS));

    // Each call's record names the digest of the version that answered.
    let records = audit_records(&dir.path().join("audit.log"));
    let mut checked = 0;
    for record in &records {
        let Some(name) = record["arguments"]["name"].as_str() else {
            continue;
        };
        let Some(&answered) = ran.get(name) else {
            continue;
        };
        let digest = record["plugin_sha256"].as_str().unwrap();
        assert_eq!(digests.get(digest), Some(&answered), "{record}");
        checked += 1;
    }
    assert_eq!(checked, ran.len(), "every call has its record");

    // The Python SDK heard of the reloads, in both modes.
    drop(listener.stdin.take());
    let heard = lines.next().unwrap().unwrap();
    println!("{heard}");
    assert!(listener.wait().unwrap().success());
    let counts: HashMap<&str, u64> = heard
        .split_whitespace()
        .filter_map(|w| w.split_once('='))
        .filter_map(|(k, v)| v.parse().ok().map(|v| (k, v)))
        .collect();
    assert!(counts["legacy"] >= 1, "{heard}");
    assert!(counts["auto"] >= 1, "{heard}");
    assert!(
        counts["legacy"] <= 8 && counts["auto"] <= 8,
        "told only of list changes: {heard}"
    );
    assert!(heard.contains("tools=files."), "{heard}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_that_fails_keeps_the_running_plugins_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    for n in 0..=1 {
        std::fs::write(dir.path().join(format!("hello-{n}.wasm")), variant(n)).unwrap();
    }
    write_config(dir.path(), 0, "");
    let admin = format!("127.0.0.1:{}", free_port());
    let server = MoatServer::start(dir.path(), &["--admin", &admin]);
    let client = connect(&server.url).await;
    let greet = || call_text(&client, "hello.greet", json!({ "name": "x" }));
    assert_eq!(greet().await, (false, "v0, x!".to_string()));

    // A plugin that is not a component.
    std::fs::write(dir.path().join("broken.wasm"), b"not wasm").unwrap();
    write_config(
        dir.path(),
        1,
        "[[plugin]]\nname = \"broken\"\nsource = \"broken.wasm\"\n",
    );
    let out = reload(dir.path(), &admin);
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("plugin `broken`"), "{said}");
    assert!(said.contains("not a valid WebAssembly component"), "{said}");
    assert!(said.contains("the running plugins"), "{said}");
    assert_eq!(greet().await, (false, "v0, x!".to_string()));

    // A config that does not parse.
    std::fs::write(dir.path().join("moat.toml"), "[[plugin]\n").unwrap();
    let out = reload(dir.path(), &admin);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("moat.toml:1"));

    // A change only a restart applies.
    write_config(dir.path(), 1, "[http]\nrequest_timeout_ms = 5000\n");
    let out = reload(dir.path(), &admin);
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("restart to apply this config: `http` changed"),
        "{said}"
    );
    assert_eq!(greet().await, (false, "v0, x!".to_string()));
    assert_eq!(reloads(&admin, "failed"), 3);
    assert!(
        server.log().contains("the running plugins are kept"),
        "{}",
        server.log()
    );

    // The next good reload applies, and a removed plugin's tools go.
    write_config(dir.path(), 1, "");
    let out = reload(dir.path(), &admin);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(greet().await, (false, "v1, x!".to_string()));
    std::fs::write(
        dir.path().join("moat.toml"),
        format!(
            "[runtime]\ncache_dir = \"cache\"\n[audit]\nfile = \"audit.log\"\n\
             [[plugin]]\nname = \"files\"\nsource = {:?}\n",
            plugin_wasm("files").display().to_string()
        ),
    )
    .unwrap();
    let out = reload(dir.path(), &admin);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains(r#""removed":["hello"]"#), "{said}");
    assert!(said.contains(r#""added":["files"]"#), "{said}");
    let tools = tool_names(&client).await;
    assert!(tools.iter().all(|t| t.starts_with("files.")), "{tools:?}");
    let gone = client
        .call_tool(
            CallToolRequestParams::new("hello.greet")
                .with_arguments(json!({ "name": "x" }).as_object().unwrap().clone()),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(gone.contains("unknown tool `hello.greet`"), "{gone}");
}

/// Counts the tool-list notices a client gets.
#[derive(Clone, Default)]
struct Heard(Arc<AtomicU64>);

impl rmcp::ClientHandler for Heard {
    async fn on_tool_list_changed(
        &self,
        _context: rmcp::service::NotificationContext<rmcp::RoleClient>,
    ) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stdio_server_reloads_too_and_keeps_trusting_its_launcher() {
    use rmcp::ServiceExt;
    let dir = tempfile::tempdir().unwrap();
    for n in 0..=1 {
        std::fs::write(dir.path().join(format!("hello-{n}.wasm")), variant(n)).unwrap();
    }
    // [auth] is for HTTP; over stdio the launching process is trusted,
    // before a reload and after it.
    let auth = "[auth]\nissuer = \"https://auth.example.com\"\nresource = \"https://tools.example.com/mcp\"\n\
                [[auth.rule]]\nscopes = [\"x\"]\ntools = [\"other.*\"]\n";
    write_config(dir.path(), 0, auth);
    let admin = format!("127.0.0.1:{}", free_port());
    let mut command = tokio::process::Command::new(moat_bin());
    command
        .args([
            "serve",
            "--stdio",
            "--config",
            "moat.toml",
            "--admin",
            &admin,
        ])
        .current_dir(dir.path());
    let heard = Heard::default();
    let client = heard
        .clone()
        .serve(rmcp::transport::TokioChildProcess::new(command).unwrap())
        .await
        .unwrap();
    let greet = |client: &rmcp::service::RunningService<rmcp::RoleClient, Heard>| {
        let client = client.peer().clone();
        async move {
            let result = client
                .call_tool(
                    CallToolRequestParams::new("hello.greet")
                        .with_arguments(json!({ "name": "x" }).as_object().unwrap().clone()),
                )
                .await
                .unwrap();
            serde_json::to_value(&result.content).unwrap()[0]["text"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    assert_eq!(greet(&client).await, "v0, x!");

    write_config(dir.path(), 1, auth);
    let out = reload(dir.path(), &admin);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(greet(&client).await, "v1, x!");
    let tools = client.peer().list_all_tools().await.unwrap();
    assert_eq!(tools.len(), 2, "{tools:?}");
    // Same tools, other bytes: nothing to tell. Another tool list: told.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(heard.0.load(Ordering::SeqCst), 0);
    let files = format!(
        "[[plugin]]\nname = \"files\"\nsource = {:?}\n",
        plugin_wasm("files").display().to_string()
    );
    write_config(dir.path(), 1, &format!("{auth}{files}"));
    assert!(reload(dir.path(), &admin).status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while heard.0.load(Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < deadline,
            "no notifications/tools/list_changed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    client.cancel().await.unwrap();
}

#[test]
fn the_admin_address_refuses_other_names_and_reloads_without_the_header() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello-0.wasm"), variant(0)).unwrap();
    write_config(dir.path(), 0, "");
    let admin = format!("127.0.0.1:{}", free_port());
    let _server = MoatServer::start(dir.path(), &["--admin", &admin]);
    let ask = |request: &str| {
        let mut tcp = std::net::TcpStream::connect(&admin).unwrap();
        tcp.write_all(request.as_bytes()).unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut tcp, &mut text).unwrap();
        text
    };
    // A page that rebinds its own name to the address.
    let rebound = ask("GET /metrics HTTP/1.0\r\nHost: attacker.example:9090\r\n\r\n");
    assert!(rebound.starts_with("HTTP/1.0 421"), "{rebound}");
    // A cross-site form post (no custom header).
    let forged = ask(&format!(
        "POST /reload HTTP/1.0\r\nHost: {admin}\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n"
    ));
    assert!(forged.starts_with("HTTP/1.0 403"), "{forged}");
    assert!(forged.contains("moat-reload"), "{forged}");
    assert_eq!(reloads(&admin, "ok") + reloads(&admin, "failed"), 0);
    // moat reload sends it, and a name of localhost is fine.
    assert!(reload(dir.path(), &admin).status.success());
    let port = admin.rsplit_once(':').unwrap().1;
    let local = ask(&format!(
        "GET /metrics HTTP/1.0\r\nHost: localhost:{port}\r\n\r\n"
    ));
    assert!(
        local.contains("moat_reloads_total{outcome=\"ok\"} 1"),
        "{local}"
    );
}
