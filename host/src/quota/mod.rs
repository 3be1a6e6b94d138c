//! Rate limits and concurrency caps.
//!
//! A caller (the token's subject, else its client, else the peer address,
//! else `stdio`) gets a token bucket per minute, with per-tool buckets
//! replacing the caller-wide one for the tools named in `[limits.tools]`.
//! Each tenant runs at most `max_concurrent_per_tenant` calls at once, and
//! the process at most `max_in_flight`. Buckets and the tenant cap live
//! in this process, or in Redis shared by every replica (see [`shared`]).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

mod local;
mod scripts;
pub mod shared;
pub use local::{LocalLimiter, RefusalThrottle, source};
use shared::{SharedLimits, SharedThrottle, Slot};

/// Why a call may not run now, and when to try again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    /// When a retry may succeed.
    pub retry_after: Duration,
    /// Which limit was hit.
    pub reason: String,
    /// No limit was hit: the shared store that keeps them cannot be
    /// reached, and calls fail closed.
    pub unavailable: bool,
}

/// Where an endpoint's buckets (and, shared, its tenant cap) live.
pub enum Limiter {
    /// In this process.
    Local(LocalLimiter),
    /// In the store every replica shares.
    Shared(SharedLimits),
}

/// What to do with one more request without a valid token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Throttled {
    /// Answer 401 and record it.
    No,
    /// The endpoint's ceiling of records is reached: answer 401 without a
    /// record; the reason, to record, once a minute per endpoint.
    Unrecorded(Option<String>),
    /// The source is past its bound: answer 429, and record that it is
    /// throttled when `record` (once a minute, within the ceiling).
    Limited {
        /// When to retry, and why.
        limited: Limited,
        /// Whether to write the `throttled` record.
        record: bool,
    },
}

/// The tokenless-request throttle of a process: its own, or shared.
pub enum Throttle {
    /// In this process.
    Local(RefusalThrottle),
    /// In the store every replica shares.
    Shared(SharedThrottle),
}

impl Throttle {
    /// Takes one request at `endpoint` from `peer` into account.
    pub async fn check(&self, endpoint: &str, peer: IpAddr) -> Throttled {
        match self {
            Throttle::Local(local) => local.check(endpoint, peer),
            Throttle::Shared(shared) => shared.check(endpoint, peer).await,
        }
    }
}

/// The limits one endpoint's calls pass through.
#[derive(Clone)]
pub struct Gate {
    limiter: Arc<Limiter>,
    /// Calls running in the process (shared by every endpoint).
    in_flight: Option<Arc<Semaphore>>,
    /// Calls running for this endpoint's tenant.
    tenant: Option<Arc<Semaphore>>,
}

/// Held while an admitted call runs.
pub struct Admitted {
    _in_flight: Option<OwnedSemaphorePermit>,
    _tenant: Option<OwnedSemaphorePermit>,
    /// The place under a tenant's cap shared by every replica.
    shared: Option<Slot>,
}

impl Admitted {
    /// Gives the places back, waiting until a place shared by every
    /// replica is back in the store (dropping gives it back in the
    /// background, after the answer may have reached the caller).
    pub async fn release(mut self) {
        if let Some(slot) = self.shared.take() {
            slot.release().await;
        }
    }
}

/// A retry hint for concurrency limits: calls usually end within it.
const BUSY_RETRY: Duration = Duration::from_secs(1);
/// How often a call waiting for a place under a shared cap asks again.
const SHARED_POLL: Duration = Duration::from_millis(100);

impl Gate {
    /// A gate over `limiter` and the process-wide cap `in_flight`, with a
    /// tenant cap of `per_tenant` calls in this process.
    pub fn new(
        limiter: Arc<Limiter>,
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
        let local = self.occupy()?;
        let shared = match &*self.limiter {
            Limiter::Local(limiter) => {
                limiter.check(caller, tool)?;
                None
            }
            Limiter::Shared(shared) => shared.admit(caller, tool, true).await?,
        };
        Ok(Admitted { shared, ..local })
    }

    /// A place under the concurrency caps (no rate is counted), waited for
    /// up to `patience`: for a call admitted before, which gave its place
    /// up while a person was asked.
    pub async fn occupy_within(&self, patience: Duration) -> Result<Admitted, Limited> {
        let take = |semaphore: &Option<Arc<Semaphore>>| {
            let semaphore = semaphore.clone();
            async move {
                match semaphore {
                    Some(s) => s.acquire_owned().await.ok(),
                    None => None,
                }
            }
        };
        let shared = || async {
            let Limiter::Shared(shared) = &*self.limiter else {
                return Ok(None);
            };
            // Asked again until a place frees (or the store answers
            // again) or patience ends.
            loop {
                if let Ok(slot) = shared.admit("", "", false).await {
                    return Ok::<_, Limited>(slot);
                }
                tokio::time::sleep(SHARED_POLL).await;
            }
        };
        let all = async {
            let in_flight = take(&self.in_flight).await;
            let tenant = take(&self.tenant).await;
            Ok::<_, Limited>(Admitted {
                _in_flight: in_flight,
                _tenant: tenant,
                shared: shared().await?,
            })
        };
        match tokio::time::timeout(patience, all).await {
            Ok(admitted) => admitted,
            Err(_) => Err(Limited {
                retry_after: BUSY_RETRY,
                unavailable: false,
                reason: format!(
                    "too many calls running: no place within {} s",
                    patience.as_secs()
                ),
            }),
        }
    }

    /// A place under the concurrency caps (no rate is counted), now.
    fn occupy(&self) -> Result<Admitted, Limited> {
        let busy = |what: &str| Limited {
            retry_after: BUSY_RETRY,
            unavailable: false,
            reason: format!("too many calls running {what}"),
        };
        let take = |semaphore: &Option<Arc<Semaphore>>, what: &str| {
            semaphore
                .as_ref()
                .map(|s| s.clone().try_acquire_owned().map_err(|_| busy(what)))
                .transpose()
        };
        Ok(Admitted {
            _in_flight: take(&self.in_flight, "on this server")?,
            _tenant: take(&self.tenant, "for this tenant")?,
            shared: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::QuotaConfig;

    #[tokio::test]
    async fn concurrency_caps_refuse_at_once_and_free_on_drop() {
        let limiter = Arc::new(Limiter::Local(LocalLimiter::new(&QuotaConfig::default())));
        let gate = Gate::new(limiter, Some(Arc::new(Semaphore::new(3))), Some(1));
        let first = gate.admit("a", "t").await.unwrap();
        let busy = gate.admit("b", "t").await.err().unwrap();
        assert!(busy.reason.contains("for this tenant"), "{busy:?}");
        drop(first);
        assert!(gate.admit("b", "t").await.is_ok());
    }
}
