//! The audit log: one JSON line per tool call and per refusal, each
//! carrying the SHA-256 of the record before it, so that an edited,
//! deleted or reordered record breaks the chain where it happened
//! (`moat audit verify`, see [`verify`]).
//!
//! A record is written (and, with `sync`, on stable storage) before the
//! call's response leaves, under one lock so the chain has one order.
//! With `sync`, concurrent calls share their flushes (group commit, as
//! databases do): records are written under the lock, and one caller at a
//! time flushes the file for every record written so far while the others
//! wait for it, so a flush costs one wait for a whole batch of calls. When
//! the sink fails, calls fail closed unless `on_failure = "continue"`.

pub mod checkpoint;
mod record;
mod verify;

use checkpoint::Signer;
pub use record::{Record, Redacted, Secrets, is_secret, redact, secrets};
pub use verify::{Broken, Verified, segments, verify};

use crate::config::AuditConfig;
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::sync::Mutex;

/// The `prev` of the first record of a chain.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Why a record could not be written.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the audit log cannot be written: {0}")]
pub struct AuditError(pub String);

/// The open audit log.
pub struct AuditLog {
    config: AuditConfig,
    /// An async lock: a call waiting for another's record to be written
    /// yields its worker thread instead of blocking it.
    state: Mutex<State>,
    /// The last write failed; the next one reopens the file first.
    failed: AtomicBool,
    /// Makes signed checkpoints, when a key is configured.
    signer: Option<Signer>,
    /// With `sync`: whose flush is under way.
    flushing: Mutex<()>,
    /// With `sync`: every record up to this sequence number is on stable
    /// storage.
    synced: AtomicU64,
    /// With `sync`: the last record whose flush failed (its caller and
    /// every one before it in the batch are told so).
    unsynced: AtomicU64,
}

struct State {
    /// Shared with a flush in progress, which runs off the lock.
    file: Option<Arc<File>>,
    /// Bytes in the current file.
    size: u64,
    /// The hash of the last record written (the next record's `prev`).
    last: String,
    /// The last record's sequence number.
    seq: u64,
    /// Records written since the last checkpoint.
    unsigned: u64,
}

