//! Limits shared by replicas through Redis (`[limits] backend`): each
//! endpoint's rate limits and tenant concurrency cap, and the throttle of
//! requests without a valid token. Every decision is one Lua script, so it
//! is atomic across replicas and costs one round trip; the scripts read
//! Redis's own clock, so replicas' clocks need not agree.
//!
//! A look-up that fails or outlasts the backend's timeout counts as the
//! store being down: calls are then refused (the default) or admitted
//! (`on_backend_failure = "admit"`). The throttle of tokenless requests
//! falls back to this replica's own: what it protects, the audit log, is
//! per replica too.

use super::scripts::{ADMIT, RENEW, TAKE, THROTTLE};
use super::{BUSY_RETRY, Limited, RefusalThrottle, Throttled};
use crate::config::{LimitBackend, QuotaConfig};
use crate::metrics;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

/// The connection to the store and its scripts, shared by every endpoint.
pub struct LimitStore {
    client: redis::Client,
    connection: OnceCell<ConnectionManager>,
    timeout: Duration,
    fail_open: bool,
    admit: redis::Script,
    renew: redis::Script,
    throttle: redis::Script,
    lease: redis::Script,
    end_lease: redis::Script,
    /// When a failure was last logged: at most one line every few seconds
    /// while the store is down.
    last_warned: Mutex<Option<Instant>>,
}

/// Why the store gave no answer.
#[derive(Debug, thiserror::Error)]
enum StoreError {
    /// Redis answered with an error, or the connection failed.
    #[error("{0}")]
    Failed(#[from] redis::RedisError),
    /// Nothing came back in time.
    #[error("no answer within {} ms", .0.as_millis())]
    TimedOut(Duration),
    /// An answer the scripts never give.
    #[error("an unexpected answer {0:?}")]
    Unexpected(Vec<i64>),
}

/// How often a store that keeps failing is logged.
const WARN_EVERY: Duration = Duration::from_secs(10);
/// How long a place under a tenant's cap is held without renewal: a
/// replica that dies holding one frees it within this.
const LEASE: Duration = Duration::from_secs(15);
/// How often a running call renews its place.
const RENEW_EVERY: Duration = Duration::from_secs(5);

impl LimitStore {
    /// The store `backend` names; connected on first use.
    pub fn new(backend: &LimitBackend) -> anyhow::Result<Arc<LimitStore>> {
        Ok(Arc::new(LimitStore {
            client: redis::Client::open(backend.url.as_str())
                .map_err(|e| anyhow::anyhow!("[limits] backend: {e}"))?,
            connection: OnceCell::new(),
            timeout: backend.timeout,
            fail_open: backend.fail_open,
            admit: redis::Script::new(&format!("{TAKE}{ADMIT}")),
            renew: redis::Script::new(&format!("{TAKE}{RENEW}")),
            throttle: redis::Script::new(&format!("{TAKE}{THROTTLE}")),
            lease: redis::Script::new(LEASE_TAKE),
            end_lease: redis::Script::new(LEASE_END),
            last_warned: Mutex::new(None),
        }))
    }

    /// Runs `script` on `keys` and `args` within the timeout.
    async fn run(
        &self,
        script: &redis::Script,
        keys: &[&str],
        args: &[String],
    ) -> Result<Vec<i64>, StoreError> {
        let work = async {
            let mut connection = self
                .connection
                .get_or_try_init(|| async {
                    let config = ConnectionManagerConfig::new()
                        .set_connection_timeout(Some(self.timeout))
                        .set_response_timeout(Some(self.timeout))
                        .set_number_of_retries(1);
                    ConnectionManager::new_lazy_with_config(self.client.clone(), config)
                })
                .await?
                .clone();
            let mut invocation = script.prepare_invoke();
            for key in keys {
                invocation.key(*key);
            }
            for arg in args {
                invocation.arg(arg);
            }
            invocation.invoke_async::<Vec<i64>>(&mut connection).await
        };
        let failure = match tokio::time::timeout(self.timeout, work).await {
            Ok(Ok(answer)) => return Ok(answer),
            Ok(Err(e)) => StoreError::Failed(e),
            Err(_) => StoreError::TimedOut(self.timeout),
        };
        self.failed_now(&failure);
        Err(failure)
    }

    /// Counts a failure, and logs it unless one was logged lately.
    fn failed_now(&self, failure: &StoreError) {
        metrics::get().limit_store_errors.inc();
        let mut last = self.last_warned.lock().expect("last warned");
        if last.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
            *last = Some(Instant::now());
            tracing::warn!(
                fail_open = self.fail_open,
                "the shared limit store (Redis) failed: {failure}"
            );
        }
    }

