//! The `moat` command. All logic is in the library; see `moat::cli`.

fn main() -> std::process::ExitCode {
    moat::cli::main()
}
