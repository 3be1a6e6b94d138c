//! Who may see and call which tool. Deny by default: a caller may use a
//! tool only when some rule grants it, and a rule grants its tools to
//! callers that hold all of its scopes and all of its roles.

use std::collections::BTreeSet;

/// An authenticated caller, as the token described it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    /// The token's `iss`: subjects are unique only per issuer.
    pub issuer: String,
    /// The token's `sub`.
    pub subject: String,
    /// The OAuth client the token was issued to (`client_id` or `azp`).
    pub client_id: Option<String>,
    /// Granted scopes (the token's `scope`, split on spaces).
    pub scopes: BTreeSet<String>,
    /// Roles, from the configured roles claim.
    pub roles: BTreeSet<String>,
    /// When the token stops being valid (seconds since the epoch).
    pub expires_at: u64,
}

/// A tool name pattern: `*`, `plugin.*` or an exact `plugin.tool`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolPattern {
    /// Every tool.
    All,
    /// Every tool of one plugin.
    Plugin(String),
    /// One tool.
    Exact(String),
}

impl ToolPattern {
    /// Parses a pattern; `None` when it is not one of the three forms:
    /// `*`, `<prefix>.*` (every tool named `<prefix>.…`), or a tool's name
    /// as clients see it.
    pub fn parse(pattern: &str) -> Option<ToolPattern> {
        if pattern == "*" {
            return Some(ToolPattern::All);
        }
        if let Some(prefix) = pattern.strip_suffix(".*") {
            return crate::config::naming::valid_tool_name(prefix)
                .then(|| ToolPattern::Plugin(prefix.to_string()));
        }
        crate::config::naming::valid_tool_name(pattern)
            .then(|| ToolPattern::Exact(pattern.to_string()))
    }

    fn matches(&self, tool: &str) -> bool {
        match self {
            ToolPattern::All => true,
            ToolPattern::Plugin(p) => tool
                .strip_prefix(p.as_str())
                .is_some_and(|rest| rest.starts_with('.')),
            ToolPattern::Exact(t) => t == tool,
        }
    }
}

/// A resource URI pattern: `*`, a prefix ending in `*`
/// (`notes://public/*`), or an exact URI or URI template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UriPattern {
    /// Every resource.
    All,
    /// Every URI that starts with this.
    Prefix(String),
    /// One URI, or every URI of the template written exactly so.
    Exact(String),
}

impl UriPattern {
    /// Parses a pattern; `None` for an empty one or a `*` anywhere but
    /// the end.
    pub fn parse(pattern: &str) -> Option<UriPattern> {
        if pattern == "*" {
            return Some(UriPattern::All);
        }
        let (body, prefix) = match pattern.strip_suffix('*') {
            Some(body) => (body, true),
            None => (pattern, false),
        };
        if body.is_empty() || body.contains('*') || body.chars().any(char::is_whitespace) {
            return None;
        }
        Some(if prefix {
            UriPattern::Prefix(body.to_string())
        } else {
            UriPattern::Exact(body.to_string())
        })
    }

    /// Whether the pattern covers `uri`, read through `template` when the
    /// URI is one of a template's.
    fn covers(&self, uri: &str, template: Option<&str>) -> bool {
        match self {
            UriPattern::All => true,
            UriPattern::Prefix(p) => uri.starts_with(p.as_str()),
            UriPattern::Exact(e) => e == uri || template == Some(e.as_str()),
        }
    }

    /// Whether the pattern covers every URI of `template` (for listing
    /// it): the template itself, or a prefix of its fixed start.
    fn covers_template(&self, template: &str) -> bool {
        let fixed = template.split('{').next().unwrap_or_default();
        match self {
            UriPattern::All => true,
            UriPattern::Prefix(p) => fixed.starts_with(p.as_str()),
            UriPattern::Exact(e) => e == template,
        }
    }
}

/// One `[[auth.rule]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Scopes the caller must all hold.
    pub scopes: BTreeSet<String>,
    /// Roles the caller must all hold.
    pub roles: BTreeSet<String>,
    /// The tools this rule grants.
    pub tools: Vec<ToolPattern>,
    /// The resources this rule grants (to list, read, subscribe to and
    /// complete).
    pub resources: Vec<UriPattern>,
    /// The prompts this rule grants (to list, get and complete), named as
    /// clients see them.
    pub prompts: Vec<ToolPattern>,
}

/// Every rule of an endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// The rules; any one that matches grants.
    pub rules: Vec<Rule>,
}

impl Policy {
    /// The rules that apply to `caller`.
    fn held<'a>(&'a self, caller: &'a Caller) -> impl Iterator<Item = &'a Rule> {
        self.rules.iter().filter(|rule| {
            rule.scopes.is_subset(&caller.scopes) && rule.roles.is_subset(&caller.roles)
        })
    }

    /// Whether `caller` may see and call `tool`.
    pub fn allows(&self, caller: &Caller, tool: &str) -> bool {
        self.held(caller)
            .any(|rule| rule.tools.iter().any(|p| p.matches(tool)))
    }

    /// Whether `caller` may read `uri` (one of `template`'s, if given).
    pub fn allows_resource(&self, caller: &Caller, uri: &str, template: Option<&str>) -> bool {
        self.held(caller)
            .any(|rule| rule.resources.iter().any(|p| p.covers(uri, template)))
    }

    /// Whether `caller` may see and use every URI of `template`.
    pub fn allows_template(&self, caller: &Caller, template: &str) -> bool {
        self.held(caller)
            .any(|rule| rule.resources.iter().any(|p| p.covers_template(template)))
    }

