//! A closed loop over `Store::put_async`: submitting threads keep a window
//! of puts in flight (a completion frees its slot; the submitter refills
//! the window when a sixteenth of it, at least one slot, is free), so no
//! thread waits per put. `benches/async_put.rs` and `mqlab-peers run --api
//! async` drive mqlab through it; [`crate::LoadPool`] is the blocking
//! counterpart (one thread per put in flight).
//!
//! Every completion is counted, acknowledged (PUT_OK) or failed (any other
//! status); while a measured window is open, each acknowledged put's
//! latency from submit to completion goes into the histogram.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mqlab_engine::{PutStatus, Store};

use crate::{latency_hist, message, LoadResult, QUEUES};

/// One submitting thread's window of asynchronous puts.
struct Window {
    inflight: AtomicUsize,
    acked: AtomicU64,
    errors: AtomicU64,
    hist: Mutex<Histogram<u64>>,
    /// Status and detail of the first failed completion.
    first_error: Mutex<Option<String>>,
}

/// Submitting threads keeping `in_flight` puts of `msg_bytes` in flight
/// (messages to [`crate::TOPIC`], queues in turn), from
/// [`AsyncPuts::start`] until [`AsyncPuts::finish`].
pub struct AsyncPuts {
    stop: Arc<AtomicBool>,
    measuring: Arc<AtomicBool>,
    windows: Vec<Arc<Window>>,
    handles: Vec<JoinHandle<u64>>,
}

/// What one measured window of [`AsyncPuts::window`] counted.
#[derive(Debug, Clone, Copy)]
pub struct AsyncWindow {
    /// Puts acknowledged (PUT_OK) between the window's edges.
    pub acked: u64,
    /// Puts failed between the window's edges.
    pub errors: u64,
    /// From the window's opening to its close.
    pub elapsed: Duration,
}

/// Totals of a whole [`AsyncPuts`] run, warmup included.
#[derive(Debug, Clone, Default)]
pub struct AsyncEnd {
    /// Puts handed to `put_async`.
    pub submitted: u64,
    /// Completions with PUT_OK.
    pub acked: u64,
    /// Completions with any other status.
    pub errors: u64,
    /// Puts still in flight after the drain (0 unless a completion never
    /// came within its 30 s).
    pub in_flight: usize,
    /// Status and detail of the first failed completion.
    pub first_error: Option<String>,
}

impl AsyncEnd {
    /// Every submitted put completed and was counted once.
    pub fn all_completed(&self) -> bool {
        self.in_flight == 0 && self.acked + self.errors == self.submitted
    }
}

/// A whole run of [`async_closed_loop`].
#[derive(Debug, Clone)]
pub struct AsyncRun {
    /// The measured window as [`crate::LoadPool`] reports one: `ops` =
    /// acknowledged puts that completed inside the window = the
    /// histogram's count; `elapsed` = the window.
    pub load: LoadResult,
    /// The window's counters (taken at its edges).
    pub window: AsyncWindow,
    /// The whole run's totals.
    pub end: AsyncEnd,
}

impl AsyncPuts {
    /// Starts `submitters` threads (at most `in_flight`) sharing a window
    /// of `in_flight` puts.
    pub fn start(
        store: &Arc<Store>,
        msg_bytes: usize,
        in_flight: usize,
        submitters: usize,
    ) -> AsyncPuts {
        let stop = Arc::new(AtomicBool::new(false));
        let measuring = Arc::new(AtomicBool::new(false));
        let in_flight = in_flight.max(1);
        let subs = submitters.min(in_flight).max(1);
        let mut handles = Vec::new();
        let mut windows = Vec::new();
        for i in 0..subs {
            let size = in_flight / subs + usize::from(i < in_flight % subs);
            let w = Arc::new(Window {
                inflight: AtomicUsize::new(0),
                acked: AtomicU64::new(0),
                errors: AtomicU64::new(0),
                hist: Mutex::new(latency_hist()),
                first_error: Mutex::new(None),
            });
            windows.push(w.clone());
            let (store, stop, measuring) = (store.clone(), stop.clone(), measuring.clone());
            let msgs: Vec<_> = (0..QUEUES).map(|q| message(msg_bytes, q)).collect();
            handles.push(
                std::thread::Builder::new()
                    .name(format!("async-put-{i}"))
                    .spawn(move || submit(&store, &msgs, size, &w, &stop, &measuring))
                    .expect("spawn submitter"),
            );
        }
        AsyncPuts {
            stop,
            measuring,
            windows,
            handles,
        }
    }

    /// Acknowledged and failed completions so far.
    pub fn totals(&self) -> (u64, u64) {
        self.windows.iter().fold((0, 0), |a, w| {
            (
                a.0 + w.acked.load(Ordering::Relaxed),
                a.1 + w.errors.load(Ordering::Relaxed),
            )
        })
    }

