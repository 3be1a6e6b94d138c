//! Test support: plugins compiled from `plugins/`, a sandbox builder that
//! writes a real `moat.toml` into a temporary folder and loads it through
//! the real config parser and runtime, and the path of the `moat` binary.

pub mod auth;
pub mod bench;
pub mod client;
pub mod external;
pub mod https;
pub mod languages;
pub mod minisign;
pub mod native;
pub mod nginx;
pub mod raw;
pub mod redis;
pub mod registry;

use moat::config::Config;
use moat::runtime::{CallError, CallReport, Plugin, Runtime, RuntimeOptions};
use serde_json::Value;
use std::path::{Path, PathBuf};
use tempfile::TempDir;

/// The component built from `plugins/<name>` by this crate's build script.
pub fn plugin_wasm(name: &str) -> PathBuf {
    Path::new(env!("MOAT_TEST_PLUGINS")).join(format!("{name}.wasm"))
}

/// The `moat` binary of this build (`cargo test --workspace` builds it).
pub fn moat_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/<test> -> target/<profile>/moat
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("moat");
    assert!(
        bin.is_file(),
        "{} is missing: run the tests with `cargo test --workspace`, which builds it",
        bin.display()
    );
    bin
}

/// Makes a FIFO at `path`. Opening it for reading blocks until a writer
/// appears: a file operation that never returns, for the tests of stuck
/// calls.
pub fn make_fifo(path: &Path) {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(
        unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) },
        0,
        "mkfifo {}",
        path.display()
    );
}

