//! The store: ties the commit log, the flush strategy, the dispatcher,
//! consume queues, index and checkpoint together. (API skeleton; the
//! implementation lands next.)

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::config::StoreConfig;
use crate::error::{Error, Result};
use crate::io::Env;
use crate::message::{Message, Offsets, PutResult, StoredMessage};

/// What recovery found and did at open.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RecoveryReport {
    /// True when the `abort` marker was present (no clean shutdown).
    pub abnormal: bool,
    /// Physical offset parsing started at.
    pub start_offset: u64,
    /// Physical offset of the end of valid data (the new write position).
    pub end_offset: u64,
    /// Records parsed.
    pub records_scanned: u64,
    /// Records re-dispatched into consume queues and the index.
    pub redispatched: u64,
    /// What was cut off, if anything.
    pub truncated: Vec<Truncation>,
    /// Other observations (ignored files, geometry taken from files, ...).
    pub notes: Vec<String>,
    /// Wall time of the recovery, ms.
    pub elapsed_ms: u64,
}

/// One truncation done by recovery.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Truncation {
    /// File affected.
    pub file: PathBuf,
    /// Physical (commit log) or byte (other files) offset of the cut.
    pub offset: u64,
    /// Bytes discarded after the cut (up to the end of written data).
    pub bytes: u64,
    /// Why: the decode error at the cut.
    pub reason: String,
}

/// One queue of a topic, with its offsets.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct QueueInfo {
    /// Topic.
    pub topic: String,
    /// Queue id.
    pub queue_id: u32,
    /// First queue offset still stored.
    pub min_offset: u64,
    /// One past the last dispatched queue offset.
    pub max_offset: u64,
}

/// A RocketMQ-compatible message store.
pub struct Store {
    _env: Arc<dyn Env>,
}

impl Store {
    /// Opens (creating or recovering) the store in `dir` with the backend
    /// named in `config.backend`.
    pub fn open(dir: impl AsRef<Path>, config: StoreConfig) -> Result<Store> {
        let env = config
            .backend
            .env()
            .map_err(|e| Error::BackendUnavailable {
                backend: config.backend.name(),
                reason: e.to_string(),
            })?;
        Self::open_with_env(env, dir, config)
    }

    /// Opens the store on an explicit environment (the simulator, or an
    /// overlay for read-only inspection).
    pub fn open_with_env(env: Arc<dyn Env>, dir: impl AsRef<Path>, config: StoreConfig) -> Result<Store> {
        let _ = (dir.as_ref(), config);
        Ok(Store { _env: env })
    }

    /// Appends a message and waits as the flush strategy requires.
    pub fn put(&self, _msg: &Message) -> PutResult {
        unimplemented!()
    }

    /// Reads the message whose record starts at `phys_offset`.
    pub fn get(&self, _phys_offset: u64) -> Result<StoredMessage> {
        unimplemented!()
    }

    /// Up to `max` messages of a queue starting at `queue_offset`.
    pub fn get_from_queue(&self, _topic: &str, _queue_id: u32, _queue_offset: u64, _max: usize) -> Result<Vec<StoredMessage>> {
        unimplemented!()
    }

    /// Messages of `topic` with key `key` stored in `[begin_ms, end_ms]`,
    /// newest first, at most 64.
    pub fn query_by_key(&self, _topic: &str, _key: &str, _begin_ms: i64, _end_ms: i64) -> Result<Vec<StoredMessage>> {
        unimplemented!()
    }

    /// The four offsets, read with atomics (cheap; call as often as needed).
    pub fn offsets(&self) -> Offsets {
        unimplemented!()
    }

    /// Physical offset up to which the dispatcher has built queues/index.
    pub fn dispatched_offset(&self) -> u64 {
        unimplemented!()
    }

    /// Waits until the dispatcher reached `phys_offset` (or timeout).
    pub fn wait_dispatched(&self, _phys_offset: u64, _timeout: Duration) -> bool {
        unimplemented!()
    }

    /// Every (topic, queue) with its offsets.
    pub fn queues(&self) -> Vec<QueueInfo> {
        unimplemented!()
    }

    /// What recovery did at open.
    pub fn recovery_report(&self) -> &RecoveryReport {
        unimplemented!()
    }

    /// Walks every record from `from` to the committed end, CRC-checked,
    /// calling `f` with each message or the first error (then stops).
    pub fn scan(&self, _from: u64, _f: &mut dyn FnMut(std::result::Result<&StoredMessage, Error>) -> bool) -> Result<u64> {
        unimplemented!()
    }

    /// Clean shutdown: flush everything, checkpoint, remove `abort`.
    pub fn shutdown(self) -> Result<()> {
        unimplemented!()
    }
}
