//! The plugin contract moved to `moat:plugin@0.2.0` (audio, resource links,
//! embedded resources, annotations); a plugin built against 0.1.0 loads,
//! logs and answers unchanged, over MCP as through the library.

use moat_tests::client::tool_names;
use moat_tests::{MoatServer, Sandbox};
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_built_against_0_1_0_still_serves() {
    let sandbox = Sandbox::builder()
        .plugin("legacy", "")
        .plugin("conformance", "")
        .build()
        .await;
    assert!(
        sandbox
            .plugin("legacy")
            .imports
            .iter()
            .any(|i| i == "moat:plugin/log@0.1.0")
    );
    assert!(
        sandbox
            .plugin("conformance")
            .imports
            .iter()
            .all(|i| !i.contains("@0.1.0"))
    );
    let out = sandbox
        .call("legacy", "shout", json!({ "text": "quiet" }))
        .await;
    assert_eq!(out.result.unwrap().joined_text(), "QUIET");

    let dir = Sandbox::builder()
        .plugin("legacy", "")
        .plugin("conformance", "")
        .write();
    let server = MoatServer::start(dir.path(), &[]);
    let client =
        ().serve(StreamableHttpClientTransport::from_uri(server.url.clone()))
            .await
            .unwrap();
    assert!(
        tool_names(&client)
            .await
            .contains(&"legacy.shout".to_string())
    );
    let old = client
        .call_tool(
            CallToolRequestParams::new("legacy.shout")
                .with_arguments(json!({ "text": "hi" }).as_object().unwrap().clone()),
        )
        .await
        .unwrap();
    let old = serde_json::to_value(&old).unwrap();
    assert_eq!(old["content"][0], json!({ "type": "text", "text": "HI" }));
    assert_eq!(
        old["content"][1],
        json!({ "type": "image", "mimeType": "image/gif", "data": "R0lGODlh" })
    );
    // The new kinds, from a 0.2.0 plugin.
    let new = client
        .call_tool(CallToolRequestParams::new(
            "conformance.test_multiple_content_types",
        ))
        .await
        .unwrap();
    let new = serde_json::to_value(&new).unwrap();
    let kinds: Vec<&str> = new["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["text", "image", "resource"]);
    assert_eq!(
        new["content"][2]["resource"],
        json!({ "uri": "test://mixed-content-resource", "mimeType": "application/json", "text": r#"{"test":"data","value":123}"# })
    );
    client.cancel().await.unwrap();
    // The 0.1.0 plugin's log line reached the host's log.
    assert!(server.log().contains("shouting"), "{}", server.log());
}
