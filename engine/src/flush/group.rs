//! `group`: RocketMQ's GroupCommitService. Each put registers the end
//! offset it needs durable and waits; one service thread flushes up to the
//! committed end and wakes every put the fdatasync covered. While one
//! fdatasync runs, the next batch forms (pipelining). A put not durable
//! within `sync_flush_timeout_ms` returns FLUSH_DISK_TIMEOUT and stays
//! written. At most `group_max_waiters` puts wait at once; further ones
//! wait for room before registering.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::FlushStrategy;
use crate::config::FlushConfig;
use crate::error::{Error, Result};
use crate::log::CommitLog;
use crate::message::PutStatus;

/// Name in results.
pub const NAME: &str = "group";

/// How often a waiting put re-checks whether the log was poisoned.
const POISON_CHECK: Duration = Duration::from_millis(10);

struct State {
    /// Highest end offset any waiting put asked for.
    requested: u64,
    waiters: usize,
    stop: bool,
}

struct Shared {
    log: Arc<CommitLog>,
    state: Mutex<State>,
    /// Wakes the service: a new request, or stop.
    work: Condvar,
    /// Wakes waiting puts: a flush finished, room freed, or stop.
    done: Condvar,
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
                waiters: 0,
                stop: false,
            }),
            work: Condvar::new(),
            done: Condvar::new(),
            timeout: Duration::from_millis(cfg.sync_flush_timeout_ms),
            max_waiters: cfg.group_max_waiters,
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

fn service(sh: &Shared) {
    let mut st = sh.state.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        while !st.stop && (st.requested <= sh.log.flushed() || sh.log.poisoned().is_some()) {
            st = sh.work.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        if st.stop {
            sh.done.notify_all();
            return;
        }
        drop(st);
        if !sh.wait.is_zero() {
            std::thread::sleep(sh.wait);
        }
        // An error poisons the log; waiters see it and fail.
        let _ = sh.log.flush(false);
        st = sh.state.lock().unwrap_or_else(|e| e.into_inner());
        sh.done.notify_all();
    }
}

impl FlushStrategy for GroupCommit {
    fn name(&self) -> &'static str {
        NAME
    }

    fn await_ack(&self, end: u64) -> Result<PutStatus> {
        let sh = &*self.shared;
        let deadline = Instant::now() + sh.timeout;
        let mut st = sh.state.lock().unwrap_or_else(|e| e.into_inner());
        while st.waiters >= sh.max_waiters && !st.stop && sh.log.flushed() < end {
            st = sh.done.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        st.waiters += 1;
        if end > st.requested {
            st.requested = end;
            sh.work.notify_one();
        }
        let result = loop {
            if sh.log.flushed() >= end {
                break Ok(PutStatus::PutOk);
            }
            if let Some(reason) = sh.log.poisoned() {
                break Err(Error::Poisoned(reason));
            }
            if st.stop {
                break Err(Error::Unavailable("store is shutting down".into()));
            }
            let now = Instant::now();
            if now >= deadline {
                break Ok(PutStatus::FlushDiskTimeout);
            }
            // Bounded slices: another thread may poison the log (a failed
            // write) without going through this service.
            st = sh
                .done
                .wait_timeout(st, (deadline - now).min(POISON_CHECK))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        };
        st.waiters -= 1;
        if st.waiters + 1 == sh.max_waiters {
            sh.done.notify_all();
        }
        result
    }

    fn stop(&self) {
        {
            let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
            st.stop = true;
            self.shared.work.notify_all();
            self.shared.done.notify_all();
        }
        if let Some(h) = self.handle.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = h.join();
        }
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        self.stop();
    }
}
