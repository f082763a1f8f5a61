//! `group`: RocketMQ's GroupCommitService. Each put registers the end
//! offset it needs durable and waits; one service thread flushes up to the
//! committed end and wakes every put the fdatasync covered. While one
//! fdatasync runs, the next batch forms (pipelining). A put not durable
//! within `sync_flush_timeout_ms` returns FLUSH_DISK_TIMEOUT and stays
//! written. At most `group_max_waiters` puts wait at once; further ones
//! wait for room before registering.
//!
//! Two things keep batches large and the CPU free for appends:
//! - Targeted wakeups: each waiter parks on its own thread handle and the
//!   service unparks exactly the waiters its fdatasync covered (no
//!   `notify_all` herd of hundreds of threads re-checking and sleeping
//!   again after every flush), as a tree: the service wakes two, each
//!   woken put wakes two more, so the service is back at its next
//!   fdatasync after two wakeups instead of hundreds.
//! - Gathering: the puts a flush released come straight back with their
//!   next message (a closed loop). Flushing as soon as the first of them
//!   registers would cover one message and leave the rest for the flush
//!   after, halving the batch. So before flushing, the service waits until
//!   as many waiters as the last flush released have registered, at most
//!   half the last fdatasync's duration (bounded by [`MAX_GATHER`]); with
//!   `group_wait_us` > 0 it sleeps that fixed time instead (the previous
//!   behaviour).
//!
//! Batched writes (`group_batch_writes`, default on): puts copy their
//! records into the commit log's staging area (the one `pool` uses) and
//! the service writes the whole batch with one write right before its
//! fdatasync. At hundreds of puts in flight this removes a system call per
//! put from the append lock, and on io_uring it turns hundreds of small
//! buffered writes (which ext4 punts to worker threads) into one.
//!
//! Invariant: a waiter is acknowledged only once `flushed >= end`; the
//! service marks a waiter done only after `flush` returned, and the waiter
//! re-checks `flushed` itself.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use super::FlushStrategy;
use crate::error::{Error, Result};
use crate::flush::FlushConfig;
use crate::log::CommitLog;
use crate::message::PutStatus;

/// Name in results.
pub const NAME: &str = "group";

/// How often a waiting put re-checks whether the log was poisoned.
const POISON_CHECK: Duration = Duration::from_millis(10);

/// Staging bound with batched writes: a put past it waits until the
/// service has written the batch before it.
pub const BATCH_STAGING_BYTES: usize = 64 << 20;

/// Threads each released waiter (and the service) wakes: see
/// [`release_covered`].
const WAKE_FANOUT: usize = 2;

/// Longest the service waits for returning waiters before a flush.
const MAX_GATHER: Duration = Duration::from_micros(500);

struct Waiter {
    end: u64,
    thread: Thread,
    done: Arc<AtomicBool>,
}

struct State {
    /// Highest end offset any waiting put asked for.
    requested: u64,
    /// Registered waiters, in registration order.
    waiting: Vec<Waiter>,
    /// Waiters the last flush released (the size of the batch to gather).
    released_last: usize,
    stop: bool,
}

struct Shared {
    log: Arc<CommitLog>,
    state: Mutex<State>,
    /// Wakes the service: a new request, or stop.
    work: Condvar,
    /// Wakes puts waiting for room under `max_waiters`.
    room: Condvar,
    /// Threads of covered waiters not woken yet (see [`release_covered`]).
    to_wake: Mutex<Vec<Thread>>,
    timeout: Duration,
    max_waiters: usize,
    wait: Duration,
}

/// The group-commit strategy.
pub struct GroupCommit {
    shared: Arc<Shared>,
    handle: Mutex<Option<JoinHandle<()>>>,
}

