//! MCP over stdio: a local client launches `moat serve --stdio`. Only
//! protocol messages go to stdout; logs go to stderr and plugin output to
//! the log. No token: the launching process is trusted.

use crate::mcp::{LiveEndpoint, McpHandler};
use rmcp::ServiceExt;

/// Serves MCP on this process's stdin and stdout until the client closes
/// the connection.
pub async fn serve(live: LiveEndpoint) -> anyhow::Result<()> {
    let running = McpHandler::new(live)
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| anyhow::anyhow!("the MCP client did not complete initialization: {e}"))?;
    running.waiting().await?;
    Ok(())
}
