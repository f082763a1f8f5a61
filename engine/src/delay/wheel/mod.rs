//! The persistent time wheel (RocketMQ 5.x timer messages, and better).
//!
//! A timer is a record in the commit log (topic `rmq_sys_wheel_timer`,
//! queue 0) plus a 32-byte unit in the timer log, linked into the wheel
//! slot of its due time. The wheel is an array of `slots` entries, each
//! `precision_ms` wide, covering a window of `slots * precision_ms`
//! (default 1 s x 172,800 = 2 days); slot index = (due / precision) mod
//! slots. A due time beyond the window is linked into the last slot of the
//! window as a "rolled" unit and re-filed when that slot is loaded, as often
//! as needed up to `max_delay_ms` (default 3 days). Rolling re-files a
//! 32-byte unit; the message itself is never rewritten.
//!
//! Pipeline (plain threads, no per-timer wake-ups):
//! - enqueue: reads the timer queue's consume-queue units in order (the due
//!   time comes from a cache filled by `schedule`, or from the record) and
//!   links them into the wheel. Its position is the queue offset `Q`.
//! - loader: `prefetch_ms` before a slot starts, reads the slot's units
//!   (walking the backward chain, or one sequential read when the slot is
//!   dense), drops cancelled ones, sorts by due time, reads the records and
//!   builds the messages to deliver, in chunks, so that at the due time only
//!   the puts remain. At most `max_ready` prepared timers are held (a single
//!   slot may exceed it).
//! - deliver (`deliver_threads`): take every ready timer whose due time has
//!   come, in batches, and put them to their real topic. A timer is never
//!   delivered before its due millisecond, whatever the slot width: the
//!   precision only sets how coarse the wheel's bookkeeping is.
//! - checkpoint (every `checkpoint_interval_ms`): see below.
//!
//! Persistence. The commit log is the source of truth; the timer log and the
//! wheel are an index of it. A checkpoint writes the timer log out and syncs
//! it, writes the wheel entries changed since that copy was last written
//! into the copy of `timerwheel` the newest checkpoint does not use (two
//! copies), syncs, then writes the `config/timercheck` record (two records
//! alternating, each with a CRC): timer-log end `P`, queue offsets, the
//! delivered-through slot `R`, and the commit-log offset `C` from which
//! deliveries of slots >= R can have happened. A crash at any instant
//! leaves the previous checkpoint and its wheel copy intact. Recovery loads
//! that wheel copy, cuts the timer log at `P`, re-links the timer records
//! queued after `Q`, scans the commit log from `C` for delivered copies
//! (property `TIMER_SOURCE_OFFSET`) so that no timer is delivered twice,
//! and reloads every slot from `R`. `R` only moves past a slot once every
//! put delivering it was acknowledged (so the progress is exactly as durable
//! as the store's flush strategy makes a put), and timers are only linked
//! into slots below the persisted `R + window`, so a slot entry the
//! checkpoint needs is never reused before the checkpoint moves past it.
//!
//! Cancel writes a cancel record (queue 1 of the timer topic) carrying the
//! cancelled record's offset and due time; it becomes a cancel unit in the
//! same slot, so the timer is dropped when the slot loads (or at once when
//! it is already loaded), after a restart too.
//!
//! One file per job: `config.rs` (settings), `index.rs` (the in-memory
//! wheel over the timer log), `file.rs` (the `timerwheel` file, two
//! copies), `check.rs` (the `config/timercheck` records and the
//! checkpoint), `recovery.rs` (open), `deliver.rs` (the enqueue, load and
//! delivery threads); this file holds the shared state and the public API.

mod check;
mod config;
mod deliver;
mod file;
mod index;
mod recovery;

