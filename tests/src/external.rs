//! Software none of us wrote, installed on first use under the target
//! folder and reinstalled when its pinned versions change: the official
//! MCP Python SDK in a venv (tests/python/requirements.txt), and a Node.js
//! OpenID Provider, the MCP TypeScript SDK and the MCP conformance suite
//! with the Node.js 22 it runs on (tests/node/package-lock.json).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// Held while something is checked and installed: the tests that use the
/// same venv or packages run at once in one binary, and one of them must
/// not remove what another is installing or running.
static INSTALLING: Mutex<()> = Mutex::new(());

fn here(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Whether `stamp` records `pins`, so what it stamps is up to date.
fn current(stamp: &Path, pins: &str) -> bool {
    std::fs::read_to_string(stamp).ok().as_deref() == Some(pins)
}

/// The venv's python, with the pinned SDK; made under `tmp` (a test's
/// `CARGO_TARGET_TMPDIR`).
pub fn python_with_sdk(tmp: &Path) -> PathBuf {
    let _installing = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    let requirements = std::fs::read_to_string(here("python/requirements.txt")).unwrap();
    let venv = tmp.join("py-venv");
    let python = venv.join("bin/python");
    let stamp = venv.join("moat-requirements.txt");
    if python.is_file() && current(&stamp, &requirements) {
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
        .arg(here("python/requirements.txt"))
        .status()
        .unwrap();
    assert!(
        installed.success(),
        "pip could not install tests/python/requirements.txt"
    );
    std::fs::write(&stamp, requirements).unwrap();
    python
}

/// Runs tests/python/`script` with the SDK's venv (made under `tmp`) and
/// `configure`'s arguments; returns its stdout, or panics with both
/// streams and `context()` when it fails.
pub fn run_python(
    tmp: &Path,
    script: &str,
    configure: impl FnOnce(&mut Command),
    context: impl FnOnce() -> String,
) -> String {
    let mut command = Command::new(python_with_sdk(tmp));
    command.arg(here(&format!("python/{script}")));
    configure(&mut command);
    let out = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{stdout}");
    assert!(
        out.status.success(),
        "{script} failed:\n{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        context()
    );
    stdout
}

/// Asserts that an interop script's `stdout` has an `ok` line naming the
/// negotiated `protocol` for every transport `scenario` and SDK mode.
pub fn assert_every_scenario(stdout: &str) {
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

/// A folder holding tests/node (the provider and client scripts) with
/// their locked npm packages installed by `npm ci`; made under `tmp`.
pub fn node_packages(tmp: &Path) -> PathBuf {
    let _installing = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    let lock = std::fs::read_to_string(here("node/package-lock.json")).unwrap();
    let dir = tmp.join("node-packages");
    let stamp = dir.join("moat-package-lock.json");
    // The scripts are copied every time: ES modules resolve packages next
    // to the script, so they must live beside node_modules.
    let copy = |name: &str| std::fs::copy(here(&format!("node/{name}")), dir.join(name)).unwrap();
    if !current(&stamp, &lock) {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        copy("package.json");
        copy("package-lock.json");
        let installed = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .status();
        assert!(
            matches!(installed, Ok(s) if s.success()),
            "`npm ci` of tests/node failed: install Node.js 20 or newer with npm"
        );
        std::fs::write(&stamp, lock).unwrap();
    }
    for script in ["provider.mjs", "confirm.mjs"] {
        copy(script);
    }
    dir
}
