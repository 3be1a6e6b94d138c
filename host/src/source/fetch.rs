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
    registries: RegistryConfig,
    /// Built at the first remote source: a config of files needs no TLS.
    clients: OnceLock<Clients>,
    lock: Option<Arc<Lock>>,
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
}

/// The CA roots downloads trust, as DER: Mozilla's (which every other
/// outbound connection of the host trusts) and the system's
/// (`SSL_CERT_FILE` included), so that a private registry's CA can be
/// added and an image without a CA bundle still reaches public registries.
fn roots() -> Vec<Vec<u8>> {
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
    /// publisher's signature.
    pub async fn fetch(&self, plugin: &PluginConfig) -> Result<Artifact, FetchError> {
        let locked = match &self.lock {
            None => None,
            Some(lock) => Some(lock.entry(&plugin.source_text).ok_or_else(|| {
                FetchError::new(
                    format!(
                        "source `{}` is not in {}, and --locked runs only what the lock names",
                        plugin.source_text,
                        lock.path().display()
                    ),
                    "run `moat lock` after reviewing the plugin, and commit the lock file",
                )
            })?),
        };
        let (bytes, resolved, manifest) = match &plugin.source {
            // A file resolves to itself, as written: the lock stays true
            // wherever the config's folder is.
            PluginSource::File(path) => (self.file(path)?, plugin.source_text.clone(), None),
            PluginSource::Https(url) => {
                let pin = plugin
                    .sha256
                    .as_deref()
                    .expect("a URL source is pinned (config)");
                (self.https(url, pin).await?, url.to_string(), None)
            }
            PluginSource::Oci(reference) => {
                let target = match locked {
                    Some(entry) => OciRef::parse(entry.resolved.trim_start_matches("oci://"))
                        .map_err(|why| {
                            FetchError::new(
                                format!(
                                    "the lock's entry for `{}` names {}: {why}",
                                    entry.source, entry.resolved
                                ),
                                "run `moat lock` again",
                            )
                        })?,
                    None => reference.clone(),
                };
                let (bytes, digest) = self.oci(&target).await?;
                let resolved = target.at(&digest).to_string();
                (bytes, resolved, Some((target, digest)))
            }
        };
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
        if let Some(entry) = locked
            && entry.sha256 != sha256
        {
            return Err(FetchError::new(
                format!(
                    "digest mismatch: moat.lock says `{}` is sha256 {}, but it is now sha256 {sha256}",
                    plugin.source_text, entry.sha256
                ),
                "review the new plugin, then run `moat lock` to accept it",
            ));
        }
        let signer = self
            .signature(plugin, &bytes, &sha256, manifest.as_ref())
            .await?;
        if let Some(expected) = locked.and_then(|e| e.signer.as_ref())
            && signer.as_ref() != Some(expected)
        {
            return Err(FetchError::new(
                format!(
                    "moat.lock says `{}` was signed by publisher `{expected}`; now {}",
                    plugin.source_text,
                    signer.map_or(
                        "it carries no signature that was checked".into(),
                        |s| format!("publisher `{s}` signed it")
                    )
                ),
                "trust the publisher again in [[trust.publisher]], or run `moat lock` to accept the change",
            ));
        }
        Ok(Artifact {
            bytes,
            provenance: Provenance {
                source: plugin.source_text.clone(),
                resolved,
                sha256,
                signer,
            },
        })
    }

    /// What `plugin`'s source names now, without downloading it: for a
    /// tag, the digest the registry gives it today (for drift checks).
    pub async fn resolve_now(&self, reference: &OciRef) -> Result<String, FetchError> {
        self.clients().registries.resolve(reference).await
    }

    fn file(&self, path: &Path) -> Result<Vec<u8>, FetchError> {
        let cannot = |e: std::io::Error| {
            FetchError::new(
                format!("cannot read {}: {e}", path.display()),
                "check `source` and the file's permissions",
            )
        };
        let size = std::fs::metadata(path).map_err(cannot)?.len();
        if size > self.max_bytes {
            return Err(super::store::too_large(
                &path.display().to_string(),
                self.max_bytes,
            ));
        }
        std::fs::read(path).map_err(cannot)
    }

    async fn https(&self, url: &url::Url, pin: &str) -> Result<Vec<u8>, FetchError> {
        if let Some(bytes) = self.store.as_ref().and_then(|s| s.blob(pin)) {
            return Ok(bytes);
        }
        let bytes = https::fetch(&self.clients().http, url, pin, self.max_bytes).await?;
        if let Some(store) = &self.store {
            store.put_blob(pin, &bytes);
        }
        Ok(bytes)
    }

    /// The component `reference` names and its manifest digest. A tag is
    /// asked of the registry; when it cannot be reached, the digest the
    /// tag had at the last pull is used from the store.
    async fn oci(&self, reference: &OciRef) -> Result<(Vec<u8>, String), FetchError> {
        let tag_entry = format!("tag-{}", hex::encode(Sha256::digest(reference.to_string())));
        let (body, digest) = match reference.digest() {
            Some(digest) => match self.stored_manifest(digest) {
                Some(body) => (body, digest.to_string()),
                None => self.clients().registries.manifest(reference).await?,
            },
            None => match self.clients().registries.manifest(reference).await {
                Ok(found) => found,
                Err(e) => {
                    let cached = self
                        .store
                        .as_ref()
                        .and_then(|s| s.text(&tag_entry))
                        .and_then(|digest| {
                            let body = self.stored_manifest(&digest)?;
                            Some((body, digest))
                        });
                    let Some(cached) = cached else { return Err(e) };
                    tracing::warn!(
                        "{}; using {} as pulled last time",
                        e.message,
                        reference.at(&cached.1)
                    );
                    cached
                }
            },
        };
        let (layer, layer_hex) = wasm_layer(reference, &body)?;
        let bytes = match self.store.as_ref().and_then(|s| s.blob(&layer_hex)) {
            Some(bytes) => bytes,
            None => {
                let bytes = self
                    .clients()
                    .registries
                    .layer(reference, &layer, &layer_hex, self.max_bytes)
                    .await?;
                if let Some(store) = &self.store {
                    store.put_blob(&layer_hex, &bytes);
                }
                bytes
            }
        };
        if let Some(store) = &self.store {
            if let Some(hex) = super::sha256_hex(&digest) {
                store.put_text(
                    &format!("manifest-{hex}.json"),
                    &String::from_utf8_lossy(&body),
                );
            }
            if reference.digest().is_none() {
                store.put_text(&tag_entry, &digest);
            }
        }
        Ok((bytes, digest))
    }

    /// A manifest kept from an earlier pull, if it still hashes to `digest`.
    fn stored_manifest(&self, digest: &str) -> Option<Vec<u8>> {
        let hex = super::sha256_hex(digest)?;
        let body = self
            .store
            .as_ref()?
            .text(&format!("manifest-{hex}.json"))?
            .into_bytes();
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
                (read_small(path)?, path.display().to_string())
            }
            (Some(SignatureAt::Url(url)), _, _) => (
                https::text(&self.clients().http, url, MAX_SIGNATURE_BYTES).await?,
                url.to_string(),
            ),
            (None, PluginSource::File(path), _) => {
                let mut beside = path.clone().into_os_string();
                beside.push(".minisig");
                let beside = PathBuf::from(beside);
                (read_small(&beside)?, beside.display().to_string())
            }
            (None, PluginSource::Https(url), _) => {
                let beside = url::Url::parse(&format!("{url}.minisig")).map_err(|e| {
                    FetchError::new(
                        format!("cannot name the signature of {url}: {e}"),
                        "set `signature`",
                    )
                })?;
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
                    store.put_text(&kept, text);
                }
                Ok(Some(name))
            }
            Signer::Unsigned => Ok(None),
        }
    }
}

/// A signature file's text; `None` when there is no file.
fn read_small(path: &Path) -> Result<Option<String>, FetchError> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(FetchError::new(
                format!("cannot read the signature {}: {e}", path.display()),
                "check the file's permissions",
            ));
        }
    };
    if !meta.is_file() || meta.len() > MAX_SIGNATURE_BYTES {
        return Err(FetchError::new(
            format!(
                "{} is not a signature file (a regular file of at most {MAX_SIGNATURE_BYTES} bytes)",
                path.display()
            ),
            "point `signature` at the .minisig file",
        ));
    }
    std::fs::read_to_string(path).map(Some).map_err(|e| {
        FetchError::new(
            format!("cannot read the signature {}: {e}", path.display()),
            "check the file",
        )
    })
}
