//! Limits kept in this process's memory: each endpoint's token buckets
//! (the governor crate: GCRA) and the throttle of requests without a
//! valid token.

use super::{Limited, Throttled};
use crate::config::{QuotaConfig, ToolQuota};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

impl LocalLimiter {
    /// Takes one call from the caller's bucket for `tool`, or says when.
    pub fn check(&self, caller: &str, tool: &str) -> Result<(), Limited> {
        let (limiter, per_minute, scope) = match self.tools.get(tool) {
            Some((l, n)) => (l, *n, tool),
            None => match &self.default {
                Some((l, n)) => (l, *n, "all tools"),
                None => return Ok(()),
            },
        };
        if limiter.len() > MAX_KEYS {
            limiter.retain_recent();
        }
        let key = caller.to_string();
        limiter.check_key(&key).map_err(|not_until| Limited {
            retry_after: not_until.wait_time_from(DefaultClock::default().now()),
            unavailable: false,
            reason: format!("rate limit of {per_minute} calls per minute for {scope} reached"),
        })
    }
}

/// Bounds what requests without a valid token can cost: each source (an
/// IPv4 address, or an IPv6 prefix, a /64 by default: one host usually
/// holds a whole /64) gets `per_minute` answers of 401 a minute, then
/// 429s; and each endpoint writes at most `total_per_minute` records of
/// such requests a minute, from all sources together, so that however many
/// addresses a flood comes from, it cannot fill the audit log. Past the
/// ceiling requests still get their 401 (clients learn where tokens come
/// from), without a record; one record a minute says so.
pub struct RefusalThrottle {
    /// Per source (endpoint, address or prefix).
    bucket: governor::DefaultKeyedRateLimiter<(String, IpAddr)>,
    /// Records per endpoint, all sources together.
    ceiling: governor::DefaultKeyedRateLimiter<String>,
    per_minute: u32,
    total_per_minute: u32,
    ipv6_prefix: u8,
    /// When each throttled source, and each endpoint past its ceiling,
    /// was last recorded.
    recorded: Mutex<HashMap<(String, Option<IpAddr>), Instant>>,
}

/// The source a peer address counts as: IPv4 addresses (and IPv4-mapped
/// IPv6 ones) alone, IPv6 addresses by their first `prefix` bits.
pub fn source(peer: IpAddr, prefix: u8) -> IpAddr {
    match peer {
        IpAddr::V4(_) => peer,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6);
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V6((bits & mask).into())
            }
        },
    }
}

fn keyed<K: Clone + Eq + std::hash::Hash>(per_minute: u32) -> governor::DefaultKeyedRateLimiter<K> {
    let n = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
    governor::RateLimiter::keyed(Quota::per_minute(n).allow_burst(n))
}

impl RefusalThrottle {
    /// A throttle of `per_minute` refusals per source and
    /// `total_per_minute` records per endpoint (each may come all at
    /// once), with IPv6 sources grouped by `ipv6_prefix` bits.
    pub fn new(per_minute: u32, total_per_minute: u32, ipv6_prefix: u8) -> Self {
        RefusalThrottle {
            bucket: keyed(per_minute),
            ceiling: keyed(total_per_minute),
            per_minute,
            total_per_minute,
            ipv6_prefix,
            recorded: Mutex::new(HashMap::new()),
        }
    }

    /// The source `peer` counts as.
    pub fn source_of(&self, peer: IpAddr) -> IpAddr {
        source(peer, self.ipv6_prefix)
    }

    /// Refusals per minute per source, and records per minute per endpoint.
    pub fn bounds(&self) -> (u32, u32) {
        (self.per_minute, self.total_per_minute)
    }

    /// Why an endpoint's requests go unrecorded for now.
    pub fn ceiling_reason(&self) -> String {
        format!(
            "more than {} requests without a valid token per minute at this endpoint; \
             answering them without records for now",
            self.total_per_minute
        )
    }

    /// The answer for `source`, past its bound for `retry_after`.
    pub fn limited(&self, source: IpAddr, retry_after: Duration) -> Limited {
        let shown = match source {
            IpAddr::V6(_) if self.ipv6_prefix < 128 => format!("{source}/{}", self.ipv6_prefix),
            _ => source.to_string(),
        };
        Limited {
            retry_after,
            unavailable: false,
            reason: format!(
                "more than {} requests without a valid token per minute from {shown}",
                self.per_minute
            ),
        }
    }

