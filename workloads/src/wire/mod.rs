//! `mqlab run --target rocketmq://HOST:PORT`: the run workload against any
//! remoting broker, found through its name server, instead of the
//! in-process store.
//!
//! The producers are the run's (`--producers`, `--msg-size`, `--rate`,
//! `--duration`/`--messages`, `--warmup`, `--keys`, `--topic`), with
//! their messages' keys, queues and bodies as in-process (key
//! `k<producer>-<seq>`, queue `(producer + seq) % queues`), but their sends
//! are asynchronous: `producers x inflight` sends in flight to each
//! broker of the topic's route, over `--connections` TCP connections to it
//! (`mqlab_client::tcp::pipelined`), not a thread each. With `--rate`,
//! each producer sends on a schedule of intended send times (open loop)
//! and latency is also recorded from the intended time (coordinated
//! omission corrected); a full sender delays the schedule, never skips it.
//!
//! Outputs are an in-process run's (summary.json, timeseries.csv,
//! ack_latency.hgrm, intended_latency.hgrm, command.txt) with errors by
//! response code (`SYSTEM_BUSY`, `FLUSH_DISK_TIMEOUT`, ..., `TIMEOUT`,
//! `CONNECTION`), plus, with consumers (`--consume true`, the default),
//! end-to-end latency (e2e_latency.hgrm, `e2e_latency_us`) and backlog over
//! time (messaging.csv), and the charts of both. The loss window, store
//! offsets and device baseline are the broker's business and stay empty
//! (and summary.json's `config.store` describes no store of the run).
//! `--ack-log` writes the client ack log (`topic,queue_id,queue_offset,
//! msg_id,key`) that `verify --acked` checks against the broker's store.
//! Every `--status-secs` a line as RocketMQ's benchmark producer prints
//! it (`Send TPS: ... | Max RT(ms): ... | Average RT(ms): ... | Send
//! Failed: ...`, plus p50/p99), and the consumers' line; or, with
//! `--status-format omb`, OpenMessaging Benchmark's line (`Pub rate ...
//! msg/s / ... MB/s | Pub err ... | Cons rate ... | Backlog: ... K | Pub
//! Latency (ms) avg: ...`), and OMB's `TestResult` fields in
//! omb-result.json and under `omb` in summary.json ([`omb`]).
//!
//! Bursts (a spec's `burst_on_ms`/`burst_off_ms`) work as in-process: the
//! phases count from the start of the run; with `--rate` the schedule of
//! intended send times moves out of each pause (no send is due in a
//! pause, so none is late because of it), without a rate the producers
//! wait for the next burst.
//!
//! Many load hosts: `--start-at TIME` waits (countdown on stderr) until
//! a wall-clock instant, so that several processes start together; each
//! writes, besides the outputs above, its histograms losslessly (`.hdr`)
//! and its counts by wall-clock second (series.json, [`series`]), which
//! `mqlab merge` ([`crate::merge`]) adds into one result.

mod consume;
pub mod omb;
mod record;
pub mod series;
pub mod start_at;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use mqlab_client::tcp::pipelined::{resolve_addr, PipelinedConfig, RoutedSender};
use mqlab_engine::message::PROPERTY_KEYS;
use mqlab_engine::Message;

use crate::messaging::Figures;
use crate::recorder::{LatencySummary, LossStats};
use crate::spec::{Overrides, SpecFile, Workload};
use crate::summary::{self, why_nothing_acked, LossWindowJson, RunConfig, Summary};
use crate::table::{csv_text, round3};
use crate::util::{self, MachineInfo, OutDir};
use crate::workload::{burst_adjust, expected_body, key_for, queue_for};
use consume::{Consumers, SENT_AT};
use record::{human_time, wall_us, ClientAckLog, Recorder};

/// Most sends in flight a `--target` run allows (producers x inflight).
pub const MAX_IN_FLIGHT: usize = 1 << 20;

