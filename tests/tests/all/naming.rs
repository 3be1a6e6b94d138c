//! Tool names as the operator chooses them: `<plugin>.<tool>` by default,
//! another prefix, none, or a rename per tool. Clients see, call and are
//! authorized by those names alone; two tools that would share a name at
//! one endpoint are refused at load, with both named.

use moat_tests::auth::{TestIssuer, TestKey, claims};
use moat_tests::client::{call_text, tool_names};
use moat_tests::{MoatServer, Sandbox, moat_bin, plugin_wasm};
use rmcp::ServiceExt;
use rmcp::transport::StreamableHttpClientTransport;
use serde_json::json;

/// `moat <args>` in `dir`: exit code, stdout, stderr.
fn moat(dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(moat_bin())
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `moat check` of `config`, which must fail: its stderr.
fn refused(config: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("moat.toml"), config).unwrap();
    let (code, out, err) = moat(dir.path(), &["check", "--config", "moat.toml"]);
    assert_eq!(code, 2, "{config}\n{out}{err}");
    err
}

/// A `[[plugin]]` table of `wasm` named `name`, with `lines` added.
fn plugin(name: &str, wasm: &str, lines: &str) -> String {
    format!(
        "[[plugin]]\nname = \"{name}\"\nsource = {:?}\n{lines}\n",
        plugin_wasm(wasm).display().to_string()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_none_or_a_rename_names_tools_for_clients_and_policy() {
    let key = TestKey::new("k1", 9);
    let issuer = TestIssuer::start(&[&key]).await;
    let resource = "http://127.0.0.1/mcp";
    let dir = Sandbox::builder()
        .file("demo/a.txt", "alpha")
        .toml(&plugin(
            "hello",
            "hello",
            "prefix = \"\"\n[plugin.rename]\necho = \"say\"",
        ))
        .toml(&plugin(
            "files",
            "files",
            "prefix = \"fs\"\n[plugin.grants]\ndirs = [{ host = \"demo\", guest = \"/data\" }]",
        ))
        .toml(&format!(
            "[http]\nstateless = true\n[auth]\nissuer = \"{base}\"\njwks_uri = \"{base}/keys\"\n\
             resource = \"{resource}\"\nalgorithms = [\"EdDSA\"]\n\
             [[auth.rule]]\nscopes = [\"talk\"]\ntools = [\"say\", \"fs.*\"]\n",
            base = issuer.base
        ))
        .write();
    let server = MoatServer::start(dir.path(), &[]);
    let token = key.sign(&claims(&issuer.base, resource, "talk"));
    let transport = StreamableHttpClientTransport::with_client(
        reqwest::Client::builder()
            .default_headers(
                [(
                    reqwest::header::AUTHORIZATION,
                    format!("Bearer {token}").parse().unwrap(),
                )]
                .into_iter()
                .collect(),
            )
            .build()
            .unwrap(),
        rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(
            server.url.clone(),
        ),
    );
    let client = ().serve(transport).await.unwrap();
    // The rule grants `say` and every `fs.` tool: `greet` is not listed.
    assert_eq!(
        tool_names(&client).await,
        ["fs.list", "fs.read", "fs.search", "fs.select", "say"]
    );
    let (error, text) = call_text(&client, "say", json!({ "message": "renamed" })).await;
    assert_eq!((error, text.as_str()), (false, "renamed"));
    let (error, text) = call_text(&client, "fs.read", json!({ "path": "a.txt" })).await;
    assert_eq!((error, text.as_str()), (false, "alpha"));
    // The old names are gone, and the unlisted tool is refused.
    for (tool, args) in [
        ("hello.echo", json!({ "message": "m" })),
        ("echo", json!({ "message": "m" })),
        ("files.read", json!({ "path": "a.txt" })),
        ("greet", json!({ "name": "n" })),
    ] {
        let refused = client
            .call_tool(
                rmcp::model::CallToolRequestParams::new(tool)
                    .with_arguments(args.as_object().unwrap().clone()),
            )
            .await;
        assert!(refused.is_err(), "{tool} was served: {refused:?}");
    }
    let (error, text) = call_text(&client, "say", json!({ "message": "still" })).await;
    assert_eq!((error, text.as_str()), (false, "still"));
    client.cancel().await.unwrap();

    // `moat call` takes the plugin's own tool name or the one clients see.
    for tool in ["echo", "say"] {
        let (code, out, err) = moat(
            dir.path(),
            &[
                "call",
                "--config",
                "moat.toml",
                "hello",
                tool,
                r#"{"message":"c"}"#,
            ],
        );
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains("\"c\""), "{out}");
    }
}

#[test]
fn two_tools_with_one_name_are_refused_at_load_naming_both() {
    let cases = [
        (
            // Two plugins without a prefix that both have `echo` (and
            // `greet`: the first clash in name order is named).
            format!(
                "{}{}",
                plugin("hello", "hello", "prefix = \"\""),
                plugin("other", "hello", "prefix = \"\"")
            ),
            "`echo`",
            [
                "plugin `hello` (its tool `echo`)",
                "plugin `other` (its tool `echo`)",
            ],
        ),
        (
            // A rename onto another plugin's name.
            format!(
                "{}{}",
                plugin("hello", "hello", ""),
                plugin("files", "files", "[plugin.rename]\nread = \"hello.greet\"")
            ),
            "`hello.greet`",
            [
                "plugin `hello` (its tool `greet`)",
                "plugin `files` (its tool `read`)",
            ],
        ),
    ];
    for (config, name, sources) in cases {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("moat.toml"), &config).unwrap();
        let (code, out, err) = moat(dir.path(), &["check", "--config", "moat.toml"]);
        assert_eq!(code, 2, "{out}{err}");
        assert!(
            err.contains(&format!("would both be named {name}")),
            "{err}"
        );
        for source in sources {
            assert!(err.contains(source), "{source}: {err}");
        }
        assert!(err.contains("[plugin.rename]"), "the fix: {err}");
    }
}

