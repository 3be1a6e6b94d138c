//! Filesystem: preopened directories, read-only unless granted `rw`.
//!
//! WASI resolves every guest path inside a preopen with cap-std, so `..`,
//! absolute paths outside the preopens and symlinks that lead outside all
//! fail in the host, whatever the plugin does.
//!
//! A directory may be the caller's own: `host = "data/{tenant}/{subject}"`
//! names a folder per caller below a base folder (the path before the
//! first placeholder, which must exist). It is made on the caller's first
//! call, mode 0700, and opened one name at a time without following
//! symlinks, so nothing planted below the base can redirect it.

pub mod writes;

use super::per_caller::{MARKS, Placeholder, Principal, Segment, Template};
use crate::diagnostics::{ConfigError, Source};
use serde::Deserialize;
use std::collections::HashSet;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
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
    /// The host directory, canonical, checked to exist at load; for a
    /// per-caller directory, the base folder the caller's is made in.
    pub host: PathBuf,
    /// Below `host`, the names of the caller's folder; empty: `host` is
    /// the directory, the same for every caller.
    pub per_caller: Vec<Segment>,
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

/// `[plugin.grants] dirs`; `{tenant}` is allowed when the plugin serves
/// a tenant.
pub(super) fn parse(
    src: &Source,
    raw: Vec<Spanned<RawDir>>,
    in_tenant: bool,
) -> Result<Vec<DirGrant>, ConfigError> {
    let mut guests = HashSet::new();
    let mut dirs = Vec::with_capacity(raw.len());
    for entry in raw {
        let span = entry.span();
        let RawDir { host, guest, mode } = entry.into_inner();
        let (base, per_caller) = split_per_caller(host.get_ref(), in_tenant)
            .map_err(|(message, fix)| src.error(host.span(), message, fix))?;
        let resolved = src.resolve(base);
        let host_path = match resolved.canonicalize() {
            Ok(p) if p.is_dir() => p,
            _ => {
                return Err(src.error(
                    host.span(),
                    format!("directory `{base}` does not exist"),
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
            per_caller,
            guest: guest.into_inner(),
            mode,
        });
    }
    Ok(dirs)
}

/// A host path as its base folder and the per-caller names below it, or
/// the error's message and fix.
fn split_per_caller(path: &str, in_tenant: bool) -> Result<(&str, Vec<Segment>), (String, String)> {
    let names: Vec<&str> = path.split('/').collect();
    let Some(first) = names.iter().position(|n| Template::parse(n).is_some()) else {
        return Ok((path, Vec::new()));
    };
    let mut segments = Vec::new();
    for name in &names[first..] {
        let segment = match Template::parse(name) {
            Some(template) => match template.whole() {
                Some(Placeholder::Tenant) if !in_tenant => {
                    return Err((
                        format!(
                            "`{path}` names {{tenant}}, and this plugin serves the top-level endpoint, which has no tenant"
                        ),
                        "remove {tenant}, or configure the plugin under [tenants.NAME]".into(),
                    ));
                }
                Some(placeholder) => Segment::Value(placeholder),
                None => {
                    return Err((
                        format!(
                            "`{path}`: a placeholder must be a whole folder name, not part of `{name}`"
                        ),
                        "write it as its own component, such as \"data/{tenant}/{subject}\"".into(),
                    ));
                }
            },
            None if name.is_empty() || *name == "." || *name == ".." => {
                return Err((
                    format!("`{path}` has an empty, `.` or `..` name after a placeholder"),
                    "below the first placeholder, write plain folder names".into(),
                ));
            }
            None if name.starts_with(MARKS) => {
                return Err((
                    format!("`{path}`: `{name}` starts with a mark of callers' folders (`+`, `@`)"),
                    "name the folder without a leading `+` or `@`".into(),
                ));
            }
            None => Segment::Literal(name.to_string()),
        };
        segments.push(segment);
    }
    // Two tenants' callers with one subject are two people: a tenant's
    // folders are apart only if the tenant is in the path.
    if in_tenant && !segments.contains(&Segment::Value(Placeholder::Tenant)) {
        return Err((
            format!(
                "`{path}` names the caller but not {{tenant}}: another tenant's user with the same subject would share the folder"
            ),
            "add {tenant}, such as \"data/{tenant}/{subject}\"".into(),
        ));
    }
    // The base is the path up to the first placeholder's `/`.
    let base_len = names[..first].iter().map(|n| n.len() + 1).sum::<usize>();
    let base = match &path[..base_len.saturating_sub(1)] {
        "" if path.starts_with('/') => "/",
        "" => ".",
        base => base,
    };
    Ok((base, segments))
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

/// Preopens `dirs` for a call by `principal`; one that names the caller is
/// left out when nobody is verified.
pub(super) fn apply(
    dirs: &[DirGrant],
    wasi: &mut WasiCtxBuilder,
    principal: Option<&Principal>,
) -> anyhow::Result<()> {
    for dir in dirs {
        let perms = match dir.mode {
            Mode::Ro => FsPerms::ReadOnly,
            Mode::Rw => FsPerms::ReadWrite,
        };
        // The error names only the guest path: callers must not learn host paths.
        let unavailable = || anyhow::anyhow!("granted directory {} is unavailable", dir.guest);
        if dir.per_caller.is_empty() {
            wasi.preopened_dir(&dir.host, &dir.guest, perms)
                .map_err(|_| unavailable())?;
            continue;
        }
        let Some(who) = principal else { continue };
        let folder = open_per_caller(&dir.host, &dir.per_caller, who).map_err(|e| {
            tracing::warn!(guest = %dir.guest, "cannot make or open a caller's folder: {e}");
            unavailable()
        })?;
        // wasmtime-wasi preopens by path: the descriptor's own path in
        // /proc reopens exactly the folder opened above, wherever it is.
        wasi.preopened_dir(
            format!("/proc/self/fd/{}", folder.as_raw_fd()),
            &dir.guest,
            perms,
        )
        .map_err(|_| unavailable())?;
    }
    Ok(())
}

/// The folder of `who` below `base`, made (mode 0700) where missing. Each
/// name is one component that cannot be `.` or `..` (see
/// [`super::per_caller::component`]), and none is followed if it is a
/// symlink.
fn open_per_caller(base: &Path, segments: &[Segment], who: &Principal) -> std::io::Result<OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let mut dir = rustix::fs::open(base, flags, Mode::empty())?;
    for segment in segments {
        let name = segment.name(who);
        match rustix::fs::mkdirat(&dir, name.as_str(), Mode::RWXU) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        dir = rustix::fs::openat(&dir, name.as_str(), flags | OFlags::NOFOLLOW, Mode::empty())?;
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_caller_paths_split_into_a_base_and_names() {
        let split = |p| split_per_caller(p, true);
        let (base, names) = split("data/{tenant}/users/{subject}").unwrap();
        assert_eq!(base, "data");
        assert_eq!(
            names,
            [
                Segment::Value(Placeholder::Tenant),
                Segment::Literal("users".into()),
                Segment::Value(Placeholder::Subject),
            ]
        );
        let top = |p| split_per_caller(p, false);
        assert_eq!(top("/{subject}").unwrap().0, "/");
        assert_eq!(top("{subject}").unwrap().0, ".");
        assert_eq!(top("/srv/a/{subject}").unwrap().0, "/srv/a");
        assert_eq!(split("/srv/a").unwrap(), ("/srv/a", Vec::new()));
        for bad in [
            "data/user-{subject}",
            "data/{tenant}/{subject}/..",
            "data/{tenant}//x",
            "data/{tenant}/@x/{subject}",
            "data/{tenant}/+x",
            // A tenant's callers' folders must be apart from another's.
            "data/{subject}",
        ] {
            assert!(split(bad).is_err(), "{bad}");
        }
        let top = split_per_caller("data/{tenant}", false).unwrap_err();
        assert!(top.0.contains("top-level endpoint"), "{}", top.0);
    }

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
