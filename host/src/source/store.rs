//! Downloaded plugins, kept by digest under the cache folder, so that a
//! second start needs no network.
//!
//! A download is counted against the size limit as it arrives (an
//! oversized one is cut off, never reaching the disk), hashed on the way,
//! and written (to a temporary file renamed into place) only once its
//! digest is the one it must have. Entries are re-hashed when read, and
//! trusted only when this user wrote them (as the compile cache's are).

use super::FetchError;
use super::signature::MAX_SIGNATURE_BYTES;
use crate::runtime::cache::check_owned;
use bytes::Bytes;
use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions};
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The folder of downloads.
pub struct Store {
    dir: Dir,
    path: PathBuf,
}

impl Store {
    /// Opens (creating, mode 0700) the store at `path`.
    pub fn open(path: &Path) -> anyhow::Result<Store> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)?;
        let dir = Dir::open_ambient_dir(path, ambient_authority())?;
        check_owned(&dir.dir_metadata()?, "the download folder")?;
        Ok(Store {
            dir,
            path: path.to_path_buf(),
        })
    }

    /// The bytes kept for `sha256`, if an entry of at most `limit` bytes
    /// exists, belongs to this user and still hashes to it.
    pub fn blob(&self, sha256: &str, limit: u64) -> Option<Vec<u8>> {
        let name = blob_name(sha256);
        let bytes = self.bytes(&name, limit)?;
        if hex::encode(Sha256::digest(&bytes)) == sha256 {
            Some(bytes)
        } else {
            tracing::warn!(store = %self.path.display(), "removing {name}: its bytes do not hash to its name");
            let _ = self.dir.remove_file(&name);
            None
        }
    }

    /// A small text entry (a signature, a tag's digest).
    pub fn text(&self, name: &str) -> Option<String> {
        String::from_utf8(self.bytes(name, MAX_SIGNATURE_BYTES)?).ok()
    }

    /// An entry of at most `limit` bytes that this user wrote.
    pub fn bytes(&self, name: &str, limit: u64) -> Option<Vec<u8>> {
        let mut file = self.dir.open(name).ok()?;
        let meta = file.metadata().ok()?;
        if let Err(e) = check_owned(&meta, name) {
            tracing::warn!(store = %self.path.display(), "ignoring {name}: {e:#}");
            return None;
        }
        if !meta.is_file() || meta.len() > limit {
            return None;
        }
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(&mut file, limit), &mut bytes).ok()?;
        Some(bytes)
    }

    /// Keeps a small entry (best effort: the store is a cache).
    pub fn put_bytes(&self, name: &str, bytes: &[u8]) {
        if let Err(e) = self.write(name, |file| file.write_all(bytes)) {
            tracing::warn!(store = %self.path.display(), "could not keep {name}: {e}");
        }
    }

    /// Keeps `bytes`, already checked to hash to `sha256`.
    pub fn put_blob(&self, sha256: &str, bytes: &[u8]) {
        if let Err(e) = self.write(&blob_name(sha256), |file| file.write_all(bytes)) {
            tracing::warn!(store = %self.path.display(), "could not keep the download: {e}");
        }
    }

    fn write(
        &self,
        name: &str,
        fill: impl FnOnce(&mut cap_std::fs::File) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let tmp = format!(".{name}.{}.partial", uuid::Uuid::new_v4());
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        let result = (|| {
            let mut file = self.dir.open_with(&tmp, &options)?;
            file.set_permissions(cap_std::fs::Permissions::from_std(
                std::fs::Permissions::from_mode(0o600),
            ))?;
            fill(&mut file)?;
            file.sync_all()?;
            self.dir.rename(&tmp, &self.dir, name)
        })();
        if result.is_err() {
            let _ = self.dir.remove_file(&tmp);
        }
        result
    }
}

fn blob_name(sha256: &str) -> String {
    format!("sha256-{sha256}.wasm")
}

/// Reads `stream` (the body of `what`, `size` bytes when that is known)
/// to its end, refusing it as soon as it passes `limit` bytes, and checks
/// that it hashes to `expected`.
pub async fn download<S, E>(
    mut stream: S,
    size: Option<u64>,
    limit: u64,
    expected: &str,
    what: &str,
) -> Result<Vec<u8>, FetchError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut bytes = Vec::new();
    let mut hasher = Sha256::new();
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            // A client that checks digests itself fails the stream after
            // its last chunk: with every byte here, the digest tells which.
            Err(_) if size == Some(bytes.len() as u64) => break,
            Err(e) => {
                return Err(FetchError::new(
                    format!("the download of {what} broke off: {e}"),
                    "check the network and try again",
                ));
            }
        };
        if (bytes.len() + chunk.len()) as u64 > limit {
            return Err(too_large(what, limit));
        }
        hasher.update(&chunk);
        bytes.extend_from_slice(&chunk);
    }
    let got = hex::encode(hasher.finalize());
    if got != expected {
        return Err(FetchError::new(
            format!(
                "digest mismatch: {what} should have sha256 {expected}, but its bytes have sha256 {got}"
            ),
            "the file changed after it was pinned, or something on the way altered it; do not load it until you know which",
        ));
    }
    Ok(bytes)
}

/// The refusal of something larger than `limit`.
pub fn too_large(what: &str, limit: u64) -> FetchError {
    FetchError::new(
        format!("{what} is larger than the limit of {} MiB", limit >> 20),
        "raise [runtime] max_plugin_mib if the plugin really is that large",
    )
}
