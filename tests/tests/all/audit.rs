//! The audit log: every call and every refusal leaves exactly one record
//! with the caller's identity, in a hash chain that `moat audit verify`
//! checks; tampering is reported at the record where it happened; secrets
//! in arguments are redacted; a failing sink makes calls fail closed.

use moat::audit::{AuditLog, Record};
use moat::config::AuditConfig;
use moat_tests::audit_records as records;
use moat_tests::auth::{TestIssuer, TestKey, claims};
use moat_tests::raw;
use moat_tests::{MoatServer, Sandbox, moat_bin};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;

const RESOURCE: &str = "http://moat.test/mcp";

/// `moat audit verify <file>`: (exit code, stdout).
fn verify(file: &Path) -> (i32, String) {
    verify_with(file, &[])
}

/// `moat audit verify <file> --key <key>`: (exit code, stdout).
fn verify_signed(file: &Path, key: &Path) -> (i32, String) {
    verify_with(file, &["--key".as_ref(), key.as_os_str()])
}

fn verify_with(file: &Path, extra: &[&std::ffi::OsStr]) -> (i32, String) {
    let out = std::process::Command::new(moat_bin())
        .args(["audit", "verify"])
        .arg(file)
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// A `tools/call` over stateless HTTP: the HTTP status and the JSON body.
async fn call(url: &str, token: Option<&str>, tool: &str, args: Value) -> (u16, Value) {
    let answer = raw::call_tool(url, token, tool, args).await;
    (answer.status, answer.body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_of_every_outcome_leave_one_record_each_in_an_intact_chain() {
    let key = TestKey::new("k1", 21);
    let issuer = TestIssuer::start(&[&key]).await;
    let dir = Sandbox::builder()
        .plugin("hello", "")
        // Granted some host, so that a request elsewhere is refused (and
        // recorded as denied) rather than wasi:http being missing.
        .plugin(
            "testbed",
            "fuel = 20_000_000\ntimeout_ms = 2000\nallow_hosts = [\"https://api.example.com\"]",
        )
        .toml(&format!(
            "[http]\nstateless = true\n[audit]\nfile = \"audit/moat-audit.jsonl\"\n\
             [limits.tools.\"testbed.env\"]\ncalls_per_minute = 1\nburst = 1\n\
             [auth]\nissuer = \"{base}\"\njwks_uri = \"{base}/keys\"\nresource = \"{RESOURCE}\"\nalgorithms = [\"EdDSA\"]\n\
             [[auth.rule]]\nscopes = [\"tools:read\"]\ntools = [\"hello.*\", \"testbed.*\"]\n",
            base = issuer.base
        ))
        .write();
    let server = MoatServer::start(dir.path(), &[]);
    let reader = key.sign(&claims(&issuer.base, RESOURCE, "tools:read"));
    let stranger = key.sign(&claims(&issuer.base, RESOURCE, "other:scope"));

    let kinds: [(&str, Option<&str>, &str, Value); 9] = [
        (
            "ok",
            Some(&reader),
            "hello.greet",
            json!({ "name": "audit" }),
        ),
        (
            "tool_error",
            Some(&reader),
            "testbed.fail",
            json!({ "text": "nope" }),
        ),
        ("out_of_fuel", Some(&reader), "testbed.spin", json!({})),
        (
            "invalid_arguments",
            Some(&reader),
            "hello.greet",
            json!({ "name": 7 }),
        ),
        ("unknown_tool", Some(&reader), "hello.nope", json!({})),
        (
            "forbidden",
            Some(&stranger),
            "hello.greet",
            json!({ "name": "x" }),
        ),
        // One call a minute: the first passes, the others are limited.
        (
            "rate_limited",
            Some(&reader),
            "testbed.env",
            json!({ "name": "X" }),
        ),
        (
            "denied",
            Some(&reader),
            "testbed.get_many",
            json!({ "url": "http://127.0.0.1:9", "times": 1 }),
        ),
        (
            "redacted",
            Some(&reader),
            "hello.echo",
            json!({ "message": "hi", "api_key": "sk-LIVE-0451", "nested": { "password": "hunter2" } }),
        ),
    ];
    const EACH: usize = 5;
    let mut tasks = Vec::new();
    for _ in 0..EACH {
        for (label, token, tool, args) in &kinds {
            let (url, token, tool, args) = (
                server.url.clone(),
                token.map(str::to_string),
                *tool,
                args.clone(),
            );
            let label = *label;
            tasks.push(tokio::spawn(async move {
                (label, call(&url, token.as_deref(), tool, args).await)
            }));
        }
    }
    let mut limited = 0;
    for task in tasks {
        let (label, (status, body)) = task.await.unwrap();
        match label {
            "forbidden" => assert_eq!(status, 403, "{body}"),
            "rate_limited" if status == 429 => limited += 1,
            _ => assert_eq!(status, 200, "{label}: {body}"),
        }
    }
    assert_eq!(limited, EACH - 1);
    let (status, _) = call(&server.url, None, "hello.greet", json!({ "name": "x" })).await;
    assert_eq!(status, 401);
    // The server still serves after all of it.
    let (status, body) = call(
        &server.url,
        Some(&reader),
        "hello.greet",
        json!({ "name": "again" }),
    )
    .await;
    assert_eq!(
        (status, body["result"]["content"][0]["text"].as_str()),
        (200, Some("Hello, again!"))
    );

    let file = dir.path().join("audit/moat-audit.jsonl");
    let calls = kinds.len() * EACH + 2;
    let (code, out) = verify(&file);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("ok: {calls} records")), "{out}");

    let records = records(&file);
    let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
    for r in &records {
        *by_kind
            .entry(r["kind"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let expected: BTreeMap<String, usize> = [
        ("ok", 3 * EACH + 2),
        ("rate_limited", EACH - 1),
        ("tool_error", EACH),
        ("out_of_fuel", EACH),
        ("invalid_arguments", EACH),
        ("unknown_tool", EACH),
        ("forbidden", EACH),
        ("unauthenticated", 1),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_string(), n))
    .collect();
    assert_eq!(by_kind, expected);

    let authenticated = records.iter().filter(|r| r["kind"] != "unauthenticated");
    for r in authenticated {
        assert_eq!(r["subject"], "svc-account", "{r}");
        assert_eq!(r["client_id"], "test-client", "{r}");
        assert_eq!(r["request_id"].as_str().unwrap().len(), 32, "{r}");
    }
    let fuel = records.iter().find(|r| r["kind"] == "out_of_fuel").unwrap();
    assert_eq!(fuel["outcome"], "error");
    assert!(fuel["fuel"].as_u64().unwrap() >= 20_000_000, "{fuel}");
    assert_eq!(fuel["plugin_sha256"].as_str().unwrap().len(), 64);
    let denied = records
        .iter()
        .find(|r| r["tool"] == "testbed.get_many")
        .unwrap();
    assert!(
        denied["denied"][0]
            .as_str()
            .unwrap()
            .contains("http://127.0.0.1:9: not in the plugin's allow_hosts"),
        "{denied}"
    );
    let forbidden = records.iter().find(|r| r["kind"] == "forbidden").unwrap();
    assert_eq!(forbidden["outcome"], "refused");
    assert_eq!(forbidden["scopes"], json!(["other:scope"]));

    // Secrets never reach the file; the record still says what was sent.
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains("sk-LIVE-0451") && !text.contains("hunter2"));
    let echo = records.iter().find(|r| r["tool"] == "hello.echo").unwrap();
    assert_eq!(
        echo["arguments"],
        json!({ "message": "hi", "api_key": "[redacted]", "nested": { "password": "[redacted]" } })
    );
    assert_eq!(echo["args_sha256"].as_str().unwrap().len(), 64);
}

/// A log in `file`, rotated at `max_file_bytes`, failing closed.
fn file_config(file: std::path::PathBuf, max_file_bytes: u64) -> AuditConfig {
    AuditConfig {
        file: Some(file),
        stdout: false,
        fail_closed: true,
        max_file_bytes,
        sync: true,
        max_argument_bytes: 4096,
        signing_key: None,
        checkpoint_every: 1000,
    }
}

/// A change made to the lines of a log.
type Edit<'a> = dyn Fn(&mut Vec<String>) + 'a;

/// Five records written by the real log, for the tampering cases.
async fn chain(dir: &Path) -> std::path::PathBuf {
    let file = dir.join("chain.jsonl");
    let log = AuditLog::open(&file_config(file.clone(), 1 << 20)).unwrap();
    for n in 0..5 {
        let mut record = Record::new();
        record.tool = Some(format!("hello.greet{n}"));
        record.outcome = "ok";
        record.kind = "ok".into();
        log.write(&record).await.unwrap();
    }
    file
}

#[tokio::test]
async fn editing_deleting_or_reordering_a_record_is_reported_where_it_happened() {
    let dir = tempfile::tempdir().unwrap();
    let file = chain(dir.path()).await;
    let (code, out) = verify(&file);
    assert_eq!((code, out.starts_with("ok: 5 records")), (0, true), "{out}");

    let lines: Vec<String> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let tamper = |edit: &dyn Fn(&mut Vec<String>)| {
        let mut copy = lines.clone();
        edit(&mut copy);
        let path = dir.path().join("tampered.jsonl");
        std::fs::write(&path, copy.join("\n") + "\n").unwrap();
        verify(&path)
    };
    let cases: [(&str, Box<Edit<'_>>, &str); 5] = [
        (
            "edited",
            Box::new(|l| l[2] = l[2].replace("hello.greet2", "hello.greetX")),
            ":3: record 3 was altered",
        ),
        (
            "edited and re-hashed",
            Box::new(|l| l[2] = rehash(&l[2].replace("hello.greet2", "hello.greetX"))),
            ":4: record 4 does not follow the record before it",
        ),
        (
            "deleted",
            Box::new(|l| {
                l.remove(1);
            }),
            ":2: record 3 follows record 1: records 2 to 2 are missing",
        ),
        (
            "reordered",
            Box::new(|l| l.swap(1, 3)),
            ":2: record 4 follows record 1",
        ),
        (
            "truncated line",
            Box::new(|l| l[4].truncate(40)),
            ":5: is not an audit record",
        ),
    ];
    for (name, edit, expected) in cases {
        let (code, out) = tamper(edit.as_ref());
        assert_eq!(code, 1, "{name}: {out}");
        assert!(
            out.starts_with("broken: ") && out.contains(expected),
            "{name}: {out}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_audit_sink_makes_calls_fail_closed_unless_told_to_continue() {
    for (on_failure, refused) in [("refuse", true), ("continue", false)] {
        let dir = Sandbox::builder()
            .plugin("hello", "")
            .toml(&format!(
                "[http]\nstateless = true\n[audit]\nfile = \"/dev/full\"\non_failure = \"{on_failure}\"\n"
            ))
            .write();
        let server = MoatServer::start(dir.path(), &[]);
        for _ in 0..2 {
            let (status, body) =
                call(&server.url, None, "hello.greet", json!({ "name": "x" })).await;
            assert_eq!(status, 200);
            if refused {
                assert_eq!(
                    body["error"]["data"]["reason"], "audit_unavailable",
                    "{body}"
                );
                assert!(
                    body["error"]["message"]
                        .as_str()
                        .unwrap()
                        .contains("audit log cannot be written"),
                    "{body}"
                );
            } else {
                assert_eq!(body["result"]["content"][0]["text"], "Hello, x!", "{body}");
            }
        }
        let health = reqwest::get(format!("{}/healthz", server.base))
            .await
            .unwrap();
        assert_eq!(health.status(), 200);
    }
}

#[tokio::test]
async fn rotation_and_restarts_keep_one_chain_across_files() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit/log.jsonl");
    let config = file_config(file.clone(), 4096);
    for _restart in 0..2 {
        let log = AuditLog::open(&config).unwrap();
        for n in 0..20 {
            let mut record = Record::new();
            record.tool = Some(format!("files.read{n}"));
            record.outcome = "ok";
            record.kind = "ok".into();
            log.write(&record).await.unwrap();
        }
    }
    let rotated = dir.path().join("audit/log.jsonl.1");
    assert!(rotated.is_file() && dir.path().join("audit/log.jsonl.2").is_file());
    let (code, out) = verify(&file);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("ok: 40 records in "), "{out}");

    // A record removed from a rotated file breaks the chain there.
    let text = std::fs::read_to_string(&rotated).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.remove(3);
    std::fs::write(&rotated, lines.join("\n") + "\n").unwrap();
    let (code, out) = verify(&file);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("log.jsonl.1:4: record 5 follows record 3"),
        "{out}"
    );
}

#[test]
fn a_second_process_cannot_append_to_the_same_log() {
    let dir = tempfile::tempdir().unwrap();
    let config = file_config(dir.path().join("shared.jsonl"), 1 << 20);
    let _first = AuditLog::open(&config).unwrap();
    let second = AuditLog::open(&config).err().unwrap().to_string();
    assert!(second.contains("in use by another process"), "{second}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_while_the_audit_log_refuses_calls_and_200_once_it_is_writable_again() {
    let dir = Sandbox::builder()
        .plugin("hello", "")
        .toml("[http]\nstateless = true\n[audit]\nfile = \"audit.jsonl\"\n")
        .write();
    // The log path leads to a device every write to fails, until the
    // operator mends it (here: by removing the link).
    let log = dir.path().join("audit.jsonl");
    std::os::unix::fs::symlink("/dev/full", &log).unwrap();
    let server = MoatServer::start(dir.path(), &[]);
    let ready = || async {
        let response = reqwest::get(format!("{}/readyz", server.base))
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    };
    assert_eq!(ready().await.0, 200);
    let (_, body) = call(&server.url, None, "hello.greet", json!({ "name": "x" })).await;
    assert_eq!(
        body["error"]["data"]["reason"], "audit_unavailable",
        "{body}"
    );
    for _ in 0..2 {
        let (status, text) = ready().await;
        assert_eq!(status, 503, "{text}");
        assert!(text.contains("audit log"), "{text}");
        assert!(!text.contains("/dev/full"), "no host paths: {text}");
    }

    std::fs::remove_file(&log).unwrap();
    assert_eq!(ready().await.0, 200);
    let (_, body) = call(&server.url, None, "hello.greet", json!({ "name": "x" })).await;
    assert_eq!(body["result"]["content"][0]["text"], "Hello, x!", "{body}");
    let kinds: Vec<Value> = records(&log)
        .into_iter()
        .map(|r| r["kind"].clone())
        .collect();
    assert_eq!(kinds, [json!("audit_resumed"), json!("ok")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_that_fails_the_schema_is_in_no_reason_log_line_or_error() {
    let dir = Sandbox::builder()
        .plugin("testbed", "")
        .toml("[http]\nstateless = true\n[audit]\nfile = \"audit.jsonl\"\n")
        .write();
    // Every log line of every crate, at every level, goes to the log file.
    let server = MoatServer::start_with(dir.path(), "127.0.0.1:0", &[], &[("RUST_LOG", "trace")]);
    let attempts = [
        json!({ "api_key": "sk-LEAKED-TOP-0001" }),
        json!({ "api_key": "ok", "nested": { "password": "sk-LEAKED-DEEP-0002" } }),
        json!({ "api_key": 31337424242_u64 }),
    ];
    let mut answers = Vec::new();
    for args in attempts {
        let (status, body) = call(&server.url, None, "testbed.sign_in", args).await;
        assert_eq!(status, 200);
        assert_eq!(body["error"]["code"], -32602, "{body}");
        answers.push(body.to_string());
    }
    let (_, body) = call(
        &server.url,
        None,
        "testbed.sign_in",
        json!({ "api_key": "fine" }),
    )
    .await;
    assert_eq!(body["result"]["content"][0]["text"], "signed in", "{body}");

    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    let log = server.log();
    assert!(log.contains("invalid_arguments"), "the refusals are logged");
    let reasons: Vec<Value> = records(&dir.path().join("audit.jsonl"))
        .into_iter()
        .filter(|r| r["kind"] == "invalid_arguments")
        .map(|r| r["reason"].clone())
        .collect();
    assert_eq!(reasons.len(), 3, "{audit}");
    // Every record of an HTTP request names the peer.
    for record in records(&dir.path().join("audit.jsonl")) {
        assert_eq!(record["peer"], "127.0.0.1", "{record}");
    }
    assert!(
        reasons[1].as_str().unwrap().contains("(at /nested)"),
        "{reasons:?}"
    );
    for secret in ["sk-LEAKED-TOP-0001", "sk-LEAKED-DEEP-0002", "31337424242"] {
        assert!(!audit.contains(secret), "{secret} in the audit log");
        assert!(!log.contains(secret), "{secret} in the host log");
        for answer in &answers {
            assert!(!answer.contains(secret), "{secret} in an answer: {answer}");
        }
    }
}

/// `line` with its hash recomputed over its (edited) content.
fn rehash(line: &str) -> String {
    use sha2::{Digest, Sha256};
    let at = line.rfind(",\"hash\":\"").unwrap();
    let body = format!("{}}}", &line[..at]);
    let hash = hex::encode(Sha256::digest(body.as_bytes()));
    format!("{},\"hash\":\"{hash}\"}}", &line[..at])
}

/// Renumbers and re-links every line after edits, as someone who can
/// write the file would: each record's seq, prev and hash made whole.
fn rechain(lines: &[String]) -> Vec<String> {
    use sha2::{Digest, Sha256};
    let mut prev = moat::audit::GENESIS.to_string();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let at = line.rfind(",\"hash\":\"").unwrap();
        let mut record: serde_json::Map<String, Value> =
            serde_json::from_str(&format!("{}}}", &line[..at])).unwrap();
        record.insert("seq".into(), json!(i as u64 + 1));
        record.insert("prev".into(), json!(prev));
        let body = serde_json::to_string(&record).unwrap();
        let hash = hex::encode(Sha256::digest(body.as_bytes()));
        out.push(format!("{},\"hash\":\"{hash}\"}}", &body[..body.len() - 1]));
        prev = hash;
    }
    out
}

#[tokio::test]
async fn signed_checkpoints_expose_a_rewritten_chain_that_hashes_alone_cannot() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("audit.key");
    let made = std::process::Command::new(moat_bin())
        .args(["audit", "keygen"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let public = dir.path().join("audit.key.pub");
    let file = dir.path().join("signed.jsonl");
    let config = AuditConfig {
        signing_key: Some(key.clone()),
        checkpoint_every: 3,
        ..file_config(file.clone(), 1 << 20)
    };
    let log = AuditLog::open(&config).unwrap();
    for n in 0..7 {
        let mut record = Record::new();
        record.tool = Some(format!("hello.greet{n}"));
        record.outcome = "ok";
        record.kind = "ok".into();
        log.write(&record).await.unwrap();
    }
    log.close().await.unwrap();
    drop(log);
    // Checkpoints open the chain, follow every third record and close it.
    let lines: Vec<String> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let kinds: Vec<bool> = lines
        .iter()
        .map(|l| l.contains("\"checkpoint\":{"))
        .collect();
    assert_eq!(
        kinds,
        [
            true, false, false, false, true, false, false, false, true, false, true
        ]
    );
    let (code, out) = verify_signed(&file, &public);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("signed: every record, through the closing checkpoint at record 11"),
        "{out}"
    );
    let closed = |path: &Path| {
        verify_with(
            path,
            &["--key".as_ref(), public.as_os_str(), "--closed".as_ref()],
        )
    };
    assert_eq!(closed(&file).0, 0);

    let check = |name: &str, lines: Vec<String>| {
        let path = dir.path().join(format!("{name}.jsonl"));
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        (verify(&path), verify_signed(&path, &public))
    };
    // Record 3 rewritten and every hash after it recomputed: the chain
    // alone looks whole; the first checkpoint after it does not verify.
    let mut edited = lines.clone();
    edited[2] = edited[2].replace("hello.greet1", "hello.greetX");
    let (plain, signed) = check("rewritten", rechain(&edited));
    assert_eq!(plain.0, 0, "the hash chain alone cannot tell: {}", plain.1);
    assert_eq!(signed.0, 1, "{}", signed.1);
    assert!(
        signed
            .1
            .contains(":5: record 5 is a checkpoint whose signature does not verify"),
        "{}",
        signed.1
    );
    // The same, with the checkpoints after the edit removed: too long an
    // unsigned run. With every checkpoint removed: nothing is signed.
    let stripped: Vec<String> = edited
        .iter()
        .enumerate()
        .filter(|(i, l)| *i < 2 || !l.contains("\"checkpoint\":{"))
        .map(|(_, l)| l.clone())
        .collect();
    let (_, signed) = check("stripped", rechain(&stripped));
    assert_eq!(signed.0, 1, "{}", signed.1);
    assert!(
        signed
            .1
            .contains("the last 7 records have no signed checkpoint"),
        "{}",
        signed.1
    );
    let unsigned: Vec<String> = edited
        .iter()
        .filter(|l| !l.contains("\"checkpoint\":{"))
        .cloned()
        .collect();
    let (_, signed) = check("unsigned", rechain(&unsigned));
    assert_eq!(signed.0, 1, "{}", signed.1);
    assert!(
        signed.1.contains("no record is signed by this key"),
        "{}",
        signed.1
    );
    // The closing checkpoint cut off, and the record before it rewritten:
    // only --closed tells.
    let mut cut = lines[..lines.len() - 1].to_vec();
    let last = cut[9].replace("hello.greet6", "hello.greetX");
    cut[9] = rehash(&last);
    let cut_path = dir.path().join("cut.jsonl");
    std::fs::write(&cut_path, cut.join("\n") + "\n").unwrap();
    let (code, out) = verify_signed(&cut_path, &public);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("the last 1 record(s) are covered by the hash chain only"),
        "{out}"
    );
    let (code, out) = closed(&cut_path);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("does not end with its closing checkpoint"),
        "{out}"
    );
    // Another key verifies nothing.
    let other = dir.path().join("other.key");
    moat::audit::checkpoint::generate(&other).unwrap();
    let (code, out) = verify_signed(&file, &dir.path().join("other.key.pub"));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(":1: record 1 is a checkpoint whose signature does not verify"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_admitted_then_refused_by_the_transport_is_still_recorded() {
    let dir = Sandbox::builder()
        .plugin("hello", "")
        .toml("[http]\nstateless = true\n[audit]\nfile = \"audit.jsonl\"\n")
        .write();
    let server = MoatServer::start(dir.path(), &[]);
    // A protocol revision rmcp does not know: it refuses the request after
    // Moat admitted the call in it.
    let refused = raw::post(&server.url, None)
        .header("mcp-protocol-version", "1999-01-01")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"hello.greet","arguments":{"name":"x"}}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let log = dir.path().join("audit.jsonl");
    let mut kinds = Vec::new();
    for _ in 0..50 {
        kinds = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["kind"].clone())
            .collect();
        if !kinds.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(kinds, [json!("abandoned")]);
    let (status, body) = call(&server.url, None, "hello.greet", json!({ "name": "x" })).await;
    assert_eq!(
        (status, body["result"]["content"][0]["text"].clone()),
        (200, json!("Hello, x!"))
    );
}

/// With `sync = true` a response leaves only once its record is stored,
/// and concurrent calls share the flushes: a server killed (SIGKILL) in
/// the middle of concurrent calls has a record of every call whose answer
/// a client received, and after a restart the chain goes on and verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_under_load_keeps_the_record_of_every_answered_call() {
    use std::sync::{Arc, Mutex};
    let dir = Sandbox::builder()
        .plugin("hello", "")
        .toml("[http]\nstateless = true\n[audit]\nfile = \"audit.jsonl\"\nsync = true")
        .write();
    let file = dir.path().join("audit.jsonl");
    let mut server = MoatServer::start(dir.path(), &[]);
    let answered = Arc::new(Mutex::new(Vec::<String>::new()));
    let clients: Vec<_> = (0..8)
        .map(|client| {
            let (url, answered) = (server.url.clone(), answered.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                for n in 0.. {
                    let name = format!("c{client}-{n}");
                    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call",
                        "params": { "name": "hello.greet", "arguments": { "name": name } } });
                    let sent = http
                        .post(&url)
                        .header("content-type", "application/json")
                        .header("accept", "application/json, text/event-stream")
                        .header("mcp-protocol-version", "2025-11-25")
                        .body(body.to_string())
                        .send()
                        .await;
                    let Ok(response) = sent else { break };
                    let Ok(text) = response.text().await else {
                        break;
                    };
                    // Only a whole answer counts as received.
                    if text.contains(&format!("Hello, {name}!")) {
                        answered.lock().unwrap().push(name);
                    }
                }
            })
        })
        .collect();
    let started = std::time::Instant::now();
    while answered.lock().unwrap().len() < 300 {
        assert!(started.elapsed() < std::time::Duration::from_secs(60));
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    server.kill();
    for client in clients {
        client.await.unwrap();
    }
    let answered = answered.lock().unwrap().clone();

    // The restarted server continues the chain and serves.
    let server = MoatServer::start(dir.path(), &[]);
    let (status, body) = call(&server.url, None, "hello.greet", json!({ "name": "after" })).await;
    assert_eq!(status, 200, "{body}");
    drop(server);

    let recorded: std::collections::HashSet<String> = records(&file)
        .iter()
        .filter(|r| r["kind"] == "ok")
        .filter_map(|r| r["arguments"]["name"].as_str().map(String::from))
        .collect();
    let missing: Vec<&String> = answered.iter().filter(|n| !recorded.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} answered calls have no record: {missing:?}",
        missing.len(),
        answered.len()
    );
    assert!(recorded.contains("after"));
    let (code, out) = verify(&file);
    assert_eq!(code, 0, "{out}");
}
