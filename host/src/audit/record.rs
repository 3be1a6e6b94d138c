//! One audit record, and the redaction of the arguments it keeps.

use serde::Serialize;
use serde_json::{Map, Value};
use sha2::Digest;

/// What happened to one call or request. `seq`, `ts` and the chain's
/// `prev` and `hash` are added when it is written.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Record {
    /// Unique per record; the same ID is in the host's log lines.
    pub request_id: String,
    /// The tenant, `None` for the top-level endpoint.
    pub tenant: Option<String>,
    /// The token's subject; `None` over stdio and HTTP without `[auth]`.
    pub subject: Option<String>,
    /// The token's client.
    pub client_id: Option<String>,
    /// The caller's scopes.
    pub scopes: Vec<String>,
    /// The peer's IP address, over HTTP.
    pub peer: Option<std::net::IpAddr>,
    /// `<plugin>.<tool>`, when known; for another request (see `method`),
    /// the prompt's name or the resource's URI.
    pub tool: Option<String>,
    /// The MCP method, for requests other than `tools/call`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<&'static str>,
    /// SHA-256 of the plugin's component.
    pub plugin_sha256: Option<String>,
    /// SHA-256 of the arguments as received (before redaction).
    pub args_sha256: Option<String>,
    /// The arguments, redacted and size-capped (see [`redact`]).
    pub arguments: Option<Value>,
    /// `ok`, `error` (the call ran and failed) or `refused` (it did not run).
    pub outcome: &'static str,
    /// The stable name of what happened: `ok`, `tool_error`, a limit such
    /// as `out_of_fuel`, or a refusal such as `unauthenticated`,
    /// `forbidden`, `rate_limited`, `invalid_arguments`.
    pub kind: String,
    /// The message, for anything but `ok`.
    pub reason: Option<String>,
    /// Wall-clock time of the call.
    pub duration_us: u64,
    /// Fuel used.
    pub fuel: u64,
    /// Peak linear memory.
    pub peak_memory_bytes: usize,
    /// Bytes of output returned.
    pub output_bytes: usize,
    /// Capabilities the call asked for and was refused (such as a host
    /// not in `allow_hosts`).
    pub denied: Vec<String>,
    /// What the call asked the client (sampling, elicitation), one line per
    /// request.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub asked: Vec<String>,
    /// The resources the plugin said the call changed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<String>,
    /// For a checkpoint record: the signature over its place in the chain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<super::checkpoint::Checkpoint>,
}

#[derive(Serialize)]
struct Line<'a> {
    seq: u64,
    ts: String,
    #[serde(flatten)]
    record: &'a Record,
    prev: &'a str,
}

impl Record {
    /// A new record with a fresh request ID.
    pub fn new() -> Record {
        Record {
            request_id: uuid::Uuid::new_v4().simple().to_string(),
            ..Record::default()
        }
    }

    /// This record under a fresh request ID (for a further record of the
    /// same call).
    pub fn renewed(self) -> Record {
        Record {
            request_id: Record::new().request_id,
            ..self
        }
    }

    /// The record as a JSON object, numbered `seq` and chained to `prev`.
    pub(super) fn to_json(&self, seq: u64, prev: &str) -> String {
        let line = Line {
            seq,
            ts: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            record: self,
            prev,
        };
        serde_json::to_string(&line).expect("a record serializes")
    }
}

/// Words that mark a key's value as a secret, matched case-insensitively
/// inside the key; keys ending in `key` (`api_key`, `accessKey`) also are.
const SECRET_WORDS: &[&str] = &[
    "token",
    "password",
    "passwd",
    "secret",
    "authorization",
    "cookie",
    "credential",
    "private",
    "session",
];

/// Whether a key names a secret (its value is redacted in records and
/// hidden in confirmation prompts).
pub fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.ends_with("key") || SECRET_WORDS.iter().any(|w| key.contains(w))
}

