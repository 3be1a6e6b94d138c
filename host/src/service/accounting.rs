//! What every call and refusal leaves behind: an audit record (written
//! before the response goes out), metrics, and a log line.

use super::Refusal;
use crate::audit::{AuditError, AuditLog, Record, redact};
use crate::auth::policy::Caller;
use crate::config::{Config, QuotaConfig};
use crate::confirm::{ConfirmSettings, Confirmations};
use crate::metrics::{self, CallLabels, LoadLabels};
use crate::quota::shared::{LimitStore, SharedLimits, SharedThrottle};
use crate::quota::{Gate, Limited, Limiter, LocalLimiter, RefusalThrottle, Throttle, Throttled};
use crate::runtime::printable;
use crate::runtime::{CallReport, Plugin};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

/// The audit log and the limits, shared by every endpoint of a process.
#[derive(Clone)]
pub struct Operations {
    audit: Option<Arc<AuditLog>>,
    /// Calls running in the process, across every endpoint.
    in_flight: Option<Arc<Semaphore>>,
    /// Bits of an IPv6 peer address that name its source.
    ipv6_prefix: u8,
    refusals: Option<Arc<Throttle>>,
    /// Where replicas share limits; `None`: in this process.
    store: Option<Arc<LimitStore>>,
    /// The sealed state of confirmations asked across round trips.
    confirmations: Arc<Confirmations>,
    /// Questions waiting for a person, per caller.
    waiting: Arc<Mutex<HashMap<String, u32>>>,
    /// Calls waiting for their caller to connect an account, per caller:
    /// counted apart, so that they never take confirmations' places.
    connecting: Arc<Mutex<HashMap<String, u32>>>,
    /// The pages where callers connect accounts, with `[credentials]`.
    pub connect: Option<Arc<crate::credentials::connect::Connect>>,
}

/// Questions one caller may have waiting for a person at once: each holds
/// a request open (and a session's stream) until it is answered.
const MAX_WAITING_PER_CALLER: u32 = 8;
/// Questions waiting in the whole process, whoever asked them.
const MAX_WAITING: usize = 1024;

/// A question waiting for a person, counted against its caller until
/// dropped.
pub struct Waiting {
    waiting: Arc<Mutex<HashMap<String, u32>>>,
    caller: String,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let mut waiting = self.waiting.lock().expect("waiting");
        if let Some(n) = waiting.get_mut(&self.caller) {
            *n -= 1;
            if *n == 0 {
                waiting.remove(&self.caller);
            }
        }
    }
}

impl Default for Operations {
    /// No audit log and no limits.
    fn default() -> Self {
        Operations {
            audit: None,
            in_flight: None,
            ipv6_prefix: 64,
            refusals: None,
            store: None,
            confirmations: Arc::new(
                Confirmations::new(&ConfirmSettings::default()).expect("a random key is valid"),
            ),
            waiting: Arc::default(),
            connecting: Arc::default(),
            connect: None,
        }
    }
}

impl Operations {
    /// Opens the audit log and builds the limits `config` asks for.
    pub fn for_config(config: &Config) -> anyhow::Result<Operations> {
        let limits = &config.limits;
        let in_flight = config.max_in_flight();
        let store = limits.backend.as_ref().map(LimitStore::new).transpose()?;
        if let (Some(store), Some(_)) = (&store, &config.credentials) {
            crate::credentials::store::share_refreshes(store.clone());
        }
        let local = RefusalThrottle::new(
            limits.refusals_per_minute,
            limits.refusals_per_minute_total,
            limits.ipv6_prefix,
        );
        let refusals = match &store {
            Some(store) => Throttle::Shared(SharedThrottle::new(store.clone(), local)),
            None => Throttle::Local(local),
        };
        let audit = match &config.audit {
            Some(audit) => Some(Arc::new(AuditLog::open(audit)?)),
            None => None,
        };
        Ok(Operations {
            connect: config.credentials.as_ref().map(|c| {
                crate::credentials::connect::Connect::new(
                    c,
                    config.connections.clone(),
                    audit.clone(),
                )
            }),
            audit,
            in_flight: Some(Arc::new(Semaphore::new(in_flight as usize))),
            ipv6_prefix: limits.ipv6_prefix,
            refusals: Some(Arc::new(refusals)),
            store,
            confirmations: Arc::new(Confirmations::new(&config.confirmation)?),
            waiting: Arc::default(),
            connecting: Arc::default(),
        })
    }

