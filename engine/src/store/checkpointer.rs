//! The checkpointer: every `checkpoint_interval_ms` flushes the consume
//! queues and the index, then writes the checkpoint saying how far they
//! and the commit log are durable (the starting point of the next
//! recovery after a crash).
//!
//! Invariant: the checkpoint never vouches for more than is durable: the
//! dispatched offset is read before the queues are flushed, the flushed
//! offset after.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::Inner;
use crate::error::Result;
use crate::log::checkpoint::{Checkpoint, CheckpointExt};
use crate::service::Periodic;

/// Starts the checkpointer thread; a failed checkpoint poisons the store.
pub(super) fn spawn(inner: Arc<Inner>, interval_ms: u64) -> Periodic {
    Periodic::spawn(
        "mqlab-checkpoint",
        Duration::from_millis(interval_ms),
        move || match inner.write_checkpoint(0) {
            Ok(()) => true,
            Err(e) => {
                inner.log.poison_with(format!("checkpoint failed: {e}"));
                inner.log.wake_blocked();
                false
            }
        },
    )
}

impl Inner {
    /// Flushes queues and index, then records how far they are durable.
    /// `clean_end` > 0 only at a clean shutdown.
    pub(super) fn write_checkpoint(&self, clean_end: u64) -> Result<()> {
        let Some(cp) = &self.checkpoint else {
            return Ok(());
        };
        // Timestamp before offset: a newer offset with an older timestamp
        // only makes RocketMQ's timestamp-based recovery start earlier.
        let logics_ts = self.dispatched_ts.load(Ordering::Acquire);
        let dispatched = self.dispatched.load(Ordering::Acquire);
        self.queues.flush()?;
        if let Some(ix) = &self.index {
            ix.flush()?;
        }
        let (physic_ts, logics_ts) = {
            let mut ts = self.checkpoint_ts.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(p) = self.log.flushed_store_timestamp() {
                ts.0 = p;
            }
            ts.1 = logics_ts;
            *ts
        };
        cp.write(&Checkpoint {
            physic_msg_timestamp: physic_ts,
            logics_msg_timestamp: logics_ts,
            index_msg_timestamp: logics_ts,
            master_flushed_offset: 0,
            confirm_phys_offset: self.log.flushed(),
            ext: Some(CheckpointExt {
                dispatched,
                flushed: self.log.flushed(),
                clean_end,
                records_have_crc: self.records_have_crc,
            }),
        })
    }
}
