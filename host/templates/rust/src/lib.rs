//! {{name}}: a Moat plugin. Each tool is a function of a struct whose
//! doc comments become the tool's input schema; the output schema comes
//! from the result type.

use moat_plugin::prelude::*;

#[derive(Deserialize, JsonSchema)]
struct Count {
    /// The text to count.
    text: String,
}

#[derive(Debug, PartialEq, Serialize, JsonSchema)]
struct Counts {
    lines: usize,
    words: usize,
    chars: usize,
}

/// Counts the lines, words and characters of a text; empty text is an
/// error result, which the model sees as such.
fn count(args: Count) -> Result<Json<Counts>, String> {
    if args.text.is_empty() {
        return Err("the text is empty".into());
    }
    Ok(Json(Counts {
        lines: args.text.lines().count(),
        words: args.text.split_whitespace().count(),
        chars: args.text.chars().count(),
    }))
}

moat_plugin::plugin![
    Tool::new(
        "count",
        "Counts the lines, words and characters of a text.",
        count
    )
    .read_only(),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_lines_words_and_characters() {
        let Ok(Json(counts)) = count(Count {
            text: "héllo wörld\nbye".into(),
        }) else {
            panic!("count failed");
        };
        assert_eq!(
            counts,
            Counts {
                lines: 2,
                words: 3,
                chars: 15
            }
        );
        assert!(count(Count { text: String::new() }).is_err());
    }
}
