//! Where a configuration problem is and how to fix it: a leaf module that
//! the config parser and every capability's grant parser share, so that
//! neither imports the other for its errors.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// A place in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The config file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// A configuration problem: where, what, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {message}\n  fix: {fix}")]
pub struct ConfigError {
    /// Where the problem is.
    pub origin: Origin,
    /// What is wrong.
    pub message: String,
    /// What the operator should do.
    pub fix: String,
}

/// Maps byte offsets of one config file to lines, and builds errors there.
pub struct Source<'a> {
    file: &'a Path,
    text: &'a str,
    /// The folder that relative paths in the file are resolved against.
    pub base: PathBuf,
}

impl<'a> Source<'a> {
    /// The text of `file`, for errors in it.
    pub fn new(file: &'a Path, text: &'a str) -> Self {
        let base = file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Source { file, text, base }
    }

    /// The place at byte offset `at`.
    pub fn origin(&self, at: usize) -> Origin {
        let at = at.min(self.text.len());
        let before = &self.text[..at];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Origin {
            file: self.file.to_path_buf(),
            line,
            column,
        }
    }

    /// An error at `span`.
    pub fn error(
        &self,
        span: Range<usize>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            origin: self.origin(span.start),
            message: message.into(),
            fix: fix.into(),
        }
    }

    /// The value of `key`, checked to lie in `lo..=hi`.
    pub fn ranged(
        &self,
        value: &Spanned<u64>,
        key: &str,
        lo: u64,
        hi: u64,
    ) -> Result<u64, ConfigError> {
        let v = *value.get_ref();
        if (lo..=hi).contains(&v) {
            Ok(v)
        } else {
            Err(self.error(
                value.span(),
                format!("{key} = {v} is out of range"),
                format!("use a value from {lo} to {hi}"),
            ))
        }
    }

    /// Resolves a path written in the file against the file's folder.
    pub fn resolve(&self, path: &str) -> PathBuf {
        let path = Path::new(path);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base.join(path)
        }
    }
}
