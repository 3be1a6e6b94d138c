//! Plugins from where publishers put them: a real OCI registry (Debian's
//! `docker-registry`) and a real HTTPS server on 127.0.0.1, signatures
//! made with Debian's `minisign`, and the lock file. Each refusal is
//! asserted by what it names, and each is followed by a load that works.

use moat_tests::https::HttpsFiles;
use moat_tests::minisign::Key;
use moat_tests::nginx::TestCa;
use moat_tests::registry::{Registry, digest};
use moat_tests::{moat_bin, plugin_wasm};
use std::path::Path;
use std::process::{Command, Output};

fn moat(dir: &Path, args: &[&str]) -> Output {
    moat_env(dir, args, &[])
}

fn moat_env(dir: &Path, args: &[&str], env: &[(&str, &Path)]) -> Output {
    Command::new(moat_bin())
        .args(args)
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (*k, v.as_os_str())))
        .env_remove("RUST_LOG")
        .output()
        .expect("running moat")
}

/// stdout and stderr, for assertions and failure messages.
fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn ok(out: &Output) -> String {
    let text = said(out);
    assert!(out.status.success(), "{text}");
    text
}

fn refused(out: &Output) -> String {
    let text = said(out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    text
}

fn sha256(bytes: &[u8]) -> String {
    digest(bytes).trim_start_matches("sha256:").to_string()
}

/// `[runtime]` and `[registries]` for a registry at `addr`, then `rest`.
fn write_config(dir: &Path, addr: &str, rest: &str) {
    std::fs::write(
        dir.join("moat.toml"),
        format!("[runtime]\ncache_dir = \"cache\"\n[registries]\ninsecure = [\"{addr}\"]\n{rest}"),
    )
    .unwrap();
}

fn greet(dir: &Path, plugin: &str) -> Output {
    moat(
        dir,
        &[
            "call",
            "-c",
            "moat.toml",
            plugin,
            "greet",
            r#"{"name":"registry"}"#,
        ],
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn plugins_are_pulled_by_tag_and_by_digest_and_start_offline_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let mut registry = Registry::start(dir.path());
    let wasm = std::fs::read(plugin_wasm("hello")).unwrap();
    let manifest = registry.push_wasm("org/hello", "1.0.0", &wasm).await;
    let addr = registry.addr.clone();
    write_config(
        dir.path(),
        &addr,
        &format!(
            "[[plugin]]\nname = \"hello\"\nsource = \"oci://{addr}/org/hello:1.0.0\"\n\
             [[plugin]]\nname = \"pinned\"\nsource = \"oci://{addr}/org/hello@{manifest}\"\n"
        ),
    );
    let out = ok(&moat(dir.path(), &["check", "-c", "moat.toml"]));
    assert!(
        out.contains(&format!("source   oci://{addr}/org/hello:1.0.0")),
        "{out}"
    );
    assert!(
        out.contains(&format!("resolved oci://{addr}/org/hello@{manifest}")),
        "{out}"
    );
    assert!(
        out.contains(&format!("sha256   {}", sha256(&wasm))),
        "{out}"
    );
    // Kept by digest, once for both plugins.
    let kept = dir
        .path()
        .join(format!("cache/downloads/sha256-{}.wasm", sha256(&wasm)));
    assert_eq!(std::fs::read(&kept).unwrap(), wasm);

    registry.stop();
    for plugin in ["hello", "pinned"] {
        let out = ok(&greet(dir.path(), plugin));
        assert!(out.contains("Hello, registry!"), "{out}");
    }
    // check and lock say what a tag names now: without the registry they
    // cannot, and say so.
    let out = refused(&moat(dir.path(), &["check", "-c", "moat.toml"]));
    assert!(
        out.contains(&format!("cannot pull oci://{addr}/org/hello:1.0.0")),
        "{out}"
    );

    // A registry that answers "no such tag" is believed: the cached digest
    // stands in only for a registry that cannot be reached.
    registry.restart();
    registry.delete_manifest("org/hello", &manifest).await;
    let out = refused(&greet(dir.path(), "hello"));
    assert!(
        out.contains(&format!("cannot pull oci://{addr}/org/hello:1.0.0")),
        "{out}"
    );
    assert!(
        out.contains("MANIFEST_UNKNOWN") || out.contains("manifest unknown"),
        "{out}"
    );
    registry.push_wasm("org/hello", "1.0.0", &wasm).await;
    registry.stop();

    // Without the cache, the registry's absence is a refusal that names
    // the plugin and the reference.
    std::fs::remove_dir_all(dir.path().join("cache")).unwrap();
    let out = refused(&greet(dir.path(), "hello"));
    assert!(out.contains("plugin `hello`"), "{out}");
    assert!(
        out.contains(&format!("cannot pull oci://{addr}/org/hello:1.0.0")),
        "{out}"
    );
    registry.restart();
    ok(&greet(dir.path(), "hello"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registry_over_plain_http_must_be_listed_as_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start(dir.path());
    let wasm = std::fs::read(plugin_wasm("hello")).unwrap();
    registry.push_wasm("org/hello", "1", &wasm).await;
    let addr = &registry.addr;
    std::fs::write(
        dir.path().join("moat.toml"),
        format!("[runtime]\ncache_dir = \"cache\"\n[[plugin]]\nname = \"hello\"\nsource = \"oci://{addr}/org/hello:1\"\n"),
    )
    .unwrap();
    // HTTPS is tried, and the plain-HTTP registry does not speak it.
    let out = refused(&greet(dir.path(), "hello"));
    assert!(
        out.contains(&format!("cannot pull oci://{addr}/org/hello:1")),
        "{out}"
    );
    assert!(out.contains("insecure"), "{out}");
    // Credentials are never sent in the clear.
    write_config(
        dir.path(),
        addr,
        &format!(
            "[[registries.login]]\nregistry = \"{addr}\"\nusername = \"me\"\npassword = {{ from_file = \"token\" }}\n\
             [[plugin]]\nname = \"hello\"\nsource = \"oci://{addr}/org/hello:1\"\n"
        ),
    );
    std::fs::write(dir.path().join("token"), "s3cret").unwrap();
    let out = refused(&greet(dir.path(), "hello"));
    assert!(
        out.contains("would cross the network in the clear"),
        "{out}"
    );
    assert!(!out.contains("s3cret"), "{out}");
    write_config(
        dir.path(),
        addr,
        &format!("[[plugin]]\nname = \"hello\"\nsource = \"oci://{addr}/org/hello:1\"\n"),
    );
    ok(&greet(dir.path(), "hello"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_moved_tag_is_drift_and_locked_serving_runs_only_the_locked_digest() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start(dir.path());
    let hello = std::fs::read(plugin_wasm("hello")).unwrap();
    let first = registry.push_wasm("org/tool", "1.0.0", &hello).await;
    let addr = registry.addr.clone();
    let source = format!("oci://{addr}/org/tool:1.0.0");
    write_config(
        dir.path(),
        &addr,
        &format!("[[plugin]]\nname = \"tool\"\nsource = \"{source}\"\n"),
    );
    let out = ok(&moat(dir.path(), &["lock", "-c", "moat.toml"]));
    assert!(out.contains("wrote"), "{out}");
    let lock = std::fs::read_to_string(dir.path().join("moat.lock")).unwrap();
    assert!(lock.contains(&format!("source = \"{source}\"")), "{lock}");
    assert!(
        lock.contains(&format!("resolved = \"oci://{addr}/org/tool@{first}\"")),
        "{lock}"
    );
    assert!(
        lock.contains(&format!("sha256 = \"{}\"", sha256(&hello))),
        "{lock}"
    );
    let out = ok(&moat(dir.path(), &["check", "-c", "moat.toml"]));
    assert!(out.contains("every plugin is as locked"), "{out}");

    // The publisher moves the tag to other bytes.
    let other = std::fs::read(plugin_wasm("files")).unwrap();
    let second = registry.push_wasm("org/tool", "1.0.0", &other).await;
    let out = said(&moat(dir.path(), &["check", "-c", "moat.toml"]));
    assert!(
        out.contains(&format!(
            "drift    {source} now resolves to oci://{addr}/org/tool@{second}"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("says oci://{addr}/org/tool@{first}")),
        "{out}"
    );

    // --locked runs the reviewed digest, not what the tag says today.
    let server = moat_tests::MoatServer::start(dir.path(), &["--locked"]);
    let client = moat_tests::client::connect(&server.url).await;
    let tools = moat_tests::client::tool_names(&client).await;
    assert_eq!(tools, ["tool.echo", "tool.greet"], "{}", server.log());
    drop(client);
    drop(server);

    // A source the lock does not name is refused under --locked.
    write_config(
        dir.path(),
        &addr,
        &format!(
            "[[plugin]]\nname = \"tool\"\nsource = \"{source}\"\n[[plugin]]\nname = \"new\"\nsource = \"oci://{addr}/org/tool@{second}\"\n"
        ),
    );
    let out = refused(&moat(
        dir.path(),
        &["serve", "--stdio", "-c", "moat.toml", "--locked"],
    ));
    assert!(out.contains("plugin `new`"), "{out}");
    assert!(out.contains("is not in"), "{out}");
    assert!(out.contains("moat lock"), "{out}");

    // A lock that points the source at another repository.
    write_config(
        dir.path(),
        &addr,
        &format!("[[plugin]]\nname = \"tool\"\nsource = \"{source}\"\n"),
    );
    let elsewhere = lock.replace("org/tool@", "org/other@");
    std::fs::write(dir.path().join("moat.lock"), &elsewhere).unwrap();
    let out = refused(&moat(
        dir.path(),
        &["serve", "--stdio", "-c", "moat.toml", "--locked"],
    ));
    assert!(out.contains("which is not oci://"), "{out}");
    assert!(out.contains("repository by digest"), "{out}");

    // A lock whose digest is not what the locked reference holds.
    write_config(
        dir.path(),
        &addr,
        &format!("[[plugin]]\nname = \"tool\"\nsource = \"{source}\"\n"),
    );
    let lock = lock.replace(&sha256(&hello), &sha256(&other));
    std::fs::write(dir.path().join("moat.lock"), lock).unwrap();
    let out = refused(&moat(
        dir.path(),
        &["serve", "--stdio", "-c", "moat.toml", "--locked"],
    ));
    assert!(out.contains("digest mismatch: the lock file says"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_layer_whose_bytes_do_not_match_the_manifest_is_refused_and_not_kept() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start(dir.path());
    let wasm = std::fs::read(plugin_wasm("hello")).unwrap();
    registry.push_wasm("org/hello", "1", &wasm).await;
    let addr = registry.addr.clone();
    write_config(
        dir.path(),
        &addr,
        &format!("[[plugin]]\nname = \"hello\"\nsource = \"oci://{addr}/org/hello:1\"\n"),
    );
    // The registry's store is altered behind its back: same length, one
    // byte different, served under the old digest.
    let blob = registry.blob_file(&digest(&wasm));
    let mut altered = wasm.clone();
    let middle = altered.len() / 2;
    altered[middle] ^= 0xff;
    std::fs::write(&blob, &altered).unwrap();
    let out = refused(&greet(dir.path(), "hello"));
    assert!(out.contains("plugin `hello`"), "{out}");
    assert!(
        out.contains(&format!(
            "digest mismatch: the layer {} of oci://{addr}/org/hello:1",
            digest(&wasm)
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("but its bytes have sha256 {}", sha256(&altered))),
        "{out}"
    );
    let downloads = dir.path().join("cache/downloads");
    let kept: Vec<_> = std::fs::read_dir(&downloads)
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        kept.iter().all(|n| !n.to_string_lossy().ends_with(".wasm")),
        "{kept:?}"
    );

    std::fs::write(&blob, &wasm).unwrap();
    ok(&greet(dir.path(), "hello"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_layer_is_refused_without_filling_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start(dir.path());
    let addr = registry.addr.clone();
    // Honestly declared: refused from the manifest, before any download.
    let db = std::fs::read(plugin_wasm("db")).unwrap();
    assert!(db.len() > 1 << 20);
    registry.push_wasm("org/db", "1", &db).await;
    // Declared small, served large (a registry that lies).
    let hello = std::fs::read(plugin_wasm("hello")).unwrap();
    registry.push_wasm("org/hello", "1", &hello).await;
    std::fs::write(registry.blob_file(&digest(&hello)), vec![7u8; 8 << 20]).unwrap();
    let config = |name: &str| {
        format!(
            "[runtime]\ncache_dir = \"cache\"\nmax_plugin_mib = 1\n[registries]\ninsecure = [\"{addr}\"]\n\
             [[plugin]]\nname = \"{name}\"\nsource = \"oci://{addr}/org/{name}:1\"\n"
        )
    };
    for name in ["db", "hello"] {
        std::fs::write(dir.path().join("moat.toml"), config(name)).unwrap();
        let out = refused(&moat(dir.path(), &["check", "-c", "moat.toml"]));
        assert!(out.contains(&format!("plugin `{name}`")), "{out}");
        assert!(out.contains("is larger than the limit of 1 MiB"), "{out}");
        assert!(out.contains("max_plugin_mib"), "{out}");
    }
    let used: u64 = std::fs::read_dir(dir.path().join("cache/downloads"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0);
    assert!(used < 4096, "{used} bytes kept");
    // Within the limit, the same registry serves.
    std::fs::write(registry.blob_file(&digest(&hello)), &hello).unwrap();
    std::fs::write(
        dir.path().join("moat.toml"),
        config("hello").replace("max_plugin_mib = 1", "max_plugin_mib = 2"),
    )
    .unwrap();
    ok(&greet(dir.path(), "hello"));
}

#[tokio::test(flavor = "multi_thread")]
async fn registry_signatures_are_checked_against_the_trusted_publisher() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start(dir.path());
    let addr = registry.addr.clone();
    let acme = Key::generate(dir.path(), "acme");
    let mallory = Key::generate(dir.path(), "mallory");
    let wasm_path = dir.path().join("hello.wasm");
    std::fs::copy(plugin_wasm("hello"), &wasm_path).unwrap();
    let wasm = std::fs::read(&wasm_path).unwrap();
    let trust = format!(
        "[trust]\nrequire_signature = true\n[[trust.publisher]]\nname = \"acme\"\nkey = \"{}\"\n",
        acme.public
    );
    let plugin = |tag: &str| {
        format!("{trust}[[plugin]]\nname = \"hello\"\nsource = \"oci://{addr}/org/hello:{tag}\"\n")
    };

    // Signed by acme: loads, and check names the signer.
    let good = registry.push_wasm("org/hello", "good", &wasm).await;
    registry
        .push_signature("org/hello", &good, &acme.sign(&wasm_path))
        .await;
    write_config(dir.path(), &addr, &plugin("good"));
    let out = ok(&moat(dir.path(), &["check", "-c", "moat.toml"]));
    assert!(
        out.contains("signer   publisher `acme` (signature verified)"),
        "{out}"
    );
    // inspect shows the same, before anything is installed.
    let reference = format!("oci://{addr}/org/hello:good");
    let out = moat(
        dir.path(),
        &["inspect", "--json", &reference, "-c", "moat.toml"],
    );
    assert!(out.status.success(), "{}", said(&out));
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["signer"], "acme");
    assert_eq!(shown["sha256"], sha256(&wasm));
    assert_eq!(shown["resolved"], format!("oci://{addr}/org/hello@{good}"));

    // Missing: no signature tag beside the manifest.
    let unsigned = registry
        .push_wasm(
            "org/hello",
            "unsigned",
            &std::fs::read(plugin_wasm("files")).unwrap(),
        )
        .await;
    write_config(dir.path(), &addr, &plugin("unsigned"));
    let out = refused(&moat(dir.path(), &["check", "-c", "moat.toml"]));
    assert!(out.contains("no signature was found at"), "{out}");
    assert!(
        out.contains(&format!("tag {}", unsigned.replace(':', "-") + ".sig")),
        "{out}"
    );
    assert!(out.contains("publisher `acme`"), "{out}");

    // Signed, by a key nobody trusts.
    let files_path = dir.path().join("files.wasm");
    std::fs::copy(plugin_wasm("files"), &files_path).unwrap();
    let wrong = registry
        .push_wasm("org/hello", "wrong", &std::fs::read(&files_path).unwrap())
        .await;
    registry
        .push_signature("org/hello", &wrong, &mallory.sign(&files_path))
        .await;
    write_config(dir.path(), &addr, &plugin("wrong"));
    let out = refused(&moat(dir.path(), &["check", "-c", "moat.toml"]));
    assert!(out.contains("plugin `hello`"), "{out}");
    assert!(out.contains("was made with key ID"), "{out}");
    assert!(out.contains("not by one of publisher `acme`"), "{out}");

    // acme's signature of other bytes (the artifact was swapped).
    let testbed = std::fs::read(plugin_wasm("testbed")).unwrap();
    let swapped = registry.push_wasm("org/hello", "swapped", &testbed).await;
    registry
        .push_signature("org/hello", &swapped, &acme.sign(&wasm_path))
        .await;
    write_config(dir.path(), &addr, &plugin("swapped"));
    let out = refused(&moat(dir.path(), &["check", "-c", "moat.toml"]));
    assert!(
        out.contains("does not match the component's bytes"),
        "{out}"
    );
    assert!(out.contains(&sha256(&testbed)), "{out}");

    write_config(dir.path(), &addr, &plugin("good"));
    ok(&moat(dir.path(), &["check", "-c", "moat.toml"]));
}

#[test]
fn file_signatures_are_checked_before_anything_compiles() {
    let dir = tempfile::tempdir().unwrap();
    let acme = Key::generate(dir.path(), "acme");
    let other = Key::generate(dir.path(), "other");
    let wasm_path = dir.path().join("hello.wasm");
    std::fs::copy(plugin_wasm("hello"), &wasm_path).unwrap();
    let wasm = std::fs::read(&wasm_path).unwrap();
    std::fs::write(
        dir.path().join("moat.toml"),
        format!(
            "[runtime]\ncache_dir = \"cache\"\n[[trust.publisher]]\nname = \"acme\"\nkey = \"{}\"\n\
             [[trust.publisher]]\nname = \"other\"\nkey = \"{}\"\n\
             [[plugin]]\nname = \"hello\"\nsource = \"hello.wasm\"\npublisher = \"acme\"\n",
            acme.public, other.public
        ),
    )
    .unwrap();
    let signature = acme.sign(&wasm_path);
    let sig_path = dir.path().join("hello.wasm.minisig");
    let check = || moat(dir.path(), &["check", "-c", "moat.toml"]);
    let out = ok(&check());
    assert!(out.contains("signer   publisher `acme`"), "{out}");

    // A trusted key, but not the publisher this plugin must come from.
    other.sign(&wasm_path);
    let out = refused(&check());
    assert!(out.contains("not by publisher `acme` (key ID"), "{out}");

    // The wasm altered after signing.
    std::fs::write(&sig_path, &signature).unwrap();
    let mut altered = wasm.clone();
    altered.push(0);
    std::fs::write(&wasm_path, &altered).unwrap();
    let out = refused(&check());
    assert!(
        out.contains("does not match the component's bytes"),
        "{out}"
    );
    std::fs::write(&wasm_path, &wasm).unwrap();

    // The signature's trusted comment altered (what the global signature
    // covers).
    std::fs::write(
        &sig_path,
        signature.replace("file:hello.wasm", "file:other.wasm"),
    )
    .unwrap();
    let out = refused(&check());
    assert!(
        out.contains("does not match the component's bytes"),
        "{out}"
    );

    // Not a signature at all.
    std::fs::write(&sig_path, "hello").unwrap();
    let out = refused(&check());
    assert!(out.contains("is not a minisign signature"), "{out}");

    // Missing.
    std::fs::remove_file(&sig_path).unwrap();
    let out = refused(&check());
    assert!(out.contains("no signature was found at"), "{out}");
    assert!(out.contains("hello.wasm.minisig"), "{out}");

    std::fs::write(&sig_path, &signature).unwrap();
    ok(&check());
}

#[tokio::test(flavor = "multi_thread")]
async fn https_sources_need_a_pin_and_are_held_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let server = HttpsFiles::start(&ca).await;
    let wasm = std::fs::read(plugin_wasm("hello")).unwrap();
    server.put("/hello.wasm", wasm.clone());
    let url = format!("{}/hello.wasm", server.base);
    let trust_ca = [("SSL_CERT_FILE", ca.ca_pem.as_path())];
    let write = |pin: Option<&str>| {
        let pin = pin.map_or(String::new(), |p| format!("sha256 = \"{p}\"\n"));
        std::fs::write(
            dir.path().join("moat.toml"),
            format!("[runtime]\ncache_dir = \"cache\"\n[[plugin]]\nname = \"hello\"\nsource = \"{url}\"\n{pin}"),
        )
        .unwrap();
    };
    let call = || {
        moat_env(
            dir.path(),
            &[
                "call",
                "-c",
                "moat.toml",
                "hello",
                "greet",
                r#"{"name":"web"}"#,
            ],
            &trust_ca,
        )
    };

    write(None);
    let out = refused(&call());
    assert!(
        out.contains(&format!("source `{url}` is a URL without a sha256 pin")),
        "{out}"
    );
    assert!(out.contains("sha256sum"), "{out}");

    write(Some(&sha256(&wasm)));
    let out = ok(&call());
    assert!(out.contains("Hello, web!"), "{out}");

    // The file on the server changes; the pin (and a fresh cache) catch it.
    std::fs::remove_dir_all(dir.path().join("cache")).unwrap();
    let files = std::fs::read(plugin_wasm("files")).unwrap();
    server.put("/hello.wasm", files.clone());
    let out = refused(&call());
    assert!(
        out.contains(&format!(
            "digest mismatch: {url} should have sha256 {}",
            sha256(&wasm)
        )),
        "{out}"
    );
    assert!(out.contains(&sha256(&files)), "{out}");

    // Without the test CA the server is not trusted.
    server.put("/hello.wasm", wasm.clone());
    let out = refused(&moat(
        dir.path(),
        &["call", "-c", "moat.toml", "hello", "greet", "{}"],
    ));
    assert!(out.contains(&format!("cannot download {url}")), "{out}");
    ok(&call());

    // A publisher's signature beside the URL.
    let acme = Key::generate(dir.path(), "acme");
    let local = dir.path().join("hello.wasm");
    std::fs::write(&local, &wasm).unwrap();
    server.put("/hello.wasm.minisig", acme.sign(&local));
    std::fs::write(
        dir.path().join("moat.toml"),
        format!(
            "[runtime]\ncache_dir = \"cache\"\n[[trust.publisher]]\nname = \"acme\"\nkey = \"{}\"\n\
             [[plugin]]\nname = \"hello\"\nsource = \"{url}\"\nsha256 = \"{}\"\npublisher = \"acme\"\n",
            acme.public,
            sha256(&wasm)
        ),
    )
    .unwrap();
    let check = || moat_env(dir.path(), &["check", "-c", "moat.toml"], &trust_ca);
    let out = ok(&check());
    assert!(out.contains("signer   publisher `acme`"), "{out}");
    std::fs::remove_dir_all(dir.path().join("cache")).unwrap();
    server.put("/hello.wasm.minisig", "untrusted comment: no\n");
    let out = refused(&check());
    assert!(
        out.contains(&format!(
            "the signature at {url}.minisig is not a minisign signature"
        )),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_from_the_environment_or_a_docker_config_open_a_private_registry() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let mut registry = Registry::start(dir.path());
    let wasm = std::fs::read(plugin_wasm("hello")).unwrap();
    registry.push_wasm("private/hello", "1", &wasm).await;
    registry.secure(&ca, "robot", "s3cret-token");
    let addr = registry.addr.clone();
    let plugin =
        format!("[[plugin]]\nname = \"hello\"\nsource = \"oci://{addr}/private/hello:1\"\n");
    let write = |registries: &str| {
        std::fs::write(
            dir.path().join("moat.toml"),
            format!("[runtime]\ncache_dir = \"cache\"\n{registries}{plugin}"),
        )
        .unwrap();
    };
    std::fs::write(dir.path().join("token"), "s3cret-token\n").unwrap();
    std::fs::write(dir.path().join("wrong"), "guess\n").unwrap();
    let check = || {
        moat_env(
            dir.path(),
            &["check", "-c", "moat.toml"],
            &[("SSL_CERT_FILE", ca.ca_pem.as_path())],
        )
    };

    // Anonymous, then a wrong password: refused by the registry, named.
    write("");
    let out = refused(&check());
    assert!(
        out.contains(&format!("cannot pull oci://{addr}/private/hello:1")),
        "{out}"
    );
    let login = |file: &str| {
        format!(
            "[[registries.login]]\nregistry = \"{addr}\"\nusername = \"robot\"\npassword = {{ from_file = \"{file}\" }}\n"
        )
    };
    write(&login("wrong"));
    let out = refused(&check());
    assert!(
        out.contains(&format!("cannot pull oci://{addr}/private/hello:1")),
        "{out}"
    );
    assert!(!out.contains("guess"), "{out}");

    // The right one, from a file (or the environment): pulled over TLS.
    write(&login("token"));
    let out = ok(&check());
    assert!(
        out.contains(&format!("sha256   {}", sha256(&wasm))),
        "{out}"
    );
    assert!(!out.contains("s3cret"), "{out}");

    // A Docker-style config.json named in the config.
    std::fs::remove_dir_all(dir.path().join("cache")).unwrap();
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode("robot:s3cret-token");
    std::fs::write(
        dir.path().join("docker.json"),
        format!(r#"{{"auths": {{"{addr}": {{"auth": "{auth}"}}}}}}"#),
    )
    .unwrap();
    write("[registries]\ncredentials = \"docker.json\"\n");
    let out = ok(&check());
    assert!(!out.contains("s3cret"), "{out}");
}
