//! Signed checkpoints: every `every` records, before a rotation and at
//! shutdown, the log appends a record carrying an Ed25519 signature over
//! its own place in the chain (its sequence number and the hash of the
//! record before it). The hash chain alone shows edits only to someone who
//! trusts the file: whoever can write it can recompute every later hash.
//! A checkpoint can only be made with the private key, which is kept
//! outside the log, so `moat audit verify --key PUB` finds a rewritten
//! record as a checkpoint whose signature no longer verifies, and removed
//! checkpoints as a run of more than `every` unsigned records.
//!
//! The checkpoint written at a clean shutdown is marked closing, and
//! `verify --key PUB --closed` requires the log to end with one, so that
//! nothing after the last signature can be changed or cut off unseen.
//!
//! Not detected: changes to the records after the last checkpoint of a log
//! still being written (at most `every` of them) or one that did not stop
//! cleanly, unless `--closed` is asked for; the removal of a file's end
//! together with its checkpoints, again unless `--closed`; anything done
//! with the private key.

use ring::rand::SecureRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde::Serialize;
use std::path::Path;

/// What a checkpoint record carries (its `checkpoint` member).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Checkpoint {
    /// Records between checkpoints: a longer unsigned run means
    /// checkpoints were removed.
    pub every: u64,
    /// Written at a clean shutdown: nothing follows until Moat starts again.
    pub closing: bool,
    /// The public key, hex, naming the key that signed.
    pub key: String,
    /// The Ed25519 signature of [`message`], hex.
    pub signature: String,
}

/// The bytes a checkpoint at `seq`, following the record whose hash is
/// `prev`, signs.
pub fn message(seq: u64, prev: &str, every: u64, closing: bool) -> String {
    format!("moat audit checkpoint v1\nseq {seq}\nprev {prev}\nevery {every}\nclosing {closing}\n")
}

/// What the private key file starts with (so neither file can be taken
/// for the other).
const PRIVATE: &str = "moat-audit-private-key:";
/// What the public key file starts with.
const PUBLIC: &str = "moat-audit-public-key:";

/// The private key that makes checkpoints.
pub struct Signer {
    key: Ed25519KeyPair,
    public: String,
    /// Records between checkpoints.
    pub every: u64,
}

impl Signer {
    /// Reads the key file `moat audit keygen` wrote: the 32-byte seed, hex.
    pub fn load(path: &Path, every: u64) -> anyhow::Result<Signer> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            anyhow::anyhow!("cannot read the audit signing key {}: {e}", path.display())
        })?;
        let seed = text
            .trim()
            .strip_prefix(PRIVATE)
            .and_then(|h| hex::decode(h).ok())
            .filter(|s| s.len() == 32)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{} is not an audit signing key (a private key made by `moat audit keygen FILE`; \
                     the .pub file is the public key, for verify --key)",
                    path.display()
                )
            })?;
        let key = Ed25519KeyPair::from_seed_unchecked(&seed)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let public = hex::encode(key.public_key().as_ref());
        Ok(Signer { key, public, every })
    }

    /// The checkpoint for record `seq`, which follows the record `prev`.
    pub fn sign(&self, seq: u64, prev: &str, closing: bool) -> Checkpoint {
        let signature = self
            .key
            .sign(message(seq, prev, self.every, closing).as_bytes());
        Checkpoint {
            every: self.every,
            closing,
            key: self.public.clone(),
            signature: hex::encode(signature.as_ref()),
        }
    }
}

/// Makes a key pair: the private seed (hex) in `out`, readable by its
/// owner only, and the public key (hex) in `out.pub`; returns the public
/// key.
pub fn generate(out: &Path) -> anyhow::Result<String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut seed = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut seed)
        .map_err(|_| anyhow::anyhow!("the system's random source failed"))?;
    let key = Ed25519KeyPair::from_seed_unchecked(&seed)
        .map_err(|e| anyhow::anyhow!("cannot make a key: {e}"))?;
    let public = hex::encode(key.public_key().as_ref());
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", out.display()))?;
    writeln!(file, "{PRIVATE}{}", hex::encode(seed))?;
    let public_file = format!("{}.pub", out.display());
    let mut written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&public_file)
        .map_err(|e| anyhow::anyhow!("cannot create {public_file}: {e}"))?;
    writeln!(written, "{PUBLIC}{public}")?;
    Ok(public)
}

/// A public key as given to `verify --key`: the `.pub` file `keygen`
/// wrote, or the 64 hex digits in it.
pub fn public_key(given: &str) -> anyhow::Result<[u8; 32]> {
    let text = match std::fs::read_to_string(given) {
        Ok(text) => text,
        Err(_) => given.to_string(),
    };
    let text = text.trim();
    if text.starts_with(PRIVATE) {
        anyhow::bail!("{given} is the private key; give the public key (its .pub file)");
    }
    hex::decode(text.strip_prefix(PUBLIC).unwrap_or(text))
        .ok()
        .and_then(|k| <[u8; 32]>::try_from(k).ok())
        .ok_or_else(|| {
            anyhow::anyhow!("{given:?} is neither a public key (64 hex digits) nor a .pub file")
        })
}

/// Whether `checkpoint` signs its place, `seq` after `prev`, with `key`.
pub fn verifies(key: &[u8; 32], seq: u64, prev: &str, checkpoint: &Checkpoint) -> bool {
    let Ok(signature) = hex::decode(&checkpoint.signature) else {
        return false;
    };
    let message = message(seq, prev, checkpoint.every, checkpoint.closing);
    UnparsedPublicKey::new(&ED25519, key)
        .verify(message.as_bytes(), &signature)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_verifies_only_for_its_place_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.key");
        let public = generate(&path).unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let key = public_key(dir.path().join("audit.key.pub").to_str().unwrap()).unwrap();
        assert_eq!(hex::encode(key), public);
        let signer = Signer::load(&path, 10).unwrap();
        let prev = "ab".repeat(32);
        let c = signer.sign(7, &prev, false);
        assert_eq!((c.every, c.key.as_str()), (10, public.as_str()));
        assert!(verifies(&key, 7, &prev, &c));
        assert!(!verifies(&key, 8, &prev, &c));
        assert!(!verifies(&key, 7, &"cd".repeat(32), &c));
        for forged in [
            Checkpoint {
                every: 11,
                ..c.clone()
            },
            Checkpoint {
                closing: true,
                ..c.clone()
            },
        ] {
            assert!(!verifies(&key, 7, &prev, &forged));
        }
        let other = public_key(&"11".repeat(32)).unwrap();
        assert!(!verifies(&other, 7, &prev, &c));
        // Neither file serves as the other.
        assert!(Signer::load(&dir.path().join("audit.key.pub"), 10).is_err());
        assert!(public_key(path.to_str().unwrap()).is_err());
        // A second keygen never overwrites a key.
        assert!(generate(&path).is_err());
    }
}
