//! Plugins in JavaScript and Python, built from their sources in
//! `plugins/js` and `plugins/python` by the toolchains their authors use:
//! componentize-js (npm, pinned by plugins/js/package-lock.json) and
//! componentize-py (PyPI, pinned by plugins/python/requirements.txt),
//! installed on first use under the target folder. A component is built
//! again only when its sources, its WIT or its toolchain change.

use crate::external::{current, here_repo, install_lock, npm_installed, venv};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A folder with `node_modules` holding the pinned componentize-js.
pub fn js_toolchain(tmp: &Path) -> PathBuf {
    let _installing = install_lock();
    npm_installed(tmp, "js-toolchain", &here_repo("plugins/js"))
}

/// The `componentize-py` of a venv holding the pinned version.
pub fn python_toolchain(tmp: &Path) -> PathBuf {
    let requirements = here_repo("plugins/python/requirements.txt");
    venv(tmp, "componentize-py-venv", &requirements).join("bin/componentize-py")
}

/// The JavaScript component of `plugins/js/<name>` (`plugin.js` and its
/// `wit` folder, world `world`).
pub fn js_component(tmp: &Path, name: &str, world: &str) -> PathBuf {
    let source = here_repo(&format!("plugins/js/{name}"));
    let toolchain = js_toolchain(tmp);
    build_once(
        tmp,
        "js",
        name,
        &[&source, &toolchain.join("moat-package-lock.json")],
        |out| {
            let mut command = Command::new(toolchain.join("node_modules/.bin/componentize-js"));
            command
                .args(["--wit", "wit", "--world-name", world, "-o"])
                .arg(out)
                .arg("plugin.js")
                .current_dir(&source);
            command
        },
    )
}

/// The Python component of `plugins/python/<name>` (`app.py`), built
/// against `wit` (relative to the repository) and its world `world`.
pub fn python_component(tmp: &Path, name: &str, wit: &str, world: &str) -> PathBuf {
    let source = here_repo(&format!("plugins/python/{name}"));
    let wit = here_repo(wit);
    let tool = python_toolchain(tmp);
    let pins = tool
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("moat-requirements.txt");
    build_once(tmp, "python", name, &[&source, &wit, &pins], |out| {
        let mut command = Command::new(&tool);
        command
            .arg("-d")
            .arg(&wit)
            .args(["-w", world, "componentize", "app", "-o"])
            .arg(out)
            .current_dir(&source)
            // Nothing is written into the source folder.
            .env("PYTHONDONTWRITEBYTECODE", "1");
        command
    })
}

/// `tmp/<language>-components/<name>.wasm`, built by `build` unless it
/// was built already from the same `inputs` (files, or folders read
/// whole, symbolic links followed).
fn build_once(
    tmp: &Path,
    language: &str,
    name: &str,
    inputs: &[&Path],
    build: impl FnOnce(&Path) -> Command,
) -> PathBuf {
    let _building = install_lock();
    let dir = tmp.join(format!("{language}-components"));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join(format!("{name}.wasm"));
    let stamp = dir.join(format!("{name}.sources"));
    let mut digest = Sha256::new();
    for input in inputs {
        hash(input, &mut digest);
    }
    let sources = hex::encode(digest.finalize());
    if out.is_file() && current(&stamp, &sources) {
        return out;
    }
    // A failed build leaves no stamp that says it is current.
    let _ = std::fs::remove_file(&stamp);
    let mut command = build(&out);
    let built = command.output().unwrap();
    assert!(
        built.status.success() && out.is_file(),
        "building the {language} plugin `{name}` failed:\n{}{}",
        String::from_utf8_lossy(&built.stdout),
        String::from_utf8_lossy(&built.stderr)
    );
    std::fs::write(&stamp, sources).unwrap();
    out
}

fn hash(path: &Path, digest: &mut Sha256) {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        // componentize-py leaves its bytecode beside the sources.
        entries.retain(|e| e.file_name().is_some_and(|n| n != "__pycache__"));
        for entry in entries {
            digest.update(entry.file_name().unwrap().as_encoded_bytes());
            hash(&entry, digest);
        }
    } else {
        digest.update(std::fs::read(path).unwrap());
    }
}

/// `moat new NAME --lang LANG` in `dir`, then the project's own test and
/// its build, as the README it writes says (the toolchains from the cache
/// under `tmp`); the project's folder and its component. `moat` is the
/// binary to run.
pub fn new_project(
    moat: &Path,
    tmp: &Path,
    dir: &Path,
    name: &str,
    lang: &str,
) -> (PathBuf, PathBuf) {
    let made = Command::new(moat)
        .args(["new", name, "--lang", lang])
        .current_dir(dir)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&made.stdout);
    assert!(
        made.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&made.stderr)
    );
    assert!(
        said.contains(&format!("moat call -c moat.toml {name} count")),
        "{said}"
    );
    let project = dir.join(name);
    let run = |argv: &[&str]| {
        // As a user runs it, not as a step of this test's cargo build.
        let out = Command::new(argv[0])
            .args(&argv[1..])
            .current_dir(&project)
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("CARGO_BUILD_TARGET")
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{argv:?} failed in a new {lang} project:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let wasm = match lang {
        "rust" => {
            // The project's own target folder would build its
            // dependencies again every time; one under `tmp` is reused.
            let target = tmp.join("new-rust-target");
            std::fs::create_dir_all(&target).unwrap();
            std::os::unix::fs::symlink(&target, project.join("target")).unwrap();
            run(&["cargo", "test", "--quiet"]);
            run(&["cargo", "build", "--release", "--target", "wasm32-wasip2"]);
            format!(
                "target/wasm32-wasip2/release/{}.wasm",
                name.replace('-', "_")
            )
        }
        "js" => {
            // `npm install` of the pinned componentize-js, from the cache.
            std::os::unix::fs::symlink(
                js_toolchain(tmp).join("node_modules"),
                project.join("node_modules"),
            )
            .unwrap();
            run(&["npm", "test"]);
            run(&["npm", "run", "build"]);
            format!("{name}.wasm")
        }
        _ => {
            let tool = python_toolchain(tmp);
            run(&["python3", "-m", "unittest"]);
            let wasm = format!("{name}.wasm");
            run(&[
                tool.to_str().unwrap(),
                "-d",
                "wit",
                "-w",
                "tool-plugin",
                "componentize",
                "app",
                "-o",
                &wasm,
            ]);
            wasm
        }
    };
    let wasm = project.join(wasm);
    assert!(wasm.is_file(), "{} was not built", wasm.display());
    (project, wasm)
}
