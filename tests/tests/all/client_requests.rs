//! A plugin asks the client (sampling, elicitation) only with its grants,
//! within its budget, and over whatever can carry the request: a session,
//! or the round trips of 2026-07-28 (also without sessions). Resources,
//! prompts and completions reach the official Python SDK in both
//! negotiation modes.

use moat_tests::external::run_python;
use moat_tests::{MoatServer, Sandbox};

/// A config serving the conformance plugin (under the suite's names) with
/// `grants`, and the testbed with a sampling budget of 50 tokens.
fn served(http: &str, grants: &str) -> tempfile::TempDir {
    Sandbox::builder()
        .toml(&format!(
            "{http}[[plugin]]\nname = \"conformance\"\nsource = {:?}\nprefix = \"\"\n\
             [plugin.grants]\n{grants}\n",
            moat_tests::plugin_wasm("conformance").display().to_string()
        ))
        .plugin("testbed", "sampling = { max_tokens = 50 }")
        .toml("[audit]\nfile = \"audit.jsonl\"\n")
        .write()
}

#[test]
fn the_python_sdk_answers_a_plugins_requests_only_where_granted() {
    let grants = "sampling = { max_tokens = 1000 }\nelicitation = true";
    let granted = served("", grants);
    let bare = served("", "");
    let stateless = served("[http]\nstateless = true\n", grants);
    // Its own folder (and audit log) for the process the client launches.
    let local = served("", grants);
    let servers = [&granted, &bare, &stateless].map(|dir| MoatServer::start(dir.path(), &[]));
    let tmp = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let out = run_python(
        tmp,
        "client_requests.py",
        |c| {
            c.args(servers.iter().map(|s| &s.url))
                .arg(moat_tests::moat_bin())
                .arg(local.path().join("moat.toml"));
        },
        || {
            servers
                .iter()
                .map(MoatServer::log)
                .collect::<Vec<_>>()
                .join("\n")
        },
    );
    for line in [
        "ok features http mode=legacy",
        "ok features http mode=auto protocol=2026-07-28",
        "ok features stdio mode=legacy",
        "ok features stdio mode=auto protocol=2026-07-28",
        "ok ungranted mode=legacy",
        "ok ungranted mode=auto",
        "ok budget",
        "ok stateless",
    ] {
        assert!(out.contains(line), "{line}: {out}");
    }
    // Each request to the client is in the call's audit record.
    let records = moat_tests::audit_records(&granted.path().join("audit.jsonl"));
    let sampled: Vec<_> = records
        .iter()
        .filter(|r| r["tool"] == "test_sampling")
        .collect();
    assert!(
        sampled
            .iter()
            .any(|r| r["asked"][0] == "sampling: answered" && r["outcome"] == "ok"),
        "{sampled:?}"
    );
    // At 2026-07-28 the first round ends waiting for the client.
    assert!(
        sampled.iter().any(|r| r["kind"] == "input_required"),
        "{sampled:?}"
    );
}