    /// Gives a place under a tenant's cap back (best effort: an unreturned
    /// place frees itself when its lease ends).
    async fn give_back(&self, key: &str, member: &str) {
        let work = async {
            let mut connection = self.connection.get()?.clone();
            redis::cmd("ZREM")
                .arg(key)
                .arg(member)
                .query_async::<i64>(&mut connection)
                .await
                .ok()
        };
        let _ = tokio::time::timeout(self.timeout, work).await;
    }

    /// [`Self::give_back`], on a task of its own (from a `Drop`).
    fn release(self: &Arc<Self>, key: String, member: String) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let store = self.clone();
        handle.spawn(async move { store.give_back(&key, &member).await });
    }

    /// Takes the lease `name` for `holder`, for `length`, unless another
    /// holder has it: whether it got it; `None` when the store cannot say.
    pub async fn try_lease(&self, name: &str, holder: &str, length: Duration) -> Option<bool> {
        let millis = length.as_millis().to_string();
        let got = self
            .run(&self.lease, &[name], &[holder.to_string(), millis])
            .await
            .ok()?;
        Some(got == [1])
    }

    /// Ends the lease `name` if `holder` still has it, on a task of its
    /// own (from a `Drop`); best effort, since the lease also runs out.
    pub fn end_lease(self: &Arc<Self>, name: String, holder: String) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let store = self.clone();
        handle.spawn(async move {
            let _ = store.run(&store.end_lease, &[&name], &[holder]).await;
        });
    }

    /// What a call gets when the store cannot decide: refused, or admitted
    /// without shared limits.
    fn failed(&self, failure: &StoreError) -> Result<Option<Slot>, Limited> {
        if self.fail_open {
            return Ok(None);
        }
        Err(Limited {
            retry_after: BUSY_RETRY,
            unavailable: true,
            reason: format!(
                "the shared limit store cannot be reached ({failure}), so calls are refused until it can"
            ),
        })
    }
}

/// Takes a lease (KEYS[1]) for ARGV[1] for ARGV[2] ms unless held.
const LEASE_TAKE: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {1} end
return {0}
";

/// Ends a lease (KEYS[1]) only if ARGV[1] still holds it.
const LEASE_END: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return {redis.call('DEL', KEYS[1])} end
return {0}
";

/// A key of bounded length for `parts` (a caller's name can be long).
fn key(kind: &str, parts: &[&str]) -> String {
    let mut digest = Sha256::new();
    for part in parts {
        digest.update((part.len() as u64).to_be_bytes());
        digest.update(part.as_bytes());
    }
    format!("moat:{kind}:{}", hex::encode(&digest.finalize()[..20]))
}

/// Microseconds between calls at `per_minute` calls a minute.
fn interval_us(per_minute: u32) -> u64 {
    60_000_000 / u64::from(per_minute.max(1))
}

/// One bucket's rate: µs between calls, burst, and calls per minute.
#[derive(Clone, Copy)]
struct Rate {
    interval_us: u64,
    burst: u32,
    per_minute: u32,
}

impl Rate {
    fn new(per_minute: u32, burst: u32) -> Rate {
        Rate {
            interval_us: interval_us(per_minute),
            burst: burst.max(1),
            per_minute,
        }
    }
}

/// One endpoint's rate limits and tenant cap, in the shared store.
pub struct SharedLimits {
    store: Arc<LimitStore>,
    endpoint: String,
    default: Option<Rate>,
    tools: HashMap<String, Rate>,
    tenant_cap: Option<u32>,
}

/// A place under a tenant's cap, renewed while held and given back when
/// dropped.
pub struct Slot {
    store: Arc<LimitStore>,
    key: String,
    member: String,
    renewal: tokio::task::JoinHandle<()>,
}

impl Slot {
    fn new(store: Arc<LimitStore>, key: String, member: String) -> Slot {
        let renewal = tokio::spawn({
            let (store, key, member) = (store.clone(), key.clone(), member.clone());
            async move {
                let args = [(LEASE.as_micros() as u64).to_string(), member];
                loop {
                    tokio::time::sleep(RENEW_EVERY).await;
                    // A failed renewal is tried again; the lease outlasts two.
                    if let Ok(answer) = store.run(&store.renew, &[&key], &args).await
                        && answer != [1]
                    {
                        // The store lost it (restarted, failed over, or
                        // unreachable for a whole lease): the cap no longer
                        // counts this call.
                        tracing::warn!(
                            "a place under a shared tenant cap expired while its call ran"
                        );
                        return;
                    }
                }
            }
        });
        Slot {
            store,
            key,
            member,
            renewal,
        }
    }
}

impl Slot {
    /// Gives the place back and waits until the store has it, so that
    /// the caller's next call, sent as soon as this one is answered, finds
    /// it free on any replica.
    pub async fn release(mut self) {
        self.renewal.abort();
        let (key, member) = (
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.member),
        );
        self.store.give_back(&key, &member).await;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.renewal.abort();
        // Given back already by `release`.
        if self.key.is_empty() {
            return;
        }
        self.store.release(
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.member),
        );
    }
}

