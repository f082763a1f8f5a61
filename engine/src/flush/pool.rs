//! `pool`: RocketMQ's transient store pool. Puts copy into memory buffers
//! (the commit log's staging area, bounded by `pool_buffers` segments) and
//! are acknowledged at once; a committer thread writes the buffers into the
//! segment files every `commit_interval_ms`, and the async flusher makes
//! them durable. A process crash loses what was not committed; a power loss
//! also what was not flushed.

use std::sync::Arc;
use std::time::Duration;

use super::asynchronous::spawn_flusher;
use super::{AckCallback, FlushStrategy};
use crate::error::Result;
use crate::flush::FlushConfig;
use crate::log::CommitLog;
use crate::message::PutStatus;
use crate::service::Periodic;

/// Name in results.
pub const NAME: &str = "pool";

/// The pool strategy.
pub struct PoolFlush {
    committer: Periodic,
    flusher: Periodic,
}

impl PoolFlush {
    /// Starts the committer and the flusher.
    pub fn start(log: Arc<CommitLog>, cfg: &FlushConfig) -> Self {
        let l2 = log.clone();
        let committer = Periodic::spawn(
            "mqlab-committer",
            Duration::from_millis(cfg.commit_interval_ms),
            move || {
                let ok = l2.commit().is_ok();
                if !ok {
                    l2.wake_blocked();
                }
                ok
            },
        );
        PoolFlush {
            committer,
            flusher: spawn_flusher(log, cfg),
        }
    }
}

impl FlushStrategy for PoolFlush {
    fn name(&self) -> &'static str {
        NAME
    }

    fn await_ack(&self, _end: u64) -> Result<PutStatus> {
        Ok(PutStatus::PutOk)
    }

    /// Acknowledged at once, on the calling thread.
    fn ack_async(&self, _end: u64, done: AckCallback) {
        done(Ok(PutStatus::PutOk));
    }

    fn stop(&self) {
        self.committer.stop();
        self.flusher.stop();
    }
}
