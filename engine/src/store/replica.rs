//! What the store offers replication (RocketMQ's classic HA, built in
//! `mqlab-broker`'s `ha` module):
//!
//! - a slave's side: [`Store::append_raw`] appends records copied from the
//!   master byte for byte, and [`Store::set_slave_mode`] refuses puts and
//!   keeps the dispatcher (so consume queues, the index and every pull)
//!   at the flushed offset, so a consumer of a slave never sees what the
//!   slave could lose;
//! - a master's side: [`Store::read_log`] reads the committed log as
//!   stored, for streaming it;
//! - a sync master's side: [`Store::set_replica_gate`] installs what every
//!   put waits for after its flush acknowledgement (RocketMQ's
//!   `CommitLog.handleHA`: the put's answer waits until a slave has it).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{Inner, Store};
use crate::error::{Error, Result};
use crate::log::record::CrcCheck;
use crate::log::RawAppend;
use crate::message::PutStatus;

/// What a [`ReplicaGate`] calls once it decided on a put: `PutOk` (a
/// slave has it), or FLUSH_SLAVE_TIMEOUT / SLAVE_NOT_AVAILABLE with why.
pub type ReplicaCallback = Box<dyn FnOnce(PutStatus, Option<String>) + Send + 'static>;

/// What a put waits for after the flush strategy acknowledged it, when a
/// gate is installed ([`Store::set_replica_gate`]; a SYNC_MASTER's HA
/// service).
pub trait ReplicaGate: Send + Sync {
    /// Calls `done` exactly once, when the log up to `end` is replicated
    /// (`PutOk`), or with FLUSH_SLAVE_TIMEOUT / SLAVE_NOT_AVAILABLE. May
    /// call it before returning. `done` must be quick and must not put.
    fn when_replicated(&self, end: u64, done: ReplicaCallback);
}

impl Store {
    /// A slave's append: `bytes` are the master's commit log from physical
    /// offset `phys_offset`, which must be this log's write end (else
    /// [`Error::OffsetMismatch`] naming both offsets). Every record in the
    /// chunk is decoded and checked first (lengths, position, body CRC, and
    /// the record CRC as this store demands it: required when its records
    /// carry one, so recovery will not refuse them later); any failure
    /// refuses the whole chunk and nothing is written. The records are
    /// written as they are (the log stays byte-identical to the master's);
    /// a blank record must fill exactly the rest of its segment and rolls
    /// to the next one.
    ///
    /// An empty store (nothing ever appended) also accepts a first chunk at
    /// a segment boundary past 0 and starts there: RocketMQ streams a new
    /// slave from the base of the master's last segment. Its consume
    /// queues then start at the queue offsets of their first records.
    ///
    /// Only whole records are taken: the result says how many bytes
    /// (`taken`); a record (or a blank's padding) cut at the chunk's end is
    /// left to the caller, who offers it again with what follows, starting
    /// at the new write end. Nothing is buffered here.
    ///
    /// The store's own flush strategy makes the bytes durable (it is asked
    /// to cover them, as for a put), and its dispatcher builds consume
    /// queues and the index from them. Refused (SERVICE_NOT_AVAILABLE-like
    /// `Error::Unavailable`/`Poisoned`) when the store is shut down,
    /// read-only, poisoned or write-blocked.
    pub fn append_raw(&self, phys_offset: u64, bytes: &[u8]) -> Result<RawAppend> {
        let inner = &*self.inner;
        if inner.closed.load(Ordering::Acquire) {
            return Err(Error::Unavailable(if inner.cfg.read_only {
                "store is read-only".into()
            } else {
                "store is shut down".into()
            }));
        }
        if let Some(reason) = &*inner.write_block.lock().unwrap_or_else(|e| e.into_inner()) {
            return Err(Error::Unavailable(format!(
                "store refuses writes: {reason}"
            )));
        }
        inner.in_flight.fetch_add(1, Ordering::AcqRel);
        let r = self.append_raw_counted(phys_offset, bytes);
        inner.in_flight.fetch_sub(1, Ordering::AcqRel);
        r
    }

    fn append_raw_counted(&self, phys_offset: u64, bytes: &[u8]) -> Result<RawAppend> {
        let inner = &*self.inner;
        let crc = if inner.records_have_crc {
            CrcCheck::Required
        } else {
            CrcCheck::Present
        };
        let log = &inner.log;
        if phys_offset > 0 && log.is_empty() && phys_offset.is_multiple_of(log.segment_bytes()) {
            // A new slave of a master whose log starts later: begin there.
            // Under the dispatch lock, so no round sees the log moved and
            // the dispatched offset not.
            let _d = inner
                .dispatch_lock
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if log.is_empty() {
                log.start_at(phys_offset)?;
                inner.dispatched.store(phys_offset, Ordering::Release);
            }
        }
        let r = log.append_raw(phys_offset, bytes, crc)?;
        if r.taken > 0 {
            // Sync and group flush only when asked: ask for these bytes.
            inner.strategy.ack_async(r.end, Box::new(|_| {}));
        }
        Ok(r)
    }

    /// Slave mode (RocketMQ's `brokerRole = SLAVE` as its store sees it):
    /// with `on`, every put is refused with SERVICE_NOT_AVAILABLE ("slave
    /// mode", as RocketMQ's store refuses them) while
    /// [`Store::append_raw`] goes on, and the dispatcher builds consume
    /// queues and the index only up to the flushed offset whatever the
    /// flush strategy (as it always does under sync and group), so a
    /// slave's consumers never see bytes a crash of the slave could take
    /// back. Off by default; switching it off (a promotion) makes the
    /// store a writable master's again.
    pub fn set_slave_mode(&self, on: bool) {
        self.inner.slave_mode.store(on, Ordering::Release);
    }

    /// True in slave mode ([`Store::set_slave_mode`]).
    pub fn slave_mode(&self) -> bool {
        self.inner.slave_mode.load(Ordering::Acquire)
    }

    /// A master's read for replication: up to `buf.len()` bytes of the
    /// commit log from `phys`, within one segment and below the committed
    /// offset, as stored (records, blanks, a blank's padding). Returns how
    /// many; 0 at the committed end, `Error::NotFound` below the first
    /// stored byte (retention deleted it).
    pub fn read_log(&self, phys: u64, buf: &mut [u8]) -> Result<usize> {
        let log = &self.inner.log;
        if phys < log.min_offset() {
            return Err(Error::NotFound(phys));
        }
        log.read_raw(phys, buf, log.committed())
    }

    /// Installs (or removes) what every put waits for after its flush
    /// acknowledgement; see [`ReplicaGate`]. A put the flush strategy did
    /// not acknowledge (FLUSH_DISK_TIMEOUT, SERVICE_NOT_AVAILABLE) keeps
    /// that status and does not wait.
    pub fn set_replica_gate(&self, gate: Option<Arc<dyn ReplicaGate>>) {
        *self
            .inner
            .replica_gate
            .write()
            .unwrap_or_else(|e| e.into_inner()) = gate;
    }
}

impl Inner {
    /// The installed gate, if any.
    pub(super) fn replica_gate(&self) -> Option<Arc<dyn ReplicaGate>> {
        self.replica_gate
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
