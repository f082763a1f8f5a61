//! The flush strategy axis: when a put is acknowledged, and who makes the
//! commit log durable.
//!
//! | strategy | ack after | durability by | `put_async` completion called by |
//! |---|---|---|---|
//! | `sync` | its own fdatasync | the putting thread, one fdatasync per message | the sync completer thread, after the put's own fdatasync |
//! | `group` | a shared fdatasync covering it | the group-commit service thread | the group-commit service, after the fdatasync covering it |
//! | `async` | the write | the flusher thread, periodically | the putting thread, right after the write |
//! | `pool` | the copy into a memory buffer | committer thread then flusher thread | the putting thread, right after the copy |
//!
//! Invariant kept by every strategy: `flushed <= committed <= written`; sync
//! and group also keep `acked <= flushed` at every instant, for blocking
//! and asynchronous puts alike (a completion is called with PUT_OK only
//! once `flushed >= end`).

use std::fmt;

/// Which strategy acknowledges puts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlushKind {
    /// fdatasync per message before the ack (SYNC_FLUSH without batching).
    Sync,
    /// RocketMQ's GroupCommitService: one fdatasync acks every waiting put.
    Group,
    /// Ack after the write; periodic flusher (ASYNC_FLUSH).
    Async,
    /// Transient store pool: ack after a copy into memory; committer and
    /// async flusher make it reach the file and the disk.
    Pool,
}

impl FlushKind {
    /// All strategies, in the order results list them.
    pub const ALL: [FlushKind; 4] = [
        FlushKind::Sync,
        FlushKind::Group,
        FlushKind::Async,
        FlushKind::Pool,
    ];

    /// Name used in results and chart legends.
    pub fn name(self) -> &'static str {
        match self {
            FlushKind::Sync => "sync",
            FlushKind::Group => "group",
            FlushKind::Async => "async",
            FlushKind::Pool => "pool",
        }
    }

    /// True when an acknowledged put is already durable.
    pub fn acks_durable(self) -> bool {
        self.ack_wait() != AckWait::Write
    }

    /// What a put's acknowledgement waits for.
    pub fn ack_wait(self) -> AckWait {
        match self {
            FlushKind::Sync => AckWait::OwnSync,
            FlushKind::Group => AckWait::SharedSync,
            FlushKind::Async | FlushKind::Pool => AckWait::Write,
        }
    }

    /// True when a background flusher runs every `flush_interval_ms`, so
    /// the interval names the configuration (`async-500ms`).
    pub fn is_periodic(self) -> bool {
        matches!(self, FlushKind::Async | FlushKind::Pool)
    }
}

/// What a put's acknowledgement waits for, and so which device figure
/// bounds a strategy's rate. Strategies of one class compare with each
/// other and with peers that make the same promise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AckWait {
    /// An fdatasync of its own (`sync`): queue-depth-1 fdatasync/s.
    OwnSync,
    /// An fdatasync shared by every put waiting for it (`group`):
    /// fdatasync/s times the puts of a batch.
    SharedSync,
    /// A write into the page cache or a memory buffer (`async`, `pool`):
    /// buffered-write bandwidth.
    Write,
}

impl AckWait {
    /// Name of the class in results: the strategy that defines it
    /// (`sync`, `group`, `async`).
    pub fn name(self) -> &'static str {
        match self {
            AckWait::OwnSync => FlushKind::Sync.name(),
            AckWait::SharedSync => FlushKind::Group.name(),
            AckWait::Write => FlushKind::Async.name(),
        }
    }
}

impl fmt::Display for FlushKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for FlushKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "sync" => Ok(FlushKind::Sync),
            "group" => Ok(FlushKind::Group),
            "async" => Ok(FlushKind::Async),
            "pool" => Ok(FlushKind::Pool),
            other => Err(format!(
                "unknown flush strategy {other:?}: expected sync, group, async or pool"
            )),
        }
    }
}

pub mod asynchronous;
mod config;
pub mod group;
pub mod pool;
pub mod sync;

use std::sync::Arc;

use crate::error::Result;
use crate::log::CommitLog;
use crate::message::PutStatus;
pub use config::FlushConfig;

/// What an asynchronous acknowledgement calls with the put's status (see
/// [`FlushStrategy::ack_async`]).
pub type AckCallback = Box<dyn FnOnce(Result<PutStatus>) + Send>;

/// A flush strategy, as seen by the put path.
pub trait FlushStrategy: Send + Sync {
    /// Name in results (`sync`, `group`, `async`, `pool`).
    fn name(&self) -> &'static str;
    /// Blocks until the put whose record ends at `end` may be acknowledged;
    /// returns its status. An error means the log is poisoned.
    fn await_ack(&self, end: u64) -> Result<PutStatus>;
    /// [`await_ack`](Self::await_ack) without blocking: arranges for `done`
    /// to be called exactly once with what `await_ack(end)` would have
    /// returned, and returns. `done` may run on the calling thread before
    /// this returns (`async`, `pool`, a put already durable, a stopped or
    /// poisoned strategy) or on the strategy's own thread; it must be quick
    /// (hand the result off), as it holds up that thread. `Ok(PutOk)` only
    /// once the put is acknowledged as `await_ack` would acknowledge it
    /// (`flushed >= end` for sync and group); `Ok(FlushDiskTimeout)` where
    /// `await_ack` times out; `Err` when the log is poisoned or the
    /// strategy stops (every callback still pending is then called with
    /// `Error::Unavailable("store is shutting down")`: none is dropped).
    fn ack_async(&self, end: u64, done: AckCallback);
    /// Stops the background threads (idempotent). Does not flush: a clean
    /// shutdown flushes separately, a crash must not.
    fn stop(&self);
}

/// Builds the strategy named in `cfg` and starts its threads.
pub fn start(log: Arc<CommitLog>, cfg: &FlushConfig) -> Box<dyn FlushStrategy> {
    match cfg.kind {
        FlushKind::Sync => Box::new(sync::SyncFlush::new(log)),
        FlushKind::Group => Box::new(group::GroupCommit::start(log, cfg)),
        FlushKind::Async => Box::new(asynchronous::AsyncFlush::start(log, cfg)),
        FlushKind::Pool => Box::new(pool::PoolFlush::start(log, cfg)),
    }
}
