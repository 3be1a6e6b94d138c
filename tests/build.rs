//! Compiles the example plugins from `plugins/` for wasm32-wasip2, so every
//! test runs against components built from the sources in this checkout
//! (never committed `.wasm` files).

include!("../build/plugins.rs");

fn main() {
    let manifest = std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let dir = build_plugins(manifest.parent().unwrap(), &[]);
    println!("cargo:rustc-env=MOAT_TEST_PLUGINS={}", dir.display());
}
