//! The workload generator: sender threads calling `Store::put`, with rate
//! limiting against intended send times, bursts, warmup, and a loss-window
//! sampler beside them.
//!
//! Threads: `producers x inflight` senders (a put is synchronous, so each
//! outstanding send of a producer is its own thread), one sampler, and the
//! caller's thread, which waits and draws the progress bar.
//!
//! Every message is reproducible from (sender slot, sequence): its key is
//! `k<slot>-<seq>`, its queue `(slot + seq) % queues`, and its body a
//! pattern seeded by the slot with the slot and sequence in the first 12
//! bytes ([`expected_body`]). The crash experiment uses this to check a
//! recovered message byte for byte without keeping every body in memory.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use mqlab_engine::message::PROPERTY_KEYS;
use mqlab_engine::{Message, PutStatus, Store};

use crate::recorder::{AckLog, LossStats, LossTracker, Sampler, SenderStats};
use crate::spec::Workload;

/// One acknowledged message, kept when a caller asks for them (crash).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckRecord {
    /// Sender slot.
    pub slot: u32,
    /// Sequence within the slot.
    pub seq: u64,
    /// Queue id.
    pub queue_id: u32,
    /// Queue offset returned by the put.
    pub queue_offset: u64,
    /// Physical offset returned by the put.
    pub phys: u64,
    /// Record size.
    pub size: u32,
}

impl AckRecord {
    /// Physical offset just past the record.
    pub fn end(&self) -> u64 {
        self.phys + self.size as u64
    }
}

/// The key of message `seq` of sender `slot`.
pub fn key_for(slot: u32, seq: u64) -> String {
    format!("k{slot}-{seq}")
}