#[test]
fn names_that_differ_in_case_or_sit_in_another_plugins_prefix_are_refused() {
    let cases = [
        (
            format!(
                "{}{}",
                plugin("hello", "hello", "[plugin.rename]\ngreet = \"Say\""),
                plugin("other", "hello", "[plugin.rename]\necho = \"say\"")
            ),
            "differs only in case",
        ),
        (
            // A prefix that is another plugin's name: `hello.*` in policy
            // would grant the newcomer's tools.
            format!(
                "{}{}",
                plugin("hello", "hello", ""),
                plugin("evil", "testbed", "prefix = \"hello\"")
            ),
            "which belongs to plugin `",
        ),
        (
            format!(
                "{}{}",
                plugin("hello", "hello", ""),
                plugin("evil", "testbed", "[plugin.rename]\nenv = \"Hello.env\"")
            ),
            "under `Hello.`, which belongs to plugin `hello`",
        ),
        (
            format!(
                "{}[limits.tools.\"hello.gret\"]\ncalls_per_minute = 5\n",
                plugin("hello", "hello", "")
            ),
            "[limits.tools] names `hello.gret`, which no tool",
        ),
    ];
    for (config, message) in cases {
        let err = refused(&config);
        assert!(err.contains(message), "{message}: {err}");
    }
    // `moat call` takes the plugin's own name first: `echo` is the
    // plugin's echo even where another of its tools is renamed `echo`.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("moat.toml"),
        plugin(
            "hello",
            "hello",
            "prefix = \"h\"\n[plugin.rename]\ngreet = \"echo\"",
        ),
    )
    .unwrap();
    let (code, out, err) = moat(
        dir.path(),
        &[
            "call",
            "--config",
            "moat.toml",
            "hello",
            "echo",
            r#"{"message":"own"}"#,
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("\"own\""), "{out}");
}

#[test]
fn renaming_a_tool_the_plugin_lacks_or_to_a_bad_name_is_refused() {
    let bad = [
        (
            plugin("hello", "hello", "[plugin.rename]\ngreeet = \"hi\""),
            "names `greeet`, which the plugin does not have",
            "greet, echo",
        ),
        (
            plugin("hello", "hello", "[plugin.rename]\ngreet = \"hi there\""),
            "is not a tool name",
            "1 to 128 characters",
        ),
        (
            plugin("hello", "hello", "prefix = \"a.b\""),
            "cannot start tool names",
            "\"\" for none",
        ),
    ];
    for (config, message, fix) in bad {
        let err = refused(&config);
        assert!(err.contains(message), "{err}");
        assert!(err.contains(fix), "{err}");
        assert!(err.contains("moat.toml:"), "names the place: {err}");
    }
}

#[test]
fn a_resource_uri_or_prompt_two_plugins_claim_is_refused_at_load() {
    // The same plugin twice under other names: its resource URIs clash
    // (its prompts do not: the prefix keeps them apart, as its tools).
    let twice = format!(
        "{}{}",
        plugin("one", "testbed", ""),
        plugin("two", "testbed", "")
    );
    let err = refused(&twice);
    assert!(
        err.contains("resource `testbed://env` is offered by both plugin `one` and plugin `two`"),
        "{err}"
    );
    assert!(err.contains("resources = false"), "the fix: {err}");
    // The fix works: the second copy serves tools and prompts, no resources.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("moat.toml"),
        format!(
            "{}{}",
            plugin("one", "testbed", ""),
            plugin("two", "testbed", "resources = false")
        ),
    )
    .unwrap();
    let (code, out, err) = moat(dir.path(), &["check", "--config", "moat.toml"]);
    assert_eq!(code, 0, "{out}{err}");
}
