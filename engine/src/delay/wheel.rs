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
//! and reloads every slot from `R`. `R` is only persisted once every
//! delivery before it is durable in the store (flushed offset past it), and
//! timers are only linked into slots below `R + window`, so a slot entry the
//! checkpoint needs is never reused before the checkpoint moves past it.
//!
//! Cancel writes a cancel record (queue 1 of the timer topic) carrying the
//! cancelled record's offset and due time; it becomes a cancel unit in the
//! same slot, so the timer is dropped when the slot loads (or at once when
//! it is already loaded), after a restart too.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::timerlog::{TimerLog, TimerLogReader, TimerUnit, UnitKind, UNIT_BYTES};
use super::{
    deliver_ms_of, put_outcome, to_real_topic, to_system_topic, Clock, Counter, DelayScheduler,
    DelayStats, DeliverAt, PutOutcome, Signal, Threads, TimerHandle,
    PROPERTY_TIMER_CANCEL_OFFSET, PROPERTY_TIMER_DEL_UNIQKEY, PROPERTY_TIMER_OUT_MS,
    PROPERTY_TIMER_SOURCE_OFFSET, TIMER_CANCEL_QUEUE, TIMER_QUEUE, TIMER_TOPIC,
};
use crate::error::{Error, Result};
use crate::io::{Env, File, OpenOptions};
use crate::message::{Message, PROPERTY_UNIQ_KEY};
use crate::store::Store;

/// Name in results and charts.
pub const NAME: &str = "wheel";
/// Bytes per wheel entry.
pub const SLOT_BYTES: u64 = 32;
/// Most slots a wheel may have (16 Mi entries, 512 MiB per copy).
pub const MAX_SLOTS: u64 = 1 << 24;
const CHECK_RECORD_BYTES: u64 = 128;
const CHECK_MAGIC: u32 = 0x4d51_5443; // "MQTC"
const CHECK_VERSION: u32 = 1;
/// Timers prepared (record read, message built) per chunk of a slot load.
const PREPARE_CHUNK: usize = 4096;

/// Time-wheel settings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct WheelConfig {
    /// Slot width, ms. Default 1,000 (RocketMQ's `timerPrecisionMs`).
    /// Accepts 1. Delivery is at the due millisecond whatever the width.
    pub precision_ms: u64,
    /// Time covered by the wheel, ms; `window_ms / precision_ms` slots
    /// (at most 2^24). Later due times are rolled. Default 172,800,000
    /// (2 days, RocketMQ's roll window).
    pub window_ms: u64,
    /// Longest accepted delay, ms. Default 259,200,000 (3 days,
    /// `timerMaxDelaySec`).
    pub max_delay_ms: u64,
    /// A slot is loaded and its messages prepared this long before it
    /// starts, ms. Default 2,000.
    pub prefetch_ms: u64,
    /// Most prepared timers held in memory (a single slot may exceed it).
    /// Default 1,000,000.
    pub max_ready: usize,
    /// Delivery threads. Default 2.
    pub deliver_threads: usize,
    /// Checkpoint period, ms. Default 1,000.
    pub checkpoint_interval_ms: u64,
    /// Timer-log file size, bytes (multiple of 32). Default 64 MiB.
    pub timerlog_segment_bytes: u64,
    /// Delay levels for [`DeliverAt::Level`], ms. Default RocketMQ's 18.
    pub levels_ms: Vec<u64>,
    /// Start the background threads at open. Default true; tests drive the
    /// wheel with [`DelayScheduler::tick`] instead.
    pub background: bool,
}

impl Default for WheelConfig {
    fn default() -> Self {
        WheelConfig {
            precision_ms: 1_000,
            window_ms: 2 * 86_400_000,
            max_delay_ms: 3 * 86_400_000,
            prefetch_ms: 2_000,
            max_ready: 1_000_000,
            deliver_threads: 2,
            checkpoint_interval_ms: 1_000,
            timerlog_segment_bytes: 64 << 20,
            levels_ms: super::default_levels_ms(),
            background: true,
        }
    }
}

impl WheelConfig {
    /// Number of slots.
    pub fn slots(&self) -> u64 {
        self.window_ms / self.precision_ms.max(1)
    }

