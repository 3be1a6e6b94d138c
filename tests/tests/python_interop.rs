//! Interop with software none of us wrote: the official MCP Python SDK
//! (pinned in tests/python/requirements.txt, installed into a venv under
//! target/ on first use by `moat_tests::external`) drives the real `moat`
//! binary over stdio and Streamable HTTP, stateful and stateless, with both
//! the initialize handshake and 2026-07-28 discovery.

use moat_tests::external::python_with_sdk;
use moat_tests::{Sandbox, moat_bin};
use std::path::Path;
use std::process::Command;

fn config(extra: &str) -> tempfile::TempDir {
    Sandbox::builder()
        .hello_and_files()
        .plugin("testbed", "timeout_ms = 300")
        .toml(extra)
        .write()
}

#[test]
fn the_official_python_sdk_lists_and_calls_tools_over_every_transport() {
    let python = python_with_sdk(Path::new(env!("CARGO_TARGET_TMPDIR")));
    let stateful = config("");
    let stateless = config("[http]\nstateless = true");
    let out = Command::new(python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("python/interop.py"))
        .arg("--moat")
        .arg(moat_bin())
        .arg("--config")
        .arg(stateful.path().join("moat.toml"))
        .arg("--stateless-config")
        .arg(stateless.path().join("moat.toml"))
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for scenario in ["stdio", "http ", "http-stateless"] {
        for (mode, version) in [("legacy", "2025-11-25"), ("auto", "2026-07-28")] {
            let line = stdout
                .lines()
                .find(|l| l.contains(scenario) && l.contains(&format!("mode={mode}")))
                .unwrap_or_else(|| panic!("no result for {scenario} {mode}:\n{stdout}"));
            assert!(line.starts_with("ok") && line.contains(version), "{line}");
        }
    }
}
