//! The timer log: an append-only file series of 32-byte units, one per
//! timer (or cancel) linked into a wheel slot, each pointing back at the
//! previous unit of the same slot (RocketMQ's `timerlog`, 52-byte units).
//!
//! Units are appended into a memory tail and handed to the files in chunks
//! (one `write_at` per MiB, not per timer); a checkpoint syncs them. Files
//! are named by the position of their first byte (20 digits, like
//! commit-log segments) and never rewritten: a unit at a position below the
//! written end is immutable until its whole file is deleted, which is what
//! lets a slot be read without holding the scheduler's lock
//! ([`TimerLogReader`]). Positions are continuous across files; units never
//! straddle two files (the file size is a multiple of 32).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::io::{Env, File};
use crate::series::{file_name, FileSeries};

/// Bytes per unit.
pub const UNIT_BYTES: u64 = 32;
/// Magic in bytes 2-3 of every unit: "TL".
pub const UNIT_MAGIC: u16 = 0x544c;
/// Flag bit of the kind byte: the unit sits in a roll slot and is re-filed
/// when that slot is loaded.
pub const KIND_ROLLED: u8 = 0x80;
/// Bytes handed to the files per `write_at`.
const WRITE_CHUNK_BYTES: usize = 1 << 20;

/// What a unit records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitKind {
    /// A timer to deliver.
    Timer,
    /// A cancel of the timer whose record is at `phys`.
    Cancel,
}

/// One 32-byte unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerUnit {
    /// Timer or cancel.
    pub kind: UnitKind,
    /// True when the unit sits in a roll slot (its due time is later than
    /// the slot) and must be re-filed when the slot is loaded.
    pub rolled: bool,
    /// Wheel slot index the unit is linked into.
    pub slot: u32,
    /// Position of the previous unit of the same slot, -1 for none.
    pub prev: i64,
    /// Commit-log offset of the timer record (for a cancel: of the timer it
    /// cancels).
    pub phys: u64,
    /// Due time, ms.
    pub due_ms: i64,
}

impl TimerUnit {
    /// The 32 bytes (FORMAT.md, "Delay").
    pub fn encode(&self) -> [u8; 32] {
        let mut b = [0u8; 32];
        b[0] = match self.kind {
            UnitKind::Timer => 1,
            UnitKind::Cancel => 3,
        } | if self.rolled { KIND_ROLLED } else { 0 };
        b[2..4].copy_from_slice(&UNIT_MAGIC.to_be_bytes());
        b[4..8].copy_from_slice(&self.slot.to_be_bytes());
        b[8..16].copy_from_slice(&self.prev.to_be_bytes());
        b[16..24].copy_from_slice(&self.phys.to_be_bytes());
        b[24..32].copy_from_slice(&self.due_ms.to_be_bytes());
        b
    }

    /// Decodes a unit; `None` when the magic or kind is wrong (never
    /// written, or not a unit).
    pub fn decode(b: &[u8]) -> Option<TimerUnit> {
        if b.len() < 32 || u16::from_be_bytes([b[2], b[3]]) != UNIT_MAGIC || b[1] != 0 {
            return None;
        }
        let kind = match b[0] & !KIND_ROLLED {
            1 => UnitKind::Timer,
            3 => UnitKind::Cancel,
            _ => return None,
        };
        let i64_at = |o: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[o..o + 8]);
            i64::from_be_bytes(x)
        };
        Some(TimerUnit {
            kind,
            rolled: b[0] & KIND_ROLLED != 0,
            slot: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            prev: i64_at(8),
            phys: i64_at(16) as u64,
            due_ms: i64_at(24),
        })
    }
}

/// The append-only unit log.
pub struct TimerLog {
    series: FileSeries,
    segment_bytes: u64,
    segments: BTreeMap<u64, Arc<dyn File>>,
    /// Next append position.
    end: u64,
    /// Bytes below this are in the files.
    file_end: u64,
    /// Bytes `[file_end, end)`.
    tail: Vec<u8>,
    /// Segments written since the last `take_unsynced`.
    unsynced: BTreeSet<u64>,
}

