//! Shortcuts over rmcp's client for what tests ask again and again.

use rmcp::RoleClient;
use rmcp::model::CallToolRequestParams;
use rmcp::service::RunningService;
use serde_json::Value;

/// A connected rmcp client without handlers of its own.
pub type Client = RunningService<RoleClient, ()>;

/// An rmcp client connected to the Streamable HTTP endpoint `url`.
pub async fn connect(url: &str) -> Client {
    use rmcp::ServiceExt;
    ().serve(rmcp::transport::StreamableHttpClientTransport::from_uri(
        url.to_string(),
    ))
    .await
    .expect("connecting to moat")
}

/// The tools the client sees, sorted by name.
pub async fn tool_names(client: &Client) -> Vec<String> {
    let mut names: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    names
}

/// Calls `tool` with `args` (a JSON object): whether the result is an
/// error, and the text of its first content block.
pub async fn call_text(client: &Client, tool: &str, args: Value) -> (bool, String) {
    let result = client
        .call_tool(
            CallToolRequestParams::new(tool.to_string())
                .with_arguments(args.as_object().unwrap().clone()),
        )
        .await
        .unwrap();
    let text = serde_json::to_value(&result.content).unwrap()[0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (result.is_error == Some(true), text)
}
