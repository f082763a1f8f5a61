//! Flush strategy settings, beside the strategies that read them: the
//! defaults every other crate copies come from [`FlushConfig::default`],
//! and what a strategy needs from the log (its staging area) is answered
//! here, so nothing outside `flush/` matches on [`FlushKind`].

use crate::error::{Error, Result};
use crate::flush::FlushKind;

/// Flush strategy settings (RocketMQ's names in brackets).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct FlushConfig {
    /// Which strategy acknowledges puts. Default `async` (ASYNC_FLUSH).
    pub kind: FlushKind,
    /// Async flusher period, ms. Default 500 [flushIntervalCommitLog].
    pub flush_interval_ms: u64,
    /// Async flusher runs only with at least this many dirty 4 KiB pages.
    /// Default 4 [flushCommitLogLeastPages].
    pub flush_least_pages: u64,
    /// Async flusher flushes everything at least this often, ms.
    /// Default 10,000 [flushCommitLogThoroughInterval].
    pub flush_thorough_interval_ms: u64,
    /// Pool committer period, ms. Default 200 [commitIntervalCommitLog].
    pub commit_interval_ms: u64,
    /// Pool: number of write buffers, one segment each. Default 5
    /// [transientStorePoolSize].
    pub pool_buffers: usize,
    /// Group commit: a put not durable after this long returns
    /// FLUSH_DISK_TIMEOUT (the message stays written; an asynchronous
    /// put's deadline is checked between flushes). Default 5,000
    /// [syncFlushTimeout].
    pub sync_flush_timeout_ms: u64,
    /// Group commit: at most this many blocking puts wait for one flush;
    /// more wait for room before registering (asynchronous puts are not
    /// counted: their caller bounds them). Default 4,096.
    pub group_max_waiters: usize,
    /// Group commit: after a request arrives the service waits at most this
    /// long for more before flushing, µs. Default 0: flush at once, and let
    /// the next batch form while the fdatasync runs.
    pub group_wait_us: u64,
    /// Group commit: puts copy their records into a memory staging area
    /// (as `pool` does) and the service writes each batch to the file with
    /// one write just before its fdatasync, instead of one write per put.
    /// Acknowledgement is unchanged (after the fdatasync covering the
    /// put). Default true; false gives RocketMQ's GroupCommitService, where
    /// every put writes its own record.
    pub group_batch_writes: bool,
}

impl Default for FlushConfig {
    fn default() -> Self {
        FlushConfig {
            kind: FlushKind::Async,
            flush_interval_ms: 500,
            flush_least_pages: 4,
            flush_thorough_interval_ms: 10_000,
            commit_interval_ms: 200,
            pool_buffers: 5,
            sync_flush_timeout_ms: 5_000,
            group_max_waiters: 4_096,
            group_wait_us: 0,
            group_batch_writes: true,
        }
    }
}

impl FlushConfig {
    /// The default settings with strategy `kind`.
    pub fn for_kind(kind: FlushKind) -> Self {
        FlushConfig {
            kind,
            ..FlushConfig::default()
        }
    }

    /// Name of the strategy with the setting that changes what it does:
    /// `group-unbatched` for group commit with one write per put, else the
    /// strategy's name.
    pub fn variant(&self) -> &'static str {
        if self.kind == FlushKind::Group && !self.group_batch_writes {
            "group-unbatched"
        } else {
            self.kind.name()
        }
    }

    /// Label of the configuration in tables, legends and folder names:
    /// [`variant`](Self::variant), with the flusher period when the
    /// strategy has one (`async-500ms`).
    pub fn label(&self) -> String {
        if self.kind.is_periodic() {
            format!("{}-{}ms", self.kind.name(), self.flush_interval_ms)
        } else {
            self.variant().to_string()
        }
    }

    /// Checks every value once (called by `StoreConfig::sanitize`).
    pub fn sanitize(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::Config(m.into()));
        if self.flush_interval_ms == 0 || self.commit_interval_ms == 0 {
            return bad("flush_interval_ms and commit_interval_ms must be > 0");
        }
        if self.pool_buffers < 2 {
            return bad("pool_buffers must be >= 2");
        }
        if self.group_max_waiters == 0 {
            return bad("group_max_waiters must be > 0");
        }
        Ok(())
    }

    /// Capacity of the commit log's staging area (`log/staging.rs`)
    /// for this strategy, bytes; `None` when puts write straight to the
    /// segment files. `pool`: `pool_buffers` segments. `group` with batched
    /// writes: a bound on one batch (puts wait for the write past it).
    pub fn staging_bytes(&self, segment_bytes: u64) -> Option<usize> {
        match self.kind {
            FlushKind::Pool => {
                Some((self.pool_buffers as u64 * segment_bytes).min(usize::MAX as u64) as usize)
            }
            FlushKind::Group if self.group_batch_writes => Some(super::group::BATCH_STAGING_BYTES),
            FlushKind::Group | FlushKind::Sync | FlushKind::Async => None,
        }
    }
}