impl AuditLog {
    /// Opens the log `config` describes, continuing the chain of an
    /// existing file.
    pub fn open(config: &AuditConfig) -> anyhow::Result<AuditLog> {
        let mut state = State {
            file: None,
            size: 0,
            last: GENESIS.to_string(),
            seq: 0,
            unsigned: 0,
        };
        if let Some(path) = &config.file {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| {
                    anyhow::anyhow!("cannot create the audit folder {}: {e}", dir.display())
                })?;
            }
            let file = Arc::new(open_append(path)?);
            // One writer per chain: a second process appending to the same
            // file would interleave two chains.
            file.try_lock().map_err(|_| {
                anyhow::anyhow!(
                    "the audit log {} is in use by another process; give each Moat process its own [audit] file",
                    path.display()
                )
            })?;
            let (last, seq) = chain_head(path)?;
            state.last = last;
            state.seq = seq;
            state.unsigned = unsigned_tail(path);
            state.size = file.metadata().map_or(0, |m| m.len());
            state.file = Some(file);
        }
        let log = AuditLog {
            config: config.clone(),
            failed: AtomicBool::new(false),
            signer: match &config.signing_key {
                Some(key) => Some(Signer::load(key, config.checkpoint_every)?),
                None => None,
            },
            flushing: Mutex::new(()),
            synced: AtomicU64::new(state.seq),
            unsynced: AtomicU64::new(0),
            state: Mutex::new(state),
        };
        // A signed chain starts with a checkpoint, so that a log stripped
        // of every checkpoint does not pass for one never signed.
        if let Some(signer) = &log.signer {
            let mut state = log.state.try_lock().expect("a new log is not shared yet");
            if state.seq == 0 {
                log.sign(&mut state, signer, false)?;
            }
        }
        Ok(log)
    }

    /// Whether calls must be refused while records cannot be written.
    pub fn fail_closed(&self) -> bool {
        self.config.fail_closed
    }

    /// Whether the last write failed (the next one tries to reopen).
    pub fn failing(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// Whether records can be written now, for readiness: while writes
    /// fail and calls fail closed, a record saying the log is back is
    /// tried (no calls arrive at a drained replica to try it for us).
    pub async fn ready(&self) -> Result<(), AuditError> {
        if !(self.config.fail_closed && self.failing()) {
            return Ok(());
        }
        let mut record = Record::new();
        record.outcome = "notice";
        record.kind = "audit_resumed".into();
        record.reason = Some("the audit log can be written again".into());
        self.append(&record).await
    }

    /// The bytes of arguments a record keeps.
    pub fn max_argument_bytes(&self) -> usize {
        self.config.max_argument_bytes
    }

    /// Appends `record` to the chain. With `on_failure = "continue"` a
    /// failure is logged and `Ok` returned.
    pub async fn write(&self, record: &Record) -> Result<(), AuditError> {
        let result = self.append(record).await;
        match result {
            Err(e) if !self.config.fail_closed => {
                tracing::error!("{e}; continuing without this record (on_failure = \"continue\")");
                Ok(())
            }
            other => other,
        }
    }

    /// Ends the chain with a closing checkpoint (at a clean shutdown),
    /// when a signing key is configured.
    pub async fn close(&self) -> Result<(), AuditError> {
        let Some(signer) = &self.signer else {
            return Ok(());
        };
        let seq = {
            let mut state = self.state.lock().await;
            self.sign(&mut state, signer, true)?;
            state.seq
        };
        self.durable(seq).await
    }

    async fn append(&self, record: &Record) -> Result<(), AuditError> {
        let seq = self.append_unsynced(record).await?;
        self.durable(seq).await
    }

    /// Writes `record` (and any checkpoint or rotation it brings) and
    /// returns its sequence number; with `sync` it is not yet flushed.
    async fn append_unsynced(&self, record: &Record) -> Result<u64, AuditError> {
        let mut state = self.state.lock().await;
        let state = &mut *state;
        if let (Some(path), true) = (&self.config.file, self.failing()) {
            let file = open_append(path).map_err(|e| AuditError(e.to_string()))?;
            state.file = Some(Arc::new(file));
        }
        self.write_line(state, record)?;
        let seq = state.seq;
        // The record is written: a checkpoint or rotation that fails now
        // is logged, and the next record tries again.
        if let Some(signer) = &self.signer {
            state.unsigned += 1;
            if state.unsigned >= signer.every
                && let Err(e) = self.sign(state, signer, false)
            {
                tracing::error!("cannot write an audit checkpoint: {e}");
            }
        }
        if state.size >= self.config.max_file_bytes
            && let Some(path) = &self.config.file
        {
            // A rotated file ends signed, so it can be verified alone.
            if let Some(signer) = &self.signer
                && state.unsigned > 0
                && let Err(e) = self.sign(state, signer, false)
            {
                tracing::error!("cannot write an audit checkpoint: {e}");
            }
            // Records of the file rotated away are flushed with it, so a
            // flush of the new file covers every record before.
            if self.config.sync
                && let Some(old) = &state.file
            {
                match old.sync_data() {
                    Ok(()) => {
                        self.synced.fetch_max(state.seq, Ordering::AcqRel);
                    }
                    Err(e) => {
                        // This caller and the others of the file are told
                        // (a second flush of it would report success).
                        self.lost(state.seq);
                        return Err(self.flush_failed(&e.to_string()));
                    }
                }
            }
            match rotate(path) {
                Ok(file) => {
                    state.file = Some(Arc::new(file));
                    state.size = 0;
                    // The renamed file and the new one must be where they
                    // are after a power loss too.
                    if self.config.sync
                        && let Err(e) = sync_folder(path)
                    {
                        self.lost(state.seq);
                        return Err(self.flush_failed(&format!("its folder: {e}")));
                    }
                }
                Err(e) => tracing::error!("cannot rotate the audit log: {e}"),
            }
        }
        Ok(seq)
    }

    /// Records up to `seq` may not be on stable storage whatever a later
    /// flush says (Linux reports a failed write-back once per open file):
    /// their callers are told so, and the next record reopens the file.
    fn lost(&self, seq: u64) {
        self.unsynced.fetch_max(seq, Ordering::AcqRel);
        self.failed.store(true, Ordering::Relaxed);
    }

    /// With `sync`, returns once record `seq` is on stable storage: a
    /// flush that started after it was written covers it. One caller
    /// flushes (on a blocking thread, off the chain's lock, so records go
    /// on being written meanwhile) and the callers that queue behind it
    /// find their records covered by its flush or start the next.
    async fn durable(&self, seq: u64) -> Result<(), AuditError> {
        if !self.config.sync {
            return Ok(());
        }
        if let Some(settled) = self.settled(seq) {
            return settled;
        }
        let _flushing = self.flushing.lock().await;
        if let Some(settled) = self.settled(seq) {
            return settled;
        }
        // Every record written so far is in the current file (a rotated
        // one was flushed before it was replaced).
        let (file, upto) = {
            let state = self.state.lock().await;
            (state.file.clone(), state.seq)
        };
        let Some(file) = file else {
            return Ok(());
        };
        let flushed = tokio::task::spawn_blocking(move || file.sync_data())
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        crate::metrics::get().audit_flushes.inc();
        match flushed {
            Ok(()) => {
                self.synced.fetch_max(upto, Ordering::AcqRel);
                Ok(())
            }
            Err(e) => {
                // The flush wrote back whatever was in the file when it
                // ran, records written after `upto` included: none of them
                // counts as stored.
                let written = self.state.lock().await.seq;
                self.lost(written.max(upto));
                Err(self.flush_failed(&e.to_string()))
            }
        }
    }

    /// Whether a flush has already settled record `seq`: stored, or lost
    /// with a batch whose flush failed.
    fn settled(&self, seq: u64) -> Option<Result<(), AuditError>> {
        if self.unsynced.load(Ordering::Acquire) >= seq {
            return Some(Err(self.flush_failed("the flush of its batch failed")));
        }
        (self.synced.load(Ordering::Acquire) >= seq).then_some(Ok(()))
    }

    fn flush_failed(&self, why: &str) -> AuditError {
        let path = self.config.file.as_deref().unwrap_or(Path::new("?"));
        AuditError(format!("{}: cannot flush: {why}", path.display()))
    }

    /// Appends a checkpoint signing the chain up to here.
    fn sign(&self, state: &mut State, signer: &Signer, closing: bool) -> Result<(), AuditError> {
        let mut record = Record::new();
        record.outcome = "checkpoint";
        record.kind = "checkpoint".into();
        record.checkpoint = Some(signer.sign(state.seq + 1, &state.last, closing));
        self.write_line(state, &record)?;
        state.unsigned = 0;
        Ok(())
    }

    /// Chains `record` to the last one and writes it to every sink.
    fn write_line(&self, state: &mut State, record: &Record) -> Result<(), AuditError> {
        let seq = state.seq + 1;
        let body = record.to_json(seq, &state.last);
        let hash = hex::encode(Sha256::digest(body.as_bytes()));
        // The hash is appended as the last field, so a verifier can cut it
        // off and hash exactly the bytes that were hashed here.
        let line = format!("{},\"hash\":\"{hash}\"}}\n", &body[..body.len() - 1]);
        if let Some(file) = &state.file {
            // `&File` writes: a flush may hold the other reference.
            if let Err(e) = (&**file).write_all(line.as_bytes()) {
                // The file is reopened for the next record: what was
                // written to this one and not yet flushed is lost to
                // a flush of the new one.
                self.lost(state.seq);
                return Err(AuditError(format!(
                    "{}: {e}",
                    self.config
                        .file
                        .as_deref()
                        .unwrap_or(Path::new("?"))
                        .display()
                )));
            }
            self.failed.store(false, Ordering::Relaxed);
            state.size += line.len() as u64;
        }
        if self.config.stdout {
            let mut out = std::io::stdout().lock();
            out.write_all(line.as_bytes())
                .and_then(|()| out.flush())
                .map_err(|e| AuditError(format!("stdout: {e}")))?;
        }
        state.seq = seq;
        state.last = hash;
        Ok(())
    }
}

