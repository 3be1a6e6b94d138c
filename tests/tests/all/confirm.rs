//! A person's confirmation before destructive tools: asked through MCP
//! elicitation over every transport and protocol revision Moat serves,
//! with the official Python and TypeScript SDKs answering; every question
//! and answer is audited; and the config names what it covers.

use moat::config::Config;
use moat::runtime::{Runtime, RuntimeOptions};
use moat::service::{CallContext, Operations, Refusal, ToolService};
use moat_tests::audit_records as records;
use moat_tests::external::{assert_every_scenario, node_packages, run_python};
use moat_tests::redis::RedisServer;
use moat_tests::{MoatServer, Sandbox, moat_bin};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;

/// `db` over a writable copy of the shop, `db.execute` to be confirmed.
fn shop(top: &str, toml: &str) -> tempfile::TempDir {
    let dir = Sandbox::builder()
        .dir("data")
        .top(top)
        .plugin(
            "db",
            r#"dirs = [{ host = "data", guest = "/data", mode = "rw" }]
env = { DB_PATH = "/data/shop.sqlite" }"#,
        )
        .toml(toml)
        .write();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/db/shop.sqlite"),
        dir.path().join("data/shop.sqlite"),
    )
    .unwrap();
    dir
}

#[test]
fn the_python_sdk_confirms_or_refuses_over_every_transport_and_revision() {
    let redis = RedisServer::start();
    let dir = shop(
        "confirm = [\"db.execute\"]\nconfirm_destructive = true\nconfirm_timeout_ms = 4000",
        "[audit]\nfile = \"audit.jsonl\"\n[limits]\nmax_in_flight = 1",
    );
    // Stateless replicas share a key (each its own audit log); a stranger
    // has another.
    let config = std::fs::read_to_string(dir.path().join("moat.toml")).unwrap();
    std::fs::write(dir.path().join("shared.key"), "k".repeat(40)).unwrap();
    std::fs::write(dir.path().join("stranger.key"), "s".repeat(40)).unwrap();
    for (name, key) in [
        ("stateless", "shared"),
        ("replica", "shared"),
        ("stranger", "stranger"),
    ] {
        std::fs::write(
            dir.path().join(format!("{name}.toml")),
            format!(
                "confirm_state_key = {{ from_file = \"{key}.key\" }}\nconfirm_store = {:?}\n",
                redis.url
            ) + &config.replace("audit.jsonl", &format!("audit-{name}.jsonl"))
                + "\n[http]\nstateless = true\n",
        )
        .unwrap();
    }
    let stdout = run_python(
        Path::new(env!("CARGO_TARGET_TMPDIR")),
        "confirm.py",
        |command| {
            command
                .arg("--moat")
                .arg(moat_bin())
                .arg("--config")
                .arg(dir.path().join("moat.toml"))
                .arg("--stateless-config")
                .arg(dir.path().join("stateless.toml"))
                .arg("--replica-config")
                .arg(dir.path().join("replica.toml"))
                .arg("--stranger-config")
                .arg(dir.path().join("stranger.toml"))
                .arg("--db")
                .arg(dir.path().join("data/shop.sqlite"))
                .env("RUST_LOG", "warn");
        },
        String::new,
    );
    assert_every_scenario(&stdout);
    assert!(stdout.contains("ok   replicas"), "{stdout}");

    // Every question and answer is a record with the arguments' digest
    // and who answered; a refused call says why it did not run.
    let log = records(&dir.path().join("audit.jsonl"));
    let kinds: Vec<&str> = log.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    for kind in [
        "confirmation_asked",
        "confirmation_given",
        "confirmation_declined",
        "confirmation_cancelled",
        "confirmation_unsupported",
        "confirmation_timed_out",
        "confirmation_invalid",
        "not_confirmed",
        "ok",
    ] {
        assert!(kinds.contains(&kind), "no {kind} record in {kinds:?}");
    }
    for record in log.iter().filter(|r| r["outcome"] == "confirmation") {
        assert_eq!(record["tool"], "db.execute", "{record}");
        assert_eq!(
            record["args_sha256"].as_str().unwrap().len(),
            64,
            "{record}"
        );
        assert!(record["arguments"].is_null(), "{record}");
    }
    let given = log
        .iter()
        .find(|r| r["kind"] == "confirmation_given")
        .unwrap();
    assert!(
        given["reason"]
            .as_str()
            .unwrap()
            .contains("answered by client `mcp"),
        "{given}"
    );
    let stateless = records(&dir.path().join("audit-stateless.jsonl"));
    assert!(
        stateless
            .iter()
            .any(|r| r["kind"] == "confirmation_unsupported"
                && r["reason"].as_str().unwrap().contains("without sessions")),
        "{stateless:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annotations_add_confirmations_and_a_call_that_needs_one_never_runs_unasked() {
    // The operator lists nothing; db.execute says it is destructive.
    let dir = shop("confirm_destructive = true", "");
    let config = Config::load(&dir.path().join("moat.toml")).unwrap();
    let runtime = Arc::new(Runtime::new(&RuntimeOptions::for_config(&config)).unwrap());
    let served = config.endpoint(None).unwrap();
    let service = Arc::new(
        ToolService::load(runtime, served, &Operations::default())
            .await
            .unwrap(),
    );
    let marked: Vec<(&str, bool)> = service
        .tools()
        .iter()
        .map(|t| (t.name.as_str(), t.confirm))
        .collect();
    assert_eq!(
        marked,
        [
            ("db.execute", true),
            ("db.query", false),
            ("db.schema", false)
        ]
    );
    // A transport that forgot to ask gets a refusal, not a run.
    let args = json!({ "sql": "DELETE FROM orders", "params": [] });
    let outcome = service
        .call(
            CallContext::default(),
            "db.execute",
            args.as_object().unwrap().clone(),
        )
        .await;
    assert!(
        matches!(&outcome, Err(Refusal::NotConfirmed(m)) if m.contains("needs a person's confirmation")),
        "{outcome:?}"
    );
    let count = service
        .call(
            CallContext::default(),
            "db.query",
            json!({ "sql": "SELECT count(*) AS n FROM orders" })
                .as_object()
                .unwrap()
                .clone(),
        )
        .await
        .unwrap();
    assert_eq!(
        count.result.unwrap().structured.unwrap()["rows"][0]["n"],
        json!(120)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_have_their_own_lists_and_inherit_confirm_destructive() {
    let grants = r#"dirs = [{ host = "data", guest = "/data", mode = "ro" }]
env = { DB_PATH = "/data/shop.sqlite" }"#;
    let source = moat_tests::plugin_wasm("db").display().to_string();
    let tenant = |name: &str, keys: &str| {
        format!(
            "[tenants.{name}]\n{keys}\n[[tenants.{name}.plugin]]\nname = \"db\"\nsource = {source:?}\n\
             [tenants.{name}.plugin.grants]\n{grants}\n"
        )
    };
    let dir = Sandbox::builder()
        .dir("data")
        .top("confirm_destructive = true")
        .toml(&tenant("inherits", ""))
        .toml(&tenant(
            "own",
            "confirm = [\"db.q*\"]\nconfirm_destructive = false",
        ))
        .write();
    let config = Config::load(&dir.path().join("moat.toml")).unwrap();
    let runtime = Arc::new(Runtime::new(&RuntimeOptions::for_config(&config)).unwrap());
    let services = ToolService::load_all(&config, runtime, &Operations::default())
        .await
        .unwrap();
    let marked: Vec<(Option<&str>, Vec<&str>)> = services
        .iter()
        .map(|(served, service)| {
            let confirmed = service
                .tools()
                .iter()
                .filter(|t| t.confirm)
                .map(|t| t.name.as_str())
                .collect();
            (served.tenant, confirmed)
        })
        .collect();
    assert_eq!(
        marked,
        [
            (Some("inherits"), vec!["db.execute"]),
            (Some("own"), vec!["db.query"]),
        ]
    );
}

#[test]
fn confirm_settings_are_checked_where_they_are_written() {
    let cases = [
        (
            "confirm = [\"db.exec\"]",
            "confirm pattern `db.exec` matches no tool",
        ),
        (
            "confirm = [\"db execute\"]",
            "confirm pattern \"db execute\" is not a tool name",
        ),
        (
            "confirm_timeout_ms = 200000",
            "confirm_timeout_ms is not shorter than [http] request_timeout_ms",
        ),
        (
            "confirm_state_key = { from_env = \"MOAT_TEST_UNSET_STATE_KEY\" }",
            "not set",
        ),
        (
            "confirm_store = \"http://127.0.0.1:6379\"",
            "confirm_store is not a redis:// URL",
        ),
        (
            "confirm_state_key = { from_env = \"PATH\" }",
            "confirm_state_key is set without confirm_store",
        ),
    ];
    // `moat check`'s complaint about the config in `dir`.
    let check = |dir: &Path| {
        let out = std::process::Command::new(moat_bin())
            .arg("check")
            .arg("--config")
            .arg(dir.join("moat.toml"))
            .output()
            .unwrap();
        assert!(!out.status.success(), "accepted");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    for (top, expected) in cases {
        let dir = shop(top, "");
        let stderr = check(dir.path());
        assert!(stderr.contains(expected), "{top}: {stderr}");
    }
    let dir = shop("", "");
    std::fs::write(dir.path().join("key"), "short\n").unwrap();
    let config = std::fs::read_to_string(dir.path().join("moat.toml")).unwrap();
    std::fs::write(
        dir.path().join("moat.toml"),
        format!("confirm_state_key = {{ from_file = \"key\" }}\n{config}"),
    )
    .unwrap();
    let stderr = check(dir.path());
    assert!(stderr.contains("at least 32 are needed"), "{stderr}");
}

#[test]
fn replicas_sharing_a_redis_store_run_each_confirmation_once_and_fail_closed_without_it() {
    let mut redis = RedisServer::start();
    let dir = shop("", "");
    std::fs::write(dir.path().join("shared.key"), "r".repeat(40)).unwrap();
    let config = std::fs::read_to_string(dir.path().join("moat.toml")).unwrap();
    let configs: Vec<std::path::PathBuf> = ["a", "b"]
        .iter()
        .map(|name| {
            let path = dir.path().join(format!("{name}.toml"));
            std::fs::write(
                &path,
                format!(
                    "confirm = [\"db.execute\"]\nconfirm_state_key = {{ from_file = \"shared.key\" }}\n\
                     confirm_store = {:?}\n{config}\n[http]\nstateless = true\n",
                    redis.url
                ),
            )
            .unwrap();
            path
        })
        .collect();
    let run = |phase: &str, order: u32| {
        run_python(
            Path::new(env!("CARGO_TARGET_TMPDIR")),
            "confirm_shared.py",
            |command| {
                command.arg("--moat").arg(moat_bin());
                for config in &configs {
                    command.arg("--config").arg(config);
                }
                command
                    .arg("--db")
                    .arg(dir.path().join("data/shop.sqlite"))
                    .args(["--order", &order.to_string(), "--phase", phase])
                    .env("RUST_LOG", "warn");
            },
            String::new,
        )
    };
    // A state redeemed at replica B is refused at A and at B again.
    assert!(run("shared", 7).contains("ok   shared"));
    // With the store gone the confirmation cannot be checked: refused.
    redis.stop();
    assert!(run("down", 8).contains("ok   down"));
}

#[test]
fn the_typescript_sdk_is_asked_on_the_calls_stream_and_its_answer_decides() {
    let dir = shop("confirm = [\"db.execute\"]", "");
    let server = MoatServer::start(dir.path(), &[]);
    let node = node_packages(Path::new(env!("CARGO_TARGET_TMPDIR")));
    let call = |answer: &str, order: u32| -> Value {
        let out = std::process::Command::new("node")
            .current_dir(&node)
            .args(["confirm.mjs", &server.url, answer])
            .args([
                "DELETE FROM order_items WHERE order_id = ?",
                &format!("[{order}]"),
            ])
            .output()
            .expect("starting node: install Node.js 20 or newer");
        assert!(
            out.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            server.log()
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    // The items of an order, read from the file by a separate process.
    let items = |order: u32| -> Value {
        let out = std::process::Command::new(moat_bin())
            .args(["call", "--config"])
            .arg(dir.path().join("moat.toml"))
            .args(["db", "query"])
            .arg(
                json!({ "sql": "SELECT count(*) AS n FROM order_items WHERE order_id = ?", "params": [order] })
                    .to_string(),
            )
            .output()
            .unwrap();
        serde_json::from_slice::<Value>(&out.stdout).unwrap()["structuredContent"]["rows"][0]["n"]
            .clone()
    };
    let yes = call("yes", 1);
    assert_eq!(yes["protocol"], "2025-11-25", "{yes}");
    assert!(
        yes["asked"]
            .as_str()
            .unwrap()
            .contains(r#""sql": "DELETE FROM order_items WHERE order_id = ?""#),
        "{yes}"
    );
    assert_eq!(yes["result"]["isError"], false, "{yes}");
    assert_eq!(items(1), json!(0));
    for (answer, order, words) in [
        ("no", 2, "the person declined"),
        ("none", 3, "did not declare the elicitation capability"),
    ] {
        let refused = call(answer, order);
        assert_eq!(refused["result"]["isError"], true, "{refused}");
        assert_eq!(
            refused["result"]["_meta"]["moat/error"]["kind"], "not_confirmed",
            "{refused}"
        );
        assert!(
            refused["result"]["content"][0]["text"]
                .as_str()
                .unwrap()
                .contains(words),
            "{refused}"
        );
        assert_ne!(items(order), json!(0), "{answer}: the tool ran");
    }
}
