//! Plugins in OCI registries, as `wkg`, `oras` and Wassette publish them:
//! an image manifest whose config has a WebAssembly media type and whose
//! one layer is the component (`application/wasm`).
//!
//! The client is `oci-client`, the ORAS project's Rust client of the OCI
//! distribution API: it speaks the token and basic auth flows registries
//! use and streams blobs, and it is the one Rust wasm hosts pull with.
//!
//! A publisher's signature is attached the way cosign users know: a tag
//! `sha256-<manifest digest>.sig` in the same repository, here an artifact
//! whose one layer is the `.minisig` of the component's bytes.

use super::config::RegistryConfig;
use super::store::{download, too_large};
use super::{FetchError, sha256_hex};
use base64::Engine as _;
use oci_client::errors::OciDistributionError;
use oci_client::manifest::{OciDescriptor, OciImageManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use sha2::{Digest, Sha256};
use std::fmt;
use std::time::Duration;

/// Config media types of WebAssembly artifacts: the CNCF layout's (`wkg`,
/// Wassette) and the older wasm-to-oci one's.
const CONFIG_TYPES: [&str; 2] = [
    "application/vnd.wasm.config.v0+json",
    "application/vnd.wasm.config.v1+json",
];

/// Layer media types of a component.
const LAYER_TYPES: [&str; 2] = [
    "application/wasm",
    "application/vnd.wasm.content.layer.v1+wasm",
];

/// Manifest types asked for (an index, which names images per platform,
/// is not a plugin).
const MANIFEST_TYPES: [&str; 2] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// Bytes a manifest kept in the store may have (a real one has about 500).
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;

/// How long a registry may take to answer for a manifest or a signature.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a layer's download may take in all.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(300);

/// Characters of a registry's error text kept in a message.
const MAX_ERROR_CHARS: usize = 300;

/// A parsed `oci://` reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciRef(Reference);

impl OciRef {
    /// Parses what follows `oci://`.
    pub fn parse(text: &str) -> Result<OciRef, String> {
        let reference = Reference::try_from(text).map_err(|e| e.to_string())?;
        if !text.contains('/')
            || !text
                .split('/')
                .next()
                .is_some_and(|r| r.contains(['.', ':']) || r == "localhost")
        {
            return Err("the registry must be named (such as ghcr.io/org/tool:1.0)".into());
        }
        if let Some(digest) = reference.digest()
            && sha256_hex(digest).is_none()
        {
            return Err(format!(
                "digest {digest} is not sha256:<64 lowercase hex digits>"
            ));
        }
        Ok(OciRef(reference))
    }

    /// The registry, `host[:port]`.
    pub fn registry(&self) -> &str {
        self.0.resolve_registry()
    }

    /// The manifest digest it names, if it names one.
    pub fn digest(&self) -> Option<&str> {
        self.0.digest()
    }

    /// Whether `other` names the same repository of the same registry.
    pub fn same_repository(&self, other: &OciRef) -> bool {
        self.0.resolve_registry() == other.0.resolve_registry()
            && self.0.repository() == other.0.repository()
    }

    /// The same repository at `digest`.
    pub fn at(&self, digest: &str) -> OciRef {
        OciRef(Reference::with_digest(
            self.0.registry().to_string(),
            self.0.repository().to_string(),
            digest.to_string(),
        ))
    }

    fn tagged(&self, tag: String) -> Reference {
        Reference::with_tag(
            self.0.registry().to_string(),
            self.0.repository().to_string(),
            tag,
        )
    }
}

impl fmt::Display for OciRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "oci://{}", self.0.whole())
    }
}

/// Registries as the config says to reach them.
pub struct Registries {
    client: Client,
    config: RegistryConfig,
}

impl Registries {
    /// A client for `config`'s registries, trusting `roots` (DER).
    pub fn new(config: &RegistryConfig, roots: &[Vec<u8>]) -> Registries {
        let roots = roots
            .iter()
            .map(|der| oci_client::client::Certificate {
                encoding: oci_client::client::CertificateEncoding::Der,
                data: der.clone(),
            })
            .collect();
        let client = Client::new(oci_client::client::ClientConfig {
            tls_certs_only: roots,
            protocol: oci_client::client::ClientProtocol::HttpsExcept(config.insecure.clone()),
            connect_timeout: Some(Duration::from_secs(10)),
            read_timeout: Some(Duration::from_secs(30)),
            // An index lists images per platform: a plugin has none.
            platform_resolver: None,
            user_agent: concat!("moat/", env!("CARGO_PKG_VERSION")),
            ..Default::default()
        });
        Registries {
            client,
            config: config.clone(),
        }
    }

