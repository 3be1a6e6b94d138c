//! Grants that name the caller: `host = "data/{tenant}/{subject}"` gives
//! every caller a folder of their own, and `env` values with `{subject}`
//! carry the verified subject. Subjects chosen to escape (`../bob`, `/`,
//! very long, unicode) stay in their own folder, and a token whose
//! subject holds a NUL is refused; a planted symlink
//! is not followed; a call with no verified caller gets no such grant.

use moat_tests::auth::{
    TestIssuer, TestKey, claims, tenant_client, tenant_resource, tenant_with_plugin,
};
use moat_tests::client::call_text;
use moat_tests::{MoatServer, Sandbox};
use rmcp::ServiceExt;
use rmcp::transport::StreamableHttpClientTransport;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use moat_tests::client::Client;

struct PerCaller {
    dir: tempfile::TempDir,
    server: MoatServer,
    issuer: TestIssuer,
    key: TestKey,
}

/// Tenants `acme` and `beta`, each serving `testbed` with a read-write
/// home per caller and the caller in its environment; the top-level
/// endpoint serves the same grant without `[auth]`.
async fn start() -> PerCaller {
    let key = TestKey::new("k1", 12);
    let issuer = TestIssuer::start(&[&key]).await;
    let testbed = moat_tests::plugin_wasm("testbed").display().to_string();
    let tenant = |name: &str| {
        tenant_with_plugin(
            name,
            &issuer,
            "testbed",
            &testbed,
            r#"dirs = [{ host = "data/{tenant}/{subject}", guest = "/home", mode = "rw" }]
env = { USER_ID = "{subject}", WHERE = "{subject} at {tenant}", PLAIN = "{json}" }"#,
        )
    };
    let dir = Sandbox::builder()
        .file("data/.keep", "")
        .file("outside/secret.txt", "not yours")
        .toml(&format!(
            r#"[[plugin]]
name = "testbed"
source = {testbed:?}
[plugin.grants]
dirs = [{{ host = "data/{{subject}}", guest = "/home", mode = "rw" }}]
env = {{ USER_ID = "{{subject}}" }}
"#
        ))
        .toml(&tenant("acme"))
        .toml(&tenant("beta"))
        .write();
    let server = MoatServer::start(dir.path(), &[]);
    PerCaller {
        dir,
        server,
        issuer,
        key,
    }
}

impl PerCaller {
    /// A client of `tenant` whose token says `sub = subject`.
    async fn client(&self, tenant: &str, subject: &str) -> Client {
        tenant_client(&self.server.base, tenant, &self.issuer, &self.key, subject).await
    }

    fn data(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }
}

async fn write(client: &Client, content: &str) -> (bool, String) {
    call_text(
        client,
        "testbed.write_file",
        json!({ "path": "/home/note.txt", "content": content }),
    )
    .await
}

/// [`write`], which must succeed.
async fn wrote(client: &Client, content: &str) {
    let (failed, text) = write(client, content).await;
    assert!(!failed, "{text}");
}

async fn read(client: &Client) -> (bool, String) {
    call_text(
        client,
        "testbed.read_file",
        json!({ "path": "/home/note.txt" }),
    )
    .await
}

async fn env(client: &Client, name: &str) -> String {
    call_text(client, "testbed.env", json!({ "name": name }))
        .await
        .1
}

