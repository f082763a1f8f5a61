//! The wheel's in-memory index: one entry per slot, each the head of a
//! backward chain of 32-byte units in the timer log. Knows nothing of the
//! store (the `timers` bench drives it directly).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::delay::timerlog::{TimerLog, TimerLogReader, TimerUnit, UnitKind, UNIT_BYTES};
use crate::error::{Error, Result};
use crate::io::Env;

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
    pub(super) slots: Vec<Slot>,
    /// The timer log.
    pub tl: TimerLog,
    pub(super) dirty: [Vec<u64>; 2],
    /// Per timer-log file: the latest slot any of its units is linked into
    /// (the file being appended to is tracked in `cur_seg`).
    seg_max_slot: BTreeMap<u64, i64>,
    /// (base, latest slot) of the file units are appended to.
    cur_seg: Option<(u64, i64)>,
    /// Units linked into slots not yet taken.
    pub(super) linked: u64,
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
