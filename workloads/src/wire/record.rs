//! What a `--target` run records from its sends' answers (which arrive on
//! the sender's reader threads): the ack and intended latencies and time
//! series ([`SenderStats`], as an in-process run), errors by response
//! code, the client ack log, and the counters of RocketMQ's benchmark
//! status line.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use mqlab_client::tcp::pipelined::{response_name, SendError, SendReply};

use crate::recorder::{latency_hist, SenderStats};
use crate::verify::CLIENT_ACK_LOG_HEADER;

/// The client ack log (`topic,queue_id,queue_offset,msg_id,key`): what
/// each acknowledged send was told, the input of `verify --acked`.
pub struct ClientAckLog {
    out: csv::Writer<File>,
    unbuffered: bool,
}

impl ClientAckLog {
    /// Creates the file (and its folder) and writes the header.
    pub fn create(path: &Path, unbuffered: bool) -> Result<ClientAckLog> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("create the folder of {}", path.display()))?;
        }
        let f = File::create(path).with_context(|| format!("create {}", path.display()))?;
        let mut out = csv::WriterBuilder::new()
            .buffer_capacity(64 * 1024)
            .from_writer(f);
        out.write_record(CLIENT_ACK_LOG_HEADER.split(','))
            .and_then(|_| out.flush().map_err(Into::into))
            .with_context(|| format!("write {}", path.display()))?;
        Ok(ClientAckLog { out, unbuffered })
    }

    fn write(&mut self, topic: &str, queue_id: u32, queue_offset: u64, msg_id: &str, key: &str) {
        let _ = self
            .out
            .serialize((topic, queue_id, queue_offset, msg_id, key));
        if self.unbuffered {
            let _ = self.out.flush();
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Wall-clock time in µs since the epoch (born times, end-to-end latency).
pub fn wall_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// RocketMQ's benchmark counters since the last status line.
struct Window {
    since: Instant,
    ok: u64,
    rt_sum_us: u64,
    rt: Histogram<u64>,
}

impl Window {
    fn new(now: Instant) -> Window {
        Window {
            since: now,
            ok: 0,
            rt_sum_us: 0,
            rt: latency_hist(),
        }
    }
}

struct Inner {
    stats: SenderStats,
    log: Option<ClientAckLog>,
    last_measured_ack: Option<Instant>,
    window: Window,
    /// Largest send RT of the run (RocketMQ's Max RT), µs.
    max_rt_us: u64,
    /// Sends that failed: no answer, a refusal (Java's onException).
    send_failed: u64,
    /// Answers with a stored status other than SEND_OK.
    response_failed: u64,
    /// Answers and failures.
    done: u64,
}

/// Everything the answers feed, shared by the callbacks.
pub struct Recorder {
    start: Instant,
    measure_from: Instant,
    bucket_ms: u64,
    msg_size: u64,
    topic: String,
    inner: Mutex<Inner>,
    /// SEND_OK answers, warmup included.
    acked: AtomicU64,
    /// Failures since the last SEND_OK.
    failures_in_a_row: AtomicU64,
    /// When the last SEND_OK came, µs since `start`.
    last_ok_us: AtomicU64,
}

impl Recorder {
    /// A recorder for a run that started at `start`, measured from
    /// `measure_from`, with time-series buckets of `bucket_ms`.
    pub fn new(
        start: Instant,
        measure_from: Instant,
        bucket_ms: u64,
        msg_size: usize,
        topic: &str,
        log: Option<ClientAckLog>,
    ) -> Recorder {
        Recorder {
            start,
            measure_from,
            bucket_ms: bucket_ms.max(1),
            msg_size: msg_size as u64,
            topic: topic.to_string(),
            inner: Mutex::new(Inner {
                stats: SenderStats::default(),
                log,
                last_measured_ack: None,
                window: Window::new(start),
                max_rt_us: 0,
                send_failed: 0,
                response_failed: 0,
                done: 0,
            }),
            acked: AtomicU64::new(0),
            failures_in_a_row: AtomicU64::new(0),
            last_ok_us: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the answer to a send intended at `intended` (rate-limited
    /// runs) with `key`.
    pub fn on_reply(&self, reply: SendReply, intended: Option<Instant>, key: &str) {
        let t1 = Instant::now();
        let bucket =
            (t1.saturating_duration_since(self.start).as_millis() as u64 / self.bucket_ms) as usize;
        let measured = t1 >= self.measure_from;
        let lat_us = reply.latency.as_micros() as u64;
        let mut g = self.lock();
        g.done += 1;
        match reply.result {
            Ok(sent) if sent.is_ok() => {
                let int = intended.map(|t| t1.saturating_duration_since(t).as_micros() as u64);
                g.stats
                    .record_ack(bucket, measured, lat_us, int, self.msg_size);
                if measured {
                    g.last_measured_ack = Some(t1);
                }
                g.window.ok += 1;
                g.window.rt_sum_us += lat_us;
                g.window.rt.saturating_record(lat_us.max(1));
                g.max_rt_us = g.max_rt_us.max(lat_us);
                let topic = &self.topic;
                if let Some(log) = &mut g.log {
                    log.write(topic, sent.queue_id, sent.queue_offset, &sent.msg_id, key);
                }
                drop(g);
                self.acked.fetch_add(1, Ordering::Relaxed);
                self.failures_in_a_row.store(0, Ordering::Relaxed);
                self.last_ok_us.store(
                    t1.saturating_duration_since(self.start).as_micros() as u64,
                    Ordering::Relaxed,
                );
            }
            Ok(sent) => {
                g.stats.record_error(bucket, &response_name(sent.code));
                g.response_failed += 1;
                drop(g);
                self.failures_in_a_row.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                g.stats.record_error(bucket, &e.kind());
                g.send_failed += 1;
                drop(g);
                self.failures_in_a_row.fetch_add(1, Ordering::Relaxed);
                if matches!(e, SendError::Encode(_)) {
                    eprintln!("mqlab: a message does not encode: {e}");
                }
            }
        }
    }

    /// SEND_OK answers so far, warmup included.
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    /// True when 1,000 sends in a row failed and none succeeded for 10 s
    /// (or ever): a broker that refuses everything will not recover during
    /// the run.
    pub fn hopeless(&self) -> bool {
        let since_ok = self.start.elapsed().saturating_sub(Duration::from_micros(
            self.last_ok_us.load(Ordering::Relaxed),
        ));
        self.failures_in_a_row.load(Ordering::Relaxed) >= 1000
            && since_ok >= Duration::from_secs(10)
    }

    /// The status line of RocketMQ's benchmark producer over the interval
    /// since the last one (Send TPS, Average RT, p50/p99), with its
    /// run-wide Max RT and failure counts; resets the interval.
    pub fn status_line(&self, now_wall: &str) -> String {
        let now = Instant::now();
        let mut g = self.lock();
        let w = std::mem::replace(&mut g.window, Window::new(now));
        let secs = now
            .saturating_duration_since(w.since)
            .as_secs_f64()
            .max(1e-9);
        let avg_ms = if w.ok > 0 {
            w.rt_sum_us as f64 / w.ok as f64 / 1000.0
        } else {
            0.0
        };
        let q = |p: f64| {
            if w.rt.is_empty() {
                0.0
            } else {
                w.rt.value_at_quantile(p) as f64 / 1000.0
            }
        };
        format!(
            "Current Time: {now_wall} | Send TPS: {} | Max RT(ms): {} | Average RT(ms): {avg_ms:7.3} \
             | Send Failed: {} | Response Failed: {} | RT p50(ms): {:.3} | RT p99(ms): {:.3}",
            (w.ok as f64 / secs) as u64,
            g.max_rt_us.div_ceil(1000),
            g.send_failed,
            g.response_failed,
            q(0.5),
            q(0.99),
        )
    }

    /// Flushes the ack log and returns what was recorded.
    pub fn finish(&self) -> Finished {
        let mut g = self.lock();
        if let Some(log) = &mut g.log {
            if let Err(e) = log.flush() {
                eprintln!("mqlab: flushing the ack log: {e}");
            }
        }
        Finished {
            stats: std::mem::take(&mut g.stats),
            last_measured_ack: g.last_measured_ack,
            send_failed: g.send_failed,
            response_failed: g.response_failed,
            done: g.done,
            max_rt_us: g.max_rt_us,
        }
    }
}

/// What a run's answers recorded.
pub struct Finished {
    /// Latencies, time series, errors by code.
    pub stats: SenderStats,
    /// When the last ack after the warmup came.
    pub last_measured_ack: Option<Instant>,
    /// Sends that failed (no answer, a refusal).
    pub send_failed: u64,
    /// Answers with a stored status other than SEND_OK.
    pub response_failed: u64,
    /// Answers and failures.
    pub done: u64,
    /// Largest send RT, µs.
    pub max_rt_us: u64,
}

impl Finished {
    /// The closing line, as RocketMQ's `[Complete]` line, over the
    /// measured run (`measured_secs`).
    pub fn complete_line(&self, measured_secs: f64) -> String {
        let s = &self.stats;
        let ms = |us: u64| us as f64 / 1000.0;
        let (avg, p50, p99) = if s.ack.is_empty() {
            (0.0, 0.0, 0.0)
        } else {
            (
                s.ack.mean() / 1000.0,
                ms(s.ack.value_at_quantile(0.5)),
                ms(s.ack.value_at_quantile(0.99)),
            )
        };
        format!(
            "[Complete] Send Total: {} | Send TPS: {} | Max RT(ms): {} | Average RT(ms): {avg:7.3} \
             | Send Failed: {} | Response Failed: {} | RT p50(ms): {p50:.3} | RT p99(ms): {p99:.3}",
            self.done,
            (s.msgs as f64 / measured_secs.max(1e-9)) as u64,
            self.max_rt_us.div_ceil(1000),
            self.send_failed,
            self.response_failed,
        )
    }
}

/// Wall-clock time as RocketMQ's `timeMillisToHumanString2` prints it
/// (`yyyy-MM-dd HH:mm:ss,SSS`), in UTC.
pub fn human_time() -> String {
    let ms = wall_us() / 1000;
    let (secs, milli) = (ms / 1000, ms % 1000);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = mqlab_engine::clock::civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02},{milli:03}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use mqlab_client::tcp::pipelined::Sent;
    use mqlab_protocol::codes::response;

    fn ok(code: i32) -> SendReply {
        SendReply {
            result: Ok(Sent {
                code,
                msg_id: "7F00000100002A9F0000000000000400".into(),
                queue_id: 1,
                queue_offset: 7,
                transaction_id: None,
            }),
            latency: Duration::from_micros(1500),
        }
    }

    #[test]
    fn answers_are_counted_as_rocketmqs_benchmark_counts_them() {
        let start = Instant::now();
        let r = Recorder::new(start, start, 100, 1024, "T", None);
        r.on_reply(ok(response::SUCCESS), Some(start), "k0-0");
        r.on_reply(ok(response::FLUSH_DISK_TIMEOUT), None, "k0-1");
        r.on_reply(
            SendReply {
                result: Err(SendError::Timeout(Duration::from_secs(3))),
                latency: Duration::from_secs(3),
            },
            None,
            "k0-2",
        );
        r.on_reply(
            SendReply {
                result: Err(SendError::Refused {
                    code: response::SYSTEM_BUSY,
                    remark: String::new(),
                }),
                latency: Duration::from_millis(1),
            },
            None,
            "k0-3",
        );
        let line = r.status_line("2024-01-01 00:00:00,000");
        assert!(
            line.starts_with("Current Time: 2024-01-01 00:00:00,000 | Send TPS: "),
            "{line}"
        );
        assert!(
            line.contains(
                "| Max RT(ms): 2 | Average RT(ms):   1.500 | Send Failed: 2 | Response Failed: 1 |"
            ),
            "{line}"
        );
        assert_eq!(r.acked(), 1);
        let f = r.finish();
        let done = f.complete_line(1.0);
        assert!(
            done.starts_with(
                "[Complete] Send Total: 4 | Send TPS: 1 | Max RT(ms): 2 | Average RT(ms):   1.500 |"
            ),
            "{done}"
        );
        let counts = (f.stats.msgs, f.stats.intended.len());
        assert_eq!((counts, f.send_failed, f.response_failed), ((1, 1), 2, 1));
        assert!(f.last_measured_ack.is_some());
        let errors: Vec<_> = f
            .stats
            .errors
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect();
        assert_eq!(
            errors,
            [
                ("FLUSH_DISK_TIMEOUT", 1),
                ("SYSTEM_BUSY", 1),
                ("TIMEOUT", 1)
            ]
        );
    }

    #[test]
    fn human_time_has_rocketmqs_shape() {
        let t = human_time();
        assert_eq!(t.len(), 23, "{t}");
        assert_eq!(&t[4..5], "-");
        assert_eq!(&t[19..20], ",");
    }
}
