//! The `client` import: a plugin asks the MCP client, during a call, for a
//! model's answer (sampling) or the person's input (elicitation). Only with
//! the grant (`sampling = { max_tokens = N }`, `elicitation = true`), only
//! where the transport can ask, only from a client that declared the
//! capability, and within the call's budgets: tokens, requests, bytes each
//! way, and the call's time. Every request is remembered for the call's
//! audit record.
//!
//! With a session (stdio, stateful HTTP, protocols before 2026-07-28) the
//! request goes to the client and the plugin waits for the answer. At
//! 2026-07-28 (no server-to-client requests) the call ends with the
//! request, the client answers in its retry, and the call runs again from
//! the start: the requests it made before get the answers the retry
//! carries, in order, and must be the same requests (a plugin asks before
//! it acts).

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
use rmcp::model::{CreateMessageRequestParams, ElicitRequestParams, ElicitationSchema};
use rmcp::{Peer, RoleServer};
use serde_json::{Value, json};
use sha2::Digest as _;

/// Requests a call may send the client, sampling and elicitation together.
pub const MAX_CLIENT_REQUESTS: usize = 16;

/// Bytes of one request to the client (messages, schema), and of one
/// answer handed to the plugin.
pub const MAX_CLIENT_BYTES: usize = 1 << 20;

/// How a call reaches the client that made it.
#[derive(Clone)]
pub struct Relay {
    /// How requests travel.
    pub way: Way,
    /// The client declared sampling.
    pub sampling: bool,
    /// The client declared elicitation (forms).
    pub elicitation: bool,
}

/// How requests reach the client.
#[derive(Clone)]
pub enum Way {
    /// On the session, answered while the call waits.
    Session(Peer<RoleServer>),
    /// In the round trips of 2026-07-28: the answers so far, in order.
    Rounds(Vec<Answered>),
    /// Nothing can carry a request, for this reason.
    Closed(String),
}

/// A request of an earlier round and the client's answer to it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Answered {
    /// `sampling/createMessage` or `elicitation/create`.
    pub method: String,
    /// SHA-256 of the request's parameters: the retry's request must be
    /// the same.
    pub digest: String,
    /// The client's result.
    pub result: Value,
}

/// A request the call ended on, to be answered in the client's retry.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    /// The requests answered before it, in order.
    pub answered: Vec<Answered>,
    /// The request's method.
    pub method: String,
    /// SHA-256 of its parameters.
    pub digest: String,
    /// The request as MCP carries it (`method` and `params`).
    pub request: Value,
}

/// Ends the run of a call that waits for the client's answer in a retry.
#[derive(Debug, thiserror::Error)]
#[error("the call waits for the client's answer")]
pub(super) struct AwaitingClient;

/// What is left of a call's grants to ask the client.
pub(super) struct Asking {
    /// Tokens left of `sampling.max_tokens`; `None`: not granted.
    tokens: Option<u32>,
    elicitation: bool,
    /// Requests made so far this run.
    made: usize,
    relay: Option<Relay>,
    /// One line per request, for the audit record.
    pub asked: Vec<String>,
    /// The request the run ended on, at 2026-07-28.
    pub pending: Option<Pending>,
}

impl Asking {
    pub(super) fn new(grants: &crate::capabilities::Grants, relay: Option<Relay>) -> Self {
        Asking {
            tokens: grants.sampling.map(|s| s.max_tokens),
            elicitation: grants.elicitation,
            made: 0,
            relay,
            asked: Vec::new(),
            pending: None,
        }
    }

    /// Whether a request of `method` could go out now: within the call's
    /// count, over a relay, to a client that declared the capability.
    /// Checked before the request is built, so that a request that cannot
    /// go out costs the host nothing.
    fn can_ask(&self, method: &str) -> Result<(), ClientError> {
        if self.made == MAX_CLIENT_REQUESTS {
            return Err(ClientError::NotGranted(format!(
                "a call may ask the client at most {MAX_CLIENT_REQUESTS} times"
            )));
        }
        let Some(relay) = &self.relay else {
            return Err(ClientError::Unsupported(
                "there is no client to ask: only a tool call from an MCP client can ask it".into(),
            ));
        };
        if let Way::Closed(why) = &relay.way {
            return Err(ClientError::Unsupported(why.clone()));
        }
        let (capable, what) = if method == SAMPLING {
            (relay.sampling, "sampling")
        } else {
            (relay.elicitation, "elicitation")
        };
        if !capable {
            return Err(ClientError::Unsupported(format!(
                "the client did not declare the {what} capability"
            )));
        }
        Ok(())
    }