pub use config::WheelConfig;
pub use index::{Slot, WheelIndex};

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::timerlog::UnitKind;
use super::{
    deliver_ms_of, put_outcome, Clock, Counter, DelayScheduler, DelayStats, DeliverAt, PutOutcome,
    TimerHandle, PROPERTY_TIMER_CANCEL_OFFSET, PROPERTY_TIMER_DEL_UNIQKEY, TIMER_CANCEL_QUEUE,
    TIMER_QUEUE, TIMER_TOPIC,
};
use crate::error::{Error, Result};
use crate::io::File;
use crate::message::{Message, PROPERTY_UNIQ_KEY};
use crate::service::{Service, Signal};
use crate::store::Store;
use check::{CheckRecord, CHECK_RECORD_BYTES};
use file::WheelFile;

/// Name in results and charts.
pub const NAME: &str = "wheel";
/// Bytes per wheel entry.
pub const SLOT_BYTES: u64 = 32;
/// Most slots a wheel may have (16 Mi entries, 512 MiB per copy).
pub const MAX_SLOTS: u64 = 1 << 24;
/// A timer whose slot is loaded.
struct Ready {
    due: i64,
    phys: u64,
    /// The message to put, once prepared.
    msg: Option<Message>,
}

/// A loaded slot: its timers in due order and what is still in flight.
struct Loaded {
    queue: VecDeque<Ready>,
    in_flight: usize,
    loading: bool,
    /// Commit-log written offset when the slot was loaded: every delivery
    /// of this slot lies at or after it.
    load_offset: u64,
    /// Timers cancelled in this slot (also those not seen yet).
    cancels: HashSet<u64>,
}

impl Loaded {
    fn new(load_offset: u64) -> Loaded {
        Loaded {
            queue: VecDeque::new(),
            in_flight: 0,
            loading: false,
            load_offset,
            cancels: HashSet::new(),
        }
    }
}

struct State {
    index: WheelIndex,
    /// Next timer-queue offset to link.
    q_timer: u64,
    /// Next cancel-queue offset to apply.
    q_cancel: u64,
    /// Next slot to load.
    load_cursor: i64,
    loaded: BTreeMap<i64, Loaded>,
    /// Timers in the loaded slots' queues.
    ready_len: usize,
    /// Estimated bytes of the prepared messages.
    ready_bytes: u64,
    /// R of the newest durable checkpoint.
    r_persisted: i64,
    gen: u64,
    /// Timers found delivered in the commit log after recovery.
    dedup: HashSet<u64>,
    /// Size of the due cache after its last sweep.
    cache_sweep_at: usize,
    /// A past-due timer was linked into the next slot to load: load it now,
    /// whatever the prefetch horizon says.
    urgent: bool,
    /// Delivered messages, dropped by the loader thread that allocated them
    /// (freeing on the delivery threads costs them allocator contention in
    /// the middle of a burst).
    graveyard: Vec<Message>,
}

impl State {
    /// Every slot before this has been delivered.
    fn delivered_through(&self) -> i64 {
        self.loaded
            .keys()
            .next()
            .copied()
            .unwrap_or(self.load_cursor)
    }
}

struct Inner {
    store: Arc<Store>,
    cfg: WheelConfig,
    clock: Arc<dyn Clock>,
    window_ms: i64,
    state: Mutex<State>,
    /// Due times of timers scheduled but not yet linked, by record offset,
    /// so the enqueue step rarely reads a record.
    due_cache: Mutex<HashMap<u64, i64>>,
    wheel_file: WheelFile,
    check_path: PathBuf,
    check_file: Arc<dyn File>,
    enqueue_lock: Mutex<()>,
    load_lock: Mutex<()>,
    checkpoint_lock: Mutex<()>,
    /// Wakes the delivery threads when timers become ready.
    work: Signal,
    poisoned: Mutex<Option<String>>,
    last_tick_checkpoint_ms: std::sync::atomic::AtomicI64,
    scheduled: Counter,
    delivered: Counter,
    cancelled: Counter,
    rolled: Counter,
    dedup_skipped: Counter,
    dropped: Counter,
    recovery_ms: AtomicU64,
}

