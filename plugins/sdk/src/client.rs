//! Asking the client during a call: a model's answer (sampling) or the
//! person's input (elicitation). Each works only when the operator granted
//! it to the plugin (`sampling = { max_tokens = N }`, `elicitation = true`)
//! and the client supports it; otherwise the call returns an error at
//! once, so a tool can say what it could not do.

use crate::bindings::moat::plugin::client::{
    ClientError as WitError, elicit as wit_elicit, sample as wit_sample,
};
pub use crate::bindings::moat::plugin::client::{
    ElicitAction, Message, MessageContent, SamplingRequest, SamplingResponse,
};
use crate::bindings::moat::plugin::types::Role;
use std::fmt;

/// Why the client was not asked, or did not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// The operator did not grant it to the plugin, or the request goes
    /// past the grant (such as more tokens than are left).
    NotGranted(String),
    /// The client cannot answer such requests.
    Unsupported(String),
    /// The request is malformed.
    Invalid(String),
    /// The client answered with an error, or not in time.
    Failed(String),
}

impl From<WitError> for ClientError {
    fn from(e: WitError) -> Self {
        match e {
            WitError::NotGranted(m) => ClientError::NotGranted(m),
            WitError::Unsupported(m) => ClientError::Unsupported(m),
            WitError::Invalid(m) => ClientError::Invalid(m),
            WitError::Failed(m) => ClientError::Failed(m),
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::NotGranted(m) => write!(f, "not granted: {m}"),
            ClientError::Unsupported(m) => write!(f, "unsupported: {m}"),
            ClientError::Invalid(m) => write!(f, "invalid request: {m}"),
            ClientError::Failed(m) => write!(f, "failed: {m}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// Asks the client's model for one answer to `request`.
pub fn sample(request: &SamplingRequest) -> Result<SamplingResponse, ClientError> {
    wit_sample(request).map_err(Into::into)
}

/// Asks the client's model to answer `prompt` in at most `max_tokens`
/// tokens, and returns the text of its answer.
pub fn sample_text(prompt: &str, max_tokens: u32) -> Result<String, ClientError> {
    let answer = sample(&SamplingRequest {
        messages: vec![Message {
            role: Role::User,
            content: MessageContent::Text(prompt.to_string()),
        }],
        system_prompt: None,
        max_tokens,
        temperature: None,
        stop_sequences: Vec::new(),
        model_hints: Vec::new(),
    })?;
    match answer.content {
        MessageContent::Text(text) => Ok(text),
        _ => Err(ClientError::Failed(
            "the model answered with something other than text".into(),
        )),
    }
}

/// What the person did with an elicitation.
#[derive(Debug, Clone, PartialEq)]
pub enum Elicited {
    /// They answered: a JSON object that fits the schema.
    Accepted(serde_json::Value),
    /// They said no.
    Declined,
    /// They dismissed the question.
    Cancelled,
}

/// Asks the person for input: `message` says what for; `schema` is a
/// JSON Schema object of flat string, number, integer, boolean and enum
/// properties.
pub fn elicit(message: &str, schema: &serde_json::Value) -> Result<Elicited, ClientError> {
    let answer = wit_elicit(message, &schema.to_string()).map_err(ClientError::from)?;
    Ok(match answer.action {
        ElicitAction::Accept => Elicited::Accepted(
            answer
                .content
                .and_then(|c| serde_json::from_str(&c).ok())
                .unwrap_or(serde_json::Value::Object(Default::default())),
        ),
        ElicitAction::Decline => Elicited::Declined,
        ElicitAction::Cancel => Elicited::Cancelled,
    })
}