    /// A place for one more question of `caller` waiting for a person;
    /// `None` when it has [`MAX_WAITING_PER_CALLER`] already, or the
    /// process [`MAX_WAITING`].
    pub(super) fn wait(&self, caller: &str) -> Option<Waiting> {
        place(&self.waiting, caller)
    }

    /// A place for one more call of `caller` waiting for them to connect
    /// an account, bounded as [`Self::wait`] is, apart from it.
    pub(super) fn wait_to_connect(&self, caller: &str) -> Option<Waiting> {
        place(&self.connecting, caller)
    }

    /// The sealed state of confirmations asked across round trips.
    pub(super) fn confirmations(&self) -> &Confirmations {
        &self.confirmations
    }

    /// Writes a record of a confirmation asked or answered for the call
    /// whose record is `call`: its caller, tool and arguments' digest.
    pub(super) async fn confirmation(
        &self,
        call: Option<&Record>,
        kind: &str,
        reason: &str,
    ) -> Result<(), AuditError> {
        let (Some(audit), Some(call)) = (&self.audit, call) else {
            return Ok(());
        };
        let record = Record {
            outcome: "confirmation",
            kind: kind.to_string(),
            reason: Some(reason.to_string()),
            arguments: None,
            ..call.clone()
        }
        .renewed();
        audit.write(&record).await
    }

    /// The gate of `tenant`'s endpoint: buckets and a tenant cap of its
    /// own (so no caller of one endpoint draws on another's), shared with
    /// other replicas when a store is configured, and the process cap.
    pub(super) fn gate(&self, tenant: Option<&str>, limits: &QuotaConfig) -> Gate {
        match &self.store {
            Some(store) => Gate::new(
                Arc::new(Limiter::Shared(SharedLimits::new(
                    store.clone(),
                    &super::endpoint_key(tenant),
                    limits,
                ))),
                self.in_flight.clone(),
                // Never binding while the store answers (it counts the
                // same calls and more); a bound per replica when it does
                // not and calls are admitted anyway.
                limits.max_concurrent_per_tenant,
            ),
            None => Gate::new(
                Arc::new(Limiter::Local(LocalLimiter::new(limits))),
                self.in_flight.clone(),
                limits.max_concurrent_per_tenant,
            ),
        }
    }

    /// Bits of an IPv6 peer address that name its source.
    pub(super) fn ipv6_prefix(&self) -> u8 {
        self.ipv6_prefix
    }

    /// Records how loading went.
    pub(super) fn loaded(&self, tenant: Option<&str>, plugins: &[Plugin]) {
        for plugin in plugins {
            metrics::get()
                .load_seconds
                .get_or_create(&LoadLabels {
                    tenant: metrics::tenant_label(tenant).to_string(),
                    plugin: plugin.name.clone(),
                    cache: format!("{:?}", plugin.load.cache).to_lowercase(),
                })
                .set(plugin.load.compile.as_secs_f64());
        }
    }

    /// Refuses calls up front while the audit log is failing and calls
    /// fail closed.
    pub(super) fn check_audit(&self) -> Result<(), Refusal> {
        match &self.audit {
            Some(audit) if audit.fail_closed() && audit.failing() => Err(
                Refusal::AuditUnavailable("the audit log cannot be written".into()),
            ),
            _ => Ok(()),
        }
    }

    /// Whether calls can be served: not while the audit log fails and
    /// calls fail closed.
    pub(super) async fn ready(&self) -> Result<(), AuditError> {
        match &self.audit {
            Some(audit) => audit.ready().await,
            None => Ok(()),
        }
    }

    /// Ends the audit log's chain with a signed checkpoint (at shutdown,
    /// once every call has answered).
    pub async fn close(&self) {
        if let Some(audit) = &self.audit
            && let Err(e) = audit.close().await
        {
            tracing::error!("cannot write the closing audit checkpoint: {e}");
        }
    }

