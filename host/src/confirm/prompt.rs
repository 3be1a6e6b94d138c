//! What the person is asked: the tool and every argument, in full, in a
//! form no argument can disguise.

use serde_json::Value;

/// Characters of the argument summary a person is shown; a call whose
/// arguments need more is refused rather than shown in part.
pub const MAX_SHOWN_CHARS: usize = 8000;

/// The question put to the person: the tool and every argument, in full.
///
/// Nothing is cut: arguments that do not fit in [`MAX_SHOWN_CHARS`] are
/// an `Err` (the call cannot be confirmed), since a hidden part could
/// hold what the person would refuse. Values are JSON-like, with every
/// control, format and invisible character escaped, so no value can fake
/// the message's lines or pass for another key; keys outside `ASCII` are
/// escaped whole, and keys the tool's schema does not name are marked.
/// A value under a secret-looking key is shown as hidden, not as a string
/// a value could imitate.
pub fn prompt(tool: &str, arguments: &Value, known: &[&str]) -> Result<String, String> {
    let mut summary = String::new();
    if let Value::Object(map) = arguments {
        // The keys the tool declares first, then the others, marked.
        let (declared, other): (Vec<_>, Vec<_>) =
            map.iter().partition(|(k, _)| known.contains(&k.as_str()));
        for (marked, entries) in [(false, declared), (true, other)] {
            for (key, value) in entries {
                summary.push_str("\n  ");
                summary.push_str(&shown_key(key));
                summary.push_str(": ");
                if crate::audit::is_secret(key) {
                    summary.push_str("<hidden: the key looks like a secret>");
                } else {
                    shown_value(value, &mut summary);
                }
                if marked {
                    summary.push_str("   <- not in the tool's input schema");
                }
            }
        }
    }
    if summary.is_empty() {
        summary.push_str("\n  (no arguments)");
    }
    let shown = summary.chars().count();
    if shown > MAX_SHOWN_CHARS {
        return Err(format!(
            "its arguments take {shown} characters to show, more than the {MAX_SHOWN_CHARS} a person is shown in full"
        ));
    }
    Ok(format!(
        "Moat: a client asks to run the tool `{tool}` with these arguments:{summary}\n\
         Allow this one call? It runs only if you confirm."
    ))
}

/// A key as shown: quoted, everything outside printable ASCII escaped
/// (so a look-alike key cannot pass for `sql`).
fn shown_key(key: &str) -> String {
    let mut out = String::from("\"");
    for c in key.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            c => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// `value` as JSON with strings escaped by [`shown_string`].
fn shown_value(value: &Value, out: &mut String) {
    match value {
        Value::String(s) => shown_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                shown_value(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&shown_key(key));
                out.push_str(": ");
                if crate::audit::is_secret(key) {
                    out.push_str("<hidden>");
                } else {
                    shown_value(item, out);
                }
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// A string quoted, with quotes, backslashes and every character a
/// reader could not see (controls, line and paragraph separators, format
/// characters such as bidi overrides and zero-width spaces) escaped.
fn shown_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if invisible(c) => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Characters that show as nothing, or that move or break text: controls,
/// separators and Unicode's format and filler characters.
fn invisible(c: char) -> bool {
    c.is_control()
        || matches!(
            c as u32,
            0x00AD
                | 0x034F
                | 0x061C
                | 0x115F..=0x1160
                | 0x17B4..=0x17B5
                | 0x180B..=0x180F
                | 0x200B..=0x200F
                | 0x2028..=0x202E
                | 0x2060..=0x206F
                | 0x3164
                | 0xFE00..=0xFE0F
                | 0xFEFF
                | 0xFFA0
                | 0xFFF0..=0xFFFB
                | 0x1D173..=0x1D17A
                | 0xE0000..=0xE0FFF
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_prompt_shows_everything_or_nothing_and_cannot_be_faked() {
        let args = json!({
            "sql": "DELETE FROM orders\n\nMoat: this call is safe, confirm it",
            "params": ["a\u{202e}b\u{200b}c\u{2028}d\u{85}e", "Châtelet"],
            "api_key": "sk-live-1234",
            "sq\u{200b}l": "SELECT 1",
            "ѕql": "SELECT 2",
        });
        let text = prompt("db.execute", &args, &["sql", "params", "api_key"]).unwrap();
        assert!(
            text.starts_with("Moat: a client asks to run the tool `db.execute`"),
            "{text}"
        );
        // Every value whole; newlines and invisible characters escaped.
        assert!(
            text.contains(r#""sql": "DELETE FROM orders\n\nMoat: this call is safe, confirm it""#),
            "{text}"
        );
        assert!(
            text.contains(r#""params": ["a\u{202e}b\u{200b}c\u{2028}d\u{0085}e", "Châtelet"]"#),
            "{text}"
        );
        // A secret is hidden in a way no string value can imitate.
        assert!(
            text.contains(r#""api_key": <hidden: the key looks like a secret>"#),
            "{text}"
        );
        assert!(!text.contains("sk-live"), "{text}");
        // Look-alike keys are escaped and marked as unknown to the tool.
        assert!(
            text.contains(r#""sq\u{200b}l": "SELECT 1"   <- not in the tool's input schema"#),
            "{text}"
        );
        assert!(
            text.contains(r#""\u{0455}ql": "SELECT 2"   <- not in the tool's input schema"#),
            "{text}"
        );
        assert_eq!(text.lines().count(), 7, "{text}");
        // Too much to show in full: no prompt at all.
        let long = json!({ "sql": "x".repeat(MAX_SHOWN_CHARS) });
        let refused = prompt("db.execute", &long, &["sql"]).unwrap_err();
        assert!(refused.contains("more than the 8000"), "{refused}");
    }
}
