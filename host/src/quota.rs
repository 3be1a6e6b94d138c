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
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
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