    /// The credentials for `registry`: a `[[registries.login]]`, else the
    /// credentials file's entry, else none.
    fn auth(&self, registry: &str) -> Result<RegistryAuth, FetchError> {
        // Docker Hub is written docker.io and reached as index.docker.io.
        let named = |written: &str| {
            written == registry || (written == "docker.io" && registry == "index.docker.io")
        };
        let auth = match self.config.logins.iter().find(|l| named(&l.registry)) {
            Some(login) => RegistryAuth::Basic(login.username.clone(), login.password.clone()),
            None => match &self.config.credentials {
                Some(path) => docker_credentials(path, registry)?,
                None => RegistryAuth::Anonymous,
            },
        };
        if auth != RegistryAuth::Anonymous && self.config.insecure.iter().any(|i| named(i)) {
            return Err(FetchError::new(
                format!(
                    "credentials for {registry} would cross the network in the clear: it is listed in [registries] insecure"
                ),
                "serve the registry over HTTPS, or pull from it anonymously",
            ));
        }
        Ok(auth)
    }

    /// The manifest of `reference` (checked against its digest when it
    /// names one) and its digest.
    pub async fn manifest(&self, reference: &OciRef) -> Result<(Vec<u8>, String), FetchError> {
        let auth = self.auth(reference.registry())?;
        let pulled = self
            .client
            .pull_manifest_raw(&reference.0, &auth, &MANIFEST_TYPES);
        let (body, _) = in_time(reference, ANSWER_TIMEOUT, pulled).await?;
        // The digest is the body's sha256, whatever the registry says it is.
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&body)));
        if let Some(named) = reference.digest()
            && named != digest
        {
            return Err(FetchError::new(
                format!("digest mismatch: {reference} answered a manifest with digest {digest}"),
                "the registry serves other bytes than the digest names; do not pull from it until you know why",
            ));
        }
        Ok((body.to_vec(), digest))
    }

    /// The component `layer` of `reference`, streamed under `limit` and
    /// checked against the layer digest (`sha256`, its hex).
    pub async fn layer(
        &self,
        reference: &OciRef,
        layer: &OciDescriptor,
        sha256: &str,
        limit: u64,
    ) -> Result<Vec<u8>, FetchError> {
        let what = format!("the layer {} of {reference}", layer.digest);
        if u64::try_from(layer.size).unwrap_or(u64::MAX) > limit {
            return Err(too_large(&what, limit));
        }
        let pull = async {
            let stream = self
                .client
                .pull_blob_stream(&reference.0, layer)
                .await
                .map_err(|e| registry_error(reference, &e))?;
            if stream.content_length.is_some_and(|n| n > limit) {
                return Err(too_large(&what, limit));
            }
            let size = u64::try_from(layer.size).ok();
            download(stream, size, limit, sha256, &what).await
        };
        tokio::time::timeout(DOWNLOAD_TIMEOUT, pull)
            .await
            .unwrap_or_else(|_| Err(timed_out(reference, DOWNLOAD_TIMEOUT)))
    }

    /// The text of the signature tagged `sha256-<hex>.sig` beside the
    /// manifest `digest`; `None` when there is no such tag.
    pub async fn signature(
        &self,
        reference: &OciRef,
        digest: &str,
    ) -> Result<Option<String>, FetchError> {
        let tag = signature_tag(digest);
        let tagged = OciRef(reference.tagged(tag.clone()));
        let auth = self.auth(reference.registry())?;
        let pulled = tokio::time::timeout(
            ANSWER_TIMEOUT,
            self.client
                .pull_manifest_raw(&tagged.0, &auth, &MANIFEST_TYPES),
        )
        .await
        .map_err(|_| timed_out(&tagged, ANSWER_TIMEOUT))?;
        let body = match pulled {
            Ok((body, _)) => body,
            Err(e) if not_found(&e) => return Ok(None),
            Err(e) => return Err(registry_error(&tagged, &e)),
        };
        let manifest: OciImageManifest = serde_json::from_slice(&body).map_err(|e| {
            FetchError::new(
                format!("{tagged} is not an image manifest: {e}"),
                "attach the signature as described in README.md, \"Publish a plugin\"",
            )
        })?;
        let [layer] = &manifest.layers[..] else {
            return Err(FetchError::new(
                format!(
                    "{tagged} has {} layers; a signature has one, the .minisig file",
                    manifest.layers.len()
                ),
                "attach the signature as described in README.md, \"Publish a plugin\"",
            ));
        };
        let limit = super::signature::MAX_SIGNATURE_BYTES;
        let Some(sha256) = sha256_hex(&layer.digest).map(str::to_string) else {
            return Err(FetchError::new(
                format!("{tagged}: layer digest {} is not sha256", layer.digest),
                "attach the signature as described in README.md, \"Publish a plugin\"",
            ));
        };
        if u64::try_from(layer.size).unwrap_or(u64::MAX) > limit {
            return Err(FetchError::new(
                format!(
                    "{tagged} holds {} bytes, more than a minisign signature (cosign signatures are not read)",
                    layer.size
                ),
                "attach the .minisig file of the component",
            ));
        }
        let pull = async {
            let stream = self
                .client
                .pull_blob_stream(&tagged.0, layer)
                .await
                .map_err(|e| registry_error(&tagged, &e))?;
            let size = u64::try_from(layer.size).ok();
            let what = format!("the signature {tagged}");
            download(stream, size, limit, &sha256, &what).await
        };
        let bytes = tokio::time::timeout(ANSWER_TIMEOUT, pull)
            .await
            .unwrap_or_else(|_| Err(timed_out(&tagged, ANSWER_TIMEOUT)))?;
        String::from_utf8(bytes).map(Some).map_err(|_| {
            FetchError::new(
                format!("{tagged} is not a minisign signature (not text)"),
                "attach the .minisig file of the component",
            )
        })
    }
}

