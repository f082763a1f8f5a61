//! Segment warming (`StoreConfig::warm_segments`, RocketMQ's
//! `warmMapedFileEnable` with its `AllocateMappedFileService`): the next
//! commit-log segment is created and written with zeros on a thread of its
//! own before the appender reaches it.
//!
//! Why: on ext4 a write into a block the file never had (a fresh sparse or
//! fallocated segment) allocates it, and the fdatasync that covers the
//! write must then commit that allocation through the journal. Measured
//! here (`scripts/fresh-blocks.py`, `results/async-put/fresh-blocks.txt`):
//! pwrite+fdatasync of 18 KiB runs at 7.3k/s into fresh blocks, 12.8k/s
//! into blocks written with zeros beforehand, 13.9k/s rewriting the same
//! blocks. Writing the zeros ahead moves the allocation off the
//! acknowledgement path.
//!
//! Invariants:
//! - A file being warmed is in no segment list: nobody reads or appends it
//!   until [`Warmer::take`] hands it over, and `take` first stops the
//!   warming and waits for the zero write in progress (one chunk,
//!   [`CHUNK_BYTES`]). Zeros are what a fresh segment holds anyway, so a
//!   segment warmed partly, or a warmed one left behind by a crash, is an
//!   ordinary empty segment to recovery.
//! - Warming never fails the store: a failed create, write or sync leaves
//!   the appender to create the segment itself, as without warming (and
//!   to report the error itself if the disk really is bad). The failure is
//!   kept for [`Warmer::last_error`].
//! - A warmed file that is not taken (a different base was wanted, the
//!   log was cut, the store stops) is deleted.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use crate::io::File;
use crate::series::FileSeries;

/// Zeros written per write call; also the longest `take` waits.
pub const CHUNK_BYTES: usize = 1 << 20;

struct Ready {
    base: u64,
    file: Arc<dyn File>,
}

#[derive(Default)]
struct State {
    /// The base asked for and not started yet.
    want: Option<u64>,
    /// The base being warmed now.
    busy: Option<u64>,
    /// Stop warming `busy` after the current chunk.
    abort: bool,
    stop: bool,
    ready: Option<Ready>,
    last_error: Option<String>,
    /// Segments fully warmed since start (for tests and reports).
    warmed: u64,
}

struct Shared {
    series: FileSeries,
    segment_bytes: u64,
    preallocate: bool,
    state: Mutex<State>,
    cv: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn remove(&self, base: u64) {
        // Best effort: a leftover is an empty segment to recovery.
        if self.series.remove(base).is_ok() {
            let _ = self.series.sync_dir();
        }
    }

    /// Creates `base` and writes zeros over it; `Ok(true)` when every
    /// byte was written and synced, `Ok(false)` when stopped early.
    fn warm(&self, base: u64) -> std::io::Result<(Arc<dyn File>, bool)> {
        let file = self
            .series
            .create(base, self.segment_bytes, self.preallocate)?;
        self.series.sync_dir()?;
        let zeros = vec![0u8; CHUNK_BYTES];
        let mut at = 0u64;
        while at < self.segment_bytes {
            {
                let st = self.lock();
                if st.abort || st.stop {
                    return Ok((file, false));
                }
            }
            let n = (self.segment_bytes - at).min(CHUNK_BYTES as u64) as usize;
            file.write_at(at, &zeros[..n])?;
            at += n as u64;
        }
        file.sync_data()?;
        Ok((file, true))
    }

    fn run(&self) {
        loop {
            let base = {
                let mut st = self.lock();
                loop {
                    if st.stop {
                        return;
                    }
                    if let Some(b) = st.want.take() {
                        st.busy = Some(b);
                        st.abort = false;
                        break b;
                    }
                    st = self.cv.wait(st).unwrap_or_else(|e| e.into_inner());
                }
            };
            let result = self.warm(base);
            let mut st = self.lock();
            st.busy = None;
            match result {
                Ok((file, whole)) => {
                    st.warmed += u64::from(whole);
                    if let Some(old) = st.ready.replace(Ready { base, file }) {
                        if old.base != base {
                            self.remove(old.base);
                        }
                    }
                }
                Err(e) => {
                    st.last_error =
                        Some(format!("warming {}: {e}", self.series.path(base).display()));
                }
            }
            self.cv.notify_all();
        }
    }
}

