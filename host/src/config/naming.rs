//! How a plugin's tools are named to clients: `<plugin>.<tool>` by
//! default, another prefix (`prefix = "gh"`), none (`prefix = ""`), or a
//! name of the operator's choosing per tool (`[plugin.rename]`).

use crate::diagnostics::{ConfigError, Source};
use std::collections::BTreeMap;
use toml::Spanned;

/// A plugin's naming.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Naming {
    /// What goes before `.<tool>`; `None`: the plugin's name; `""`: nothing
    /// (the tool's own name alone).
    pub prefix: Option<String>,
    /// The plugin's tool name, and the whole name clients see instead.
    pub renames: BTreeMap<String, String>,
    /// Serve none of its resources (`resources = false`).
    pub hide_resources: bool,
}

impl Naming {
    /// The name clients see for `tool` of the plugin named `plugin`.
    pub fn exposed(&self, plugin: &str, tool: &str) -> String {
        match self.renames.get(tool) {
            Some(name) => name.clone(),
            None => self.prefixed(plugin, tool),
        }
    }

    /// The name clients see for prompt `name` of the plugin named
    /// `plugin`: the prefix applies as to tools (renames are for tools).
    pub fn prefixed(&self, plugin: &str, name: &str) -> String {
        match self.prefix.as_deref() {
            None => format!("{plugin}.{name}"),
            Some("") => name.to_string(),
            Some(prefix) => format!("{prefix}.{name}"),
        }
    }
}

/// Whether `name` is a tool name MCP clients take: 1 to 128 characters
/// from A-Z, a-z, 0-9, `_`, `-` and `.`.
pub fn valid_tool_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
}

/// `prefix` and `[plugin.rename]` of one `[[plugin]]`.
pub(super) fn parse(
    src: &Source,
    prefix: Option<Spanned<String>>,
    renames: BTreeMap<String, Spanned<String>>,
) -> Result<Naming, ConfigError> {
    if let Some(prefix) = &prefix {
        let p = prefix.get_ref();
        let plain = p
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if p.len() > 64 || !plain {
            return Err(src.error(
                prefix.span(),
                format!("prefix {p:?} cannot start tool names"),
                "use up to 64 characters from A-Z, a-z, 0-9, `_` and `-`, or \"\" for none",
            ));
        }
    }
    let mut out = BTreeMap::new();
    for (tool, name) in renames {
        if !valid_tool_name(name.get_ref()) {
            return Err(src.error(
                name.span(),
                format!("{tool} = {:?} is not a tool name", name.get_ref()),
                "use 1 to 128 characters from A-Z, a-z, 0-9, `_`, `-` and `.`",
            ));
        }
        out.insert(tool, name.into_inner());
    }
    Ok(Naming {
        prefix: prefix.map(Spanned::into_inner),
        renames: out,
        hide_resources: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_prefix_unless_renamed() {
        let naming = |prefix: Option<&str>| Naming {
            prefix: prefix.map(str::to_string),
            renames: [("list".to_string(), "issues.list".to_string())].into(),
            hide_resources: false,
        };
        let cases = [
            (None, "greet", "github.greet"),
            (Some("gh"), "greet", "gh.greet"),
            (Some(""), "greet", "greet"),
            (Some("gh"), "list", "issues.list"),
            (Some(""), "list", "issues.list"),
        ];
        for (prefix, tool, expected) in cases {
            assert_eq!(naming(prefix).exposed("github", tool), expected);
        }
        assert!(valid_tool_name("a.b-c_9"));
        for bad in ["", "a b", "a/b", &"x".repeat(129)] {
            assert!(!valid_tool_name(bad), "{bad}");
        }
    }
}
