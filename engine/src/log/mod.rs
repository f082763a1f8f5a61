//! The commit log: one append-only byte space cut into fixed-size segment
//! files, every message of every topic in arrival order.
//!
//! Invariants:
//! - Segment bases are multiples of the segment size and contiguous; a
//!   segment file is named by its 20-digit base offset.
//! - A record never straddles two segments: when `record + 8 > remaining`
//!   a blank record fills the tail and the writer rolls.
//! - `flushed <= committed <= written` at every instant (atomics, each
//!   monotonic). Readers only see bytes below `committed`.
//! - After any failed write or sync the log is poisoned: every later append
//!   or flush fails with [`Error::Poisoned`]. A failed fsync is never retried.

pub mod checkpoint;
mod cut;
mod open;
mod raw;
pub mod record;
pub mod scan;
mod staging;
mod warm;

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::error::{Error, Result};
use crate::io::File;
use crate::message::{AppendOffsets, Message};
use crate::series::FileSeries;
pub use open::LogOptions;
pub use raw::RawAppend;
use record::{CrcCheck, DecodeError, Decoded};
use staging::Staging;
pub use warm::Warmer;

/// One segment file.
pub struct Segment {
    /// Physical offset of its first byte.
    pub base: u64,
    /// Path of the file.
    pub path: PathBuf,
    /// The open file.
    pub file: Arc<dyn File>,
}

pub use crate::series::{file_name, parse_file_name};

/// Highest segment base accepted (see `CommitLog::open`).
pub const MAX_SEGMENT_BASE: u64 = 1 << 62;

/// Per-topic, per-queue next queue offset.
pub type QueueTable = HashMap<String, HashMap<u32, u64>>;

struct AppendState {
    queue_table: QueueTable,
}

