//! Consumers of a `--target` run, for end-to-end latency and backlog: one
//! pull loop per queue through `TcpBroker` (long polling, 32 messages a
//! pull), from the queue's end when the run starts, so only this run's
//! messages are read, each offset once (no duplicates by construction).
//! End-to-end latency is born to consumed on the wall clock, in µs: the
//! producer writes its wall-clock send time into body bytes 12..20
//! (bodies of at least 20 bytes; shorter ones fall back to the born
//! timestamp, in ms).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use mqlab_broker::types::{MessageQueue, PullRequest, PullStatus};
use mqlab_broker::Subscription;
use mqlab_client::api::BrokerApi;
use mqlab_client::tcp::pipelined::RouteQueue;
use mqlab_client::tcp::TcpBroker;
use mqlab_engine::message::StoredMessage;

use super::record::{wall_us, ConsumeInterval};
use super::series::WallSeries;
use crate::recorder::latency_hist;

/// Where the send time sits in a body.
pub const SENT_AT: std::ops::Range<usize> = 12..20;

/// The wall-clock send time (µs) of a message of this run.
pub fn sent_us(m: &StoredMessage) -> u64 {
    match m.body.get(SENT_AT) {
        Some(b) => u64::from_le_bytes(b.try_into().expect("8 bytes")),
        None => (m.born_timestamp_ms.max(0) as u64).saturating_mul(1000),
    }
}

/// What the consumers measured.
pub struct ConsumeStats {
    /// Messages consumed (each offset once).
    pub consumed: AtomicU64,
    /// Pulls that failed.
    pub pull_errors: AtomicU64,
    /// Born to consumed, µs, of messages born after the warmup.
    e2e: Mutex<E2e>,
}

struct E2e {
    measured: Histogram<u64>,
    window: Histogram<u64>,
    window_consumed: u64,
    window_bytes: u64,
    /// Consumed messages by wall-clock second (series.json).
    series: WallSeries,
}

impl ConsumeStats {
    /// What the consumers did since the last call (resets it).
    pub fn take_window(&self) -> ConsumeWindow {
        let mut g = self.e2e.lock().unwrap_or_else(|e| e.into_inner());
        ConsumeWindow {
            msgs: std::mem::take(&mut g.window_consumed),
            bytes: std::mem::take(&mut g.window_bytes),
            e2e: std::mem::replace(&mut g.window, latency_hist()),
        }
    }

    /// The status line of RocketMQ's benchmark consumer over `w`, an
    /// interval of `secs`.
    pub fn status_line(
        &self,
        w: &ConsumeWindow,
        now_wall: &str,
        secs: f64,
        backlog: u64,
    ) -> String {
        let h = &w.e2e;
        let (avg, max, p99) = if h.is_empty() {
            (0.0, 0, 0.0)
        } else {
            (
                h.mean() / 1000.0,
                h.max().div_ceil(1000),
                h.value_at_quantile(0.99) as f64 / 1000.0,
            )
        };
        format!(
            "Current Time: {now_wall} | Consume TPS: {} | AVG(B2C) RT(ms): {avg:7.3} | \
             MAX(B2C) RT(ms): {max} | B2C p99(ms): {p99:.3} | Backlog: {backlog} | Pull Failed: {}",
            (w.msgs as f64 / secs.max(1e-9)) as u64,
            self.pull_errors.load(Ordering::Relaxed),
        )
    }
}

/// What the consumers did over a status interval.
pub struct ConsumeWindow {
    /// Messages consumed.
    pub msgs: u64,
    /// Their body bytes.
    pub bytes: u64,
    /// Their end-to-end latency, µs.
    pub e2e: Histogram<u64>,
}

impl ConsumeWindow {
    /// The consumers' part of OMB's line, with the backlog now.
    pub fn omb(&self, backlog: u64) -> ConsumeInterval {
        ConsumeInterval {
            msgs: self.msgs,
            bytes: self.bytes,
            backlog,
        }
    }
}

/// The running consumers.
pub struct Consumers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// What they measured.
    pub stats: Arc<ConsumeStats>,
}