/// The options of `run` that only a `--target` run has.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TargetArgs {
    /// Drive a RocketMQ remoting broker instead of the in-process store:
    /// `rocketmq://HOST:PORT` is its name server (e.g. `mqlab broker`'s
    /// embedded one, or Apache RocketMQ's). Same workload, spec and
    /// outputs (summary.json, .hgrm, timeseries.csv, charts), plus errors
    /// by response code, end-to-end latency and backlog from consumers in
    /// the same run; --ack-log writes the client ack log `verify --acked`
    /// takes. Sends are asynchronous: producers x inflight in flight to
    /// each broker (up to 1,048,576), not a thread each. The topic must exist
    /// (or the name server route TBW102, for a broker that creates topics
    /// at the first send). [default: in-process]
    #[arg(long, value_name = "URL")]
    pub target: Option<String>,
    /// --target: TCP connections to each broker. [default: 2]
    #[arg(long, value_name = "N")]
    pub connections: Option<usize>,
    /// --target: a send unanswered this long fails (TIMEOUT).
    /// [default: 3000, RocketMQ's sendMsgTimeout]
    #[arg(long, value_name = "MS")]
    pub send_timeout_ms: Option<u64>,
    /// --target: print RocketMQ's benchmark status line (Send TPS, Max
    /// RT, Average RT, Send Failed, p50/p99; or OMB's, see
    /// --status-format) every SECS; 0 = only the closing line.
    /// [default: 1]
    #[arg(long, value_name = "SECS")]
    pub status_secs: Option<f64>,
    /// --target: consume the run's messages (one pull loop per queue) to
    /// measure end-to-end latency (born to consumed) and backlog.
    /// [default: true]
    #[arg(long, value_name = "BOOL")]
    pub consume: Option<bool>,
    /// --target: the status line's style: `rocketmq` (RocketMQ's
    /// benchmark producer and consumer lines), `omb` (OpenMessaging
    /// Benchmark's `Pub rate ... | Backlog ... | Pub Latency (ms) ...`
    /// line and its closing aggregated line) or `both`.
    /// [default: rocketmq]
    #[arg(long, value_name = "STYLE")]
    pub status_format: Option<StatusFormat>,
    /// --target: start the workload at this wall-clock time, RFC 3339
    /// (2026-12-06T12:00:00Z) or unix seconds, waiting with a countdown on
    /// stderr; load hosts given the same time start together (`mqlab
    /// merge` adds their results). A time more than 2 s in the past is
    /// refused. [default: at once]
    #[arg(long, value_name = "TIME")]
    pub start_at: Option<String>,
}

/// The style of a `--target` run's status lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum StatusFormat {
    /// RocketMQ's benchmark producer and consumer lines.
    #[default]
    Rocketmq,
    /// OpenMessaging Benchmark's line.
    Omb,
    /// Both.
    Both,
}

impl TargetArgs {
    /// Fails when a `--target`-only option is given without `--target`.
    pub fn check_unused(&self) -> Result<()> {
        let given = [
            ("--connections", self.connections.is_some()),
            ("--send-timeout-ms", self.send_timeout_ms.is_some()),
            ("--status-secs", self.status_secs.is_some()),
            ("--consume", self.consume.is_some()),
            ("--status-format", self.status_format.is_some()),
            ("--start-at", self.start_at.is_some()),
        ];
        if let Some((flag, _)) = given.iter().find(|(_, g)| *g) {
            bail!("{flag} only applies to a run with --target");
        }
        Ok(())
    }
}

/// A `--target` run as `run` hands it over.
#[derive(Debug)]
pub struct TargetRun<'a> {
    /// The --target options.
    pub args: &'a TargetArgs,
    /// The spec (default: empty).
    pub spec: &'a SpecFile,
    /// Workload flags.
    pub overrides: &'a Overrides,
    /// --name.
    pub name: Option<&'a str>,
    /// --out.
    pub out: Option<&'a Path>,
    /// --ack-log.
    pub ack_log: Option<&'a Path>,
    /// --ack-log-unbuffered.
    pub ack_log_unbuffered: bool,
    /// The in-process-only options given (`--flush`, `--data-dir`, ...):
    /// refused.
    pub store_flags: Vec<&'static str>,
}

/// The name server address of a `rocketmq://HOST:PORT` target.
pub fn parse_target(url: &str) -> Result<SocketAddr> {
    let Some(rest) = url.strip_prefix("rocketmq://") else {
        bail!("--target {url:?}: expected rocketmq://HOST:PORT (the name server's address)");
    };
    let hostport = rest.trim_end_matches('/');
    if hostport.is_empty() || hostport.contains('/') || !hostport.contains(':') {
        bail!("--target {url:?}: expected rocketmq://HOST:PORT (the name server's address)");
    }
    resolve_addr(hostport).map_err(|e| anyhow::anyhow!("--target {url:?}: {e}"))
}

