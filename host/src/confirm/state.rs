//! The sealed state of a confirmation asked across round trips
//! (2026-07-28), and its single use: in the process, or in Redis shared by
//! every replica.

use rmcp::model::{RequestStateCodec, RequestStateError, SealOptions};
use serde_json::Value;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
const MAX_REMEMBERED: usize = 500_000;
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

    /// A state carrying `payload` for a call bound as `binding`, valid for
    /// the timeout: the client cannot read or alter it, nor use it for
    /// another call.
    pub fn seal_payload(&self, payload: &[u8], binding: &[u8]) -> String {
        self.codec.seal_with(
            payload,
            &SealOptions::new()
                .associated_data(binding)
                .ttl(self.timeout),
        )
    }

    /// The payload of a state sealed by [`Self::seal_payload`] for
    /// `binding`.
    pub fn open_payload(&self, state: &str, binding: &[u8]) -> Result<Vec<u8>, StateError> {
        self.codec.open_with(state, binding).map_err(|e| match e {
            RequestStateError::Expired => StateError::Expired,
            _ => StateError::Invalid,
        })
    }

    /// Opens `state` for a call bound as `binding`; when `claim`, marks it
    /// used (counted against `caller`), or says it was used before.
    pub async fn redeem(
        &self,
        state: &str,
        binding: &[u8],
        caller: &str,
        claim: bool,
    ) -> Result<(), StateError> {
        let nonce = self.codec.open_with(state, binding).map_err(|e| match e {
            RequestStateError::Expired => StateError::Expired,
            _ => StateError::Invalid,
        })?;
        let nonce: [u8; NONCE_BYTES] = nonce.try_into().map_err(|_| StateError::Invalid)?;
        if !claim {
            return Ok(());
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Confirmations under a fixed key, as every replica would hold it.
    fn keyed() -> Confirmations {
        Confirmations::new(&ConfirmSettings {
            timeout: Duration::from_secs(60),
            state_key: Some(vec![7; 32]),
            store: None,
        })
        .unwrap()
    }

    #[tokio::test]
    async fn a_state_opens_once_and_only_for_its_own_binding() {
        let confirmations = keyed();
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
                confirmations.redeem(&state, &other, "c", true).await,
                Err(StateError::Invalid)
            );
        }
        let mut altered = state.clone();
        altered.replace_range(altered.len() - 2.., "AA");
        assert_eq!(
            confirmations.redeem(&altered, &bound, "c", true).await,
            Err(StateError::Invalid)
        );
        assert_eq!(
            confirmations.redeem(&state, &bound, "c", true).await,
            Ok(())
        );
        assert_eq!(
            confirmations.redeem(&state, &bound, "c", true).await,
            Err(StateError::Replayed)
        );
        // Another replica with the same key opens it; one with another key does not.
        let replica = keyed();
        let fresh = confirmations.seal(&bound);
        assert_eq!(replica.redeem(&fresh, &bound, "c", true).await, Ok(()));
        let stranger = Confirmations::new(&ConfirmSettings::default()).unwrap();
        assert_eq!(
            stranger
                .redeem(&confirmations.seal(&bound), &bound, "c", true)
                .await,
            Err(StateError::Invalid)
        );
    }

    #[tokio::test]
    async fn only_a_claim_uses_a_state_up() {
        let confirmations = Confirmations::new(&ConfirmSettings::default()).unwrap();
        let bound = binding("c", None, "t", &json!({}));
        let state = confirmations.seal(&bound);
        // A "no" checks the state but leaves it; then a "yes" uses it up.
        assert_eq!(
            confirmations.redeem(&state, &bound, "c", false).await,
            Ok(())
        );
        assert_eq!(
            confirmations.redeem(&state, &bound, "c", true).await,
            Ok(())
        );
        assert_eq!(
            confirmations.redeem(&state, &bound, "c", true).await,
            Err(StateError::Replayed)
        );
        let other = binding("d", None, "t", &json!({}));
        assert_eq!(
            confirmations.redeem(&state, &other, "c", false).await,
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
            confirmations.redeem(&state, &bound, "c", true).await,
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
    fn the_binding_does_not_depend_on_key_order() {
        let a: Value = serde_json::from_str(r#"{"sql":"x","params":[1]}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"params":[1],"sql":"x"}"#).unwrap();
        assert_eq!(binding("c", None, "t", &a), binding("c", None, "t", &b));
    }
}
