//! Background services: the one helper behind every plain thread the engine
//! runs (flusher, committer, dispatcher, checkpointer, retention, delay
//! schedulers), public so that the broker and the lab use it too.
//!
//! - [`Signal`]: a stop flag with a condvar; `wait` sleeps until a timeout,
//!   a `notify` or `stop`.
//! - [`Service`]: threads sharing one [`Signal`], stopped and joined
//!   together (on [`Service::stop`] or drop).
//! - [`Periodic`]: a service of one thread calling `tick` every interval.
//!
//! Invariant: once `stop` returns, none of the service's threads runs any
//! more (each is joined); stopping wakes sleeping threads at once and is
//! idempotent.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// A stop flag with a condvar, shared by a service's threads.
#[derive(Debug, Default)]
pub struct Signal {
    stopped: AtomicBool,
    m: Mutex<u64>,
    cv: Condvar,
}

impl Signal {
    /// True once [`Signal::stop`] was called.
    pub fn stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// Sets the stop flag and wakes every waiter.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.notify();
    }

    /// Wakes every waiter (without stopping).
    pub fn notify(&self) {
        let mut g = self.m.lock().unwrap_or_else(|e| e.into_inner());
        *g += 1;
        self.cv.notify_all();
    }

    /// Waits up to `timeout` for a notify or stop. Returns false when
    /// stopped.
    pub fn wait(&self, timeout: Duration) -> bool {
        let g = self.m.lock().unwrap_or_else(|e| e.into_inner());
        let seen = *g;
        if self.stopped() {
            return false;
        }
        let _g = self
            .cv
            .wait_timeout_while(g, timeout, |n| *n == seen && !self.stopped())
            .unwrap_or_else(|e| e.into_inner());
        !self.stopped()
    }
}

/// Background threads sharing one [`Signal`], stopped and joined on
/// [`Service::stop`] or drop.
#[derive(Debug, Default)]
pub struct Service {
    signal: Arc<Signal>,
    handles: Mutex<Vec<JoinHandle<()>>>,
}

impl Service {
    /// The signal every thread of the service receives.
    pub fn signal(&self) -> &Arc<Signal> {
        &self.signal
    }

    /// Starts a thread named `name` running `f` with the service's signal;
    /// `f` returns when the signal says stop.
    pub fn spawn(&self, name: impl Into<String>, f: impl FnOnce(Arc<Signal>) + Send + 'static) {
        let s = self.signal.clone();
        let h = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || f(s))
            .expect("spawn background thread");
        self.handles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(h);
    }

    /// Starts a thread running `tick` every `interval` until stopped or
    /// until `tick` returns false. The first tick comes one interval after
    /// the start.
    pub fn spawn_periodic(
        &self,
        name: impl Into<String>,
        interval: Duration,
        mut tick: impl FnMut() -> bool + Send + 'static,
    ) {
        self.spawn(name, move |signal| {
            while signal.wait(interval) {
                if !tick() {
                    return;
                }
            }
        });
    }

    /// Stops every thread and joins it (idempotent).
    pub fn stop(&self) {
        self.signal.stop();
        let handles = std::mem::take(&mut *self.handles.lock().unwrap_or_else(|e| e.into_inner()));
        for h in handles {
            let _ = h.join();
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A background thread running `tick` every `interval` until stopped or
/// until `tick` returns false. Stopping wakes it at once.
#[derive(Debug)]
pub struct Periodic(Service);

impl Periodic {
    /// Starts the thread (see [`Service::spawn_periodic`]).
    pub fn spawn(
        name: &str,
        interval: Duration,
        tick: impl FnMut() -> bool + Send + 'static,
    ) -> Periodic {
        let s = Service::default();
        s.spawn_periodic(name, interval, tick);
        Periodic(s)
    }

    /// Stops the thread and joins it (idempotent).
    pub fn stop(&self) {
        self.0.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;
    use std::time::Instant;

    #[test]
    fn periodic_ticks_until_stopped_and_stop_is_prompt() {
        let n = Arc::new(AtomicU64::new(0));
        let n2 = n.clone();
        let p = Periodic::spawn("t", Duration::from_millis(1), move || {
            n2.fetch_add(1, Ordering::Relaxed);
            true
        });
        while n.load(Ordering::Relaxed) < 3 {
            std::thread::yield_now();
        }
        p.stop();
        let after = n.load(Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(n.load(Ordering::Relaxed), after);
        p.stop();

        let slow = Periodic::spawn("slow", Duration::from_secs(3600), || true);
        let t = Instant::now();
        drop(slow);
        assert!(t.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn periodic_ends_when_tick_says_so() {
        let n = Arc::new(AtomicU64::new(0));
        let n2 = n.clone();
        let p = Periodic::spawn("once", Duration::from_millis(1), move || {
            n2.fetch_add(1, Ordering::Relaxed);
            false
        });
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(n.load(Ordering::Relaxed), 1);
        p.stop();
    }

    #[test]
    fn service_threads_see_notify_and_stop() {
        let s = Service::default();
        let seen = Arc::new(AtomicU64::new(0));
        let seen2 = seen.clone();
        s.spawn("w", move |sig| {
            while sig.wait(Duration::from_secs(3600)) {
                seen2.fetch_add(1, Ordering::Relaxed);
            }
        });
        while seen.load(Ordering::Relaxed) == 0 {
            s.signal().notify();
            std::thread::sleep(Duration::from_millis(1));
        }
        s.stop();
        assert!(s.signal().stopped());
    }
}
