//! The commit log's staging area: bytes appended but not yet written to the
//! segment files. Used by the `pool` strategy (RocketMQ's transient store
//! pool: puts are acknowledged once copied here, the committer writes them
//! out) and by batched group commit (the service writes each batch with one
//! write just before its fdatasync).
//!
//! Invariants:
//! - The staged bytes mirror the file byte for byte from `start`: a put at
//!   `pos` is staged only when `start + staged == pos`.
//! - At most `capacity_bytes` are staged, except that one put always fits
//!   an empty area (a record may exceed a small bound); appenders wait for
//!   room (backpressure) rather than grow the buffer.
//! - Commits are serialized by `commit_lock`: one batch is written at a
//!   time, in offset order.

use std::sync::{Condvar, Mutex, MutexGuard};

use crate::error::Result;

/// Bytes appended but not yet committed to the segment files.
pub(crate) struct Staging {
    state: Mutex<StagingBuf>,
    drained: Condvar,
    capacity_bytes: usize,
    /// Serializes commits (committer thread vs shutdown).
    commit_lock: Mutex<()>,
}

struct StagingBuf {
    /// Physical offset of `data[0]`.
    start: u64,
    data: Vec<u8>,
    spare: Vec<u8>,
}

impl Staging {
    /// Most bytes staged at once (one put always fits).
    pub(crate) fn capacity_bytes(&self) -> usize {
        self.capacity_bytes
    }

    /// An empty staging area holding at most `capacity_bytes`.
    pub(crate) fn new(capacity_bytes: usize) -> Staging {
        Staging {
            state: Mutex::new(StagingBuf {
                start: 0,
                data: Vec::new(),
                spare: Vec::new(),
            }),
            drained: Condvar::new(),
            capacity_bytes,
            commit_lock: Mutex::new(()),
        }
    }

    /// Drops anything staged; the next byte staged lands at `start`
    /// (recovery, single-threaded).
    pub(crate) fn reset(&self, start: u64) {
        let mut s = self.lock_state();
        s.start = start;
        s.data.clear();
    }

    /// Stages `bytes` at `pos`, first waiting while the area is full (the
    /// committer has fallen a whole area behind). `check` runs after every
    /// wake-up and ends the wait with its error (a poisoned log).
    pub(crate) fn push(
        &self,
        pos: u64,
        bytes: &[u8],
        check: impl Fn() -> Result<()>,
    ) -> Result<()> {
        let mut s = self.lock_state();
        while !s.data.is_empty() && s.data.len() + bytes.len() > self.capacity_bytes {
            s = self.drained.wait(s).unwrap_or_else(|e| e.into_inner());
            check()?;
        }
        debug_assert_eq!(s.start + s.data.len() as u64, pos, "staging out of order");
        s.data.extend_from_slice(bytes);
        Ok(())
    }

    /// Holds off other commits while the returned guard lives.
    pub(crate) fn commit_lock(&self) -> MutexGuard<'_, ()> {
        self.commit_lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the staged bytes (with their start offset), leaving the spare
    /// buffer in their place; None when nothing is staged. The caller holds
    /// [`Staging::commit_lock`] and hands the buffer back with
    /// [`Staging::return_spare`].
    pub(crate) fn take(&self) -> Option<(u64, Vec<u8>)> {
        let mut s = self.lock_state();
        if s.data.is_empty() {
            return None;
        }
        let spare = std::mem::take(&mut s.spare);
        let data = std::mem::replace(&mut s.data, spare);
        let start = s.start;
        s.start += data.len() as u64;
        Some((start, data))
    }

    /// Returns a written batch's buffer for reuse and wakes appenders
    /// waiting for room.
    pub(crate) fn return_spare(&self, mut data: Vec<u8>) {
        {
            let mut s = self.lock_state();
            data.clear();
            s.spare = data;
        }
        self.drained.notify_all();
    }

    /// Wakes appenders waiting for room (after the log was poisoned).
    pub(crate) fn wake(&self) {
        self.drained.notify_all();
    }

    fn lock_state(&self) -> MutexGuard<'_, StagingBuf> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}
