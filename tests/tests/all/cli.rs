//! The `moat` binary: `check`, `inspect` and `call`, their output and their
//! exit codes.

use moat_tests::{moat_bin, plugin_wasm};
use std::process::{Command, Output};

fn moat(args: &[&str], dir: &std::path::Path) -> Output {
    Command::new(moat_bin())
        .args(args)
        .current_dir(dir)
        .env("MOAT_CACHE_DIR", dir.join("cache"))
        .env_remove("RUST_LOG")
        .output()
        .expect("running moat")
}

fn stdout_json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON value ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn write_config(dir: &std::path::Path) {
    std::fs::create_dir_all(dir.join("demo")).unwrap();
    std::fs::write(dir.join("demo/a.txt"), "alpha").unwrap();
    let text = format!(
        r#"[[plugin]]
name = "files"
source = {files:?}
[plugin.grants]
dirs = [{{ host = "demo", guest = "/data", mode = "ro" }}]

[[plugin]]
name = "testbed"
source = {testbed:?}
[plugin.grants]
timeout_ms = 500
max_output_bytes = 100
allow_hosts = ["https://api.example.com"]
env = {{ API_TOKEN = {{ from_file = "token.txt" }} }}
"#,
        files = plugin_wasm("files").display().to_string(),
        testbed = plugin_wasm("testbed").display().to_string(),
    );
    std::fs::write(dir.join("moat.toml"), text).unwrap();
    std::fs::write(dir.join("token.txt"), "sk-CHECK-NEVER-PRINTS\n").unwrap();
}

#[test]
fn call_prints_the_result_as_json_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path());
    let out = moat(
        &[
            "call",
            "-c",
            "moat.toml",
            "files",
            "read",
            r#"{"path":"a.txt"}"#,
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result = stdout_json(&out);
    assert_eq!(result["isError"], false);
    assert_eq!(result["content"][0]["text"], "alpha");
}

#[test]
fn call_exits_one_with_a_named_reason_when_the_result_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path());
    for (tool, args, kind) in [
        ("sleep", r#"{"ms":10000}"#, Some("timed_out")),
        ("big_output", r#"{"bytes":101}"#, Some("output_too_large")),
        ("fail", r#"{"text":"no"}"#, None),
    ] {
        let out = moat(
            &["call", "-c", "moat.toml", "testbed", tool, args],
            dir.path(),
        );
        assert_eq!(
            out.status.code(),
            Some(1),
            "{tool}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let result = stdout_json(&out);
        assert_eq!(result["isError"], true, "{tool}");
        if let Some(kind) = kind {
            assert_eq!(result["_meta"]["moat/error"]["kind"], kind, "{tool}");
        }
    }
}

#[test]
fn call_checks_arguments_against_the_schema_as_a_client_would_see_it() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path());
    // `path` must be a string: the plugin never runs, and the answer is
    // the JSON-RPC error a client gets (-32602 naming the field).
    let out = moat(
        &["call", "-c", "moat.toml", "files", "read", r#"{"path":7}"#],
        dir.path(),
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let error = &stdout_json(&out)["error"];
    assert_eq!(error["code"], -32602, "{error}");
    assert_eq!(error["data"]["field"], "/path", "{error}");
    assert_eq!(error["data"]["tool"], "files.read", "{error}");
}

#[test]
fn plugin_output_never_reaches_stdout() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path());
    let out = moat(
        &[
            "call",
            "-c",
            "moat.toml",
            "testbed",
            "print",
            r#"{"text":"LEAK-MARKER"}"#,
        ],
        dir.path(),
    );
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stdout.contains("LEAK-MARKER"),
        "plugin output reached stdout: {stdout}"
    );
    assert_eq!(stdout_json(&out)["content"][0]["text"], "printed");
    // It is in the log, on stderr.
    assert!(String::from_utf8_lossy(&out.stderr).contains("LEAK-MARKER"));
}

#[test]
fn call_with_audit_leaves_the_records_a_served_call_would() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path());
    let config = dir.path().join("moat.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("[audit]\nfile = \"audit.jsonl\"\n{text}")).unwrap();
    let ok = moat(
        &[
            "call",
            "-c",
            "moat.toml",
            "--audit",
            "files",
            "read",
            r#"{"path":"a.txt"}"#,
        ],
        dir.path(),
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let refused = moat(
        &[
            "call",
            "-c",
            "moat.toml",
            "--audit",
            "files",
            "read",
            r#"{"path":7}"#,
        ],
        dir.path(),
    );
    assert_eq!(refused.status.code(), Some(2));
    let records: Vec<serde_json::Value> = std::fs::read_to_string(dir.path().join("audit.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = records
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["ok", "invalid_arguments"]);
    assert_eq!(records[1]["tool"], "files.read");
}

#[test]
fn plugin_text_cannot_forge_a_line_of_the_host_log() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path());
    let out = moat(
        &[
            "call",
            "-c",
            "moat.toml",
            "testbed",
            "print",
            r#"{"text":"ok\nFORGED moat: all is well\r\u001b[2K"}"#,
        ],
        dir.path(),
    );
    assert!(out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    // The log import, stdout and stderr each left a line, escaped.
    assert!(
        log.contains(r"ok\nFORGED moat: all is well\r\u{1b}[2K"),
        "{log}"
    );
    assert!(!log.contains('\u{1b}'), "{log}");
    assert!(!log.contains('\r'), "{log}");
    for line in log.lines() {
        assert!(!line.starts_with("FORGED"), "a forged line: {log}");
    }
}

