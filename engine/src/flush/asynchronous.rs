//! `async`: acknowledge after the write; a flusher thread makes data
//! durable every `flush_interval_ms` when at least `flush_least_pages`
//! pages are dirty, and everything every `flush_thorough_interval_ms`
//! (RocketMQ's FlushRealTimeService).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{AckCallback, FlushStrategy};
use crate::error::Result;
use crate::flush::FlushConfig;
use crate::log::CommitLog;
use crate::message::PutStatus;
use crate::service::Periodic;

/// Name in results.
pub const NAME: &str = "async";

const PAGE_BYTES: u64 = 4096;

/// The async strategy.
pub struct AsyncFlush {
    flusher: Periodic,
}

/// Starts the flusher thread for `log` (shared with the pool strategy).
pub(crate) fn spawn_flusher(log: Arc<CommitLog>, cfg: &FlushConfig) -> Periodic {
    let least = cfg.flush_least_pages * PAGE_BYTES;
    let thorough = Duration::from_millis(cfg.flush_thorough_interval_ms);
    let mut last_full = Instant::now();
    Periodic::spawn(
        "mqlab-flusher",
        Duration::from_millis(cfg.flush_interval_ms),
        move || {
            let dirty = log.committed().saturating_sub(log.flushed());
            let full_due = last_full.elapsed() >= thorough;
            if dirty == 0 || (dirty < least && !full_due) {
                return true;
            }
            if full_due {
                last_full = Instant::now();
            }
            // On error the log is poisoned; the flusher has nothing left to do.
            log.flush(false).is_ok()
        },
    )
}

impl AsyncFlush {
    /// Starts the flusher.
    pub fn start(log: Arc<CommitLog>, cfg: &FlushConfig) -> Self {
        AsyncFlush {
            flusher: spawn_flusher(log, cfg),
        }
    }
}

impl FlushStrategy for AsyncFlush {
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
        self.flusher.stop();
    }
}
