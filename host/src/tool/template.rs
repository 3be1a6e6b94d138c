//! URI templates (RFC 6570, level 1) as plugins declare them for
//! resources: `{name}` stands for one or more characters other than `/`,
//! `?` and `#`. Enough to route a `resources/read` to the plugin whose
//! template its URI fits; the plugin reads the values from the URI itself.

/// Most expressions a template may hold.
const MAX_VARIABLES: usize = 16;

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Variable,
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// Parses `template`: `Err` says what is wrong.
pub fn parse(template: &str) -> Result<Template, String> {
    let mut parts = Vec::new();
    let mut rest = template;
    while !rest.is_empty() {
        match rest.find(['{', '}']) {
            None => {
                parts.push(Part::Literal(rest.to_string()));
                break;
            }
            Some(i) if rest.as_bytes()[i] == b'}' => {
                return Err("has a `}` without its `{`".into());
            }
            Some(i) => {
                if i > 0 {
                    parts.push(Part::Literal(rest[..i].to_string()));
                }
                let end = rest[i..].find('}').ok_or("has a `{` without its `}`")?;
                let name = &rest[i + 1..i + end];
                if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                {
                    return Err(format!(
                        "`{{{name}}}` is not a plain variable: Moat matches `{{name}}` (letters, digits, `_`) only"
                    ));
                }
                if parts.last() == Some(&Part::Variable) {
                    return Err(
                        "has two variables side by side, which no URI can tell apart".into(),
                    );
                }
                parts.push(Part::Variable);
                rest = &rest[i + end + 1..];
            }
        }
    }
    let variables = parts.iter().filter(|p| **p == Part::Variable).count();
    if variables == 0 {
        return Err("has no `{variable}`: list a fixed URI as a resource".into());
    }
    if variables > MAX_VARIABLES {
        return Err(format!("has more than {MAX_VARIABLES} variables"));
    }
    Ok(Template { parts })
}

impl Template {
    /// Bytes of literal text: of two templates that fit a URI, the one
    /// with more is the more specific.
    pub fn literal_len(&self) -> usize {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Literal(l) => l.len(),
                Part::Variable => 0,
            })
            .sum()
    }

    /// Whether `uri` fits. Linear in the URI's length per part (no
    /// backtracking a crafted template or URI could make explode).
    pub fn matches(&self, uri: &str) -> bool {
        let bytes = uri.as_bytes();
        let n = bytes.len();
        // `stop[p]`: the first index at or after `p` a variable cannot
        // cover.
        let mut stop = vec![n; n + 1];
        for p in (0..n).rev() {
            stop[p] = if b"/?#".contains(&bytes[p]) {
                p
            } else {
                stop[p + 1]
            };
        }
        // `fits[p]`: the parts after the current one fit `uri[p..]`.
        let mut fits = vec![false; n + 1];
        fits[n] = true;
        for part in self.parts.iter().rev() {
            let mut next = vec![false; n + 1];
            match part {
                Part::Literal(l) => {
                    for p in 0..=n {
                        next[p] = bytes[p..].starts_with(l.as_bytes())
                            && fits.get(p + l.len()).copied().unwrap_or(false);
                    }
                }
                Part::Variable => {
                    // `after[q]`: how many of `fits[q..]` hold, so that
                    // "some end in p+1..=stop[p] fits" is one subtraction.
                    let mut after = vec![0usize; n + 2];
                    for q in (0..=n).rev() {
                        after[q] = after[q + 1] + usize::from(fits[q]);
                    }
                    for p in 0..n {
                        next[p] = stop[p] > p && after[p + 1] > after[stop[p] + 1];
                    }
                }
            }
            fits = next;
        }
        fits[0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_cover_one_segment_or_part_of_one() {
        let t = parse("test://template/{id}/data").unwrap();
        assert!(t.matches("test://template/123/data"));
        assert!(
            !t.matches("test://template//data"),
            "a variable is never empty"
        );
        assert!(!t.matches("test://template/1/2/data"), "nor spans a `/`");
        assert!(!t.matches("test://template/123/data2"));
        let t = parse("notes://{folder}/{name}.md").unwrap();
        assert!(
            t.matches("notes://a/b.c.md"),
            "the last `.md` ends the name"
        );
        assert!(!t.matches("notes://a/.md"));
        assert_eq!(t.literal_len(), "notes://".len() + "/".len() + ".md".len());
    }

    #[test]
    fn what_cannot_be_matched_is_refused() {
        for bad in [
            "x://{a}{b}",
            "x://{+path}",
            "x://{a",
            "x://a}",
            "x://{}",
            "x://none",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_crafted_template_and_uri_stay_linear() {
        let template = format!("x://{}", "{v}a".repeat(MAX_VARIABLES));
        let t = parse(&template).unwrap();
        let uri = format!("x://{}", "a".repeat(2000));
        // Would take 2000^16 steps with backtracking.
        assert!(t.matches(&uri));
        assert!(!t.matches(&format!("{uri}b")));
    }
}
