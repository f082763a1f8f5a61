//! The recorder: ack latency histograms, the per-second time series, and
//! the loss-window sampler.
//!
//! Latencies are HdrHistograms in microseconds with 3 significant digits.
//! Each sender thread records into its own histograms (no sharing on the
//! hot path); they are merged when the run ends.
//!
//! The loss window (ARCHITECTURE.md, "Offsets and the loss window") is
//! what an acknowledged producer would lose at an instant: on power loss
//! everything acked past `flushed`, on a process crash everything acked
//! past `committed`. Byte counts come from
//! the store's offsets; message counts and the age of the oldest
//! acknowledged-but-not-durable message come from [`LossTracker`], which
//! holds the (end offset, ack time) of every acknowledged message that is
//! not yet durable. Each sender has its own queue, in which end offsets
//! increase (a sender's puts are sequential), so the sampler drops durable
//! entries from the front and finds the not-committed ones by binary
//! search. The queues are bounded: when one is full its oldest entry is
//! dropped and the window is marked `saturated` (its message count is then
//! a lower bound).

use std::collections::VecDeque;
use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use mqlab_engine::service::Periodic;
use mqlab_engine::Offsets;
use serde::{Deserialize, Serialize};

/// Highest latency a histogram holds: one hour in µs (larger values are
/// clamped to it).
pub const MAX_LATENCY_US: u64 = 3_600_000_000;

/// Total (end offset, ack time) entries the loss tracker keeps.
pub const LOSS_TRACK_CAP: usize = 8_000_000;

/// A latency histogram: µs, 3 significant digits.
pub fn latency_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

/// A coarse histogram for per-second percentiles: µs, 2 significant digits.
pub fn coarse_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 2).expect("valid histogram bounds")
}

/// Percentiles of a latency histogram, µs.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LatencySummary {
    /// Recorded values.
    pub count: u64,
    /// Smallest, µs.
    pub min: u64,
    /// Median, µs.
    pub p50: u64,
    /// 90th percentile, µs.
    pub p90: u64,
    /// 99th percentile, µs.
    pub p99: u64,
    /// 99.9th percentile, µs.
    pub p999: u64,
    /// 99.99th percentile, µs.
    pub p9999: u64,
    /// Largest, µs.
    pub max: u64,
    /// Mean, µs.
    pub mean: f64,
}

impl LatencySummary {
    /// Summarizes a histogram (all zero when empty).
    pub fn of(h: &Histogram<u64>) -> LatencySummary {
        if h.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: h.len(),
            min: h.min(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            p9999: h.value_at_quantile(0.9999),
            max: h.max(),
            mean: (h.mean() * 10.0).round() / 10.0,
        }
    }
}

/// One second of one sender.
#[derive(Debug, Clone)]
pub struct SecondBucket {
    /// Acknowledged messages.
    pub msgs: u64,
    /// Acknowledged body bytes.
    pub bytes: u64,
    /// Non-OK puts.
    pub errors: u64,
    /// Ack latencies, µs, 2 significant digits.
    pub hist: Histogram<u64>,
}

impl SecondBucket {
    fn new() -> Self {
        SecondBucket {
            msgs: 0,
            bytes: 0,
            errors: 0,
            hist: coarse_hist(),
        }
    }
}

/// What one sender thread recorded.
#[derive(Debug, Clone)]
pub struct SenderStats {
    /// Ack latency (put call to return), µs; warmup excluded.
    pub ack: Histogram<u64>,
    /// Latency from the intended send time to the ack, µs (rate-limited
    /// runs only); warmup excluded.
    pub intended: Histogram<u64>,
    /// Per-second buckets since the run started (warmup included).
    pub seconds: Vec<SecondBucket>,
    /// Acknowledged messages after warmup.
    pub msgs: u64,
    /// Acknowledged body bytes after warmup.
    pub bytes: u64,
    /// Non-OK puts by status name (warmup included).
    pub errors: std::collections::BTreeMap<String, u64>,
}

