//! Getting a plugin's bytes, proving them, and saying where they came from.

use super::https;
use super::lock::Lock;
use super::oci::{OciRef, Registries, wasm_layer};
use super::signature::{MAX_SIGNATURE_BYTES, SignatureAt, Signer};
use super::store::Store;
use super::{FetchError, PluginSource, RegistryConfig};
use crate::config::PluginConfig;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// Where a plugin's bytes came from, as `moat.lock` and `moat check` give
/// it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    /// The `source` as the config writes it.
    pub source: String,
    /// What it resolved to: an OCI reference by manifest digest, the URL,
    /// or the file.
    pub resolved: String,
    /// SHA-256 of the component's bytes, lowercase hex.
    pub sha256: String,
    /// The trusted publisher whose signature verified, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
}

/// A plugin's bytes, proven.
pub struct Artifact {
    /// The component.
    pub bytes: Vec<u8>,
    /// Where they came from.
    pub provenance: Provenance,
}

/// Fetches plugins for one process: the download store, the registries,
/// the HTTPS client and (with `--locked`) the lock.
pub struct Fetcher {
    store: Option<Store>,
    max_bytes: u64,
    cached_tags: bool,
    registries: RegistryConfig,
    /// Built at the first remote source: a config of files needs no TLS.
    clients: OnceLock<Clients>,
    lock: Option<Arc<Lock>>,
}

/// What a source gave, before it is accepted.
struct Fetched {
    bytes: Vec<u8>,
    /// What the source resolved to (see [`Provenance::resolved`]).
    resolved: String,
    /// What to keep in the store once accepted.
    keep: Keep,
    /// For OCI: the reference by digest and the manifest digest, beside
    /// which the signature is tagged.
    manifest: Option<(OciRef, String)>,
}

/// Downloads to keep once the plugin is accepted.
#[derive(Default)]
struct Keep {
    /// The component's bytes.
    blob: bool,
    /// The manifest: its digest's hex and its bytes.
    manifest: Option<(String, Vec<u8>)>,
    /// The store entry of a tag, and the digest it named.
    tag: Option<(String, String)>,
}

/// The HTTP clients of downloads.
struct Clients {
    registries: Registries,
    http: reqwest::Client,
}

/// How the process fetches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchOptions {
    /// Where downloads are kept; `None`: nowhere (every start downloads).
    pub store: Option<PathBuf>,
    /// Bytes a plugin may have.
    pub max_bytes: u64,
    /// How registries are reached.
    pub registries: RegistryConfig,
    /// `--locked`: only what this lock says runs.
    pub lock: Option<Arc<Lock>>,
    /// When a registry cannot be reached at all, a tag may stand for the
    /// digest it had at the last accepted pull (serving keeps working
    /// offline); `moat check` and `moat lock` ask the registry or fail.
    pub cached_tags: bool,
}

/// The CA roots downloads trust, as DER: Mozilla's (which every other
/// outbound connection of the host trusts) and the system's
/// (`SSL_CERT_FILE` included), so that a private registry's CA can be
/// added and an image without a CA bundle still reaches public registries.
pub(crate) fn roots() -> Vec<Vec<u8>> {
    let mut roots: Vec<Vec<u8>> = webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .map(|c| c.to_vec())
        .collect();
    let system = rustls_native_certs::load_native_certs();
    for e in &system.errors {
        tracing::debug!("system CA certificates: {e}");
    }
    roots.extend(system.certs.iter().map(|c| c.to_vec()));
    roots
}