/// `sha256-<hex>.sig`, cosign's tag for the signature of a manifest.
pub fn signature_tag(digest: &str) -> String {
    format!("{}.sig", digest.replace(':', "-"))
}

/// The one component layer of a WebAssembly artifact's manifest, and its
/// sha256 (hex).
pub(super) fn wasm_layer(
    reference: &OciRef,
    body: &[u8],
) -> Result<(OciDescriptor, String), FetchError> {
    let fix = "publish the component as a WebAssembly OCI artifact: `wkg oci push`, or `oras push <ref> --config config.json:application/vnd.wasm.config.v0+json plugin.wasm:application/wasm`";
    let manifest: OciImageManifest = serde_json::from_slice(body)
        .map_err(|e| FetchError::new(format!("{reference} is not an image manifest: {e}"), fix))?;
    if !CONFIG_TYPES.contains(&manifest.config.media_type.as_str()) {
        return Err(FetchError::new(
            format!(
                "{reference} is not a WebAssembly artifact: its config has media type {}",
                manifest.config.media_type
            ),
            fix,
        ));
    }
    match &manifest.layers[..] {
        [layer] if LAYER_TYPES.contains(&layer.media_type.as_str()) => {
            let sha256 = sha256_hex(&layer.digest).ok_or_else(|| {
                FetchError::new(
                    format!(
                        "{reference}: its layer digest {} is not sha256",
                        layer.digest
                    ),
                    "publish the component with a sha256 digest",
                )
            })?;
            Ok((layer.clone(), sha256.to_string()))
        }
        layers => Err(FetchError::new(
            format!(
                "{reference} should have one application/wasm layer; it has {}",
                layers
                    .iter()
                    .map(|l| l.media_type.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            fix,
        )),
    }
}

/// `pulled`, or the refusal of a registry that did not answer in `limit`.
async fn in_time<T>(
    reference: &OciRef,
    limit: Duration,
    pulled: impl std::future::Future<Output = Result<T, OciDistributionError>>,
) -> Result<T, FetchError> {
    match tokio::time::timeout(limit, pulled).await {
        Ok(pulled) => pulled.map_err(|e| registry_error(reference, &e)),
        Err(_) => Err(timed_out(reference, limit)),
    }
}

fn timed_out(reference: &OciRef, limit: Duration) -> FetchError {
    FetchError {
        unreachable: true,
        ..FetchError::new(
            format!(
                "cannot pull {reference}: the registry did not answer within {} s",
                limit.as_secs()
            ),
            "check the registry's address and the network",
        )
    }
}

/// Whether the registry said there is no such manifest.
fn not_found(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::ServerError { code, .. } => *code == 404,
        OciDistributionError::RegistryError { envelope, .. } => envelope
            .errors
            .iter()
            .any(|e| e.code == oci_client::errors::OciErrorCode::ManifestUnknown),
        _ => false,
    }
}

/// What a registry (or the way to it) did wrong, in a message of bounded
/// length with its control characters escaped (a registry's words reach
/// the log).
fn registry_error(reference: &OciRef, e: &OciDistributionError) -> FetchError {
    let unreachable =
        matches!(e, OciDistributionError::RequestError(r) if r.is_connect() || r.is_timeout());
    let text = super::https::error_chain(e);
    let mut text: String = crate::runtime::printable(&text)
        .chars()
        .take(MAX_ERROR_CHARS)
        .collect();
    if text.len() < super::https::error_chain(e).len() {
        text.push('…');
    }
    FetchError {
        unreachable,
        ..FetchError::new(
            format!("cannot pull {reference}: {text}"),
            "check the reference, the registry's address and credentials ([registries]); a registry on plain HTTP must be listed in [registries] insecure",
        )
    }
}

/// The entry for `registry` in a Docker-style `config.json`.
fn docker_credentials(path: &std::path::Path, registry: &str) -> Result<RegistryAuth, FetchError> {
    let fail = |why: String| {
        FetchError::new(
            format!("the registry credentials file {} {why}", path.display()),
            "point [registries] credentials at a Docker config.json with an \"auths\" entry per registry",
        )
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot be read: {e}")))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| fail(format!("is not JSON: {e}")))?;
    let auths = json.get("auths").and_then(|a| a.as_object());
    // Keys may be a bare host or a URL (Docker Hub's is
    // https://index.docker.io/v1/).
    let host_of = |key: &str| {
        let rest = key.split_once("://").map_or(key, |(_, rest)| rest);
        rest.split('/').next().unwrap_or(rest).to_string()
    };
    let wanted = if registry == "docker.io" {
        "index.docker.io"
    } else {
        registry
    };
    let Some(entry) = auths.and_then(|a| {
        a.iter()
            .find(|(key, _)| host_of(key) == wanted || host_of(key) == registry)
            .map(|(_, v)| v)
    }) else {
        return Ok(RegistryAuth::Anonymous);
    };
    if let (Some(user), Some(pass)) = (
        entry.get("username").and_then(|v| v.as_str()),
        entry.get("password").and_then(|v| v.as_str()),
    ) {
        return Ok(RegistryAuth::Basic(user.into(), pass.into()));
    }
    let Some(encoded) = entry.get("auth").and_then(|v| v.as_str()) else {
        // A credential helper (credsStore) keeps it: Moat runs no helpers.
        tracing::warn!(
            "{} names {registry} without \"auth\" (a credential helper's entry?); pulling anonymously",
            path.display()
        );
        return Ok(RegistryAuth::Anonymous);
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            fail(format!(
                "has an \"auth\" for {registry} that is not base64 of user:password"
            ))
        })?;
    let (user, pass) = decoded.split_once(':').ok_or_else(|| {
        fail(format!(
            "has an \"auth\" for {registry} that is not user:password"
        ))
    })?;
    Ok(RegistryAuth::Basic(user.into(), pass.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_name_their_registry() {
        let r = OciRef::parse("127.0.0.1:5000/org/tool:1.2.0").unwrap();
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.to_string(), "oci://127.0.0.1:5000/org/tool:1.2.0");
        assert!(OciRef::parse("tool:1.0").is_err());
        assert!(OciRef::parse("ghcr.io/org/tool@sha256:abc").is_err());
        let digest = format!("sha256:{}", "a".repeat(64));
        let pinned = OciRef::parse(&format!("ghcr.io/org/tool@{digest}")).unwrap();
        assert_eq!(pinned.digest(), Some(digest.as_str()));
        assert_eq!(
            signature_tag(&digest),
            format!("sha256-{}.sig", "a".repeat(64))
        );
    }

    #[test]
    fn credentials_come_from_a_docker_config() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let auth = base64::engine::general_purpose::STANDARD.encode("me:secret");
        std::fs::write(
            &path,
            format!(r#"{{"auths": {{"https://index.docker.io/v1/": {{"auth": "{auth}"}}, "ghcr.io": {{"username": "u", "password": "p"}}}}}}"#),
        )
        .unwrap();
        assert_eq!(
            docker_credentials(&path, "docker.io").unwrap(),
            RegistryAuth::Basic("me".into(), "secret".into())
        );
        assert_eq!(
            docker_credentials(&path, "ghcr.io").unwrap(),
            RegistryAuth::Basic("u".into(), "p".into())
        );
        assert_eq!(
            docker_credentials(&path, "quay.io").unwrap(),
            RegistryAuth::Anonymous
        );
    }
}
