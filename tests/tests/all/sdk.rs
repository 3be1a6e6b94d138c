//! The plugin SDK's own unit tests (`plugins/sdk`, built for this machine:
//! its allocator's bookkeeping, its URI templates). `plugins/` is a
//! workspace of its own, so `cargo test --workspace` here would not run
//! them.

use std::path::Path;
use std::process::Command;

#[test]
fn the_sdk_unit_tests_pass() {
    let plugins = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(&plugins)
        .args(["test", "--locked", "-p", "moat-plugin", "--lib"])
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .output()
        .expect("running cargo in plugins/");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The arena's tests ran, not an empty selection.
    assert!(
        stdout
            .contains("arena::tests::allocations_are_aligned_disjoint_and_keep_their_bytes ... ok"),
        "{stdout}"
    );
}