/// Makes ring rustls's process-wide provider, which the HTTP clients of
/// downloads and registries build on (once; later calls change nothing).
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Fetcher {
    /// A fetcher with `options`.
    pub fn new(options: &FetchOptions) -> Fetcher {
        let store = options
            .store
            .as_deref()
            .and_then(|path| match Store::open(path) {
                Ok(store) => Some(store),
                Err(e) => {
                    tracing::warn!(store = %path.display(), "downloads are not kept: {e:#}");
                    None
                }
            });
        Fetcher {
            store,
            max_bytes: options.max_bytes,
            cached_tags: options.cached_tags,
            registries: options.registries.clone(),
            clients: OnceLock::new(),
            lock: options.lock.clone(),
        }
    }

    fn clients(&self) -> &Clients {
        self.clients.get_or_init(|| {
            install_crypto();
            let roots = roots();
            Clients {
                registries: Registries::new(&self.registries, &roots),
                http: https::client(&roots),
            }
        })
    }

    /// The bytes of `plugin`, checked against its pin, the lock and its
    /// publisher's signature. Only bytes that pass are kept in the store.
    pub async fn fetch(&self, plugin: &PluginConfig) -> Result<Artifact, FetchError> {
        let locked = match &self.lock {
            None => None,
            Some(lock) => Some(locked_entry(lock, plugin)?),
        };
        let fetched = match &plugin.source {
            // A file resolves to itself, as written: the lock stays true
            // wherever the config's folder is.
            PluginSource::File(path) => Fetched {
                bytes: read_limited(path, self.max_bytes, "the component")?.ok_or_else(|| {
                    FetchError::new(
                        format!("{} is gone", path.display()),
                        "build the plugin, or correct `source`",
                    )
                })?,
                resolved: plugin.source_text.clone(),
                keep: Keep::default(),
                manifest: None,
            },
            PluginSource::Https(url) => {
                let pin = plugin
                    .sha256
                    .as_deref()
                    .expect("a URL source is pinned (config)");
                self.https(url, pin).await?
            }
            PluginSource::Oci(reference) => {
                let target = match &locked {
                    Some((_, Some(by_digest))) => by_digest.clone(),
                    _ => reference.clone(),
                };
                self.oci(&target).await?
            }
        };
        let bytes = fetched.bytes;
        let sha256 = hex::encode(Sha256::digest(&bytes));
        if let Some(pin) = &plugin.sha256
            && *pin != sha256
        {
            return Err(FetchError::new(
                format!(
                    "digest mismatch: the config pins sha256 {pin}, but {} has sha256 {sha256}",
                    plugin.source
                ),
                "restore the pinned build, or, if you trust the new one, set sha256 to the new digest",
            ));
        }
        if let Some((entry, _)) = &locked
            && entry.sha256 != sha256
        {
            return Err(FetchError::new(
                format!(
                    "digest mismatch: the lock file says `{}` is sha256 {}, but {} has sha256 {sha256}",
                    plugin.source_text, entry.sha256, fetched.resolved
                ),
                "review the plugin, then run `moat lock` to accept it",
            ));
        }
        let signer = self
            .signature(plugin, &bytes, &sha256, fetched.manifest.as_ref())
            .await?;
        if let Some(expected) = locked.as_ref().and_then(|(e, _)| e.signer.as_ref())
            && signer.as_ref() != Some(expected)
        {
            return Err(FetchError::new(
                format!(
                    "the lock file says `{}` was signed by publisher `{expected}`; now {}",
                    plugin.source_text,
                    signer.map_or(
                        "it carries no signature that was checked".into(),
                        |s| format!("publisher `{s}` signed it")
                    )
                ),
                "trust the publisher again in [[trust.publisher]], or run `moat lock` to accept the change",
            ));
        }
        self.keep(&fetched.keep, &sha256, &bytes);
        Ok(Artifact {
            bytes,
            provenance: Provenance {
                source: plugin.source_text.clone(),
                resolved: fetched.resolved,
                sha256,
                signer,
            },
        })
    }

    /// Keeps what an accepted fetch downloaded.
    fn keep(&self, keep: &Keep, sha256: &str, bytes: &[u8]) {
        let Some(store) = &self.store else { return };
        if keep.blob {
            store.put_blob(sha256, bytes);
        }
        if let Some((hex, body)) = &keep.manifest {
            store.put_bytes(&manifest_entry(hex), body);
        }
        if let Some((entry, digest)) = &keep.tag {
            store.put_bytes(entry, digest.as_bytes());
        }
    }

    async fn https(&self, url: &url::Url, pin: &str) -> Result<Fetched, FetchError> {
        let stored = self
            .store
            .as_ref()
            .and_then(|s| s.blob(pin, self.max_bytes));
        let blob = stored.is_none();
        let bytes = match stored {
            Some(bytes) => bytes,
            None => https::fetch(&self.clients().http, url, pin, self.max_bytes).await?,
        };
        Ok(Fetched {
            bytes,
            resolved: url.to_string(),
            keep: Keep {
                blob,
                ..Keep::default()
            },
            manifest: None,
        })
    }

    /// The component `reference` names. A tag is asked of the registry;
    /// only when the registry cannot be reached at all (and the fetcher
    /// may) is the digest it had at the last accepted pull used.
    async fn oci(&self, reference: &OciRef) -> Result<Fetched, FetchError> {
        let tag_entry = format!("tag-{}", hex::encode(Sha256::digest(reference.to_string())));
        let mut keep = Keep::default();
        let (body, digest) = match reference.digest() {
            Some(digest) => match self.stored_manifest(digest) {
                Some(body) => (body, digest.to_string()),
                None => self.clients().registries.manifest(reference).await?,
            },
            None => match self.clients().registries.manifest(reference).await {
                Ok(found) => {
                    keep.tag = Some((tag_entry, found.1.clone()));
                    found
                }
                Err(e) if e.unreachable && self.cached_tags => {
                    let cached = self
                        .store
                        .as_ref()
                        .and_then(|s| s.text(&tag_entry))
                        .and_then(|digest| Some((self.stored_manifest(&digest)?, digest)));
                    let Some(cached) = cached else { return Err(e) };
                    tracing::warn!(
                        "{}; using {} as accepted at the last start",
                        e.message,
                        reference.at(&cached.1)
                    );
                    cached
                }
                Err(e) => return Err(e),
            },
        };
        if let Some(hex) = super::sha256_hex(&digest) {
            keep.manifest = Some((hex.to_string(), body.clone()));
        }
        let (layer, layer_hex) = wasm_layer(reference, &body)?;
        let stored = self
            .store
            .as_ref()
            .and_then(|s| s.blob(&layer_hex, self.max_bytes));
        let bytes = match stored {
            Some(bytes) => bytes,
            None => {
                keep.blob = true;
                self.clients()
                    .registries
                    .layer(reference, &layer, &layer_hex, self.max_bytes)
                    .await?
            }
        };
        let by_digest = reference.at(&digest);
        Ok(Fetched {
            bytes,
            resolved: by_digest.to_string(),
            keep,
            manifest: Some((by_digest, digest)),
        })
    }

    /// A manifest kept from an earlier pull, if it still hashes to `digest`.
    fn stored_manifest(&self, digest: &str) -> Option<Vec<u8>> {
        let hex = super::sha256_hex(digest)?;
        let body = self
            .store
            .as_ref()?
            .bytes(&manifest_entry(hex), super::oci::MAX_MANIFEST_BYTES)?;
        (hex::encode(Sha256::digest(&body)) == hex).then_some(body)
    }

    /// Finds and checks the plugin's signature; `Some(publisher)` when a
    /// trusted one verified.
    async fn signature(
        &self,
        plugin: &PluginConfig,
        bytes: &[u8],
        sha256: &str,
        manifest: Option<&(OciRef, String)>,
    ) -> Result<Option<String>, FetchError> {
        let signing = &plugin.signing;
        if !signing.wanted() {
            return Ok(None);
        }
        let refuse = |why: String| {
            FetchError::new(
                format!("signature refused for the component with sha256 {sha256}: {why}"),
                "sign the exact component with the publisher's key (`minisign -Sm plugin.wasm`), or correct [[trust.publisher]]",
            )
        };
        let kept = format!("sig-{sha256}.minisig");
        // A signature kept from an earlier start that still verifies needs
        // no network.
        if plugin.source.is_remote()
            && let Some(text) = self.store.as_ref().and_then(|s| s.text(&kept))
            && let Ok(Signer::Publisher(name)) = signing.check(bytes, Some(&text), "the store")
        {
            return Ok(Some(name));
        }
        let (text, at) = match (&signing.signature, &plugin.source, manifest) {
            (Some(SignatureAt::File(path)), _, _) => {
                (read_signature(path)?, path.display().to_string())
            }
            (Some(SignatureAt::Url(url)), _, _) => (
                https::text(&self.clients().http, url, MAX_SIGNATURE_BYTES).await?,
                url.to_string(),
            ),
            (None, PluginSource::File(path), _) => {
                let mut beside = path.clone().into_os_string();
                beside.push(".minisig");
                let beside = PathBuf::from(beside);
                (read_signature(&beside)?, beside.display().to_string())
            }
            (None, PluginSource::Https(url), _) => {
                let mut beside = url.clone();
                beside.set_path(&format!("{}.minisig", url.path()));
                (
                    https::text(&self.clients().http, &beside, MAX_SIGNATURE_BYTES).await?,
                    beside.to_string(),
                )
            }
            (None, PluginSource::Oci(_), Some((reference, digest))) => (
                self.clients()
                    .registries
                    .signature(reference, digest)
                    .await?,
                format!(
                    "{} (tag {})",
                    reference.at(digest),
                    super::oci::signature_tag(digest)
                ),
            ),
            (None, PluginSource::Oci(_), None) => unreachable!("an OCI plugin has a manifest"),
        };
        match signing.check(bytes, text.as_deref(), &at).map_err(refuse)? {
            Signer::Publisher(name) => {
                if let (Some(store), Some(text), true) =
                    (&self.store, &text, plugin.source.is_remote())
                {
                    store.put_bytes(&kept, text.as_bytes());
                }
                Ok(Some(name))
            }
            Signer::Unsigned => Ok(None),
        }
    }
}

