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
//! Asynchronous puts ([`FlushStrategy::ack_async`]) register a callback
//! instead of a thread, in the same state (`State::callbacks`, beside the
//! thread waiters) and for the same flushes: the service calls the
//! callbacks a flush covered right after it woke the covered threads,
//! outside its state lock, in end-offset order. What differs:
//! - A callback's FLUSH_DISK_TIMEOUT deadline is checked by the service
//!   between flushes (just before each flush and after it), not by a
//!   timer: a hung fdatasync delays the timeout answer until it returns.
//! - Callbacks do not wait for room under `group_max_waiters` (the caller
//!   cannot block): whoever puts asynchronously bounds its puts in flight
//!   itself (the broker does), and the bound counts thread waiters only.
//! - On poison or stop every pending callback is called (PUT_OK if a flush
//!   already covered it, else the poison reason or "store is shutting
//!   down"); each is moved out of the state once, so called exactly once.
//!
//! Invariant: a waiter is acknowledged only once `flushed >= end`; the
//! service marks a waiter done only after `flush` returned, and the waiter
//! re-checks `flushed` itself. A callback is called with PUT_OK only after
//! the service read `flushed >= end`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use super::{AckCallback, FlushStrategy};
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

/// An asynchronous put waiting for the flush that covers it.
struct CallbackWaiter {
    end: u64,
    /// When it is answered FLUSH_DISK_TIMEOUT (checked between flushes).
    deadline: Instant,
    done: AckCallback,
}