impl std::fmt::Debug for TimerLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimerLog")
            .field("dir", &self.series.dir())
            .field("end", &self.end)
            .field("file_end", &self.file_end)
            .finish()
    }
}

impl TimerLog {
    /// Opens the log in `dir` with its end at `end` (from the checkpoint;
    /// 0 for a new log). Files that start at or past the end are deleted:
    /// they hold only units the checkpoint does not cover, which the
    /// scheduler re-creates from the commit log.
    pub fn open(env: Arc<dyn Env>, dir: &Path, segment_bytes: u64, end: u64) -> Result<TimerLog> {
        if !segment_bytes.is_multiple_of(UNIT_BYTES) || segment_bytes < 4096 {
            return Err(Error::Config(format!(
                "timer log segment_bytes {segment_bytes} must be >= 4096 and a multiple of 32"
            )));
        }
        let series = FileSeries::new(env, dir);
        series.create_dir()?;
        let mut segments = BTreeMap::new();
        for (base, path) in series.list()?.files {
            if base >= end {
                series
                    .remove(base)
                    .map_err(|e| Error::io("remove", &path, e))?;
                continue;
            }
            let f = series
                .open(base, false)
                .map_err(|e| Error::io("open", &path, e))?;
            segments.insert(base, f);
        }
        Ok(TimerLog {
            series,
            segment_bytes,
            segments,
            end,
            file_end: end,
            tail: Vec::new(),
            unsynced: BTreeSet::new(),
        })
    }

    /// Next append position.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// First position still stored.
    pub fn first_pos(&self) -> u64 {
        self.segments
            .keys()
            .next()
            .copied()
            .unwrap_or(self.end)
            .min(self.end)
    }

    /// Bytes of units stored (in files or the tail).
    pub fn stored_bytes(&self) -> u64 {
        self.end - self.first_pos()
    }

    /// Bytes held in memory (the tail buffer).
    pub fn ram_bytes(&self) -> u64 {
        self.tail.capacity() as u64
    }

    /// Appends a unit; returns its position.
    pub fn append(&mut self, u: &TimerUnit) -> Result<u64> {
        let pos = self.end;
        self.tail.extend_from_slice(&u.encode());
        self.end += UNIT_BYTES;
        if self.tail.len() >= WRITE_CHUNK_BYTES {
            self.write_out()?;
        }
        Ok(pos)
    }

    /// Hands the tail to the files (page cache); durable only after the
    /// files from [`TimerLog::take_unsynced`] are synced.
    pub fn write_out(&mut self) -> Result<()> {
        let mut done = 0usize;
        while done < self.tail.len() {
            let pos = self.file_end;
            let base = pos - pos % self.segment_bytes;
            let f = self.segment(base)?;
            let n = ((base + self.segment_bytes - pos) as usize).min(self.tail.len() - done);
            f.write_at(pos - base, &self.tail[done..done + n])
                .map_err(|e| Error::io("write", self.series.path(base), e))?;
            self.unsynced.insert(base);
            self.file_end += n as u64;
            done += n;
        }
        self.tail.clear();
        if self.tail.capacity() > 2 * WRITE_CHUNK_BYTES {
            self.tail.shrink_to(WRITE_CHUNK_BYTES);
        }
        Ok(())
    }

    fn segment(&mut self, base: u64) -> Result<Arc<dyn File>> {
        if let Some(f) = self.segments.get(&base) {
            return Ok(f.clone());
        }
        let path = self.series.path(base);
        let f = self
            .series
            .create(base, self.segment_bytes, false)
            .map_err(|e| Error::io("create", &path, e))?;
        self.series
            .sync_dir()
            .map_err(|e| Error::io("sync dir", self.series.dir(), e))?;
        self.segments.insert(base, f.clone());
        Ok(f)
    }