/// A signature file's text; `None` when there is no file.
fn read_signature(path: &Path) -> Result<Option<String>, FetchError> {
    let Some(bytes) = read_limited(path, MAX_SIGNATURE_BYTES, "the signature")? else {
        return Ok(None);
    };
    String::from_utf8(bytes).map(Some).map_err(|_| {
        FetchError::new(
            format!("{} is not a minisign signature (not text)", path.display()),
            "point `signature` at the .minisig file",
        )
    })
}

/// A regular file's bytes, read through one descriptor and refused past
/// `limit` bytes however it grows meanwhile; `None` when there is no file.
fn read_limited(path: &Path, limit: u64, what: &str) -> Result<Option<Vec<u8>>, FetchError> {
    use std::io::Read;
    let cannot = |e: std::io::Error| {
        FetchError::new(
            format!("cannot read {what} {}: {e}", path.display()),
            "check the path and the file's permissions",
        )
    };
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(cannot(e)),
    };
    if !file.metadata().map_err(cannot)?.is_file() {
        return Err(FetchError::new(
            format!("{what} {} is not a regular file", path.display()),
            "point the config at the file itself",
        ));
    }
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > limit {
        return Err(super::store::too_large(
            &format!("{what} {}", path.display()),
            limit,
        ));
    }
    Ok(Some(bytes))
}

