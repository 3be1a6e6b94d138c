//! A running call tells its client: the plugin's progress reports go out
//! as `notifications/progress` when the request carried a progress token,
//! its log records as `notifications/message` at or above the level the
//! client set; both bounded per call, with secret argument values
//! redacted. Driven by the official Python SDK in both negotiation modes.

use moat_tests::external::run_python;
use moat_tests::{MoatServer, Sandbox};

#[test]
fn the_python_sdk_hears_progress_and_logs_bounded_and_redacted() {
    let dir = Sandbox::builder().plugin("testbed", "").write();
    let server = MoatServer::start(dir.path(), &[]);
    let tmp = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let out = run_python(
        tmp,
        "notifications.py",
        |c| {
            c.arg(&server.url);
        },
        || server.log(),
    );
    for mode in ["legacy", "auto"] {
        assert!(
            out.contains(&format!("ok notifications mode={mode}")),
            "{mode}: {out}"
        );
    }
    // The host's log still has the plugin's records, redacted or not: it
    // is the operator's (secret-looking arguments are kept out of errors
    // and audit records, not out of a plugin's own log lines).
    assert!(server.log().contains("step 1 with key"));
}