#[test]
fn call_runs_a_bare_wasm_file_with_command_line_grants() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("d")).unwrap();
    std::fs::write(dir.path().join("d/x.txt"), "from a flag").unwrap();
    let files = plugin_wasm("files").display().to_string();
    let out = moat(
        &[
            "call",
            &files,
            "read",
            r#"{"path":"x.txt"}"#,
            "--dir",
            "d:/data",
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout_json(&out)["content"][0]["text"], "from a flag");
    let hello = plugin_wasm("hello").display().to_string();
    let out = moat(
        &[
            "call",
            &hello,
            "greet",
            r#"{"name":"you"}"#,
            "--env",
            "GREETING=Howdy",
        ],
        dir.path(),
    );
    assert_eq!(stdout_json(&out)["content"][0]["text"], "Howdy, you!");
}

#[test]
fn usage_errors_exit_two() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path());
    let out = moat(&["call", "-c", "moat.toml", "files"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let out = moat(
        &["call", "-c", "moat.toml", "files", "read", "not json"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not JSON"));
}

#[test]
fn check_lists_tools_and_grants() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path());
    let out = moat(&["check", "--config", "moat.toml"], dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    for expected in [
        "files.read",
        "files.search",
        "testbed.spin",
        "-> /data (Ro)",
        "timeout 500 ms",
        "network  https://api.example.com (16 requests per call",
        "env      API_TOKEN (from file ",
        "ok: 1 endpoint(s), 2 plugin(s)",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    assert!(!stdout.contains("sk-CHECK-NEVER-PRINTS"), "{stdout}");
}

#[test]
fn inspect_shows_tools_schemas_and_imports() {
    let dir = tempfile::tempdir().unwrap();
    let files = plugin_wasm("files").display().to_string();
    let out = moat(&["inspect", "--json", &files], dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info = stdout_json(&out);
    let tools: Vec<&str> = info["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(tools, ["list", "read", "search", "select"]);
    assert_eq!(info["tools"][1]["inputSchema"]["required"][0], "path");
    let imports: Vec<&str> = info["imports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap())
        .collect();
    assert!(
        imports
            .iter()
            .any(|i| i.starts_with("wasi:filesystem/preopens")),
        "{imports:?}"
    );
}

#[test]
fn without_a_config_the_embedded_default_serves_hello_and_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = moat(&["check"], dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    for expected in [
        "hello.greet",
        "hello.echo",
        "files.read",
        "-> /data (Ro)",
        "embedded default",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    let out = moat(
        &[
            "call",
            "files",
            "search",
            r#"{"query":"fresh WebAssembly instance"}"#,
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout_json(&out)["structuredContent"]["matches"][0]["path"],
        "notes.md"
    );
}

#[test]
fn inspect_and_check_show_resources_prompts_and_client_grants() {
    let dir = tempfile::tempdir().unwrap();
    let conformance = plugin_wasm("conformance").display().to_string();
    let out = moat(&["inspect", &conformance], dir.path());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for expected in [
        "resources\n",
        "  test://static-text  A fixed text",
        "  test://template/{id}/data  Data for any ID",
        "prompts\n",
        "  test_prompt_with_arguments(arg1, arg2)  A prompt with two arguments.",
        "moat:plugin/client@0.2.0",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    let info = stdout_json(&moat(&["inspect", "--json", &conformance], dir.path()));
    assert_eq!(
        info["resourceTemplates"][0]["uriTemplate"],
        "test://template/{id}/data"
    );
    assert_eq!(info["prompts"][1]["arguments"][0]["required"], true);

    std::fs::write(
        dir.path().join("moat.toml"),
        format!(
            "[[plugin]]\nname = \"c\"\nsource = {conformance:?}\n[plugin.grants]\n\
             sampling = {{ max_tokens = 300 }}\nelicitation = true\n"
        ),
    )
    .unwrap();
    let out = moat(&["check", "--config", "moat.toml"], dir.path());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for expected in [
        "  template test://template/{id}/data",
        "  prompt   c.test_simple_prompt",
        "    sampling 300 tokens per call",
        "    elicitation allowed",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    // `moat call` has no client: the plugin is told so, by its grant.
    let out = moat(
        &[
            "call",
            "-c",
            "moat.toml",
            "c",
            "test_sampling",
            r#"{"prompt":"x"}"#,
        ],
        dir.path(),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("unsupported: there is no client to ask"),
        "{text}"
    );
}
