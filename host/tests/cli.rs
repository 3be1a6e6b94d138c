//! The `moat` binary's own contract, for what needs no plugin: usage,
//! config errors and refusals to start. (Plugin behaviour is tested end to
//! end in `tests/`.) Having an integration test here also makes
//! `cargo test --workspace` build the binary that `tests/` drives.

use std::process::{Command, Output};

fn moat(args: &[&str], dir: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_moat"))
        .args(args)
        .current_dir(dir)
        .env("MOAT_CACHE_DIR", dir.join("cache"))
        .env_remove("RUST_LOG")
        .output()
        .expect("running moat")
}

#[test]
fn version_and_help_work() {
    let dir = tempfile::tempdir().unwrap();
    let version = moat(&["--version"], dir.path());
    assert!(version.status.success());
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("moat "));
    let help = moat(&["--help"], dir.path());
    let text = String::from_utf8_lossy(&help.stdout);
    for command in ["serve", "check", "inspect", "call"] {
        assert!(text.contains(command), "{text}");
    }
}

#[test]
fn a_bad_config_exits_two_naming_file_line_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.wasm"), b"").unwrap();
    let cases = [
        (
            "[[plugin]]\nname = \"x\"\nsource = \"p.wasm\"\n[plugin.grants]\nfule = 5\n",
            "bad.toml:5:1",
            "unknown field `fule`",
        ),
        (
            "[[plugin]]\nname = \"x\"\nsource = \"p.wasm\"\n[plugin.grants]\nallow_hosts = [\"ftp://x\"]\n",
            "bad.toml:5:16",
            "scheme `ftp`",
        ),
        (
            "[[plugin]]\nname = \"x\"\nsource = \"missing.wasm\"\n",
            "bad.toml:3:10",
            "is not a file",
        ),
    ];
    for (text, place, message) in cases {
        std::fs::write(dir.path().join("bad.toml"), text).unwrap();
        let out = moat(&["check", "--config", "bad.toml"], dir.path());
        assert_eq!(out.status.code(), Some(2), "{text}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(place) && stderr.contains(message) && stderr.contains("fix:"),
            "{stderr}"
        );
    }
}

#[test]
fn serve_needs_a_transport_and_a_safe_host_list() {
    let dir = tempfile::tempdir().unwrap();
    let out = moat(&["serve"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--stdio"));
    // Beyond loopback without [auth], Moat needs to be told it is intended...
    let out = moat(&["serve", "--http", "0.0.0.0:0"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--insecure-no-auth"));
    // ...and DNS-rebinding protection needs the real host names.
    let out = moat(
        &["serve", "--http", "0.0.0.0:0", "--insecure-no-auth"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("allowed_hosts"));
}