    /// Checks every value once.
    pub fn sanitize(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.precision_ms == 0 {
            return bad("precision_ms must be > 0".into());
        }
        if self.window_ms % self.precision_ms != 0 {
            return bad(format!(
                "window_ms {} is not a multiple of precision_ms {}",
                self.window_ms, self.precision_ms
            ));
        }
        let n = self.slots();
        if !(16..=MAX_SLOTS).contains(&n) {
            return bad(format!(
                "window_ms / precision_ms = {n} slots; must be 16 to {MAX_SLOTS} (use a smaller window with a fine precision: longer delays are rolled)"
            ));
        }
        if self.window_ms < self.prefetch_ms + 4 * self.precision_ms {
            return bad(format!(
                "window_ms {} must exceed prefetch_ms {} by 4 slots",
                self.window_ms, self.prefetch_ms
            ));
        }
        if self.max_delay_ms == 0 || self.max_ready == 0 || self.checkpoint_interval_ms == 0 {
            return bad("max_delay_ms, max_ready and checkpoint_interval_ms must be > 0".into());
        }
        if !(1..=64).contains(&self.deliver_threads) {
            return bad("deliver_threads must be 1 to 64".into());
        }
        if self.timerlog_segment_bytes % UNIT_BYTES != 0 || self.timerlog_segment_bytes < 4096 {
            return bad("timerlog_segment_bytes must be >= 4096 and a multiple of 32".into());
        }
        if self.levels_ms.is_empty() {
            return bad("levels_ms must not be empty".into());
        }
        Ok(())
    }
}

/// One wheel entry: the chain of units of one round of one slot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Slot {
    /// Start of the slot, ms; 0 = empty.
    pub time_ms: i64,
    /// Position of the first unit of the round.
    pub first: i64,
    /// Position of the newest unit (head of the backward chain).
    pub last: i64,
    /// Units linked.
    pub count: u32,
}

impl Slot {
    /// The 32 bytes: time, first, last, count, CRC-32 of the 28 before.
    pub fn encode(&self) -> [u8; 32] {
        let mut b = [0u8; 32];
        b[0..8].copy_from_slice(&self.time_ms.to_be_bytes());
        b[8..16].copy_from_slice(&self.first.to_be_bytes());
        b[16..24].copy_from_slice(&self.last.to_be_bytes());
        b[24..28].copy_from_slice(&self.count.to_be_bytes());
        let crc = crc32fast::hash(&b[..28]);
        b[28..32].copy_from_slice(&crc.to_be_bytes());
        b
    }

    /// Decodes an entry; all zeros is an empty entry; `None` on a CRC
    /// mismatch.
    pub fn decode(b: &[u8]) -> Option<Slot> {
        if b[..32].iter().all(|&x| x == 0) {
            return Some(Slot::default());
        }
        let crc = u32::from_be_bytes([b[28], b[29], b[30], b[31]]);
        if crc != crc32fast::hash(&b[..28]) {
            return None;
        }
        let i64_at = |o: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[o..o + 8]);
            i64::from_be_bytes(x)
        };
        Some(Slot {
            time_ms: i64_at(0),
            first: i64_at(8),
            last: i64_at(16),
            count: u32::from_be_bytes([b[24], b[25], b[26], b[27]]),
        })
    }
}

/// The wheel's index: slot entries over the timer log. This is the data
/// structure both the scheduler and the `timers` bench drive; it knows
/// nothing of the store.
pub struct WheelIndex {
    precision_ms: i64,
    slots: Vec<Slot>,
    /// The timer log.
    pub tl: TimerLog,
    dirty: [Vec<u64>; 2],
    /// Per timer-log file: the latest slot any of its units is linked into.
    seg_max_slot: BTreeMap<u64, i64>,
    /// Units linked into slots not yet taken.
    linked: u64,
    /// Next slot [`WheelIndex::expire`] looks at.
    cursor_ms: i64,
}

impl std::fmt::Debug for WheelIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WheelIndex")
            .field("precision_ms", &self.precision_ms)
            .field("slots", &self.slots.len())
            .field("linked", &self.linked)
            .finish()
    }
}