    /// Files written since the last call, to sync outside the lock.
    pub fn take_unsynced(&mut self) -> Vec<(PathBuf, Arc<dyn File>)> {
        std::mem::take(&mut self.unsynced)
            .into_iter()
            .filter_map(|b| {
                self.segments
                    .get(&b)
                    .map(|f| (self.series.path(b), f.clone()))
            })
            .collect()
    }

    /// Deletes whole files that end at or below `pos` (never the one being
    /// appended to). Returns the bytes freed.
    pub fn delete_below(&mut self, pos: u64) -> Result<u64> {
        let mut freed = 0;
        let active = self.end - self.end % self.segment_bytes;
        let bases: Vec<u64> = self
            .segments
            .keys()
            .copied()
            .filter(|&b| b + self.segment_bytes <= pos && b < active)
            .collect();
        for b in bases {
            let path = self.series.path(b);
            self.series
                .remove(b)
                .map_err(|e| Error::io("remove", &path, e))?;
            self.segments.remove(&b);
            self.unsynced.remove(&b);
            freed += self.segment_bytes;
        }
        Ok(freed)
    }

    /// File size, bytes.
    pub fn segment_bytes(&self) -> u64 {
        self.segment_bytes
    }

    /// Bases of the stored files, ascending.
    pub fn segment_bases(&self) -> Vec<u64> {
        self.segments.keys().copied().collect()
    }

    /// Base of the file holding `pos`.
    pub fn segment_base(&self, pos: u64) -> u64 {
        pos - pos % self.segment_bytes
    }

    /// A reader of `[from, to)` usable without `&self` (no lock): the files
    /// are shared, the part still in the tail is copied.
    pub fn reader(&self, from: u64, to: u64) -> TimerLogReader {
        let tail_from = from.max(self.file_end);
        let tail = if to > tail_from {
            let a = (tail_from - self.file_end) as usize;
            let b = (to.min(self.end) - self.file_end) as usize;
            self.tail[a..b].to_vec()
        } else {
            Vec::new()
        };
        TimerLogReader {
            dir: self.series.dir().to_path_buf(),
            segment_bytes: self.segment_bytes,
            segments: self
                .segments
                .range(self.segment_base(from)..to.max(from + 1))
                .map(|(b, f)| (*b, f.clone()))
                .collect(),
            tail_base: tail_from,
            tail,
        }
    }

    /// Reads one unit (under the caller's lock).
    pub fn read_unit(&self, pos: u64) -> Result<TimerUnit> {
        let mut b = [0u8; 32];
        if pos >= self.file_end {
            let a = (pos - self.file_end) as usize;
            if a + 32 > self.tail.len() {
                return Err(self.corrupt(pos, "unit past the end of the timer log"));
            }
            b.copy_from_slice(&self.tail[a..a + 32]);
        } else {
            let base = self.segment_base(pos);
            let f = self
                .segments
                .get(&base)
                .ok_or_else(|| self.corrupt(pos, "unit in a deleted timer-log file"))?;
            let n = f
                .read_at(pos - base, &mut b)
                .map_err(|e| Error::io("read", self.series.path(base), e))?;
            if n < 32 {
                return Err(self.corrupt(pos, "short unit"));
            }
        }
        TimerUnit::decode(&b).ok_or_else(|| self.corrupt(pos, "bad unit magic or kind"))
    }

    fn corrupt(&self, pos: u64, why: &str) -> Error {
        Error::Corrupt {
            path: self.series.path(self.segment_base(pos)),
            offset: pos,
            reason: why.to_string(),
        }
    }
}

/// Reads units of a position range without the scheduler's lock.
pub struct TimerLogReader {
    dir: PathBuf,
    segment_bytes: u64,
    segments: BTreeMap<u64, Arc<dyn File>>,
    tail_base: u64,
    tail: Vec<u8>,
}

