//! Interop with software none of us wrote: the official MCP Python SDK
//! (pinned in tests/python/requirements.txt, installed into a venv under
//! target/ on first use by `moat_tests::external`) drives the real `moat`
//! binary over stdio and Streamable HTTP, stateful and stateless, with both
//! the initialize handshake and 2026-07-28 discovery.

use moat_tests::external::{assert_every_scenario, run_python};
use moat_tests::{Sandbox, moat_bin};
use std::path::Path;

fn config(extra: &str) -> tempfile::TempDir {
    Sandbox::builder()
        .hello_and_files()
        .plugin("testbed", "timeout_ms = 300")
        .toml(extra)
        .write()
}

#[test]
fn the_official_python_sdk_lists_and_calls_tools_over_every_transport() {
    let stateful = config("");
    let stateless = config("[http]\nstateless = true");
    let stdout = run_python(
        Path::new(env!("CARGO_TARGET_TMPDIR")),
        "interop.py",
        |command| {
            command
                .arg("--moat")
                .arg(moat_bin())
                .arg("--config")
                .arg(stateful.path().join("moat.toml"))
                .arg("--stateless-config")
                .arg(stateless.path().join("moat.toml"))
                .env("RUST_LOG", "warn");
        },
        String::new,
    );
    assert_every_scenario(&stdout);
}