thread_local! {
    static ENCODE_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The commit log.
pub struct CommitLog {
    series: FileSeries,
    segment_bytes: u64,
    preallocate: bool,
    read_only: bool,
    store_host: std::net::SocketAddr,
    record_crc: bool,
    segments: RwLock<Vec<Arc<Segment>>>,
    append: Mutex<AppendState>,
    written: AtomicU64,
    committed: AtomicU64,
    flushed: AtomicU64,
    acked: AtomicU64,
    flush_lock: Mutex<()>,
    poisoned: AtomicBool,
    poison_reason: Mutex<Option<String>>,
    staging: Option<Staging>,
    /// (end offset, store timestamp) of the newest record appended.
    last_append: Mutex<(u64, i64)>,
    /// Segment warming, once started ([`CommitLog::start_warming`]).
    warmer: std::sync::OnceLock<Warmer>,
    /// The write position at which the next segment is to be warmed
    /// (`u64::MAX`: none pending).
    warm_at: AtomicU64,
}

impl CommitLog {
    /// Segment size in bytes.
    pub fn segment_bytes(&self) -> u64 {
        self.segment_bytes
    }

    /// Directory of the segments.
    pub fn dir(&self) -> &Path {
        self.series.dir()
    }

    /// Snapshot of the segment list.
    pub fn segments(&self) -> Vec<Arc<Segment>> {
        self.segments
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Physical offset of the first stored byte.
    pub fn min_offset(&self) -> u64 {
        self.segments
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .first()
            .map(|s| s.base)
            .unwrap_or(0)
    }

    /// Sets all positions after recovery (single-threaded, at open).
    pub fn set_recovered(&self, end: u64, queue_table: QueueTable) {
        self.written.store(end, Ordering::SeqCst);
        self.committed.store(end, Ordering::SeqCst);
        self.flushed.store(end, Ordering::SeqCst);
        self.acked.store(end, Ordering::SeqCst);
        if let Some(st) = &self.staging {
            st.reset(end);
        }
        self.append
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .queue_table = queue_table;
    }

    /// Offsets (written, committed, flushed, acked).
    pub fn offsets(&self) -> crate::message::Offsets {
        // Read in the order that keeps the invariants in the snapshot:
        // flushed first, then committed, then written.
        let flushed = self.flushed.load(Ordering::Acquire);
        let committed = self.committed.load(Ordering::Acquire);
        let written = self.written.load(Ordering::Acquire);
        let acked = self.acked.load(Ordering::Acquire);
        crate::message::Offsets {
            written,
            committed,
            flushed,
            acked,
        }
    }

    /// End of committed data (what readers may see).
    pub fn committed(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    /// End of durable data.
    pub fn flushed(&self) -> u64 {
        self.flushed.load(Ordering::Acquire)
    }

    /// End of written data.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    /// Store timestamp of the newest record when it is durable, else
    /// `None` (the caller keeps its previous, older value: RocketMQ's
    /// recovery starts from this timestamp minus 3 s, so older is safe).
    pub fn flushed_store_timestamp(&self) -> Option<i64> {
        let (end, ts) = *self.last_append.lock().unwrap_or_else(|e| e.into_inner());
        (end > 0 && self.flushed() >= end).then_some(ts)
    }

    /// Records that a put ending at `end` was acknowledged. `durable`: the
    /// strategy acknowledges only durable puts (sync, group), so `end` must
    /// not be past the flushed offset (asserted in debug builds).
    pub fn mark_acked(&self, end: u64, durable: bool) {
        if durable {
            let flushed = self.flushed();
            debug_assert!(
                end <= flushed,
                "acked {end} > flushed {flushed} under a durable-ack strategy"
            );
        }
        debug_assert!(end <= self.written(), "acked {end} past written");
        self.acked.fetch_max(end, Ordering::AcqRel);
    }

    /// Asserts (debug builds) `flushed <= committed <= written`. The loads
    /// go in that order: each offset only grows and every writer keeps the
    /// order at every instant, so an earlier smaller offset never exceeds a
    /// later larger one.
    fn debug_check_offsets(&self) {
        if cfg!(debug_assertions) {
            let flushed = self.flushed.load(Ordering::Acquire);
            let committed = self.committed.load(Ordering::Acquire);
            let written = self.written.load(Ordering::Acquire);
            debug_assert!(
                flushed <= committed && committed <= written,
                "offset order broken: flushed {flushed}, committed {committed}, written {written}"
            );
        }
    }

    /// Debug builds decode the record just encoded, before it is written:
    /// its length, position, queue offset, topic and CRCs must read back
    /// as the reader will check them (the write side of the checks
    /// `read_record` and recovery make).
    fn debug_check_encoded(
        &self,
        buf: &[u8],
        pos: u64,
        seg_left: u64,
        msg: &Message,
        queue_offset: u64,
    ) {
        if !cfg!(debug_assertions) {
            return;
        }
        let crc = if self.record_crc {
            CrcCheck::Required
        } else {
            CrcCheck::Present
        };
        match record::decode_view(buf, pos, seg_left, crc) {
            Ok(record::DecodedView::Message(v)) => {
                debug_assert_eq!(v.total_size as usize, buf.len(), "record length");
                debug_assert_eq!(v.phys_offset, pos, "record position");
                debug_assert_eq!(v.queue_offset, queue_offset, "record queue offset");
                debug_assert_eq!(v.topic, msg.topic.as_str(), "record topic");
                debug_assert_eq!(v.queue_id, msg.queue_id, "record queue id");
                debug_assert_eq!(v.body, &msg.body[..], "record body");
            }
            other => panic!("record encoded at {pos} does not decode: {other:?}"),
        }
    }

    /// The poison reason, if the log refuses writes.
    pub fn poisoned(&self) -> Option<String> {
        if !self.poisoned.load(Ordering::Acquire) {
            return None;
        }
        self.poison_reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn check_poison(&self) -> Result<()> {
        match self.poisoned() {
            Some(r) => Err(Error::Poisoned(r)),
            None => Ok(()),
        }
    }

    /// Poisons the log and returns the error to hand back.
    pub fn poison(&self, op: &'static str, path: &Path, e: std::io::Error) -> Error {
        let err = Error::io(op, path, e);
        let mut r = self.poison_reason.lock().unwrap_or_else(|e| e.into_inner());
        if r.is_none() {
            *r = Some(err.to_string());
        }
        self.poisoned.store(true, Ordering::Release);
        err
    }

    /// Poisons the log with a message (shutdown, disk full, ...).
    pub fn poison_with(&self, reason: String) {
        let mut r = self.poison_reason.lock().unwrap_or_else(|e| e.into_inner());
        if r.is_none() {
            *r = Some(reason);
        }
        self.poisoned.store(true, Ordering::Release);
    }

    fn segment_for(&self, phys: u64) -> Option<Arc<Segment>> {
        let segs = self.segments.read().unwrap_or_else(|e| e.into_inner());
        let first = segs.first()?.base;
        if phys < first {
            return None;
        }
        let idx = ((phys - first) / self.segment_bytes) as usize;
        segs.get(idx).cloned()
    }

    fn create_segment(&self, base: u64) -> Result<Arc<Segment>> {
        let path = self.series.path(base);
        let warmed = self.warmer.get().and_then(|w| w.take(base));
        let file = match warmed {
            Some(f) => f,
            None => self
                .series
                .create(base, self.segment_bytes, self.preallocate)
                .map_err(|e| self.poison("create segment", &path, e))?,
        };
        self.series
            .sync_dir()
            .map_err(|e| self.poison("sync dir", self.series.dir(), e))?;
        let seg = Arc::new(Segment { base, path, file });
        self.segments
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(seg.clone());
        if self.warmer.get().is_some() {
            // The next one is warmed once half of this one is written.
            self.warm_at
                .store(base + self.segment_bytes / 2, Ordering::Release);
        }
        Ok(seg)
    }

    /// Starts warming segments (`StoreConfig::warm_segments`; see
    /// `warm.rs`): called once, after recovery. A log without a segment at
    /// its write position (a new store) gets that segment warmed before
    /// this returns (writing `segment_bytes` of zeros); later segments are
    /// warmed on the warming thread once the write position is half way
    /// through the segment before.
    pub fn start_warming(&self) {
        if self.read_only || self.warmer.get().is_some() {
            return;
        }
        let w = self.warmer.get_or_init(|| {
            Warmer::start(self.series.clone(), self.segment_bytes, self.preallocate)
        });
        let s = self.segment_bytes;
        let written = self.written.load(Ordering::Acquire);
        let base = written - written % s;
        if self.segment_for(base).is_none() {
            w.request(base);
            w.wait_idle();
        } else {
            self.warm_at.store(base + s / 2, Ordering::Release);
            self.maybe_warm(written);
        }
    }

    /// Capacity of the staging area (`pool`, batched `group`), bytes; an
    /// append waits while it is full. None without one.
    pub fn staging_capacity(&self) -> Option<usize> {
        self.staging.as_ref().map(|st| st.capacity_bytes())
    }

    /// The warming thread, when warming is on.
    pub fn warmer(&self) -> Option<&Warmer> {
        self.warmer.get()
    }

    /// Asks for the next segment to be warmed once the write position
    /// `end` has passed the trigger (one atomic load per append).
    fn maybe_warm(&self, end: u64) {
        if end < self.warm_at.load(Ordering::Acquire) {
            return;
        }
        if let Some(w) = self.warmer.get() {
            let at = self.warm_at.swap(u64::MAX, Ordering::AcqRel);
            if at != u64::MAX {
                let s = self.segment_bytes;
                w.request(at - at % s + s);
            }
        }
    }

    /// Appends one message. `properties` is the encoded property string
    /// (validated by the caller). Returns where it landed and the end
    /// offset; the flush strategy decides when to acknowledge it.
    pub fn append(
        &self,
        msg: &Message,
        properties: &[u8],
        born_timestamp_ms: i64,
        store_timestamp_ms: i64,
    ) -> Result<(AppendOffsets, u64)> {
        if self.read_only {
            return Err(Error::Unavailable("store opened read-only".into()));
        }
        ENCODE_BUF.with(|cell| {
            let mut buf = cell.borrow_mut();
            let layout = record::encode(
                msg,
                properties,
                born_timestamp_ms,
                &self.store_host,
                self.record_crc,
                &mut buf,
            );
            let len = buf.len() as u64;
            let mut st = self.append.lock().unwrap_or_else(|e| e.into_inner());
            self.check_poison()?;
            let mut pos = self.written.load(Ordering::Acquire);
            let s = self.segment_bytes;
            let remaining = s - pos % s;
            if len + record::END_FILE_MIN_BLANK_LENGTH > remaining {
                // Fill the tail with a blank record and roll. Every record
                // leaves at least 8 bytes, so the blank always fits.
                let blank = record::blank(remaining as u32);
                if self.staging.is_some() {
                    // The staging area mirrors the file byte for byte, so
                    // the blank's tail is staged as zeros (less than one
                    // record: remaining < len + 8).
                    let mut padded = vec![0u8; remaining as usize];
                    padded[..8].copy_from_slice(&blank);
                    // Staged bytes can be committed at once: `written`
                    // moves first so `committed <= written` always holds.
                    self.written.store(pos + remaining, Ordering::Release);
                    self.write_bytes(pos, &padded)?;
                } else {
                    self.write_bytes(pos, &blank)?;
                }
                pos += remaining;
                self.written.store(pos, Ordering::Release);
                if self.staging.is_none() {
                    self.committed.store(pos, Ordering::Release);
                }
            }
            if pos.is_multiple_of(s) && self.segment_for(pos).is_none() {
                self.create_segment(pos)?;
            }
            // Look up by &str first: no allocation per put once the topic
            // is known.
            if !st.queue_table.contains_key(msg.topic.as_str()) {
                st.queue_table.insert(msg.topic.clone(), HashMap::new());
            }
            let queue_offset = *st
                .queue_table
                .get_mut(msg.topic.as_str())
                .expect("inserted above")
                .entry(msg.queue_id)
                .or_insert(0);
            record::finish(&mut buf, layout, queue_offset, pos, store_timestamp_ms);
            self.debug_check_encoded(&buf, pos, remaining_after(pos, s), msg, queue_offset);
            if self.staging.is_some() {
                // The commit service may take these bytes as soon as they
                // are staged: `written` covers them first.
                self.written.store(pos + len, Ordering::Release);
            }
            self.write_bytes(pos, &buf)?;
            if let Some(q) = st
                .queue_table
                .get_mut(msg.topic.as_str())
                .and_then(|t| t.get_mut(&msg.queue_id))
            {
                *q += 1;
            }
            let end = pos + len;
            self.maybe_warm(end);
            *self.last_append.lock().unwrap_or_else(|e| e.into_inner()) = (end, store_timestamp_ms);
            self.written.store(end, Ordering::Release);
            if self.staging.is_none() {
                self.committed.store(end, Ordering::Release);
            }
            drop(st);
            self.debug_check_offsets();
            Ok((
                AppendOffsets {
                    phys_offset: pos,
                    wrote_bytes: len as u32,
                    queue_offset,
                    store_timestamp_ms,
                },
                end,
            ))
        })
    }

    /// Writes bytes at `pos` (within one segment): into the staging buffer
    /// for the pool strategy, else into the segment file.
    fn write_bytes(&self, pos: u64, bytes: &[u8]) -> Result<()> {
        if let Some(st) = &self.staging {
            return st.push(pos, bytes, || self.check_poison());
        }
        self.write_file(pos, bytes)
    }

    fn write_file(&self, pos: u64, bytes: &[u8]) -> Result<()> {
        let seg = match self.segment_for(pos) {
            Some(seg) => seg,
            None => self.create_segment(pos - pos % self.segment_bytes)?,
        };
        seg.file
            .write_at(pos - seg.base, bytes)
            .map_err(|e| self.poison("write", &seg.path, e))
    }

    /// Pool strategy: copies staged bytes into the segment files and
    /// advances `committed`. A no-op for other strategies.
    pub fn commit(&self) -> Result<u64> {
        let Some(st) = &self.staging else {
            return Ok(self.committed());
        };
        let _c = st.commit_lock();
        self.check_poison()?;
        let Some((start, data)) = st.take() else {
            return Ok(self.committed());
        };
        let result = self.write_staged(start, &data);
        let end = start + data.len() as u64;
        st.return_spare(data);
        result?;
        self.committed.store(end, Ordering::Release);
        self.debug_check_offsets();
        Ok(end)
    }

    /// Group commit with batched writes: writes the staged batch and makes
    /// everything up to its end durable. When the batch lies in one segment
    /// and everything before that segment is already durable, the write
    /// and the fdatasync go to the backend as one
    /// [`File::write_at_and_sync`] (one io_uring submission); otherwise
    /// `commit` then `flush`. Returns the new flushed offset.
    pub fn commit_and_flush(&self) -> Result<u64> {
        let Some(st) = &self.staging else {
            return self.flush(false);
        };
        let c = st.commit_lock();
        self.check_poison()?;
        let Some((start, data)) = st.take() else {
            drop(c);
            return self.flush(false);
        };
        let end = start + data.len() as u64;
        let _g = self.flush_lock.lock().unwrap_or_else(|e| e.into_inner());
        let one = self.segment_for(start).filter(|g| {
            end <= g.base + self.segment_bytes && self.flushed.load(Ordering::Acquire) >= g.base
        });
        let result = match &one {
            Some(g) => g
                .file
                .write_at_and_sync(start - g.base, &data)
                .map_err(|e| self.poison("write+fdatasync", &g.path, e)),
            None => self.write_staged(start, &data),
        };
        st.return_spare(data);
        result?;
        self.committed.store(end, Ordering::Release);
        drop(c);
        if one.is_some() {
            self.flushed.fetch_max(end, Ordering::AcqRel);
            self.debug_check_offsets();
            return Ok(end);
        }
        self.flush_locked(false)
    }

    /// Writes staged bytes starting at `start` into the segment files,
    /// split at segment boundaries (a blank record ends each segment, so
    /// records never straddle, but the staged bytes may span several).
    fn write_staged(&self, start: u64, data: &[u8]) -> Result<()> {
        let mut pos = start;
        let mut off = 0usize;
        while off < data.len() {
            let room = (self.segment_bytes - pos % self.segment_bytes) as usize;
            let n = room.min(data.len() - off);
            self.write_file(pos, &data[off..off + n])?;
            pos += n as u64;
            off += n;
        }
        Ok(())
    }

    /// Wakes writers blocked on a full pool (after poisoning).
    pub fn wake_blocked(&self) {
        if let Some(st) = &self.staging {
            st.wake();
        }
    }

    /// Makes everything committed durable. With `force`, calls fdatasync
    /// even when nothing new was committed (the `sync` strategy: one
    /// fdatasync per message, measured honestly). Returns the new flushed
    /// offset.
    pub fn flush(&self, force: bool) -> Result<u64> {
        let _g = self.flush_lock.lock().unwrap_or_else(|e| e.into_inner());
        self.flush_locked(force)
    }

    /// [`CommitLog::flush`] with `flush_lock` held.
    fn flush_locked(&self, force: bool) -> Result<u64> {
        self.check_poison()?;
        let from = self.flushed.load(Ordering::Acquire);
        let target = self.committed.load(Ordering::Acquire);
        if target <= from && !force {
            return Ok(from);
        }
        let segs = self.segments();
        let s = self.segment_bytes;
        let first = from - from % s;
        let mut synced = false;
        for seg in segs.iter().filter(|g| g.base >= first && g.base < target) {
            seg.file
                .sync_data()
                .map_err(|e| self.poison("fdatasync", &seg.path, e))?;
            synced = true;
        }
        if force && !synced {
            if let Some(seg) = self.segment_for(target.saturating_sub(1)) {
                seg.file
                    .sync_data()
                    .map_err(|e| self.poison("fdatasync", &seg.path, e))?;
            }
        }
        self.flushed.fetch_max(target, Ordering::AcqRel);
        self.debug_check_offsets();
        Ok(target)
    }

    /// Reads raw bytes at `phys` within one segment, at most up to `limit`
    /// (an end offset). Returns the number of bytes read.
    pub fn read_raw(&self, phys: u64, buf: &mut [u8], limit: u64) -> Result<usize> {
        let Some(seg) = self.segment_for(phys) else {
            return Ok(0);
        };
        let seg_end = seg.base + self.segment_bytes;
        let max = (seg_end.min(limit).saturating_sub(phys)) as usize;
        let n = buf.len().min(max);
        seg.file
            .read_at(phys - seg.base, &mut buf[..n])
            .map_err(|e| Error::io("read", &seg.path, e))
    }

    /// The first physical offset at or after `phys`, in `phys`'s segment,
    /// that may hold data (see [`crate::io::File::next_data`]); None when
    /// only zeros (or holes) follow in that segment.
    pub fn next_data_in_segment(&self, phys: u64) -> Result<Option<u64>> {
        let Some(seg) = self.segment_for(phys) else {
            return Ok(None);
        };
        Ok(seg
            .file
            .next_data(phys - seg.base)
            .map_err(|e| Error::io("seek data", &seg.path, e))?
            .map(|at| seg.base + at))
    }

    /// Reads and decodes the record at `phys` (below `limit`).
    pub fn read_record(&self, phys: u64, limit: u64, crc: CrcCheck) -> Result<Decoded> {
        if phys >= limit || phys < self.min_offset() {
            return Err(Error::NotFound(phys));
        }
        let seg_left = self.segment_bytes - phys % self.segment_bytes;
        let mut buf = vec![0u8; 4096.min(seg_left as usize)];
        let n = self.read_raw(phys, &mut buf, limit)?;
        buf.truncate(n);
        let corrupt = |e: DecodeError| Error::Corrupt {
            path: self.series.path(phys - phys % self.segment_bytes),
            offset: phys,
            reason: e.to_string(),
        };
        let (total, _) = record::peek_header(&buf).map_err(corrupt)?;
        if total as usize > buf.len() && (total as u64) <= seg_left {
            buf.resize(total as usize, 0);
            let n = self.read_raw(phys, &mut buf, limit)?;
            buf.truncate(n);
        }
        record::decode(&buf, phys, seg_left, crc).map_err(corrupt)
    }

    /// Cuts the log at `end`: zeroes the rest of its segment (by shrinking
    /// and re-growing the file) and deletes every later segment. Used by
    /// recovery only. Returns the paths removed.
    pub fn truncate(&self, end: u64) -> Result<Vec<PathBuf>> {
        if let Some(w) = self.warmer.get() {
            w.discard();
        }
        let mut removed = Vec::new();
        let mut segs = self.segments.write().unwrap_or_else(|e| e.into_inner());
        while segs.last().is_some_and(|last| last.base > end) {
            let last = segs.pop().expect("checked non-empty");
            self.series
                .remove(last.base)
                .map_err(|e| Error::io("remove", &last.path, e))?;
            removed.push(last.path.clone());
        }
        if let Some(last) = segs.last() {
            let keep = end - last.base;
            if keep < self.segment_bytes {
                last.file
                    .set_len(keep)
                    .and_then(|_| last.file.set_len(self.segment_bytes))
                    .and_then(|_| last.file.sync_data())
                    .map_err(|e| Error::io("truncate", &last.path, e))?;
            }
        }
        if !removed.is_empty() {
            self.series
                .sync_dir()
                .map_err(|e| Error::io("sync dir", self.series.dir(), e))?;
        }
        Ok(removed)
    }

    /// Retention: deletes every whole segment that ends at or before
    /// `offset`, oldest first, and returns the paths removed. The segment
    /// holding the write position is never deleted, nor is anything at or
    /// past the flushed offset (a deleted byte must have been durable, so
    /// recovery never needs it). Afterwards [`CommitLog::min_offset`] is the
    /// base of the first remaining segment and reads below it return
    /// `NotFound`. Readers holding a segment keep reading it (the file is
    /// unlinked, not closed).
    pub fn delete_segments_before(&self, offset: u64) -> Result<Vec<PathBuf>> {
        if self.read_only {
            return Err(Error::Unavailable("store opened read-only".into()));
        }
        let s = self.segment_bytes;
        let limit = offset.min(self.flushed());
        let mut removed = Vec::new();
        let mut segs = self.segments.write().unwrap_or_else(|e| e.into_inner());
        while segs.len() > 1 && segs[0].base + s <= limit {
            let seg = segs.remove(0);
            self.series
                .remove(seg.base)
                .map_err(|e| Error::io("remove", &seg.path, e))?;
            removed.push(seg.path.clone());
        }
        drop(segs);
        if !removed.is_empty() {
            self.series
                .sync_dir()
                .map_err(|e| Error::io("sync dir", self.series.dir(), e))?;
        }
        Ok(removed)
    }

    /// Syncs every segment, whether or not this process wrote it. After a
    /// process crash the page cache may hold bytes nobody synced; recovery
    /// calls this before it declares them flushed.
    pub fn sync_every_segment(&self) -> Result<()> {
        for seg in self.segments() {
            seg.file
                .sync_data()
                .map_err(|e| self.poison("fdatasync", &seg.path, e))?;
        }
        Ok(())
    }

    /// Syncs every segment (clean shutdown) and returns the flushed end.
    pub fn sync_all(&self) -> Result<u64> {
        self.commit()?;
        self.flush(false)
    }
}

/// Bytes left in the segment holding `pos`.
fn remaining_after(pos: u64, segment_bytes: u64) -> u64 {
    segment_bytes - pos % segment_bytes
}
