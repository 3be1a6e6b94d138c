//! The `client` import: a plugin asks the MCP client, during a call, for a
//! model's answer (sampling) or the person's input (elicitation). Only with
//! the grant (`sampling = { max_tokens = N }`, `elicitation = true`), only
//! where the transport can ask (a session: stdio or stateful HTTP), only
//! from a client that declared the capability, and within the call's
//! budgets: tokens, requests, bytes each way, and the call's time. Every
//! request is remembered for the call's audit record.

// Sampling is deprecated for 2026-07-28 (SEP-2577); clients of 2025-11-25
// and before still answer it.
#![allow(deprecated)]

use super::bindings::moat::plugin::client::{
    ClientError, ElicitAction, ElicitResponse, Host, Message, MessageContent, SamplingRequest,
    SamplingResponse,
};
use super::bindings::moat::plugin::types::{Audio, Image, Role};
use super::state::CallState;
use base64::Engine as _;
use rmcp::model::{CreateMessageRequestParams, ElicitRequestParams};
use rmcp::{Peer, RoleServer};
use serde_json::{Value, json};

/// Requests a call may send the client, sampling and elicitation together.
pub const MAX_CLIENT_REQUESTS: usize = 16;

/// Bytes of one request to the client (messages, schema), and of one
/// answer handed to the plugin.
pub const MAX_CLIENT_BYTES: usize = 1 << 20;

/// How a call reaches the client that made it.
#[derive(Clone)]
pub struct Relay {
    /// The session's peer, which sends server-to-client requests.
    pub peer: Peer<RoleServer>,
}

/// What is left of a call's grants to ask the client.
pub(super) struct Asking {
    /// Tokens left of `sampling.max_tokens`; `None`: not granted.
    tokens: Option<u32>,
    elicitation: bool,
    /// Requests left of [`MAX_CLIENT_REQUESTS`].
    requests: usize,
    relay: Option<Relay>,
    /// One line per request, for the audit record.
    pub asked: Vec<String>,
}

impl Asking {
    pub(super) fn new(grants: &crate::capabilities::Grants, relay: Option<Relay>) -> Self {
        Asking {
            tokens: grants.sampling.map(|s| s.max_tokens),
            elicitation: grants.elicitation,
            requests: MAX_CLIENT_REQUESTS,
            relay,
            asked: Vec::new(),
        }
    }

    /// The peer to ask, once the request fits what is left; takes one
    /// request of the budget.
    fn peer(&mut self, what: &str) -> Result<Peer<RoleServer>, ClientError> {
        if self.requests == 0 {
            return Err(ClientError::NotGranted(format!(
                "a call may ask the client at most {MAX_CLIENT_REQUESTS} times"
            )));
        }
        let Some(relay) = &self.relay else {
            return Err(ClientError::Unsupported(
                "this request has no session to ask the client through (stateless HTTP, or a \
                 request that is not a tool call)"
                    .into(),
            ));
        };
        let capable = relay.peer.peer_info().is_some_and(|info| match what {
            "sampling" => info.capabilities.sampling.is_some(),
            _ => info.capabilities.elicitation.is_some(),
        });
        if !capable {
            return Err(ClientError::Unsupported(format!(
                "the client did not declare the {what} capability"
            )));
        }
        self.requests -= 1;
        Ok(relay.peer.clone())
    }
}

fn base64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn role(role: Role) -> &'static str {
    match role {
        Role::User => "user",
        Role::Assistant => "assistant",
    }
}

fn content_json(content: &MessageContent) -> Value {
    match content {
        MessageContent::Text(text) => json!({ "type": "text", "text": text }),
        MessageContent::Image(i) => {
            json!({ "type": "image", "data": base64(&i.data), "mimeType": i.mime_type })
        }
        MessageContent::Audio(a) => {
            json!({ "type": "audio", "data": base64(&a.data), "mimeType": a.mime_type })
        }
    }
}

fn request_size(request: &SamplingRequest) -> usize {
    let content = |m: &Message| match &m.content {
        MessageContent::Text(t) => t.len(),
        MessageContent::Image(Image { data, mime_type })
        | MessageContent::Audio(Audio { data, mime_type }) => data.len() * 4 / 3 + mime_type.len(),
    };
    request.messages.iter().map(content).sum::<usize>()
        + request.system_prompt.as_ref().map_or(0, String::len)
        + request
            .stop_sequences
            .iter()
            .map(String::len)
            .sum::<usize>()
        + request.model_hints.iter().map(String::len).sum::<usize>()
}

/// The first content block of a sampling answer, as the plugin takes it.
fn answer_content(message: &Value) -> Result<MessageContent, String> {
    let block = match &message["content"] {
        Value::Array(items) => items.first().cloned().unwrap_or(Value::Null),
        other => other.clone(),
    };
    let decode = |field: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(block[field].as_str().unwrap_or_default())
            .map_err(|e| format!("the client's {field} is not base64: {e}"))
    };
    let mime = || block["mimeType"].as_str().unwrap_or_default().to_string();
    match block["type"].as_str() {
        Some("text") => Ok(MessageContent::Text(
            block["text"].as_str().unwrap_or_default().to_string(),
        )),
        Some("image") => Ok(MessageContent::Image(Image {
            mime_type: mime(),
            data: decode("data")?,
        })),
        Some("audio") => Ok(MessageContent::Audio(Audio {
            mime_type: mime(),
            data: decode("data")?,
        })),
        other => Err(format!(
            "the client answered with {} content, which plugins cannot take",
            other.unwrap_or("no")
        )),
    }
}

