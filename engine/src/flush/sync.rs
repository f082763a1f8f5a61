//! `sync`: one fdatasync per message, by the putting thread, before the
//! ack. The honest per-message cost; no batching at all (concurrent puts
//! still each pay their own fdatasync, serialized on the log's flush lock).

use std::sync::Arc;

use super::FlushStrategy;
use crate::error::Result;
use crate::log::CommitLog;
use crate::message::PutStatus;

/// Name in results.
pub const NAME: &str = "sync";

/// The sync strategy.
pub struct SyncFlush {
    log: Arc<CommitLog>,
}

impl SyncFlush {
    /// No threads to start.
    pub fn new(log: Arc<CommitLog>) -> Self {
        SyncFlush { log }
    }
}

impl FlushStrategy for SyncFlush {
    fn name(&self) -> &'static str {
        NAME
    }

    fn await_ack(&self, end: u64) -> Result<PutStatus> {
        self.log.flush(true)?;
        debug_assert!(self.log.flushed() >= end);
        Ok(PutStatus::PutOk)
    }

    fn stop(&self) {}
}