    /// Sends `params` as `method` to the client and returns its result;
    /// at 2026-07-28, the answer of an earlier round, or the end of this
    /// run with the request pending. Takes one request of the budget.
    async fn ask(
        &mut self,
        method: &str,
        params: Value,
    ) -> wasmtime::Result<Result<Value, ClientError>> {
        let what = if method == SAMPLING {
            "sampling"
        } else {
            "elicitation"
        };
        if let Err(e) = self.can_ask(method) {
            return Ok(Err(e));
        }
        let Some(relay) = &self.relay else {
            unreachable!("can_ask found a relay")
        };
        let index = self.made;
        self.made += 1;
        let outcome = match &relay.way {
            Way::Session(peer) => {
                let sent = if method == SAMPLING {
                    match serde_json::from_value::<CreateMessageRequestParams>(params) {
                        Ok(p) => peer.create_message(p).await.map(serde_json::to_value),
                        Err(e) => return Ok(Err(invalid(what, e))),
                    }
                } else {
                    match serde_json::from_value::<ElicitRequestParams>(params) {
                        Ok(p) => peer.create_elicitation(p).await.map(serde_json::to_value),
                        Err(e) => return Ok(Err(invalid(what, e))),
                    }
                };
                match sent {
                    Ok(Ok(result)) => Ok(result),
                    Ok(Err(e)) => Err(ClientError::Failed(format!("the client's answer: {e}"))),
                    Err(e) => Err(ClientError::Failed(format!(
                        "the client did not answer: {e}"
                    ))),
                }
            }
            Way::Rounds(answered) => {
                let digest = hex::encode(sha2::Sha256::digest(params.to_string().as_bytes()));
                match answered.get(index) {
                    Some(a) if a.method == method && a.digest == digest => Ok(a.result.clone()),
                    Some(_) => Err(ClientError::Failed(
                        "the plugin asked the client something else on the retry than before; \
                         a plugin must ask the same questions in the same order (ask before acting)"
                            .into(),
                    )),
                    None => {
                        self.pending = Some(Pending {
                            answered: answered.clone(),
                            method: method.to_string(),
                            digest,
                            request: json!({ "method": method, "params": params }),
                        });
                        self.asked
                            .push(format!("{what}: asked in the response (2026-07-28)"));
                        return Err(wasmtime::Error::new(AwaitingClient));
                    }
                }
            }
            Way::Closed(_) => unreachable!("can_ask refuses a closed way"),
        };
        self.asked.push(format!(
            "{what}: {}",
            match &outcome {
                Ok(result) => result
                    .get("action")
                    .and_then(Value::as_str)
                    .unwrap_or("answered")
                    .to_string(),
                Err(e) => format!("{e:?}"),
            }
        ));
        Ok(outcome)
    }
}

const SAMPLING: &str = "sampling/createMessage";
const ELICITATION: &str = "elicitation/create";