impl GroupCommit {
    /// Starts the service thread.
    pub fn start(log: Arc<CommitLog>, cfg: &FlushConfig) -> Self {
        let shared = Arc::new(Shared {
            log,
            state: Mutex::new(State {
                requested: 0,
                waiting: Vec::new(),
                released_last: 0,
                stop: false,
            }),
            work: Condvar::new(),
            room: Condvar::new(),
            to_wake: Mutex::new(Vec::new()),
            timeout: Duration::from_millis(cfg.sync_flush_timeout_ms),
            max_waiters: cfg.group_max_waiters.max(1),
            wait: Duration::from_micros(cfg.group_wait_us),
        });
        let s2 = shared.clone();
        let handle = std::thread::Builder::new()
            .name("mqlab-group-commit".into())
            .spawn(move || service(&s2))
            .expect("spawn group commit thread");
        GroupCommit {
            shared,
            handle: Mutex::new(Some(handle)),
        }
    }
}

/// Marks `ws` done and unparks them (outside the state lock). For stop
/// and poison: every thread is woken here.
fn release(ws: Vec<Waiter>) {
    for w in ws {
        w.done.store(true, Ordering::Release);
        w.thread.unpark();
    }
}

/// Marks the waiters a flush covered done and wakes them as a tree: the
/// service unparks [`WAKE_FANOUT`] of them and every woken waiter unparks
/// as many more before it returns. Waking a thread costs the waker a
/// system call and, on another CPU, an inter-processor interrupt; hundreds
/// of them in a row kept the service from its next fdatasync (half its
/// time in `try_to_wake_up` at 256 in flight). A waiter not yet woken sees
/// its `done` flag at its next poison check at the latest.
fn release_covered(sh: &Shared, ws: Vec<Waiter>) {
    for w in &ws {
        w.done.store(true, Ordering::Release);
    }
    sh.to_wake
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .extend(ws.into_iter().map(|w| w.thread));
    wake_some(sh);
}

/// Unparks up to [`WAKE_FANOUT`] threads of released waiters.
fn wake_some(sh: &Shared) {
    let mut threads: [Option<Thread>; WAKE_FANOUT] = Default::default();
    {
        let mut q = sh.to_wake.lock().unwrap_or_else(|e| e.into_inner());
        for t in threads.iter_mut() {
            *t = q.pop();
        }
    }
    for t in threads.into_iter().flatten() {
        t.unpark();
    }
}