impl Default for SenderStats {
    fn default() -> Self {
        SenderStats {
            ack: latency_hist(),
            intended: latency_hist(),
            seconds: Vec::new(),
            msgs: 0,
            bytes: 0,
            errors: Default::default(),
        }
    }
}

impl SenderStats {
    fn bucket(&mut self, second: usize) -> &mut SecondBucket {
        while self.seconds.len() <= second {
            self.seconds.push(SecondBucket::new());
        }
        &mut self.seconds[second]
    }

    /// Records one acknowledged put.
    pub fn record_ack(
        &mut self,
        second: usize,
        measured: bool,
        latency_us: u64,
        intended_us: Option<u64>,
        bytes: u64,
    ) {
        let b = self.bucket(second);
        b.msgs += 1;
        b.bytes += bytes;
        b.hist.saturating_record(latency_us.max(1));
        if measured {
            self.ack.saturating_record(latency_us.max(1));
            if let Some(i) = intended_us {
                self.intended.saturating_record(i.max(1));
            }
            self.msgs += 1;
            self.bytes += bytes;
        }
    }

    /// Records one failed put.
    pub fn record_error(&mut self, second: usize, status: &str) {
        self.bucket(second).errors += 1;
        *self.errors.entry(status.to_string()).or_insert(0) += 1;
    }

    /// Adds another sender's stats into this one.
    pub fn merge(&mut self, other: &SenderStats) {
        self.ack.add(&other.ack).expect("same histogram bounds");
        self.intended
            .add(&other.intended)
            .expect("same histogram bounds");
        for (i, b) in other.seconds.iter().enumerate() {
            let mine = self.bucket(i);
            mine.msgs += b.msgs;
            mine.bytes += b.bytes;
            mine.errors += b.errors;
            mine.hist.add(&b.hist).expect("same histogram bounds");
        }
        self.msgs += other.msgs;
        self.bytes += other.bytes;
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_insert(0) += v;
        }
    }
}

/// Acknowledged messages not yet known durable, per sender.
#[derive(Debug)]
pub struct LossTracker {
    start: Instant,
    slots: Vec<Mutex<VecDeque<(u64, u64)>>>,
    cap_per_slot: usize,
    saturated: AtomicBool,
}

/// One side (power or process) of a loss-window sample.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Window {
    /// Acknowledged bytes past the durable (or committed) offset.
    pub bytes: u64,
    /// Acknowledged messages whose end is past it.
    pub msgs: u64,
    /// Age of the oldest of them, ms (0 when none).
    pub age_ms: f64,
}

/// A loss-window sample.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct WindowSample {
    /// The store offsets read.
    pub offsets: OffsetsJson,
    /// Power loss: acked - flushed.
    pub power: Window,
    /// Process crash: acked - committed.
    pub process: Window,
}

/// Serializable copy of the engine's offsets.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct OffsetsJson {
    /// Appended.
    pub written: u64,
    /// Handed to the kernel.
    pub committed: u64,
    /// Durable.
    pub flushed: u64,
    /// Highest acknowledged end offset.
    pub acked: u64,
}

impl From<Offsets> for OffsetsJson {
    fn from(o: Offsets) -> Self {
        OffsetsJson {
            written: o.written,
            committed: o.committed,
            flushed: o.flushed,
            acked: o.acked,
        }
    }
}

impl LossTracker {
    /// A tracker for `senders` sender threads, ages measured from `start`.
    pub fn new(senders: usize, start: Instant) -> Self {
        let senders = senders.max(1);
        LossTracker {
            start,
            slots: (0..senders).map(|_| Mutex::new(VecDeque::new())).collect(),
            cap_per_slot: (LOSS_TRACK_CAP / senders).max(1024),
            saturated: AtomicBool::new(false),
        }
    }

    /// Records that sender `slot` got an ack at `at` for a record ending at
    /// `end_offset`.
    pub fn push(&self, slot: usize, end_offset: u64, at: Instant) {
        let us = at.saturating_duration_since(self.start).as_micros() as u64;
        let mut q = self.slots[slot].lock().unwrap_or_else(|e| e.into_inner());
        if q.len() >= self.cap_per_slot {
            q.pop_front();
            self.saturated.store(true, Ordering::Relaxed);
        }
        q.push_back((end_offset, us));
    }