fn sleep_until(t: Instant, stop: &AtomicBool) {
    loop {
        let now = Instant::now();
        if now >= t || stop.load(Ordering::Relaxed) {
            return;
        }
        std::thread::sleep((t - now).min(Duration::from_millis(50)));
    }
}

struct Ctx {
    w: Workload,
    routed: RoutedSender,
    rec: Arc<Recorder>,
    start: Instant,
    deadline: Option<Instant>,
    stop: AtomicBool,
    issued: AtomicU64,
}

/// One producer: sends on its schedule until the duration, the message
/// count, Ctrl-C, or a broker that refuses everything.
fn producer(ctx: Arc<Ctx>, slot: u32) {
    let w = &ctx.w;
    let producers = w.producers as f64;
    let interval = (w.rate > 0.0).then(|| Duration::from_secs_f64(producers / w.rate));
    let mut next =
        ctx.start + interval.map_or(Duration::ZERO, |iv| iv.mul_f64(slot as f64 / producers));
    let queues = ctx.routed.queues().len() as u32;
    let mut msg = Message::new(w.topic.clone(), expected_body(slot, 0, w.msg_size));
    let burst = w.burst_on_ms.map(|on| (on, w.burst_off_ms.unwrap_or(0)));
    let mut seq = 0u64;
    loop {
        if ctx.stop.load(Ordering::Relaxed) || util::stopped() {
            break;
        }
        if ctx.rec.hopeless() {
            if !ctx.stop.swap(true, Ordering::SeqCst) {
                eprintln!(
                    "mqlab: 1000 sends in a row failed and none succeeded for 10 s: stopping"
                );
            }
            break;
        }
        if let Some(limit) = w.messages {
            if ctx.issued.fetch_add(1, Ordering::Relaxed) >= limit {
                break;
            }
        }
        if let Some((on, off)) = burst {
            // As in-process: rate-limited, the schedule moves out of the
            // pause; unlimited, the producer waits for the next burst.
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
        if ctx.deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        // The body as in-process (slot and sequence in bytes 0..12), with
        // the wall-clock send time in 12..20 for the consumers.
        msg.body[..4].copy_from_slice(&slot.to_le_bytes());
        msg.body[4..12].copy_from_slice(&seq.to_le_bytes());
        let now_us = wall_us();
        if let Some(b) = msg.body.get_mut(SENT_AT) {
            b.copy_from_slice(&now_us.to_le_bytes());
        }
        msg.born_timestamp_ms = (now_us / 1000) as i64;
        let key = if w.keys {
            let k = key_for(slot, seq);
            msg.properties.insert(PROPERTY_KEYS.to_string(), k.clone());
            k
        } else {
            String::new()
        };
        let rec = ctx.rec.clone();
        let index = queue_for(slot, seq, queues) as usize;
        ctx.routed.send(&mut msg, index, move |reply| {
            rec.on_reply(reply, intended, &key)
        });
        seq += 1;
    }
}

/// Samples of backlog over time (messaging.csv's columns).
pub fn backlog_csv(rows: &[(u64, u64, u64)]) -> String {
    csv_text(
        &[
            "t_ms",
            "produced",
            "consumed",
            "backlog",
            "consumer_queue",
            "retried",
            "dlq",
        ],
        rows.iter()
            .map(|&(t, p, c)| [t, p, c, p.saturating_sub(c), 0, 0, 0].map(|v| v.to_string())),
    )
}

/// `mqlab run --target URL`.
pub fn cmd_run(r: &TargetRun<'_>) -> Result<()> {
    execute(r).map(|_| ())
}

/// Runs a `--target` run, writes its outputs and prints its result;
/// returns its summary and output folder (`matrix`'s wire family calls
/// this).
pub fn execute(r: &TargetRun<'_>) -> Result<(Summary, PathBuf)> {
    let url = r.args.target.as_deref().unwrap_or_default();
    if let Some(flag) = r.store_flags.first() {
        bail!("{flag} describes the in-process store; a --target run drives the broker's own");
    }
    let o = r.overrides;
    let store_only = [
        ("--flush-interval-ms", o.flush_interval_ms.is_some()),
        ("--group-batch-writes", o.group_batch_writes.is_some()),
        ("--segment-bytes", o.segment_bytes.is_some()),
        ("--warm-segments", o.warm_segments.is_some()),
        ("--small-files", o.small_files),
        ("--sample-ms", o.sample_ms.is_some()),
    ];
    if let Some((flag, _)) = store_only.iter().find(|(_, g)| *g) {
        bail!("{flag} describes the in-process store; a --target run drives the broker's own");
    }
    if r.spec.messaging.is_some() {
        bail!("a [messaging] spec runs in-process; --target runs the plain run workload");
    }
    let namesrv = parse_target(url)?;
    // Checked before anything connects; checked again after connecting.
    let start_at = match &r.args.start_at {
        Some(t) => Some(start_at::check(t, wall_us())?),
        None => None,
    };
    let default_name = format!("target-{}-{}", namesrv.ip(), namesrv.port());
    let name = r
        .name
        .or(r.spec.name.as_deref())
        .unwrap_or(default_name.as_str());
    let mut w = Workload::resolve_within(r.spec, None, None, o, Some(name), MAX_IN_FLIGHT)
        .context("invalid workload")?;
    if o.timeseries_ms.or(r.spec.timeseries_ms).is_none() {
        // One recorder for all sends, not one per sender thread.
        let run = w
            .messages
            .is_none()
            .then_some(w.duration_secs + w.warmup_secs);
        w.timeseries_ms = crate::recorder::default_timeseries_ms(run, 1);
    }
    let connections = r.args.connections.unwrap_or(2);
    let timeout_ms = r.args.send_timeout_ms.unwrap_or(3000);
    let status_secs = r.args.status_secs.unwrap_or(1.0);
    let style = r.args.status_format.unwrap_or_default();
    if connections == 0 || connections > 64 {
        bail!("--connections must be between 1 and 64");
    }
    if timeout_ms == 0 {
        bail!("--send-timeout-ms must be > 0");
    }
    if !(status_secs >= 0.0 && status_secs.is_finite()) {
        bail!("--status-secs must be a number >= 0");
    }
    let out = match r.out {
        Some(p) => OutDir::given(p, "output folder")?,
        // As `run`'s default (results/<timestamp>-<name>).
        None => OutDir::unique(
            &PathBuf::from("results").join(format!("{}-{}", util::timestamp(), w.name)),
            "results folder",
        )?,
    };
    let label = format!("rocketmq://{namesrv}");
    let started_utc = util::timestamp();
    let machine = MachineInfo::collect(out.path());
    let t_open = Instant::now();
    let routed = RoutedSender::connect(
        namesrv,
        &w.topic,
        PipelinedConfig {
            producer_group: "mqlab-producer".into(),
            connections,
            max_in_flight: w.senders(),
            timeout: Duration::from_millis(timeout_ms),
            connect_timeout: Duration::from_secs(3),
            default_topic_queue_nums: w.queues.min(i32::MAX as u32) as i32,
        },
    )
    .with_context(|| format!("connect to the broker of topic {} via {label}", w.topic))?;
    let open_ms = t_open.elapsed().as_secs_f64() * 1000.0;
    let queues = routed.queues().len() as u32;
    if queues != w.queues {
        eprintln!(
            "mqlab: topic {} has {queues} writable queues{}: sending to those (--queues {} ignored)",
            w.topic,
            if routed.auto_create() {
                " (created at the first send)"
            } else {
                ""
            },
            w.queues
        );
        w.queues = queues;
    }
    let brokers = routed.senders().len();
    eprintln!(
        "mqlab: {label}: topic {} on {brokers} broker(s), {queues} queues, {connections} \
         connection(s) and up to {} sends in flight each",
        w.topic,
        w.senders()
    );
    let log = match r.ack_log {
        Some(p) => Some(ClientAckLog::create(p, r.ack_log_unbuffered)?),
        None => None,
    };
    let consume = r.args.consume.unwrap_or(true);
    let local = std::env::temp_dir();
    if let Some(at) = start_at {
        let late = wall_us().saturating_sub(at) as f64 / 1e6;
        if late > 0.0 {
            eprintln!(
                "mqlab: connecting took until {late:.3} s after --start-at {}: starting now",
                start_at::human(at)
            );
        }
    }
    // The consumers start before the wait: they read from where each queue
    // ends now, so every host's messages after the start are theirs too.
    let begin_wall_us = start_at.unwrap_or_else(wall_us).max(wall_us());
    let measure_from_wall_us = begin_wall_us + (w.warmup_secs * 1e6) as u64;
    let consumers = if consume {
        Some(Consumers::start(
            &w.topic,
            routed.queues(),
            measure_from_wall_us,
            &local,
        )?)
    } else {
        None
    };
    if let Some(at) = start_at {
        if !start_at::wait_until(at) {
            bail!("interrupted before --start-at");
        }
    }
    let start = Instant::now();
    let start_wall_us = wall_us();
    let measure_from = start + Duration::from_secs_f64(w.warmup_secs);
    let deadline = w
        .messages
        .is_none()
        .then(|| measure_from + Duration::from_secs_f64(w.duration_secs));
    let rec = Arc::new(Recorder::new(
        start,
        measure_from,
        w.timeseries_ms,
        w.msg_size,
        &w.topic,
        log,
    ));
    let ctx = Arc::new(Ctx {
        w: w.clone(),
        routed,
        rec: rec.clone(),
        start,
        deadline,
        stop: AtomicBool::new(false),
        issued: AtomicU64::new(0),
    });
    let producers: Vec<_> = (0..w.producers as u32)
        .map(|slot| {
            let c = ctx.clone();
            std::thread::Builder::new()
                .name(format!("mqlab-producer-{slot}"))
                .spawn(move || producer(c, slot))
                .context("spawn a producer thread")
        })
        .collect::<Result<_>>()?;
    // The monitor: status lines and backlog samples.
    let rows: Arc<Mutex<Vec<(u64, u64, u64)>>> = Arc::default();
    let monitor_stop = Arc::new(AtomicBool::new(false));
    let monitor = {
        let (rec, rows, stop) = (rec.clone(), rows.clone(), monitor_stop.clone());
        let cstats = consumers.as_ref().map(|c| c.stats.clone());
        let sample_every = Duration::from_millis(w.timeseries_ms.clamp(10, 1000));
        let status_every = (status_secs > 0.0).then(|| Duration::from_secs_f64(status_secs));
        std::thread::Builder::new()
            .name("mqlab-monitor".into())
            .spawn(move || {
                let consumed = |c: &Option<Arc<consume::ConsumeStats>>| {
                    c.as_ref().map_or(0, |c| c.consumed.load(Ordering::Relaxed))
                };
                let (mut next_sample, mut next_status) = (start, status_every.map(|s| start + s));
                let mut last_status = start;
                loop {
                    let done = stop.load(Ordering::Acquire);
                    let now = Instant::now();
                    if now >= next_sample || done {
                        let t_ms = now.saturating_duration_since(start).as_millis() as u64;
                        let row = (t_ms, rec.acked(), consumed(&cstats));
                        rows.lock().unwrap_or_else(|e| e.into_inner()).push(row);
                        while next_sample <= now {
                            next_sample += sample_every;
                        }
                    }
                    if done {
                        return;
                    }
                    if let (Some(at), Some(every)) = (next_status, status_every) {
                        if now >= at {
                            let t = human_time();
                            let secs = now.duration_since(last_status).as_secs_f64();
                            let backlog = rec.acked().saturating_sub(consumed(&cstats));
                            let sends = rec.take_interval();
                            let cw = cstats.as_ref().map(|c| c.take_window());
                            let mut text = String::new();
                            if style != StatusFormat::Omb {
                                text.push_str(&sends.rocketmq_line(&t));
                                text.push('\n');
                                if let (Some(c), Some(cw)) = (&cstats, &cw) {
                                    text.push_str(&c.status_line(cw, &t, secs, backlog));
                                    text.push('\n');
                                }
                            }
                            if style != StatusFormat::Rocketmq {
                                let ci = cw.as_ref().map_or(
                                    record::ConsumeInterval {
                                        backlog,
                                        ..Default::default()
                                    },
                                    |cw| cw.omb(backlog),
                                );
                                text.push_str(&sends.omb_line(&ci));
                                text.push('\n');
                            }
                            util::print_out(&text);
                            last_status = now;
                            next_status = Some(at + every);
                        }
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
            .context("spawn the monitor thread")?
    };
    for p in producers {
        let _ = p.join();
    }
    let issue_end = Instant::now();
    // Every send answered (or timed out).
    if !ctx
        .routed
        .wait_idle(Duration::from_millis(timeout_ms) + Duration::from_secs(5))
    {
        eprintln!(
            "mqlab: {} sends still unanswered after the timeout",
            ctx.routed.in_flight()
        );
    }
    // The consumers catch up with what was acknowledged (bounded).
    let mut e2e = None;
    if let Some(c) = consumers {
        let t = Instant::now();
        while c.consumed() < rec.acked()
            && t.elapsed() < Duration::from_secs(10)
            && !util::stopped()
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        if c.consumed() < rec.acked() {
            eprintln!(
                "mqlab: consumers read {} of {} acknowledged messages within 10 s",
                c.consumed(),
                rec.acked()
            );
        }
        let stats = c.stats.clone();
        let consumed_secs = start.elapsed().as_secs_f64();
        let (hist, series) = c.finish();
        e2e = Some((hist, series, stats, consumed_secs));
    }
    monitor_stop.store(true, Ordering::Release);
    let _ = monitor.join();
    ctx.routed.close();
    let mut finished = rec.finish();
    let (send_failed, response_failed) = (finished.send_failed, finished.response_failed);
    let measured_end = deadline
        .map_or(issue_end, |d| d.min(issue_end))
        .max(finished.last_measured_ack.unwrap_or(start));
    let measured_secs = measured_end
        .saturating_duration_since(measure_from)
        .as_secs_f64();
    let total_secs = measured_end.saturating_duration_since(start).as_secs_f64();
    let mut closing = finished.complete_line(measured_secs);
    closing.push('\n');
    if style != StatusFormat::Rocketmq {
        closing = format!(
            "{}{}\n",
            if style == StatusFormat::Both {
                closing.as_str()
            } else {
                ""
            },
            record::omb_aggregated_line(&finished.stats.ack, &finished.delay)
        );
    }
    util::print_out(&closing);
    let stats = &finished.stats;
    let acked_total: u64 = stats.seconds.iter().map(|b| b.msgs).sum();
    if acked_total == 0 {
        bail!(
            "{label}: no message was acknowledged: {}",
            why_nothing_acked(&stats.errors)
        );
    }
    let rows = std::mem::take(&mut *rows.lock().unwrap_or_else(|e| e.into_inner()));
    let figures = e2e.as_ref().map(|(hist, _, cs, secs)| {
        let consumed = cs.consumed.load(Ordering::Relaxed);
        let mut extra = std::collections::BTreeMap::new();
        extra.insert("send_failed".to_string(), send_failed as f64);
        extra.insert("response_failed".to_string(), response_failed as f64);
        extra.insert(
            "pull_failed".to_string(),
            cs.pull_errors.load(Ordering::Relaxed) as f64,
        );
        extra.insert("brokers".to_string(), brokers as f64);
        extra.insert("connections_per_broker".to_string(), connections as f64);
        target_figures(
            &label,
            (rec.acked(), consumed),
            round3(consumed as f64 / secs.max(1e-9)),
            hist,
            &rows,
            extra,
        )
    });
    let summary = target_summary(
        &w,
        RunFacts {
            label: label.clone(),
            started_utc,
            store: w.store_config(),
            open_ms: round3(open_ms),
            machine,
            interrupted: util::stopped(),
            messaging: figures,
        },
        stats,
        measured_secs,
    );
    // Counts by wall-clock second: the sends', plus the consumers'.
    if let Some((_, cseries, _, _)) = &e2e {
        finished.series.add(cseries)?;
    }
    let times = series::WallTimes {
        start_unix_us: start_wall_us,
        measure_from_unix_us: start_wall_us + (w.warmup_secs * 1e6) as u64,
        measured_end_unix_us: start_wall_us + (total_secs * 1e6) as u64,
    };
    let outputs = Outputs {
        summary: &summary,
        stats: &finished.stats,
        delay: &finished.delay,
        e2e: e2e.as_ref().map(|(h, _, _, _)| h),
        series: &finished.series,
        times,
        backlog: e2e.is_some().then(|| backlog_csv(&rows)),
        total_secs,
        extra: serde_json::Map::new(),
    };
    let dir = out.path().to_path_buf();
    let charts = write_outputs(&dir, &outputs)?;
    let out = out.keep();
    print_result(&summary, &charts, &out);
    Ok((summary, out))
}

/// The messaging figures of a `--target` run with consumers, or of a
/// merge of such runs: `counts` is (produced, consumed); `backlog_rows`
/// are (second, produced, consumed) as in messaging.csv.
pub fn target_figures(
    label: &str,
    counts: (u64, u64),
    consume_msgs_per_s: f64,
    e2e: &hdrhistogram::Histogram<u64>,
    backlog_rows: &[(u64, u64, u64)],
    extra: std::collections::BTreeMap<String, f64>,
) -> Figures {
    let (produced, consumed) = counts;
    Figures {
        experiment: "target".into(),
        variant: label.to_string(),
        produced,
        consumed,
        consumed_distinct: consumed,
        consume_msgs_per_s,
        e2e_latency_us: LatencySummary::of(e2e),
        backlog_max: backlog_rows
            .iter()
            .map(|&(_, p, c)| p.saturating_sub(c))
            .max()
            .unwrap_or(0),
        consumer_queue_max: 0,
        duplicates: 0,
        out_of_order: 0,
        dlq_messages: 0,
        retry_messages: 0,
        retried_e2e_latency_us: None,
        txn_resolution_ms: None,
        extra,
    }
}

/// What a `--target` run's summary takes from the run (or runs) itself
/// rather than from its workload and send statistics.
pub(crate) struct RunFacts {
    pub label: String,
    pub started_utc: String,
    pub store: mqlab_engine::config::StoreConfig,
    pub open_ms: f64,
    pub machine: MachineInfo,
    pub interrupted: bool,
    pub messaging: Option<Figures>,
}

/// summary.json of a `--target` run, or of a merge of them (`w` is then
/// the workload of all hosts together, `stats` their added statistics).
pub(crate) fn target_summary(
    w: &Workload,
    facts: RunFacts,
    stats: &crate::recorder::SenderStats,
    measured_secs: f64,
) -> Summary {
    let secs = measured_secs.max(1e-9);
    Summary {
        mqlab_version: env!("CARGO_PKG_VERSION").to_string(),
        name: w.name.clone(),
        label: facts.label,
        command: util::command_line(),
        started_utc: facts.started_utc,
        config: RunConfig {
            store: facts.store,
            workload: w.clone(),
        },
        duration_s: round3(measured_secs),
        messages_acked: stats.msgs,
        bytes_acked: stats.bytes,
        throughput_msgs_per_s: round3(stats.msgs as f64 / secs),
        throughput_mib_per_s: round3(stats.bytes as f64 / secs / (1024.0 * 1024.0)),
        ack_latency_us: LatencySummary::of(&stats.ack),
        intended_latency_us: (w.rate > 0.0).then(|| LatencySummary::of(&stats.intended)),
        loss_window: LossWindowJson::default(),
        errors: stats.errors.clone(),
        offsets_end: Default::default(),
        open_ms: facts.open_ms,
        shutdown_ms: None,
        baseline: None,
        ratios: None,
        machine: facts.machine,
        interrupted: facts.interrupted,
        messaging: facts.messaging,
    }
}

/// Everything a `--target` run (or a merge of them) writes.
pub struct Outputs<'a> {
    /// summary.json (the `omb` object is added).
    pub summary: &'a Summary,
    /// Latencies, errors and the time series by run time.
    pub stats: &'a crate::recorder::SenderStats,
    /// Publish delay, µs.
    pub delay: &'a hdrhistogram::Histogram<u64>,
    /// End-to-end latency, µs (with consumers).
    pub e2e: Option<&'a hdrhistogram::Histogram<u64>>,
    /// Counts by wall-clock second.
    pub series: &'a series::WallSeries,
    /// Wall-clock times.
    pub times: series::WallTimes,
    /// messaging.csv (with consumers).
    pub backlog: Option<String>,
    /// Seconds from the start to the end of the measurement.
    pub total_secs: f64,
    /// More top-level fields of summary.json.
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// Writes a `--target` run's outputs into `dir`: summary.json (with
/// `omb`), omb-result.json, timeseries.csv, series.json, the `.hgrm`
/// and `.hdr` histograms, messaging.csv, command.txt and the charts;
/// returns the charts' file names.
pub fn write_outputs(dir: &Path, o: &Outputs<'_>) -> Result<Vec<String>> {
    let s = o.summary;
    let omb = omb::result(&omb::OmbInputs {
        workload: &s.config.workload,
        driver: &s.label,
        consumers: o.e2e.is_some(),
        series: o.series,
        times: o.times,
        publish: &o.stats.ack,
        delay: o.delay,
        e2e: o.e2e,
    });
    let omb_json = serde_json::to_value(&omb).context("omb-result.json")?;
    let mut extra = o.extra.clone();
    extra.insert("omb".into(), omb_json.clone());
    summary::write_run_outputs_with(dir, s, o.stats, &LossStats::default(), o.total_secs, extra)
        .with_context(|| format!("write the run's results into {}", dir.display()))?;
    util::write_json(&dir.join(omb::OMB_FILE), &omb_json)?;
    series::write(dir, o.series, o.times)?;
    if s.config.workload.rate > 0.0 {
        write(&dir.join("publish_delay.hgrm"), summary::hgrm_text(o.delay))?;
        write(&dir.join("publish_delay.hdr"), summary::hdr_text(o.delay))?;
    }
    if let Some(h) = o.e2e {
        write(&dir.join("e2e_latency.hgrm"), summary::hgrm_text(h))?;
        write(&dir.join("e2e_latency.hdr"), summary::hdr_text(h))?;
    }
    if let Some(csv) = &o.backlog {
        write(&dir.join("messaging.csv"), csv.clone())?;
    }
    Ok(
        match crate::messaging::plot::draw(&[dir.to_path_buf()], dir) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("mqlab: drawing the charts: {e:#}");
                Vec::new()
            }
        },
    )
}

fn write(path: &Path, text: String) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))
}

