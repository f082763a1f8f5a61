//! The dispatcher: builds consume-queue units and index items from the
//! commit log, from the dispatched offset up to the confirm offset (the
//! flushed offset under sync and group, so consumers never see a message
//! that a power loss could take back; the committed offset otherwise).
//!
//! Invariant: `dispatched <= confirm offset <= committed`, and the
//! dispatched offset is always a record boundary.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::Inner;
use crate::error::{Error, Result};
use crate::index::IndexEntry;
use crate::log::record::CrcCheck;
use crate::log::scan::{self, ScanEnd};
use crate::message::{sys_flag, PROPERTY_UNIQ_KEY};
use crate::queue::{tags_code, Unit, UNIT_BYTES};
use crate::service::Periodic;

/// Index keys buffered by a dispatch round before they are written.
const INDEX_BATCH_KEYS: usize = 16 * 1024;

/// Starts the dispatcher thread: a round every millisecond; a failed round
/// poisons the store (consumers would otherwise wait forever).
pub(super) fn spawn(inner: Arc<Inner>) -> Periodic {
    Periodic::spawn(
        "mqlab-dispatcher",
        Duration::from_millis(1),
        move || match inner.dispatch_round() {
            Ok(_) => true,
            Err(e) => {
                inner.log.poison_with(format!("dispatcher failed: {e}"));
                inner.log.wake_blocked();
                false
            }
        },
    )
}

impl Inner {
    /// Offset consumers may see: durable data only under sync and group,
    /// and on a slave ([`crate::Store::set_slave_mode`]).
    pub(super) fn confirm_offset(&self) -> u64 {
        if self.cfg.flush.kind.acks_durable() || self.slave_mode.load(Ordering::Acquire) {
            self.log.flushed()
        } else {
            self.log.committed()
        }
    }

    /// Builds queue units and index items for every record between the
    /// dispatched and the confirm offset. Returns the records dispatched.
    pub(super) fn dispatch_round(&self) -> Result<u64> {
        self.dispatch_round_with(false)
    }

    /// [`Self::dispatch_round`]; with `rewrite`, units the queues already
    /// claim to hold are written again (crash recovery).
    pub(super) fn dispatch_round_with(&self, rewrite: bool) -> Result<u64> {
        let _g = self.dispatch_lock.lock().unwrap_or_else(|e| e.into_inner());
        let from = self.dispatched.load(Ordering::Acquire);
        let to = self.confirm_offset();
        debug_assert!(
            to <= self.log.committed(),
            "confirm offset {to} past committed"
        );
        if from >= to {
            return Ok(0);
        }
        // topic -> queue -> (first queue offset, encoded units)
        let mut runs: HashMap<String, HashMap<u32, (u64, Vec<u8>)>> = HashMap::new();
        let mut keys = Vec::new();
        let mut result = Ok(());
        let mut count = 0u64;
        let mut last_ts = None;
        let outcome = scan::scan(&self.log, from, to, CrcCheck::Off, &mut |m| {
            count += 1;
            last_ts = Some(m.store_timestamp_ms);
            let tx = m.sys_flag & sys_flag::TRANSACTION_MASK;
            if tx != sys_flag::TRANSACTION_PREPARED && tx != sys_flag::TRANSACTION_ROLLBACK {
                let unit = Unit {
                    phys_offset: m.phys_offset,
                    size: m.total_size,
                    tags_code: tags_code(m.property(crate::message::PROPERTY_TAGS)),
                };
                if !runs.contains_key(m.topic) {
                    runs.insert(m.topic.to_string(), HashMap::new());
                }
                let per_topic = runs.get_mut(m.topic).expect("inserted above");
                let run = per_topic
                    .entry(m.queue_id)
                    .or_insert_with(|| (m.queue_offset, Vec::new()));
                if run.0 + (run.1.len() as u64 / UNIT_BYTES) != m.queue_offset {
                    // Not contiguous: write what we have and start over.
                    let (q, bytes) = std::mem::replace(run, (m.queue_offset, Vec::new()));
                    if let Err(e) = self.write_units(m.topic, m.queue_id, q, &bytes, rewrite) {
                        result = Err(e);
                        return false;
                    }
                }
                run.1.extend_from_slice(&unit.encode());
            }
            if let Some(ix) = &self.index {
                let entry = |key: String| IndexEntry {
                    key,
                    phys: m.phys_offset,
                    store_ts: m.store_timestamp_ms,
                };
                keys.extend(m.keys().map(|k| entry(format!("{}#{k}", m.topic))));
                if let Some(u) = m.property(PROPERTY_UNIQ_KEY) {
                    keys.push(entry(format!("{}#{u}", m.topic)));
                }
                // Bounded memory on a large backlog.
                if keys.len() >= INDEX_BATCH_KEYS {
                    if let Err(e) = ix.put_batch(&keys) {
                        result = Err(e);
                        return false;
                    }
                    keys.clear();
                }
            }
            true
        })?;
        result?;
        if let Some(ix) = &self.index {
            ix.put_batch(&keys)?;
        }
        for (topic, queues) in runs {
            for (qid, (q, bytes)) in queues {
                self.write_units(&topic, qid, q, &bytes, rewrite)?;
            }
        }
        if let ScanEnd::Bad(at, e) = outcome.reason {
            return Err(Error::Corrupt {
                path: self.log.dir().to_path_buf(),
                offset: at,
                reason: format!("dispatcher cannot read committed data: {e}"),
            });
        }
        if let Some(ts) = last_ts {
            self.dispatched_ts.store(ts, Ordering::Release);
        }
        debug_assert!(
            from <= outcome.end && outcome.end <= to,
            "dispatched {} outside [{from}, {to}]",
            outcome.end
        );
        self.dispatched.store(outcome.end, Ordering::Release);
        let (m, cv) = &self.dispatch_signal;
        drop(m.lock().unwrap_or_else(|e| e.into_inner()));
        cv.notify_all();
        Ok(count)
    }

    /// Writes a run of units, skipping those the queue already holds unless
    /// `rewrite`.
    fn write_units(
        &self,
        topic: &str,
        qid: u32,
        first: u64,
        bytes: &[u8],
        rewrite: bool,
    ) -> Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let cq = self.queues.get_or_create(topic, qid)?;
        if rewrite {
            return cq.put_units(first, bytes);
        }
        let have = cq.max_offset();
        let n = bytes.len() as u64 / UNIT_BYTES;
        if first + n <= have {
            return Ok(());
        }
        let skip = have.saturating_sub(first);
        cq.put_units(first + skip, &bytes[(skip * UNIT_BYTES) as usize..])
    }
}
