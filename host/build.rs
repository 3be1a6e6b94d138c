//! Compiles the example plugins so the `moat` binary can embed `hello` and
//! `files` in its default configuration (`moat serve` with no --config).

include!("../build/plugins.rs");

fn main() {
    let manifest = std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let dir = build_plugins(manifest.parent().unwrap(), &["hello", "files"]);
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    for name in ["hello", "files"] {
        std::fs::copy(
            dir.join(format!("{name}.wasm")),
            out.join(format!("{name}.wasm")),
        )
        .expect("copying an example plugin into OUT_DIR");
    }
    println!("cargo:rerun-if-changed=../examples/demo");
}