/// What one delivery batch did.
#[derive(Debug, Default, Clone, Copy)]
struct BatchOutcome {
    /// Timers taken off the queues (delivered, dropped or put back).
    taken: usize,
    delivered: u64,
    /// Put back because the store refused the put.
    retried: usize,
    /// Due time of the next ready timer.
    next_due: Option<i64>,
}

/// The persistent time wheel.
pub struct WheelScheduler {
    inner: Arc<Inner>,
    threads: Service,
}

impl std::fmt::Debug for WheelScheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WheelScheduler")
            .field("precision_ms", &self.inner.cfg.precision_ms)
            .field("slots", &self.inner.cfg.slots())
            .finish()
    }
}

fn msg_bytes(m: &Message) -> u64 {
    (m.body.len()
        + m.topic.len()
        + m.properties
            .iter()
            .map(|(k, v)| k.len() + v.len() + 48)
            .sum::<usize>()
        + std::mem::size_of::<Message>()) as u64
}
impl WheelScheduler {
    /// The configuration in force.
    pub fn config(&self) -> &WheelConfig {
        &self.inner.cfg
    }

    #[doc(hidden)]
    pub fn debug_state(&self) -> String {
        let st = self.inner.lock();
        let live: Vec<(i64, u32)> = st
            .index
            .slots
            .iter()
            .filter(|e| e.count > 0 && e.time_ms >= st.delivered_through())
            .map(|e| (e.time_ms, e.count))
            .collect();
        format!(
            "cursor {} R {} r_persisted {} loaded {:?} linked {} live entries {:?}",
            st.load_cursor,
            st.delivered_through(),
            st.r_persisted,
            st.loaded.keys().collect::<Vec<_>>(),
            st.index.linked(),
            live,
        )
    }
}
impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn poison(&self, why: String) {
        let mut p = self.poisoned.lock().unwrap_or_else(|e| e.into_inner());
        if p.is_none() {
            *p = Some(why);
        }
    }

    fn check_poison(&self) -> Result<()> {
        match &*self.poisoned.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(why) => Err(Error::Poisoned(format!("time wheel stopped: {why}"))),
            None => Ok(()),
        }
    }

    fn slot_ms(&self, due: i64) -> i64 {
        let p = self.cfg.precision_ms as i64;
        due.div_euclid(p) * p
    }

    /// Links a timer or cancel unit into the wheel, or into a loaded slot's
    /// queue when its slot is already loaded.
    fn ingest(&self, st: &mut State, kind: UnitKind, phys: u64, due: i64) -> Result<()> {
        let p = self.cfg.precision_ms as i64;
        let r = st.delivered_through();
        let mut slot = self.slot_ms(due).max(r);
        // Entries of rounds the durable checkpoint still needs must not be
        // reused: later due times are rolled.
        let limit = st.r_persisted.min(r) + self.window_ms;
        let rolled = slot >= limit;
        if rolled {
            slot = (limit - p).max(r);
        }
        if rolled || slot >= st.load_cursor {
            if !rolled && slot > self.slot_ms(due) {
                // Past due, moved to the next slot to load: load it now.
                st.urgent = true;
            }
            st.index.link(kind, rolled, slot, phys, due)?;
            return Ok(());
        }
        st.index.link(kind, false, slot, phys, due)?;
        st.index.note_taken(1);
        let written = self.store.offsets().written;
        let State {
            loaded,
            dedup,
            ready_len,
            ..
        } = st;
        let l = loaded.entry(slot).or_insert_with(|| Loaded::new(written));
        match kind {
            UnitKind::Timer => {
                if l.cancels.contains(&phys) {
                    self.cancelled.add(1);
                } else if dedup.remove(&phys) {
                    self.dedup_skipped.add(1);
                } else {
                    let at = l.queue.partition_point(|x| x.due <= due);
                    l.queue.insert(
                        at,
                        Ready {
                            due,
                            phys,
                            msg: None,
                        },
                    );
                    *ready_len += 1;
                }
            }
            UnitKind::Cancel => {
                if let Some(i) = l.queue.iter().position(|x| x.phys == phys) {
                    if let Some(x) = l.queue.remove(i) {
                        *ready_len -= 1;
                        st.ready_bytes = st
                            .ready_bytes
                            .saturating_sub(x.msg.as_ref().map(msg_bytes).unwrap_or(0));
                    }
                    self.cancelled.add(1);
                }
                if let Some(l) = st.loaded.get_mut(&slot) {
                    l.cancels.insert(phys);
                }
            }
        }
        Self::close_if_done(st, slot);
        Ok(())
    }

    fn close_if_done(st: &mut State, slot: i64) {
        if let Some(l) = st.loaded.get(&slot) {
            if l.queue.is_empty() && l.in_flight == 0 && !l.loading {
                st.loaded.remove(&slot);
            }
        }
    }
    fn schedule(&self, msg: Message, at: DeliverAt) -> Result<TimerHandle> {
        self.check_poison()?;
        let now = self.clock.now_ms();
        let due = match at {
            DeliverAt::Level(l) => {
                let d = l
                    .checked_sub(1)
                    .and_then(|i| self.cfg.levels_ms.get(i as usize))
                    .ok_or_else(|| {
                        Error::IllegalMessage(format!(
                            "delay level {l} is not in 1..={}",
                            self.cfg.levels_ms.len()
                        ))
                    })?;
                now + *d as i64
            }
            DeliverAt::AfterMs(d) => now + d as i64,
            DeliverAt::AtMs(t) => t,
        };
        if due - now > self.cfg.max_delay_ms as i64 {
            return Err(Error::IllegalMessage(format!(
                "delivery in {} ms is beyond max_delay_ms {}",
                due - now,
                self.cfg.max_delay_ms
            )));
        }
        let m = super::to_system_topic(msg, TIMER_TOPIC, TIMER_QUEUE, due)?;
        let r = self.store.put(&m);
        match put_outcome(&r) {
            PutOutcome::Stored => {}
            PutOutcome::Rejected(d) => return Err(Error::IllegalMessage(d)),
            PutOutcome::Retry(d) => return Err(Error::Unavailable(d)),
        }
        let o = r.offsets.expect("a stored put has offsets");
        self.due_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(o.phys_offset, due);
        self.scheduled.add(1);
        Ok(TimerHandle {
            phys_offset: o.phys_offset,
            queue_offset: o.queue_offset,
            deliver_ms: due,
        })
    }

    fn cancel(&self, h: &TimerHandle, uniq: Option<&str>) -> Result<bool> {
        self.check_poison()?;
        if h.deliver_ms <= self.clock.now_ms() {
            return Ok(false);
        }
        let mut m = Message::new(TIMER_TOPIC, Vec::new())
            .with_queue(TIMER_CANCEL_QUEUE)
            .with_property(PROPERTY_TIMER_CANCEL_OFFSET, h.phys_offset.to_string())
            .with_property(super::PROPERTY_TIMER_DELIVER_MS, h.deliver_ms.to_string());
        if let Some(u) = uniq {
            m = m.with_property(PROPERTY_TIMER_DEL_UNIQKEY, u);
        }
        let r = self.store.put(&m);
        match put_outcome(&r) {
            PutOutcome::Stored => Ok(true),
            PutOutcome::Rejected(d) => Err(Error::IllegalMessage(d)),
            PutOutcome::Retry(d) => Err(Error::Unavailable(d)),
        }
    }
    fn stats(&self) -> DelayStats {
        let cache = self
            .due_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .capacity() as u64;
        let st = self.lock();
        let in_flight: usize = st.loaded.values().map(|l| l.in_flight).sum();
        let ram = st.index.ram_bytes()
            + (st.ready_len * std::mem::size_of::<Ready>()) as u64
            + st.ready_bytes
            + cache * 17
            + st.dedup.capacity() as u64 * 9
            + st.loaded.len() as u64 * 128;
        DelayStats {
            scheduled: self.scheduled.get(),
            delivered: self.delivered.get(),
            cancelled: self.cancelled.get(),
            rolled: self.rolled.get(),
            dedup_skipped: self.dedup_skipped.get(),
            dropped: self.dropped.get(),
            pending: st.index.linked() + st.ready_len as u64 + in_flight as u64,
            ram_bytes: ram,
            index_bytes: st.index.tl.stored_bytes()
                + 2 * self.cfg.slots() * SLOT_BYTES
                + 2 * CHECK_RECORD_BYTES,
            recovery_ms: self.recovery_ms.load(Ordering::Relaxed),
        }
    }
}

