//! Plugins written in JavaScript (componentize-js) and Python
//! (componentize-py) against wit/plugin.wit, built from plugins/js and
//! plugins/python by their own toolchains, served by a real `moat serve`
//! and called by rmcp's client under a read-only directory grant: the
//! granted file is read, files outside are refused by the sandbox, and
//! the server goes on. And `moat new` in each language, built and called
//! as its README says.

use moat_tests::client::{call_text, connect};
use moat_tests::languages::{self, js_component, python_component};
use moat_tests::{MoatServer, moat_bin};
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;

fn tmp() -> &'static Path {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
}

/// A folder with `data/` granted read-only at `/data` to `plugin`, and a
/// secret beside `data/` that no grant covers.
fn serve(plugin: &str, wasm: &Path, files: &[(&str, &str)]) -> (tempfile::TempDir, MoatServer) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join("data").join(name), text).unwrap();
    }
    std::fs::write(dir.path().join("secret.txt"), "the secret").unwrap();
    std::fs::write(
        dir.path().join("moat.toml"),
        format!(
            "[runtime]\ncache_dir = \"cache\"\n[[plugin]]\nname = \"{plugin}\"\nsource = {:?}\n\
             [plugin.grants]\ndirs = [{{ host = \"data\", guest = \"/data\", mode = \"ro\" }}]\n",
            wasm.display().to_string()
        ),
    )
    .unwrap();
    let server = MoatServer::start(dir.path(), &[]);
    (dir, server)
}

async fn structured(client: &moat_tests::client::Client, tool: &str, args: Value) -> Value {
    let result = client
        .call_tool(
            rmcp::model::CallToolRequestParams::new(tool.to_string())
                .with_arguments(args.as_object().unwrap().clone()),
        )
        .await
        .unwrap();
    assert_ne!(result.is_error, Some(true), "{result:?}");
    Value::Object(
        result
            .structured_content
            .expect("structured content")
            .as_object()
            .unwrap()
            .clone(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_javascript_plugin_reads_its_granted_file_and_nothing_else() {
    let wasm = js_component(tmp(), "textstats", "textstats");
    let (_dir, server) = serve(
        "text",
        &wasm,
        &[("poem.txt", "the cat and the hat\nsat on the mat\n")],
    );
    let client = connect(&server.url).await;
    let tools = client.list_all_tools().await.unwrap();
    assert_eq!(tools.len(), 1);
    assert_eq!(tools[0].name, "text.stats");
    assert_eq!(
        tools[0].annotations.as_ref().unwrap().read_only_hint,
        Some(true)
    );

    let stats = structured(
        &client,
        "text.stats",
        json!({ "path": "/data/poem.txt", "top": 2 }),
    )
    .await;
    assert_eq!(
        stats,
        json!({
            "lines": 2, "words": 9, "chars": 35, "bytes": 35,
            "top": [{ "word": "the", "count": 3 }, { "word": "and", "count": 1 }],
        })
    );
    for (path, refused) in [
        ("/etc/passwd", "not in a directory granted to this plugin"),
        ("/data/../secret.txt", "not-permitted"),
        ("/data/missing.txt", "no-entry"),
    ] {
        let (is_error, text) = call_text(&client, "text.stats", json!({ "path": path })).await;
        assert!(is_error, "{path}: {text}");
        assert!(text.contains(refused), "{path}: {text}");
        assert!(!text.contains("the secret"), "{text}");
    }
    // Arguments are checked against the plugin's schema before it runs.
    let refused = client
        .call_tool(
            rmcp::model::CallToolRequestParams::new("text.stats").with_arguments(
                json!({ "path": "/data/poem.txt", "top": 99 })
                    .as_object()
                    .unwrap()
                    .clone(),
            ),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("/top"), "{refused}");
    let (is_error, text) =
        call_text(&client, "text.stats", json!({ "path": "/data/poem.txt" })).await;
    assert_eq!(
        (is_error, text.as_str()),
        (false, "2 lines, 9 words, 35 characters")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_python_plugin_reads_its_granted_file_and_nothing_else() {
    let wasm = python_component(tmp(), "csvstats", "wit", "tool-plugin");
    let (_dir, server) = serve(
        "csv",
        &wasm,
        &[
            (
                "sales.csv",
                "region,units,price\nnorth,3,2.5\nsouth,5,4\neast,,1.5\n",
            ),
            // A quoted line break, and a row longer than the header.
            ("odd.csv", "name,n\n\"a\nb\",1\nc,2,extra\n"),
        ],
    );
    let client = connect(&server.url).await;
    let tools = client.list_all_tools().await.unwrap();
    assert_eq!(tools.len(), 1);
    assert_eq!(tools[0].name, "csv.summarize");

    let summary = structured(
        &client,
        "csv.summarize",
        json!({ "path": "/data/sales.csv" }),
    )
    .await;
    assert_eq!(
        summary,
        json!({
            "rows": 3,
            "columns": {
                "units": { "count": 2, "sum": 8.0, "mean": 4.0, "min": 3.0, "max": 5.0 },
                "price": { "count": 3, "sum": 8.0, "mean": 8.0 / 3.0, "min": 1.5, "max": 4.0 },
            },
            "text_columns": ["region"],
        })
    );
    let odd = structured(&client, "csv.summarize", json!({ "path": "/data/odd.csv" })).await;
    assert_eq!(odd["rows"], 2, "{odd}");
    assert_eq!(odd["columns"]["n"]["sum"], 3.0, "{odd}");
    for path in ["/etc/passwd", "/data/../secret.txt", "/data/missing.csv"] {
        let (is_error, text) = call_text(&client, "csv.summarize", json!({ "path": path })).await;
        assert!(is_error, "{path}: {text}");
        assert!(text.starts_with(path), "{path}: {text}");
        assert!(!text.contains("the secret"), "{text}");
    }
    let (is_error, text) = call_text(
        &client,
        "csv.summarize",
        json!({ "path": "/data/sales.csv" }),
    )
    .await;
    assert_eq!(
        (is_error, text.as_str()),
        (false, "3 rows; numeric columns: units, price")
    );
}

/// `moat new NAME --lang LANG` in a fresh folder, the project's own test
/// and its build, then `moat call` on its moat.toml, as its README says.
fn new_project(lang: &str) {
    let dir = tempfile::tempdir().unwrap();
    let name = format!("demo-{lang}");
    let (project, _) = languages::new_project(&moat_bin(), tmp(), dir.path(), &name, lang);
    let call = |text: &str| {
        let out = Command::new(moat_bin())
            .args(["call", "-c", "moat.toml", &name, "count"])
            .arg(json!({ "text": text }).to_string())
            .current_dir(&project)
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        let answer: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        (out.status.code(), answer)
    };
    let (code, answer) = call("hello wide world\nbye");
    assert_eq!(code, Some(0), "{answer}");
    assert_eq!(
        answer["structuredContent"],
        json!({ "lines": 2, "words": 4, "chars": 20 })
    );
    let (code, answer) = call("");
    assert_eq!(code, Some(1), "{answer}");
    assert_eq!(answer["content"][0]["text"], "the text is empty");
    // It will not write over a folder that is there.
    let again = Command::new(moat_bin())
        .args(["new", &name, "--lang", lang])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"));
}

#[test]
fn moat_new_writes_a_rust_plugin_that_builds_tests_and_runs() {
    new_project("rust");
}

#[test]
fn moat_new_writes_a_javascript_plugin_that_builds_tests_and_runs() {
    new_project("js");
}

#[test]
fn moat_new_writes_a_python_plugin_that_builds_tests_and_runs() {
    new_project("python");
}
