//! Rate limits and concurrency caps.
//!
//! A caller (the token's subject, else its client, else the peer address,
//! else `stdio`) gets a token bucket per minute, with per-tool buckets
//! replacing the caller-wide one for the tools named in `[limits.tools]`.
//! Each tenant runs at most `max_concurrent_per_tenant` calls at once, and
//! the process at most `max_in_flight`. Buckets live in this process
//! behind [`RateLimiter`], which a shared store (such as Redis, for several
//! replicas) can implement instead.

use crate::config::{QuotaConfig, ToolQuota};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Why a call may not run now, and when to try again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    /// When a retry may succeed.
    pub retry_after: Duration,
    /// Which limit was hit.
    pub reason: String,
}

/// Decides whether `caller` may call `tool` now. Implemented here in
/// memory; a shared store implements the same to limit across replicas.
pub trait RateLimiter: Send + Sync {
    /// Takes one call from the caller's bucket for `tool`, or says when.
    fn check<'a>(
        &'a self,
        caller: &'a str,
        tool: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<(), Limited>> + Send + 'a>>;
}

/// Keys kept per bucket before idle callers are forgotten.
const MAX_KEYS: usize = 100_000;

/// Token buckets in this process's memory (the governor crate: GCRA).
pub struct LocalLimiter {
    default: Option<(DefaultKeyedRateLimiter<String>, u32)>,
    tools: HashMap<String, (DefaultKeyedRateLimiter<String>, u32)>,
}

fn bucket(per_minute: u32, burst: u32) -> (DefaultKeyedRateLimiter<String>, u32) {
    let per_minute = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    (
        governor::RateLimiter::keyed(Quota::per_minute(per_minute).allow_burst(burst)),
        per_minute.get(),
    )
}

impl LocalLimiter {
    /// Buckets as `config` sets them.
    pub fn new(config: &QuotaConfig) -> Self {
        LocalLimiter {
            default: config
                .calls_per_minute
                .map(|per_minute| bucket(per_minute, config.burst)),
            tools: config
                .tools
                .iter()
                .map(
                    |(
                        tool,
                        ToolQuota {
                            calls_per_minute,
                            burst,
                        },
                    )| { (tool.clone(), bucket(*calls_per_minute, *burst)) },
                )
                .collect(),
        }
    }
}

impl RateLimiter for LocalLimiter {
    fn check<'a>(
        &'a self,
        caller: &'a str,
        tool: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<(), Limited>> + Send + 'a>> {
        let (limiter, per_minute, scope) = match self.tools.get(tool) {
            Some((l, n)) => (l, *n, tool),
            None => match &self.default {
                Some((l, n)) => (l, *n, "all tools"),
                None => return Box::pin(std::future::ready(Ok(()))),
            },
        };
        if limiter.len() > MAX_KEYS {
            limiter.retain_recent();
        }
        let key = caller.to_string();
        let result = limiter.check_key(&key).map_err(|not_until| Limited {
            retry_after: not_until.wait_time_from(DefaultClock::default().now()),
            reason: format!("rate limit of {per_minute} calls per minute for {scope} reached"),
        });
        Box::pin(std::future::ready(result))
    }
}

/// Bounds how many requests without a valid token one peer address gets
/// answered with a 401 (and an audit record) per minute. Past the bound,
/// each peer gets one `throttled` record a minute and plain 429s.
pub struct RefusalThrottle {
    bucket: governor::DefaultKeyedRateLimiter<IpAddr>,
    per_minute: u32,
    /// When each throttled peer was last recorded.
    recorded: Mutex<HashMap<IpAddr, Instant>>,
}

/// What to do with one more refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Throttled {
    /// Answer and record it as usual.
    No,
    /// Answer 429; record that the peer is throttled (once a minute).
    First(Limited),
    /// Answer 429 without a record.
    Again(Limited),
}

