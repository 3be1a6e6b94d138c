//! Grants that name the caller: `{tenant}` and `{subject}` in a granted
//! directory's host path or an environment value, filled from the verified
//! token at each call.
//!
//! A directory path gets each value as one path component that cannot
//! leave its folder, whatever the token says ([`component`]); an
//! environment value gets the value itself. A call without a verified
//! caller (stdio, HTTP without `[auth]`, a token without `sub`) gets no
//! grant that names one.

use sha2::{Digest, Sha256};
use std::fmt;

/// A value of the verified caller a grant may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placeholder {
    /// The tenant's name, as configured (`[tenants.NAME]`).
    Tenant,
    /// The token's `sub`: unique per issuer, and each endpoint trusts one.
    Subject,
}

impl Placeholder {
    /// Every placeholder, with the text that names it.
    const ALL: [(&'static str, Placeholder); 2] = [
        ("{tenant}", Placeholder::Tenant),
        ("{subject}", Placeholder::Subject),
    ];

    /// The placeholder `text` names exactly, if any.
    pub fn named(text: &str) -> Option<Placeholder> {
        Self::ALL.iter().find(|(n, _)| *n == text).map(|(_, p)| *p)
    }

    /// What starts a folder name made from it (see [`MARKS`]).
    fn mark(self) -> char {
        match self {
            Placeholder::Tenant => MARKS[0],
            Placeholder::Subject => MARKS[1],
        }
    }

    /// Its value for `who`.
    fn value(self, who: &Principal) -> &str {
        match self {
            Placeholder::Tenant => who.tenant.as_deref().unwrap_or_default(),
            Placeholder::Subject => &who.subject,
        }
    }
}

impl fmt::Display for Placeholder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = Self::ALL.iter().find(|(_, p)| p == self).map(|(n, _)| *n);
        f.write_str(name.unwrap_or_default())
    }
}

/// The verified caller of one call, as grants that name it see them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The tenant the call came to; `None` at the top-level endpoint.
    pub tenant: Option<String>,
    /// The issuer that vouched for `subject`.
    pub issuer: String,
    /// The token's `sub`, never empty.
    pub subject: String,
}

/// A string with placeholders: an environment value, or one component of
/// a directory's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(Vec<Part>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Value(Placeholder),
}

impl Template {
    /// `text` with every placeholder found, or `None` when it names none
    /// (braces that name no placeholder are plain text).
    pub fn parse(text: &str) -> Option<Template> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some((at, len, placeholder)) = Placeholder::ALL
            .iter()
            .filter_map(|(name, p)| rest.find(name).map(|at| (at, name.len(), *p)))
            .min_by_key(|(at, _, _)| *at)
        {
            if at > 0 {
                parts.push(Part::Text(rest[..at].to_string()));
            }
            parts.push(Part::Value(placeholder));
            rest = &rest[at + len..];
        }
        if parts.is_empty() {
            return None;
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Some(Template(parts))
    }

    /// The placeholders it names.
    pub fn placeholders(&self) -> impl Iterator<Item = Placeholder> + '_ {
        self.0.iter().filter_map(|p| match p {
            Part::Value(p) => Some(*p),
            Part::Text(_) => None,
        })
    }

    /// The one placeholder it is, when it is nothing else.
    pub fn whole(&self) -> Option<Placeholder> {
        match self.0.as_slice() {
            [Part::Value(p)] => Some(*p),
            _ => None,
        }
    }

    /// The text with each placeholder replaced by `who`'s value.
    pub fn fill(&self, who: &Principal) -> String {
        self.0
            .iter()
            .map(|part| match part {
                Part::Text(text) => text.as_str(),
                Part::Value(p) => p.value(who),
            })
            .collect()
    }
}

/// Where a per-caller folder is, below its base: one name per segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// A folder name written in the config.
    Literal(String),
    /// The caller's value, as a [`component`] after its kind's mark.
    Value(Placeholder),
}

/// What starts a folder name made from a value: `+` for a tenant, `@` for
/// a subject. Neither is ever in a [`component`] (both are encoded), nor
/// may start a name written in the config, so a subject's folder is never
/// a tenant's (`data/{subject}` for `acme` beside
/// `data/{tenant}/{subject}`), nor a folder the config names.
pub const MARKS: [char; 2] = ['+', '@'];

impl Segment {
    /// The folder name for `who`.
    pub fn name(&self, who: &Principal) -> String {
        match self {
            Segment::Literal(name) => name.clone(),
            Segment::Value(p) => format!("{}{}", p.mark(), component(p.value(who))),
        }
    }
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Segment::Literal(name) => f.write_str(name),
            Segment::Value(p) => write!(f, "{}{p}", p.mark()),
        }
    }
}