fn invalid(what: &str, e: serde_json::Error) -> ClientError {
    ClientError::Invalid(format!("not a {what} request MCP allows: {e}"))
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

/// Most messages, stop sequences or model hints one sampling request may
/// carry.
const MAX_ITEMS: usize = 256;

/// What each item of a request costs beyond its bytes (its JSON framing,
/// in the host's memory as the request is built).
const ITEM_BYTES: usize = 64;

fn request_size(request: &SamplingRequest) -> usize {
    let content = |m: &Message| match &m.content {
        MessageContent::Text(t) => t.len(),
        MessageContent::Image(Image { data, mime_type })
        | MessageContent::Audio(Audio { data, mime_type }) => data.len() * 4 / 3 + mime_type.len(),
    };
    let items = request.messages.len() + request.stop_sequences.len() + request.model_hints.len();
    items * ITEM_BYTES
        + request.messages.iter().map(content).sum::<usize>()
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
    async fn sample(
        &mut self,
        request: SamplingRequest,
    ) -> wasmtime::Result<Result<SamplingResponse, ClientError>> {
        let asking = &mut self.asking;
        let Some(left) = asking.tokens else {
            return Ok(Err(ClientError::NotGranted(
                "the operator did not grant `sampling` to this plugin".into(),
            )));
        };
        if request.max_tokens == 0 || request.max_tokens > left {
            return Ok(Err(ClientError::NotGranted(format!(
                "the request asks for up to {} tokens; {left} are left of this call's sampling grant",
                request.max_tokens
            ))));
        }
        if request.messages.is_empty() {
            return Ok(Err(ClientError::Invalid(
                "a sampling request needs a message".into(),
            )));
        }
        let items = [
            request.messages.len(),
            request.stop_sequences.len(),
            request.model_hints.len(),
        ];
        if items.iter().any(|&n| n > MAX_ITEMS) {
            return Ok(Err(ClientError::Invalid(format!(
                "a sampling request carries at most {MAX_ITEMS} messages, stop sequences and model hints each"
            ))));
        }
        let size = request_size(&request);
        if size > MAX_CLIENT_BYTES {
            return Ok(Err(ClientError::Invalid(format!(
                "the request takes {size} bytes, more than {MAX_CLIENT_BYTES}"
            ))));
        }
        if let Err(e) = asking.can_ask(SAMPLING) {
            return Ok(Err(e));
        }
        let params = strip_nulls(json!({
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
        }));
        if let Err(e) = serde_json::from_value::<CreateMessageRequestParams>(params.clone()) {
            return Ok(Err(invalid("sampling", e)));
        }
        let result = match asking.ask(SAMPLING, params).await? {
            Ok(result) => result,
            Err(e) => return Ok(Err(e)),
        };
        // Spent only once asked: a refused request costs nothing.
        asking.tokens = Some(left - request.max_tokens);
        Ok(sampled(result))
    }

    async fn elicit(
        &mut self,
        message: String,
        requested_schema: String,
    ) -> wasmtime::Result<Result<ElicitResponse, ClientError>> {
        let asking = &mut self.asking;
        if !asking.elicitation {
            return Ok(Err(ClientError::NotGranted(
                "the operator did not grant `elicitation` to this plugin".into(),
            )));
        }
        let size = message.len() + requested_schema.len();
        if size > MAX_CLIENT_BYTES {
            return Ok(Err(ClientError::Invalid(format!(
                "the request takes {size} bytes, more than {MAX_CLIENT_BYTES}"
            ))));
        }
        if let Err(e) = asking.can_ask(ELICITATION) {
            return Ok(Err(e));
        }
        // Read straight into MCP's schema type: no generic JSON tree of
        // the plugin's bytes is built on the host.
        let schema: ElicitationSchema = match serde_json::from_str(&requested_schema) {
            Ok(schema) => schema,
            Err(e) => {
                return Ok(Err(ClientError::Invalid(format!(
                    "the requested schema is not one MCP elicitation allows (a flat object of \
                     string, number, integer, boolean and enum properties): {e}"
                ))));
            }
        };
        if schema.properties.len() > MAX_ITEMS {
            return Ok(Err(ClientError::Invalid(format!(
                "the requested schema has more than {MAX_ITEMS} properties"
            ))));
        }
        let params = ElicitRequestParams::FormElicitationParams {
            meta: None,
            message,
            requested_schema: schema,
        };
        let params = serde_json::to_value(params).expect("a request serializes");
        Ok(match asking.ask(ELICITATION, params).await? {
            Ok(result) => elicited(result),
            Err(e) => Err(e),
        })
    }
}

/// The client's sampling result, as the plugin takes it.
fn sampled(result: Value) -> Result<SamplingResponse, ClientError> {
    let failed = |why: String| ClientError::Failed(why);
    // MCP's result holds the message's `role` and `content` beside `model`.
    let content = answer_content(&result).map_err(failed)?;
    let bytes = match &content {
        MessageContent::Text(t) => t.len(),
        MessageContent::Image(i) => i.data.len(),
        MessageContent::Audio(a) => a.data.len(),
    };
    if bytes > MAX_CLIENT_BYTES {
        return Err(failed(format!(
            "the client's answer takes {bytes} bytes, more than a plugin is given ({MAX_CLIENT_BYTES})"
        )));
    }
    Ok(SamplingResponse {
        role: if result["role"] == "user" {
            Role::User
        } else {
            Role::Assistant
        },
        content,
        model: result["model"].as_str().unwrap_or_default().to_string(),
        stop_reason: result["stopReason"].as_str().map(str::to_string),
    })
}

/// The client's elicitation result, as the plugin takes it.
fn elicited(result: Value) -> Result<ElicitResponse, ClientError> {
    let action = match result["action"].as_str() {
        Some("accept") => ElicitAction::Accept,
        Some("decline") => ElicitAction::Decline,
        // `cancel`, or an action this host does not know: as if dismissed.
        _ => ElicitAction::Cancel,
    };
    let content = match (&action, result.get("content")) {
        (ElicitAction::Accept, Some(c)) if c.is_object() => Some(c.to_string()),
        _ => None,
    };
    if content.as_ref().is_some_and(|c| c.len() > MAX_CLIENT_BYTES) {
        return Err(ClientError::Failed(format!(
            "the person's answer takes more than {MAX_CLIENT_BYTES} bytes"
        )));
    }
    Ok(ElicitResponse { action, content })
}

/// `value` without its null members (optional fields left out).
fn strip_nulls(mut value: Value) -> Value {
    if let Value::Object(map) = &mut value {
        map.retain(|_, v| !v.is_null());
    }
    value
}
