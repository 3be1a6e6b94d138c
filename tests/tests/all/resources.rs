//! Resources, prompts and completions from plugins: each runs in a fresh
//! instance under the plugin's grants and budgets, goes through the
//! endpoint's policy (lists show only what the caller may use) and is
//! audited. Every refusal is tried, and the next request still served.

use moat_tests::auth::{TestIssuer, TestKey, claims};
use moat_tests::raw::{Answer, request};
use moat_tests::{MoatServer, Sandbox, audit_records};
use serde_json::{Value, json};

async fn read(url: &str, token: Option<&str>, uri: &str) -> Answer {
    request(url, token, "resources/read", json!({ "uri": uri })).await
}

fn text(answer: &Answer) -> &str {
    answer.body["result"]["contents"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text: {}", answer.body))
}

fn error(answer: &Answer) -> (i64, String) {
    let e = &answer.body["error"];
    (
        e["code"]
            .as_i64()
            .unwrap_or_else(|| panic!("no error: {}", answer.body)),
        e["message"].as_str().unwrap_or_default().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_prompts_run_under_the_plugins_grants_and_budgets() {
    let dir = Sandbox::builder()
        .file("data/a.txt", "alpha")
        .file("secret.txt", "do not read")
        .plugin(
            "testbed",
            "dirs = [{ host = \"data\", guest = \"/data\" }]\nfuel = 50_000_000\nmax_output_bytes = 1_000_000",
        )
        .toml("[http]\nstateless = true\n[audit]\nfile = \"audit.jsonl\"\n")
        .write();
    let server = MoatServer::start(dir.path(), &[]);
    let url = server.url.as_str();

    assert_eq!(
        text(&read(url, None, "testbed://files/a.txt").await),
        "alpha"
    );
    // `..` through the granted directory: WASI refuses it; the plugin's
    // error comes back, nothing of the host's files.
    let escape = read(url, None, "testbed://files/..%2Fsecret.txt").await;
    let (code, message) = error(&escape);
    assert_eq!(code, -32603, "{}", escape.body);
    assert!(
        message.contains("cannot read") && !message.contains("do not read"),
        "{message}"
    );
    // No environment is granted: the plugin sees none.
    assert_eq!(text(&read(url, None, "testbed://env").await), "unset");
    // The output cap holds for reads.
    let (code, message) = error(&read(url, None, "testbed://huge").await);
    assert_eq!(code, -32603);
    assert!(message.contains("output too large"), "{message}");
    // So does fuel.
    let (_, message) = error(&read(url, None, "testbed://spin").await);
    assert!(message.contains("out of fuel"), "{message}");
    // A URI longer than any a plugin may list is refused before matching.
    let long = format!("testbed://files/{}", "a".repeat(3000));
    let answer = read(url, None, &long).await;
    let (code, message) = error(&answer);
    assert_eq!(code, -32602, "{}", answer.body);
    assert!(message.contains("longer than 2048 bytes"), "{message}");
    // A URI no plugin serves is not found (-32002), named.
    let (code, message) = error(&read(url, None, "testbed://nowhere").await);
    assert_eq!(
        (code, message.as_str()),
        (-32002, "unknown resource `testbed://nowhere`")
    );

    // A prompt reads under the same grants: outside them, nothing.
    let leak = request(
        url,
        None,
        "prompts/get",
        json!({ "name": "testbed.leak", "arguments": { "path": "/etc/passwd" } }),
    )
    .await;
    let (code, message) = error(&leak);
    assert_eq!(code, -32603, "{}", leak.body);
    assert!(!message.contains("root:"), "{message}");
    // Arguments are checked before the plugin runs.
    for (arguments, field) in [
        (json!({}), "/path"),
        (json!({ "path": "x", "extra": "y" }), "/extra"),
    ] {
        let answer = request(
            url,
            None,
            "prompts/get",
            json!({ "name": "testbed.leak", "arguments": arguments }),
        )
        .await;
        let (code, message) = error(&answer);
        assert_eq!(code, -32602, "{}", answer.body);
        assert!(message.contains(field), "{message}");
        assert_eq!(answer.body["error"]["data"]["field"], field);
    }
    // Completions run in the sandbox too: the plugin lists its granted
    // directory.
    let done = request(
        url,
        None,
        "completion/complete",
        json!({ "ref": { "type": "ref/resource", "uri": "testbed://files/{name}" },
                "argument": { "name": "name", "value": "a" } }),
    )
    .await;
    assert_eq!(
        done.body["result"]["completion"]["values"],
        json!(["a.txt"])
    );

    // The host still serves, and every request is audited with its method.
    assert_eq!(
        text(&read(url, None, "testbed://files/a.txt").await),
        "alpha"
    );
    let records = audit_records(&dir.path().join("audit.jsonl"));
    let of = |method: &str, target: &str| -> Vec<&Value> {
        records
            .iter()
            .filter(|r| r["method"] == method && r["tool"] == target)
            .collect()
    };
    let huge = of("resources/read", "testbed://huge");
    assert_eq!(huge.len(), 1);
    assert_eq!(huge[0]["kind"], "output_too_large");
    assert!(huge[0]["plugin_sha256"].is_string());
    assert_eq!(
        of("resources/read", "testbed://nowhere")[0]["kind"],
        "unknown_resource"
    );
    assert_eq!(of("prompts/get", "testbed.leak").len(), 3);
    assert_eq!(
        of("completion/complete", "testbed://files/{name}")[0]["outcome"],
        "ok"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_rules_name_resources_and_prompts_and_lists_show_only_those() {
    let key = TestKey::new("k1", 5);
    let issuer = TestIssuer::start(&[&key]).await;
    let resource = "http://127.0.0.1/mcp";
    let dir = Sandbox::builder()
        .file("data/a.txt", "alpha")
        .plugin("testbed", "dirs = [{ host = \"data\", guest = \"/data\" }]")
        .toml(&format!(
            "[http]\nstateless = true\n[auth]\nissuer = \"{base}\"\njwks_uri = \"{base}/keys\"\n\
             resource = \"{resource}\"\nalgorithms = [\"EdDSA\"]\n\
             [[auth.rule]]\nscopes = [\"files\"]\nresources = [\"testbed://files/*\"]\n\
             [[auth.rule]]\nscopes = [\"prompts\"]\nprompts = [\"testbed.*\"]\n",
            base = issuer.base
        ))
        .write();
    let server = MoatServer::start(dir.path(), &[]);
    let url = server.url.as_str();
    let files = key.sign(&claims(&issuer.base, resource, "files"));
    let prompts = key.sign(&claims(&issuer.base, resource, "prompts"));

    // The files scope sees the template and reads through it; nothing else.
    let listed = request(url, Some(&files), "resources/list", json!({})).await;
    assert_eq!(
        listed.body["result"]["resources"],
        json!([]),
        "{}",
        listed.body
    );
    let templates = request(url, Some(&files), "resources/templates/list", json!({})).await;
    assert_eq!(
        templates.body["result"]["resourceTemplates"][0]["uriTemplate"],
        "testbed://files/{name}"
    );
    assert_eq!(
        text(&read(url, Some(&files), "testbed://files/a.txt").await),
        "alpha"
    );
    let (code, message) = error(&read(url, Some(&files), "testbed://env").await);
    assert_eq!(
        (code, message.as_str()),
        (-32600, "the caller may not use `testbed://env`")
    );
    let prompts_listed = request(url, Some(&files), "prompts/list", json!({})).await;
    assert_eq!(prompts_listed.body["result"]["prompts"], json!([]));
    let (code, _) = error(
        &request(
            url,
            Some(&files),
            "prompts/get",
            json!({ "name": "testbed.leak", "arguments": { "path": "/data/a.txt" } }),
        )
        .await,
    );
    assert_eq!(code, -32600);
    // Completing a prompt's argument needs the prompt.
    let (code, _) = error(
        &request(
            url,
            Some(&files),
            "completion/complete",
            json!({ "ref": { "type": "ref/prompt", "name": "testbed.leak" },
                    "argument": { "name": "path", "value": "/" } }),
        )
        .await,
    );
    assert_eq!(code, -32600);

    // The prompts scope gets the prompt (under the plugin's grants) and no
    // resource at all.
    let got = request(
        url,
        Some(&prompts),
        "prompts/get",
        json!({ "name": "testbed.leak", "arguments": { "path": "/data/a.txt" } }),
    )
    .await;
    assert_eq!(
        got.body["result"]["messages"][0]["content"]["text"],
        "alpha"
    );
    let templates = request(url, Some(&prompts), "resources/templates/list", json!({})).await;
    assert_eq!(templates.body["result"]["resourceTemplates"], json!([]));
    let (code, _) = error(&read(url, Some(&prompts), "testbed://files/a.txt").await);
    assert_eq!(code, -32600);
    // Without a token: 401, before any of it.
    assert_eq!(read(url, None, "testbed://files/a.txt").await.status, 401);
}

/// Counts the `notifications/resources/updated` it hears, by URI.
#[derive(Clone, Default)]
struct Listener(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl rmcp::ClientHandler for Listener {
    async fn on_resource_updated(
        &self,
        params: rmcp::model::ResourceUpdatedNotificationParam,
        _context: rmcp::service::NotificationContext<rmcp::RoleClient>,
    ) {
        self.0.lock().unwrap().push(params.uri);
    }
}

// `resources/subscribe` is what sessions of 2025-11-25 and before use
// (2026-07-28 replaces it with `subscriptions/listen`).
#[allow(deprecated)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_hear_of_changes_a_plugin_makes_to_its_own_resources_only() {
    use rmcp::ServiceExt;
    use rmcp::model::CallToolRequestParams;
    use rmcp::model::{SubscribeRequestParams, UnsubscribeRequestParams};
    let dir = Sandbox::builder()
        .file("data/a.txt", "alpha")
        .plugin("testbed", "dirs = [{ host = \"data\", guest = \"/data\" }]")
        .toml(&format!(
            "[[plugin]]\nname = \"conformance\"\nsource = {:?}\nprefix = \"c\"\n",
            moat_tests::plugin_wasm("conformance").display().to_string()
        ))
        .write();
    let server = MoatServer::start(dir.path(), &[]);
    let heard = Listener::default();
    let client = heard
        .clone()
        .serve(rmcp::transport::StreamableHttpClientTransport::from_uri(
            server.url.clone(),
        ))
        .await
        .unwrap();
    let file = "testbed://files/a.txt";
    client
        .subscribe(SubscribeRequestParams::new(file))
        .await
        .unwrap();
    client
        .subscribe(SubscribeRequestParams::new("test://static-text"))
        .await
        .unwrap();
    // Subscribing to what no plugin serves is refused, named.
    let unknown = client
        .subscribe(SubscribeRequestParams::new("testbed://nowhere"))
        .await
        .unwrap_err();
    assert!(
        unknown.to_string().contains("unknown resource"),
        "{unknown}"
    );
    let touch = |uri: &str| {
        client.call_tool(
            CallToolRequestParams::new("testbed.touch")
                .with_arguments(json!({ "text": uri }).as_object().unwrap().clone()),
        )
    };
    assert_eq!(touch(file).await.unwrap().is_error, Some(false));
    // Another plugin's resource: the testbed cannot make clients re-read it.
    touch("test://static-text").await.unwrap();
    let wait = || tokio::time::sleep(std::time::Duration::from_millis(300));
    wait().await;
    assert_eq!(*heard.0.lock().unwrap(), [file]);
    client
        .unsubscribe(UnsubscribeRequestParams::new(file))
        .await
        .unwrap();
    touch(file).await.unwrap();
    wait().await;
    assert_eq!(heard.0.lock().unwrap().len(), 1, "unsubscribed");
    client.cancel().await.unwrap();

    // Without sessions, nothing could carry the notification: refused.
    let dir = Sandbox::builder()
        .file("data/a.txt", "alpha")
        .plugin("testbed", "dirs = [{ host = \"data\", guest = \"/data\" }]")
        .toml("[http]\nstateless = true\n")
        .write();
    let server = MoatServer::start(dir.path(), &[]);
    let answer = request(
        &server.url,
        None,
        "resources/subscribe",
        json!({ "uri": file }),
    )
    .await;
    let (code, message) = error(&answer);
    assert_eq!(code, -32600);
    assert!(
        message.contains("subscriptions need a session"),
        "{message}"
    );
    assert_eq!(text(&read(&server.url, None, file).await), "alpha");
}
