//! The credential store: one file per credential in a folder of its own,
//! encrypted at rest with ChaCha20-Poly1305 (`ring`, the crate rustls
//! already brings), under a 32-byte key from the environment or a file.
//!
//! Two keys are derived from it with HKDF-SHA256: one encrypts, the other
//! names files (an HMAC of the owner), so the folder shows neither who has
//! a credential nor for what. Each file is bound to its owner twice: its
//! name is the additional authenticated data, so a file copied under
//! another owner's name does not decrypt, and the owner written inside is
//! compared on every read. Writes go to a temporary file, are synced, and
//! are renamed into place (mode 0600, folder 0700).

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use ring::{hkdf, hmac};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The format's version, the first byte of every file.
const VERSION: u8 = 1;

/// Whose credential, for which connection: the store's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// The tenant the caller came to; `None` at the top-level endpoint.
    pub tenant: Option<String>,
    /// The issuer that vouched for `subject`.
    pub issuer: String,
    /// The token's `sub`.
    pub subject: String,
    /// The connection's name.
    pub connection: String,
}

/// A caller's secret for one connection.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    /// What goes into requests: an access token or an API key.
    pub secret: String,
    /// An OAuth refresh token, if the provider gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// When `secret` stops working (seconds since the epoch), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// When it was stored (seconds since the epoch).
    pub stored_at: u64,
}

impl Credential {
    /// Whether `secret` has stopped working, or will within a minute (a
    /// request sent now should not fail on the way).
    pub fn expired(&self) -> bool {
        self.expires_at.is_some_and(|at| at <= super::now() + 60)
    }
}

impl std::fmt::Debug for Credential {
    /// Times only: the rest is secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("expires_at", &self.expires_at)
            .field("stored_at", &self.stored_at)
            .field("refreshable", &self.refresh_token.is_some())
            .finish_non_exhaustive()
    }
}

/// What a file holds, encrypted.
#[derive(Serialize, Deserialize)]
struct Sealed {
    owner: Owner,
    credential: Credential,
}

/// The encrypted credentials in one folder.
pub struct Store {
    dir: PathBuf,
    seal: LessSafeKey,
    names: hmac::Key,
    /// Seals connect links and OAuth `state` (see [`super::ticket`]).
    tickets: super::ticket::Sealer,
    /// Turns to refresh, by owner (striped: a few locks for any number of
    /// owners).
    refreshing: [tokio::sync::Mutex<()>; REFRESH_LOCKS],
}

/// How many owners' refreshes can run at once, at most.
const REFRESH_LOCKS: usize = 64;

/// How long one replica's turn to refresh a credential lasts at most: a
/// token request takes at most 20 s, connecting included.
pub const SHARED_REFRESH_LEASE: std::time::Duration = std::time::Duration::from_secs(30);

/// The limit store replicas share, which also takes turns to refresh.
static SHARED_REFRESHES: std::sync::OnceLock<std::sync::Arc<crate::quota::shared::LimitStore>> =
    std::sync::OnceLock::new();

/// Replicas sharing `store` take turns to refresh a credential: a
/// provider that rotates refresh tokens takes a second use of one as
/// theft. Set once per process.
pub fn share_refreshes(store: std::sync::Arc<crate::quota::shared::LimitStore>) {
    let _ = SHARED_REFRESHES.set(store);
}

/// One replica's turn to refresh a credential; given back when dropped.
pub struct SharedTurn {
    shared: std::sync::Arc<crate::quota::shared::LimitStore>,
    name: String,
    holder: String,
}

impl Drop for SharedTurn {
    fn drop(&mut self) {
        self.shared.end_lease(
            std::mem::take(&mut self.name),
            std::mem::take(&mut self.holder),
        );
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Stores are the same when they keep the same folder.
impl PartialEq for Store {
    fn eq(&self, other: &Self) -> bool {
        self.dir == other.dir
    }
}

impl Eq for Store {}

/// HKDF's output length for a `ring` key type.
struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

impl Store {
    /// The store in `dir` under `key` (made on first write).
    pub fn new(dir: PathBuf, key: &[u8; 32]) -> Store {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"moat credentials v1").extract(key);
        let derive = |info: &'static [u8], len: usize| {
            let mut bytes = vec![0; len];
            prk.expand(&[info], Len(len))
                .and_then(|okm| okm.fill(&mut bytes))
                .expect("HKDF-SHA256 gives up to 8160 bytes");
            bytes
        };
        let seal = derive(b"seal", CHACHA20_POLY1305.key_len());
        let names = derive(b"names", 32);
        let tickets = derive(b"tickets", CHACHA20_POLY1305.key_len());
        Store {
            dir,
            tickets: super::ticket::Sealer::new(&tickets),
            refreshing: std::array::from_fn(|_| tokio::sync::Mutex::new(())),
            seal: LessSafeKey::new(
                UnboundKey::new(&CHACHA20_POLY1305, &seal).expect("a 32-byte key"),
            ),
            names: hmac::Key::new(hmac::HMAC_SHA256, &names),
        }
    }

