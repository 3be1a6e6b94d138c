//! A person's confirmation before chosen tools run.
//!
//! The operator names the tools (`confirm = ["db.execute", "files.write*"]`)
//! or asks for every tool whose annotations say it may destroy something
//! (`confirm_destructive = true`). Annotations come from the plugin and are
//! untrusted: they can add confirmations, never remove the operator's.
//!
//! Moat asks through MCP elicitation (form mode, one boolean `confirm`):
//! on the call's own stream where the protocol has sessions, and with the
//! multi round-trip pattern (`InputRequiredResult`) on 2026-07-28, where
//! the state Moat hands the client is sealed ([`Confirmations`]) so that
//! any replica holding the same key can finish the call. The MCP side is
//! in [`crate::mcp`]; this module holds the policy and what an answer
//! means, [`prompt`] what the person is shown, and [`state`] the sealed
//! state and its single use.

mod prompt;
mod state;

pub use prompt::{MAX_SHOWN_CHARS, prompt};
pub use state::{ConfirmSettings, Confirmations, StateError, binding};

use crate::tool::Annotations;
use rmcp::model::{ElicitResult, ElicitationAction, ElicitationSchema};
use serde_json::Value;

/// Which tools of one endpoint need a person's confirmation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfirmPolicy {
    /// Tool names; `*` matches any run of characters.
    pub tools: Vec<String>,
    /// Also every tool whose annotations say it may be destructive.
    pub destructive: bool,
}

impl ConfirmPolicy {
    /// No tool needs a confirmation.
    pub const NONE: ConfirmPolicy = ConfirmPolicy {
        tools: Vec::new(),
        destructive: false,
    };

    /// Whether a call of tool `name`, so annotated, needs a confirmation.
    ///
    /// Destructive follows MCP's defaults: a tool is destructive unless it
    /// says it is read-only or not destructive, so a plugin that says
    /// nothing is asked about.
    pub fn needs(&self, name: &str, annotations: &Annotations) -> bool {
        let destructive =
            annotations.read_only_hint != Some(true) && annotations.destructive_hint != Some(false);
        (self.destructive && destructive) || self.tools.iter().any(|p| glob(p, name))
    }

    /// The first pattern that matches none of `names`: most likely a typo
    /// that would leave a tool unconfirmed.
    pub fn unmatched<'a>(&'a self, names: &[&str]) -> Option<&'a str> {
        self.tools
            .iter()
            .find(|p| !names.iter().any(|n| glob(p, n)))
            .map(String::as_str)
    }
}

/// `pattern` (where `*` matches any run of characters) matches `name`.
fn glob(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// The form: one required boolean.
pub fn form(tool: &str) -> ElicitationSchema {
    ElicitationSchema::builder()
        .required_bool_with("confirm", |b| {
            b.title(format!("Run {tool}"))
                .description("Check to let this call run once.")
        })
        .build()
        .expect("a one-field form is valid")
}

/// How a request for confirmation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Accepted with `confirm: true`: the call runs.
    Given,
    /// Declined, or accepted with `confirm` not true.
    Declined,
    /// Dismissed without a choice.
    Cancelled,
    /// No answer in time.
    TimedOut,
    /// Nobody could be asked, for this reason.
    Unsupported(String),
    /// The answer or its state could not be trusted, for this reason.
    Invalid(String),
}

impl Answer {
    /// What the client's elicitation result says.
    pub fn of(result: &ElicitResult) -> Answer {
        match result.action {
            ElicitationAction::Accept => {
                let confirmed = result
                    .content
                    .as_ref()
                    .and_then(|c| c.get("confirm"))
                    .and_then(Value::as_bool);
                if confirmed == Some(true) {
                    Answer::Given
                } else {
                    Answer::Declined
                }
            }
            ElicitationAction::Decline => Answer::Declined,
            _ => Answer::Cancelled,
        }
    }

    /// The audit record's kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Answer::Given => "confirmation_given",
            Answer::Declined => "confirmation_declined",
            Answer::Cancelled => "confirmation_cancelled",
            Answer::TimedOut => "confirmation_timed_out",
            Answer::Unsupported(_) => "confirmation_unsupported",
            Answer::Invalid(_) => "confirmation_invalid",
        }
    }

    /// Why the call does not run (for anything but [`Answer::Given`]).
    pub fn reason(&self, tool: &str) -> String {
        match self {
            Answer::Given => format!("`{tool}` was confirmed"),
            Answer::Declined => format!("the person declined to run `{tool}`"),
            Answer::Cancelled => format!("the person dismissed the confirmation of `{tool}`"),
            Answer::TimedOut => format!("nobody confirmed `{tool}` in time"),
            Answer::Unsupported(why) => {
                format!("`{tool}` needs a person's confirmation, but {why}")
            }
            Answer::Invalid(why) => format!("`{tool}` was not confirmed: {why}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn patterns_match_whole_names_with_stars() {
        assert!(glob("db.execute", "db.execute"));
        assert!(!glob("db.execute", "db.executed"));
        assert!(!glob("db.exec", "db.execute"));
        assert!(glob("files.write*", "files.write"));
        assert!(glob("files.write*", "files.write_all"));
        assert!(!glob("files.write*", "files.read"));
        assert!(glob("*.delete", "db.delete"));
        assert!(glob("*", "anything"));
        assert!(glob("a*b*c", "a-x-b-y-c"));
        assert!(!glob("a*b*c", "a-x-c-y-b"));
    }

    #[test]
    fn annotations_add_confirmations_and_never_remove_the_operators() {
        let read_only = Annotations {
            read_only_hint: Some(true),
            destructive_hint: Some(false),
            ..Default::default()
        };
        let destructive = Annotations {
            destructive_hint: Some(true),
            ..Default::default()
        };
        let listed = ConfirmPolicy {
            tools: vec!["db.execute".into()],
            destructive: false,
        };
        // A plugin that calls its tool read-only does not escape the list.
        assert!(listed.needs("db.execute", &read_only));
        assert!(!listed.needs("db.query", &destructive));
        let by_annotation = ConfirmPolicy {
            tools: vec![],
            destructive: true,
        };
        assert!(by_annotation.needs("x.drop", &destructive));
        // Saying nothing is saying "may be destructive" (MCP's default).
        assert!(by_annotation.needs("x.unsaid", &Annotations::default()));
        assert!(!by_annotation.needs("x.read", &read_only));
        assert_eq!(listed.unmatched(&["db.query"]), Some("db.execute"));
        assert_eq!(listed.unmatched(&["db.execute"]), None);
    }

    #[test]
    fn only_an_accepted_true_confirms() {
        let answer = |v: Value| Answer::of(&serde_json::from_value::<ElicitResult>(v).unwrap());
        assert_eq!(
            answer(json!({ "action": "accept", "content": { "confirm": true } })),
            Answer::Given
        );
        for unconfirmed in [
            json!({ "action": "accept", "content": { "confirm": false } }),
            json!({ "action": "accept", "content": { "confirm": "true" } }),
            json!({ "action": "accept", "content": { "confirm": 1 } }),
            json!({ "action": "accept", "content": { "other": true } }),
            json!({ "action": "accept" }),
            json!({ "action": "decline", "content": { "confirm": true } }),
        ] {
            assert_eq!(
                answer(unconfirmed.clone()),
                Answer::Declined,
                "{unconfirmed}"
            );
        }
        assert_eq!(answer(json!({ "action": "cancel" })), Answer::Cancelled);
    }
}