    /// True when a queue overflowed (message counts are lower bounds).
    pub fn saturated(&self) -> bool {
        self.saturated.load(Ordering::Relaxed)
    }

    /// Computes the window at `now` for the offsets `off`, dropping entries
    /// that became durable. Every ack must have been pushed before `off` was
    /// read (see [`LossTracker::sample_live`] for a running workload).
    pub fn sample(&self, off: Offsets, now: Instant) -> WindowSample {
        self.sample_bounded(off, now, None)
    }

    /// Samples while senders are running: notes how many entries each
    /// queue holds, then reads the offsets, then looks only at the entries
    /// noted. An ack pushed after the offsets were read would otherwise be
    /// compared with a stale durable offset (a group-commit ack counted as
    /// not durable).
    pub fn sample_live(&self, offsets: impl FnOnce() -> Offsets) -> WindowSample {
        let lens: Vec<usize> = self
            .slots
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .collect();
        let off = offsets();
        self.sample_bounded(off, Instant::now(), Some(&lens))
    }

    fn sample_bounded(&self, off: Offsets, now: Instant, lens: Option<&[usize]>) -> WindowSample {
        let now_us = now.saturating_duration_since(self.start).as_micros() as u64;
        let mut power_msgs = 0u64;
        let mut process_msgs = 0u64;
        let mut oldest_power: Option<u64> = None;
        let mut oldest_process: Option<u64> = None;
        for (i, slot) in self.slots.iter().enumerate() {
            let mut q = slot.lock().unwrap_or_else(|e| e.into_inner());
            // Only the first `len` entries were pushed before `off` was read
            // (popping from the front only shrinks that prefix).
            let mut len = lens.map_or(q.len(), |l| l[i].min(q.len()));
            while len > 0 && q.front().is_some_and(|e| e.0 <= off.flushed) {
                q.pop_front();
                len -= 1;
            }
            power_msgs += len as u64;
            if let Some(&(_, t)) = q.front().filter(|_| len > 0) {
                oldest_power = Some(oldest_power.map_or(t, |o: u64| o.min(t)));
            }
            // Sorted by end offset, so the partition of the prefix is the
            // partition of the whole, clamped.
            let idx = q.partition_point(|e| e.0 <= off.committed).min(len);
            process_msgs += (len - idx) as u64;
            if let Some(&(_, t)) = q.get(idx).filter(|_| idx < len) {
                oldest_process = Some(oldest_process.map_or(t, |o: u64| o.min(t)));
            }
        }
        let age = |o: Option<u64>| o.map_or(0.0, |t| now_us.saturating_sub(t) as f64 / 1000.0);
        WindowSample {
            offsets: off.into(),
            power: Window {
                bytes: off.acked.saturating_sub(off.flushed),
                msgs: power_msgs,
                age_ms: age(oldest_power),
            },
            process: Window {
                bytes: off.acked.saturating_sub(off.committed),
                msgs: process_msgs,
                age_ms: age(oldest_process),
            },
        }
    }
}

/// Max and distribution of one side of the loss window over a run.
#[derive(Debug, Clone)]
pub struct WindowStats {
    /// Largest bytes seen.
    pub max_bytes: u64,
    /// Largest message count seen.
    pub max_msgs: u64,
    /// Largest age seen, ms.
    pub max_ms: f64,
    /// Ages, µs.
    pub age_us: Histogram<u64>,
    /// Message counts.
    pub msgs: Histogram<u64>,
    /// Byte counts.
    pub bytes: Histogram<u64>,
}

impl Default for WindowStats {
    fn default() -> Self {
        WindowStats {
            max_bytes: 0,
            max_msgs: 0,
            max_ms: 0.0,
            age_us: latency_hist(),
            msgs: Histogram::new(3).expect("valid histogram"),
            bytes: Histogram::new(3).expect("valid histogram"),
        }
    }
}

