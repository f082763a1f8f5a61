//! The producing side of a variant: sender threads that follow a plan
//! (rate, bursts, duration) and record what each send's ack cost.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mqlab_client::producer::Producer;
use mqlab_engine::{Message, PutStatus};

use super::tracker::body;
use crate::recorder::SenderStats;
use crate::util;

/// How producers send.
pub struct Plan {
    /// Sender threads.
    pub threads: usize,
    /// Total rate, msgs/s (0 = as fast as they can).
    pub rate: f64,
    /// How long.
    pub duration: Duration,
    /// Bursts: on ms, off ms.
    pub burst: Option<(u64, u64)>,
}

/// Runs `plan`'s threads, each calling `send(slot, seq, sent_us)` until the
/// duration passes; returns the merged ack statistics.
pub fn drive(plan: &Plan, start: Instant, send: SendFn) -> SenderStats {
    let handles: Vec<_> = (0..plan.threads)
        .map(|slot| {
            let send = send.clone();
            let per = plan.rate / plan.threads as f64;
            let interval = (per > 0.0).then(|| Duration::from_secs_f64(1.0 / per));
            let (duration, burst) = (plan.duration, plan.burst);
            std::thread::spawn(move || {
                let mut stats = SenderStats::default();
                let mut next = start;
                let mut seq = 0u64;
                loop {
                    let now = Instant::now();
                    if now >= start + duration || util::stopped() {
                        break;
                    }
                    if let Some((on, off)) = burst {
                        let since = now.duration_since(start).as_millis() as u64;
                        let pos = since % (on + off).max(1);
                        if pos >= on {
                            std::thread::sleep(Duration::from_millis(on + off - pos));
                            next = Instant::now();
                            continue;
                        }
                    }
                    if let Some(iv) = interval {
                        if next > now {
                            std::thread::sleep(next - now);
                        }
                        next += iv;
                    }
                    let t = Instant::now();
                    let sent_us = t.duration_since(start).as_micros() as u64;
                    let status = send(slot as u32, seq, sent_us);
                    let second = t.duration_since(start).as_secs() as usize;
                    if status == PutStatus::PutOk {
                        stats.record_ack(second, true, t.elapsed().as_micros() as u64, None, 0);
                    } else {
                        stats.record_error(second, status.as_str());
                    }
                    seq += 1;
                }
                stats
            })
        })
        .collect();
    let mut all = SenderStats::default();
    for h in handles {
        if let Ok(s) = h.join() {
            all.merge(&s);
        }
    }
    all
}

/// The plain sender: message `(slot, seq)` of `size` bytes to `topic`,
/// counting what the store accepted in `produced`.
pub fn plain_send(
    producer: &Arc<Producer>,
    topic: &str,
    size: usize,
    produced: &Arc<AtomicU64>,
) -> SendFn {
    let (p, topic, produced) = (producer.clone(), topic.to_string(), produced.clone());
    Arc::new(move |slot: u32, seq: u64, sent_us: u64| {
        let r = p.send(Message::new(topic.clone(), body(slot, seq, sent_us, size)));
        if r.is_ok() {
            produced.fetch_add(1, Ordering::Relaxed);
        }
        r.status
    })
}

/// A sender: (slot, sequence, send time µs) to the put status.
pub type SendFn = Arc<dyn Fn(u32, u64, u64) -> PutStatus + Send + Sync>;