    /// Where the files are.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The sealer of this store's tickets.
    pub fn tickets(&self) -> &super::ticket::Sealer {
        &self.tickets
    }

    /// The file name of `owner`'s credential.
    fn name(&self, owner: &Owner) -> String {
        let text = serde_json::to_vec(owner).expect("an owner serialises");
        hex::encode(hmac::sign(&self.names, &text).as_ref())
    }

    /// `owner`'s credential, if stored (and it decrypts as theirs).
    pub fn get(&self, owner: &Owner) -> std::io::Result<Option<Credential>> {
        let name = self.name(owner);
        let bytes = match std::fs::read(self.dir.join(&name)) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let sealed = self.open(&name, bytes)?;
        if sealed.owner != *owner {
            return Err(invalid("a credential file names another owner"));
        }
        Ok(Some(sealed.credential))
    }

    /// Stores `credential` as `owner`'s, replacing any.
    pub fn put(&self, owner: &Owner, credential: &Credential) -> std::io::Result<()> {
        let name = self.name(owner);
        let plain = serde_json::to_vec(&Sealed {
            owner: owner.clone(),
            credential: credential.clone(),
        })?;
        let mut nonce = [0; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| std::io::Error::other("no random numbers"))?;
        let mut sealed = plain;
        self.seal
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(name.as_bytes()),
                &mut sealed,
            )
            .map_err(|_| std::io::Error::other("cannot encrypt"))?;
        self.make_dir()?;
        let mut file = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&self.dir)?;
        file.write_all(&[VERSION])?;
        file.write_all(&nonce)?;
        file.write_all(&sealed)?;
        file.as_file().sync_all()?;
        file.persist(self.dir.join(&name)).map_err(|e| e.error)?;
        Ok(())
    }

    /// `owner`'s turn to refresh across replicas sharing a limit store
    /// (`[limits] backend`), taken after [`Self::refreshing`]: waits while
    /// another replica holds it, at most [`SHARED_REFRESH_LEASE`] (its
    /// refresh ends within that, or its lease runs out). `None` without a
    /// shared store, or when it cannot be reached: each replica then
    /// refreshes on its own, as with none.
    pub async fn refreshing_shared(&self, owner: &Owner) -> Option<SharedTurn> {
        let shared = SHARED_REFRESHES.get()?.clone();
        let name = format!("moat:refresh:{}", self.name(owner));
        let holder = uuid::Uuid::new_v4().to_string();
        let until = tokio::time::Instant::now() + SHARED_REFRESH_LEASE;
        loop {
            match shared.try_lease(&name, &holder, SHARED_REFRESH_LEASE).await {
                Some(true) => {
                    return Some(SharedTurn {
                        shared,
                        name,
                        holder,
                    });
                }
                Some(false) if tokio::time::Instant::now() < until => {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                _ => return None,
            }
        }
    }

    /// `owner`'s turn to refresh: held, no other refresh of theirs runs in
    /// this process.
    pub async fn refreshing(&self, owner: &Owner) -> tokio::sync::MutexGuard<'_, ()> {
        let name = self.name(owner);
        let lock = usize::from_str_radix(&name[..2], 16).expect("hex") % REFRESH_LOCKS;
        self.refreshing[lock].lock().await
    }

    /// Stores `credential` as `owner`'s if what is stored is still the
    /// credential stored at `since`; whether it did.
    pub fn replace(
        &self,
        owner: &Owner,
        since: u64,
        credential: &Credential,
    ) -> std::io::Result<bool> {
        match self.get(owner)? {
            Some(current) if current.stored_at == since => {
                self.put(owner, credential)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Removes `owner`'s credential; whether there was one.
    pub fn remove(&self, owner: &Owner) -> std::io::Result<bool> {
        match std::fs::remove_file(self.dir.join(self.name(owner))) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every stored credential with its owner. A file that does not
    /// decrypt under this key is reported, not skipped silently.
    pub fn list(&self) -> std::io::Result<Vec<Result<(Owner, Credential), String>>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let opened = std::fs::read(entry.path()).and_then(|bytes| self.open(&name, bytes));
            found.push(match opened {
                Ok(sealed) if self.name(&sealed.owner) == name => {
                    Ok((sealed.owner, sealed.credential))
                }
                Ok(_) => Err(format!("{name}: names another owner")),
                Err(e) => Err(format!("{name}: {e}")),
            });
        }
        Ok(found)
    }

    /// Decrypts the file `name` holding `bytes`.
    fn open(&self, name: &str, mut bytes: Vec<u8>) -> std::io::Result<Sealed> {
        if bytes.len() < 1 + NONCE_LEN || bytes[0] != VERSION {
            return Err(invalid("not a credential file of this version"));
        }
        let nonce: [u8; NONCE_LEN] = bytes[1..1 + NONCE_LEN].try_into().expect("sliced");
        let sealed = &mut bytes[1 + NONCE_LEN..];
        let plain = self
            .seal
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(name.as_bytes()),
                sealed,
            )
            .map_err(|_| invalid("does not decrypt with this key (another key, or altered)"))?;
        serde_json::from_slice(plain).map_err(|_| invalid("holds no credential"))
    }

    /// Makes the folder, mode 0700, if missing.
    fn make_dir(&self) -> std::io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        match std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
        {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e),
        }
    }
}