impl WindowStats {
    fn record(&mut self, w: &Window) {
        self.max_bytes = self.max_bytes.max(w.bytes);
        self.max_msgs = self.max_msgs.max(w.msgs);
        self.max_ms = self.max_ms.max(w.age_ms);
        self.age_us.saturating_record((w.age_ms * 1000.0) as u64);
        self.msgs.saturating_record(w.msgs);
        self.bytes.saturating_record(w.bytes);
    }
}

/// Loss-window summary of one side, as summary.json writes it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct WindowSummary {
    /// Largest acked-but-not-durable bytes.
    pub max_bytes: u64,
    /// Largest acked-but-not-durable message count.
    pub max_msgs: u64,
    /// Largest age of the oldest acked-but-not-durable message, ms.
    pub max_ms: f64,
    /// 99th percentile of that age over the samples, ms.
    pub p99_ms: f64,
    /// 99th percentile of the message count.
    pub p99_msgs: u64,
    /// 99th percentile of the byte count.
    pub p99_bytes: u64,
    /// Mean age, ms.
    pub mean_ms: f64,
}

impl WindowSummary {
    /// Summarizes collected stats.
    pub fn of(s: &WindowStats) -> WindowSummary {
        let r3 = |v: f64| (v * 1000.0).round() / 1000.0;
        if s.age_us.is_empty() {
            return WindowSummary::default();
        }
        WindowSummary {
            max_bytes: s.max_bytes,
            max_msgs: s.max_msgs,
            max_ms: r3(s.max_ms),
            p99_ms: r3(s.age_us.value_at_quantile(0.99) as f64 / 1000.0),
            p99_msgs: s.msgs.value_at_quantile(0.99),
            p99_bytes: s.bytes.value_at_quantile(0.99),
            mean_ms: r3(s.age_us.mean() / 1000.0),
        }
    }
}

/// Per-second maxima of the loss window (power side).
#[derive(Debug, Clone, Copy, Default)]
pub struct SecondWindow {
    /// Largest age, ms.
    pub max_ms: f64,
    /// Largest message count.
    pub max_msgs: u64,
    /// Largest byte count.
    pub max_bytes: u64,
}

/// Everything the sampler thread collected.
#[derive(Debug, Clone, Default)]
pub struct LossStats {
    /// Power-loss side.
    pub power: WindowStats,
    /// Process-crash side.
    pub process: WindowStats,
    /// Samples taken after warmup.
    pub samples: u64,
    /// Largest gap between two samples, ms (the sampler's real period).
    pub max_gap_ms: f64,
    /// Per-second maxima, power side, warmup included.
    pub seconds: Vec<SecondWindow>,
}

/// Runs shorter than this (warmup included) get fine time-series buckets.
pub const SHORT_RUN_SECS: f64 = 10.0;

/// Time-series bucket of a short run, ms.
pub const SHORT_RUN_BUCKET_MS: u64 = 100;

/// Time-series bucket of a long run (or one bounded by a message count,
/// whose length is not known in advance), ms.
pub const LONG_RUN_BUCKET_MS: u64 = 1000;

/// At most this many per-sender bucket histograms (about 27 KB each) for
/// the finer buckets of a short run: many senders fall back to coarser ones.
pub const MAX_BUCKET_HISTOGRAMS: u64 = 4096;

/// Time-series bucket (timeseries.csv rows, the over-time charts) when
/// none is given, for a run of `run_secs` (warmup included; None: bounded
/// by a message count) with `senders` sender threads: 100 ms for runs under
/// 10 s, so a 3.5 s run has 35 points instead of 4, else 1 s. A short run
/// with so many senders that their per-bucket histograms would pass
/// [`MAX_BUCKET_HISTOGRAMS`] gets the finest of 200, 500 and 1000 ms that
/// stays under it.
pub fn default_timeseries_ms(run_secs: Option<f64>, senders: usize) -> u64 {
    let Some(secs) = run_secs.filter(|s| s.is_finite() && *s < SHORT_RUN_SECS) else {
        return LONG_RUN_BUCKET_MS;
    };
    [SHORT_RUN_BUCKET_MS, 200, 500]
        .into_iter()
        .find(|&ms| {
            let buckets = (secs * 1000.0 / ms as f64).ceil() as u64 + 1;
            buckets * senders.max(1) as u64 <= MAX_BUCKET_HISTOGRAMS
        })
        .unwrap_or(LONG_RUN_BUCKET_MS)
}

