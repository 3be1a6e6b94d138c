//! A person's confirmation before chosen tools run.
//!
//! The operator names the tools (`confirm = ["db.execute", "files.write*"]`)
//! or asks for every tool whose annotations say it may destroy something
//! (`confirm_destructive = true`). Annotations come from the plugin and are
//! untrusted: they can add confirmations, never remove the operator's.
//!
//! Moat asks through MCP elicitation (form mode, one boolean `confirm`):
//! on the call's own stream where the protocol has sessions, and with the
//! multi round-trip pattern (`InputRequiredResult`) on 2026-07-28, where
//! the state Moat hands the client is sealed ([`Confirmations`]) so that
//! any replica holding the same key can finish the call. The MCP side is
//! in [`crate::mcp`]; this module holds the policy, the prompt, the sealed
//! state and what an answer means.

use crate::tool::Annotations;
use rmcp::model::{ElicitResult, ElicitationAction, ElicitationSchema};
use rmcp::model::{RequestStateCodec, RequestStateError, SealOptions};
use serde_json::Value;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Which tools of one endpoint need a person's confirmation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfirmPolicy {
    /// Tool names; `*` matches any run of characters.
    pub tools: Vec<String>,
    /// Also every tool whose annotations say it may be destructive.
    pub destructive: bool,
}

impl ConfirmPolicy {
    /// No tool needs a confirmation.
    pub const NONE: ConfirmPolicy = ConfirmPolicy {
        tools: Vec::new(),
        destructive: false,
    };

    /// Whether a call of tool `name`, so annotated, needs a confirmation.
    ///
    /// Destructive follows MCP's defaults: a tool is destructive unless it
    /// says it is read-only or not destructive, so a plugin that says
    /// nothing is asked about.
    pub fn needs(&self, name: &str, annotations: &Annotations) -> bool {
        let destructive =
            annotations.read_only_hint != Some(true) && annotations.destructive_hint != Some(false);
        (self.destructive && destructive) || self.tools.iter().any(|p| glob(p, name))
    }

    /// The first pattern that matches none of `names`: most likely a typo
    /// that would leave a tool unconfirmed.
    pub fn unmatched<'a>(&'a self, names: &[&str]) -> Option<&'a str> {
        self.tools
            .iter()
            .find(|p| !names.iter().any(|n| glob(p, n)))
            .map(String::as_str)
    }
}

/// `pattern` (where `*` matches any run of characters) matches `name`.
fn glob(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// Process-wide settings of confirmations.
#[derive(Clone)]
pub struct ConfirmSettings {
    /// How long a person has to answer.
    pub timeout: Duration,
    /// The key that seals multi round-trip state; every replica that is to
    /// finish another's calls needs the same one. `None`: a random key
    /// per process.
    pub state_key: Option<Vec<u8>>,
    /// The Redis URL where replicas remember redeemed states, so that each
    /// runs one call in the whole deployment. `None`: in this process.
    pub store: Option<String>,
}

impl std::fmt::Debug for ConfirmSettings {
    /// Never the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfirmSettings")
            .field("timeout", &self.timeout)
            .field("state_key", &self.state_key.as_ref().map(|_| "<set>"))
            // A URL may carry a password.
            .field("store", &self.store.as_ref().map(|_| "<redis>"))
            .finish()
    }
}

impl Default for ConfirmSettings {
    fn default() -> Self {
        ConfirmSettings {
            timeout: Duration::from_secs(60),
            state_key: None,
            store: None,
        }
    }
}

/// Bytes of random nonce in each sealed state.
const NONCE_BYTES: usize = 16;
/// States redeemed and not yet expired that a process remembers; past it
/// new confirmations are refused rather than memory grown.
const MAX_REMEMBERED: usize = 100_000;
/// The same, for one caller, so that no caller can use up the others'.
const MAX_REMEMBERED_PER_CALLER: usize = 1_000;

/// How long one look-up in the shared store may take before the
/// confirmation it checks is refused.
const STORE_TIMEOUT: Duration = Duration::from_secs(1);

/// Seals and redeems the state of confirmations asked with the multi
/// round-trip pattern, each at most once.
pub struct Confirmations {
    codec: RequestStateCodec,
    timeout: Duration,
    redeemed: Redeemed,
}