    /// Lets the load run `warm`, then opens the measured window for
    /// `time`. `edge(acked so far)` is called right before the window opens
    /// and right after it closes (where a caller snapshots its own
    /// counters).
    pub fn window(&self, warm: Duration, time: Duration, mut edge: impl FnMut(u64)) -> AsyncWindow {
        std::thread::sleep(warm);
        let (acked0, err0) = self.totals();
        edge(acked0);
        let t = Instant::now();
        self.measuring.store(true, Ordering::Relaxed);
        std::thread::sleep(time);
        self.measuring.store(false, Ordering::Relaxed);
        let (acked1, err1) = self.totals();
        edge(acked1);
        let elapsed = t.elapsed();
        AsyncWindow {
            acked: acked1 - acked0,
            errors: err1 - err0,
            elapsed,
        }
    }

    /// Stops submitting, waits for every put in flight to complete (30 s
    /// at most) and returns the measured latencies with the totals.
    pub fn finish(mut self) -> (Histogram<u64>, AsyncEnd) {
        let submitted = self.join();
        let mut hist = latency_hist();
        let mut end = AsyncEnd {
            submitted,
            ..AsyncEnd::default()
        };
        for w in &self.windows {
            hist.add(&*w.hist.lock().unwrap()).expect("same bounds");
            end.acked += w.acked.load(Ordering::Acquire);
            end.errors += w.errors.load(Ordering::Acquire);
            end.in_flight += w.inflight.load(Ordering::Acquire);
            if end.first_error.is_none() {
                end.first_error = w.first_error.lock().unwrap().clone();
            }
        }
        (hist, end)
    }

    /// Stops and joins the submitters; returns the puts they submitted.
    fn join(&mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let mut submitted = 0;
        for h in self.handles.drain(..) {
            h.thread().unpark();
            submitted += h.join().expect("submitter");
        }
        submitted
    }
}

impl Drop for AsyncPuts {
    fn drop(&mut self) {
        self.join();
    }
}

/// One submitter: keeps `size` puts in flight until `stop`, then drains.
/// Returns the puts it submitted.
fn submit(
    store: &Store,
    msgs: &[mqlab_engine::Message],
    size: usize,
    w: &Arc<Window>,
    stop: &AtomicBool,
    measuring: &Arc<AtomicBool>,
) -> u64 {
    let me = std::thread::current();
    // Woken once this many slots are free.
    let refill = (size / 16).max(1);
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        // `stop` is checked per put too: a completion may run inline (a
        // refused put, a strategy that acknowledges at write), and then
        // the window never fills.
        while w.inflight.load(Ordering::Acquire) < size && !stop.load(Ordering::Relaxed) {
            w.inflight.fetch_add(1, Ordering::AcqRel);
            let (w2, me2, m2) = (w.clone(), me.clone(), measuring.clone());
            let t0 = Instant::now();
            store.put_async(&msgs[n % msgs.len()], move |r| {
                if r.status == PutStatus::PutOk {
                    w2.acked.fetch_add(1, Ordering::Relaxed);
                    if m2.load(Ordering::Relaxed) {
                        let us = t0.elapsed().as_micros() as u64;
                        w2.hist.lock().unwrap().saturating_record(us.max(1));
                    }
                } else {
                    let mut first = w2.first_error.lock().unwrap();
                    if first.is_none() {
                        *first = Some(format!("{:?}: {}", r.status, r.detail.unwrap_or_default()));
                    }
                    drop(first);
                    w2.errors.fetch_add(1, Ordering::Relaxed);
                }
                let left = w2.inflight.fetch_sub(1, Ordering::AcqRel) - 1;
                if left + refill <= size {
                    me2.unpark();
                }
            });
            n += 1;
        }
        std::thread::park_timeout(Duration::from_millis(5));
    }
    // Drain: every completion runs before the store stops.
    let end = Instant::now() + Duration::from_secs(30);
    while w.inflight.load(Ordering::Acquire) > 0 && Instant::now() < end {
        std::thread::park_timeout(Duration::from_millis(1));
    }
    n as u64
}

/// `put_async` with `in_flight` puts in flight from one submitting thread:
/// `warm` of load, then a measured window of `time`, then a drain.
pub fn async_closed_loop(
    store: &Arc<Store>,
    msg_bytes: usize,
    in_flight: usize,
    warm: Duration,
    time: Duration,
) -> AsyncRun {
    let puts = AsyncPuts::start(store, msg_bytes, in_flight, 1);
    let window = puts.window(warm, time, |_| {});
    let (hist, end) = puts.finish();
    AsyncRun {
        load: LoadResult {
            ops: hist.len(),
            elapsed: window.elapsed,
            hist,
        },
        window,
        end,
    }
}