/// The store's name of the manifest whose digest is `sha256:<hex>`.
fn manifest_entry(hex: &str) -> String {
    format!("manifest-{hex}.json")
}

/// The lock's entry for `plugin`, checked to say what its source can
/// resolve to: an OCI entry names the same repository by digest (given as
/// the reference to pull), any other names the source itself.
fn locked_entry<'l>(
    lock: &'l Lock,
    plugin: &PluginConfig,
) -> Result<(&'l Provenance, Option<OciRef>), FetchError> {
    let entry = lock.entry(&plugin.source_text).ok_or_else(|| {
        FetchError::new(
            format!(
                "source `{}` is not in {}, and --locked runs only what the lock names",
                plugin.source_text,
                lock.path().display()
            ),
            "run `moat lock` after reviewing the plugin, and commit the lock file",
        )
    })?;
    let wrong = |why: &str| {
        FetchError::new(
            format!(
                "the entry of {} for `{}` {why}",
                lock.path().display(),
                plugin.source_text
            ),
            "run `moat lock` again; a lock file is written by Moat, not by hand",
        )
    };
    if entry.sha256.len() != 64
        || !entry
            .sha256
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return Err(wrong("has a sha256 that is not 64 lowercase hex digits"));
    }
    match &plugin.source {
        PluginSource::Oci(source) => {
            let by_digest = entry
                .resolved
                .strip_prefix("oci://")
                .and_then(|r| OciRef::parse(r).ok())
                .filter(|r| r.digest().is_some() && r.same_repository(source))
                .ok_or_else(|| {
                    wrong(&format!(
                        "resolves to {}, which is not {source}'s repository by digest",
                        entry.resolved
                    ))
                })?;
            Ok((entry, Some(by_digest)))
        }
        PluginSource::Https(url) if entry.resolved != url.as_str() => Err(wrong(&format!(
            "resolves to {}, not to the URL",
            entry.resolved
        ))),
        PluginSource::File(_) if entry.resolved != plugin.source_text => Err(wrong(&format!(
            "resolves to {}, not to the file",
            entry.resolved
        ))),
        _ => Ok((entry, None)),
    }
}
