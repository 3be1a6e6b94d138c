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

/// Whether the part `name` runs: `cargo bench` passes `--bench`; any other
/// argument selects one part, which keeps a profile of one part clean.
pub fn wants(name: &str) -> bool {
    std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .is_none_or(|only| only == name)
}
