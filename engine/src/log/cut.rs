//! A follower's cut of a live log (see `Store::truncate_to`): everything
//! from `end` on goes, while the store stays open.

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use super::{CommitLog, QueueTable};
use crate::error::{Error, Result};

impl CommitLog {
    /// Cuts the log at `end` (a record boundary at or past the first
    /// stored byte, below the write end): staged bytes are written out
    /// first, the bytes from `end` to the old write end in its segment are
    /// zeroed (with writes, not by shrinking a file a reader may map), the
    /// segment is synced, later segments are deleted, and every position
    /// (written, committed, acked; flushed if it was past) moves back to
    /// `end`. Appends, the committer and flushes wait meanwhile. Returns
    /// the segments deleted and the bytes cut.
    pub fn cut_live(&self, end: u64) -> Result<(Vec<PathBuf>, u64)> {
        if self.read_only {
            return Err(Error::Unavailable("store opened read-only".into()));
        }
        let _a = self.append.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = self.warmer.get() {
            // A segment warmed past the cut would be left beyond a gap.
            w.discard();
            let s = self.segment_bytes;
            self.warm_at.store(end - end % s + s / 2, Ordering::Release);
        }
        let _c = self.staging.as_ref().map(|st| st.commit_lock());
        let _f = self.flush_lock.lock().unwrap_or_else(|e| e.into_inner());
        self.check_poison()?;
        let written = self.written.load(Ordering::Acquire);
        if end >= written {
            return Ok((Vec::new(), 0));
        }
        if end < self.min_offset() {
            return Err(Error::NotFound(end));
        }
        if let Some(st) = &self.staging {
            if let Some((start, data)) = st.take() {
                let r = self.write_staged(start, &data);
                st.return_spare(data);
                r?;
            }
        }
        let s = self.segment_bytes;
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
            // Past the old write end the segment holds zeros already.
            let stop = written.min(last.base + s);
            let zeros = vec![0u8; 1 << 20];
            let mut at = end;
            while at < stop {
                let n = (stop - at).min(zeros.len() as u64) as usize;
                last.file
                    .write_at(at - last.base, &zeros[..n])
                    .map_err(|e| Error::io("zero", &last.path, e))?;
                at += n as u64;
            }
            last.file
                .sync_data()
                .map_err(|e| Error::io("fdatasync", &last.path, e))?;
        }
        drop(segs);
        if !removed.is_empty() {
            self.series
                .sync_dir()
                .map_err(|e| Error::io("sync dir", self.series.dir(), e))?;
        }
        self.written.store(end, Ordering::SeqCst);
        self.committed.store(end, Ordering::SeqCst);
        self.acked.fetch_min(end, Ordering::SeqCst);
        self.flushed.fetch_min(end, Ordering::SeqCst);
        if let Some(st) = &self.staging {
            st.reset(end);
        }
        {
            let mut last = self.last_append.lock().unwrap_or_else(|e| e.into_inner());
            if last.0 > end {
                *last = (end, last.1);
            }
        }
        Ok((removed, written - end))
    }

    /// Replaces the next queue offset per (topic, queue) (after a cut).
    pub fn set_queue_table(&self, table: QueueTable) {
        self.append
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .queue_table = table;
    }
}