    /// Whether `caller` may see and get prompt `name`.
    pub fn allows_prompt(&self, caller: &Caller, name: &str) -> bool {
        self.held(caller)
            .any(|rule| rule.prompts.iter().any(|p| p.matches(name)))
    }

    /// The scopes that would let a caller use `tool` (for the `scope` of a
    /// 403 challenge): those of the first rule that grants it.
    pub fn scopes_for(&self, tool: &str) -> Option<&BTreeSet<String>> {
        self.rules
            .iter()
            .find(|rule| rule.tools.iter().any(|p| p.matches(tool)))
            .map(|rule| &rule.scopes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn rule(scopes: &[&str], roles: &[&str], tools: &[&str]) -> Rule {
        Rule {
            scopes: set(scopes),
            roles: set(roles),
            tools: tools
                .iter()
                .map(|t| ToolPattern::parse(t).unwrap())
                .collect(),
            resources: Vec::new(),
            prompts: Vec::new(),
        }
    }

    #[test]
    fn resource_patterns_cover_uris_and_whole_templates() {
        let policy = Policy {
            rules: vec![Rule {
                resources: ["notes://public/*", "test://template/{id}/data", "x://one"]
                    .iter()
                    .map(|p| UriPattern::parse(p).unwrap())
                    .collect(),
                prompts: vec![ToolPattern::parse("notes.*").unwrap()],
                ..rule(&["read"], &[], &[])
            }],
        };
        let reader = caller(&["read"], &[]);
        assert!(policy.allows_resource(&reader, "notes://public/a", None));
        assert!(!policy.allows_resource(&reader, "notes://private/a", None));
        assert!(policy.allows_resource(&reader, "x://one", None));
        assert!(!policy.allows_resource(&reader, "x://one/two", None));
        assert!(policy.allows_resource(
            &reader,
            "test://template/1/data",
            Some("test://template/{id}/data")
        ));
        assert!(policy.allows_template(&reader, "notes://public/{name}"));
        assert!(
            !policy.allows_template(&reader, "notes://{folder}/{name}"),
            "could reach private"
        );
        assert!(policy.allows_prompt(&reader, "notes.summarize"));
        assert!(!policy.allows_prompt(&reader, "other.summarize"));
        assert!(
            !policy.allows(&reader, "notes.summarize"),
            "prompts grant no tools"
        );
        let stranger = caller(&[], &[]);
        assert!(!policy.allows_resource(&stranger, "notes://public/a", None));
        for bad in ["", "a*b", "*x", "with space"] {
            assert!(UriPattern::parse(bad).is_none(), "{bad:?}");
        }
    }

    fn caller(scopes: &[&str], roles: &[&str]) -> Caller {
        Caller {
            subject: "alice".into(),
            client_id: None,
            issuer: "https://auth.example.com".into(),
            scopes: set(scopes),
            roles: set(roles),
            expires_at: 0,
        }
    }

    #[test]
    fn rules_grant_tools_to_callers_holding_all_their_scopes_and_roles() {
        let policy = Policy {
            rules: vec![
                rule(&["tools:read"], &[], &["hello.*", "files.read"]),
                rule(&["tools:read", "tools:write"], &[], &["files.*"]),
                rule(&[], &["admin"], &["*"]),
            ],
        };
        let cases = [
            (caller(&["tools:read"], &[]), "hello.greet", true),
            (caller(&["tools:read"], &[]), "files.read", true),
            (caller(&["tools:read"], &[]), "files.write", false),
            (
                caller(&["tools:read", "tools:write"], &[]),
                "files.write",
                true,
            ),
            (caller(&["tools:write"], &[]), "files.write", false),
            (caller(&[], &[]), "hello.greet", false),
            (caller(&["other"], &["admin"]), "testbed.spin", true),
            (caller(&["tools:read"], &[]), "hello", false),
            (caller(&["tools:read"], &[]), "helloworld.greet", false),
        ];
        for (who, tool, expected) in cases {
            assert_eq!(policy.allows(&who, tool), expected, "{who:?} {tool}");
        }
        assert!(!Policy::default().allows(&caller(&["tools:read"], &["admin"]), "hello.greet"));
        assert_eq!(
            policy.scopes_for("files.write"),
            Some(&set(&["tools:read", "tools:write"]))
        );
        // The admin rule grants everything, with no scopes required.
        assert_eq!(policy.scopes_for("nothing.here"), Some(&set(&[])));
        let narrow = Policy {
            rules: vec![rule(&["tools:read"], &[], &["hello.*"])],
        };
        assert_eq!(narrow.scopes_for("files.read"), None);
    }

    #[test]
    fn patterns() {
        assert_eq!(ToolPattern::parse("*"), Some(ToolPattern::All));
        assert_eq!(
            ToolPattern::parse("files.*"),
            Some(ToolPattern::Plugin("files".into()))
        );
        assert_eq!(
            ToolPattern::parse("hello.greet"),
            Some(ToolPattern::Exact("hello.greet".into()))
        );
        // Without a prefix, or renamed, a tool's name is any MCP tool name.
        for exact in ["greet", "gh.issues.list"] {
            assert_eq!(
                ToolPattern::parse(exact),
                Some(ToolPattern::Exact(exact.into()))
            );
        }
        for bad in ["", "*.read", "files.re*", ".*", "a b", "x/y"] {
            assert_eq!(ToolPattern::parse(bad), None, "{bad}");
        }
    }
}
