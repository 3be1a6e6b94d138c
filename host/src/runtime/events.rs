//! What a running call tells its client while it runs: progress reports
//! and log records, sent to the transport over a bounded channel and
//! bounded per call, so that a plugin cannot make Moat queue, send or
//! hold more than a fixed amount on its behalf.

use crate::audit::Secrets;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Who listens to a call, and what they may hear.
pub struct Listener {
    /// Where events go.
    pub sender: mpsc::Sender<CallEvent>,
    /// Values kept out of every message.
    pub secrets: Arc<Secrets>,
    /// The least level of log records wanted; `None`: none.
    pub min_log: Option<LogLevel>,
}

/// One thing to tell the client.
#[derive(Debug, Clone, PartialEq)]
pub enum CallEvent {
    /// `notifications/progress`.
    Progress {
        /// So far.
        progress: f64,
        /// Of this much, when known.
        total: Option<f64>,
        /// What is happening.
        message: Option<String>,
    },
    /// `notifications/message`.
    Log {
        /// Its level.
        level: LogLevel,
        /// The text, printable and within the call's log budget.
        message: String,
    },
}

/// A plugin log record's level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// trace and debug.
    Debug,
    /// info.
    Info,
    /// warn.
    Warning,
    /// error.
    Error,
}

/// Events queued between a call and its transport at most.
pub const QUEUE: usize = 64;
/// Progress reports forwarded per call at most.
const MAX_PROGRESS: u32 = 200;
/// The least time between two progress reports forwarded (the last one,
/// reaching the total, always goes).
const PROGRESS_EVERY: Duration = Duration::from_millis(20);
/// Log records forwarded per call at most.
const MAX_LOGS: u32 = 500;

/// Bytes of a progress message forwarded at most.
const PROGRESS_MESSAGE_BYTES: usize = 1024;

/// Where a call's events go, with what it may still send.
pub struct EventSink {
    sender: mpsc::Sender<CallEvent>,
    secrets: Arc<Secrets>,
    min_log: Option<LogLevel>,
    /// The last progress forwarded or held: reports must increase.
    last_value: Option<f64>,
    progress_sent: u32,
    last_progress: Option<Instant>,
    logs_sent: u32,
    /// The latest progress report not forwarded (too soon, or the queue
    /// full): sent when the call ends, so the client learns where it got.
    unsent: Option<CallEvent>,
}

impl EventSink {
    /// Events for `listener`.
    pub fn new(listener: Listener) -> Self {
        EventSink {
            sender: listener.sender,
            secrets: listener.secrets,
            min_log: listener.min_log,
            last_value: None,
            progress_sent: 0,
            last_progress: None,
            logs_sent: 0,
            unsent: None,
        }
    }

    /// Secrets out first (so truncation or escaping cannot cut one in
    /// two), then at most `max` bytes, printable.
    fn clean(&self, text: &str, max: usize) -> String {
        let scrubbed = self.secrets.scrub(text);
        super::capture::printable(super::state::truncate(&scrubbed, max)).into_owned()
    }

    /// Forwards a progress report unless it does not increase, the call
    /// has sent its share, or one went a moment ago (unless this one
    /// completes a positive total).
    pub fn progress(&mut self, progress: f64, total: Option<f64>, message: Option<&str>) {
        if !progress.is_finite() || self.last_value.is_some_and(|last| progress <= last) {
            return;
        }
        self.last_value = Some(progress);
        let total = total.filter(|t| t.is_finite() && *t > 0.0);
        let event = CallEvent::Progress {
            progress,
            total,
            message: message.map(|m| self.clean(m, PROGRESS_MESSAGE_BYTES)),
        };
        let done = total.is_some_and(|t| progress >= t);
        let soon = self
            .last_progress
            .is_some_and(|at| at.elapsed() < PROGRESS_EVERY);
        if self.progress_sent >= MAX_PROGRESS || (soon && !done) {
            self.unsent = Some(event);
            return;
        }
        match self.sender.try_send(event) {
            Ok(()) => {
                self.progress_sent += 1;
                self.last_progress = Some(Instant::now());
                self.unsent = None;
            }
            Err(mpsc::error::TrySendError::Full(event)) => self.unsent = Some(event),
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Forwards a log record at or above the listener's level unless the
    /// call has sent its share; `max` bytes of it at most.
    pub fn log(&mut self, level: LogLevel, message: &str, max: usize) {
        if self.logs_sent >= MAX_LOGS || self.min_log.is_none_or(|least| level < least) {
            return;
        }
        let event = CallEvent::Log {
            level,
            message: self.clean(message, max),
        };
        if self.sender.try_send(event).is_ok() {
            self.logs_sent += 1;
        }
    }
}

impl Drop for EventSink {
    /// Sends the latest report that did not go, once the queue has room:
    /// one event more than the share, waited for by the transport only
    /// as long as it drains the rest.
    fn drop(&mut self) {
        if let (Some(event), Ok(handle)) =
            (self.unsent.take(), tokio::runtime::Handle::try_current())
        {
            let sender = self.sender.clone();
            handle.spawn(async move {
                let _ = sender.send(event).await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn progress_and_logs_are_bounded_per_call() {
        let listen = |sender, min_log| Listener {
            sender,
            secrets: Arc::new(crate::audit::secrets(
                serde_json::json!({ "api_key": "sk-LIVE-9" })
                    .as_object()
                    .unwrap(),
            )),
            min_log,
        };
        let (tx, mut rx) = mpsc::channel(10_000);
        let mut sink = EventSink::new(listen(tx, Some(LogLevel::Info)));
        // A flood: only the first, and the one reaching the total, pass
        // within the interval; never more than the per-call share.
        for i in 0..1000 {
            sink.progress(f64::from(i), Some(1000.0), None);
        }
        sink.progress(1000.0, Some(1000.0), Some("done"));
        sink.progress(f64::NAN, None, None);
        sink.progress(999.0, None, None);
        // Below the listener's level: not even queued.
        for _ in 0..(MAX_LOGS + 10) {
            sink.log(LogLevel::Debug, "x", 100);
        }
        for _ in 0..(MAX_LOGS + 10) {
            sink.log(LogLevel::Info, "key sk-LIVE-9\tend", 100);
        }
        let mut progress = Vec::new();
        let mut logs = 0;
        while let Ok(event) = rx.try_recv() {
            match event {
                CallEvent::Progress { progress: p, .. } => progress.push(p),
                CallEvent::Log { message, .. } => {
                    assert_eq!(message, "key [redacted]\\tend");
                    logs += 1;
                }
            }
        }
        assert_eq!(progress, [0.0, 1000.0]);
        assert_eq!(logs, MAX_LOGS);
        // The latest report that could not go is sent when the call ends.
        let (tx, mut rx) = mpsc::channel(10);
        let mut sink = EventSink::new(listen(tx, None));
        sink.progress(1.0, Some(10.0), None);
        sink.progress(7.0, Some(10.0), None);
        drop(sink);
        let mut seen = Vec::new();
        while let Some(CallEvent::Progress { progress, .. }) = rx.recv().await {
            seen.push(progress);
        }
        assert_eq!(seen, [1.0, 7.0]);
        // A full queue drops, never blocks the plugin.
        let (tx, _rx) = mpsc::channel(1);
        let mut sink = EventSink::new(listen(tx, Some(LogLevel::Debug)));
        sink.log(LogLevel::Info, "kept", 100);
        sink.log(LogLevel::Info, "dropped", 100);
        assert_eq!(sink.logs_sent, 1);
    }
}
