// Shared by the build scripts of `host` (which embeds the example plugins)
// and `tests` (which tests all of them): compiles `plugins/` for
// wasm32-wasip2 from source and returns the folder holding the `.wasm` files.
// Included with `include!`, so it is plain items without a module.

/// Builds `packages` of `plugins/` (every one when empty; release,
/// wasm32-wasip2) and returns `plugins/target/wasm32-wasip2/release`.
fn build_plugins(repo_root: &std::path::Path, packages: &[&str]) -> std::path::PathBuf {
    use std::process::Command;
    let plugins = repo_root.join("plugins");
    for path in [
        "plugins/Cargo.toml",
        "plugins/Cargo.lock",
        "plugins/.cargo",
        "plugins/sdk",
        "plugins/hello",
        "plugins/files",
        "plugins/testbed",
        "plugins/fetch",
        "plugins/db",
        "plugins/conformance",
        "plugins/legacy",
        "plugins/typed",
        "plugins/unserved",
        "wit",
    ] {
        println!("cargo:rerun-if-changed={}", repo_root.join(path).display());
    }
    ensure_wasm_target();
    if packages.is_empty() || packages.contains(&"db") {
        ensure_c_for_wasm();
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(&plugins)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .args(packages.iter().flat_map(|p| ["-p", p]))
        // This runs inside another cargo build: drop what that build set for
        // itself so the plugin build is an ordinary one.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER");
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("CARGO_FEATURE_")
            || key.starts_with("CARGO_CFG_")
            || key.starts_with("CARGO_PROFILE_")
        {
            command.env_remove(key.as_ref());
        }
    }
    let status = command.status().expect("running cargo for plugins/");
    assert!(
        status.success(),
        "building plugins/ for wasm32-wasip2 failed (see the output above)"
    );
    plugins.join("target/wasm32-wasip2/release")
}

/// The `db` plugin compiles SQLite's C for wasm32-wasip2 (see
/// `plugins/.cargo/config.toml`): fail early, naming what to install,
/// rather than deep inside the C build.
fn ensure_c_for_wasm() {
    use std::process::Command;
    let clang = Command::new("clang")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let headers = std::path::Path::new("/usr/include/wasm32-wasi/stdio.h").is_file();
    assert!(
        (clang && headers) || std::env::var_os("CFLAGS_wasm32_wasip2").is_some(),
        "the db plugin compiles SQLite for wasm32-wasip2 and needs clang and a WASI sysroot; \
         on Debian or Ubuntu: apt-get install clang lld wasi-libc libclang-rt-dev-wasm32 \
         (elsewhere, set CC_wasm32_wasip2 and CFLAGS_wasm32_wasip2 to a clang and WASI sysroot of your own)"
    );
}

/// Installs the wasm32-wasip2 standard library with rustup when it is
/// missing, so a build works on a fresh machine.
fn ensure_wasm_target() {
    use std::process::Command;
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .expect("running rustc --print sysroot");
    let sysroot = std::path::PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    if sysroot.join("lib/rustlib/wasm32-wasip2").is_dir() {
        return;
    }
    let status = Command::new("rustup")
        .args(["target", "add", "wasm32-wasip2"])
        .status();
    assert!(
        matches!(status, Ok(s) if s.success()),
        "the wasm32-wasip2 target is missing and `rustup target add wasm32-wasip2` failed; install it and retry"
    );
}