/// The loss-window sampler: a background service thread sampling the
/// store's offsets every period.
pub struct Sampler {
    thread: Periodic,
    stats: Arc<Mutex<LossStats>>,
}

impl Sampler {
    /// Starts sampling `offsets()` every `period`, recording from
    /// `measure_from` on, with per-`bucket` maxima for the time series.
    pub fn start(
        tracker: Arc<LossTracker>,
        offsets: Arc<dyn Fn() -> Offsets + Send + Sync>,
        period: Duration,
        bucket: Duration,
        start: Instant,
        measure_from: Instant,
    ) -> Sampler {
        let stats = Arc::new(Mutex::new(LossStats::default()));
        let out = stats.clone();
        let mut last = Instant::now();
        let thread = Periodic::spawn("mqlab-sampler", period, move || {
            let s = tracker.sample_live(|| offsets());
            let now = Instant::now();
            let sec = (now.saturating_duration_since(start).as_micros() / bucket.as_micros().max(1))
                as usize;
            let mut stats = out.lock().unwrap_or_else(|e| e.into_inner());
            while stats.seconds.len() <= sec {
                stats.seconds.push(SecondWindow::default());
            }
            let b = &mut stats.seconds[sec];
            b.max_ms = b.max_ms.max(s.power.age_ms);
            b.max_msgs = b.max_msgs.max(s.power.msgs);
            b.max_bytes = b.max_bytes.max(s.power.bytes);
            if now >= measure_from {
                stats.power.record(&s.power);
                stats.process.record(&s.process);
                stats.samples += 1;
                let gap = now.duration_since(last).as_secs_f64() * 1000.0;
                stats.max_gap_ms = stats.max_gap_ms.max(gap);
            }
            last = now;
            true
        });
        Sampler { thread, stats }
    }

    /// Stops the thread and returns what it collected.
    pub fn finish(self) -> LossStats {
        self.thread.stop();
        std::mem::take(&mut *self.stats.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// `--ack-log`: one CSV line per acknowledged message, written as acks
/// arrive (buffered; a killed run loses at most the buffer's tail, never
/// writes a line for a message that was not acknowledged).
pub struct AckLog {
    out: Mutex<csv::Writer<File>>,
    unbuffered: bool,
}

/// Header of an ack log.
pub const ACK_LOG_HEADER: &str = "topic,queue_id,queue_offset,phys_offset,key";

impl AckLog {
    /// Creates the file and writes the header.
    pub fn create(path: &Path) -> Result<AckLog> {
        if let Some(parent) = path.parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent).with_context(|| {
                    format!("create the folder of the ack log {}", parent.display())
                })?;
            }
        }
        let f = File::create(path).with_context(|| format!("create {}", path.display()))?;
        let mut out = csv::WriterBuilder::new()
            .buffer_capacity(64 * 1024)
            .from_writer(f);
        out.write_record(ACK_LOG_HEADER.split(','))
            .with_context(|| format!("write {}", path.display()))?;
        Ok(AckLog {
            out: Mutex::new(out),
            unbuffered: false,
        })
    }

    /// As [`AckLog::create`], but every line reaches the file as it is
    /// written (`run --ack-log-unbuffered`).
    pub fn create_unbuffered(path: &Path) -> Result<AckLog> {
        let mut log = AckLog::create(path)?;
        log.unbuffered = true;
        log.flush()?;
        Ok(log)
    }

    /// Appends one line.
    pub fn write(&self, topic: &str, queue_id: u32, queue_offset: u64, phys: u64, key: &str) {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = out.serialize((topic, queue_id, queue_offset, phys, key));
        if self.unbuffered {
            let _ = out.flush();
        }
    }