struct State {
    /// Highest end offset any waiting put asked for.
    requested: u64,
    /// Registered thread waiters, in registration order.
    waiting: Vec<Waiter>,
    /// Registered asynchronous puts, in registration order.
    callbacks: Vec<CallbackWaiter>,
    /// Waiters (of both kinds) the last flush released: the size of the
    /// batch to gather.
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
                callbacks: Vec::new(),
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

fn shutting_down() -> Error {
    Error::Unavailable("store is shutting down".into())
}

/// Calls each callback (outside the state lock), in end-offset order:
/// PUT_OK when the log is durable past its end, else `otherwise`.
fn answer(sh: &Shared, mut cbs: Vec<CallbackWaiter>, otherwise: impl Fn() -> Result<PutStatus>) {
    cbs.sort_unstable_by_key(|c| c.end);
    for c in cbs {
        if sh.log.flushed() >= c.end {
            (c.done)(Ok(PutStatus::PutOk));
        } else {
            (c.done)(otherwise());
        }
    }
}

/// The error every uncovered callback gets once the log is poisoned.
fn poisoned_error(sh: &Shared) -> Result<PutStatus> {
    Err(Error::Poisoned(sh.log.poisoned().unwrap_or_default()))
}

/// Takes the callbacks whose deadline passed by `now` out of `st`.
fn take_expired(st: &mut State, now: Instant) -> Vec<CallbackWaiter> {
    if st.callbacks.iter().all(|c| c.deadline > now) {
        return Vec::new();
    }
    let (late, keep) = std::mem::take(&mut st.callbacks)
        .into_iter()
        .partition(|c| c.deadline <= now);
    st.callbacks = keep;
    late
}

fn service(sh: &Shared) {
    let mut last_flush = Duration::ZERO;
    let mut st = sh.state.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        while !st.stop && (st.requested <= sh.log.flushed() || sh.log.poisoned().is_some()) {
            if sh.log.poisoned().is_some() && !(st.waiting.is_empty() && st.callbacks.is_empty()) {
                let ws = std::mem::take(&mut st.waiting);
                let cbs = std::mem::take(&mut st.callbacks);
                drop(st);
                release(ws);
                answer(sh, cbs, || poisoned_error(sh));
                st = sh.state.lock().unwrap_or_else(|e| e.into_inner());
                continue;
            }
            if !st.callbacks.is_empty() && sh.log.poisoned().is_none() {
                // Covered by a flush this service did not make (every
                // callback is: its end is at most `requested`). Thread
                // waiters see that themselves.
                let flushed = sh.log.flushed();
                let (covered, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut st.callbacks)
                    .into_iter()
                    .partition(|c| c.end <= flushed);
                st.callbacks = keep;
                if !covered.is_empty() {
                    drop(st);
                    // (`flushed` only grows: `otherwise` is never used.)
                    answer(sh, covered, || Ok(PutStatus::FlushDiskTimeout));
                    st = sh.state.lock().unwrap_or_else(|e| e.into_inner());
                    continue;
                }
            }
            st = sh.work.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        if st.stop {
            let ws = std::mem::take(&mut st.waiting);
            let cbs = std::mem::take(&mut st.callbacks);
            drop(st);
            release(ws);
            answer(sh, cbs, || Err(shutting_down()));
            sh.room.notify_all();
            return;
        }
        let late = if !sh.wait.is_zero() {
            drop(st);
            std::thread::sleep(sh.wait);
            take_expired(
                &mut sh.state.lock().unwrap_or_else(|e| e.into_inner()),
                Instant::now(),
            )
        } else {
            // Gather the waiters the last flush released, briefly.
            let want = st.released_last.min(sh.max_waiters);
            let gather = (last_flush / 2).min(MAX_GATHER);
            let deadline = Instant::now() + gather;
            while st.waiting.len() + st.callbacks.len() < want && !st.stop {
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
            let late = take_expired(&mut st, Instant::now());
            drop(st);
            late
        };
        // Asynchronous puts past their deadline before this flush.
        if !late.is_empty() {
            answer(sh, late, || Ok(PutStatus::FlushDiskTimeout));
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
        let now = Instant::now();
        let mut settled = Vec::new();
        let mut late = Vec::new();
        if !st.callbacks.is_empty() {
            for c in std::mem::take(&mut st.callbacks) {
                if poisoned || c.end <= flushed {
                    settled.push(c);
                } else if c.deadline <= now {
                    late.push(c);
                } else {
                    st.callbacks.push(c);
                }
            }
        }
        st.released_last = covered.len() + settled.len();
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
        answer(sh, settled, || poisoned_error(sh));
        answer(sh, late, || Ok(PutStatus::FlushDiskTimeout));
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

    fn ack_async(&self, end: u64, done: AckCallback) {
        let sh = &*self.shared;
        if sh.log.flushed() >= end {
            done(Ok(PutStatus::PutOk));
            return;
        }
        let mut st = sh.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.stop {
            drop(st);
            answer(
                sh,
                vec![CallbackWaiter {
                    end,
                    deadline: Instant::now(),
                    done,
                }],
                || Err(shutting_down()),
            );
            return;
        }
        st.callbacks.push(CallbackWaiter {
            end,
            deadline: Instant::now() + sh.timeout,
            done,
        });
        if end > st.requested {
            st.requested = end;
        }
        sh.work.notify_one();
    }

    fn stop(&self) {
        {
            let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
            st.stop = true;
            self.shared.work.notify_all();
            self.shared.room.notify_all();
        }
        let handle = self.handle.lock().unwrap_or_else(|e| e.into_inner()).take();
        // Never join from the service itself (a callback that ends up
        // dropping the store): it returns once it sees `stop`.
        if let Some(h) = handle.filter(|h| h.thread().id() != std::thread::current().id()) {
            let _ = h.join();
        }
        // Anyone who registered after the service left.
        let (ws, cbs) = {
            let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
            (
                std::mem::take(&mut st.waiting),
                std::mem::take(&mut st.callbacks),
            )
        };
        release(ws);
        answer(&self.shared, cbs, || Err(shutting_down()));
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

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;
    use crate::io::sim::SimEnv;
    use crate::log::LogOptions;

    /// An empty log on the simulator and a group commit over it whose
    /// service sleeps `wait_us` before every flush.
    fn group(wait_us: u64, timeout_ms: u64) -> GroupCommit {
        let mut notes = Vec::new();
        let (log, _) = CommitLog::open(
            Arc::new(SimEnv::new(1)),
            std::path::Path::new("/sim/group/commitlog"),
            LogOptions {
                segment_bytes: 1 << 16,
                preallocate: false,
                read_only: false,
                store_host: "127.0.0.1:10911".parse().unwrap(),
                record_crc: true,
                staging_bytes: None,
            },
            &mut notes,
        )
        .unwrap();
        log.set_recovered(0, Default::default());
        let cfg = FlushConfig {
            group_wait_us: wait_us,
            sync_flush_timeout_ms: timeout_ms,
            ..FlushConfig::for_kind(crate::flush::FlushKind::Group)
        };
        GroupCommit::start(Arc::new(log), &cfg)
    }

    /// A callback sending its answer (as text: `Error` is not `Clone`).
    fn callback() -> (AckCallback, mpsc::Receiver<String>) {
        let (tx, rx) = mpsc::channel();
        let cb: AckCallback = Box::new(move |r: Result<PutStatus>| {
            tx.send(match r {
                Ok(s) => s.as_str().to_string(),
                Err(e) => e.to_string(),
            })
            .unwrap()
        });
        (cb, rx)
    }

    #[test]
    fn stop_answers_every_pending_callback_once() {
        // Nothing is ever written, so no flush covers these ends.
        let g = group(5_000, 60_000);
        let mut rxs = Vec::new();
        for end in 1..=20u64 {
            let (cb, rx) = callback();
            g.ack_async(end * 100, cb);
            rxs.push(rx);
        }
        std::thread::sleep(Duration::from_millis(20));
        for rx in &rxs {
            assert!(rx.try_recv().is_err(), "answered before stop");
        }
        g.stop();
        for rx in &rxs {
            assert!(rx.try_recv().unwrap().contains("shutting down"));
            // The sender went with the callback: called once.
            assert!(rx.recv().is_err());
        }
        // After stop: answered at once, on this thread.
        let (cb, rx) = callback();
        g.ack_async(100, cb);
        assert!(rx.try_recv().unwrap().contains("shutting down"));
    }

    #[test]
    fn an_uncovered_callback_times_out_between_flushes() {
        let g = group(2_000, 10);
        let (cb, rx) = callback();
        let t = Instant::now();
        g.ack_async(1 << 20, cb);
        let got = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(got, "FLUSH_DISK_TIMEOUT");
        assert!(t.elapsed() >= Duration::from_millis(10));
        g.stop();
    }
}