impl std::fmt::Debug for TimerLogReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimerLogReader")
            .field("dir", &self.dir)
            .field("tail_base", &self.tail_base)
            .finish()
    }
}

impl TimerLogReader {
    /// Reads `buf.len()` bytes at `pos`, which must lie inside the range
    /// the reader was made for.
    pub fn read(&self, pos: u64, buf: &mut [u8]) -> Result<()> {
        let mut done = 0usize;
        while done < buf.len() {
            let p = pos + done as u64;
            if p >= self.tail_base {
                let a = (p - self.tail_base) as usize;
                let n = buf.len() - done;
                if a + n > self.tail.len() {
                    return Err(self.corrupt(p, "read past the end of the timer log"));
                }
                buf[done..].copy_from_slice(&self.tail[a..a + n]);
                return Ok(());
            }
            let base = p - p % self.segment_bytes;
            let f = self
                .segments
                .get(&base)
                .ok_or_else(|| self.corrupt(p, "unit in a deleted timer-log file"))?;
            let n = ((base + self.segment_bytes).min(self.tail_base) - p) as usize;
            let n = n.min(buf.len() - done);
            let got = f
                .read_at(p - base, &mut buf[done..done + n])
                .map_err(|e| Error::io("read", self.dir.join(file_name(base)), e))?;
            if got < n {
                return Err(self.corrupt(p, "short read"));
            }
            done += n;
        }
        Ok(())
    }

    /// Reads and decodes the unit at `pos`.
    pub fn unit(&self, pos: u64) -> Result<TimerUnit> {
        let mut b = [0u8; 32];
        self.read(pos, &mut b)?;
        TimerUnit::decode(&b).ok_or_else(|| self.corrupt(pos, "bad unit magic or kind"))
    }

    fn corrupt(&self, pos: u64, why: &str) -> Error {
        Error::Corrupt {
            path: self.dir.join(file_name(pos - pos % self.segment_bytes)),
            offset: pos,
            reason: why.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::sim::SimEnv;

    #[test]
    fn unit_round_trips() {
        let u = TimerUnit {
            kind: UnitKind::Cancel,
            rolled: true,
            slot: 77,
            prev: -1,
            phys: 123_456,
            due_ms: 1_700_000_000_123,
        };
        assert_eq!(TimerUnit::decode(&u.encode()), Some(u));
        assert_eq!(TimerUnit::decode(&[0u8; 32]), None);
    }

    #[test]
    fn appends_across_files_and_reads_back() {
        let env: Arc<dyn Env> = Arc::new(SimEnv::new(3));
        let dir = Path::new("/t/timerlog");
        let mut log = TimerLog::open(env.clone(), dir, 4096, 0).unwrap();
        let n = 1000u64;
        for i in 0..n {
            let pos = log
                .append(&TimerUnit {
                    kind: UnitKind::Timer,
                    rolled: false,
                    slot: i as u32,
                    prev: i as i64 - 1,
                    phys: i,
                    due_ms: i as i64,
                })
                .unwrap();
            assert_eq!(pos, i * 32);
            if i == 500 {
                log.write_out().unwrap();
            }
        }
        for i in [0, 127, 128, 500, 501, 999] {
            assert_eq!(log.read_unit(i * 32).unwrap().phys, i);
        }
        let r = log.reader(100 * 32, n * 32);
        for i in 100..n {
            assert_eq!(r.unit(i * 32).unwrap().due_ms, i as i64);
        }
        log.write_out().unwrap();
        assert_eq!(log.delete_below(8192).unwrap(), 8192);
        assert_eq!(log.first_pos(), 8192);
        drop(log);
        // Reopen at a checkpointed end: files past it go away.
        let log = TimerLog::open(env, dir, 4096, 12288).unwrap();
        assert_eq!(log.end(), 12288);
        assert_eq!(log.read_unit(8192).unwrap().phys, 256);
    }
}