impl WheelIndex {
    /// An index of `slots` entries `precision_ms` wide over the timer log in
    /// `dir` (cut at `tl_end`), with the given entries (all empty if None).
    pub fn open(
        env: Arc<dyn Env>,
        dir: &Path,
        precision_ms: u64,
        slots: u64,
        segment_bytes: u64,
        tl_end: u64,
        entries: Option<Vec<Slot>>,
    ) -> Result<WheelIndex> {
        let tl = TimerLog::open(env, dir, segment_bytes, tl_end)?;
        let entries = entries.unwrap_or_else(|| vec![Slot::default(); slots as usize]);
        let words = (slots as usize).div_ceil(64);
        Ok(WheelIndex {
            precision_ms: precision_ms as i64,
            slots: entries,
            tl,
            dirty: [vec![0; words], vec![0; words]],
            seg_max_slot: BTreeMap::new(),
            linked: 0,
            cursor_ms: i64::MIN,
        })
    }

    /// Slot width, ms.
    pub fn precision_ms(&self) -> i64 {
        self.precision_ms
    }

    /// Time covered by the wheel, ms.
    pub fn window_ms(&self) -> i64 {
        self.precision_ms * self.slots.len() as i64
    }

    /// Start of the slot holding `due_ms`.
    pub fn slot_ms(&self, due_ms: i64) -> i64 {
        due_ms.div_euclid(self.precision_ms) * self.precision_ms
    }

    /// Entry index of the slot starting at `slot_ms`.
    pub fn index_of(&self, slot_ms: i64) -> usize {
        slot_ms
            .div_euclid(self.precision_ms)
            .rem_euclid(self.slots.len() as i64) as usize
    }

    /// Units linked and not yet taken.
    pub fn linked(&self) -> u64 {
        self.linked
    }

    /// Memory of the entries and dirty maps, bytes.
    pub fn ram_bytes(&self) -> u64 {
        (self.slots.capacity() * std::mem::size_of::<Slot>()
            + (self.dirty[0].capacity() + self.dirty[1].capacity()) * 8) as u64
            + self.tl.ram_bytes()
    }

    /// Appends a unit and links it into the slot starting at `slot_ms`
    /// (starting a new round when the entry held another one).
    pub fn link(
        &mut self,
        kind: UnitKind,
        rolled: bool,
        slot_ms: i64,
        phys: u64,
        due_ms: i64,
    ) -> Result<u64> {
        let i = self.index_of(slot_ms);
        let e = self.slots[i];
        let same_round = e.time_ms == slot_ms && e.count > 0;
        let pos = self.tl.append(&TimerUnit {
            kind,
            rolled,
            slot: i as u32,
            prev: if same_round { e.last } else { -1 },
            phys,
            due_ms,
        })?;
        self.slots[i] = if same_round {
            Slot {
                last: pos as i64,
                count: e.count + 1,
                ..e
            }
        } else {
            Slot {
                time_ms: slot_ms,
                first: pos as i64,
                last: pos as i64,
                count: 1,
            }
        };
        self.dirty[0][i / 64] |= 1 << (i % 64);
        self.dirty[1][i / 64] |= 1 << (i % 64);
        let seg = self.tl.segment_base(pos);
        let m = self.seg_max_slot.entry(seg).or_insert(slot_ms);
        *m = (*m).max(slot_ms);
        self.linked += 1;
        Ok(pos)
    }

    /// The entry of the slot starting at `slot_ms`, if it holds that round.
    pub fn entry(&self, slot_ms: i64) -> Option<Slot> {
        let e = self.slots[self.index_of(slot_ms)];
        (e.time_ms == slot_ms && e.count > 0).then_some(e)
    }

    /// Marks `n` linked units as taken (loaded, or linked into a slot that
    /// was already loaded).
    pub fn note_taken(&mut self, n: u64) {
        self.linked = self.linked.saturating_sub(n);
    }

    /// A reader for the units of `slot`, usable without the lock.
    pub fn reader(&self, slot: &Slot) -> TimerLogReader {
        self.tl
            .reader(slot.first as u64, slot.last as u64 + UNIT_BYTES)
    }

