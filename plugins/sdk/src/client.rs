//! Asking the client during a call: a model's answer (sampling) or the
//! person's input (elicitation). Each works only when the operator granted
//! it to the plugin (`sampling = { max_tokens = N }`, `elicitation = true`)
//! and the client supports it; otherwise the call returns an error at
//! once, so a tool can say what it could not do.

pub use crate::bindings::moat::plugin::client::{
    ClientError, ElicitAction, Message, MessageContent, SamplingRequest, SamplingResponse,
};
use crate::bindings::moat::plugin::client::{elicit as wit_elicit, sample as wit_sample};
use crate::bindings::moat::plugin::types::Role;

/// Asks the client's model for one answer to `request`.
pub fn sample(request: &SamplingRequest) -> Result<SamplingResponse, ClientError> {
    wit_sample(request)
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
        _ => Err(ClientError::Failed("the model answered with something other than text".into())),
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
    let answer = wit_elicit(message, &schema.to_string())?;
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