impl DelayScheduler for WheelScheduler {
    fn name(&self) -> &'static str {
        NAME
    }

    fn schedule(&self, msg: Message, at: DeliverAt) -> Result<TimerHandle> {
        self.inner.schedule(msg, at)
    }

    fn cancel(&self, handle: &TimerHandle) -> Result<bool> {
        self.inner.cancel(handle, None)
    }

    fn cancel_by_key(&self, key: &str) -> Result<usize> {
        let mut n = 0;
        for m in self
            .inner
            .store
            .query_by_key(TIMER_TOPIC, key, 0, i64::MAX)?
        {
            let Some(due) = deliver_ms_of(&m.properties) else {
                continue;
            };
            if m.queue_id != TIMER_QUEUE {
                continue;
            }
            let h = TimerHandle {
                phys_offset: m.phys_offset,
                queue_offset: m.queue_offset,
                deliver_ms: due,
            };
            let uniq = m.properties.get(PROPERTY_UNIQ_KEY).map(String::as_str);
            if self.inner.cancel(&h, uniq)? {
                n += 1;
            }
        }
        Ok(n)
    }

    fn tick(&self) -> Result<u64> {
        self.inner.tick()
    }

    fn persist(&self) -> Result<()> {
        self.inner.checkpoint()
    }

    fn stats(&self) -> DelayStats {
        self.inner.stats()
    }

    fn shutdown(self: Box<Self>) -> Result<()> {
        self.inner.work.stop();
        self.threads.stop();
        self.inner.checkpoint()
    }
}