fn service(sh: &Shared) {
    let mut last_flush = Duration::ZERO;
    let mut st = sh.state.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        while !st.stop && (st.requested <= sh.log.flushed() || sh.log.poisoned().is_some()) {
            if sh.log.poisoned().is_some() && !st.waiting.is_empty() {
                let ws = std::mem::take(&mut st.waiting);
                drop(st);
                release(ws);
                st = sh.state.lock().unwrap_or_else(|e| e.into_inner());
                continue;
            }
            st = sh.work.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        if st.stop {
            let ws = std::mem::take(&mut st.waiting);
            drop(st);
            release(ws);
            sh.room.notify_all();
            return;
        }
        if !sh.wait.is_zero() {
            drop(st);
            std::thread::sleep(sh.wait);
        } else {
            // Gather the waiters the last flush released, briefly.
            let want = st.released_last.min(sh.max_waiters);
            let gather = (last_flush / 2).min(MAX_GATHER);
            let deadline = Instant::now() + gather;
            while st.waiting.len() < want && !st.stop {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                st = sh
                    .work
                    .wait_timeout(st, deadline - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            drop(st);
        }
        let t = Instant::now();
        // An error poisons the log; waiters are released and see it.
        // With batching, the staged batch is written and synced (one
        // linked submission on io_uring); without, a plain flush.
        let _ = sh.log.commit_and_flush();
        last_flush = t.elapsed();
        let flushed = sh.log.flushed();
        let poisoned = sh.log.poisoned().is_some();
        st = sh.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut covered = Vec::new();
        let mut i = 0;
        while i < st.waiting.len() {
            if poisoned || st.waiting[i].end <= flushed {
                covered.push(st.waiting.swap_remove(i));
            } else {
                i += 1;
            }
        }
        st.released_last = covered.len();
        let freed = !covered.is_empty();
        drop(st);
        if poisoned {
            release(covered);
        } else {
            release_covered(sh, covered);
        }
        if freed {
            sh.room.notify_all();
        }
        st = sh.state.lock().unwrap_or_else(|e| e.into_inner());
    }
}

impl FlushStrategy for GroupCommit {
    fn name(&self) -> &'static str {
        NAME
    }

    fn await_ack(&self, end: u64) -> Result<PutStatus> {
        let sh = &*self.shared;
        if sh.log.flushed() >= end {
            return Ok(PutStatus::PutOk);
        }
        let deadline = Instant::now() + sh.timeout;
        let done = Arc::new(AtomicBool::new(false));
        {
            let mut st = sh.state.lock().unwrap_or_else(|e| e.into_inner());
            while st.waiting.len() >= sh.max_waiters && !st.stop && sh.log.flushed() < end {
                st = sh.room.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            if sh.log.flushed() >= end {
                return Ok(PutStatus::PutOk);
            }
            if st.stop {
                return Err(Error::Unavailable("store is shutting down".into()));
            }
            st.waiting.push(Waiter {
                end,
                thread: std::thread::current(),
                done: done.clone(),
            });
            if end > st.requested {
                st.requested = end;
            }
            sh.work.notify_one();
        }
        loop {
            if sh.log.flushed() >= end {
                // Covered (the service may not have released us yet; it
                // will, or already did: either way our entry goes).
                if done.load(Ordering::Acquire) {
                    // Pass the wakeup on to other covered waiters.
                    wake_some(sh);
                } else {
                    self.forget(&done);
                }
                return Ok(PutStatus::PutOk);
            }
            if done.load(Ordering::Acquire) {
                // Released. The flushed offset read above may predate the
                // flush that released us (the service advances it, then
                // sets `done`): read it again before calling this a stop.
                // (Found by reliability_sim, seed 8589937155: a put on a
                // healthy disk was refused as "shutting down".)
                if sh.log.flushed() >= end {
                    wake_some(sh);
                    return Ok(PutStatus::PutOk);
                }
                // Released without being covered: poisoned or stopping.
                if let Some(reason) = sh.log.poisoned() {
                    return Err(Error::Poisoned(reason));
                }
                return Err(Error::Unavailable("store is shutting down".into()));
            }
            if let Some(reason) = sh.log.poisoned() {
                self.forget(&done);
                return Err(Error::Poisoned(reason));
            }
            let now = Instant::now();
            if now >= deadline {
                self.forget(&done);
                if sh.log.flushed() >= end {
                    return Ok(PutStatus::PutOk);
                }
                return Ok(PutStatus::FlushDiskTimeout);
            }
            // Bounded slices: another thread may poison the log (a failed
            // write) without going through this service.
            std::thread::park_timeout((deadline - now).min(POISON_CHECK));
        }
    }

    fn stop(&self) {
        {
            let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
            st.stop = true;
            self.shared.work.notify_all();
            self.shared.room.notify_all();
        }
        if let Some(h) = self.handle.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = h.join();
        }
        // Anyone who registered after the service left.
        let ws = std::mem::take(
            &mut self
                .shared
                .state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .waiting,
        );
        release(ws);
    }
}

impl GroupCommit {
    /// Removes this waiter's entry (timeout, poison, or covered before the
    /// service got to it) and frees its room.
    fn forget(&self, done: &Arc<AtomicBool>) {
        let sh = &*self.shared;
        let mut st = sh.state.lock().unwrap_or_else(|e| e.into_inner());
        let before = st.waiting.len();
        st.waiting.retain(|w| !Arc::ptr_eq(&w.done, done));
        if st.waiting.len() < before {
            sh.room.notify_all();
        }
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        self.stop();
    }
}