/// The queue of message `seq` of sender `slot`.
pub fn queue_for(slot: u32, seq: u64, queues: u32) -> u32 {
    ((slot as u64 + seq) % queues as u64) as u32
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn body_template(slot: u32, size: usize) -> Vec<u8> {
    let mut body = Vec::with_capacity(size);
    let mut s = splitmix(slot as u64 + 1);
    while body.len() < size {
        s = splitmix(s);
        body.extend_from_slice(&s.to_le_bytes());
    }
    body.truncate(size);
    body
}

fn stamp(body: &mut [u8], slot: u32, seq: u64) {
    if body.len() >= 12 {
        body[..4].copy_from_slice(&slot.to_le_bytes());
        body[4..12].copy_from_slice(&seq.to_le_bytes());
    }
}

/// The body of message `seq` of sender `slot`, `size` bytes.
pub fn expected_body(slot: u32, seq: u64, size: usize) -> Vec<u8> {
    let mut b = body_template(slot, size);
    stamp(&mut b, slot, seq);
    b
}

/// What a caller can add to a run.
#[derive(Default)]
pub struct RunOptions {
    /// Write acknowledged messages to this log.
    pub ack_log: Option<Arc<AckLog>>,
    /// Keep every [`AckRecord`] in memory.
    pub keep_acks: bool,
    /// Set by the crash experiment at the crash instant: acks returned after
    /// it are not counted (the producer would never have seen them) and
    /// senders stop.
    pub crashed: Option<Arc<AtomicBool>>,
    /// Run until stopped, ignoring the duration (crash experiment).
    pub until_stopped: bool,
    /// Draw a progress bar on stderr.
    pub progress: bool,
    /// Prefix of the progress bar.
    pub label: String,
}

struct Ctx {
    store: Arc<Store>,
    w: Workload,
    start: Instant,
    measure_from: Instant,
    deadline: Option<Instant>,
    stop: Arc<AtomicBool>,
    crashed: Arc<AtomicBool>,
    issued: AtomicU64,
    acked_live: AtomicU64,
    tracker: Arc<LossTracker>,
    ack_log: Option<Arc<AckLog>>,
    keep_acks: bool,
}

/// What a finished run recorded.
pub struct RunOutcome {
    /// Merged sender stats.
    pub stats: SenderStats,
    /// Loss-window stats.
    pub loss: LossStats,
    /// Acknowledged messages (when kept), per slot in ack order.
    pub acks: Vec<AckRecord>,
    /// Seconds measured (after warmup).
    pub measured_secs: f64,
    /// Seconds from start to the end of the run (warmup included).
    pub total_secs: f64,
    /// True when Ctrl-C stopped it.
    pub interrupted: bool,
    /// True when the loss tracker overflowed.
    pub saturated: bool,
}

/// A workload in progress.
pub struct Running {
    ctx: Arc<Ctx>,
    senders: Vec<JoinHandle<(SenderStats, Vec<AckRecord>)>>,
    sampler: Option<Sampler>,
    progress: Option<ProgressBar>,
    last_progress: (Instant, u64),
}

fn sleep_until(t: Instant, stop: &AtomicBool) {
    loop {
        let now = Instant::now();
        if now >= t || stop.load(Ordering::Relaxed) {
            return;
        }
        // Wake up at least every 50 ms to notice a stop.
        std::thread::sleep((t - now).min(Duration::from_millis(50)));
    }
}

/// If `t` falls in an off phase of the burst cycle, the start of the next
/// on phase; else `t` (also `run --target`'s).
pub fn burst_adjust(t: Instant, start: Instant, on_ms: u64, off_ms: u64) -> Instant {
    let cycle = on_ms + off_ms;
    if off_ms == 0 || cycle == 0 {
        return t;
    }
    let since = t.saturating_duration_since(start).as_millis() as u64;
    let pos = since % cycle;
    if pos < on_ms {
        t
    } else {
        start + Duration::from_millis(since - pos + cycle)
    }
}

fn sender(ctx: Arc<Ctx>, slot: u32) -> (SenderStats, Vec<AckRecord>) {
    let w = &ctx.w;
    let mut stats = SenderStats::default();
    let mut acks = Vec::new();
    let mut msg = Message::new(w.topic.clone(), body_template(slot, w.msg_size));
    let senders = w.senders() as f64;
    let interval = (w.rate > 0.0).then(|| Duration::from_secs_f64(senders / w.rate));
    let mut next =
        ctx.start + interval.map_or(Duration::ZERO, |iv| iv.mul_f64(slot as f64 / senders));
    let burst = w.burst_on_ms.map(|on| (on, w.burst_off_ms.unwrap_or(0)));
    let mut seq = 0u64;
    let mut consecutive_errors = 0u64;
    loop {
        if ctx.stop.load(Ordering::Relaxed) || crate::util::stopped() {
            break;
        }
        if let Some(limit) = w.messages {
            if ctx.issued.fetch_add(1, Ordering::Relaxed) >= limit {
                break;
            }
        }
        if let Some((on, off)) = burst {
            // Rate-limited: move the schedule out of the pause; unlimited:
            // wait for the next burst.
            match interval {
                Some(_) => next = burst_adjust(next, ctx.start, on, off),
                None => sleep_until(burst_adjust(Instant::now(), ctx.start, on, off), &ctx.stop),
            }
        }
        let intended = interval.map(|iv| {
            let t = next;
            sleep_until(t, &ctx.stop);
            next += iv;
            t
        });
        let t0 = Instant::now();
        if ctx.deadline.is_some_and(|d| t0 >= d) {
            break;
        }
        let queue_id = queue_for(slot, seq, w.queues);
        msg.queue_id = queue_id;
        stamp(&mut msg.body, slot, seq);
        let key = w.keys.then(|| key_for(slot, seq));
        if let Some(k) = &key {
            msg.properties.insert(PROPERTY_KEYS.to_string(), k.clone());
        }
        let r = ctx.store.put(&msg);
        let t1 = Instant::now();
        if ctx.crashed.load(Ordering::SeqCst) {
            break;
        }
        let second =
            (t1.saturating_duration_since(ctx.start).as_millis() as u64 / w.timeseries_ms) as usize;
        let measured = t1 >= ctx.measure_from;
        match (r.status, r.offsets) {
            (PutStatus::PutOk, Some(o)) => {
                consecutive_errors = 0;
                let lat = t1.duration_since(t0).as_micros() as u64;
                let int = intended.map(|t| t1.saturating_duration_since(t).as_micros() as u64);
                stats.record_ack(second, measured, lat, int, w.msg_size as u64);
                let end = o.phys_offset + o.wrote_bytes as u64;
                ctx.tracker.push(slot as usize, end, t1);
                ctx.acked_live.fetch_add(1, Ordering::Relaxed);
                if let Some(log) = &ctx.ack_log {
                    log.write(
                        &w.topic,
                        queue_id,
                        o.queue_offset,
                        o.phys_offset,
                        key.as_deref().unwrap_or(""),
                    );
                }
                if ctx.keep_acks {
                    acks.push(AckRecord {
                        slot,
                        seq,
                        queue_id,
                        queue_offset: o.queue_offset,
                        phys: o.phys_offset,
                        size: o.wrote_bytes,
                    });
                }
            }
            (status, _) => {
                stats.record_error(second, status.as_str());
                consecutive_errors += 1;
                if status == PutStatus::MessageIllegal && consecutive_errors == 1 && seq == 0 {
                    eprintln!(
                        "mqlab: the store rejects the message: {}",
                        r.detail.as_deref().unwrap_or("?")
                    );
                }
                // A store that refuses everything (poisoned, full, illegal
                // message) will not recover during the run.
                if consecutive_errors >= 1000 {
                    eprintln!(
                        "mqlab: sender {slot}: 1000 failed puts in a row ({}: {}), stopping",
                        status.as_str(),
                        r.detail.as_deref().unwrap_or("")
                    );
                    break;
                }
            }
        }
        seq += 1;
    }
    (stats, acks)
}

impl Running {
    /// Starts the senders and the sampler on `store`.
    pub fn start(store: Arc<Store>, w: &Workload, opts: RunOptions) -> Running {
        let start = Instant::now();
        let measure_from = start + Duration::from_secs_f64(w.warmup_secs);
        let deadline = (w.messages.is_none() && !opts.until_stopped)
            .then(|| measure_from + Duration::from_secs_f64(w.duration_secs));
        let tracker = Arc::new(LossTracker::new(w.senders(), start));
        let ctx = Arc::new(Ctx {
            store: store.clone(),
            w: w.clone(),
            start,
            measure_from,
            deadline,
            stop: Arc::new(AtomicBool::new(false)),
            crashed: opts.crashed.unwrap_or_default(),
            issued: AtomicU64::new(0),
            acked_live: AtomicU64::new(0),
            tracker: tracker.clone(),
            ack_log: opts.ack_log,
            keep_acks: opts.keep_acks,
        });
        let offsets_store = store.clone();
        let sampler = Sampler::start(
            tracker,
            Arc::new(move || offsets_store.offsets()),
            Duration::from_millis(w.sample_ms),
            Duration::from_millis(w.timeseries_ms),
            start,
            measure_from,
        );
        let senders = (0..w.senders() as u32)
            .map(|slot| {
                let c = ctx.clone();
                std::thread::Builder::new()
                    .name(format!("mqlab-sender-{slot}"))
                    .spawn(move || sender(c, slot))
                    .expect("spawning a sender thread")
            })
            .collect();
        let progress = opts.progress.then(|| {
            let (len, unit) = match (w.messages, deadline) {
                (Some(n), _) => (n, "msgs"),
                (None, Some(_)) => (((w.warmup_secs + w.duration_secs) * 10.0) as u64, "ds"),
                (None, None) => (0, ""),
            };
            let pb = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template("{prefix:>28} [{bar:30}] {elapsed:>4} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
            pb.set_style(style);
            pb.set_prefix(opts.label.clone());
            let _ = unit;
            pb
        });
        Running {
            ctx,
            senders,
            sampler: Some(sampler),
            progress,
            last_progress: (start, 0),
        }
    }

    /// The loss tracker (for sampling at a crash instant).
    pub fn tracker(&self) -> &Arc<LossTracker> {
        &self.ctx.tracker
    }

    /// When the run started.
    pub fn started(&self) -> Instant {
        self.ctx.start
    }

    /// Acknowledged messages so far (warmup included).
    pub fn acked(&self) -> u64 {
        self.ctx.acked_live.load(Ordering::Relaxed)
    }

    /// True when every sender has returned.
    pub fn is_done(&self) -> bool {
        self.senders.iter().all(|h| h.is_finished())
    }

    /// Asks the senders to stop.
    pub fn stop(&self) {
        self.ctx.stop.store(true, Ordering::SeqCst);
    }

    fn tick_progress(&mut self) {
        let Some(pb) = &self.progress else { return };
        let now = Instant::now();
        let acked = self.acked();
        let (t, n) = self.last_progress;
        let dt = now.duration_since(t).as_secs_f64();
        if dt >= 0.5 {
            let rate = (acked - n) as f64 / dt;
            pb.set_message(format!("{} msgs/s", crate::util::thousands(rate)));
            self.last_progress = (now, acked);
        }
        match self.ctx.w.messages {
            Some(_) => pb.set_position(self.ctx.issued.load(Ordering::Relaxed)),
            None => pb.set_position((now.duration_since(self.ctx.start).as_millis() / 100) as u64),
        }
    }

    /// Waits until the senders are done (duration, message count, or
    /// Ctrl-C), updating the progress bar.
    pub fn wait(&mut self) {
        while !self.is_done() {
            if crate::util::stopped() {
                self.stop();
            }
            self.tick_progress();
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops everything and returns the recording.
    pub fn finish(mut self) -> RunOutcome {
        self.stop();
        let end = Instant::now();
        let mut stats = SenderStats::default();
        let mut acks = Vec::new();
        for h in self.senders.drain(..) {
            if let Ok((s, a)) = h.join() {
                stats.merge(&s);
                acks.extend(a);
            }
        }
        let loss = self.sampler.take().map(|s| s.finish()).unwrap_or_default();
        if let Some(pb) = self.progress.take() {
            pb.finish_and_clear();
        }
        if let Some(log) = &self.ctx.ack_log {
            if let Err(e) = log.flush() {
                eprintln!("mqlab: flushing the ack log: {e:#}");
            }
        }
        let measured_end = match self.ctx.deadline {
            Some(d) => d.min(end),
            None => end,
        };
        let measured_secs = measured_end
            .saturating_duration_since(self.ctx.measure_from)
            .as_secs_f64();
        RunOutcome {
            total_secs: measured_end
                .saturating_duration_since(self.ctx.start)
                .as_secs_f64(),
            stats,
            loss,
            acks,
            measured_secs,
            interrupted: crate::util::stopped(),
            saturated: self.ctx.tracker.saturated(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_reproducible_and_distinct() {
        let a = expected_body(3, 7, 100);
        assert_eq!(a, expected_body(3, 7, 100));
        assert_ne!(a, expected_body(3, 8, 100));
        assert_ne!(a, expected_body(4, 7, 100));
        assert_eq!(a.len(), 100);
        let mut t = body_template(3, 100);
        stamp(&mut t, 3, 7);
        assert_eq!(t, a);
        assert_eq!(key_for(3, 7), "k3-7");
        assert_eq!(queue_for(3, 7, 4), 2);
    }

    #[test]
    fn bursts_skip_off_phases() {
        let s = Instant::now();
        let ms = Duration::from_millis;
        assert_eq!(burst_adjust(s + ms(50), s, 100, 900), s + ms(50));
        assert_eq!(burst_adjust(s + ms(150), s, 100, 900), s + ms(1000));
        assert_eq!(burst_adjust(s + ms(1050), s, 100, 900), s + ms(1050));
        assert_eq!(burst_adjust(s + ms(150), s, 100, 0), s + ms(150));
    }
}