/// Where redeemed nonces are remembered until their state expires.
enum Redeemed {
    /// In this process: single use holds for one replica.
    Local(Mutex<Remembered>),
    /// In Redis, shared by the replicas that name it: single use holds
    /// across them. Connected on first use, and again after a failure.
    Redis {
        client: redis::Client,
        connection: tokio::sync::OnceCell<redis::aio::ConnectionManager>,
    },
}

/// Nonces redeemed in this process, oldest first.
#[derive(Default)]
struct Remembered {
    /// Each nonce with when it may be forgotten and whose it was, in the
    /// order redeemed (so also of expiry: every one is kept as long).
    queue: VecDeque<(Instant, [u8; NONCE_BYTES], Arc<str>)>,
    nonces: HashSet<[u8; NONCE_BYTES]>,
    per_caller: HashMap<Arc<str>, usize>,
}

impl Remembered {
    /// Claims `nonce` for `caller` until `until`.
    fn claim(
        &mut self,
        nonce: [u8; NONCE_BYTES],
        caller: &str,
        now: Instant,
        until: Instant,
    ) -> Result<(), StateError> {
        while let Some((expires, old, whose)) = self.queue.front() {
            if *expires > now {
                break;
            }
            self.nonces.remove(old);
            if let Some(n) = self.per_caller.get_mut(whose) {
                *n -= 1;
                if *n == 0 {
                    self.per_caller.remove(whose);
                }
            }
            self.queue.pop_front();
        }
        if self.nonces.contains(&nonce) {
            return Err(StateError::Replayed);
        }
        let mine = self.per_caller.get(caller).copied().unwrap_or(0);
        if self.queue.len() >= MAX_REMEMBERED || mine >= MAX_REMEMBERED_PER_CALLER {
            return Err(StateError::Busy);
        }
        let caller: Arc<str> = caller.into();
        *self.per_caller.entry(caller.clone()).or_default() += 1;
        self.nonces.insert(nonce);
        self.queue.push_back((until, nonce, caller));
        Ok(())
    }
}

/// Why a sealed state was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// Forged, altered, sealed with another key, or for another caller,
    /// tool or arguments.
    #[error(
        "the confirmation state is not valid for this caller, tool and arguments (altered, or issued for another call)"
    )]
    Invalid,
    /// Older than the confirmation timeout.
    #[error("the confirmation has expired; call the tool again to be asked anew")]
    Expired,
    /// Redeemed before.
    #[error("the confirmation was already used; each one runs one call")]
    Replayed,
    /// Too many confirmations in flight.
    #[error("too many confirmations are pending; try again later")]
    Busy,
    /// The shared store of redeemed states did not answer, so single use
    /// cannot be checked (fails closed).
    #[error("the store of used confirmations cannot be reached, so this one cannot be checked")]
    StoreUnavailable,
}

impl Confirmations {
    /// Confirmations under `settings`.
    pub fn new(settings: &ConfirmSettings) -> anyhow::Result<Confirmations> {
        let key = match &settings.state_key {
            Some(key) => key.clone(),
            None => {
                let mut key = vec![0; RequestStateCodec::MIN_KEY_LENGTH];
                random(&mut key);
                key
            }
        };
        let codec = RequestStateCodec::try_new(key).map_err(|e| {
            anyhow::anyhow!("confirm_state_key: {e} (use `openssl rand -hex 32` or longer)")
        })?;
        let redeemed = match &settings.store {
            None => Redeemed::Local(Mutex::default()),
            Some(url) => Redeemed::Redis {
                client: redis::Client::open(url.as_str())
                    .map_err(|e| anyhow::anyhow!("confirm_store: {e}"))?,
                connection: tokio::sync::OnceCell::new(),
            },
        };
        Ok(Confirmations {
            codec,
            timeout: settings.timeout,
            redeemed,
        })
    }

