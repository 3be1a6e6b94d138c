//! Interop with software none of us wrote: the official MCP Python SDK
//! (pinned in tests/python/requirements.txt, installed into a venv under
//! target/ on first use) drives the real `moat` binary over stdio and
//! Streamable HTTP, stateful and stateless, with both the initialize
//! handshake and 2026-07-28 discovery.

use moat_tests::{Sandbox, moat_bin};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A venv with the pinned SDK; rebuilt when requirements.txt changes.
fn python_with_sdk() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("python");
    let requirements = std::fs::read_to_string(here.join("requirements.txt")).unwrap();
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("py-venv");
    let python = venv.join("bin/python");
    let stamp = venv.join("moat-requirements.txt");
    if python.is_file() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(&requirements) {
        return python;
    }
    let _ = std::fs::remove_dir_all(&venv);
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status();
    assert!(
        matches!(made, Ok(s) if s.success()),
        "creating a Python venv failed: install Python 3.10+ with venv (Debian: python3-venv)"
    );
    let installed = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(here.join("requirements.txt"))
        .status()
        .unwrap();
    assert!(
        installed.success(),
        "pip could not install tests/python/requirements.txt"
    );
    std::fs::write(&stamp, requirements).unwrap();
    python
}

fn config(extra: &str) -> tempfile::TempDir {
    Sandbox::builder()
        .file("demo/a.txt", "alpha")
        .plugin("hello", "")
        .plugin("files", r#"dirs = [{ host = "demo", guest = "/data" }]"#)
        .plugin("testbed", "timeout_ms = 300")
        .toml(extra)
        .write()
}

#[test]
fn the_official_python_sdk_lists_and_calls_tools_over_every_transport() {
    let python = python_with_sdk();
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