    /// Flushes the buffer.
    pub fn flush(&self) -> Result<()> {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        out.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn off(committed: u64, flushed: u64, acked: u64) -> Offsets {
        Offsets {
            written: acked,
            committed,
            flushed,
            acked,
        }
    }

    #[test]
    fn window_counts_and_ages() {
        let start = Instant::now();
        let t = LossTracker::new(2, start);
        // Sender 0 acked records ending at 100, 200, 300; sender 1 at 150, 250.
        t.push(0, 100, start + Duration::from_millis(1));
        t.push(0, 200, start + Duration::from_millis(2));
        t.push(0, 300, start + Duration::from_millis(3));
        t.push(1, 150, start + Duration::from_millis(4));
        t.push(1, 250, start + Duration::from_millis(5));
        let now = start + Duration::from_millis(10);
        let s = t.sample(off(250, 150, 300), now);
        assert_eq!(s.power.bytes, 150);
        assert_eq!(s.power.msgs, 3); // 200, 300, 250
        assert!((s.power.age_ms - 8.0).abs() < 1e-9); // 200 acked at 2 ms
        assert_eq!(s.process.bytes, 50);
        assert_eq!(s.process.msgs, 1); // 300
        assert!((s.process.age_ms - 7.0).abs() < 1e-9);
        // Entries at or below flushed were dropped.
        let s = t.sample(off(300, 300, 300), now);
        assert_eq!((s.power.msgs, s.process.msgs), (0, 0));
        assert_eq!(s.power.age_ms, 0.0);
    }

    #[test]
    fn live_sample_ignores_acks_after_the_offsets_read() {
        let start = Instant::now();
        let t = LossTracker::new(1, start);
        t.push(0, 100, start);
        // A group-commit ack lands between the length snapshot and the
        // offsets read: flushed was 100 when read, the new ack ends at 200.
        let s = t.sample_live(|| {
            t.push(0, 200, start);
            off(100, 100, 100)
        });
        assert_eq!((s.power.msgs, s.process.msgs), (0, 0));
        // It is seen by the next sample, against fresh offsets.
        let s = t.sample_live(|| off(200, 150, 200));
        assert_eq!((s.power.msgs, s.process.msgs), (1, 0));
    }

    #[test]
    fn tracker_is_bounded() {
        let start = Instant::now();
        let t = LossTracker::new(LOSS_TRACK_CAP, start);
        for i in 0..2000 {
            t.push(0, i + 1, start);
        }
        assert!(t.saturated());
        assert_eq!(t.sample(off(0, 0, 2000), start).power.msgs, 1024);
    }

    #[test]
    fn merge_adds_up() {
        let mut a = SenderStats::default();
        let mut b = SenderStats::default();
        a.record_ack(0, true, 10, None, 100);
        b.record_ack(2, true, 1000, Some(2000), 100);
        b.record_ack(0, false, 5, None, 100);
        b.record_error(1, "FLUSH_DISK_TIMEOUT");
        a.merge(&b);
        assert_eq!(a.msgs, 2);
        assert_eq!(a.bytes, 200);
        assert_eq!(a.seconds.len(), 3);
        assert_eq!(a.seconds[0].msgs, 2);
        assert_eq!(a.seconds[1].errors, 1);
        assert_eq!(a.ack.len(), 2);
        assert_eq!(a.intended.len(), 1);
        let s = LatencySummary::of(&a.ack);
        assert_eq!(s.count, 2);
        assert!(s.max >= 1000 && s.max < 1002);
    }

    #[test]
    fn timeseries_bucket_by_run_length() {
        // The matrix default (3 s + 0.5 s warmup, 4 producers): 100 ms.
        assert_eq!(default_timeseries_ms(Some(3.5), 4), 100);
        assert_eq!(default_timeseries_ms(Some(9.99), 16), 100);
        assert_eq!(default_timeseries_ms(Some(10.0), 4), 1000);
        assert_eq!(default_timeseries_ms(Some(61.0), 1), 1000);
        assert_eq!(default_timeseries_ms(None, 4), 1000);
        // 256 senders for 3.5 s: 100 and 200 ms would need 9,216 and
        // 4,864 histograms.
        assert_eq!(default_timeseries_ms(Some(3.5), 256), 500);
        assert_eq!(default_timeseries_ms(Some(9.5), 1024), 1000);
    }
}
