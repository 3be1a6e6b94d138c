//! Where plugins come from, and proof that they are what was meant.
//!
//! A plugin's `source` is a file, an `https://` URL pinned by digest, or an
//! `oci://` reference to a registry (see [`oci`]). Every download is
//! streamed into the [`store`] under a size limit and checked against the
//! digest it must have (the pin, or the OCI manifest's layer digest)
//! before anything compiles it; the store keeps it by digest, so a second
//! start works offline. [`signature`] checks publishers' detached minisign
//! signatures, and [`lock`] pins every source to what `moat lock` found.

pub mod config;
mod fetch;
pub(crate) use fetch::roots;
mod https;
pub mod lock;
mod oci;
pub mod signature;
mod store;

pub use config::{Login, RegistryConfig};
pub(crate) use config::{parse_registries, parse_source};
pub use fetch::{Artifact, FetchOptions, Fetcher, Provenance, install_crypto};
pub use signature::{Publisher, Signing, Trust};

use std::fmt;
use std::path::PathBuf;

/// Bytes a plugin may have, unless `[runtime] max_plugin_mib` says
/// otherwise: the largest components seen (Python ones) take about 20 MiB.
pub const DEFAULT_MAX_PLUGIN_BYTES: u64 = 128 << 20;

/// Where a plugin's component comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginSource {
    /// A file, resolved against the config file's folder.
    File(PathBuf),
    /// A URL whose bytes must have the configured `sha256`.
    Https(url::Url),
    /// An artifact in an OCI registry, by tag or digest.
    Oci(oci::OciRef),
}

impl fmt::Display for PluginSource {
    /// As the config writes it (a file as resolved).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginSource::File(path) => write!(f, "{}", path.display()),
            PluginSource::Https(url) => write!(f, "{url}"),
            PluginSource::Oci(reference) => write!(f, "{reference}"),
        }
    }
}

impl PluginSource {
    /// Whether fetching it may need the network.
    pub fn is_remote(&self) -> bool {
        !matches!(self, PluginSource::File(_))
    }
}

/// Why a plugin's bytes were refused or could not be had.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct FetchError {
    /// What happened, naming the source.
    pub message: String,
    /// What the operator should do.
    pub fix: String,
    /// Nothing answered (no connection, or no answer in time), as opposed
    /// to an answer that refused or was wrong.
    pub unreachable: bool,
}

impl FetchError {
    fn new(message: impl Into<String>, fix: impl Into<String>) -> FetchError {
        FetchError {
            message: message.into(),
            fix: fix.into(),
            unreachable: false,
        }
    }
}

/// `sha256:<hex>` as 64 lowercase hex digits, or `None`.
fn sha256_hex(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
    .then_some(hex)
}
