//! How a plugin's tools are named to clients: `<plugin>.<tool>` by
//! default, another prefix (`prefix = "gh"`), none (`prefix = ""`), or a
//! name of the operator's choosing per tool (`[plugin.rename]`); and which
//! tools are served at all, under which description (`[plugin.tools]`:
//! a component's functions may be many, and its WIT may say nothing).

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
    /// `[plugin.tools]`: per tool of the plugin, another name within its
    /// prefix, another description, or not served at all.
    pub tools: BTreeMap<String, ToolSetting>,
}

/// One entry of `[plugin.tools]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ToolSetting {
    /// Its name within the plugin's prefix.
    pub name: Option<String>,
    /// What clients are told it does.
    pub description: Option<String>,
    /// Not served: not listed, not callable.
    pub hidden: bool,
}

/// An entry of `[plugin.tools]` as written: a new name, `false` to hide,
/// or a table.
#[derive(serde::Deserialize)]
#[serde(untagged)]
pub(super) enum RawToolSetting {
    Serve(bool),
    Name(String),
    Table {
        name: Option<String>,
        description: Option<String>,
    },
}

impl Naming {
    /// The name clients see for `tool` of the plugin named `plugin`.
    pub fn exposed(&self, plugin: &str, tool: &str) -> String {
        match self.renames.get(tool) {
            Some(name) => name.clone(),
            None => match self.tools.get(tool).and_then(|t| t.name.as_deref()) {
                Some(name) => self.prefixed(plugin, name),
                None => self.prefixed(plugin, tool),
            },
        }
    }

    /// Whether `tool` of the plugin is served.
    pub fn serves(&self, tool: &str) -> bool {
        !self.tools.get(tool).is_some_and(|t| t.hidden)
    }

    /// The description the config gives `tool`, if any.
    pub fn description(&self, tool: &str) -> Option<&str> {
        self.tools.get(tool).and_then(|t| t.description.as_deref())
    }

    /// Every tool name the config names, for the check that the plugin
    /// has each.
    pub fn named_tools(&self) -> impl Iterator<Item = &String> {
        self.renames.keys().chain(self.tools.keys())
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

/// `prefix`, `[plugin.rename]` and `[plugin.tools]` of one `[[plugin]]`.
pub(super) fn parse(
    src: &Source,
    prefix: Option<Spanned<String>>,
    renames: BTreeMap<String, Spanned<String>>,
    tools: BTreeMap<String, Spanned<RawToolSetting>>,
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
    let mut settings = BTreeMap::new();
    for (tool, raw) in tools {
        let span = raw.span();
        let setting = match raw.into_inner() {
            RawToolSetting::Serve(serve) => ToolSetting {
                hidden: !serve,
                ..ToolSetting::default()
            },
            RawToolSetting::Name(name) => ToolSetting {
                name: Some(name),
                ..ToolSetting::default()
            },
            RawToolSetting::Table { name, description } => ToolSetting {
                name,
                description,
                hidden: false,
            },
        };
        if let Some(name) = &setting.name
            && (name.contains('.') || !valid_tool_name(name))
        {
            return Err(src.error(
                span,
                format!("{tool} = {name:?} is not a tool name"),
                "use 1 to 128 characters from A-Z, a-z, 0-9, `_` and `-` (the prefix comes before it; [plugin.rename] gives a whole name)",
            ));
        }
        if out.contains_key(&tool) && setting.name.is_some() {
            return Err(src.error(
                span,
                format!("`{tool}` is renamed twice, in [plugin.rename] and [plugin.tools]"),
                "rename it in one place",
            ));
        }
        settings.insert(tool, setting);
    }
    Ok(Naming {
        prefix: prefix.map(Spanned::into_inner),
        renames: out,
        hide_resources: false,
        tools: settings,
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
            tools: [(
                "fetch".to_string(),
                ToolSetting {
                    name: Some("get_url".into()),
                    ..ToolSetting::default()
                },
            )]
            .into(),
        };
        let cases = [
            (None, "greet", "github.greet"),
            (Some("gh"), "greet", "gh.greet"),
            (Some(""), "greet", "greet"),
            (Some("gh"), "list", "issues.list"),
            (Some(""), "list", "issues.list"),
            (None, "fetch", "github.get_url"),
            (Some(""), "fetch", "get_url"),
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