impl SharedLimits {
    /// The limits `config` sets for `endpoint`, kept in `store`.
    pub fn new(store: Arc<LimitStore>, endpoint: &str, config: &QuotaConfig) -> SharedLimits {
        SharedLimits {
            store,
            endpoint: endpoint.to_string(),
            default: config
                .calls_per_minute
                .map(|per_minute| Rate::new(per_minute, config.burst)),
            tools: config
                .tools
                .iter()
                .map(|(tool, q)| (tool.clone(), Rate::new(q.calls_per_minute, q.burst)))
                .collect(),
            tenant_cap: config.max_concurrent_per_tenant,
        }
    }

    /// Admits a call of `tool` by `caller` (a place under the tenant's cap
    /// and one call from the bucket, both or neither), or says why not.
    /// `rate: false` takes the place alone.
    pub async fn admit(
        &self,
        caller: &str,
        tool: &str,
        rate: bool,
    ) -> Result<Option<Slot>, Limited> {
        let (bucket, scope) = match self.tools.get(tool) {
            Some(rate) => (Some(*rate), tool),
            None => (self.default, "*"),
        };
        let bucket = bucket.filter(|_| rate);
        if bucket.is_none() && self.tenant_cap.is_none() {
            return Ok(None);
        }
        let bucket_key = key("rate", &[&self.endpoint, scope, caller]);
        let cap_key = key("tenant", &[&self.endpoint]);
        // A lease's name, needed only where there is a cap to hold.
        let member = match self.tenant_cap {
            Some(_) => uuid::Uuid::new_v4().to_string(),
            None => String::new(),
        };
        let args = [
            bucket.map_or(0, |b| b.interval_us).to_string(),
            bucket.map_or(1, |b| b.burst).to_string(),
            self.tenant_cap.unwrap_or(0).to_string(),
            (LEASE.as_micros() as u64).to_string(),
            member.clone(),
        ];
        let answer = match self
            .store
            .run(&self.store.admit, &[&bucket_key, &cap_key], &args)
            .await
        {
            Ok(answer) => answer,
            Err(failure) => {
                if self.tenant_cap.is_some() {
                    // A script that timed out here may still run there and
                    // take a place nobody holds: give it back after it.
                    self.store.release(cap_key, member);
                }
                return self.store.failed(&failure);
            }
        };
        match answer.as_slice() {
            [0] => Ok(self
                .tenant_cap
                .map(|_| Slot::new(self.store.clone(), cap_key, member))),
            [1] => Err(Limited {
                retry_after: BUSY_RETRY,
                unavailable: false,
                reason: "too many calls running for this tenant".into(),
            }),
            [2, wait] => {
                let per_minute = bucket.map_or(0, |b| b.per_minute);
                let scope = if scope == "*" { "all tools" } else { tool };
                Err(Limited {
                    retry_after: Duration::from_micros((*wait).max(0) as u64),
                    unavailable: false,
                    reason: format!(
                        "rate limit of {per_minute} calls per minute for {scope} reached"
                    ),
                })
            }
            other => {
                let failure = StoreError::Unexpected(other.to_vec());
                self.store.failed_now(&failure);
                self.store.failed(&failure)
            }
        }
    }
}

/// The tokenless-request throttle in the shared store, this replica's own
/// when the store fails.
pub struct SharedThrottle {
    store: Arc<LimitStore>,
    local: RefusalThrottle,
}

impl SharedThrottle {
    /// Shares `local`'s bounds through `store`.
    pub fn new(store: Arc<LimitStore>, local: RefusalThrottle) -> SharedThrottle {
        SharedThrottle { store, local }
    }

    /// Takes one request at `endpoint` from `peer` into account.
    pub async fn check(&self, endpoint: &str, peer: IpAddr) -> Throttled {
        let source = self.local.source_of(peer);
        let source_text = source.to_string();
        let keys = [
            key("refusals", &[endpoint, &source_text]),
            key("refusals-total", &[endpoint]),
            key("refusals-noted", &[endpoint, &source_text]),
            key("refusals-total-noted", &[endpoint]),
        ];
        let (per_source, total) = self.local.bounds();
        let args = [
            interval_us(per_source).to_string(),
            per_source.to_string(),
            interval_us(total).to_string(),
            total.to_string(),
        ];
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        match self.store.run(&self.store.throttle, &keys, &args).await {
            Ok(answer) => match answer.as_slice() {
                [0] => Throttled::No,
                [1, first] => {
                    Throttled::Unrecorded((*first == 1).then(|| self.local.ceiling_reason()))
                }
                [2, wait, record] => Throttled::Limited {
                    limited: self
                        .local
                        .limited(source, Duration::from_micros((*wait).max(0) as u64)),
                    record: *record == 1,
                },
                _ => self.local.check(endpoint, peer),
            },
            Err(_) => self.local.check(endpoint, peer),
        }
    }
}