fn open_append(path: &Path) -> anyhow::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot open the audit log {}: {e}", path.display()))
}

/// Renames `path` to the next free `path.N` and opens a fresh `path`.
fn rotate(path: &Path) -> anyhow::Result<File> {
    let next = segments(path).len();
    let rotated = PathBuf::from(format!("{}.{next}", path.display()));
    std::fs::rename(path, &rotated)?;
    tracing::info!(to = %rotated.display(), "audit log rotated");
    let file = open_append(path)?;
    file.try_lock()
        .map_err(|e| anyhow::anyhow!("cannot lock the new audit log: {e}"))?;
    Ok(file)
}

/// Flushes the folder of `path` (its entries: a rename, a new file).
fn sync_folder(path: &Path) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    File::open(dir.unwrap_or(Path::new(".")))?.sync_all()
}

/// Records after the last checkpoint in `path` (its crash tail, when
/// Moat stopped without one), so that checkpoints keep their spacing
/// across restarts.
fn unsigned_tail(path: &Path) -> u64 {
    if !path.is_file() {
        return 0;
    }
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .rev()
        .filter(|line| !line.trim().is_empty())
        .take_while(|line| {
            serde_json::from_str::<serde_json::Value>(line)
                .map_or(true, |record| record.get("checkpoint").is_none())
        })
        .count() as u64
}

