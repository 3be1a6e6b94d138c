//! `moat audit verify`: check the chain of an audit log.

use crate::audit::{segments, verify};
use std::path::Path;
use std::process::ExitCode;

/// Verifies the chain ending in `path` (rotated `path.N` files first).
/// Exit 0 when whole, 1 when broken, naming the first broken record.
pub(super) fn verify_chain(path: &Path) -> anyhow::Result<ExitCode> {
    if !path.is_file() {
        anyhow::bail!("{} is not a file", path.display());
    }
    let files = segments(path);
    match verify(&files) {
        Ok(verified) => {
            println!(
                "ok: {} records in {} file(s), chain intact; last hash {}",
                verified.records,
                files.len(),
                verified.last_hash
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(broken) => {
            println!("broken: {broken}");
            Ok(ExitCode::from(1))
        }
    }
}