    /// Reads the units of one slot round: one sequential read when they are
    /// dense in the log (a burst), else the backward chain.
    pub fn read_slot(reader: &TimerLogReader, slot: &Slot, index: usize) -> Result<Vec<TimerUnit>> {
        let (first, last) = (slot.first as u64, slot.last as u64);
        let span = last - first + UNIT_BYTES;
        let mut out = Vec::with_capacity(slot.count as usize);
        if slot.count as u64 * UNIT_BYTES * 4 >= span {
            let mut buf = vec![0u8; (span as usize).min(1 << 20)];
            let mut pos = first;
            while pos <= last {
                let n = ((last + UNIT_BYTES - pos) as usize).min(buf.len());
                reader.read(pos, &mut buf[..n])?;
                for c in buf[..n].chunks_exact(32) {
                    if let Some(u) = TimerUnit::decode(c) {
                        if u.slot as usize == index {
                            out.push(u);
                        }
                    }
                }
                pos += n as u64;
            }
        } else {
            let mut pos = slot.last;
            while pos >= slot.first && out.len() < slot.count as usize {
                let u = reader.unit(pos as u64)?;
                pos = u.prev;
                out.push(u);
            }
            out.reverse();
        }
        if out.len() != slot.count as usize {
            return Err(Error::Corrupt {
                path: PathBuf::from("timerlog"),
                offset: first,
                reason: format!(
                    "slot {index} lists {} units, the timer log holds {}",
                    slot.count,
                    out.len()
                ),
            });
        }
        Ok(out)
    }

    /// Entries changed since wheel copy `copy` was last written (and marks
    /// them clean for that copy).
    pub fn take_dirty(&mut self, copy: usize) -> Vec<(usize, Slot)> {
        let mut out = Vec::new();
        for (w, word) in self.dirty[copy].iter_mut().enumerate() {
            let mut bits = std::mem::take(word);
            while bits != 0 {
                let b = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let i = w * 64 + b;
                out.push((i, self.slots[i]));
            }
        }
        out
    }

    /// Deletes timer-log files, oldest first, while all of a file's units
    /// are linked into slots before `slot_ms`. Returns the bytes freed.
    pub fn release_before(&mut self, slot_ms: i64) -> Result<u64> {
        let active = self.tl.segment_base(self.tl.end());
        let seg = self.tl.segment_bytes();
        let mut freed = 0;
        while let Some((&b, &m)) = self.seg_max_slot.iter().next() {
            if m >= slot_ms || b >= active {
                break;
            }
            freed += self.tl.delete_below(b + seg)?;
            self.seg_max_slot.remove(&b);
        }
        Ok(freed)
    }

    /// After recovery: every stored timer-log file may hold units of any
    /// slot before `slot_ms` (the checkpoint's R + window).
    pub fn assume_files_before(&mut self, slot_ms: i64) {
        for b in self.tl.segment_bases() {
            self.seg_max_slot.insert(b, slot_ms);
        }
    }

    /// Simple in-memory API for benches: links a timer `id` due at `due_ms`.
    pub fn insert(&mut self, due_ms: i64, id: u64) -> Result<u64> {
        let s = self.slot_ms(due_ms).max(self.cursor_ms);
        self.link(UnitKind::Timer, false, s, id, due_ms)
    }

    /// Bench API: cancels timer `id` due at `due_ms` (a cancel unit in its
    /// slot).
    pub fn cancel(&mut self, due_ms: i64, id: u64) -> Result<u64> {
        let s = self.slot_ms(due_ms).max(self.cursor_ms);
        self.link(UnitKind::Cancel, false, s, id, due_ms)
    }

    /// Bench API: takes every slot that starts at or before `now_ms` and
    /// appends its live timers `(due, id)`, sorted by due time, to `out`.
    /// Returns the number appended.
    pub fn expire(&mut self, now_ms: i64, out: &mut Vec<(i64, u64)>) -> Result<usize> {
        if self.cursor_ms == i64::MIN {
            self.cursor_ms = self.slot_ms(now_ms);
        }
        let start = out.len();
        while self.cursor_ms <= now_ms {
            let t = self.cursor_ms;
            self.cursor_ms += self.precision_ms;
            let Some(e) = self.entry(t) else {
                if self.linked == 0 {
                    self.cursor_ms = self.cursor_ms.max(self.slot_ms(now_ms) + self.precision_ms);
                }
                continue;
            };
            self.note_taken(e.count as u64);
            let units = if e.count == 1 {
                vec![self.tl.read_unit(e.last as u64)?]
            } else {
                let r = self.reader(&e);
                Self::read_slot(&r, &e, self.index_of(t))?
            };
            let n0 = out.len();
            let cancels: HashSet<u64> = units
                .iter()
                .filter(|u| u.kind == UnitKind::Cancel)
                .map(|u| u.phys)
                .collect();
            out.extend(
                units
                    .iter()
                    .filter(|u| u.kind == UnitKind::Timer && !cancels.contains(&u.phys))
                    .map(|u| (u.due_ms, u.phys)),
            );
            out[n0..].sort_unstable();
        }
        Ok(out.len() - start)
    }
}