fn invalid(why: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_string())
}

/// A key as written in `MOAT_CREDENTIALS_KEY` or its file: 32 bytes as 64
/// hex digits or as base64 (standard or URL-safe, padded or not).
pub fn parse_key(text: &str) -> Option<[u8; 32]> {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let text = text.trim();
    let bytes = hex::decode(text)
        .ok()
        .or_else(|| STANDARD.decode(text).ok())
        .or_else(|| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok())?;
    bytes.try_into().ok()
}

/// A fresh random key, as base64 (what `moat connections key` prints).
pub fn new_key() -> String {
    use base64::Engine as _;
    let mut key = [0; 32];
    SystemRandom::new()
        .fill(&mut key)
        .expect("the system's random numbers");
    base64::engine::general_purpose::STANDARD.encode(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(subject: &str) -> Owner {
        Owner {
            tenant: Some("acme".into()),
            issuer: "https://issuer.example".into(),
            subject: subject.into(),
            connection: "github".into(),
        }
    }

    fn credential(secret: &str) -> Credential {
        Credential {
            secret: secret.into(),
            refresh_token: Some("refresh-me".into()),
            expires_at: Some(2_000_000_000),
            stored_at: 1_900_000_000,
        }
    }

    #[test]
    fn credentials_are_kept_per_owner_and_encrypted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().join("creds"), &[7; 32]);
        assert_eq!(store.get(&owner("alice")).unwrap(), None);
        store
            .put(&owner("alice"), &credential("gho_alice_secret"))
            .unwrap();
        store.put(&owner("bob"), &credential("gho_bob")).unwrap();
        assert_eq!(
            store.get(&owner("alice")).unwrap().unwrap().secret,
            "gho_alice_secret"
        );
        assert_eq!(store.get(&owner("bob")).unwrap().unwrap().secret, "gho_bob");
        let other_tenant = Owner {
            tenant: Some("beta".into()),
            ..owner("alice")
        };
        assert_eq!(store.get(&other_tenant).unwrap(), None);

        // On disk: neither the secret nor the owner, in files of mode 0600
        // in a folder of mode 0700.
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(store.dir()), 0o700);
        for entry in std::fs::read_dir(store.dir()).unwrap() {
            let path = entry.unwrap().path();
            assert_eq!(mode(&path), 0o600, "{}", path.display());
            let bytes = std::fs::read(&path).unwrap();
            for needle in ["gho_", "alice", "refresh-me", "acme", "github"] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                    "{needle} is readable in {}",
                    path.display()
                );
            }
        }
        let listed = store.list().unwrap();
        assert_eq!(listed.len(), 2);
        assert!(listed.iter().all(Result::is_ok));

        assert!(store.remove(&owner("alice")).unwrap());
        assert!(!store.remove(&owner("alice")).unwrap());
        assert_eq!(store.get(&owner("alice")).unwrap(), None);
    }

    #[test]
    fn a_file_moved_to_another_owner_or_read_with_another_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().to_path_buf(), &[7; 32]);
        store.put(&owner("alice"), &credential("alice's")).unwrap();
        // Mallory copies alice's file over where hers would be.
        let alice = dir.path().join(store.name(&owner("alice")));
        let mallory = dir.path().join(store.name(&owner("mallory")));
        std::fs::copy(&alice, &mallory).unwrap();
        let e = store.get(&owner("mallory")).unwrap_err();
        assert!(e.to_string().contains("does not decrypt"), "{e}");

        let other = Store::new(dir.path().to_path_buf(), &[8; 32]);
        // Another key names files differently: nothing is found...
        assert_eq!(other.get(&owner("alice")).unwrap(), None);
        // ...and listing says what it cannot read.
        assert!(other.list().unwrap().iter().all(Result::is_err));

        // One altered byte, and the file is refused.
        let mut bytes = std::fs::read(&alice).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&alice, bytes).unwrap();
        assert!(store.get(&owner("alice")).is_err());
    }

    #[test]
    fn keys_are_hex_or_base64_of_32_bytes() {
        let key = new_key();
        assert!(parse_key(&key).is_some());
        assert_eq!(parse_key(&"ab".repeat(32)), Some([0xab; 32]));
        assert_eq!(parse_key(&format!("{key}\n")), parse_key(&key));
        assert_eq!(parse_key("too short"), None);
        assert_eq!(parse_key(&"ab".repeat(31)), None);
    }
}