fn consume(
    broker: Arc<TcpBroker>,
    mq: MessageQueue,
    mut offset: u64,
    measure_from_wall_us: u64,
    stop: Arc<AtomicBool>,
    stats: Arc<ConsumeStats>,
) {
    // Subscription `*` in the pull itself: a RocketMQ broker then needs no
    // heartbeat of the group to serve it.
    let all = Arc::new(Subscription::new(mq.topic.clone(), "*"));
    while !stop.load(Ordering::Acquire) {
        let req = PullRequest {
            mq: mq.clone(),
            offset,
            max_msgs: 32,
            filter: Some(all.clone()),
            suspend_ms: 1000,
        };
        let r = match broker.pull_message(&req, Some(&stop)) {
            Ok(r) => r,
            Err(_) => {
                if !stop.load(Ordering::Acquire) {
                    stats.pull_errors.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(100));
                }
                continue;
            }
        };
        if r.status == PullStatus::Found && !r.msgs.is_empty() {
            let now = wall_us();
            let mut g = stats.e2e.lock().unwrap_or_else(|e| e.into_inner());
            for m in &r.msgs {
                let sent = sent_us(m);
                let e2e = now.saturating_sub(sent).max(1);
                if sent >= measure_from_wall_us {
                    g.measured.saturating_record(e2e);
                }
                g.window.saturating_record(e2e);
                g.window_consumed += 1;
                g.window_bytes += m.body.len() as u64;
                g.series.record_consumed(now, e2e, m.body.len() as u64);
            }
            drop(g);
            stats
                .consumed
                .fetch_add(r.msgs.len() as u64, Ordering::Relaxed);
        }
        offset = r.next_offset.max(offset);
    }
}

impl Consumers {
    /// Starts one pull loop per queue of `queues` (topic `topic`), each
    /// from the queue's end now; messages born at or after
    /// `measure_from_wall_us` count in the end-to-end histogram.
    pub fn start(
        topic: &str,
        queues: &[RouteQueue],
        measure_from_wall_us: u64,
        local_dir: &Path,
    ) -> Result<Consumers> {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(ConsumeStats {
            consumed: AtomicU64::new(0),
            pull_errors: AtomicU64::new(0),
            e2e: Mutex::new(E2e {
                measured: latency_hist(),
                window: latency_hist(),
                window_consumed: 0,
                window_bytes: 0,
                series: WallSeries::default(),
            }),
        });
        let mut brokers: BTreeMap<SocketAddr, Arc<TcpBroker>> = BTreeMap::new();
        let mut threads = Vec::new();
        for q in queues {
            let broker = brokers
                .entry(q.broker_addr)
                .or_insert_with(|| {
                    Arc::new(TcpBroker::new(
                        q.broker_addr,
                        "mqlab-consumer",
                        local_dir.to_path_buf(),
                    ))
                })
                .clone();
            let mq = MessageQueue::new(topic, q.queue_id);
            // Where the queue ends now: this run's messages come after.
            let (_, end) = broker.get_offset_range(&mq);
            let (stop, stats) = (stop.clone(), stats.clone());
            let t = std::thread::Builder::new()
                .name(format!("mqlab-consume-{}", q.queue_id))
                .spawn(move || consume(broker, mq, end, measure_from_wall_us, stop, stats))
                .context("spawn a consumer thread")?;
            threads.push(t);
        }
        Ok(Consumers {
            stop,
            threads,
            stats,
        })
    }

    /// Messages consumed so far.
    pub fn consumed(&self) -> u64 {
        self.stats.consumed.load(Ordering::Relaxed)
    }

    /// Stops the pull loops (each within 50 ms) and returns the measured
    /// end-to-end histogram and the consumed messages by wall-clock second.
    pub fn finish(mut self) -> (Histogram<u64>, WallSeries) {
        self.stop.store(true, Ordering::Release);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let mut g = self.stats.e2e.lock().unwrap_or_else(|e| e.into_inner());
        (
            std::mem::replace(&mut g.measured, latency_hist()),
            std::mem::take(&mut g.series),
        )
    }
}
