//! Prompts: message templates a client fills in with arguments.

use crate::bindings::moat::plugin::types::{
    Completion, Prompt as WitPrompt, PromptArgument, PromptError, PromptMessage, PromptResult, Role,
};
use crate::output::Content;
use std::collections::BTreeMap;

/// A prompt's arguments, by name (the required ones are all there: Moat
/// checks before the prompt runs).
pub type Args = BTreeMap<String, String>;

/// Suggested values, best first.
pub type Values = Vec<String>;

pub(crate) type Completer = Box<dyn Fn(&str, &Args) -> Values>;

type Filler = Box<dyn Fn(&Args) -> Result<Vec<Message>, String>>;

/// One message of a filled-in prompt.
pub struct Message {
    role: Role,
    content: Content,
}

impl Message {
    /// A message from the person.
    pub fn user(content: impl Into<Content>) -> Self {
        Message {
            role: Role::User,
            content: content.into(),
        }
    }

    /// A message from the model.
    pub fn assistant(content: impl Into<Content>) -> Self {
        Message {
            role: Role::Assistant,
            content: content.into(),
        }
    }
}

impl From<&str> for Content {
    fn from(text: &str) -> Content {
        Content::Text(text.to_string())
    }
}

impl From<String> for Content {
    fn from(text: String) -> Content {
        Content::Text(text)
    }
}

/// A prompt. Build it with [`Prompt::new`] and the builder methods.
pub struct Prompt {
    pub(crate) name: &'static str,
    title: Option<&'static str>,
    description: &'static str,
    arguments: Vec<PromptArgument>,
    filler: Filler,
    pub(crate) completers: Vec<(&'static str, Completer)>,
}

impl Prompt {
    /// A prompt named `name` (letters, digits, `_`, `-`) whose messages
    /// `fill` makes from the arguments, in a fresh instance under the
    /// plugin's grants.
    pub fn new(
        name: &'static str,
        description: &'static str,
        fill: impl Fn(&Args) -> Result<Vec<Message>, String> + 'static,
    ) -> Self {
        Prompt {
            name,
            title: None,
            description,
            arguments: Vec::new(),
            filler: Box::new(fill),
            completers: Vec::new(),
        }
    }

    /// A human-readable title.
    pub fn title(mut self, title: &'static str) -> Self {
        self.title = Some(title);
        self
    }

    /// An argument the prompt needs.
    pub fn argument(mut self, name: &'static str, description: &'static str) -> Self {
        self.arguments.push(PromptArgument {
            name: name.to_string(),
            description: Some(description.to_string()),
            required: true,
        });
        self
    }

    /// An argument the prompt may do without.
    pub fn optional_argument(mut self, name: &'static str, description: &'static str) -> Self {
        self.arguments.push(PromptArgument {
            name: name.to_string(),
            description: Some(description.to_string()),
            required: false,
        });
        self
    }

    /// Suggests values of `argument` as the client types them: `complete`
    /// gets the partial value and the arguments already chosen.
    pub fn complete(
        mut self,
        argument: &'static str,
        complete: impl Fn(&str, &Args) -> Values + 'static,
    ) -> Self {
        self.completers.push((argument, Box::new(complete)));
        self
    }

    pub(crate) fn describe(&self) -> WitPrompt {
        WitPrompt {
            name: self.name.to_string(),
            title: self.title.map(str::to_string),
            description: Some(self.description.to_string()),
            arguments: self.arguments.clone(),
        }
    }

    pub(crate) fn get(&self, arguments: &Args) -> Result<PromptResult, PromptError> {
        let messages = (self.filler)(arguments).map_err(PromptError::Failed)?;
        Ok(PromptResult {
            description: Some(self.description.to_string()),
            messages: messages
                .into_iter()
                .map(|m| PromptMessage {
                    role: m.role,
                    content: m.content.into_wit(),
                })
                .collect(),
        })
    }

    pub(crate) fn completion(&self, argument: &str, value: &str, context: &Args) -> Completion {
        complete(&self.completers, argument, value, context)
    }
}

/// No suggestions (for a prompt or template the plugin does not have).
pub(crate) fn no_values() -> Completion {
    Completion {
        values: Vec::new(),
        total: Some(0),
        has_more: false,
    }
}

/// Most values one completion answer carries (MCP's limit).
const MAX_VALUES: usize = 100;

pub(crate) fn complete(
    completers: &[(&'static str, Completer)],
    argument: &str,
    value: &str,
    context: &Args,
) -> Completion {
    let mut values = completers
        .iter()
        .find(|(name, _)| *name == argument)
        .map(|(_, complete)| complete(value, context))
        .unwrap_or_default();
    let total = values.len();
    values.truncate(MAX_VALUES);
    Completion {
        values,
        total: u32::try_from(total).ok(),
        has_more: total > MAX_VALUES,
    }
}