impl Drop for WheelScheduler {
    fn drop(&mut self) {
        // A crash unless shutdown ran: stop the threads, persist nothing.
        self.inner.work.stop();
        self.threads.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::sim::SimEnv;
    use crate::io::Env;
    use std::path::Path;

    #[test]
    fn slot_and_check_record_round_trip() {
        let s = Slot {
            time_ms: 1_700_000_000_000,
            first: 64,
            last: 4096,
            count: 9,
        };
        assert_eq!(Slot::decode(&s.encode()), Some(s));
        assert_eq!(Slot::decode(&[0u8; 32]), Some(Slot::default()));
        let mut b = s.encode();
        b[3] ^= 1;
        assert_eq!(Slot::decode(&b), None);
        let r = CheckRecord {
            gen: 7,
            tl_end: 320,
            r_ms: 5_000,
            slots: 100,
            precision_ms: 10,
            ..CheckRecord::default()
        };
        assert_eq!(CheckRecord::decode(&r.encode()), Some(r));
    }

    #[test]
    fn index_expires_in_due_order_and_honours_cancels() {
        let env: Arc<dyn Env> = Arc::new(SimEnv::new(9));
        let mut w = WheelIndex::open(env, Path::new("/w/tl"), 10, 64, 4096, 0, None).unwrap();
        let mut out = Vec::new();
        w.expire(0, &mut out).unwrap();
        for (id, due) in [(1u64, 35i64), (2, 31), (3, 12), (4, 600), (5, 33)] {
            w.insert(due, id).unwrap();
        }
        w.cancel(33, 5).unwrap();
        w.expire(29, &mut out).unwrap();
        assert_eq!(out, vec![(12, 3)]);
        out.clear();
        w.expire(39, &mut out).unwrap();
        assert_eq!(out, vec![(31, 2), (35, 1)]);
        out.clear();
        w.expire(1_000, &mut out).unwrap();
        assert_eq!(out, vec![(600, 4)]);
    }
}
