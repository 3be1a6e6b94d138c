//! Interop with an authorization server none of us wrote: panva's
//! oidc-provider (an OpenID Foundation certified OpenID Provider, locked in
//! tests/node/package-lock.json) runs on 127.0.0.1 and issues JWT access
//! tokens by the client-credentials grant, with the audience taken from
//! the RFC 8707 `resource` parameter. The official MCP Python SDK's
//! client-credentials provider, knowing only Moat's URL and the client's
//! credentials, discovers everything else from Moat's 401 and metadata;
//! see tests/python/oauth_interop.py for the scenarios.

use moat_tests::external::{NodeScript, run_python};
use moat_tests::{MoatServer, Sandbox, free_port};
use std::path::Path;

/// Starts the provider, which accepts token requests for `resources` only.
fn start_provider(resources: &[&str]) -> (NodeScript, String) {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let mut provider = NodeScript::start(tmp, "provider.mjs", resources);
    let issuer = provider.said("issuer ");
    provider.drain();
    (provider, issuer)
}

#[test]
fn the_python_sdk_gets_a_token_from_a_third_party_provider_and_uses_moat() {
    // Moat's resource URI, which its tokens must name, has to be known
    // before Moat starts.
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/mcp");
    let other = format!("http://127.0.0.1:{port}/other");
    let (_provider, issuer) = start_provider(&[&url, &other]);
    // No jwks_uri: Moat finds the keys through the issuer's metadata.
    let auth = format!(
        r#"[auth]
issuer = "{issuer}"
resource = "{url}"
algorithms = ["ES256"]
scopes_supported = ["tools:read", "tools:write"]
challenge_scopes = ["tools:read"]

[[auth.rule]]
scopes = ["tools:read"]
tools = ["hello.*"]

[[auth.rule]]
scopes = ["tools:write"]
tools = ["files.*"]
"#,
        issuer = issuer
    );
    let dir = Sandbox::builder().hello_and_files().toml(&auth).write();
    let server = MoatServer::start_on(dir.path(), &format!("127.0.0.1:{port}"), &[]);
    assert_eq!(server.url, url);

    let stdout = run_python(
        Path::new(env!("CARGO_TARGET_TMPDIR")),
        "oauth_interop.py",
        |command| {
            command
                .args(["--url", &url, "--issuer", &issuer])
                .args(["--other-resource", &other]);
        },
        || format!("moat's log:\n{}", server.log()),
    );
    for expected in [
        format!("token request: resource={url} scope=tools:read\n"),
        format!("token request: resource={url} scope=tools:read tools:write\n"),
        "list and call: ok".into(),
        "files.read: 403".into(),
        format!("token for {other}: 401"),
        "all scenarios passed".into(),
    ] {
        assert!(stdout.contains(&expected), "{expected:?} in:\n{stdout}");
    }
}