/// `map` with the value of every secret-looking key (at any depth)
/// replaced by `"[redacted]"`.
fn redacted(map: &Map<String, Value>) -> Map<String, Value> {
    fn value(v: &Value) -> Value {
        match v {
            Value::Object(map) => Value::Object(redacted(map)),
            Value::Array(items) => Value::Array(items.iter().map(value).collect()),
            other => other.clone(),
        }
    }
    map.iter()
        .map(|(k, v)| {
            let v = if is_secret(k) {
                Value::from("[redacted]")
            } else {
                value(v)
            };
            (k.clone(), v)
        })
        .collect()
}

/// The values under secret-looking keys of a call's arguments, to keep
/// out of what goes back (error messages, notifications). Bounded in
/// number and bytes, and replaced in one pass over the text, so that
/// arguments cannot make redaction cost more than reading the text.
#[derive(Clone, Default)]
pub struct Secrets {
    /// Longest first, distinct.
    values: Vec<String>,
    /// Finds them all at once; `None` when there are none.
    finder: Option<aho_corasick::AhoCorasick>,
}

/// Distinct secret values searched for at most (the longest kept).
const MAX_SECRETS: usize = 64;
/// Bytes of secret values searched for at most.
const MAX_SECRET_BYTES: usize = 64 << 10;

impl Secrets {
    /// The values found, longest first.
    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// `text` with every value replaced by `[redacted]` (the longest match
    /// wins where two overlap).
    pub fn scrub(&self, text: &str) -> String {
        match &self.finder {
            None => text.to_string(),
            Some(finder) => {
                let mut out = String::with_capacity(text.len());
                finder.replace_all_with(text, &mut out, |_, _, out| {
                    out.push_str("[redacted]");
                    true
                });
                out
            }
        }
    }
}

