//! Software none of us wrote, installed on first use under the target
//! folder and reinstalled when its pinned versions change: the official
//! MCP Python SDK in a venv (tests/python/requirements.txt), and a Node.js
//! OpenID Provider, the MCP TypeScript SDK and the MCP conformance suite
//! with the Node.js 22 it runs on (tests/node/package-lock.json).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

/// Held while something is checked and installed: the tests that use the
/// same venv or packages run at once in one binary, and one of them must
/// not remove what another is installing or running.
static INSTALLING: Mutex<()> = Mutex::new(());

/// Holds [`INSTALLING`] until dropped.
pub(crate) fn install_lock() -> MutexGuard<'static, ()> {
    INSTALLING.lock().unwrap_or_else(|e| e.into_inner())
}

fn here(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// `relative` to the repository's root.
pub(crate) fn here_repo(relative: &str) -> PathBuf {
    here("..").join(relative)
}

/// Whether `stamp` records `pins`, so what it stamps is up to date.
pub(crate) fn current(stamp: &Path, pins: &str) -> bool {
    std::fs::read_to_string(stamp).ok().as_deref() == Some(pins)
}

/// The venv's python, with the pinned SDK; made under `tmp` (a test's
/// `CARGO_TARGET_TMPDIR`).
pub fn python_with_sdk(tmp: &Path) -> PathBuf {
    venv(tmp, "py-venv", &here("python/requirements.txt")).join("bin/python")
}

/// The venv `tmp/name` with the packages pinned in `requirements`,
/// made again when they change.
pub(crate) fn venv(tmp: &Path, name: &str, requirements: &Path) -> PathBuf {
    let _installing = install_lock();
    let pins = std::fs::read_to_string(requirements).unwrap();
    let venv = tmp.join(name);
    let python = venv.join("bin/python");
    let stamp = venv.join("moat-requirements.txt");
    if python.is_file() && current(&stamp, &pins) {
        return venv;
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
        .arg(requirements)
        .status()
        .unwrap();
    assert!(
        installed.success(),
        "pip could not install {}",
        requirements.display()
    );
    std::fs::write(&stamp, pins).unwrap();
    venv
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
    let _installing = install_lock();
    let dir = npm_installed(tmp, "node-packages", &here("node"));
    // The scripts are copied every time: ES modules resolve packages next
    // to the script, so they must live beside node_modules.
    for script in ["provider.mjs", "confirm.mjs", "upstream.mjs"] {
        std::fs::copy(here(&format!("node/{script}")), dir.join(script)).unwrap();
    }
    dir
}

/// A script of tests/node running beside a test, talking by lines on its
/// stdin and stdout; killed on drop.
pub struct NodeScript {
    child: std::process::Child,
    said: Option<std::io::Lines<std::io::BufReader<std::process::ChildStdout>>>,
}

impl NodeScript {
    /// Runs `node SCRIPT ARGS` among the locked packages under `tmp`.
    pub fn start(tmp: &Path, script: &str, args: &[&str]) -> NodeScript {
        use std::io::BufRead;
        use std::process::Stdio;
        let mut child = Command::new("node")
            .arg(script)
            .args(args)
            .current_dir(node_packages(tmp))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting node: install Node.js 20 or newer");
        let said = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        NodeScript {
            child,
            said: Some(said),
        }
    }

    /// The rest of the next line it prints, which must start with `prefix`.
    pub fn said(&mut self, prefix: &str) -> String {
        let lines = self.said.as_mut().expect("still reading");
        let line = lines.next().and_then(Result::ok).unwrap_or_default();
        line.strip_prefix(prefix)
            .unwrap_or_else(|| panic!("expected {prefix:?} from the script, got {line:?}"))
            .to_string()
    }

    /// Writes `line` to its stdin.
    pub fn tell(&mut self, line: &str) {
        use std::io::Write;
        writeln!(self.child.stdin.as_mut().unwrap(), "{line}").unwrap();
    }

    /// Reads whatever it prints from now on in the background: a script
    /// that prints as it works (oidc-provider does) ends on a closed pipe.
    pub fn drain(&mut self) {
        if let Some(said) = self.said.take() {
            std::thread::spawn(move || for _ in said {});
        }
    }
}

impl Drop for NodeScript {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `tmp/name` with the packages locked in `package`'s package.json and
/// package-lock.json installed by `npm ci`, made again when the lock
/// changes. The caller holds [`install_lock`].
pub(crate) fn npm_installed(tmp: &Path, name: &str, package: &Path) -> PathBuf {
    let lock = std::fs::read_to_string(package.join("package-lock.json")).unwrap();
    let dir = tmp.join(name);
    let stamp = dir.join("moat-package-lock.json");
    if !current(&stamp, &lock) {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for file in ["package.json", "package-lock.json"] {
            std::fs::copy(package.join(file), dir.join(file)).unwrap();
        }
        let installed = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .status();
        assert!(
            matches!(installed, Ok(s) if s.success()),
            "`npm ci` of {} failed: install Node.js 20 or newer with npm",
            package.display()
        );
        std::fs::write(&stamp, lock).unwrap();
    }
    dir
}