    /// Counts the call as running until the guard drops.
    pub(super) fn running(&self) -> Running {
        metrics::get().in_flight.inc();
        Running
    }

    /// The record of a call about to be checked, when there is an audit log.
    pub(super) fn begin(
        &self,
        tenant: Option<&str>,
        caller: Option<&Caller>,
        peer: Option<IpAddr>,
        tool: &str,
        arguments: &Map<String, Value>,
    ) -> Option<Record> {
        let audit = self.audit.as_ref()?;
        let mut record = record_for(tenant, caller, peer, Some(tool));
        let redacted = redact(arguments, audit.max_argument_bytes());
        record.args_sha256 = Some(redacted.sha256);
        record.arguments = Some(redacted.arguments);
        Some(record)
    }

    /// Completes, writes and counts the record of a call; with a failing
    /// audit log (failing closed) a result is withheld.
    pub(super) async fn finish<T: crate::tool::Reported>(
        &self,
        tenant: Option<&str>,
        plugin: Option<&str>,
        tool: &str,
        record: Option<Record>,
        result: Result<CallReport<T>, Refusal>,
    ) -> Result<CallReport<T>, Refusal> {
        let tenant_label = metrics::tenant_label(tenant);
        let (outcome, kind, reason) = match &result {
            Err(refusal) => {
                metrics::get().refused(tenant_label, refusal.kind());
                // Tool names and argument fields are the caller's text.
                tracing::warn!(
                    tenant,
                    tool,
                    kind = refusal.kind(),
                    "call refused: {}",
                    printable(&refusal.to_string())
                );
                ("refused", refusal.kind(), Some(refusal.to_string()))
            }
            Ok(report) => {
                let (outcome, kind, reason) = match &report.result {
                    Ok(output) if output.is_error() => ("error", "tool_error", None),
                    Ok(_) => ("ok", "ok", None),
                    Err(e) => ("error", e.kind(), Some(e.to_string())),
                };
                metrics::get().ran(
                    CallLabels {
                        tenant: tenant_label.to_string(),
                        plugin: plugin.unwrap_or_default().to_string(),
                        tool: tool.to_string(),
                        outcome: kind.to_string(),
                    },
                    report.stats.duration,
                    report.stats.fuel_used,
                    report.denied.len(),
                );
                tracing::debug!(
                    tenant,
                    tool,
                    outcome = kind,
                    micros = report.stats.duration.as_micros() as u64,
                    fuel = report.stats.fuel_used,
                    "call"
                );
                (outcome, kind, reason)
            }
        };
        let (Some(audit), Some(mut record)) = (&self.audit, record) else {
            return result;
        };
        record.outcome = outcome;
        record.kind = kind.to_string();
        record.reason = reason;
        if let Ok(report) = &result {
            let stats = &report.stats;
            record.duration_us = stats.duration.as_micros() as u64;
            record.fuel = stats.fuel_used;
            record.peak_memory_bytes = stats.peak_memory_bytes;
            record.output_bytes = stats.output_bytes;
            record.denied = report.denied.clone();
            record.asked = report.asked.clone();
            record.changed = report.changed.clone();
        }
        match audit.write(&record).await {
            Ok(()) => result,
            // A refusal stays a refusal; a result that cannot be audited is
            // not delivered.
            Err(e) => match result {
                Err(refusal) => Err(refusal),
                Ok(_) => {
                    metrics::get().refused(tenant_label, "audit_unavailable");
                    Err(Refusal::AuditUnavailable(e.to_string()))
                }
            },
        }
    }

    /// Completes, writes and counts the record of a request refused before
    /// it ran; returns the refusal.
    pub(super) async fn refuse(
        &self,
        tenant: Option<&str>,
        tool: &str,
        record: Option<Record>,
        refusal: Refusal,
    ) -> Refusal {
        self.finish::<crate::tool::ToolOutput>(tenant, None, tool, record, Err(refusal))
            .await
            .expect_err("a refusal stays a refusal")
    }