impl Host for CallState {
    async fn sample(&mut self, request: SamplingRequest) -> Result<SamplingResponse, ClientError> {
        let asking = &mut self.asking;
        let Some(left) = asking.tokens else {
            return Err(ClientError::NotGranted(
                "the operator did not grant `sampling` to this plugin".into(),
            ));
        };
        if request.max_tokens == 0 || request.max_tokens > left {
            return Err(ClientError::NotGranted(format!(
                "the request asks for up to {} tokens; {left} are left of this call's sampling grant",
                request.max_tokens
            )));
        }
        if request.messages.is_empty() {
            return Err(ClientError::Invalid(
                "a sampling request needs a message".into(),
            ));
        }
        let size = request_size(&request);
        if size > MAX_CLIENT_BYTES {
            return Err(ClientError::Invalid(format!(
                "the request takes {size} bytes, more than {MAX_CLIENT_BYTES}"
            )));
        }
        let peer = asking.peer("sampling")?;
        asking.tokens = Some(left - request.max_tokens);
        let params = json!({
            "messages": request.messages.iter().map(|m| json!({
                "role": role(m.role),
                "content": content_json(&m.content),
            })).collect::<Vec<_>>(),
            "systemPrompt": request.system_prompt,
            "maxTokens": request.max_tokens,
            "temperature": request.temperature.filter(|t| t.is_finite()),
            "stopSequences": (!request.stop_sequences.is_empty()).then_some(&request.stop_sequences),
            "modelPreferences": (!request.model_hints.is_empty()).then(|| json!({
                "hints": request.model_hints.iter().map(|h| json!({ "name": h })).collect::<Vec<_>>()
            })),
        });
        let params: CreateMessageRequestParams = serde_json::from_value(strip_nulls(params))
            .map_err(|e| ClientError::Invalid(format!("not a sampling request MCP allows: {e}")))?;
        let answered = peer.create_message(params).await;
        let outcome = match answered {
            Err(e) => Err(ClientError::Failed(format!(
                "the client did not answer: {e}"
            ))),
            Ok(result) => {
                let value = serde_json::to_value(&result).unwrap_or_default();
                let content = answer_content(&value["message"]).map_err(ClientError::Failed)?;
                let bytes = match &content {
                    MessageContent::Text(t) => t.len(),
                    MessageContent::Image(i) => i.data.len(),
                    MessageContent::Audio(a) => a.data.len(),
                };
                if bytes > MAX_CLIENT_BYTES {
                    Err(ClientError::Failed(format!(
                        "the client's answer takes {bytes} bytes, more than a plugin is given ({MAX_CLIENT_BYTES})"
                    )))
                } else {
                    Ok(SamplingResponse {
                        role: match result.message.role {
                            rmcp::model::Role::User => Role::User,
                            rmcp::model::Role::Assistant => Role::Assistant,
                        },
                        content,
                        model: result.model,
                        stop_reason: result.stop_reason,
                    })
                }
            }
        };
        self.asking.asked.push(format!(
            "sampling max_tokens={}: {}",
            request.max_tokens,
            match &outcome {
                Ok(_) => "answered".to_string(),
                Err(e) => format!("{e:?}"),
            }
        ));
        outcome
    }

    async fn elicit(
        &mut self,
        message: String,
        requested_schema: String,
    ) -> Result<ElicitResponse, ClientError> {
        let asking = &mut self.asking;
        if !asking.elicitation {
            return Err(ClientError::NotGranted(
                "the operator did not grant `elicitation` to this plugin".into(),
            ));
        }
        let size = message.len() + requested_schema.len();
        if size > MAX_CLIENT_BYTES {
            return Err(ClientError::Invalid(format!(
                "the request takes {size} bytes, more than {MAX_CLIENT_BYTES}"
            )));
        }
        let schema: Value = serde_json::from_str(&requested_schema)
            .map_err(|e| ClientError::Invalid(format!("the requested schema is not JSON: {e}")))?;
        let params: ElicitRequestParams = serde_json::from_value(json!({
            "mode": "form",
            "message": message,
            "requestedSchema": schema,
        }))
        .map_err(|e| {
            ClientError::Invalid(format!(
                "the requested schema is not one MCP elicitation allows (a flat object of \
                 string, number, integer, boolean and enum properties): {e}"
            ))
        })?;
        let peer = asking.peer("elicitation")?;
        let outcome = match peer.create_elicitation(params).await {
            Err(e) => Err(ClientError::Failed(format!(
                "the client did not answer: {e}"
            ))),
            Ok(result) => {
                let content = result.content.map(|c| c.to_string());
                if content.as_ref().is_some_and(|c| c.len() > MAX_CLIENT_BYTES) {
                    Err(ClientError::Failed(format!(
                        "the person's answer takes more than {MAX_CLIENT_BYTES} bytes"
                    )))
                } else {
                    Ok(ElicitResponse {
                        action: match result.action {
                            rmcp::model::ElicitationAction::Accept => ElicitAction::Accept,
                            rmcp::model::ElicitationAction::Decline => ElicitAction::Decline,
                            // A later action this host does not know: as if
                            // dismissed.
                            _ => ElicitAction::Cancel,
                        },
                        content,
                    })
                }
            }
        };
        self.asking.asked.push(format!(
            "elicitation: {}",
            match &outcome {
                Ok(r) => format!("{:?}", r.action).to_lowercase(),
                Err(e) => format!("{e:?}"),
            }
        ));
        outcome
    }
}

/// `value` without its null members (optional fields left out).
fn strip_nulls(mut value: Value) -> Value {
    if let Value::Object(map) = &mut value {
        map.retain(|_, v| !v.is_null());
    }
    value
}