/// The warming thread of one commit log.
pub struct Warmer {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Warmer {
    /// Starts the thread (`mqlab-warm`); it waits for a [`Warmer::request`].
    pub fn start(series: FileSeries, segment_bytes: u64, preallocate: bool) -> Warmer {
        let shared = Arc::new(Shared {
            series,
            segment_bytes,
            preallocate,
            state: Mutex::new(State::default()),
            cv: Condvar::new(),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("mqlab-warm".into())
            .spawn(move || s.run())
            .ok();
        Warmer {
            shared,
            thread: Mutex::new(thread),
        }
    }

    /// Asks for the segment at `base` to be warmed next (an earlier ask not
    /// started yet is dropped).
    pub fn request(&self, base: u64) {
        let mut st = self.shared.lock();
        if st.busy == Some(base) || st.ready.as_ref().is_some_and(|r| r.base == base) {
            return;
        }
        st.want = Some(base);
        self.shared.cv.notify_all();
    }

    /// Waits until nothing is asked for or being warmed.
    pub fn wait_idle(&self) {
        let mut st = self.shared.lock();
        while (st.want.is_some() || st.busy.is_some()) && !st.stop {
            st = self.shared.cv.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// The file for `base`, warmed wholly or in part (warming it stops
    /// after the chunk being written), or None: then the caller creates
    /// the segment. A file warmed for another base is deleted.
    pub fn take(&self, base: u64) -> Option<Arc<dyn File>> {
        let mut st = self.shared.lock();
        if st.want == Some(base) {
            st.want = None;
        }
        if st.busy == Some(base) {
            st.abort = true;
            while st.busy == Some(base) {
                st = self.shared.cv.wait(st).unwrap_or_else(|e| e.into_inner());
            }
        }
        match st.ready.take() {
            Some(r) if r.base == base => Some(r.file),
            Some(r) => {
                self.shared.remove(r.base);
                None
            }
            None => None,
        }
    }

    /// Forgets everything asked for or warmed (the log was cut): stops the
    /// warming in progress and deletes the warmed file.
    pub fn discard(&self) {
        let mut st = self.shared.lock();
        st.want = None;
        if st.busy.is_some() {
            st.abort = true;
            while st.busy.is_some() {
                st = self.shared.cv.wait(st).unwrap_or_else(|e| e.into_inner());
            }
        }
        if let Some(r) = st.ready.take() {
            self.shared.remove(r.base);
        }
    }

    /// Segments warmed whole since start.
    pub fn warmed(&self) -> u64 {
        self.shared.lock().warmed
    }

    /// The last warming failure, if any.
    pub fn last_error(&self) -> Option<String> {
        self.shared.lock().last_error.clone()
    }
}

impl Drop for Warmer {
    fn drop(&mut self) {
        {
            let mut st = self.shared.lock();
            st.stop = true;
            self.shared.cv.notify_all();
        }
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = t.join();
        }
        if let Some(r) = self.shared.lock().ready.take() {
            self.shared.remove(r.base);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::sim::SimEnv;

    fn warmer(seg: u64) -> (Warmer, FileSeries) {
        let env: Arc<dyn crate::io::Env> = Arc::new(SimEnv::new(1));
        let series = FileSeries::new(env, "/log");
        series.create_dir().unwrap();
        (Warmer::start(series.clone(), seg, false), series)
    }

    #[test]
    fn a_requested_segment_is_warmed_whole_and_handed_over() {
        let seg = 3 * CHUNK_BYTES as u64 + 5;
        let (w, series) = warmer(seg);
        w.request(seg);
        w.wait_idle();
        assert_eq!(w.warmed(), 1);
        assert!(w.last_error().is_none());
        let f = w.take(seg).expect("warmed file handed over");
        assert_eq!(f.len(), seg);
        assert!(series.env().exists(&series.path(seg)));
        // Taken once only.
        assert!(w.take(seg).is_none());
    }

    #[test]
    fn a_file_warmed_for_another_base_is_deleted_not_handed_over() {
        let seg = CHUNK_BYTES as u64;
        let (w, series) = warmer(seg);
        w.request(2 * seg);
        w.wait_idle();
        assert!(w.take(seg).is_none());
        assert!(!series.env().exists(&series.path(2 * seg)));
    }

    #[test]
    fn discard_and_drop_delete_what_was_not_taken() {
        let seg = CHUNK_BYTES as u64;
        let (w, series) = warmer(seg);
        w.request(seg);
        w.wait_idle();
        w.discard();
        assert!(!series.env().exists(&series.path(seg)));
        w.request(2 * seg);
        w.wait_idle();
        assert!(series.env().exists(&series.path(2 * seg)));
        drop(w);
        assert!(!series.env().exists(&series.path(2 * seg)));
    }

    #[test]
    fn take_during_warming_stops_it_and_hands_over_the_file() {
        // Big enough that the warming is still running when take comes.
        let seg = 256 * CHUNK_BYTES as u64;
        let (w, _series) = warmer(seg);
        w.request(0);
        // Wait until it started.
        loop {
            let st = w.shared.lock();
            if st.busy.is_some() || st.ready.is_some() {
                break;
            }
            drop(st);
            std::thread::yield_now();
        }
        let f = w.take(0).expect("the file is handed over");
        assert_eq!(f.len(), seg);
        let st = w.shared.lock();
        assert!(st.busy.is_none() && st.ready.is_none());
    }
}
