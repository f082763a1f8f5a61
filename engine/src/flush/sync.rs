//! `sync`: one fdatasync per message before the ack. The honest
//! per-message cost; no batching at all (concurrent puts still each pay
//! their own fdatasync, serialized on the log's flush lock).
//!
//! A blocking put calls its fdatasync on its own thread. An asynchronous
//! put ([`FlushStrategy::ack_async`]) must not block its caller, so its
//! fdatasync is made by the completer thread: completions wait in a FIFO
//! queue and the completer takes them one at a time, calls one forced
//! fdatasync for each (the same `flush(true)` a blocking put calls, so the
//! contract stays one fdatasync per message, even when an earlier one
//! already covered the record) and then calls the completion.
//!
//! The queue is unbounded: enqueueing never blocks the caller. What bounds
//! it is the caller's own limit on puts in flight (the broker's); a caller
//! without one queues as fast as it appends, and each queued put holds
//! only its small completion. Like the blocking put, an asynchronous `sync`
//! put never answers FLUSH_DISK_TIMEOUT: it waits for its own fdatasync.
//! [`FlushStrategy::stop`] calls every completion still queued with
//! "store is shutting down" (a clean shutdown first waits for puts in
//! flight, so normally none is left).

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use super::{AckCallback, FlushStrategy};
use crate::error::{Error, Result};
use crate::log::CommitLog;
use crate::message::PutStatus;

/// Name in results.
pub const NAME: &str = "sync";

struct Queue {
    /// Asynchronous puts waiting for their fdatasync: (end, completion).
    pending: VecDeque<(u64, AckCallback)>,
    stop: bool,
}

struct Shared {
    log: Arc<CommitLog>,
    queue: Mutex<Queue>,
    /// Wakes the completer: a new completion, or stop.
    work: Condvar,
}

/// The sync strategy.
pub struct SyncFlush {
    shared: Arc<Shared>,
    completer: Mutex<Option<JoinHandle<()>>>,
}

impl SyncFlush {
    /// Starts the completer thread (idle until an asynchronous put).
    pub fn new(log: Arc<CommitLog>) -> Self {
        let shared = Arc::new(Shared {
            log,
            queue: Mutex::new(Queue {
                pending: VecDeque::new(),
                stop: false,
            }),
            work: Condvar::new(),
        });
        let s2 = shared.clone();
        let handle = std::thread::Builder::new()
            .name("mqlab-sync-completer".into())
            .spawn(move || complete_queued(&s2))
            .expect("spawn sync completer thread");
        SyncFlush {
            shared,
            completer: Mutex::new(Some(handle)),
        }
    }
}

fn shutting_down() -> Error {
    Error::Unavailable("store is shutting down".into())
}

/// The completer: one forced fdatasync per queued put, then its
/// completion; on stop, every completion left gets "shutting down".
fn complete_queued(sh: &Shared) {
    loop {
        let (end, done) = {
            let mut q = sh.queue.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if q.stop {
                    let left = std::mem::take(&mut q.pending);
                    drop(q);
                    for (_, done) in left {
                        done(Err(shutting_down()));
                    }
                    return;
                }
                if let Some(item) = q.pending.pop_front() {
                    break item;
                }
                q = sh.work.wait(q).unwrap_or_else(|e| e.into_inner());
            }
        };
        // An error poisons the log; this put and every later one see it.
        let r = sh.log.flush(true).map(|_| {
            debug_assert!(sh.log.flushed() >= end);
            PutStatus::PutOk
        });
        done(r);
    }
}

impl FlushStrategy for SyncFlush {
    fn name(&self) -> &'static str {
        NAME
    }

    fn await_ack(&self, end: u64) -> Result<PutStatus> {
        self.log().flush(true)?;
        debug_assert!(self.log().flushed() >= end);
        Ok(PutStatus::PutOk)
    }

    fn ack_async(&self, end: u64, done: AckCallback) {
        let sh = &*self.shared;
        let mut q = sh.queue.lock().unwrap_or_else(|e| e.into_inner());
        if q.stop {
            drop(q);
            done(Err(shutting_down()));
            return;
        }
        q.pending.push_back((end, done));
        sh.work.notify_one();
    }

    fn stop(&self) {
        {
            let mut q = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            q.stop = true;
            self.shared.work.notify_all();
        }
        let handle = self
            .completer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        // Never join from the completer itself (a completion that ends up
        // dropping the store): it returns once it sees `stop`.
        if let Some(h) = handle.filter(|h| h.thread().id() != std::thread::current().id()) {
            let _ = h.join();
        }
    }
}

impl SyncFlush {
    fn log(&self) -> &CommitLog {
        &self.shared.log
    }
}

impl Drop for SyncFlush {
    fn drop(&mut self) {
        self.stop();
    }
}