    /// Audits and counts a request from `peer` refused for want of a
    /// valid token, within the throttle's bounds (see [`RefusalThrottle`]):
    /// `Err` when the source is past its own and is to get a 429.
    pub(super) async fn unauthenticated(
        &self,
        tenant: Option<&str>,
        peer: Option<IpAddr>,
        reason: &str,
    ) -> Result<(), Limited> {
        let throttled = match (&self.refusals, peer) {
            (Some(throttle), Some(peer)) => {
                throttle.check(&super::endpoint_key(tenant), peer).await
            }
            _ => Throttled::No,
        };
        match throttled {
            Throttled::No => {
                // Refused anyway; a failing audit log changes nothing here.
                let _ = self
                    .refused(tenant, None, peer, None, "unauthenticated", reason)
                    .await;
                Ok(())
            }
            Throttled::Unrecorded(first) => {
                match first {
                    Some(reason) => {
                        let _ = self
                            .refused(tenant, None, peer, None, "throttled", &reason)
                            .await;
                    }
                    None => {
                        metrics::get().refused(metrics::tenant_label(tenant), "unauthenticated")
                    }
                }
                Ok(())
            }
            Throttled::Limited { limited, record } => {
                if record {
                    let _ = self
                        .refused(tenant, None, peer, None, "throttled", &limited.reason)
                        .await;
                } else {
                    metrics::get().refused(metrics::tenant_label(tenant), "throttled");
                }
                Err(limited)
            }
        }
    }

    /// Writes and counts a refusal made before any call.
    pub(super) async fn refused(
        &self,
        tenant: Option<&str>,
        caller: Option<&Caller>,
        peer: Option<IpAddr>,
        tool: Option<&str>,
        kind: &str,
        reason: &str,
    ) -> Result<(), AuditError> {
        metrics::get().refused(metrics::tenant_label(tenant), kind);
        let Some(audit) = &self.audit else {
            return Ok(());
        };
        let mut record = record_for(tenant, caller, peer, tool);
        record.outcome = "refused";
        record.kind = kind.to_string();
        record.reason = Some(reason.to_string());
        audit.write(&record).await
    }
}

/// A place for one more of `caller`'s in `waiting`; `None` when it has
/// [`MAX_WAITING_PER_CALLER`] already, or the process [`MAX_WAITING`].
fn place(waiting: &Arc<Mutex<HashMap<String, u32>>>, caller: &str) -> Option<Waiting> {
    let mut places = waiting.lock().expect("waiting");
    if places.values().sum::<u32>() as usize >= MAX_WAITING {
        return None;
    }
    let n = places.entry(caller.to_string()).or_default();
    if *n >= MAX_WAITING_PER_CALLER {
        return None;
    }
    *n += 1;
    Some(Waiting {
        waiting: waiting.clone(),
        caller: caller.to_string(),
    })
}

fn record_for(
    tenant: Option<&str>,
    caller: Option<&Caller>,
    peer: Option<IpAddr>,
    tool: Option<&str>,
) -> Record {
    let mut record = Record::new();
    record.tenant = tenant.map(str::to_string);
    record.peer = peer;
    record.tool = tool.map(str::to_string);
    if let Some(caller) = caller {
        record.subject = Some(caller.subject.clone());
        record.client_id = caller.client_id.clone();
        record.scopes = caller.scopes.iter().cloned().collect();
    }
    record
}

/// A call counted in the in-flight gauge.
pub(super) struct Running;

impl Drop for Running {
    fn drop(&mut self) {
        metrics::get().in_flight.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn questions_waiting_for_a_person_are_bounded_per_caller_and_given_back() {
        let ops = Operations::default();
        let held: Vec<Waiting> = (0..MAX_WAITING_PER_CALLER)
            .map(|_| ops.wait("mallory").unwrap())
            .collect();
        assert!(ops.wait("mallory").is_none());
        // Calls waiting to be connected have places of their own.
        let connecting = ops.wait_to_connect("mallory").unwrap();
        drop(connecting);
        // Another caller still has its own places.
        let alice = ops.wait("alice").unwrap();
        drop(held);
        assert!(ops.wait("mallory").is_some());
        drop(alice);
        // Nothing is left behind for callers with no question waiting.
        assert!(ops.waiting.lock().unwrap().is_empty());
    }
}
