//! Checking a chain of records: every record's hash matches its bytes,
//! sequence numbers run from 1 without gaps, and every `prev` is the hash
//! of the record before it (across rotated files). Given the public key,
//! also every checkpoint's signature, and that no run of records longer
//! than the checkpoints' spacing follows the last one (see
//! [`super::checkpoint`]).

use super::{GENESIS, checkpoint};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// A whole, unbroken chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Records checked.
    pub records: u64,
    /// The last record's hash: keep it elsewhere to detect a truncation.
    pub last_hash: String,
    /// With a key: the last record a verified checkpoint signs.
    pub signed_through: Option<u64>,
    /// With a key: the log ends with a verified closing checkpoint.
    pub closed: bool,
}

/// The first place where the chain is broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {problem}", file.display())]
pub struct Broken {
    /// The file.
    pub file: PathBuf,
    /// The 1-based line.
    pub line: usize,
    /// What is wrong there.
    pub problem: String,
}

/// The files of the chain whose current file is `path`, oldest first:
/// the rotated `path.1`, `path.2`, … that exist, then `path`.
pub fn segments(path: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = (1..)
        .map(|n| PathBuf::from(format!("{}.{n}", path.display())))
        .take_while(|p| p.is_file())
        .collect();
    files.push(path.to_path_buf());
    files
}

/// Verifies the chain formed by `files`, in order, and with `key` its
/// signed checkpoints.
pub fn verify(files: &[PathBuf], key: Option<&[u8; 32]>) -> Result<Verified, Broken> {
    let mut prev = GENESIS.to_string();
    let mut seq = 0u64;
    // The last verified checkpoint's record, spacing and closing mark.
    let mut signed: Option<(u64, u64, bool)> = None;
    let mut last_place = None;
    for file in files {
        let text = std::fs::read_to_string(file).map_err(|e| Broken {
            file: file.clone(),
            line: 0,
            problem: format!("cannot be read: {e}"),
        })?;
        for (index, line) in text.lines().enumerate() {
            let broken = |problem: String| Broken {
                file: file.clone(),
                line: index + 1,
                problem,
            };
            let (hash, record) = check_line(line).map_err(broken)?;
            let expected = seq + 1;
            match record.seq {
                s if s == expected => {}
                s if s > expected => {
                    return Err(broken(format!(
                        "record {s} follows record {seq}: records {expected} to {} are missing",
                        s - 1
                    )));
                }
                s => {
                    return Err(broken(format!(
                        "record {s} is out of order: record {expected} was expected here"
                    )));
                }
            }
            if record.prev != prev {
                return Err(broken(format!(
                    "record {expected} does not follow the record before it (its prev is not that record's hash): \
                     the record before it was changed or replaced"
                )));
            }
            if let (Some(key), Some(checkpoint)) = (key, &record.checkpoint) {
                if !checkpoint::verifies(key, expected, &prev, checkpoint) {
                    return Err(broken(format!(
                        "record {expected} is a checkpoint whose signature does not verify with this key: \
                         a record before it was changed and the chain re-hashed, or another key signed it"
                    )));
                }
                signed = Some((expected, checkpoint.every, checkpoint.closing));
            }
            seq = expected;
            prev = hash;
            last_place = Some((file.clone(), index + 1));
        }
    }
    if let (Some(_), Some((file, line))) = (key, last_place) {
        let problem = match signed {
            None => Some(
                "no record is signed by this key, though a signed log starts with a checkpoint: \
                 checkpoints were removed (and the chain re-hashed), or the log was not signed with it"
                    .to_string(),
            ),
            Some((through, every, _)) if seq - through > every => Some(format!(
                "the last {} records have no signed checkpoint, though one comes every {every} records: \
                 checkpoints were removed (and the chain re-hashed), or records were added without the key",
                seq - through
            )),
            Some(_) => None,
        };
        if let Some(problem) = problem {
            return Err(Broken {
                file,
                line,
                problem,
            });
        }
    }
    Ok(Verified {
        records: seq,
        last_hash: prev,
        signed_through: key.map(|_| signed.map_or(0, |(through, ..)| through)),
        closed: signed.is_some_and(|(through, _, closing)| closing && through == seq),
    })
}

struct Linked {
    seq: u64,
    prev: String,
    checkpoint: Option<checkpoint::Checkpoint>,
}

/// Checks a line's own hash; returns it with the record's links.
fn check_line(line: &str) -> Result<(String, Linked), String> {
    const MARK: &str = ",\"hash\":\"";
    let malformed = || "is not an audit record".to_string();
    let at = line.rfind(MARK).ok_or_else(malformed)?;
    let hash = line[at + MARK.len()..]
        .strip_suffix("\"}")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(malformed)?;
    let body = format!("{}}}", &line[..at]);
    let value: serde_json::Value = serde_json::from_str(&body).map_err(|_| malformed())?;
    let seq = value["seq"].as_u64().ok_or_else(malformed)?;
    if hex::encode(Sha256::digest(body.as_bytes())) != hash {
        return Err(format!(
            "record {seq} was altered: its content does not match its hash"
        ));
    }
    let prev = value["prev"].as_str().ok_or_else(malformed)?.to_string();
    let checkpoint = match value.get("checkpoint") {
        None => None,
        Some(c) => Some(serde_json::from_value(c.clone()).map_err(|_| malformed())?),
    };
    Ok((
        hash.to_string(),
        Linked {
            seq,
            prev,
            checkpoint,
        },
    ))
}