/// The values under secret-looking keys at any depth (strings, and
/// numbers as written), long enough to find in a message.
pub fn secrets(arguments: &Map<String, Value>) -> Secrets {
    fn all(value: &Value, into: &mut Vec<String>) {
        match value {
            Value::String(s) => into.push(s.clone()),
            Value::Number(n) => into.push(n.to_string()),
            Value::Array(items) => items.iter().for_each(|v| all(v, into)),
            Value::Object(map) => map.values().for_each(|v| all(v, into)),
            _ => {}
        }
    }
    fn walk(value: &Value, into: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    if is_secret(k) {
                        all(v, into);
                    } else {
                        walk(v, into);
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, into)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    for (k, v) in arguments {
        if is_secret(k) {
            all(v, &mut found);
        } else {
            walk(v, &mut found);
        }
    }
    found.retain(|s| s.chars().count() >= MIN_SECRET_CHARS);
    found.sort_by_key(|s| std::cmp::Reverse(s.len()));
    found.dedup();
    found.truncate(MAX_SECRETS);
    let mut bytes = 0;
    found.retain(|s| {
        bytes += s.len();
        bytes <= MAX_SECRET_BYTES
    });
    let finder = (!found.is_empty()).then(|| {
        aho_corasick::AhoCorasick::builder()
            .match_kind(aho_corasick::MatchKind::LeftmostLongest)
            .build(&found)
            .expect("a bounded set of literal strings builds")
    });
    Secrets {
        values: found,
        finder,
    }
}

/// Values shorter than this are not searched for in messages: they would
/// match ordinary words.
const MIN_SECRET_CHARS: usize = 4;

/// What an audit record keeps of a call's arguments.
pub struct Redacted {
    /// The arguments with the value of every secret-looking key (at any
    /// depth) replaced by `"[redacted]"`; past `max_bytes` of JSON, only a
    /// prefix, as `{"truncated_from": <bytes>, "prefix": "..."}`.
    pub arguments: Value,
    /// SHA-256 (hex) of the whole redacted arguments: two calls with the
    /// same arguments match, and a secret cannot be found by hashing
    /// guesses.
    pub sha256: String,
}

/// Redacts `arguments` once, for both the record's copy and its digest.
pub fn redact(arguments: &Map<String, Value>, max_bytes: usize) -> Redacted {
    let redacted = Value::Object(redacted(arguments));
    let text = redacted.to_string();
    let sha256 = hex::encode(sha2::Sha256::digest(text.as_bytes()));
    if text.len() <= max_bytes {
        return Redacted {
            arguments: redacted,
            sha256,
        };
    }
    let mut cut = max_bytes;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    Redacted {
        arguments: serde_json::json!({ "truncated_from": text.len(), "prefix": &text[..cut] }),
        sha256,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secret_looking_keys_are_redacted_at_any_depth() {
        let args = json!({
            "query": "weather", "api_key": "k-1", "Authorization": "Bearer x",
            "nested": { "password": "p", "items": [{ "sessionToken": "s", "n": 1 }] },
            "accessKey": "a", "client_secret": "c", "author": "kept"
        });
        let out = redact(args.as_object().unwrap(), 4096).arguments;
        assert_eq!(
            out,
            json!({
                "query": "weather", "api_key": "[redacted]", "Authorization": "[redacted]",
                "nested": { "password": "[redacted]", "items": [{ "sessionToken": "[redacted]", "n": 1 }] },
                "accessKey": "[redacted]", "client_secret": "[redacted]", "author": "kept"
            })
        );
    }

    #[test]
    fn many_or_repeated_secrets_cost_one_pass_and_are_bounded() {
        // Values that match inside the marker must not grow the text: the
        // replacement never scans what it inserted.
        let mut token: Vec<Value> = vec![json!("step")];
        token.extend(std::iter::repeat_n(json!("reda"), 100_000));
        token.extend((0..1000).map(|i| json!(format!("secret-{i:04}"))));
        let found = secrets(json!({ "token": token }).as_object().unwrap());
        assert!(found.values().len() <= MAX_SECRETS);
        assert_eq!(
            found.values().iter().filter(|v| *v == "reda").count(),
            0,
            "longest kept"
        );
        let text = "step reda secret-0999 step";
        let scrubbed = found.scrub(text);
        assert!(scrubbed.len() < 3 * text.len(), "{scrubbed}");
        // A marker already in the text is text like any other: one pass.
        let few = secrets(json!({ "token": ["step", "reda"] }).as_object().unwrap());
        assert_eq!(
            few.scrub("step reda [redacted]"),
            "[redacted] [redacted] [[redacted]cted]"
        );
    }

    #[test]
    fn secret_values_are_found_and_scrubbed_from_messages() {
        let args = json!({
            "query": "public words", "api_key": "sk-LIVE-123456",
            "nested": { "password": 31337424242_u64, "list": [{ "token": ["abcd", "xy"] }] }
        });
        let found = secrets(args.as_object().unwrap());
        assert_eq!(found.values(), ["sk-LIVE-123456", "31337424242", "abcd"]);
        let message = "invalid value: string \"sk-LIVE-123456\", expected 31337424242 or abcd; xy";
        assert_eq!(
            found.scrub(message),
            "invalid value: string \"[redacted]\", expected [redacted] or [redacted]; xy"
        );
        // The digest is of the redacted arguments: the same for any secret.
        let other = json!({
            "query": "public words", "api_key": "sk-OTHER",
            "nested": { "password": 1, "list": [{ "token": "t" }] }
        });
        assert_eq!(
            redact(args.as_object().unwrap(), 10).sha256,
            redact(other.as_object().unwrap(), 10).sha256
        );
    }

    #[test]
    fn large_arguments_keep_a_prefix() {
        let args = json!({ "text": "é".repeat(100), "token": "t" });
        let out = redact(args.as_object().unwrap(), 51).arguments;
        let prefix = out["prefix"].as_str().unwrap();
        assert!(prefix.len() <= 51 && prefix.starts_with("{\""), "{out}");
        assert!(!prefix.contains("\"t\""), "redacted before the cut: {out}");
        assert_eq!(out["truncated_from"], json!(args.to_string().len() + 9));
    }
}
