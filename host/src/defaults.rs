//! The embedded default configuration: the `hello` and `files` example
//! plugins, `files` with read-only access to a small demo folder. Used when
//! no `--config` is given, so Moat runs on a fresh machine with nothing
//! else installed.

use crate::config::Config;
use crate::diagnostics::ConfigError;
use std::path::Path;
use tempfile::TempDir;

const HELLO: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/hello.wasm"));
const FILES: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/files.wasm"));

const DEMO: &[(&str, &str)] = &[
    ("README.txt", include_str!("../../examples/demo/README.txt")),
    ("notes.md", include_str!("../../examples/demo/notes.md")),
];

/// The embedded config; paths are relative to the folder it is unpacked in.
pub const CONFIG: &str = r#"# Moat's embedded default configuration.
[[plugin]]
name = "hello"
source = "hello.wasm"
[plugin.grants]
env = { GREETING = "Hello" }

[[plugin]]
name = "files"
source = "files.wasm"
[plugin.grants]
dirs = [{ host = "demo", guest = "/data", mode = "ro" }]
"#;

/// The default configuration, unpacked into a private temporary folder
/// that lives as long as the returned guard.
pub struct DefaultConfig {
    /// The parsed configuration.
    pub config: Config,
    /// Holds the unpacked plugins and demo folder.
    _dir: TempDir,
}

impl DefaultConfig {
    /// Unpacks the embedded plugins, demo folder and config, and parses it.
    pub fn unpack() -> anyhow::Result<DefaultConfig> {
        let dir = tempfile::Builder::new().prefix("moat-default-").tempdir()?;
        write(dir.path(), "hello.wasm", HELLO)?;
        write(dir.path(), "files.wasm", FILES)?;
        std::fs::create_dir(dir.path().join("demo"))?;
        for (name, text) in DEMO {
            write(dir.path(), &format!("demo/{name}"), text.as_bytes())?;
        }
        let config = Config::parse(&dir.path().join("embedded-moat.toml"), CONFIG).map_err(
            |e: ConfigError| anyhow::anyhow!("the embedded configuration is broken: {e}"),
        )?;
        Ok(DefaultConfig { config, _dir: dir })
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(dir.join(name), bytes)
}
