//! Filesystem: preopened directories, read-only unless granted `rw`.
//!
//! WASI resolves every guest path inside a preopen with cap-std, so `..`,
//! absolute paths outside the preopens and symlinks that lead outside all
//! fail in the host, whatever the plugin does.

pub mod writes;

use crate::diagnostics::{ConfigError, Source};
use serde::Deserialize;
use std::collections::HashSet;
use std::path::PathBuf;
use toml::Spanned;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

/// How a plugin may use a preopened directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Read files and list directories.
    #[default]
    Ro,
    /// Also create, write, rename and remove.
    Rw,
}

/// One preopened directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirGrant {
    /// The host directory, canonical, checked to exist at load.
    pub host: PathBuf,
    /// Where the plugin sees it, an absolute guest path such as `/data`.
    pub guest: String,
    /// Read-only or read-write.
    pub mode: Mode,
}

/// `{ host = "…", guest = "…", mode = "ro" | "rw" }` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDir {
    host: Spanned<String>,
    guest: Spanned<String>,
    #[serde(default)]
    mode: Mode,
}

pub(super) fn parse(src: &Source, raw: Vec<Spanned<RawDir>>) -> Result<Vec<DirGrant>, ConfigError> {
    let mut guests = HashSet::new();
    let mut dirs = Vec::with_capacity(raw.len());
    for entry in raw {
        let span = entry.span();
        let RawDir { host, guest, mode } = entry.into_inner();
        let resolved = src.resolve(host.get_ref());
        let host_path = match resolved.canonicalize() {
            Ok(p) if p.is_dir() => p,
            _ => {
                return Err(src.error(
                    host.span(),
                    format!("directory `{}` does not exist", host.get_ref()),
                    format!(
                        "create {} or correct `host` (relative paths start at the config file's folder)",
                        resolved.display()
                    ),
                ));
            }
        };
        if let Err(why) = check_guest_path(guest.get_ref()) {
            return Err(src.error(
                guest.span(),
                format!("guest path `{}` {why}", guest.get_ref()),
                "use an absolute, normalised path such as \"/data\"",
            ));
        }
        if !guests.insert(guest.get_ref().clone()) {
            return Err(src.error(
                span,
                format!("guest path `{}` is granted twice", guest.get_ref()),
                "give each directory its own guest path",
            ));
        }
        dirs.push(DirGrant {
            host: host_path,
            guest: guest.into_inner(),
            mode,
        });
    }
    Ok(dirs)
}

fn check_guest_path(path: &str) -> Result<(), &'static str> {
    if !path.starts_with('/') {
        return Err("is not absolute");
    }
    if path.contains('\0') {
        return Err("contains a NUL byte");
    }
    if path.len() > 1 && path.ends_with('/') {
        return Err("ends with `/`");
    }
    if path != "/"
        && path
            .split('/')
            .skip(1)
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err("has an empty, `.` or `..` component");
    }
    Ok(())
}

pub(super) fn apply(dirs: &[DirGrant], wasi: &mut WasiCtxBuilder) -> anyhow::Result<()> {
    for dir in dirs {
        let perms = match dir.mode {
            Mode::Ro => FsPerms::ReadOnly,
            Mode::Rw => FsPerms::ReadWrite,
        };
        // The error names only the guest path: callers must not learn host paths.
        wasi.preopened_dir(&dir.host, &dir.guest, perms)
            .map_err(|_| anyhow::anyhow!("granted directory {} is unavailable", dir.guest))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_paths() {
        for ok in ["/", "/data", "/data/sub", "/a-b_c"] {
            assert_eq!(check_guest_path(ok), Ok(()), "{ok}");
        }
        let bad = [
            ("data", "is not absolute"),
            ("/data/", "ends with `/`"),
            ("/data/../etc", "has an empty, `.` or `..` component"),
            ("/./data", "has an empty, `.` or `..` component"),
            ("//data", "has an empty, `.` or `..` component"),
            ("/da\0ta", "contains a NUL byte"),
        ];
        for (path, why) in bad {
            assert_eq!(check_guest_path(path), Err(why), "{path}");
        }
    }
}
