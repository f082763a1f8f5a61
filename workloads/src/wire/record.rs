//! What a `--target` run records from its sends' answers (which arrive on
//! the sender's reader threads): the ack and intended latencies and time
//! series ([`SenderStats`], as an in-process run), errors by response
//! code, counts by wall-clock second (series.json, what `mqlab merge`
//! adds up), the client ack log, and the counters of the status lines:
//! RocketMQ's benchmark producer's and OpenMessaging Benchmark's.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use mqlab_client::tcp::pipelined::{response_name, SendError, SendReply};

use super::series::WallSeries;
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

/// The counters of the status lines since the last one.
struct Window {
    since: Instant,
    ok: u64,
    bytes: u64,
    errors: u64,
    rt_sum_us: u64,
    rt: Histogram<u64>,
    /// Intended send time to the send, µs (rate-limited runs).
    delay: Histogram<u64>,
}

impl Window {
    fn new(now: Instant) -> Window {
        Window {
            since: now,
            ok: 0,
            bytes: 0,
            errors: 0,
            rt_sum_us: 0,
            rt: latency_hist(),
            delay: latency_hist(),
        }
    }
}

/// One status interval: what the status lines print.
pub struct Interval {
    /// Its length, s.
    pub secs: f64,
    /// SEND_OK answers.
    pub ok: u64,
    /// Their body bytes.
    pub bytes: u64,
    /// Failed sends.
    pub errors: u64,
    rt_sum_us: u64,
    /// Send latency, µs.
    pub rt: Histogram<u64>,
    /// Publish delay (intended send time to the send), µs.
    pub delay: Histogram<u64>,
    /// Largest send RT of the run so far, µs.
    pub max_rt_us: u64,
    /// Failed sends of the run so far.
    pub send_failed: u64,
    /// Non-SEND_OK answers of the run so far.
    pub response_failed: u64,
}

/// What the consumers did over a status interval (OMB's line).
#[derive(Debug, Clone, Copy, Default)]
pub struct ConsumeInterval {
    /// Messages consumed.
    pub msgs: u64,
    /// Their body bytes.
    pub bytes: u64,
    /// Acknowledged minus consumed now.
    pub backlog: u64,
}

fn quantile_or_zero(h: &Histogram<u64>, q: f64) -> u64 {
    if h.is_empty() {
        0
    } else {
        h.value_at_quantile(q)
    }
}

fn mean_or_zero(h: &Histogram<u64>) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        h.mean()
    }
}

impl Interval {
    /// RocketMQ's benchmark producer line (Send TPS, Average RT, p50/p99
    /// over the interval; run-wide Max RT and failure counts).
    pub fn rocketmq_line(&self, now_wall: &str) -> String {
        let secs = self.secs.max(1e-9);
        let avg_ms = if self.ok > 0 {
            self.rt_sum_us as f64 / self.ok as f64 / 1000.0
        } else {
            0.0
        };
        let q = |p: f64| quantile_or_zero(&self.rt, p) as f64 / 1000.0;
        format!(
            "Current Time: {now_wall} | Send TPS: {} | Max RT(ms): {} | Average RT(ms): {avg_ms:7.3} \
             | Send Failed: {} | Response Failed: {} | RT p50(ms): {:.3} | RT p99(ms): {:.3}",
            (self.ok as f64 / secs) as u64,
            self.max_rt_us.div_ceil(1000),
            self.send_failed,
            self.response_failed,
            q(0.5),
            q(0.99),
        )
    }

