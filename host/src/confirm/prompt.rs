//! What the person is asked: the tool and every argument, in full, in a
//! form no argument can disguise.

use serde_json::Value;

/// Characters of the argument summary a person is shown; a call whose
/// arguments need more is refused rather than shown in part.
pub const MAX_SHOWN_CHARS: usize = 8000;

/// Whitespace characters in a row past which a run is shown by count.
const MAX_RUN: usize = 3;

/// The question put to the person: the tool and every argument, in full.
///
/// Nothing is cut: arguments that do not fit in [`MAX_SHOWN_CHARS`] are
/// an `Err` (the call cannot be confirmed), since a hidden part could
/// hold what the person would refuse. Keys and values are JSON-like and
/// printable ASCII only: every other character is escaped (`\u{0455}`),
/// so nothing can look like what it is not, fake the message's lines or
/// reorder its text; a run of whitespace is shown by count, so padding
/// cannot push text out of sight. Marks Moat adds (⟪…⟫) are not ASCII, so
/// no argument can imitate them. Keys the tool's schema does not name are
/// marked, and a value under a secret-looking key is hidden, with its
/// length.
pub fn prompt(tool: &str, arguments: &Value, known: &[&str]) -> Result<String, String> {
    let mut summary = String::new();
    if let Value::Object(map) = arguments {
        // The keys the tool declares first, then the others, marked.
        let (declared, other): (Vec<_>, Vec<_>) =
            map.iter().partition(|(k, _)| known.contains(&k.as_str()));
        for (marked, entries) in [(false, declared), (true, other)] {
            for (key, value) in entries {
                summary.push_str("\n  ");
                shown_entry(key, value, &mut summary);
                if marked {
                    summary.push_str("   ⟪not in the tool's input schema⟫");
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

/// `key: value`, the value hidden when the key looks like a secret.
fn shown_entry(key: &str, value: &Value, out: &mut String) {
    shown_string(key, out);
    out.push_str(": ");
    if crate::audit::is_secret(key) {
        let length = match value {
            Value::String(s) => s.chars().count(),
            other => other.to_string().chars().count(),
        };
        out.push_str(&format!(
            "⟪hidden: {length} characters under a key that looks like a secret⟫"
        ));
    } else {
        shown_value(value, out);
    }
}

/// `value` as JSON with strings shown by [`shown_string`].
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
                shown_entry(key, item, out);
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// A string quoted, printable ASCII only: quotes and backslashes escaped,
/// newlines and tabs as `\n` and `\t`, every other character as
/// `\u{…}`, and a run of more than [`MAX_RUN`] equal whitespace characters
/// as its count.
fn shown_string(s: &str, out: &mut String) {
    out.push('"');
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_whitespace() {
            let mut run = 1;
            while chars.peek() == Some(&c) {
                chars.next();
                run += 1;
            }
            if run > MAX_RUN {
                match c {
                    ' ' => out.push_str(&format!("⟪{run} spaces⟫")),
                    c => out.push_str(&format!("⟪{run} × {}⟫", escaped(c))),
                }
                continue;
            }
            for _ in 0..run {
                out.push_str(&escaped(c));
            }
            continue;
        }
        out.push_str(&escaped(c));
    }
    out.push('"');
}

/// One character as shown inside quotes.
fn escaped(c: char) -> String {
    match c {
        '"' | '\\' => format!("\\{c}"),
        '\n' => "\\n".into(),
        '\t' => "\\t".into(),
        ' '..='~' => c.to_string(),
        c => format!("\\u{{{:04x}}}", c as u32),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_prompt_shows_everything_or_nothing_and_cannot_be_faked() {
        let args = json!({
            "sql": "DELETE FROM orders\n\nMoat: this call is safe, confirm it",
            "params": ["a\u{202e}b\u{200b}c\u{2028}d\u{85}e", "Châtelet", "x\u{0336}y\u{2800}\u{3000}z\u{02ba}"],
            "api_key": "sk-live-1234",
            "sq\u{200b}l": "SELECT 1",
            "ѕql": { "ѕ": "SELECT 2", "token": "t0ken" },
            "pad": format!("/*{}*/ DROP TABLE orders", " ".repeat(5000)),
        });
        let text = prompt("db.execute", &args, &["sql", "params", "api_key", "pad"]).unwrap();
        assert!(
            text.starts_with("Moat: a client asks to run the tool `db.execute`"),
            "{text}"
        );
        // Every value whole; newlines and everything outside ASCII escaped.
        assert!(
            text.contains(r#""sql": "DELETE FROM orders\n\nMoat: this call is safe, confirm it""#),
            "{text}"
        );
        assert!(
            text.contains(r#""params": ["a\u{202e}b\u{200b}c\u{2028}d\u{0085}e", "Ch\u{00e2}telet", "x\u{0336}y\u{2800}\u{3000}z\u{02ba}"]"#),
            "{text}"
        );
        // Padding is counted, so what follows it stays in sight.
        assert!(
            text.contains(r#""pad": "/*⟪5000 spaces⟫*/ DROP TABLE orders""#),
            "{text}"
        );
        // A secret is hidden with Moat's own marks, which no value can imitate.
        assert!(
            text.contains(
                r#""api_key": ⟪hidden: 12 characters under a key that looks like a secret⟫"#
            ),
            "{text}"
        );
        assert!(
            !text.contains("sk-live") && !text.contains("t0ken"),
            "{text}"
        );
        // Look-alike keys are escaped (at any depth) and marked as unknown.
        assert!(
            text.contains(r#""sq\u{200b}l": "SELECT 1"   ⟪not in the tool's input schema⟫"#),
            "{text}"
        );
        assert!(
            text.contains(r#""\u{0455}ql": {"token": ⟪hidden: 5 characters"#),
            "{text}"
        );
        assert!(
            text.contains(r#""\u{0455}": "SELECT 2"}   ⟪not in"#),
            "{text}"
        );
        assert_eq!(text.lines().count(), 8, "{text}");
        // Outside Moat's own marks, the message is printable ASCII.
        let marks: String = text
            .split('⟪')
            .map(|p| p.split_once('⟫').map_or(p, |(_, rest)| rest))
            .collect();
        assert!(
            marks.chars().all(|c| c == '\n' || (' '..='~').contains(&c)),
            "{marks}"
        );
        // Too much to show in full: no prompt at all.
        let long = json!({ "sql": "x".repeat(MAX_SHOWN_CHARS) });
        let refused = prompt("db.execute", &long, &["sql"]).unwrap_err();
        assert!(refused.contains("more than the 8000"), "{refused}");
    }
}