/// Encoded names longer than this keep a prefix and end in a hash.
const MAX_COMPONENT: usize = 128;

/// `value` as one file name that stays in its folder and names no other
/// value's folder.
///
/// ASCII letters, digits, `_`, `-` and `.` (but not a leading one, so never
/// `.`, `..` or a hidden file) stay; every other byte, `%` included, is
/// `%` and two uppercase hex digits, as in a URL. That is one-to-one, so
/// two subjects never share a folder (on a case-sensitive filesystem, as
/// Linux's are). An encoding longer than 128 bytes is cut to its first 64
/// (never inside a `%XX`), then `~` and the SHA-256 of the whole value in
/// hex; the empty value is `~`. `~` is otherwise always encoded, so
/// neither form can equal a plain encoding.
pub fn component(value: &str) -> String {
    if value.is_empty() {
        return "~".to_string();
    }
    let mut out = String::with_capacity(value.len());
    for (i, byte) in value.bytes().enumerate() {
        let keep =
            byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' || (byte == b'.' && i > 0);
        if keep {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    if out.len() <= MAX_COMPONENT {
        return out;
    }
    let mut cut = MAX_COMPONENT / 2;
    // A `%` in the last two bytes kept would split its escape.
    if let Some(at) = out[cut - 2..cut].find('%') {
        cut = cut - 2 + at;
    }
    out.truncate(cut);
    out.push('~');
    out.push_str(&hex::encode(Sha256::digest(value.as_bytes())));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Principal {
        Principal {
            tenant: Some("acme".into()),
            issuer: "https://issuer".into(),
            subject: "alice".into(),
        }
    }

    #[test]
    fn components_keep_plain_names_and_encode_the_rest() {
        let cases = [
            ("alice", "alice"),
            ("alice.smith-2_b", "alice.smith-2_b"),
            (".", "%2E"),
            ("..", "%2E."),
            ("../x", "%2E.%2Fx"),
            ("a/b", "a%2Fb"),
            ("a\\b", "a%5Cb"),
            ("a\0b", "a%00b"),
            ("100%", "100%25"),
            ("a b", "a%20b"),
            ("~", "%7E"),
            ("", "~"),
            ("ü", "%C3%BC"),
            ("auth0|abc", "auth0%7Cabc"),
        ];
        for (value, expected) in cases {
            assert_eq!(component(value), expected, "{value:?}");
        }
    }

    #[test]
    fn long_values_are_cut_and_hashed_within_a_file_name() {
        let long = "a".repeat(10_000);
        let name = component(&long);
        assert_eq!(name.len(), 64 + 1 + 64);
        assert!(name.starts_with(&"a".repeat(64)));
        // Another long value with the same prefix gets another name.
        assert_ne!(name, component(&format!("{long}b")));
        // A cut never splits an escape: `%XX` or nothing of it.
        let slashes = component(&"/".repeat(200));
        let prefix = slashes.split('~').next().unwrap();
        assert_eq!(prefix, "%2F".repeat(21));
    }

    #[test]
    fn templates_find_placeholders_and_leave_other_braces() {
        assert_eq!(Template::parse("plain"), None);
        assert_eq!(Template::parse("{\"json\": 1}"), None);
        let t = Template::parse("user-{subject}@{tenant}").unwrap();
        assert_eq!(t.fill(&alice()), "user-alice@acme");
        assert_eq!(t.whole(), None);
        assert_eq!(
            t.placeholders().collect::<Vec<_>>(),
            [Placeholder::Subject, Placeholder::Tenant]
        );
        assert_eq!(
            Template::parse("{subject}").unwrap().whole(),
            Some(Placeholder::Subject)
        );
        // Values go in as they are: an environment value is no path.
        let odd = Principal {
            subject: "../x/\u{0}".into(),
            ..alice()
        };
        assert_eq!(Template::parse("{subject}").unwrap().fill(&odd), "../x/\0");
    }

    proptest::proptest! {
        /// Two different values never share a component, and none is a
        /// name that leaves or hides in its folder.
        #[test]
        fn components_are_one_to_one_and_stay_in_their_folder(
            a in "\\PC{0,80}|[./%~a]{0,150}",
            b in "\\PC{0,80}|[./%~a]{0,150}",
        ) {
            let (x, y) = (component(&a), component(&b));
            proptest::prop_assert_eq!(a == b, x == y);
            for name in [&x, &y] {
                proptest::prop_assert!(!name.is_empty() && name.len() <= 129);
                proptest::prop_assert!(!name.starts_with('.'));
                proptest::prop_assert!(!name.contains(['/', '\\', '\0']));
            }
        }
    }
}