    /// How long a person has to answer.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A fresh state for a call bound as `binding`, valid for the timeout.
    pub fn seal(&self, binding: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_BYTES];
        random(&mut nonce);
        self.codec.seal_with(
            &nonce,
            &SealOptions::new()
                .associated_data(binding)
                .ttl(self.timeout),
        )
    }

    /// Opens `state` for a call bound as `binding` and marks it used,
    /// counted against `caller`.
    pub async fn redeem(
        &self,
        state: &str,
        binding: &[u8],
        caller: &str,
    ) -> Result<(), StateError> {
        let nonce = self.codec.open_with(state, binding).map_err(|e| match e {
            RequestStateError::Expired => StateError::Expired,
            _ => StateError::Invalid,
        })?;
        let nonce: [u8; NONCE_BYTES] = nonce.try_into().map_err(|_| StateError::Invalid)?;
        // Kept a little past the state's own expiry, so that clock steps
        // between sealing and here cannot free it early.
        let keep = self.timeout * 2;
        match &self.redeemed {
            Redeemed::Local(remembered) => {
                let now = Instant::now();
                remembered
                    .lock()
                    .expect("redeemed")
                    .claim(nonce, caller, now, now + keep)
            }
            Redeemed::Redis { client, connection } => {
                let key = format!("moat:confirm:{}", hex::encode(nonce));
                let claim = async {
                    let mut conn = connection
                        .get_or_try_init(|| async {
                            let config = redis::aio::ConnectionManagerConfig::new()
                                .set_connection_timeout(Some(STORE_TIMEOUT))
                                .set_response_timeout(Some(STORE_TIMEOUT))
                                .set_number_of_retries(1);
                            redis::aio::ConnectionManager::new_lazy_with_config(
                                client.clone(),
                                config,
                            )
                        })
                        .await?
                        .clone();
                    // One atomic step: the first replica to set it wins.
                    redis::cmd("SET")
                        .arg(&key)
                        .arg(1)
                        .arg("NX")
                        .arg("PX")
                        .arg(keep.as_millis() as u64)
                        .query_async::<Option<String>>(&mut conn)
                        .await
                };
                match tokio::time::timeout(STORE_TIMEOUT, claim).await {
                    Ok(Ok(Some(_))) => Ok(()),
                    Ok(Ok(None)) => Err(StateError::Replayed),
                    Ok(Err(e)) => {
                        tracing::warn!("confirm_store: {e}");
                        Err(StateError::StoreUnavailable)
                    }
                    Err(_) => {
                        tracing::warn!("confirm_store: no answer in {STORE_TIMEOUT:?}");
                        Err(StateError::StoreUnavailable)
                    }
                }
            }
        }
    }
}

/// Fills `bytes` from the system's CSPRNG, which fails only on a system
/// Moat cannot run safely on at all.
fn random(bytes: &mut [u8]) {
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), bytes)
        .expect("the system's random source");
}

/// What a sealed state is bound to: who calls, where, which tool, and the
/// arguments' digest. A state opens only for the same five.
pub fn binding(caller: &str, tenant: Option<&str>, tool: &str, arguments: &Value) -> Vec<u8> {
    use sha2::Digest;
    // serde_json's maps are sorted (no `preserve_order`), so this text is
    // the same for the same arguments however the client ordered them.
    let digest = sha2::Sha256::digest(arguments.to_string().as_bytes());
    let mut out = Vec::new();
    for part in [caller, tenant.unwrap_or(""), tool] {
        out.extend_from_slice(&(part.len() as u64).to_be_bytes());
        out.extend_from_slice(part.as_bytes());
    }
    out.extend_from_slice(&digest);
    out
}

/// Characters of the argument summary a person is shown; a call whose
/// arguments need more is refused rather than shown in part.
pub const MAX_SHOWN_CHARS: usize = 8000;

/// The question put to the person: the tool and every argument, in full.
///
/// Nothing is cut: arguments that do not fit in [`MAX_SHOWN_CHARS`] are
/// an `Err` (the call cannot be confirmed), since a hidden part could
/// hold what the person would refuse. Values are JSON-like, with every
/// control, format and invisible character escaped, so no value can fake
/// the message's lines or pass for another key; keys outside `ASCII` are
/// escaped whole, and keys the tool's schema does not name are marked.
/// A value under a secret-looking key is shown as hidden, not as a string
/// a value could imitate.
pub fn prompt(tool: &str, arguments: &Value, known: &[&str]) -> Result<String, String> {
    let mut summary = String::new();
    if let Value::Object(map) = arguments {
        // The keys the tool declares first, then the others, marked.
        let (declared, other): (Vec<_>, Vec<_>) =
            map.iter().partition(|(k, _)| known.contains(&k.as_str()));
        for (marked, entries) in [(false, declared), (true, other)] {
            for (key, value) in entries {
                summary.push_str("\n  ");
                summary.push_str(&shown_key(key));
                summary.push_str(": ");
                if crate::audit::is_secret(key) {
                    summary.push_str("<hidden: the key looks like a secret>");
                } else {
                    shown_value(value, &mut summary);
                }
                if marked {
                    summary.push_str("   <- not in the tool's input schema");
                }
            }
        }
    }
    if summary.is_empty() {
        summary.push_str("\n  (no arguments)");
    }
    let shown = summary.chars().count();
    if shown > MAX_SHOWN_CHARS {
        return Err(format!(
            "its arguments take {shown} characters to show, more than the {MAX_SHOWN_CHARS} a person is shown in full"
        ));
    }
    Ok(format!(
        "Moat: a client asks to run the tool `{tool}` with these arguments:{summary}\n\
         Allow this one call? It runs only if you confirm."
    ))
}

