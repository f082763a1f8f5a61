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

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::timerlog::{TimerLog, TimerLogReader, TimerUnit, UnitKind, UNIT_BYTES};
use super::{
    deliver_ms_of, put_outcome, to_real_topic, Clock, Counter, DelayScheduler, DelayStats,
    DeliverAt, PutOutcome, Signal, Threads, TimerHandle, PROPERTY_TIMER_CANCEL_OFFSET,
    PROPERTY_TIMER_DEL_UNIQKEY, PROPERTY_TIMER_OUT_MS, PROPERTY_TIMER_SOURCE_OFFSET,
    TIMER_CANCEL_QUEUE, TIMER_QUEUE, TIMER_TOPIC,
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
        if !self.window_ms.is_multiple_of(self.precision_ms) {
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
        if !self.timerlog_segment_bytes.is_multiple_of(UNIT_BYTES)
            || self.timerlog_segment_bytes < 4096
        {
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
    /// Per timer-log file: the latest slot any of its units is linked into
    /// (the file being appended to is tracked in `cur_seg`).
    seg_max_slot: BTreeMap<u64, i64>,
    /// (base, latest slot) of the file units are appended to.
    cur_seg: Option<(u64, i64)>,
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
            cur_seg: None,
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
        match &mut self.cur_seg {
            Some((b, m)) if *b == seg => *m = (*m).max(slot_ms),
            cur => {
                if let Some((b, m)) = cur.take() {
                    let e = self.seg_max_slot.entry(b).or_insert(m);
                    *e = (*e).max(m);
                }
                *cur = Some((seg, slot_ms));
            }
        }
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
        if let Some((b, m)) = self.cur_seg {
            let e = self.seg_max_slot.entry(b).or_insert(m);
            *e = (*e).max(m);
        }
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

/// The `timerwheel` file: two copies of the entries, copy `k` at byte
/// `k * slots * 32`.
struct WheelFile {
    path: PathBuf,
    file: Arc<dyn File>,
    slots: u64,
}

impl WheelFile {
    fn open(env: &dyn Env, path: PathBuf, slots: u64) -> Result<WheelFile> {
        let file = env
            .open(
                &path,
                OpenOptions {
                    create: true,
                    len: 2 * slots * SLOT_BYTES,
                    ..OpenOptions::default()
                },
            )
            .map_err(|e| Error::io("open", &path, e))?;
        Ok(WheelFile { path, file, slots })
    }

    fn read_copy(&self, copy: usize) -> Result<Vec<Slot>> {
        let mut out = Vec::with_capacity(self.slots as usize);
        let base = copy as u64 * self.slots * SLOT_BYTES;
        let mut buf = vec![0u8; 1 << 20];
        let mut i = 0u64;
        while i < self.slots {
            let n = ((self.slots - i) * SLOT_BYTES).min(buf.len() as u64) as usize;
            let got = self
                .file
                .read_at(base + i * SLOT_BYTES, &mut buf[..n])
                .map_err(|e| Error::io("read", &self.path, e))?;
            if got < n {
                buf[got..n].fill(0);
            }
            for c in buf[..n].chunks_exact(32) {
                let s = Slot::decode(c).ok_or_else(|| Error::Corrupt {
                    path: self.path.clone(),
                    offset: base + i * SLOT_BYTES,
                    reason: "wheel entry CRC mismatch".into(),
                })?;
                out.push(s);
                i += 1;
            }
        }
        Ok(out)
    }

    fn write_entries(&self, copy: usize, entries: &[(usize, Slot)]) -> Result<()> {
        let base = copy as u64 * self.slots * SLOT_BYTES;
        let mut k = 0;
        let mut buf = Vec::new();
        while k < entries.len() {
            // One write per run of consecutive entries.
            let start = entries[k].0;
            buf.clear();
            while k < entries.len()
                && entries[k].0 == start + buf.len() / 32
                && buf.len() < (1 << 20)
            {
                buf.extend_from_slice(&entries[k].1.encode());
                k += 1;
            }
            self.file
                .write_at(base + start as u64 * SLOT_BYTES, &buf)
                .map_err(|e| Error::io("write", &self.path, e))?;
        }
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| Error::io("fdatasync", &self.path, e))
    }
}

/// One `config/timercheck` record (FORMAT.md, "Delay").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct CheckRecord {
    gen: u64,
    tl_end: u64,
    tl_first: u64,
    q_timer: u64,
    q_cancel: u64,
    r_ms: i64,
    c_offset: u64,
    precision_ms: u64,
    slots: u64,
}

impl CheckRecord {
    fn encode(&self) -> [u8; CHECK_RECORD_BYTES as usize] {
        let mut b = [0u8; CHECK_RECORD_BYTES as usize];
        b[0..4].copy_from_slice(&CHECK_MAGIC.to_be_bytes());
        b[4..8].copy_from_slice(&CHECK_VERSION.to_be_bytes());
        let fields = [
            self.gen,
            self.tl_end,
            self.tl_first,
            self.q_timer,
            self.q_cancel,
            self.r_ms as u64,
            self.c_offset,
            self.precision_ms,
            self.slots,
        ];
        for (k, v) in fields.iter().enumerate() {
            b[8 + k * 8..16 + k * 8].copy_from_slice(&v.to_be_bytes());
        }
        let crc = crc32fast::hash(&b[..124]);
        b[124..128].copy_from_slice(&crc.to_be_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<CheckRecord> {
        if b.len() < CHECK_RECORD_BYTES as usize
            || u32::from_be_bytes([b[0], b[1], b[2], b[3]]) != CHECK_MAGIC
            || u32::from_be_bytes([b[4], b[5], b[6], b[7]]) != CHECK_VERSION
            || u32::from_be_bytes([b[124], b[125], b[126], b[127]]) != crc32fast::hash(&b[..124])
        {
            return None;
        }
        let f = |k: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[8 + k * 8..16 + k * 8]);
            u64::from_be_bytes(x)
        };
        Some(CheckRecord {
            gen: f(0),
            tl_end: f(1),
            tl_first: f(2),
            q_timer: f(3),
            q_cancel: f(4),
            r_ms: f(5) as i64,
            c_offset: f(6),
            precision_ms: f(7),
            slots: f(8),
        })
    }
}

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
    threads: Threads,
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
    /// Opens (recovering) the wheel whose files live in `dir` (usually the
    /// store's root: `timerwheel`, `timerlog/`, `config/timercheck`) on the
    /// environment the store was opened with.
    pub fn open(
        store: Arc<Store>,
        env: Arc<dyn Env>,
        dir: impl AsRef<Path>,
        cfg: WheelConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<WheelScheduler> {
        cfg.sanitize()?;
        let started = Instant::now();
        let dir = dir.as_ref().to_path_buf();
        let n = cfg.slots();
        let cfg_dir = dir.join("config");
        env.create_dir_all(&cfg_dir)
            .map_err(|e| Error::io("create dir", &cfg_dir, e))?;
        let check_path = cfg_dir.join("timercheck");
        let check_file = env
            .open(
                &check_path,
                OpenOptions {
                    create: true,
                    len: 2 * CHECK_RECORD_BYTES,
                    ..OpenOptions::default()
                },
            )
            .map_err(|e| Error::io("open", &check_path, e))?;
        env.sync_dir(&cfg_dir)
            .map_err(|e| Error::io("sync dir", &cfg_dir, e))?;
        let mut buf = [0u8; 2 * CHECK_RECORD_BYTES as usize];
        let got = check_file
            .read_at(0, &mut buf)
            .map_err(|e| Error::io("read", &check_path, e))?;
        let cp = (0..2)
            .filter(|k| got >= (k + 1) * CHECK_RECORD_BYTES as usize)
            .filter_map(|k| {
                CheckRecord::decode(&buf[k * CHECK_RECORD_BYTES as usize..])
                    .filter(|r| r.gen % 2 == k as u64)
            })
            .max_by_key(|r| r.gen);
        if let Some(c) = cp {
            if c.precision_ms != cfg.precision_ms || c.slots != n {
                return Err(Error::Config(format!(
                    "the timer wheel in {} has precision {} ms and {} slots; open it with the same",
                    dir.display(),
                    c.precision_ms,
                    c.slots
                )));
            }
        }
        let wheel_file = WheelFile::open(env.as_ref(), dir.join("timerwheel"), n)?;
        env.sync_dir(&dir)
            .map_err(|e| Error::io("sync dir", &dir, e))?;
        let entries = match cp {
            Some(c) => Some(wheel_file.read_copy((c.gen % 2) as usize)?),
            None => None,
        };
        let mut index = WheelIndex::open(
            env.clone(),
            &dir.join("timerlog"),
            cfg.precision_ms,
            n,
            cfg.timerlog_segment_bytes,
            cp.map(|c| c.tl_end).unwrap_or(0),
            entries,
        )?;
        let now = clock.now_ms();
        let window_ms = index.window_ms();
        let (r, c, mut q, mut qc, gen) = match cp {
            Some(c) => (c.r_ms, c.c_offset, c.q_timer, c.q_cancel, c.gen),
            None => (index.slot_ms(now), store.min_offset(), 0, 0, 0),
        };
        // Which entries still hold pending rounds; the copy the next
        // checkpoint writes is rewritten whole (it may be stale or torn).
        let mut linked = 0u64;
        for e in index.slots.iter() {
            if e.count > 0 && e.time_ms >= r {
                linked += e.count as u64;
            }
        }
        index.linked = linked;
        index.assume_files_before(r + window_ms);
        for copy in 0..2 {
            if cp.is_none() || copy != (gen % 2) as usize {
                for (w, word) in index.dirty[copy].iter_mut().enumerate() {
                    let bits = (n as usize - w * 64).min(64);
                    *word = if bits == 64 {
                        u64::MAX
                    } else {
                        (1 << bits) - 1
                    };
                }
            }
        }
        // The store may have lost timer records the checkpoint covered
        // (async flush and power loss): link from what it still has.
        let q_max = |qid: u32| {
            store
                .queues()
                .into_iter()
                .find(|i| i.topic == TIMER_TOPIC && i.queue_id == qid)
                .map(|i| i.max_offset)
                .unwrap_or(0)
        };
        q = q.min(q_max(TIMER_QUEUE));
        qc = qc.min(q_max(TIMER_CANCEL_QUEUE));
        // Deliveries since C: skip them when their slots reload.
        let mut dedup = HashSet::new();
        let end = store.offsets().committed;
        let from = c.max(store.min_offset());
        if from < end && (cp.is_some() || q_max(TIMER_QUEUE) > 0) {
            store.scan(from, &mut |r| {
                if let Ok(m) = r {
                    if m.topic != TIMER_TOPIC {
                        if let Some(src) = m
                            .properties
                            .get(PROPERTY_TIMER_SOURCE_OFFSET)
                            .and_then(|s| s.parse().ok())
                        {
                            dedup.insert(src);
                        }
                    }
                }
                true
            })?;
        }
        let state = State {
            index,
            q_timer: q,
            q_cancel: qc,
            load_cursor: r,
            loaded: BTreeMap::new(),
            ready_len: 0,
            ready_bytes: 0,
            r_persisted: r,
            gen,
            dedup,
            cache_sweep_at: 65_536,
            urgent: false,
            graveyard: Vec::new(),
        };
        let inner = Arc::new(Inner {
            store,
            window_ms,
            clock,
            state: Mutex::new(state),
            due_cache: Mutex::new(HashMap::new()),
            wheel_file,
            check_path,
            check_file,
            enqueue_lock: Mutex::new(()),
            load_lock: Mutex::new(()),
            checkpoint_lock: Mutex::new(()),
            work: Signal::default(),
            poisoned: Mutex::new(None),
            last_tick_checkpoint_ms: std::sync::atomic::AtomicI64::new(now),
            scheduled: Counter::default(),
            delivered: Counter::default(),
            cancelled: Counter::default(),
            rolled: Counter::default(),
            dedup_skipped: Counter::default(),
            dropped: Counter::default(),
            recovery_ms: AtomicU64::new(0),
            cfg,
        });
        inner
            .recovery_ms
            .store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        let mut threads = Threads::default();
        if inner.cfg.background {
            start_threads(&inner, &mut threads);
        }
        Ok(WheelScheduler { inner, threads })
    }

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

fn start_threads(inner: &Arc<Inner>, threads: &mut Threads) {
    let run = |inner: &Arc<Inner>, what: &'static str, e: Error| {
        inner.poison(format!("{what}: {e}"));
    };
    let i = inner.clone();
    threads.spawn("mqlab-wheel-enqueue".into(), move |stop| {
        while !stop.stopped() {
            match i.enqueue_round() {
                Ok(n) if n > 0 => {}
                Ok(_) => {
                    stop.wait(Duration::from_millis(1));
                }
                Err(e) => return run(&i, "enqueue", e),
            }
        }
    });
    let i = inner.clone();
    threads.spawn("mqlab-wheel-load".into(), move |stop| {
        let idle = Duration::from_millis(i.cfg.precision_ms.clamp(1, 5));
        while !stop.stopped() {
            match i.load_step() {
                Ok(true) => {}
                Ok(false) => {
                    stop.wait(idle);
                }
                Err(e) => return run(&i, "load", e),
            }
        }
    });
    for k in 0..inner.cfg.deliver_threads {
        let i = inner.clone();
        threads.spawn(format!("mqlab-wheel-deliver-{k}"), move |stop| {
            while !stop.stopped() {
                match i.deliver_batch(256) {
                    Ok(b) if b.taken > 0 && b.retried == 0 => {}
                    Ok(b) => {
                        let wait_ms = if b.retried > 0 {
                            100
                        } else {
                            b.next_due
                                .map(|d| (d - i.clock.now_ms()).clamp(0, 50))
                                .unwrap_or(50)
                        };
                        let wait =
                            Duration::from_millis(wait_ms as u64).max(Duration::from_micros(200));
                        i.work.wait(wait);
                    }
                    Err(e) => return run(&i, "deliver", e),
                }
            }
        });
    }
    let i = inner.clone();
    threads.spawn("mqlab-wheel-checkpoint".into(), move |stop| {
        let every = Duration::from_millis(i.cfg.checkpoint_interval_ms);
        while stop.wait(every) {
            if let Err(e) = i.checkpoint() {
                return run(&i, "checkpoint", e);
            }
        }
    });
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

    /// Links what was scheduled since the last round, in queue order.
    fn enqueue_round(&self) -> Result<u64> {
        const BATCH: usize = 8192;
        let _g = self.enqueue_lock.lock().unwrap_or_else(|e| e.into_inner());
        let q = self.lock().q_timer;
        let units = self.store.queue_units(TIMER_TOPIC, TIMER_QUEUE, q, BATCH)?;
        let mut items = Vec::with_capacity(units.len());
        {
            let mut cache = self.due_cache.lock().unwrap_or_else(|e| e.into_inner());
            for u in &units {
                items.push((u.phys_offset, cache.remove(&u.phys_offset)));
            }
            // Entries the enqueue step read before `schedule` cached them
            // are never looked up again: sweep them now and then.
            let sweep_at = self.lock().cache_sweep_at;
            if cache.len() > sweep_at {
                if let Some(last) = units.last() {
                    cache.retain(|p, _| *p > last.phys_offset);
                }
                self.lock().cache_sweep_at = (cache.len() * 2).max(65_536);
            }
        }
        let mut resolved = Vec::with_capacity(items.len());
        for (phys, due) in items {
            let due = match due {
                Some(d) => Some(d),
                None => self
                    .store
                    .get(phys)
                    .ok()
                    .and_then(|m| deliver_ms_of(&m.properties)),
            };
            match due {
                Some(d) => resolved.push((phys, d)),
                None => self.dropped.add(1),
            }
        }
        let n = units.len() as u64;
        if n > 0 {
            let mut st = self.lock();
            for (phys, due) in resolved {
                self.ingest(&mut st, UnitKind::Timer, phys, due)?;
            }
            st.q_timer = q + n;
        }
        let mut applied = 0;
        if units.len() < BATCH {
            // Cancels only once the timers before them are linked.
            let qc = self.lock().q_cancel;
            let msgs = self
                .store
                .get_from_queue(TIMER_TOPIC, TIMER_CANCEL_QUEUE, qc, 256)?;
            if !msgs.is_empty() {
                let mut st = self.lock();
                for m in &msgs {
                    let target = m
                        .properties
                        .get(PROPERTY_TIMER_CANCEL_OFFSET)
                        .and_then(|s| s.parse::<u64>().ok());
                    if let (Some(t), Some(d)) = (target, deliver_ms_of(&m.properties)) {
                        self.ingest(&mut st, UnitKind::Cancel, t, d)?;
                    }
                }
                st.q_cancel = qc + msgs.len() as u64;
                applied = msgs.len() as u64;
            }
        }
        if n + applied > 0 {
            self.work.notify();
        }
        Ok(n + applied)
    }

    /// Loads the next slot that is within the prefetch horizon. Returns
    /// true when it made progress (loaded a slot or skipped empty ones).
    fn load_step(&self) -> Result<bool> {
        let _g = self.load_lock.lock().unwrap_or_else(|e| e.into_inner());
        let p = self.cfg.precision_ms as i64;
        let dead = std::mem::take(&mut self.lock().graveyard);
        drop(dead);
        let (t, e, reader, index) = {
            let mut st = self.lock();
            let horizon = self.clock.now_ms() + self.cfg.prefetch_ms as i64;
            let mut scanned = 0u32;
            let mut found = None;
            while scanned < 65_536 {
                let t = st.load_cursor;
                let bound = st.r_persisted.min(st.delivered_through()) + self.window_ms - p;
                if (t > horizon && !st.urgent) || t >= bound {
                    break;
                }
                if st.ready_len >= self.cfg.max_ready && !st.loaded.is_empty() {
                    break;
                }
                if st.index.linked() == 0 {
                    // Nothing linked anywhere: skip the empty slots at once.
                    let to = (self.slot_ms(horizon) + p).min(bound);
                    if to > t {
                        st.load_cursor = to;
                        scanned += 1;
                    }
                    break;
                }
                st.load_cursor = t + p;
                scanned += 1;
                if let Some(e) = st.index.entry(t) {
                    found = Some((t, e));
                    break;
                }
            }
            let Some((t, e)) = found else {
                if st.load_cursor > horizon {
                    st.urgent = false;
                }
                return Ok(scanned > 0);
            };
            st.urgent = false;
            st.index.note_taken(e.count as u64);
            let written = self.store.offsets().written;
            let l = st.loaded.entry(t).or_insert_with(|| Loaded::new(written));
            l.loading = true;
            let index = st.index.index_of(t);
            (t, e, st.index.reader(&e), index)
        };
        if let Err(e) = self.load_slot(t, &e, &reader, index) {
            self.poison(format!("loading slot {t}: {e}"));
            return Err(e);
        }
        Ok(true)
    }

    fn load_slot(&self, t: i64, e: &Slot, reader: &TimerLogReader, index: usize) -> Result<()> {
        let units = WheelIndex::read_slot(reader, e, index)?;
        let mut cancels = HashSet::new();
        let mut timers = Vec::with_capacity(units.len());
        let mut rolls = Vec::new();
        for u in units {
            if u.rolled {
                rolls.push(u);
            } else if u.kind == UnitKind::Cancel {
                cancels.insert(u.phys);
            } else {
                timers.push((u.due_ms, u.phys));
            }
        }
        timers.sort_unstable();
        timers.dedup();
        {
            let mut st = self.lock();
            for u in &rolls {
                self.ingest(&mut st, u.kind, u.phys, u.due_ms)?;
            }
            self.rolled.add(rolls.len() as u64);
            let State { loaded, dedup, .. } = &mut *st;
            let l = loaded.get_mut(&t).expect("a loading slot stays loaded");
            l.cancels.extend(cancels.iter().copied());
            let before = timers.len();
            timers.retain(|(_, p)| !l.cancels.contains(p));
            self.cancelled.add((before - timers.len()) as u64);
            let before = timers.len();
            timers.retain(|(_, p)| !dedup.remove(p));
            self.dedup_skipped.add((before - timers.len()) as u64);
        }
        for chunk in timers.chunks(PREPARE_CHUNK) {
            let mut prepared = Vec::with_capacity(chunk.len());
            let mut bytes = 0;
            for &(due, phys) in chunk {
                match self.prepare(phys, due) {
                    Ok(m) => {
                        bytes += msg_bytes(&m);
                        prepared.push(Ready {
                            due,
                            phys,
                            msg: Some(m),
                        });
                    }
                    Err(_) => self.dropped.add(1),
                }
            }
            let mut st = self.lock();
            let l = st.loaded.get_mut(&t).expect("a loading slot stays loaded");
            let before = prepared.len();
            prepared.retain(|r| !l.cancels.contains(&r.phys));
            self.cancelled.add((before - prepared.len()) as u64);
            let n = prepared.len();
            if l.queue
                .back()
                .is_none_or(|b| prepared.first().is_none_or(|f| b.due <= f.due))
            {
                l.queue.extend(prepared);
            } else {
                let mut all: Vec<Ready> = l.queue.drain(..).chain(prepared).collect();
                all.sort_by_key(|r| r.due);
                l.queue = all.into();
            }
            st.ready_len += n;
            st.ready_bytes += bytes;
            drop(st);
            self.work.notify();
        }
        let mut st = self.lock();
        if let Some(l) = st.loaded.get_mut(&t) {
            l.loading = false;
        }
        Self::close_if_done(&mut st, t);
        Ok(())
    }

    /// Reads a timer record and builds the message to deliver.
    fn prepare(&self, phys: u64, due: i64) -> std::result::Result<Message, String> {
        let m = self.store.get(phys).map_err(|e| e.to_string())?;
        if m.topic != TIMER_TOPIC
            || m.queue_id != TIMER_QUEUE
            || deliver_ms_of(&m.properties) != Some(due)
        {
            return Err(format!("record at {phys} is not the timer due at {due}"));
        }
        let mut msg = to_real_topic(m).map_err(|e| e.to_string())?;
        msg.properties
            .insert(PROPERTY_TIMER_SOURCE_OFFSET.to_string(), phys.to_string());
        // Filled in at delivery, in place (no allocation on the hot path).
        msg.properties
            .insert(PROPERTY_TIMER_OUT_MS.to_string(), String::with_capacity(16));
        Ok(msg)
    }

    /// Delivers up to `max` due timers.
    fn deliver_batch(&self, max: usize) -> Result<BatchOutcome> {
        let now = self.clock.now_ms();
        let mut batch: Vec<(i64, Ready)> = Vec::new();
        let mut out = BatchOutcome::default();
        {
            let mut st = self.lock();
            let mut bytes = 0;
            'slots: for (t, l) in st.loaded.iter_mut() {
                while let Some(f) = l.queue.front() {
                    if f.due > now || batch.len() >= max {
                        break 'slots;
                    }
                    let r = l.queue.pop_front().expect("front exists");
                    bytes += r.msg.as_ref().map(msg_bytes).unwrap_or(0);
                    l.in_flight += 1;
                    batch.push((*t, r));
                }
            }
            st.ready_len -= batch.len();
            st.ready_bytes = st.ready_bytes.saturating_sub(bytes);
            out.next_due = st
                .loaded
                .values()
                .find_map(|l| l.queue.front().map(|f| f.due));
        }
        if batch.is_empty() {
            return Ok(out);
        }
        out.taken = batch.len();
        let now_s = now.to_string();
        let mut retry: Vec<(i64, Ready)> = Vec::new();
        let mut done: Vec<Message> = Vec::with_capacity(batch.len());
        let mut slots: Vec<i64> = Vec::with_capacity(batch.len());
        for (t, r) in batch {
            slots.push(t);
            let msg = match r.msg {
                Some(m) => Ok(m),
                None => self.prepare(r.phys, r.due),
            };
            let mut m = match msg {
                Ok(m) => m,
                Err(_) => {
                    self.dropped.add(1);
                    continue;
                }
            };
            match m.properties.get_mut(PROPERTY_TIMER_OUT_MS) {
                Some(v) => {
                    v.clear();
                    v.push_str(&now_s);
                }
                None => {
                    m.properties
                        .insert(PROPERTY_TIMER_OUT_MS.to_string(), now_s.clone());
                }
            }
            let res = self.store.put(&m);
            match put_outcome(&res) {
                PutOutcome::Stored => {
                    out.delivered += 1;
                    done.push(m);
                }
                PutOutcome::Rejected(_) => self.dropped.add(1),
                PutOutcome::Retry(_) => retry.push((
                    t,
                    Ready {
                        due: r.due,
                        phys: r.phys,
                        msg: Some(m),
                    },
                )),
            }
        }
        self.delivered.add(out.delivered);
        out.retried = retry.len();
        let mut st = self.lock();
        if st.graveyard.len() < 1 << 20 {
            st.graveyard.append(&mut done);
        }
        for t in &slots {
            if let Some(l) = st.loaded.get_mut(t) {
                l.in_flight -= 1;
            }
        }
        for (t, r) in retry.into_iter().rev() {
            st.ready_bytes += r.msg.as_ref().map(msg_bytes).unwrap_or(0);
            st.ready_len += 1;
            st.loaded
                .get_mut(&t)
                .expect("a slot with timers in flight stays loaded")
                .queue
                .push_front(r);
        }
        slots.dedup();
        for t in slots {
            Self::close_if_done(&mut st, t);
        }
        Ok(out)
    }

    /// Writes a checkpoint (module docs).
    fn checkpoint(&self) -> Result<()> {
        self.check_poison()?;
        let _g = self
            .checkpoint_lock
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let r = self.checkpoint_inner();
        if let Err(e) = &r {
            self.poison(format!("checkpoint: {e}"));
        }
        r
    }

    fn checkpoint_inner(&self) -> Result<()> {
        let (rec, dirty, files, copy) = {
            let mut st = self.lock();
            st.index.tl.write_out()?;
            // Every slot before R is fully delivered: each of its puts was
            // acknowledged, so the progress is as durable as the store
            // makes any acknowledged put.
            let r_cp = st.delivered_through();
            let c_cp = st
                .loaded
                .values()
                .map(|l| l.load_offset)
                .min()
                .unwrap_or_else(|| self.store.offsets().written);
            let copy = ((st.gen + 1) % 2) as usize;
            let dirty = st.index.take_dirty(copy);
            let files = st.index.tl.take_unsynced();
            let rec = CheckRecord {
                gen: st.gen + 1,
                tl_end: st.index.tl.end(),
                tl_first: st.index.tl.first_pos(),
                q_timer: st.q_timer,
                q_cancel: st.q_cancel,
                r_ms: r_cp,
                c_offset: c_cp,
                precision_ms: self.cfg.precision_ms,
                slots: self.cfg.slots(),
            };
            (rec, dirty, files, copy)
        };
        for (path, f) in files {
            f.sync_data()
                .map_err(|e| Error::io("fdatasync", &path, e))?;
        }
        self.wheel_file.write_entries(copy, &dirty)?;
        self.wheel_file.sync()?;
        let at = (rec.gen % 2) * CHECK_RECORD_BYTES;
        self.check_file
            .write_at(at, &rec.encode())
            .and_then(|_| self.check_file.sync_data())
            .map_err(|e| Error::io("write", &self.check_path, e))?;
        let mut st = self.lock();
        st.gen = rec.gen;
        let older = st.r_persisted;
        st.r_persisted = rec.r_ms;
        // Files only slots before both valid checkpoints' R point into.
        st.index.release_before(older.min(rec.r_ms))?;
        Ok(())
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

    fn tick(&self) -> Result<u64> {
        self.check_poison()?;
        let end = self.store.offsets().written;
        self.store.wait_dispatched(end, Duration::from_secs(5));
        while self.enqueue_round()? > 0 {}
        let mut total = 0;
        loop {
            loop {
                let mut progressed = false;
                while self.load_step()? {
                    progressed = true;
                }
                loop {
                    let b = self.deliver_batch(1024)?;
                    total += b.delivered;
                    if b.taken == 0 || b.retried == b.taken {
                        break;
                    }
                    progressed = true;
                }
                if !progressed {
                    break;
                }
            }
            // The loader may stand at the window the last checkpoint
            // allows: checkpoint to move it, and go on if that helped.
            let blocked = {
                let st = self.lock();
                let bound = st.r_persisted.min(st.delivered_through()) + self.window_ms
                    - self.cfg.precision_ms as i64;
                let horizon = self.clock.now_ms() + self.cfg.prefetch_ms as i64;
                (st.load_cursor <= horizon && st.load_cursor >= bound).then_some(st.r_persisted)
            };
            match blocked {
                Some(before) => {
                    self.checkpoint()?;
                    if self.lock().r_persisted == before {
                        break;
                    }
                }
                None => break,
            }
        }
        let now = self.clock.now_ms();
        let last = self.last_tick_checkpoint_ms.load(Ordering::Relaxed);
        if now - last >= self.cfg.checkpoint_interval_ms as i64 {
            self.checkpoint()?;
            self.last_tick_checkpoint_ms.store(now, Ordering::Relaxed);
        }
        Ok(total)
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

    fn shutdown(mut self: Box<Self>) -> Result<()> {
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
