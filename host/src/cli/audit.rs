//! `moat audit verify` and `moat audit keygen`: check the chain (and its
//! signed checkpoints) of an audit log, and make a signing key.

use crate::audit::{checkpoint, segments, verify};
use std::path::Path;
use std::process::ExitCode;

/// Verifies the chain ending in `path` (rotated `path.N` files first),
/// and with `key` (a public key or a file holding one) its checkpoints.
/// Exit 0 when whole, 1 when broken, naming the first broken record.
pub(super) fn verify_chain(
    path: &Path,
    key: Option<&str>,
    closed: bool,
) -> anyhow::Result<ExitCode> {
    if !path.is_file() {
        anyhow::bail!("{} is not a file", path.display());
    }
    let key = key.map(checkpoint::public_key).transpose()?;
    let files = segments(path);
    match verify(&files, key.as_ref()) {
        Ok(verified) => {
            println!(
                "ok: {} records in {} file(s), chain intact; last hash {}",
                verified.records,
                files.len(),
                verified.last_hash
            );
            if let Some(through) = verified.signed_through {
                match (verified.records - through, verified.closed) {
                    (_, true) => println!(
                        "signed: every record, through the closing checkpoint at record {through}"
                    ),
                    (0, false) => println!("signed: every record, through record {through}"),
                    (tail, false) => println!(
                        "signed: through record {through}; the last {tail} record(s) are covered by the hash chain only"
                    ),
                }
                if closed && !verified.closed {
                    println!(
                        "broken: the log does not end with its closing checkpoint: Moat is still writing it, \
                         stopped without one, or its end was changed or cut off"
                    );
                    return Ok(ExitCode::from(1));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(broken) => {
            println!("broken: {broken}");
            Ok(ExitCode::from(1))
        }
    }
}

/// Makes a checkpoint signing key in `out` (and its public key in
/// `out.pub`).
pub(super) fn keygen(out: &Path) -> anyhow::Result<ExitCode> {
    let public = checkpoint::generate(out)?;
    println!(
        "wrote the private key to {} (keep it outside the audit log's reach; set [audit] signing_key_file) \
         and the public key to {}.pub: {public}",
        out.display(),
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}
