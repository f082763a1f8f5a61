//! A follower's truncation (controller-mode replication, RocketMQ's
//! `truncateFiles` when a slave meets a new master): the commit log, the
//! consume queues and the index are cut back to an offset while the store
//! stays open, reported as recovery reports its cuts.

use std::sync::atomic::Ordering;

use super::{Store, Truncation};
use crate::error::{Error, Result};
use crate::log::QueueTable;
use crate::queue::UNIT_BYTES;

impl Store {
    /// Cuts everything from physical offset `offset` (a record boundary,
    /// at or past the first stored byte) to the write end: commit log,
    /// consume-queue units pointing at or past it, index files holding only
    /// such items; the dispatched offset and every queue's next offset move
    /// back with it. Only in slave mode ([`Store::set_slave_mode`]), with
    /// nothing being appended (the caller is the only writer, between
    /// transfers). Returns what was cut (empty when `offset` is the write
    /// end or past it).
    pub fn truncate_to(&self, offset: u64) -> Result<Vec<Truncation>> {
        let inner = &*self.inner;
        if !self.slave_mode() {
            return Err(Error::Unavailable(
                "only a slave's store is truncated (slave mode is off)".into(),
            ));
        }
        if inner.closed.load(Ordering::Acquire) {
            return Err(Error::Unavailable("store is shut down".into()));
        }
        // Everything before the cut dispatched first: the queues then give
        // every queue's next offset at the cut.
        if inner.log.offsets().written > offset {
            inner.log.commit()?;
            inner.log.flush(false)?;
            while inner.dispatched.load(Ordering::Acquire) < offset.min(inner.confirm_offset()) {
                if inner.dispatch_round()? == 0 {
                    break;
                }
            }
        }
        let _d = inner
            .dispatch_lock
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let (removed, bytes) = inner.log.cut_live(offset)?;
        if bytes == 0 {
            return Ok(Vec::new());
        }
        let s = inner.log.segment_bytes();
        let mut out = vec![Truncation {
            file: inner
                .log
                .dir()
                .join(crate::log::file_name(offset - offset % s)),
            offset,
            bytes,
            reason: "past the last offset consistent with the new master's epochs".into(),
        }];
        for path in removed {
            out.push(Truncation {
                file: path,
                offset,
                bytes: s,
                reason: "segment past the truncation point".into(),
            });
        }
        let mut table = QueueTable::new();
        for (topic, qid, cq) in inner.queues.all() {
            let cut = cq.truncate_phys(offset)?;
            if cut > 0 {
                out.push(Truncation {
                    file: self
                        .dir()
                        .join("consumequeue")
                        .join(&topic)
                        .join(qid.to_string()),
                    offset: cq.max_offset() * UNIT_BYTES,
                    bytes: cut * UNIT_BYTES,
                    reason: format!("{cut} units pointed at or past the cut {offset}"),
                });
            }
            table.entry(topic).or_default().insert(qid, cq.max_offset());
        }
        if let Some(ix) = &inner.index {
            for path in ix.truncate_phys(offset)? {
                out.push(Truncation {
                    file: path,
                    offset,
                    bytes: 0,
                    reason: "index file holds only items past the cut".into(),
                });
            }
        }
        inner.log.set_queue_table(table);
        inner.dispatched.fetch_min(offset, Ordering::AcqRel);
        Ok(out)
    }
}
