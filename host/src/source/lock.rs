//! `moat.lock`: every plugin source resolved to the digest it had when the
//! operator reviewed it, so that `moat serve --locked` runs exactly that
//! and `moat check` can tell when a tag has moved.

use super::fetch::Provenance;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The lock file's format version.
const VERSION: u32 = 1;

/// A lock file, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    path: PathBuf,
    entries: Vec<Provenance>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    version: u32,
    #[serde(default, rename = "plugin")]
    entries: Vec<Provenance>,
}

impl Lock {
    /// The lock file of the config at `config`: `moat.toml` → `moat.lock`.
    pub fn beside(config: &Path) -> PathBuf {
        config.with_extension("lock")
    }

    /// Reads the lock at `path`.
    pub fn read(path: &Path) -> anyhow::Result<Lock> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            anyhow::anyhow!(
                "cannot read the lock file {}: {e}; run `moat lock` to write it",
                path.display()
            )
        })?;
        let file: File = toml::from_str(&text).map_err(|e| {
            anyhow::anyhow!("{} is not a lock file Moat wrote: {e}", path.display())
        })?;
        let mut sources = std::collections::HashSet::new();
        if let Some(twice) = file.entries.iter().find(|e| !sources.insert(&e.source)) {
            anyhow::bail!(
                "{} names source `{}` twice; run `moat lock` again",
                path.display(),
                twice.source
            );
        }
        if file.version != VERSION {
            anyhow::bail!(
                "{} has version {}; this Moat reads version {VERSION}: run `moat lock` again",
                path.display(),
                file.version
            );
        }
        Ok(Lock {
            path: path.to_path_buf(),
            entries: file.entries,
        })
    }

    /// Writes `entries` (one per source) to `path`, atomically; two entries
    /// for one source (two endpoints) must agree.
    pub fn write(path: &Path, mut entries: Vec<Provenance>) -> anyhow::Result<()> {
        if let Some((a, b)) = entries.iter().enumerate().find_map(|(i, a)| {
            entries[i + 1..]
                .iter()
                .find(|b| b.source == a.source && *b != a)
                .map(|b| (a, b))
        }) {
            anyhow::bail!(
                "source `{}` resolves to two things at two endpoints ({} signed by {:?}, and {} signed by {:?}); give them different sources",
                a.source,
                a.resolved,
                a.signer,
                b.resolved,
                b.signer
            );
        }
        entries.sort_by(|a, b| a.source.cmp(&b.source));
        entries.dedup_by(|a, b| a.source == b.source);
        let body = toml::to_string(&File {
            version: VERSION,
            entries,
        })?;
        let text = format!(
            "# Written by `moat lock`: the exact plugins `moat serve --locked` runs.\n\
             # Review changes to it as you would review the plugins themselves.\n{body}"
        );
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        std::io::Write::write_all(&mut tmp, text.as_bytes())?;
        tmp.persist(path)?;
        Ok(())
    }

    /// Where it was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The entry for a source as the config writes it.
    pub fn entry(&self, source: &str) -> Option<&Provenance> {
        self.entries.iter().find(|e| e.source == source)
    }

    /// Every entry.
    pub fn entries(&self) -> &[Provenance] {
        &self.entries
    }
}
