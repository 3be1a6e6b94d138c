//! Publishers' signatures: detached minisign (Ed25519) signatures of a
//! plugin's exact bytes, checked against the publishers the operator
//! trusts (`[[trust.publisher]]`) before the plugin is compiled.

use crate::diagnostics::{ConfigError, Source};
use base64::Engine as _;
use serde::Deserialize;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use toml::Spanned;

/// Bytes a `.minisig` file may have: a real one has about 300.
pub const MAX_SIGNATURE_BYTES: u64 = 4096;

/// A publisher the operator trusts.
#[derive(Clone, PartialEq, Eq)]
pub struct Publisher {
    /// The name the config gives it.
    pub name: String,
    /// Its minisign public key.
    key: minisign_verify::PublicKey,
    /// The key's ID as `minisign` prints it (16 uppercase hex digits).
    pub key_id: String,
}

impl fmt::Debug for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (key ID {})", self.name, self.key_id)
    }
}

/// `[trust]` of one endpoint: whom it trusts and whether every plugin must
/// be signed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trust {
    /// The publishers whose signatures count.
    pub publishers: Arc<Vec<Publisher>>,
    /// Every plugin of the endpoint must carry a trusted signature.
    pub require_signature: bool,
}

/// What one plugin's signature must be.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Signing {
    /// The endpoint's trusted publishers.
    pub publishers: Arc<Vec<Publisher>>,
    /// A trusted signature must be found.
    pub required: bool,
    /// Only this publisher's signature counts (`publisher = "…"`).
    pub publisher: Option<String>,
    /// Where the signature is, when not beside the source.
    pub signature: Option<SignatureAt>,
}

/// Where a signature is written in the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureAt {
    /// A file.
    File(PathBuf),
    /// An https:// URL.
    Url(url::Url),
}

impl fmt::Display for SignatureAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignatureAt::File(path) => write!(f, "{}", path.display()),
            SignatureAt::Url(url) => write!(f, "{url}"),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTrust {
    #[serde(default)]
    require_signature: bool,
    #[serde(default)]
    publisher: Vec<Spanned<RawPublisher>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPublisher {
    name: Spanned<String>,
    key: Spanned<String>,
}

/// Parses `[trust]`.
pub(crate) fn parse_trust(src: &Source, raw: RawTrust) -> Result<Trust, ConfigError> {
    let mut publishers: Vec<Publisher> = Vec::with_capacity(raw.publisher.len());
    for entry in raw.publisher {
        let entry = entry.into_inner();
        let name = entry.name.get_ref();
        if publishers.iter().any(|p| p.name == *name) {
            return Err(src.error(
                entry.name.span(),
                format!("publisher `{name}` is listed twice"),
                "give each [[trust.publisher]] a distinct name",
            ));
        }
        let text = entry.key.get_ref().trim();
        // The key as `minisign -G` prints it, or the whole .pub file.
        let parsed = if text.contains('\n') {
            minisign_verify::PublicKey::decode(text)
        } else {
            minisign_verify::PublicKey::from_base64(text)
        };
        let key_line = text.lines().last().unwrap_or_default();
        let (Ok(key), Some(key_id)) = (parsed, key_id(key_line, 2)) else {
            return Err(src.error(
                entry.key.span(),
                format!("the key of publisher `{name}` is not a minisign public key"),
                "paste the second line of the publisher's minisign.pub (it starts with RW)",
            ));
        };
        if let Some(other) = publishers.iter().find(|p| p.key_id == key_id) {
            // A signature names its key by ID: two publishers with one ID
            // could not be told apart.
            return Err(src.error(
                entry.key.span(),
                format!(
                    "the key of publisher `{name}` has key ID {key_id}, as publisher `{}`'s has",
                    other.name
                ),
                "list each key once; a publisher with several keys needs a distinct name for each",
            ));
        }
        publishers.push(Publisher {
            name: name.clone(),
            key,
            key_id,
        });
    }
    if raw.require_signature && publishers.is_empty() {
        return Err(src.error(
            0..0,
            "require_signature = true, but no publisher is trusted",
            "add [[trust.publisher]] with the name and minisign public key of each publisher whose plugins you run",
        ));
    }
    Ok(Trust {
        publishers: Arc::new(publishers),
        require_signature: raw.require_signature,
    })
}

/// The key ID in a minisign key or signature line (base64: two bytes of
/// algorithm, then eight of ID, little-endian), as `minisign` prints it.
fn key_id(line: &str, at: usize) -> Option<String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(line.trim())
        .ok()?;
    let id = bytes.get(at..at + 8)?;
    Some(id.iter().rev().map(|b| format!("{b:02X}")).collect())
}

/// Who signed a plugin, as far as it was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signer {
    /// A trusted publisher's signature verified.
    Publisher(String),
    /// No signature was needed and none was found.
    Unsigned,
}

impl Signing {
    /// Names whose signature counts, for messages.
    pub fn expected(&self) -> String {
        match &self.publisher {
            Some(name) => self.describe(name),
            None if self.publishers.is_empty() => "a trusted publisher (none is configured)".into(),
            None => {
                let names: Vec<String> = self
                    .publishers
                    .iter()
                    .map(|p| self.describe(&p.name))
                    .collect();
                format!("one of {}", names.join(", "))
            }
        }
    }

    fn describe(&self, name: &str) -> String {
        match self.publishers.iter().find(|p| p.name == name) {
            Some(p) => format!("publisher `{}` (key ID {})", p.name, p.key_id),
            None => format!("publisher `{name}`"),
        }
    }

    /// Whether a signature is looked for at all.
    pub fn wanted(&self) -> bool {
        self.required || !self.publishers.is_empty()
    }

    /// Checks `signature` (the text found at `at`, or `None` when there was
    /// none) over `bytes`; `Err` says what was expected and what was found.
    pub fn check(&self, bytes: &[u8], signature: Option<&str>, at: &str) -> Result<Signer, String> {
        let Some(text) = signature else {
            return if self.required {
                Err(format!(
                    "no signature was found at {at}; a signature by {} is required",
                    self.expected()
                ))
            } else {
                Ok(Signer::Unsigned)
            };
        };
        let parsed = minisign_verify::Signature::decode(text).map_err(|_| {
            format!(
                "the signature at {at} is not a minisign signature (a signature by {} was expected)",
                self.expected()
            )
        })?;
        let found = text
            .lines()
            .nth(1)
            .and_then(|line| key_id(line, 2))
            .unwrap_or_else(|| "?".into());
        let candidates: Vec<&Publisher> = self
            .publishers
            .iter()
            .filter(|p| self.publisher.as_ref().is_none_or(|name| *name == p.name))
            .filter(|p| p.key_id == found)
            .collect();
        let Some(publisher) = candidates.first() else {
            return Err(format!(
                "the signature at {at} was made with key ID {found}, not by {}",
                self.expected()
            ));
        };
        // Legacy (non-prehashed) signatures are refused: minisign has made
        // prehashed ones by default since 0.8.
        publisher.key.verify(bytes, &parsed, false).map_err(|e| {
            let why = match e {
                minisign_verify::Error::UnexpectedAlgorithm => {
                    "is a legacy signature; re-sign with a current minisign (prehashed)".to_string()
                }
                _ => format!(
                    "does not match the component's bytes: the plugin or its signature was altered after {} signed",
                    publisher.name
                ),
            };
            format!("the signature at {at} (key ID {found}, {}) {why}", publisher.name)
        })?;
        Ok(Signer::Publisher(publisher.name.clone()))
    }
}
