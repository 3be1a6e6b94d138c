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
//! Not detected: changes to the records after the last checkpoint (at most
//! `every` of them while Moat runs, none after a clean shutdown), and the
//! removal of the file's tail together with its checkpoints (a truncation;
//! keep the last hash `verify` prints, or ship records elsewhere).

use ring::rand::SecureRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde::Serialize;
use std::path::Path;

/// What a checkpoint record carries (its `checkpoint` member).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Checkpoint {
    /// Records between checkpoints: a longer unsigned run means
    /// checkpoints were removed.
    pub every: u64,
    /// The public key, hex, naming the key that signed.
    pub key: String,
    /// The Ed25519 signature of [`message`], hex.
    pub signature: String,
}

/// The bytes a checkpoint at `seq`, following the record whose hash is
/// `prev`, signs.
pub fn message(seq: u64, prev: &str, every: u64) -> String {
    format!("moat audit checkpoint v1\nseq {seq}\nprev {prev}\nevery {every}\n")
}

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
        let seed = hex::decode(text.trim())
            .ok()
            .filter(|s| s.len() == 32)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{} is not an audit signing key (64 hex digits); make one with `moat audit keygen FILE`",
                    path.display()
                )
            })?;
        let key = Ed25519KeyPair::from_seed_unchecked(&seed)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let public = hex::encode(key.public_key().as_ref());
        Ok(Signer { key, public, every })
    }

    /// The checkpoint for record `seq`, which follows the record `prev`.
    pub fn sign(&self, seq: u64, prev: &str) -> Checkpoint {
        let signature = self.key.sign(message(seq, prev, self.every).as_bytes());
        Checkpoint {
            every: self.every,
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
    writeln!(file, "{}", hex::encode(seed))?;
    let public_file = format!("{}.pub", out.display());
    std::fs::write(&public_file, format!("{public}\n"))
        .map_err(|e| anyhow::anyhow!("cannot write {public_file}: {e}"))?;
    Ok(public)
}

/// A public key as given to `verify --key`: 64 hex digits, or a file
/// holding them.
pub fn public_key(given: &str) -> anyhow::Result<[u8; 32]> {
    let text = match std::fs::read_to_string(given) {
        Ok(text) => text,
        Err(_) => given.to_string(),
    };
    hex::decode(text.trim())
        .ok()
        .and_then(|k| <[u8; 32]>::try_from(k).ok())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{given:?} is neither a public key (64 hex digits) nor a file holding one"
            )
        })
}

/// Whether `signature` (hex) signs the checkpoint at `seq` after `prev`
/// with `key`.
pub fn verifies(key: &[u8; 32], seq: u64, prev: &str, every: u64, signature: &str) -> bool {
    let Ok(signature) = hex::decode(signature) else {
        return false;
    };
    UnparsedPublicKey::new(&ED25519, key)
        .verify(message(seq, prev, every).as_bytes(), &signature)
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
        let c = signer.sign(7, &prev);
        assert_eq!((c.every, c.key.as_str()), (10, public.as_str()));
        assert!(verifies(&key, 7, &prev, 10, &c.signature));
        assert!(!verifies(&key, 8, &prev, 10, &c.signature));
        assert!(!verifies(&key, 7, &"cd".repeat(32), 10, &c.signature));
        assert!(!verifies(&key, 7, &prev, 11, &c.signature));
        let other = public_key(&"11".repeat(32)).unwrap();
        assert!(!verifies(&other, 7, &prev, 10, &c.signature));
        // A second keygen never overwrites a key.
        assert!(generate(&path).is_err());
    }
}
