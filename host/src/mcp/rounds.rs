//! How a call's plugin reaches the client (see [`crate::runtime::client`]):
//! on the session, or, at 2026-07-28, in round trips whose sealed
//! `requestState` carries the answers so far and whose `inputResponses`
//! bring the next.

use super::{McpHandler, call_context};
use crate::confirm::StateError;
use crate::runtime::client::{Answered, MAX_CLIENT_BYTES, Pending, Relay, Way};
use crate::service::{AdmittedCall, Refusal};
use rmcp::model::{InputRequest, InputRequests, InputRequiredResult, InputResponses};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer};
use serde::{Deserialize, Serialize};

/// The key of the `n`-th request among a call's input requests.
fn key(n: usize) -> String {
    format!("moat_ask_{n}")
}

/// What a round's sealed state carries: the answers so far, and the
/// request the client is to answer in its retry.
#[derive(Serialize, Deserialize)]
struct Saved {
    answered: Vec<Answered>,
    method: String,
    digest: String,
}

/// The relay of a call about to run, and, at 2026-07-28, what the state
/// of its next round is bound to.
pub(super) struct Relaying {
    pub relay: Option<Relay>,
    binding: Option<Vec<u8>>,
}

impl McpHandler {
    /// How `call`'s plugin may ask the client: on the session where there
    /// is one before 2026-07-28; in round trips at 2026-07-28 (not for a
    /// tool that needs a person's confirmation, whose round trips carry
    /// that); not at all on stateless HTTP before 2026-07-28. `Err` for a
    /// retry whose state or answer is not valid: the call is refused.
    pub(super) fn relaying(
        &self,
        call: &AdmittedCall,
        confirmed: bool,
        state: Option<String>,
        responses: Option<InputResponses>,
        context: &RequestContext<RoleServer>,
    ) -> Result<Relaying, Refusal> {
        if !call.may_ask() {
            // The plugin's import refuses for want of the grant, before
            // any relay is looked at: none is built on the call path.
            return Ok(Relaying {
                relay: None,
                binding: None,
            });
        }
        let capabilities = context.client_capabilities();
        let sampling = capabilities.as_ref().is_some_and(|c| c.sampling.is_some());
        let elicitation = capabilities
            .and_then(|c| c.elicitation)
            .is_some_and(|e| e.form.is_some() || e.url.is_none());
        let relay = |way| Relay {
            way,
            sampling,
            elicitation,
        };
        let round_trips = context
            .protocol_version()
            .is_some_and(|v| v >= rmcp::model::ProtocolVersion::V_2026_07_28);
        if !round_trips {
            let way = if self.server_requests {
                Way::Session(context.peer.clone())
            } else {
                Way::Closed(
                    "this endpoint has no sessions ([http] stateless = true), and before \
                     protocol 2026-07-28 only a session can carry a request to the client"
                        .into(),
                )
            };
            return Ok(Relaying {
                relay: Some(relay(way)),
                binding: None,
            });
        }
        if confirmed {
            return Ok(Relaying {
                relay: Some(relay(Way::Closed(
                    "at 2026-07-28 a tool that needs a person's confirmation cannot also ask \
                     the client (the round trips carry the confirmation)"
                        .into(),
                ))),
                binding: None,
            });
        }
        let service = call.service();
        let binding = service.rounds_binding(call, &call_context(context));
        let answered = match state {
            None => Vec::new(),
            Some(state) => {
                let refused = |message: String| Refusal::InvalidArguments {
                    tool: service.tool_name(call).to_string(),
                    field: "/requestState".into(),
                    message,
                };
                let payload = service.open_rounds(&binding, &state).map_err(|e| {
                    refused(match e {
                        StateError::Expired => {
                            "the requestState has expired; call the tool again".into()
                        }
                        _ => "the requestState is not one Moat sealed for this caller, \
                                  tool, arguments and plugin (altered, or issued for another \
                                  call)"
                            .into(),
                    })
                })?;
                let saved: Saved = serde_json::from_slice(&payload)
                    .map_err(|e| refused(format!("requestState: {e}")))?;
                let key = key(saved.answered.len());
                let result = responses
                    .as_ref()
                    .and_then(|r| r.get(&key))
                    .ok_or_else(|| {
                        refused(format!(
                            "the retry carries no answer to input request `{key}`"
                        ))
                    })?;
                if result.to_string().len() > MAX_CLIENT_BYTES {
                    return Err(refused(format!(
                        "the answer to `{key}` takes more than {MAX_CLIENT_BYTES} bytes"
                    )));
                }
                let mut answered = saved.answered;
                answered.push(Answered {
                    method: saved.method,
                    digest: saved.digest,
                    result: result.clone(),
                });
                answered
            }
        };
        Ok(Relaying {
            relay: Some(relay(Way::Rounds(answered))),
            binding: Some(binding),
        })
    }

    /// The result that hands `pending` to the client, with the state its
    /// retry brings back.
    pub(super) fn asking(
        &self,
        relaying: &Relaying,
        pending: Pending,
    ) -> Result<InputRequiredResult, ErrorData> {
        let binding = relaying
            .binding
            .as_ref()
            .expect("only round trips leave a request pending");
        let request: InputRequest = serde_json::from_value(pending.request)
            .map_err(|e| ErrorData::internal_error(format!("the plugin's request: {e}"), None))?;
        let key = key(pending.answered.len());
        let saved = Saved {
            answered: pending.answered,
            method: pending.method,
            digest: pending.digest,
        };
        let payload = serde_json::to_vec(&saved).expect("a state serializes");
        // The sealing key is the process's (every version shares it).
        let state = self.service().seal_rounds(binding, &payload);
        Ok(InputRequiredResult::new(
            Some(InputRequests::from([(key, request)])),
            Some(state),
        ))
    }
}
