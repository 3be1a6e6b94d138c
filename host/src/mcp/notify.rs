//! What a running call tells the client: its plugin's progress reports
//! (when the request carried a progress token) and log records (at or
//! above the level the client set), with the call's secret argument
//! values redacted. Progress goes on the request's own stream, before the
//! result; over stateful HTTP, rmcp sends log records on the session's
//! GET stream (the SDKs keep one open), where they may arrive after it.
//!
//! MCP logging is deprecated for protocol 2026-07-28 (SEP-2577) and rmcp
//! marks its types so; clients of 2025-11-25 and before use it, hence the
//! `allow(deprecated)` below.
#![allow(deprecated)]

use crate::runtime::CallReport;
use crate::runtime::events::{CallEvent, Listener, LogLevel, QUEUE};
use crate::service::{AdmittedCall, Refusal};
use rmcp::RoleServer;
use rmcp::model::{LoggingLevel, LoggingMessageNotificationParam, ProgressNotificationParam};
use rmcp::service::RequestContext;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long notifications still queued when the call ends may take to go
/// out before the result does without them.
const DRAIN: Duration = Duration::from_millis(500);

/// The `_meta` key with which a 2026-07-28 request asks for log records.
const LOG_LEVEL_META: &str = "io.modelcontextprotocol/logLevel";

/// A session's log level, shared by its requests.
#[derive(Clone, Default)]
pub(super) struct SessionLevel(Arc<Mutex<Option<LoggingLevel>>>);

impl SessionLevel {
    pub(super) fn set(&self, level: LoggingLevel) {
        *self.0.lock().expect("log level") = Some(level);
    }

    fn get(&self) -> Option<LoggingLevel> {
        *self.0.lock().expect("log level")
    }
}

/// Where a level stands, least to most severe.
fn rank(level: LoggingLevel) -> u8 {
    match level {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}

fn mcp_level(level: LogLevel) -> LoggingLevel {
    match level {
        LogLevel::Debug => LoggingLevel::Debug,
        LogLevel::Info => LoggingLevel::Info,
        LogLevel::Warning => LoggingLevel::Warning,
        LogLevel::Error => LoggingLevel::Error,
    }
}

/// Runs `call`, forwarding its events to the client when the client
/// listens: progress when the request has a progress token, log records
/// when the session (or, at 2026-07-28, the request) set a level.
pub(super) async fn run_telling(
    mut call: AdmittedCall,
    context: &RequestContext<RoleServer>,
    session: &SessionLevel,
) -> Result<CallReport, Refusal> {
    let token = context.meta.get_progress_token();
    let requested = context
        .meta
        .0
        .get(LOG_LEVEL_META)
        .and_then(|v| serde_json::from_value::<LoggingLevel>(v.clone()).ok());
    let level = requested.or_else(|| session.get());
    let service = call.service().clone();
    if token.is_none() && level.is_none() {
        return service.run(call).await;
    }
    let (sender, mut events) = tokio::sync::mpsc::channel(QUEUE);
    // Records below the client's level are never queued: they would use
    // up the call's share before the ones it wants.
    let min_log = level.map(|least| match rank(least) {
        0 => LogLevel::Debug,
        1 | 2 => LogLevel::Info,
        3 => LogLevel::Warning,
        _ => LogLevel::Error,
    });
    call.tell(Listener {
        sender,
        secrets: call.secrets(),
        min_log: if level.is_some_and(|l| rank(l) > rank(LoggingLevel::Error)) {
            // Critical and above: no plugin record is that severe.
            None
        } else {
            min_log
        },
    });
    let peer = context.peer.clone();
    let mut forward = tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            // A client gone away is not the call's concern.
            let _ = match event {
                CallEvent::Progress {
                    progress,
                    total,
                    message,
                } => match &token {
                    Some(token) => {
                        let mut note = ProgressNotificationParam::new(token.clone(), progress);
                        note.total = total;
                        note.message = message;
                        peer.notify_progress(note).await
                    }
                    None => Ok(()),
                },
                CallEvent::Log { level: at, message } => {
                    peer.notify_logging_message(LoggingMessageNotificationParam::new(
                        mcp_level(at),
                        serde_json::Value::String(message),
                    ))
                    .await
                }
            };
        }
    });
    let outcome = service.run(call).await;
    // The call's sender is gone with it: what is queued drains, then the
    // task ends; a client that does not read cannot hold the result back.
    if tokio::time::timeout(DRAIN, &mut forward).await.is_err() {
        forward.abort();
    }
    outcome
}
