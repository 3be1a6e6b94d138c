//! The on-disk cache of compiled plugins, so a restart does not recompile.
//!
//! Entries are keyed by the plugin's SHA-256 and a hash of the engine's
//! configuration, and are trusted only when this host could have written
//! them: the folder and file must belong to the current user and be
//! writable by no one else. Writes go to a temporary file that is renamed
//! into place, so a crash never leaves a torn entry.

use anyhow::{Context, bail};
use cap_std::ambient_authority;
use cap_std::fs::MetadataExt;
use cap_std::fs::{Dir, OpenOptions};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// A cache folder, opened once.
pub struct CompileCache {
    dir: Dir,
    path: PathBuf,
}

/// Whether a component came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded precompiled code.
    Hit,
    /// Compiled (and stored, when possible).
    Miss,
    /// No cache is configured.
    Disabled,
}

impl CompileCache {
    /// Opens (creating, mode 0700) the cache folder at `path`.
    pub fn open(path: &Path) -> anyhow::Result<CompileCache> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .with_context(|| format!("creating the compile cache {}", path.display()))?;
        let dir = Dir::open_ambient_dir(path, ambient_authority())
            .with_context(|| format!("opening the compile cache {}", path.display()))?;
        check_owned(&dir.dir_metadata()?, "the compile cache folder")?;
        Ok(CompileCache {
            dir,
            path: path.to_path_buf(),
        })
    }

    /// Where the cache lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The component for `bytes` (whose digest is `sha256`): from the cache
    /// when a trusted entry exists, else compiled and stored.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        bytes: &[u8],
        sha256: &str,
    ) -> anyhow::Result<(Component, CacheOutcome)> {
        // Code compiled by one engine configuration (with fuel checks or
        // without) is never loaded into another.
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        env!("CARGO_PKG_VERSION").hash(&mut hasher);
        let name = format!("{sha256}-{:016x}.cwasm", hasher.finish());
        if let Some(component) = self.load(engine, &name) {
            return Ok((component, CacheOutcome::Hit));
        }
        let component = Component::new(engine, bytes)?;
        if let Err(e) = self.store(&name, &component) {
            tracing::warn!(cache = %self.path.display(), "could not store compiled code: {e:#}");
        }
        Ok((component, CacheOutcome::Miss))
    }

    fn load(&self, engine: &Engine, name: &str) -> Option<Component> {
        let meta = self.dir.metadata(name).ok()?;
        if let Err(e) = check_owned(&meta, name) {
            tracing::warn!(cache = %self.path.display(), "ignoring cache entry: {e:#}");
            return None;
        }
        let bytes = self.dir.read(name).ok()?;
        // SAFETY: the entry was written by this host (checked above: owned
        // by us, writable by no one else) for these exact bytes (the name
        // carries their SHA-256) and this engine configuration (the name
        // carries its compatibility hash, which wasmtime checks again).
        match unsafe { Component::deserialize(engine, &bytes) } {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(cache = %self.path.display(), "ignoring cache entry {name}: {e:#}");
                None
            }
        }
    }

    fn store(&self, name: &str, component: &Component) -> anyhow::Result<()> {
        let bytes = component.serialize()?;
        let tmp = format!("{name}.{}.tmp", std::process::id());
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        let mut file = self.dir.open_with(&tmp, &options)?;
        file.set_permissions(cap_std::fs::Permissions::from_std(
            std::fs::Permissions::from_mode(0o600),
        ))?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        drop(file);
        self.dir.rename(&tmp, &self.dir, name)?;
        Ok(())
    }
}

/// Refuses a file or folder another user could have written.
pub(crate) fn check_owned(meta: &cap_std::fs::Metadata, what: &str) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        bail!(
            "{what} belongs to uid {}, not to this user ({me})",
            meta.uid()
        );
    }
    if meta.mode() & 0o022 != 0 {
        bail!(
            "{what} is writable by other users (mode {:o})",
            meta.mode() & 0o777
        );
    }
    Ok(())
}
