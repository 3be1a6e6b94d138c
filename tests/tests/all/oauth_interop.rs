//! Interop with an authorization server none of us wrote: panva's
//! oidc-provider (an OpenID Foundation certified OpenID Provider, locked in
//! tests/node/package-lock.json) runs on 127.0.0.1 and issues JWT access
//! tokens by the client-credentials grant, with the audience taken from
//! the RFC 8707 `resource` parameter. The official MCP Python SDK's
//! client-credentials provider, knowing only Moat's URL and the client's
//! credentials, discovers everything else from Moat's 401 and metadata;
//! see tests/python/oauth_interop.py for the scenarios.

use moat_tests::external::{node_packages, run_python};
use moat_tests::{MoatServer, Sandbox, free_port};
use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The provider's process; killed on drop.
struct Provider {
    child: Child,
    issuer: String,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the provider, which accepts token requests for `resources` only.
fn start_provider(resources: &[&str]) -> Provider {
    let dir = node_packages(Path::new(env!("CARGO_TARGET_TMPDIR")));
    let mut child = Command::new("node")
        .arg("provider.mjs")
        .args(resources)
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting node: install Node.js 20 or newer");
    let stdout = child.stdout.take().unwrap();
    let line = std::io::BufReader::new(stdout)
        .lines()
        .next()
        .and_then(Result::ok)
        .unwrap_or_default();
    let issuer = line
        .strip_prefix("issuer ")
        .unwrap_or_else(|| panic!("the provider did not start: {line:?}"))
        .to_string();
    Provider { child, issuer }
}

#[test]
fn the_python_sdk_gets_a_token_from_a_third_party_provider_and_uses_moat() {
    // Moat's resource URI, which its tokens must name, has to be known
    // before Moat starts.
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/mcp");
    let other = format!("http://127.0.0.1:{port}/other");
    let provider = start_provider(&[&url, &other]);
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
        issuer = provider.issuer
    );
    let dir = Sandbox::builder().hello_and_files().toml(&auth).write();
    let server = MoatServer::start_on(dir.path(), &format!("127.0.0.1:{port}"), &[]);
    assert_eq!(server.url, url);

    let stdout = run_python(
        Path::new(env!("CARGO_TARGET_TMPDIR")),
        "oauth_interop.py",
        |command| {
            command
                .args(["--url", &url, "--issuer", &provider.issuer])
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