impl RefusalThrottle {
    /// A throttle of `per_minute` refusals per peer (all at once allowed).
    pub fn new(per_minute: u32) -> Self {
        let (bucket, per_minute) = {
            let n = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
            (
                governor::RateLimiter::keyed(Quota::per_minute(n).allow_burst(n)),
                n.get(),
            )
        };
        RefusalThrottle {
            bucket,
            per_minute,
            recorded: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one refusal from `peer`'s bucket.
    pub fn check(&self, peer: IpAddr) -> Throttled {
        if self.bucket.len() > MAX_KEYS {
            self.bucket.retain_recent();
        }
        let Err(not_until) = self.bucket.check_key(&peer) else {
            return Throttled::No;
        };
        let limited = Limited {
            retry_after: not_until.wait_time_from(DefaultClock::default().now()),
            reason: format!(
                "more than {} requests without a valid token per minute from {peer}",
                self.per_minute
            ),
        };
        let mut recorded = self.recorded.lock().expect("throttle records");
        if recorded.len() > MAX_KEYS {
            recorded.retain(|_, at| at.elapsed() < Duration::from_secs(60));
        }
        let now = Instant::now();
        match recorded.get(&peer) {
            Some(at) if now.duration_since(*at) < Duration::from_secs(60) => {
                Throttled::Again(limited)
            }
            _ => {
                recorded.insert(peer, now);
                Throttled::First(limited)
            }
        }
    }
}

/// The limits one endpoint's calls pass through.
#[derive(Clone)]
pub struct Gate {
    limiter: Arc<dyn RateLimiter>,
    /// Calls running in the process (shared by every endpoint).
    in_flight: Option<Arc<Semaphore>>,
    /// Calls running for this endpoint's tenant.
    tenant: Option<Arc<Semaphore>>,
}

/// Held while an admitted call runs.
pub struct Admitted {
    _in_flight: Option<OwnedSemaphorePermit>,
    _tenant: Option<OwnedSemaphorePermit>,
}

/// A retry hint for concurrency limits: calls usually end within it.
const BUSY_RETRY: Duration = Duration::from_secs(1);

impl Gate {
    /// A gate over `limiter` and the process-wide cap `in_flight`, with a
    /// tenant cap of `per_tenant` calls.
    pub fn new(
        limiter: Arc<dyn RateLimiter>,
        in_flight: Option<Arc<Semaphore>>,
        per_tenant: Option<u32>,
    ) -> Gate {
        Gate {
            limiter,
            in_flight,
            tenant: per_tenant.map(|n| Arc::new(Semaphore::new(n as usize))),
        }
    }

    /// Admits a call of `tool` by `caller`, or says why not.
    pub async fn admit(&self, caller: &str, tool: &str) -> Result<Admitted, Limited> {
        let busy = |what: &str| Limited {
            retry_after: BUSY_RETRY,
            reason: format!("too many calls running {what}"),
        };
        let in_flight = match &self.in_flight {
            Some(s) => Some(
                s.clone()
                    .try_acquire_owned()
                    .map_err(|_| busy("on this server"))?,
            ),
            None => None,
        };
        let tenant = match &self.tenant {
            Some(s) => Some(
                s.clone()
                    .try_acquire_owned()
                    .map_err(|_| busy("for this tenant"))?,
            ),
            None => None,
        };
        self.limiter.check(caller, tool).await?;
        Ok(Admitted {
            _in_flight: in_flight,
            _tenant: tenant,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn buckets_refill_at_the_configured_rate_per_caller_and_tool() {
        let config = QuotaConfig {
            calls_per_minute: Some(60),
            burst: 2,
            tools: [(
                "files.search".to_string(),
                ToolQuota {
                    calls_per_minute: 6,
                    burst: 1,
                },
            )]
            .into(),
            ..QuotaConfig::default()
        };
        let limiter = LocalLimiter::new(&config);
        assert_eq!(limiter.check("alice", "hello.greet").await, Ok(()));
        assert_eq!(limiter.check("alice", "hello.greet").await, Ok(()));
        let limited = limiter.check("alice", "hello.greet").await.unwrap_err();
        assert!(limited.retry_after <= Duration::from_secs(1), "{limited:?}");
        assert!(
            limited.reason.contains("60 calls per minute"),
            "{limited:?}"
        );
        // Another caller has a bucket of its own; a tool with its own rate
        // does not draw on the caller-wide bucket.
        assert_eq!(limiter.check("bob", "hello.greet").await, Ok(()));
        assert_eq!(limiter.check("alice", "files.search").await, Ok(()));
        let limited = limiter.check("alice", "files.search").await.unwrap_err();
        assert!(limited.retry_after > Duration::from_secs(5), "{limited:?}");
    }

    #[tokio::test]
    async fn concurrency_caps_refuse_at_once_and_free_on_drop() {
        let limiter: Arc<dyn RateLimiter> = Arc::new(LocalLimiter::new(&QuotaConfig::default()));
        let gate = Gate::new(limiter, Some(Arc::new(Semaphore::new(3))), Some(1));
        let first = gate.admit("a", "t").await.unwrap();
        let busy = gate.admit("b", "t").await.err().unwrap();
        assert!(busy.reason.contains("for this tenant"), "{busy:?}");
        drop(first);
        assert!(gate.admit("b", "t").await.is_ok());
    }
}
