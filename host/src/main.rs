//! The `moat` command. All logic is in the library; see `moat::cli`.

/// Every call allocates on whichever worker thread runs it, and glibc's
/// allocator serialises such threads on its arena locks: with mimalloc the
/// HTTP benchmark serves about 1.3 times the calls per second
/// (docs/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    moat::cli::main()
}