    /// OpenMessaging Benchmark's periodic line (WorkloadGenerator's
    /// `Pub rate ... | Pub Delay Latency (us) ...`), over the interval;
    /// numbers as OMB formats them (one decimal, padded to 7 for rates,
    /// 4 for the rest).
    pub fn omb_line(&self, cons: &ConsumeInterval) -> String {
        let secs = self.secs.max(1e-9);
        let mb = |b: u64| b as f64 / secs / 1024.0 / 1024.0;
        let ms = |us: u64| us as f64 / 1000.0;
        let (rt, d) = (&self.rt, &self.delay);
        format!(
            "Pub rate {:7.1} msg/s / {:4.1} MB/s | Pub err {:7.1} err/s | Cons rate {:7.1} msg/s / \
             {:4.1} MB/s | Backlog: {:4.1} K | Pub Latency (ms) avg: {:4.1} - 50%: {:4.1} - 99%: \
             {:4.1} - 99.9%: {:4.1} - Max: {:4.1} | Pub Delay Latency (us) avg: {:4.1} - 50%: \
             {:4.1} - 99%: {:4.1} - 99.9%: {:4.1} - Max: {:4.1}",
            self.ok as f64 / secs,
            mb(self.bytes),
            self.errors as f64 / secs,
            cons.msgs as f64 / secs,
            mb(cons.bytes),
            cons.backlog as f64 / 1000.0,
            mean_or_zero(rt) / 1000.0,
            ms(quantile_or_zero(rt, 0.5)),
            ms(quantile_or_zero(rt, 0.99)),
            ms(quantile_or_zero(rt, 0.999)),
            ms(if rt.is_empty() { 0 } else { rt.max() }),
            mean_or_zero(d),
            quantile_or_zero(d, 0.5) as f64,
            quantile_or_zero(d, 0.99) as f64,
            quantile_or_zero(d, 0.999) as f64,
            if d.is_empty() { 0 } else { d.max() } as f64,
        )
    }
}