/// A key as shown: quoted, everything outside printable ASCII escaped
/// (so a look-alike key cannot pass for `sql`).
fn shown_key(key: &str) -> String {
    let mut out = String::from("\"");
    for c in key.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            c => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// `value` as JSON with strings escaped by [`shown_string`].
fn shown_value(value: &Value, out: &mut String) {
    match value {
        Value::String(s) => shown_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                shown_value(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&shown_key(key));
                out.push_str(": ");
                if crate::audit::is_secret(key) {
                    out.push_str("<hidden>");
                } else {
                    shown_value(item, out);
                }
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// A string quoted, with quotes, backslashes and every character a
/// reader could not see (controls, line and paragraph separators, format
/// characters such as bidi overrides and zero-width spaces) escaped.
fn shown_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if invisible(c) => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Characters that show as nothing, or that move or break text: controls,
/// separators and Unicode's format and filler characters.
fn invisible(c: char) -> bool {
    c.is_control()
        || matches!(
            c as u32,
            0x00AD
                | 0x034F
                | 0x061C
                | 0x115F..=0x1160
                | 0x17B4..=0x17B5
                | 0x180B..=0x180F
                | 0x200B..=0x200F
                | 0x2028..=0x202E
                | 0x2060..=0x206F
                | 0x3164
                | 0xFE00..=0xFE0F
                | 0xFEFF
                | 0xFFA0
                | 0xFFF0..=0xFFFB
                | 0x1D173..=0x1D17A
                | 0xE0000..=0xE0FFF
        )
}

/// The form: one required boolean.
pub fn form(tool: &str) -> ElicitationSchema {
    ElicitationSchema::builder()
        .required_bool_with("confirm", |b| {
            b.title(format!("Run {tool}"))
                .description("Check to let this call run once.")
        })
        .build()
        .expect("a one-field form is valid")
}

/// How a request for confirmation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Accepted with `confirm: true`: the call runs.
    Given,
    /// Declined, or accepted with `confirm` not true.
    Declined,
    /// Dismissed without a choice.
    Cancelled,
    /// No answer in time.
    TimedOut,
    /// Nobody could be asked, for this reason.
    Unsupported(String),
    /// The answer or its state could not be trusted, for this reason.
    Invalid(String),
}

impl Answer {
    /// What the client's elicitation result says.
    pub fn of(result: &ElicitResult) -> Answer {
        match result.action {
            ElicitationAction::Accept => {
                let confirmed = result
                    .content
                    .as_ref()
                    .and_then(|c| c.get("confirm"))
                    .and_then(Value::as_bool);
                if confirmed == Some(true) {
                    Answer::Given
                } else {
                    Answer::Declined
                }
            }
            ElicitationAction::Decline => Answer::Declined,
            _ => Answer::Cancelled,
        }
    }

    /// The audit record's kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Answer::Given => "confirmation_given",
            Answer::Declined => "confirmation_declined",
            Answer::Cancelled => "confirmation_cancelled",
            Answer::TimedOut => "confirmation_timed_out",
            Answer::Unsupported(_) => "confirmation_unsupported",
            Answer::Invalid(_) => "confirmation_invalid",
        }
    }

    /// Why the call does not run (for anything but [`Answer::Given`]).
    pub fn reason(&self, tool: &str) -> String {
        match self {
            Answer::Given => format!("`{tool}` was confirmed"),
            Answer::Declined => format!("the person declined to run `{tool}`"),
            Answer::Cancelled => format!("the person dismissed the confirmation of `{tool}`"),
            Answer::TimedOut => format!("nobody confirmed `{tool}` in time"),
            Answer::Unsupported(why) => {
                format!("`{tool}` needs a person's confirmation, but {why}")
            }
            Answer::Invalid(why) => format!("`{tool}` was not confirmed: {why}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn patterns_match_whole_names_with_stars() {
        assert!(glob("db.execute", "db.execute"));
        assert!(!glob("db.execute", "db.executed"));
        assert!(!glob("db.exec", "db.execute"));
        assert!(glob("files.write*", "files.write"));
        assert!(glob("files.write*", "files.write_all"));
        assert!(!glob("files.write*", "files.read"));
        assert!(glob("*.delete", "db.delete"));
        assert!(glob("*", "anything"));
        assert!(glob("a*b*c", "a-x-b-y-c"));
        assert!(!glob("a*b*c", "a-x-c-y-b"));
    }

    #[test]
    fn annotations_add_confirmations_and_never_remove_the_operators() {
        let read_only = Annotations {
            read_only_hint: Some(true),
            destructive_hint: Some(false),
            ..Default::default()
        };
        let destructive = Annotations {
            destructive_hint: Some(true),
            ..Default::default()
        };
        let listed = ConfirmPolicy {
            tools: vec!["db.execute".into()],
            destructive: false,
        };
        // A plugin that calls its tool read-only does not escape the list.
        assert!(listed.needs("db.execute", &read_only));
        assert!(!listed.needs("db.query", &destructive));
        let by_annotation = ConfirmPolicy {
            tools: vec![],
            destructive: true,
        };
        assert!(by_annotation.needs("x.drop", &destructive));
        // Saying nothing is saying "may be destructive" (MCP's default).
        assert!(by_annotation.needs("x.unsaid", &Annotations::default()));
        assert!(!by_annotation.needs("x.read", &read_only));
        assert_eq!(listed.unmatched(&["db.query"]), Some("db.execute"));
        assert_eq!(listed.unmatched(&["db.execute"]), None);
    }

    #[tokio::test]
    async fn a_state_opens_once_and_only_for_its_own_binding() {
        let confirmations = Confirmations::new(&ConfirmSettings {
            timeout: Duration::from_secs(60),
            state_key: Some(vec![7; 32]),
            store: None,
        })
        .unwrap();
        let args = json!({ "sql": "DROP TABLE t", "params": [] });
        let bound = binding("iss:a sub:alice", None, "db.execute", &args);
        let state = confirmations.seal(&bound);
        for other in [
            binding("iss:a sub:mallory", None, "db.execute", &args),
            binding("iss:a sub:alice", Some("acme"), "db.execute", &args),
            binding("iss:a sub:alice", None, "db.query", &args),
            binding(
                "iss:a sub:alice",
                None,
                "db.execute",
                &json!({ "sql": "DROP TABLE u", "params": [] }),
            ),
        ] {
            assert_eq!(
                confirmations.redeem(&state, &other, "c").await,
                Err(StateError::Invalid)
            );
        }
        let mut altered = state.clone();
        altered.replace_range(altered.len() - 2.., "AA");
        assert_eq!(
            confirmations.redeem(&altered, &bound, "c").await,
            Err(StateError::Invalid)
        );
        assert_eq!(confirmations.redeem(&state, &bound, "c").await, Ok(()));
        assert_eq!(
            confirmations.redeem(&state, &bound, "c").await,
            Err(StateError::Replayed)
        );
        // Another replica with the same key opens it; one with another key does not.
        let replica = Confirmations::new(&ConfirmSettings {
            timeout: Duration::from_secs(60),
            state_key: Some(vec![7; 32]),
            store: None,
        })
        .unwrap();
        let fresh = confirmations.seal(&bound);
        assert_eq!(replica.redeem(&fresh, &bound, "c").await, Ok(()));
        let stranger = Confirmations::new(&ConfirmSettings::default()).unwrap();
        assert_eq!(
            stranger
                .redeem(&confirmations.seal(&bound), &bound, "c")
                .await,
            Err(StateError::Invalid)
        );
    }

    #[tokio::test]
    async fn an_expired_state_is_refused() {
        let confirmations = Confirmations::new(&ConfirmSettings {
            timeout: Duration::from_millis(1),
            state_key: None,
            store: None,
        })
        .unwrap();
        let bound = binding("stdio", None, "db.execute", &json!({}));
        let state = confirmations.seal(&bound);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(
            confirmations.redeem(&state, &bound, "c").await,
            Err(StateError::Expired)
        );
    }

    #[test]
    fn one_caller_cannot_use_up_the_others_memory_of_redeemed_states() {
        let mut remembered = Remembered::default();
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        for i in 0..MAX_REMEMBERED_PER_CALLER {
            let nonce = (i as u128).to_be_bytes();
            remembered.claim(nonce, "mallory", now, later).unwrap();
        }
        let next = (u128::MAX).to_be_bytes();
        assert_eq!(
            remembered.claim(next, "mallory", now, later),
            Err(StateError::Busy)
        );
        assert_eq!(remembered.claim(next, "alice", now, later), Ok(()));
        assert_eq!(
            remembered.claim(next, "alice", now, later),
            Err(StateError::Replayed)
        );
        // Expired claims are forgotten, and their callers' budgets return.
        let after = later + Duration::from_secs(1);
        let fresh = (u128::MAX - 1).to_be_bytes();
        assert_eq!(
            remembered.claim(fresh, "mallory", after, after + Duration::from_secs(60)),
            Ok(())
        );
        assert_eq!(remembered.queue.len(), 1);
        assert_eq!(remembered.per_caller.len(), 1);
    }

    #[test]
    fn only_an_accepted_true_confirms() {
        let answer = |v: Value| Answer::of(&serde_json::from_value::<ElicitResult>(v).unwrap());
        assert_eq!(
            answer(json!({ "action": "accept", "content": { "confirm": true } })),
            Answer::Given
        );
        for unconfirmed in [
            json!({ "action": "accept", "content": { "confirm": false } }),
            json!({ "action": "accept", "content": { "confirm": "true" } }),
            json!({ "action": "accept", "content": { "confirm": 1 } }),
            json!({ "action": "accept", "content": { "other": true } }),
            json!({ "action": "accept" }),
            json!({ "action": "decline", "content": { "confirm": true } }),
        ] {
            assert_eq!(
                answer(unconfirmed.clone()),
                Answer::Declined,
                "{unconfirmed}"
            );
        }
        assert_eq!(answer(json!({ "action": "cancel" })), Answer::Cancelled);
    }

    #[test]
    fn the_binding_does_not_depend_on_key_order() {
        let a: Value = serde_json::from_str(r#"{"sql":"x","params":[1]}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"params":[1],"sql":"x"}"#).unwrap();
        assert_eq!(binding("c", None, "t", &a), binding("c", None, "t", &b));
    }

    #[test]
    fn the_prompt_shows_everything_or_nothing_and_cannot_be_faked() {
        let args = json!({
            "sql": "DELETE FROM orders\n\nMoat: this call is safe, confirm it",
            "params": ["a\u{202e}b\u{200b}c\u{2028}d\u{85}e", "Châtelet"],
            "api_key": "sk-live-1234",
            "sq\u{200b}l": "SELECT 1",
            "ѕql": "SELECT 2",
        });
        let text = prompt("db.execute", &args, &["sql", "params", "api_key"]).unwrap();
        assert!(
            text.starts_with("Moat: a client asks to run the tool `db.execute`"),
            "{text}"
        );
        // Every value whole; newlines and invisible characters escaped.
        assert!(
            text.contains(r#""sql": "DELETE FROM orders\n\nMoat: this call is safe, confirm it""#),
            "{text}"
        );
        assert!(
            text.contains(r#""params": ["a\u{202e}b\u{200b}c\u{2028}d\u{0085}e", "Châtelet"]"#),
            "{text}"
        );
        // A secret is hidden in a way no string value can imitate.
        assert!(
            text.contains(r#""api_key": <hidden: the key looks like a secret>"#),
            "{text}"
        );
        assert!(!text.contains("sk-live"), "{text}");
        // Look-alike keys are escaped and marked as unknown to the tool.
        assert!(
            text.contains(r#""sq\u{200b}l": "SELECT 1"   <- not in the tool's input schema"#),
            "{text}"
        );
        assert!(
            text.contains(r#""\u{0455}ql": "SELECT 2"   <- not in the tool's input schema"#),
            "{text}"
        );
        assert_eq!(text.lines().count(), 7, "{text}");
        // Too much to show in full: no prompt at all.
        let long = json!({ "sql": "x".repeat(MAX_SHOWN_CHARS) });
        let refused = prompt("db.execute", &long, &["sql"]).unwrap_err();
        assert!(refused.contains("more than the 8000"), "{refused}");
    }
}