/// Every file below `root`, as paths relative to it.
fn files_below(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    found.sort();
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_caller_gets_a_folder_of_their_own_in_each_tenant() {
    let t = start().await;
    let alice = t.client("acme", "alice").await;
    let bob = t.client("acme", "bob").await;
    let alice_at_beta = t.client("beta", "alice").await;

    wrote(&alice, "alice's note").await;
    assert_eq!(read(&alice).await, (false, "alice's note".to_string()));
    // Bob's home is another folder: alice's note is not in it.
    let (failed, text) = read(&bob).await;
    assert!(failed, "bob must not see alice's note: {text}");
    assert!(!text.contains("alice's note"), "{text}");
    wrote(&bob, "bob's note").await;
    assert_eq!(read(&alice).await.1, "alice's note");
    // The same subject at another tenant is another caller.
    assert!(read(&alice_at_beta).await.0, "beta's alice has no note yet");

    assert_eq!(
        files_below(&t.data()),
        ["+acme/@alice/note.txt", "+acme/@bob/note.txt", ".keep"]
    );
    for folder in ["+acme", "+acme/@alice", "+acme/@bob", "+beta/@alice"] {
        let mode = std::fs::metadata(t.data().join(folder))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "{folder}: {mode:o}");
    }

    // The environment carries the verified subject as the token says it;
    // braces that name no placeholder stay as written.
    assert_eq!(env(&bob, "USER_ID").await, "bob");
    assert_eq!(env(&alice_at_beta, "WHERE").await, "alice at beta");
    assert_eq!(env(&alice, "PLAIN").await, "{json}");
    for client in [alice, bob, alice_at_beta] {
        client.cancel().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subjects_that_look_like_paths_stay_in_their_own_folder() {
    let t = start().await;
    let long = "x".repeat(1000);
    let subjects = [
        "../bob",
        "..",
        ".",
        "/etc",
        "a/../../outside",
        "ünïcödé ☃",
        "%2E%2E",
        long.as_str(),
    ];
    let mut expected = vec![".keep".to_string()];
    for subject in subjects {
        let client = t.client("acme", subject).await;
        let (failed, text) = write(&client, subject).await;
        assert!(!failed, "{subject:?}: {text}");
        assert_eq!(read(&client).await, (false, subject.to_string()));
        assert_eq!(env(&client, "USER_ID").await, subject);
        client.cancel().await.unwrap();
        let name = moat::capabilities::per_caller::component(subject);
        expected.push(format!("+acme/@{name}/note.txt"));
    }
    expected.sort();
    // One folder per subject, each a direct child of the tenant's, and
    // nothing written anywhere else.
    assert_eq!(files_below(&t.data()), expected);
    assert_eq!(files_below(&t.dir.path().join("outside")), ["secret.txt"]);
    assert!(!t.dir.path().join("bob").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subject_with_a_nul_byte_is_refused_before_any_grant() {
    // wasi-libc reads the environment as C strings: "admin\0x" would reach
    // the plugin as "admin", another user.
    let t = start().await;
    let mut token = claims(&t.issuer.base, &tenant_resource("acme"), "tools:read");
    token["sub"] = json!("admin\0x");
    let response = moat_tests::raw::post(
        &format!("{}/t/acme/mcp", t.server.base),
        Some(&t.key.sign(&token)),
    )
    .body(moat_tests::raw::INIT)
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), 401);
    let challenge = response.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.contains("contains a NUL byte"), "{challenge}");
    // The next caller is served.
    let admin = t.client("acme", "admin").await;
    wrote(&admin, "admin's").await;
    admin.cancel().await.unwrap();
    assert_eq!(files_below(&t.data()), ["+acme/@admin/note.txt", ".keep"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_planted_as_a_callers_folder_is_not_followed() {
    let t = start().await;
    // Alice's first call makes acme/ and her folder; carol's folder is
    // then replaced by a link to alice's, and dave's by one out of data/.
    let alice = t.client("acme", "alice").await;
    wrote(&alice, "alice's note").await;
    let acme = t.data().join("+acme");
    std::os::unix::fs::symlink(acme.join("@alice"), acme.join("@carol")).unwrap();
    std::os::unix::fs::symlink(t.dir.path().join("outside"), acme.join("@dave")).unwrap();

    for subject in ["carol", "dave"] {
        let client = t.client("acme", subject).await;
        let (failed, text) = read(&client).await;
        assert!(failed, "{subject} must not reach another folder: {text}");
        assert!(
            text.contains("granted directory /home is unavailable"),
            "{subject}: {text}"
        );
        // The message names no host path.
        assert!(!text.contains(&*t.dir.path().to_string_lossy()), "{text}");
        client.cancel().await.unwrap();
    }
    // The host still serves, and alice's note is as she left it.
    assert_eq!(read(&alice).await, (false, "alice's note".to_string()));
    alice.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_without_a_verified_caller_gets_no_per_caller_grant() {
    let t = start().await;
    // The top-level endpoint has no [auth]: nobody is verified there.
    let anonymous = ()
        .serve(StreamableHttpClientTransport::from_uri(format!(
            "{}/mcp",
            t.server.base
        )))
        .await
        .unwrap();
    let (failed, text) = write(&anonymous, "whose?").await;
    assert!(failed, "no home without a caller: {text}");
    assert_eq!(env(&anonymous, "USER_ID").await, "<unset>");
    anonymous.cancel().await.unwrap();
    assert_eq!(files_below(&t.data()), [".keep"]);
}
