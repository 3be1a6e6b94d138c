//! The answer to a call that needed an account its caller has not
//! connected: URL-mode elicitation (MCP 2025-11-25's
//! `URLElicitationRequiredError`, -32042) for clients that declared it,
//! and for the rest a tool error whose text carries the link, which any
//! client shows its user. Either way the user opens Moat's own page, and
//! the client's next call runs with the credential.

use rmcp::RoleServer;
use rmcp::model::{CallToolResult, ErrorCode, ErrorData};
use rmcp::service::RequestContext;
use serde_json::json;

/// MCP's code for "complete these URL elicitations, then retry".
const URL_ELICITATION_REQUIRED: i32 = -32042;

/// The answer to a call of `tool` that needs the caller's `connection`,
/// which they set up at `link`.
pub(super) fn needs(
    tool: &str,
    connection: &str,
    link: &str,
    context: &RequestContext<RoleServer>,
) -> Result<CallToolResult, ErrorData> {
    let message = format!(
        "`{tool}` needs your {connection} account: open the link to connect it, then call the tool again"
    );
    let url_mode = context
        .client_capabilities()
        .and_then(|c| c.elicitation)
        .is_some_and(|e| e.url.is_some());
    if url_mode {
        return Err(ErrorData::new(
            ErrorCode(URL_ELICITATION_REQUIRED),
            message.clone(),
            Some(json!({
                "elicitations": [{
                    "mode": "url",
                    "elicitationId": uuid::Uuid::new_v4().to_string(),
                    "url": link,
                    "message": message,
                }]
            })),
        ));
    }
    Ok(super::error_result(
        "needs_connection",
        &format!("{message}: {link}"),
    ))
}