/// The hash and sequence number of the last record in `path`'s chain
/// (its last line, or the last rotated file's), or the genesis.
fn chain_head(path: &Path) -> anyhow::Result<(String, u64)> {
    for file in segments(path).iter().rev() {
        // Only regular files hold a chain (a device such as /dev/full
        // would read forever).
        if !file.is_file() {
            continue;
        }
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => anyhow::bail!("cannot read the audit log {}: {e}", file.display()),
        };
        let Some(line) = text.lines().rev().find(|l| !l.trim().is_empty()) else {
            continue;
        };
        let head = serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .and_then(|v| Some((v["hash"].as_str()?.to_string(), v["seq"].as_u64()?)));
        return head.ok_or_else(|| {
            anyhow::anyhow!(
                "the last record of the audit log {} is not a record; run `moat audit verify {}` \
                 and move the damaged file aside before starting",
                file.display(),
                path.display()
            )
        });
    }
    Ok((GENESIS.to_string(), 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Concurrent calls' records each return only once a flush that began
    /// after they were written has finished, the flushes are shared, and
    /// the chain is whole.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_records_are_flushed_in_groups_before_their_callers_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let config = AuditConfig {
            file: Some(path.clone()),
            stdout: false,
            fail_closed: true,
            max_file_bytes: 100 << 20,
            sync: true,
            max_argument_bytes: 4096,
            signing_key: None,
            checkpoint_every: 1000,
        };
        let log = Arc::new(AuditLog::open(&config).unwrap());
        let writers = 64;
        let tasks: Vec<_> = (0..writers)
            .map(|i| {
                let log = log.clone();
                tokio::spawn(async move {
                    let mut record = Record::new();
                    record.outcome = "ok";
                    record.kind = format!("call {i}");
                    let seq = log.append_unsynced(&record).await.unwrap();
                    log.durable(seq).await.unwrap();
                    let synced = log.synced.load(Ordering::Acquire);
                    assert!(synced >= seq, "record {seq} returned at {synced}");
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(log.synced.load(Ordering::Acquire), writers);
        let verified = verify(&segments(&path), None).unwrap();
        assert_eq!(verified.records, writers);
    }
}