/// Prints a run's (or a merge's) result: throughput, latencies, errors,
/// charts and the folder.
pub fn print_result(s: &Summary, charts: &[String], out: &Path) {
    let l = &s.ack_latency_us;
    let mut text = format!(
        "{}: {} msgs/s, {:.1} MiB/s, send latency p50 {} µs, p99 {} µs, max {} µs",
        s.label,
        util::thousands(s.throughput_msgs_per_s),
        s.throughput_mib_per_s,
        util::thousands(l.p50 as f64),
        util::thousands(l.p99 as f64),
        util::thousands(l.max as f64),
    );
    if let Some(i) = &s.intended_latency_us {
        text.push_str(&format!(
            "; from intended send time p50 {} µs, p99 {} µs",
            util::thousands(i.p50 as f64),
            util::thousands(i.p99 as f64)
        ));
    }
    text.push('\n');
    if let Some(f) = &s.messaging {
        let e = &f.e2e_latency_us;
        text.push_str(&format!(
            "consumed {} of {} acknowledged; end-to-end p50 {} µs, p99 {} µs; backlog max {}\n",
            f.consumed,
            f.produced,
            util::thousands(e.p50 as f64),
            util::thousands(e.p99 as f64),
            f.backlog_max
        ));
    }
    if !s.errors.is_empty() {
        text.push_str(&format!("send errors by code: {:?}\n", s.errors));
    }
    if s.interrupted {
        text.push_str("(interrupted by Ctrl-C; results cover the time run)\n");
    }
    for c in charts {
        text.push_str(&format!("chart: {}\n", out.join(c).display()));
    }
    text.push_str(&format!("results: {}\n", out.display()));
    util::print_out(&text);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        assert_eq!(
            parse_target("rocketmq://127.0.0.1:9876").unwrap(),
            "127.0.0.1:9876".parse().unwrap()
        );
        assert!(parse_target("rocketmq://127.0.0.1:9876/").is_ok());
        for bad in [
            "127.0.0.1:9876",
            "http://127.0.0.1:9876",
            "rocketmq://",
            "rocketmq://127.0.0.1",
            "rocketmq://127.0.0.1:9876/x",
        ] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn backlog_rows_subtract() {
        let csv = backlog_csv(&[(0, 0, 0), (100, 10, 4), (200, 10, 12)]);
        let lines: Vec<_> = csv.lines().collect();
        assert_eq!(
            lines[0],
            "t_ms,produced,consumed,backlog,consumer_queue,retried,dlq"
        );
        assert_eq!(lines[2], "100,10,4,6,0,0,0");
        assert_eq!(lines[3], "200,10,12,0,0,0,0");
    }
}