struct Inner {
    stats: SenderStats,
    /// Counts by wall-clock second (series.json).
    series: WallSeries,
    /// Publish delay after the warmup, µs (rate-limited runs).
    delay: Histogram<u64>,
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
                series: WallSeries::default(),
                delay: latency_hist(),
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
        let wall = wall_us();
        let bucket =
            (t1.saturating_duration_since(self.start).as_millis() as u64 / self.bucket_ms) as usize;
        let measured = t1 >= self.measure_from;
        let lat_us = reply.latency.as_micros() as u64;
        let mut g = self.lock();
        g.done += 1;
        match reply.result {
            Ok(sent) if sent.is_ok() => {
                let int = intended.map(|t| t1.saturating_duration_since(t).as_micros() as u64);
                // OMB's publish delay: intended send time to the send.
                let delay = int.map(|i| i.saturating_sub(lat_us));
                g.stats
                    .record_ack(bucket, measured, lat_us, int, self.msg_size);
                g.series.record_ack(wall, lat_us, self.msg_size);
                if measured {
                    g.last_measured_ack = Some(t1);
                    if let Some(d) = delay {
                        g.delay.saturating_record(d.max(1));
                    }
                }
                g.window.ok += 1;
                g.window.bytes += self.msg_size;
                g.window.rt_sum_us += lat_us;
                g.window.rt.saturating_record(lat_us.max(1));
                if let Some(d) = delay {
                    g.window.delay.saturating_record(d.max(1));
                }
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
                g.series.record_error(wall);
                g.window.errors += 1;
                g.response_failed += 1;
                drop(g);
                self.failures_in_a_row.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                g.stats.record_error(bucket, &e.kind());
                g.series.record_error(wall);
                g.window.errors += 1;
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

    /// The interval since the last call (or the start); starts the next.
    pub fn take_interval(&self) -> Interval {
        let now = Instant::now();
        let mut g = self.lock();
        let w = std::mem::replace(&mut g.window, Window::new(now));
        Interval {
            secs: now.saturating_duration_since(w.since).as_secs_f64(),
            ok: w.ok,
            bytes: w.bytes,
            errors: w.errors,
            rt_sum_us: w.rt_sum_us,
            rt: w.rt,
            delay: w.delay,
            max_rt_us: g.max_rt_us,
            send_failed: g.send_failed,
            response_failed: g.response_failed,
        }
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
            series: std::mem::take(&mut g.series),
            delay: std::mem::replace(&mut g.delay, latency_hist()),
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
    /// Counts by wall-clock second.
    pub series: WallSeries,
    /// Publish delay after the warmup (intended send time to the send), µs.
    pub delay: Histogram<u64>,
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

/// OMB's closing line (`----- Aggregated Pub Latency (ms) avg: ... | Pub
/// Delay (us)  avg: ...`) over the measured run.
pub fn omb_aggregated_line(ack: &Histogram<u64>, delay: &Histogram<u64>) -> String {
    let ms = |h: &Histogram<u64>, q: f64| quantile_or_zero(h, q) as f64 / 1000.0;
    let us = |h: &Histogram<u64>, q: f64| quantile_or_zero(h, q) as f64;
    format!(
        "----- Aggregated Pub Latency (ms) avg: {:4.1} - 50%: {:4.1} - 95%: {:4.1} - 99%: {:4.1} \
         - 99.9%: {:4.1} - 99.99%: {:4.1} - Max: {:4.1} | Pub Delay (us)  avg: {:4.1} - 50%: {:4.1} \
         - 95%: {:4.1} - 99%: {:4.1} - 99.9%: {:4.1} - 99.99%: {:4.1} - Max: {:4.1}",
        mean_or_zero(ack) / 1000.0,
        ms(ack, 0.5),
        ms(ack, 0.95),
        ms(ack, 0.99),
        ms(ack, 0.999),
        ms(ack, 0.9999),
        ms(ack, 1.0),
        mean_or_zero(delay),
        us(delay, 0.5),
        us(delay, 0.95),
        us(delay, 0.99),
        us(delay, 0.999),
        us(delay, 0.9999),
        us(delay, 1.0),
    )
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
        let line = r.take_interval().rocketmq_line("2024-01-01 00:00:00,000");
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
    fn omb_lines_have_ombs_shape() {
        let start = Instant::now();
        let r = Recorder::new(start, start, 100, 1024, "T", None);
        r.on_reply(ok(response::SUCCESS), Some(start), "k0-0");
        r.on_reply(
            SendReply {
                result: Err(SendError::Timeout(Duration::from_secs(3))),
                latency: Duration::from_secs(3),
            },
            None,
            "k0-1",
        );
        let mut i = r.take_interval();
        // A fixed interval, so the rates are known.
        i.secs = 0.5;
        let line = i.omb_line(&ConsumeInterval {
            msgs: 1,
            bytes: 1024,
            backlog: 2500,
        });
        assert!(
            line.starts_with(
                "Pub rate     2.0 msg/s /  0.0 MB/s | Pub err     2.0 err/s | Cons rate     2.0 \
                 msg/s /  0.0 MB/s | Backlog:  2.5 K | Pub Latency (ms) avg:  1.5 - 50%:  1.5 - \
                 99%:  1.5 - 99.9%:  1.5 - Max:  1.5 | Pub Delay Latency (us) avg: "
            ),
            "{line}"
        );
        // The next interval starts empty.
        let next = r.take_interval();
        assert_eq!((next.ok, next.errors), (0, 0));
        let f = r.finish();
        assert_eq!(f.series.totals(), (1, 1024, 1, 0));
        assert_eq!(f.delay.len(), 1);
        let agg = omb_aggregated_line(&f.stats.ack, &f.delay);
        assert!(
            agg.starts_with("----- Aggregated Pub Latency (ms) avg:  1.5 - 50%:  1.5 - 95%:  1.5"),
            "{agg}"
        );
        assert!(agg.contains(" | Pub Delay (us)  avg: "), "{agg}");
    }

    #[test]
    fn human_time_has_rocketmqs_shape() {
        let t = human_time();
        assert_eq!(t.len(), 23, "{t}");
        assert_eq!(&t[4..5], "-");
        assert_eq!(&t[19..20], ",");
    }
}
