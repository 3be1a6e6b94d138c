//! Loading: digest pins, the compile cache, and refusing bad plugins.

use moat::config::Config;
use moat::runtime::{CacheOutcome, Runtime, RuntimeOptions};
use moat_tests::plugin_wasm;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The digest as `sha256sum` computes it, independently of the host.
fn sha256sum(path: &Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

fn config_in(dir: &Path, plugin_lines: &str) -> Config {
    let text = format!(
        "[runtime]\ncache_dir = \"cache\"\n[[plugin]]\nname = \"hello\"\nsource = {:?}\n{plugin_lines}\n",
        plugin_wasm("hello").display().to_string()
    );
    Config::parse(&dir.join("moat.toml"), &text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_digest_must_match() {
    let dir = tempfile::tempdir().unwrap();
    let actual = sha256sum(&plugin_wasm("hello"));

    let good = config_in(
        dir.path(),
        &format!("sha256 = \"{}\"", actual.to_uppercase()),
    );
    let runtime = Runtime::new(&RuntimeOptions::for_config(&good)).unwrap();
    let plugin = runtime.load(&good.plugins[0]).await.unwrap();
    assert_eq!(plugin.sha256, actual);

    let pinned = "0".repeat(64);
    let bad = config_in(dir.path(), &format!("sha256 = \"{pinned}\""));
    let err = match runtime.load(&bad.plugins[0]).await {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a plugin whose digest differs from its pin was loaded"),
    };
    assert!(err.contains("digest mismatch"), "{err}");
    assert!(
        err.contains(&pinned) && err.contains(&actual),
        "both digests must be named: {err}"
    );
    assert!(
        err.contains("moat.toml:3:"),
        "the error must name the config entry: {err}"
    );
    // The runtime still loads and serves the good plugin.
    let again = runtime.load(&good.plugins[0]).await.unwrap();
    let report = runtime.call(&again, "greet", r#"{"name":"pin"}"#).await;
    assert_eq!(report.result.unwrap().joined_text(), "Hello, pin!");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compile_cache_is_used_on_restart_and_untrusted_entries_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(dir.path(), "");
    let options = RuntimeOptions::for_config(&config);

    let first = Runtime::new(&options).unwrap();
    assert_eq!(
        first.load(&config.plugins[0]).await.unwrap().load.cache,
        CacheOutcome::Miss
    );
    drop(first);
    let restarted = Runtime::new(&options).unwrap();
    let plugin = restarted.load(&config.plugins[0]).await.unwrap();
    assert_eq!(plugin.load.cache, CacheOutcome::Hit);
    let report = restarted
        .call(&plugin, "greet", r#"{"name":"cache"}"#)
        .await;
    assert_eq!(report.result.unwrap().joined_text(), "Hello, cache!");

    // An entry that someone else could have written is not trusted.
    let entry = std::fs::read_dir(dir.path().join("cache"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .expect("a cache entry");
    std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o666)).unwrap();
    let wary = Runtime::new(&options).unwrap();
    let plugin = wary.load(&config.plugins[0]).await.unwrap();
    assert_eq!(plugin.load.cache, CacheOutcome::Miss);
    let report = wary.call(&plugin, "greet", r#"{"name":"again"}"#).await;
    assert_eq!(report.result.unwrap().joined_text(), "Hello, again!");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_is_not_a_component_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bogus.wasm"), b"\0asm\x01\0\0\0").unwrap();
    let text = "[[plugin]]\nname = \"bogus\"\nsource = \"bogus.wasm\"\n";
    let config = Config::parse(&dir.path().join("moat.toml"), text).unwrap();
    let runtime = Runtime::new(&RuntimeOptions::for_config(&config)).unwrap();
    let err = match runtime.load(&config.plugins[0]).await {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a core module was loaded as a plugin"),
    };
    assert!(
        err.contains("plugin `bogus`") && err.contains("wasm32-wasip2"),
        "{err}"
    );
}
