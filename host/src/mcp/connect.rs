//! Asking a caller to connect an account a call needed, the way their
//! client and protocol allow. Clients that declared URL-mode elicitation
//! are asked while the call waits: an `InputRequiredResult` carrying the
//! URL elicitation on 2026-07-28, an `elicitation/create` on the call's
//! own stream where there are sessions; once the user has connected on
//! Moat's page the call runs again and the client gets its result. Where
//! neither can carry the question (no sessions before 2026-07-28), the
//! answer is MCP 2025-11-25's `URLElicitationRequiredError` (-32042), and
//! for clients without URL elicitation a tool error whose text carries
//! the link, which any client shows its user; either way the client's
//! next call runs with the credential.

use super::{McpHandler, error_result};
use crate::credentials::store::Owner;
use crate::service::ToolService;
use rmcp::RoleServer;
use rmcp::model::{
    CallToolResponse, ElicitRequest, ElicitRequestParams, ElicitResult, ElicitationAction,
    ErrorCode, ErrorData, InputRequest, InputRequests, InputRequiredResult, ProtocolVersion,
};
use rmcp::service::RequestContext;
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::time::Instant;

/// MCP's code for "complete these URL elicitations, then retry".
const URL_ELICITATION_REQUIRED: i32 = -32042;

/// The key of the connect question among a round trip's input requests.
pub(super) const CONNECT_KEY: &str = "moat_connect";

/// What becomes of a call whose request needed an account its caller has
/// not connected.
pub(super) enum Connecting {
    /// The answer to send now.
    Answer(Result<CallToolResponse, ErrorData>),
    /// The caller connected it while the call waited: it runs again.
    Connected,
}

/// A call that needed `owner.connection`, which its caller sets up at
/// `link`.
#[derive(Clone, Copy)]
pub(super) struct Needed<'a> {
    /// The tool, as clients call it.
    pub tool: &'a str,
    /// Whose account, for which connection.
    pub owner: &'a Owner,
    /// Moat's page where they connect it.
    pub link: &'a str,
    /// When the call began (seconds since the epoch): a credential stored
    /// before may be the one the upstream refused.
    pub since: u64,
}

impl McpHandler {
    /// Asks the caller to connect what `needed` names. `answered` is the
    /// client's answer to the question of an earlier round (2026-07-28);
    /// `may_wait` is false where the call cannot run again (see
    /// `call_tool`: a person's confirmation, its plugin's own round trip,
    /// a request already sent, or it ran again already), and the answer
    /// is then the link.
    pub(super) async fn connecting(
        &self,
        service: &Arc<ToolService>,
        needed: Needed<'_>,
        answered: Option<Value>,
        may_wait: bool,
        context: &RequestContext<RoleServer>,
    ) -> Connecting {
        let round_trips = context
            .protocol_version()
            .is_some_and(|v| v >= ProtocolVersion::V_2026_07_28);
        let in_call = url_mode(context) && may_wait && (round_trips || self.server_requests);
        if !in_call {
            return Connecting::Answer(link_answer(&needed, context));
        }
        if round_trips && answered.is_none() {
            let requests = InputRequests::from([(
                CONNECT_KEY.to_string(),
                InputRequest::Elicitation(ElicitRequest::new(question(&needed))),
            )]);
            let asking = InputRequiredResult::new(Some(requests), None);
            return Connecting::Answer(Ok(asking.into()));
        }
        // A waiting call holds a request open: a caller may have only a
        // few waiting at once.
        let Some(_waiting) = service.connect_wait(needed.owner) else {
            return Connecting::Answer(link_answer(&needed, context));
        };
        let timeout = service.confirm_timeout();
        let started = Instant::now();
        let action = match answered {
            Some(answer) => serde_json::from_value::<ElicitResult>(answer)
                .map(|r| r.action)
                .ok(),
            None => context
                .peer
                .create_elicitation_with_timeout(question(&needed), Some(timeout))
                .await
                .ok()
                .map(|r| r.action),
        };
        match action {
            // The user agreed to open the page; the call waits for them.
            Some(ElicitationAction::Accept) => {
                let left = timeout.saturating_sub(started.elapsed());
                match service.connected(needed.owner, needed.since, left).await {
                    true => Connecting::Connected,
                    false => Connecting::Answer(Ok(error_result(
                        "needs_connection",
                        &format!(
                            "`{}` needs your {} account, which was not connected within {} s: \
                             finish at {}, then call the tool again",
                            needed.tool,
                            needed.owner.connection,
                            timeout.as_secs(),
                            needed.link
                        ),
                    )
                    .into())),
                }
            }
            Some(ElicitationAction::Decline | ElicitationAction::Cancel) => {
                Connecting::Answer(Ok(error_result(
                    "needs_connection",
                    &format!(
                        "`{}` needs your {} account, and the user chose not to connect it now; \
                         to connect it later, open {}",
                        needed.tool, needed.owner.connection, needed.link
                    ),
                )
                .into()))
            }
            // No answer, or none that can be read: the link, as to any
            // client that cannot be asked.
            _ => Connecting::Answer(link_answer(&needed, context)),
        }
    }
}

/// Whether the client declared URL-mode elicitation.
fn url_mode(context: &RequestContext<RoleServer>) -> bool {
    context
        .client_capabilities()
        .and_then(|c| c.elicitation)
        .is_some_and(|e| e.url.is_some())
}

/// The URL elicitation for `needed`.
fn question(needed: &Needed<'_>) -> ElicitRequestParams {
    ElicitRequestParams::UrlElicitationParams {
        meta: None,
        message: format!(
            "`{}` needs your {} account: open the link to connect it",
            needed.tool, needed.owner.connection
        ),
        url: needed.link.to_string(),
        elicitation_id: uuid::Uuid::new_v4().to_string(),
    }
}

/// The answer that gives the link, for the client to retry once the user
/// has connected: -32042 to clients that declared URL elicitation, a tool
/// error with the link to the rest.
pub(super) fn link_answer(
    needed: &Needed<'_>,
    context: &RequestContext<RoleServer>,
) -> Result<CallToolResponse, ErrorData> {
    let url_mode = url_mode(context);
    let message = format!(
        "`{}` needs your {} account: open the link to connect it, then call the tool again",
        needed.tool, needed.owner.connection
    );
    if url_mode {
        return Err(ErrorData::new(
            ErrorCode(URL_ELICITATION_REQUIRED),
            message.clone(),
            Some(json!({
                "elicitations": [{
                    "mode": "url",
                    "elicitationId": uuid::Uuid::new_v4().to_string(),
                    "url": needed.link,
                    "message": message,
                }]
            })),
        ));
    }
    Ok(error_result("needs_connection", &format!("{message}: {}", needed.link)).into())
}