    /// Takes one request at `endpoint` from `peer` into account.
    pub fn check(&self, endpoint: &str, peer: IpAddr) -> Throttled {
        if self.bucket.len() > MAX_KEYS {
            self.bucket.retain_recent();
        }
        let source = self.source_of(peer);
        let key = (endpoint.to_string(), source);
        match self.bucket.check_key(&key) {
            Ok(()) if self.ceiling.check_key(&key.0).is_ok() => Throttled::No,
            Ok(()) => Throttled::Unrecorded(
                self.first_in_a_minute((key.0, None))
                    .then(|| self.ceiling_reason()),
            ),
            Err(not_until) => {
                let limited = self.limited(
                    source,
                    not_until.wait_time_from(DefaultClock::default().now()),
                );
                let noted = (key.0, Some(source));
                let record = !self.recorded_lately(&noted)
                    && self.ceiling.check_key(&noted.0).is_ok()
                    && self.first_in_a_minute(noted);
                Throttled::Limited { limited, record }
            }
        }
    }

    /// Whether `key` was recorded within the last minute.
    fn recorded_lately(&self, key: &(String, Option<IpAddr>)) -> bool {
        let recorded = self.recorded.lock().expect("throttle records");
        recorded
            .get(key)
            .is_some_and(|at| at.elapsed() < Duration::from_secs(60))
    }

    /// Whether `key` was not recorded within the last minute; if so, it is
    /// now.
    fn first_in_a_minute(&self, key: (String, Option<IpAddr>)) -> bool {
        let mut recorded = self.recorded.lock().expect("throttle records");
        if recorded.len() > MAX_KEYS {
            recorded.retain(|_, at| at.elapsed() < Duration::from_secs(60));
        }
        let now = Instant::now();
        match recorded.get(&key) {
            Some(at) if now.duration_since(*at) < Duration::from_secs(60) => false,
            _ => {
                recorded.insert(key, now);
                true
            }
        }
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
        assert_eq!(limiter.check("alice", "hello.greet"), Ok(()));
        assert_eq!(limiter.check("alice", "hello.greet"), Ok(()));
        let limited = limiter.check("alice", "hello.greet").unwrap_err();
        assert!(limited.retry_after <= Duration::from_secs(1), "{limited:?}");
        assert!(
            limited.reason.contains("60 calls per minute"),
            "{limited:?}"
        );
        // Another caller has a bucket of its own; a tool with its own rate
        // does not draw on the caller-wide bucket.
        assert_eq!(limiter.check("bob", "hello.greet"), Ok(()));
        assert_eq!(limiter.check("alice", "files.search"), Ok(()));
        let limited = limiter.check("alice", "files.search").unwrap_err();
        assert!(limited.retry_after > Duration::from_secs(5), "{limited:?}");
    }

    #[test]
    fn ipv6_peers_count_by_prefix_and_ipv4_by_address() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let cases = [
            ("203.0.113.7", 64, "203.0.113.7"),
            ("::ffff:203.0.113.7", 64, "203.0.113.7"),
            ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", 64, "2001:db8:1:2::"),
            ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", 48, "2001:db8:1::"),
            (
                "2001:db8:1:2:aaaa:bbbb:cccc:dddd",
                128,
                "2001:db8:1:2:aaaa:bbbb:cccc:dddd",
            ),
            ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", 0, "::"),
        ];
        for (peer, prefix, expected) in cases {
            assert_eq!(source(ip(peer), prefix), ip(expected), "{peer}/{prefix}");
        }
    }

    #[test]
    fn many_addresses_of_one_prefix_share_a_bucket_and_an_endpoint_has_a_ceiling() {
        let throttle = RefusalThrottle::new(3, 5, 64);
        let host = |i: u16| IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, i]);
        for i in 1..=3 {
            assert_eq!(throttle.check("top", host(i)), Throttled::No);
        }
        // The fourth address of the same /64 is throttled, recorded once.
        assert!(matches!(
            throttle.check("top", host(4)),
            Throttled::Limited { limited, record: true } if limited.reason.contains("2001:db8:0:1::/64")
        ));
        assert!(matches!(
            throttle.check("top", host(9)),
            Throttled::Limited { record: false, .. }
        ));
        // Another endpoint counts apart. At this one, the throttled record
        // took the fourth of five records; one more, then the ceiling:
        // 401s without records, said once.
        assert_eq!(throttle.check("tenant:b", host(1)), Throttled::No);
        let v4 = |i: u8| IpAddr::from([198, 51, 100, i]);
        assert_eq!(throttle.check("top", v4(1)), Throttled::No);
        assert!(matches!(
            throttle.check("top", v4(2)),
            Throttled::Unrecorded(Some(reason)) if reason.contains("at this endpoint")
        ));
        assert_eq!(throttle.check("top", v4(3)), Throttled::Unrecorded(None));
        // A source throttled past the ceiling is not recorded either.
        for _ in 0..3 {
            throttle.check("top", v4(4));
        }
        assert!(matches!(
            throttle.check("top", v4(4)),
            Throttled::Limited { record: false, .. }
        ));
    }
}