/// The records of the audit log `file`, in order.
pub fn audit_records(file: &Path) -> Vec<Value> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The text of `/metrics` on the admin listener at 127.0.0.1:`port`.
pub async fn metrics(port: u16) -> String {
    reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of the sample `name` (with its labels, as exposed) in the
/// text of a `/metrics`.
pub fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// A free port on 127.0.0.1, for a server whose URL must be known before
/// it starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Builds a temporary folder with files, a config and loaded plugins.
#[derive(Default)]
pub struct SandboxBuilder {
    files: Vec<(String, String)>,
    dirs: Vec<String>,
    top: String,
    config: String,
}

impl SandboxBuilder {
    /// Creates `path` (relative to the sandbox folder) holding `content`.
    pub fn file(mut self, path: &str, content: &str) -> Self {
        self.files.push((path.into(), content.into()));
        self
    }

    /// Creates the directory `path`.
    pub fn dir(mut self, path: &str) -> Self {
        self.dirs.push(path.into());
        self
    }

    /// Adds plugin `name` built from `plugins/<wasm>`, with `grants` as the
    /// body of its `[plugin.grants]` table.
    pub fn plugin_from(mut self, name: &str, wasm: &str, grants: &str) -> Self {
        self.config.push_str(&format!(
            "[[plugin]]\nname = \"{name}\"\nsource = {source:?}\n[plugin.grants]\n{grants}\n\n",
            source = plugin_wasm(wasm).display().to_string(),
        ));
        self
    }

    /// Adds plugin `name` built from `plugins/<name>`.
    pub fn plugin(self, name: &str, grants: &str) -> Self {
        self.plugin_from(name, name, grants)
    }

    /// The `hello` plugin, and `files` reading `demo/` (which holds `a.txt`:
    /// "alpha") as `/data`: the demo endpoint most protocol tests serve.
    pub fn hello_and_files(self) -> Self {
        self.file("demo/a.txt", "alpha")
            .plugin("hello", "")
            .plugin("files", r#"dirs = [{ host = "demo", guest = "/data" }]"#)
    }

    /// Adds top-level keys to the config (before any table).
    pub fn top(mut self, text: &str) -> Self {
        self.top.push_str(text);
        self.top.push('\n');
        self
    }

    /// Appends raw TOML to the config.
    pub fn toml(mut self, text: &str) -> Self {
        self.config.push_str(text);
        self.config.push('\n');
        self
    }

    /// Writes the files and `moat.toml` into a new temporary folder, without
    /// loading anything; returns the folder.
    pub fn write(self) -> TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        for d in &self.dirs {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        for (path, content) in &self.files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
        let text = format!(
            "{}[runtime]\ncache_dir = \"cache\"\n\n{}",
            self.top, self.config
        );
        std::fs::write(dir.path().join("moat.toml"), &text).unwrap();
        dir
    }

    /// Writes everything and loads every plugin.
    pub async fn build(self) -> Sandbox {
        let dir = self.write();
        let config_path = dir.path().join("moat.toml");
        let config = Config::load(&config_path).unwrap_or_else(|e| panic!("{e}"));
        let runtime = Runtime::new(&RuntimeOptions::for_config(&config)).expect("runtime");
        let mut plugins = Vec::new();
        for p in &config.plugins {
            plugins.push(runtime.load(p).await.unwrap_or_else(|e| panic!("{e}")));
        }
        Sandbox {
            dir,
            runtime,
            plugins,
        }
    }
}

/// Loaded plugins over a temporary folder.
pub struct Sandbox {
    /// The folder holding the config, granted directories and the cache.
    pub dir: TempDir,
    /// The runtime the plugins were loaded into.
    pub runtime: Runtime,
    /// The loaded plugins, in config order.
    pub plugins: Vec<Plugin>,
}

impl Sandbox {
    /// Starts a sandbox description.
    pub fn builder() -> SandboxBuilder {
        SandboxBuilder::default()
    }

    /// A path inside the sandbox folder.
    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// The loaded plugin named `name`.
    pub fn plugin(&self, name: &str) -> &Plugin {
        self.plugins
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no plugin {name}"))
    }

    /// Calls `plugin.tool` with `args`.
    pub async fn call(&self, plugin: &str, tool: &str, args: Value) -> CallReport {
        self.runtime
            .call(self.plugin(plugin), tool, &args.to_string())
            .await
    }

    /// Calls and expects a successful, non-error result; returns its text.
    pub async fn ok(&self, plugin: &str, tool: &str, args: Value) -> String {
        match self.call(plugin, tool, args).await.result {
            Ok(out) if !out.is_error => out.joined_text(),
            Ok(out) => panic!(
                "{plugin}.{tool} returned an error result: {}",
                out.joined_text()
            ),
            Err(e) => panic!("{plugin}.{tool} failed: {e}"),
        }
    }

    /// Calls and expects a result with `isError` set; returns its text.
    pub async fn tool_error(&self, plugin: &str, tool: &str, args: Value) -> String {
        match self.call(plugin, tool, args).await.result {
            Ok(out) if out.is_error => out.joined_text(),
            Ok(out) => panic!("{plugin}.{tool} succeeded: {}", out.joined_text()),
            Err(e) => panic!("{plugin}.{tool} failed instead of returning an error result: {e}"),
        }
    }

    /// Calls and expects the call to fail; returns why.
    pub async fn fails(&self, plugin: &str, tool: &str, args: Value) -> CallError {
        match self.call(plugin, tool, args).await.result {
            Err(e) => e,
            Ok(out) => panic!("{plugin}.{tool} did not fail: {}", out.joined_text()),
        }
    }

    /// Calls and expects the call to end as `memory_limit` at `limit`
    /// bytes, having never held more.
    pub async fn runs_out_of_memory(&self, plugin: &str, tool: &str, args: Value, limit: usize) {
        let report = self.call(plugin, tool, args).await;
        assert_eq!(report.result, Err(CallError::MemoryLimit { limit }));
        assert!(
            report.stats.peak_memory_bytes <= limit,
            "{:?}",
            report.stats
        );
    }
}

/// A `moat serve --http` process on an ephemeral loopback port, killed on
/// drop. Its stderr (the log) goes to `moat.log` in `dir`.
pub struct MoatServer {
    child: std::process::Child,
    /// The MCP endpoint, such as `http://127.0.0.1:41234/mcp`.
    pub url: String,
    /// `http://127.0.0.1:41234`.
    pub base: String,
    log: PathBuf,
}

impl MoatServer {
    /// Starts `moat serve --http 127.0.0.1:0 --config <dir>/moat.toml` plus
    /// `extra` arguments, and waits until it listens.
    pub fn start(dir: &Path, extra: &[&str]) -> MoatServer {
        Self::start_on(dir, "127.0.0.1:0", extra)
    }

    /// [`Self::start`] on the address `addr`.
    pub fn start_on(dir: &Path, addr: &str, extra: &[&str]) -> MoatServer {
        Self::start_with(dir, addr, extra, &[])
    }

    /// [`Self::start_on`] with environment variables `env` set (such as
    /// `RUST_LOG`; without it the server logs as shipped).
    pub fn start_with(dir: &Path, addr: &str, extra: &[&str], env: &[(&str, &str)]) -> MoatServer {
        use std::io::BufRead;
        let log = dir.join("moat.log");
        let mut child = std::process::Command::new(moat_bin())
            .args(["serve", "--http", addr, "--config"])
            .arg(dir.join("moat.toml"))
            .args(extra)
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .current_dir(dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting moat serve");
        let stdout = child.stdout.take().unwrap();
        let mut lines = std::io::BufReader::new(stdout).lines();
        let url = loop {
            let Some(Ok(line)) = lines.next() else {
                let _ = child.wait();
                panic!(
                    "moat serve exited before listening:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            };
            if let Some(rest) = line
                .split(" at ")
                .nth(1)
                .filter(|_| line.starts_with("moat: serving"))
            {
                break rest.trim().to_string();
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let base = url[..url[7..].find('/').unwrap() + 7].to_string();
        MoatServer {
            child,
            url,
            base,
            log,
        }
    }

    /// `127.0.0.1:<port>`: where it listens, as a proxy's upstream names it.
    pub fn authority(&self) -> String {
        self.base.trim_start_matches("http://").to_string()
    }

    /// Its process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills it at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGHUP (reload the config).
    pub fn hangup(&self) {
        // SAFETY: kill(2) on our child's pid has no memory-safety preconditions.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGHUP) };
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        // SAFETY: kill(2) on our child's pid has no memory-safety preconditions.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
    }

    /// Waits for the process to exit (up to `limit`), returning its status.
    pub fn wait(&mut self, limit: std::time::Duration) -> Option<std::process::ExitStatus> {
        let start = std::time::Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        None
    }

    /// What the server has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for MoatServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A failing test shows what the server logged.
        if std::thread::panicking() {
            eprintln!("--- moat serve log ---\n{}", self.log());
        }
    }
}
