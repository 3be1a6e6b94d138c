//! What every benchmark binary starts with.

/// The runtime benchmarks run on: two workers, like the `moat` binary on
/// this 2-core machine.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Whether the part `name` runs: `cargo bench` passes `--bench`; other
/// arguments name the parts to run (all of them when none is named), which
/// keeps a profile clean and lets a side run beside just its baseline.
pub fn wants(name: &str) -> bool {
    let mut named = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .peekable();
    named.peek().is_none() || named.any(|part| part == name)
}
