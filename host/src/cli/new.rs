//! `moat new NAME [--lang rust|js|python]`: a ready plugin project in
//! `./NAME`: one tool, its test, the build command and a `moat.toml` to try
//! it with `moat call`. The templates are in `host/templates`; the WIT
//! files are this build's own.

use clap::ValueEnum;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The language of a new plugin.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Lang {
    /// Rust with the moat-plugin SDK (cargo, wasm32-wasip2).
    Rust,
    /// JavaScript with componentize-js (npm).
    Js,
    /// Python with componentize-py (PyPI).
    Python,
}

/// A template's files: where each goes, and its text.
type Files = &'static [(&'static str, &'static str)];

macro_rules! template {
    ($($path:literal => $file:literal),* $(,)?) => {
        &[$(($path, include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/", $file)))),*]
    };
}

const RUST: Files = template![
    "Cargo.toml" => "templates/rust/Cargo.toml",
    "src/lib.rs" => "templates/rust/src/lib.rs",
    "moat.toml" => "templates/rust/moat.toml",
    "README.md" => "templates/rust/README.md",
    ".gitignore" => "templates/rust/gitignore",
];

const JS: Files = template![
    "package.json" => "templates/js/package.json",
    "plugin.js" => "templates/js/plugin.js",
    "count.js" => "templates/js/count.js",
    "count.test.js" => "templates/js/count.test.js",
    "wit/world.wit" => "templates/js/wit/world.wit",
    "wit/deps/plugin.wit" => "../wit/plugin.wit",
    "wit/deps/filesystem.wit" => "../wit/wasi/filesystem.wit",
    "wit/deps/io.wit" => "../wit/wasi/io.wit",
    "wit/deps/clocks.wit" => "../wit/wasi/clocks.wit",
    "moat.toml" => "templates/js/moat.toml",
    "README.md" => "templates/js/README.md",
    ".gitignore" => "templates/js/gitignore",
];

const PYTHON: Files = template![
    "app.py" => "templates/python/app.py",
    "count.py" => "templates/python/count.py",
    "test_count.py" => "templates/python/test_count.py",
    "requirements.txt" => "templates/python/requirements.txt",
    "wit/plugin.wit" => "../wit/plugin.wit",
    "moat.toml" => "templates/python/moat.toml",
    "README.md" => "templates/python/README.md",
    ".gitignore" => "templates/python/gitignore",
];

/// The SDK of the checkout this binary was built from, if it is still
/// there (until the SDK is published, a Rust plugin depends on it by path).
fn built_from_sdk() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/sdk")
}

/// Writes the project `name` in `lang` into `./name`.
pub fn new(name: &str, lang: Lang, sdk: Option<&Path>) -> anyhow::Result<ExitCode> {
    if let Err(why) = crate::config::check_name(name) {
        anyhow::bail!(
            "the plugin name `{name}` {why}: use 1 to 64 characters from a-z, 0-9, `_` and `-`, starting with a letter (it prefixes the plugin's tool names)"
        );
    }
    let dir = PathBuf::from(name);
    let (files, sdk) = match lang {
        Lang::Rust => (RUST, rust_sdk(sdk)?),
        Lang::Js => (JS, String::new()),
        Lang::Python => (PYTHON, String::new()),
    };
    // Made here, or refused if anything (even a dangling link) is there:
    // nothing of someone else's is written over.
    if let Err(e) = std::fs::create_dir(&dir) {
        anyhow::bail!(
            "{}: {}: nothing was written; choose another name or remove it",
            dir.display(),
            match e.kind() {
                std::io::ErrorKind::AlreadyExists => "exists already".to_string(),
                _ => e.to_string(),
            }
        );
    }
    let render = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{crate}}", &name.replace('-', "_"))
            .replace("{{sdk}}", &sdk)
    };
    for (path, text) in files {
        let at = dir.join(path);
        std::fs::create_dir_all(at.parent().expect("a file in the project"))?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&at)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", at.display()))?;
        std::io::Write::write_all(&mut file, render(text).as_bytes())?;
    }
    let steps = match lang {
        Lang::Rust => "cargo test\n  cargo build --release --target wasm32-wasip2   # once: rustup target add wasm32-wasip2".to_string(),
        Lang::Js => "npm install\n  npm test\n  npm run build".to_string(),
        Lang::Python => format!(
            "python3 -m venv .venv && .venv/bin/pip install -r requirements.txt\n  python3 -m unittest\n  .venv/bin/componentize-py -d wit -w tool-plugin componentize app -o {name}.wasm"
        ),
    };
    println!(
        "Created {name}/: a {lang:?} plugin with one tool, `count`.\n\n  cd {name}\n  {steps}\n  moat call -c moat.toml {name} count '{{\"text\": \"hello world\"}}'"
    );
    Ok(ExitCode::SUCCESS)
}

/// The SDK path to write into Cargo.toml (a TOML string's body): `sdk`, or
/// the checkout this binary came from.
fn rust_sdk(sdk: Option<&Path>) -> anyhow::Result<String> {
    let given = sdk.is_some();
    let sdk = sdk.map(Path::to_path_buf).unwrap_or_else(built_from_sdk);
    let manifest = std::fs::read_to_string(sdk.join("Cargo.toml")).unwrap_or_default();
    if !manifest.contains("name = \"moat-plugin\"") {
        anyhow::bail!(
            "{} is not Moat's plugin SDK{}: pass --sdk PATH, the plugins/sdk folder of a Moat checkout",
            sdk.display(),
            if given {
                ""
            } else {
                " (the checkout this moat was built from is gone)"
            }
        );
    }
    let sdk = sdk.canonicalize()?;
    let text = sdk
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("{} is not UTF-8", sdk.display()))?;
    Ok(text.replace('\\', "\\\\").replace('"', "\\\""))
}
