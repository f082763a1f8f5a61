//! Messaging experiments: `mqlab run --spec FILE` with a `[messaging]`
//! table runs one of them, each variant on its own fresh store, and writes
//! one run folder per variant (summary.json with the messaging figures,
//! timeseries.csv and ack_latency.hgrm of the producers, messaging.csv of
//! backlog and consumer queue over time, e2e_latency.hgrm) plus charts.
//!
//! | experiment | variants | question |
//! |---|---|---|
//! | peak-shaving | push, pull | bursty producers against a consumer with a fixed rate: backlog, consumer-side queue, end-to-end latency |
//! | ordered | concurrent, orderly, orderly-no-pq-lock | what the three locks cost, and the duplicates the process-queue lock prevents while members come and go |
//! | transactions | plain, txn, txn-unanswered | half + commit vs plain send; resolution latency when some producers never answer |
//! | retry | fail percentages | retry traffic, DLQ arrivals, latency of retried messages |
//! | broadcast | clustering, broadcasting | fan-out cost |
//!
//! Every message body carries (key, step, send time in µs since the run
//! started), so consumers measure end-to-end latency, duplicates and order
//! without a side table of what was sent.

mod broadcast;
mod ordered;
mod peak;
pub mod plot;
mod retry;
mod txn;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use mqlab_broker::{Broker, BrokerConfig};
use mqlab_client::producer::Producer;
use mqlab_engine::clock;
use mqlab_engine::Message;
use mqlab_engine::{PutStatus, Store};
use serde::{Deserialize, Serialize};

use crate::cli::RunArgs;
use crate::recorder::{latency_hist, LatencySummary, LossStats, SenderStats};
use crate::spec::{SpecFile, Workload};
pub(crate) use crate::summary::round3;
use crate::summary::{self, LossWindowJson, RunConfig, Summary};
use crate::util::{self, MachineInfo};

/// The experiments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Experiment {
    /// Bursty producer, fixed-rate consumer: push vs pull.
    PeakShaving,
    /// Ordered vs concurrent consumption under membership churn.
    Ordered,
    /// Transactional vs plain sends, and check-back resolution.
    Transactions,
    /// A consumer failing a share of deliveries.
    Retry,
    /// Broadcasting vs clustering.
    Broadcast,
}

impl Experiment {
    fn name(self) -> &'static str {
        match self {
            Experiment::PeakShaving => "peak-shaving",
            Experiment::Ordered => "ordered",
            Experiment::Transactions => "transactions",
            Experiment::Retry => "retry",
            Experiment::Broadcast => "broadcast",
        }
    }

    fn default_variants(self) -> Vec<String> {
        let v: &[&str] = match self {
            Experiment::PeakShaving => &["push", "pull"],
            Experiment::Ordered => &["concurrent", "orderly", "orderly-no-pq-lock"],
            Experiment::Transactions => &["plain", "txn", "txn-unanswered"],
            Experiment::Retry => &["fail-10"],
            Experiment::Broadcast => &["clustering", "broadcasting"],
        };
        v.iter().map(|s| s.to_string()).collect()
    }
}

/// The `[messaging]` table of a spec file. Unset values take the defaults
/// named on each field.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MessagingSpec {
    /// Which experiment.
    pub experiment: Option<Experiment>,
    /// Variants to run, each on a fresh store. Default: all of the
    /// experiment's.
    pub variants: Option<Vec<String>>,
    /// Consumers in the group. Default 1 (peak-shaving), 3 (others).
    pub consumers: Option<usize>,
    /// Peak shaving: messages per second the consumer processes. Default
    /// 2,000.
    pub consume_rate: Option<f64>,
    /// Processing time per message, µs. Default 0 (peak-shaving: set by
    /// consume_rate; ordered: 200).
    pub process_us: Option<u64>,
    /// Push consumer flow control: cached messages per queue. Default 1,000.
    pub pull_threshold: Option<usize>,
    /// Ordered: sharding keys. Default 64.
    pub keys: Option<u32>,
    /// Ordered: a member leaves and a new one joins this often, ms.
    /// Default 1,000.
    pub churn_ms: Option<u64>,
    /// Ordered: messages stored before the members start, to measure how
    /// fast each variant drains them (`extra.drain_msgs_per_s`); 0 skips.
    /// Default 20,000.
    pub capacity_messages: Option<u64>,
    /// Retry: share of deliveries the consumer fails, percent. Overrides
    /// the `fail-N` variant names. Default from the variant.
    pub fail_percent: Option<f64>,
    /// Retry: reconsumes before the DLQ. Default 16.
    pub max_reconsume: Option<u32>,
    /// Retry: delay levels, RocketMQ syntax ("10ms 50ms 100ms ..."). Default
    /// RocketMQ's levels divided by 100 (level 3 = 100 ms), so a run sees
    /// many retry rounds.
    pub retry_levels: Option<String>,
    /// Transactions: share of transactions whose local outcome is UNKNOWN,
    /// resolved by check-back, percent. Default 10.
    pub unknown_percent: Option<f64>,
    /// Transactions (txn-unanswered): share of those whose producer never
    /// answers checks, percent. Default 50.
    pub unanswered_percent: Option<f64>,
    /// Transactions: check service period, ms. Default 500.
    pub check_interval_ms: Option<u64>,
    /// Transactions: age before a half message is checked, ms. Default 300.
    pub txn_timeout_ms: Option<u64>,
    /// Transactions: checks before a discard. Default 5.
    pub check_max: Option<u32>,
    /// Longest wait for consumers to drain after producers stop, s.
    /// Default 30.
    pub drain_secs: Option<f64>,
    /// Backlog sampling period, ms. Default 50.
    pub sample_ms: Option<u64>,
    /// Seed of the failure/outcome choices. Default 1.
    pub seed: Option<u64>,
}

/// The figures a messaging run adds to summary.json (top level).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Figures {
    /// Experiment name.
    pub experiment: String,
    /// Variant name.
    pub variant: String,
    /// Messages sent and acknowledged.
    pub produced: u64,
    /// Deliveries handed to listeners (duplicates and retries included).
    pub consumed: u64,
    /// Distinct messages consumed successfully.
    pub consumed_distinct: u64,
    /// Deliveries per second over the run.
    pub consume_msgs_per_s: f64,
    /// Send to first successful consumption, µs.
    pub e2e_latency_us: LatencySummary,
    /// Largest backlog (messages not consumed by the group) sampled.
    pub backlog_max: u64,
    /// Largest consumer-side queue (messages cached, not consumed yet).
    pub consumer_queue_max: u64,
    /// Deliveries of a message already consumed.
    pub duplicates: u64,
    /// First deliveries of a key's step after a later step of that key.
    pub out_of_order: u64,
    /// Messages in the dead-letter queue at the end.
    pub dlq_messages: u64,
    /// Messages sent back for a retry.
    pub retry_messages: u64,
    /// Retried messages: send to final successful consumption, µs.
    pub retried_e2e_latency_us: Option<LatencySummary>,
    /// Transactions: send to resolution (commit visible or discard), ms.
    pub txn_resolution_ms: Option<LatencySummary>,
    /// Anything else the experiment measured.
    pub extra: BTreeMap<String, f64>,
}

/// Body layout: key u32, step u64, send time µs u64 (little-endian), then
/// padding to the message size.
pub fn body(key: u32, step: u64, sent_us: u64, size: usize) -> Vec<u8> {
    let mut b = vec![0u8; size.max(20)];
    b[..4].copy_from_slice(&key.to_le_bytes());
    b[4..12].copy_from_slice(&step.to_le_bytes());
    b[12..20].copy_from_slice(&sent_us.to_le_bytes());
    b
}

/// (key, step, send time µs) of a body.
pub fn parse_body(b: &[u8]) -> Option<(u32, u64, u64)> {
    if b.len() < 20 {
        return None;
    }
    Some((
        u32::from_le_bytes(b[..4].try_into().ok()?),
        u64::from_le_bytes(b[4..12].try_into().ok()?),
        u64::from_le_bytes(b[12..20].try_into().ok()?),
    ))
}

/// What consumers saw.
pub struct Tracker {
    start: Instant,
    e2e: Mutex<Histogram<u64>>,
    retried: Mutex<Histogram<u64>>,
    seen: Mutex<HashSet<(u32, u64)>>,
    last: Mutex<HashMap<u32, u64>>,
    /// Deliveries.
    pub consumed: AtomicU64,
    /// Deliveries of something already consumed.
    pub duplicates: AtomicU64,
    /// Steps consumed after a later step of their key.
    pub out_of_order: AtomicU64,
}

impl Tracker {
    /// A tracker whose clock starts at `start`.
    pub fn new(start: Instant) -> Tracker {
        Tracker {
            start,
            e2e: Mutex::new(latency_hist()),
            retried: Mutex::new(latency_hist()),
            seen: Mutex::new(HashSet::new()),
            last: Mutex::new(HashMap::new()),
            consumed: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            out_of_order: AtomicU64::new(0),
        }
    }

    /// µs since the run started.
    pub fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    /// Counts a delivery without judging it (a failed attempt).
    pub fn delivery(&self) {
        self.consumed.fetch_add(1, Ordering::Relaxed);
    }

    /// A successful consumption of `body`; `reconsumed` when it came
    /// through the retry topic.
    pub fn success(&self, body: &[u8], reconsumed: bool) {
        let Some((key, step, sent)) = parse_body(body) else {
            return;
        };
        if !self.seen.lock().unwrap().insert((key, step)) {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let lat = self.now_us().saturating_sub(sent).max(1);
        self.e2e.lock().unwrap().saturating_record(lat);
        if reconsumed {
            self.retried.lock().unwrap().saturating_record(lat);
        }
        let mut last = self.last.lock().unwrap();
        let e = last.entry(key).or_insert(step);
        if step < *e {
            self.out_of_order.fetch_add(1, Ordering::Relaxed);
        } else {
            *e = step;
        }
    }

    /// Distinct messages consumed.
    pub fn distinct(&self) -> u64 {
        self.seen.lock().unwrap().len() as u64
    }
}

/// One sample of messaging.csv.
#[derive(Debug, Clone, Copy, Default)]
pub struct Row {
    /// ms since the run started.
    pub t_ms: u64,
    /// Acknowledged sends so far.
    pub produced: u64,
    /// Deliveries so far.
    pub consumed: u64,
    /// Messages not consumed by the group.
    pub backlog: u64,
    /// Messages cached by consumers, not consumed yet.
    pub consumer_queue: u64,
    /// Messages sent back for a retry so far.
    pub retried: u64,
    /// Messages in the DLQ.
    pub dlq: u64,
}

/// messaging.csv text.
pub fn rows_csv(rows: &[Row]) -> String {
    let mut s = String::from("t_ms,produced,consumed,backlog,consumer_queue,retried,dlq\n");
    for r in rows {
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{}",
            r.t_ms, r.produced, r.consumed, r.backlog, r.consumer_queue, r.retried, r.dlq
        );
    }
    s
}

/// Samples `f` every `period` on a thread until stopped.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<Vec<Row>>,
}

impl Sampler {
    /// Starts sampling.
    pub fn start(period: Duration, mut f: impl FnMut() -> Row + Send + 'static) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut rows = Vec::new();
            while !s.load(Ordering::Acquire) {
                rows.push(f());
                std::thread::sleep(period);
            }
            rows.push(f());
            rows
        });
        Sampler { stop, handle }
    }

    /// Stops and returns the samples.
    pub fn finish(self) -> Vec<Row> {
        self.stop.store(true, Ordering::Release);
        self.handle.join().unwrap_or_default()
    }
}

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

/// A fresh store and broker for one variant.
pub struct Lab {
    /// The store.
    pub store: Arc<Store>,
    /// The broker.
    pub broker: Arc<Broker>,
    /// When the variant started.
    pub start: Instant,
    _scratch: Option<tempfile::TempDir>,
}

impl Lab {
    fn open(w: &Workload, bcfg: BrokerConfig, parent: &Path) -> Result<Lab> {
        let scratch = util::scratch_dir(parent, "mqlab-messaging-")?;
        let store = Arc::new(
            Store::open(scratch.path(), w.store_config())
                .with_context(|| format!("opening a store in {}", scratch.path().display()))?,
        );
        let broker = Broker::open(store.clone(), bcfg, clock::system())?;
        Ok(Lab {
            store,
            broker,
            start: Instant::now(),
            _scratch: Some(scratch),
        })
    }

    /// Ends a variant: the producers' statistics with the total run time
    /// and the store's end offsets, then a clean [`Lab::close`].
    pub fn finish(self, stats: SenderStats, produce_secs: f64) -> Result<Produced> {
        let total_secs = self.start.elapsed().as_secs_f64();
        let offsets_end = self.store.offsets();
        self.close()?;
        Ok(Produced {
            stats,
            produce_secs,
            total_secs,
            offsets_end,
        })
    }

    /// Shuts broker and store down cleanly (waits for other holders to let
    /// go, at most 10 s).
    pub fn close(self) -> Result<()> {
        self.broker.shutdown()?;
        let mut broker = Some(self.broker);
        let mut store = self.store;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(b) = broker.take() {
                if let Err(b) = Arc::try_unwrap(b) {
                    broker = Some(b);
                }
            }
            if broker.is_none() {
                match Arc::try_unwrap(store) {
                    Ok(s) => {
                        let what = crate::run::durable_message("messaging store", s.offsets());
                        return Ok(crate::run::show_slow_wait(
                            crate::run::SLOW_WAIT,
                            &what,
                            || s.shutdown(),
                        )?);
                    }
                    Err(s) => store = s,
                }
            }
            if Instant::now() > deadline {
                bail!("broker or store still in use at the end of the run");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Waits until `done` or `secs` pass; false on timeout.
pub fn wait_until(secs: f64, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    while !done() {
        if Instant::now() > deadline || util::stopped() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// Everything a variant runner needs.
pub struct Ctx<'a> {
    /// The resolved workload (producers, rate, size, queues, duration).
    pub w: &'a Workload,
    /// The messaging table.
    pub m: &'a MessagingSpec,
    /// Where scratch stores go.
    pub parent: &'a Path,
}

impl Ctx<'_> {
    /// The broker settings every variant starts from: offsets flushed
    /// every second, RocketMQ's other defaults.
    pub fn broker_config(&self) -> BrokerConfig {
        BrokerConfig {
            offset_flush_interval_ms: 1_000,
            ..BrokerConfig::default()
        }
    }

    /// Opens a fresh lab.
    pub fn lab(&self, bcfg: BrokerConfig) -> Result<Lab> {
        Lab::open(self.w, bcfg, self.parent)
    }

    /// The producers' plan from the workload.
    pub fn plan(&self) -> Plan {
        Plan {
            threads: self.w.producers.max(1),
            rate: self.w.rate,
            duration: Duration::from_secs_f64(self.w.duration_secs),
            burst: self
                .w
                .burst_on_ms
                .map(|on| (on, self.w.burst_off_ms.unwrap_or(0))),
        }
    }

    /// Backlog sampling period.
    pub fn sample(&self) -> Duration {
        Duration::from_millis(self.m.sample_ms.unwrap_or(50).max(1))
    }

    /// Longest drain.
    pub fn drain_secs(&self) -> f64 {
        self.m.drain_secs.unwrap_or(30.0)
    }
}

/// The producing side of a variant, and how long it all took.
pub struct Produced {
    /// Producer ack statistics.
    pub stats: SenderStats,
    /// Seconds the producers ran.
    pub produce_secs: f64,
    /// Seconds the whole variant ran (drain included).
    pub total_secs: f64,
    /// Store offsets at the end.
    pub offsets_end: mqlab_engine::Offsets,
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

/// What a variant produced.
pub struct Outcome {
    /// Producer ack statistics.
    pub stats: SenderStats,
    /// Seconds the producers ran.
    pub produce_secs: f64,
    /// Seconds the whole variant ran (drain included).
    pub total_secs: f64,
    /// Figures (e2e and counts filled by the runner).
    pub figures: Figures,
    /// End-to-end latency histogram.
    pub e2e: Histogram<u64>,
    /// Samples over time.
    pub rows: Vec<Row>,
    /// Store offsets at the end.
    pub offsets_end: mqlab_engine::Offsets,
}

impl Outcome {
    /// Fills the common figures from a tracker and the samples.
    pub fn from_tracker(
        experiment: Experiment,
        variant: &str,
        p: Produced,
        t: &Tracker,
        rows: Vec<Row>,
    ) -> Outcome {
        let Produced {
            stats,
            produce_secs,
            total_secs,
            offsets_end,
        } = p;
        let e2e = t.e2e.lock().unwrap().clone();
        let retried = t.retried.lock().unwrap().clone();
        let consumed = t.consumed.load(Ordering::Relaxed);
        let figures = Figures {
            experiment: experiment.name().into(),
            variant: variant.into(),
            produced: stats.msgs,
            consumed,
            consumed_distinct: t.distinct(),
            consume_msgs_per_s: round3(consumed as f64 / total_secs.max(1e-9)),
            e2e_latency_us: LatencySummary::of(&e2e),
            backlog_max: rows.iter().map(|r| r.backlog).max().unwrap_or(0),
            consumer_queue_max: rows.iter().map(|r| r.consumer_queue).max().unwrap_or(0),
            duplicates: t.duplicates.load(Ordering::Relaxed),
            out_of_order: t.out_of_order.load(Ordering::Relaxed),
            dlq_messages: rows.last().map_or(0, |r| r.dlq),
            retry_messages: rows.last().map_or(0, |r| r.retried),
            retried_e2e_latency_us: (!retried.is_empty()).then(|| LatencySummary::of(&retried)),
            txn_resolution_ms: None,
            extra: BTreeMap::new(),
        };
        Outcome {
            stats,
            produce_secs,
            total_secs,
            figures,
            e2e,
            rows,
            offsets_end,
        }
    }
}

fn run_variant(ctx: &Ctx<'_>, exp: Experiment, variant: &str) -> Result<Outcome> {
    match exp {
        Experiment::PeakShaving => peak::run(ctx, variant),
        Experiment::Ordered => ordered::run(ctx, variant),
        Experiment::Transactions => txn::run(ctx, variant),
        Experiment::Retry => retry::run(ctx, variant),
        Experiment::Broadcast => broadcast::run(ctx, variant),
    }
}

fn table(rows: &[&Summary]) -> String {
    let mut cells = vec![[
        "variant",
        "sent msgs/s",
        "send p99 µs",
        "consumed",
        "e2e p50 ms",
        "e2e p99 ms",
        "backlog max",
        "consumer queue max",
        "dup",
        "out of order",
        "DLQ",
        "txn p99 ms",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect::<Vec<_>>()];
    for s in rows {
        let Some(f) = &s.messaging else { continue };
        cells.push(vec![
            f.variant.clone(),
            util::thousands(s.throughput_msgs_per_s),
            util::thousands(s.ack_latency_us.p99 as f64),
            util::thousands(f.consumed as f64),
            format!("{:.1}", f.e2e_latency_us.p50 as f64 / 1000.0),
            format!("{:.1}", f.e2e_latency_us.p99 as f64 / 1000.0),
            util::thousands(f.backlog_max as f64),
            util::thousands(f.consumer_queue_max as f64),
            f.duplicates.to_string(),
            f.out_of_order.to_string(),
            f.dlq_messages.to_string(),
            f.txn_resolution_ms
                .as_ref()
                .map_or("-".into(), |l| l.p99.to_string()),
        ]);
    }
    summary::render_table(&cells)
}

/// `mqlab run --spec` with a `[messaging]` table.
pub fn cmd_run(spec: &SpecFile, m: &MessagingSpec, args: &RunArgs) -> Result<()> {
    let Some(exp) = m.experiment else {
        bail!("[messaging] needs `experiment` (peak-shaving, ordered, transactions, retry, broadcast)");
    };
    let w = Workload::resolve(
        spec,
        args.flush,
        args.backend,
        &args.workload,
        args.name.as_deref(),
    )?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| crate::run::default_out(&w.name));
    std::fs::create_dir_all(&out)
        .with_context(|| format!("create output folder {}", out.display()))?;
    let parent = util::scratch_parent(args.data_dir.as_deref())?;
    let machine = MachineInfo::collect(&parent);
    let ctx = Ctx {
        w: &w,
        m,
        parent: &parent,
    };
    let variants = m.variants.clone().unwrap_or_else(|| exp.default_variants());
    let mut summaries = Vec::new();
    for v in &variants {
        eprintln!("mqlab: {} / {v} ...", exp.name());
        let started_utc = util::timestamp();
        let o = run_variant(&ctx, exp, v).with_context(|| format!("variant {v}"))?;
        // A variant that acknowledged nothing measured nothing: a row of
        // zeros would pass for a result.
        if o.stats.msgs == 0 && !util::stopped() {
            bail!(
                "{} / {v}: no message was acknowledged: {}",
                exp.name(),
                crate::run::why_nothing_acked(&o.stats.errors)
            );
        }
        let dir = out.join(v);
        let mut wv = w.clone();
        wv.name = format!("{}-{v}", w.name);
        let secs = o.produce_secs.max(1e-9);
        let summary = Summary {
            mqlab_version: env!("CARGO_PKG_VERSION").to_string(),
            name: wv.name.clone(),
            label: v.clone(),
            command: util::command_line(),
            started_utc,
            config: RunConfig {
                store: wv.store_config(),
                workload: wv,
            },
            duration_s: round3(o.produce_secs),
            messages_acked: o.stats.msgs,
            bytes_acked: o.stats.msgs * w.msg_size as u64,
            throughput_msgs_per_s: round3(o.stats.msgs as f64 / secs),
            throughput_mib_per_s: round3(
                (o.stats.msgs * w.msg_size as u64) as f64 / secs / (1024.0 * 1024.0),
            ),
            ack_latency_us: LatencySummary::of(&o.stats.ack),
            intended_latency_us: None,
            loss_window: LossWindowJson::default(),
            errors: o.stats.errors.clone(),
            offsets_end: o.offsets_end.into(),
            open_ms: 0.0,
            shutdown_ms: None,
            baseline: None,
            ratios: None,
            machine: machine.clone(),
            interrupted: util::stopped(),
            messaging: Some(o.figures.clone()),
        };
        summary::write_run_outputs(
            &dir,
            &summary,
            &o.stats,
            &LossStats::default(),
            o.total_secs,
        )?;
        let csv = dir.join("messaging.csv");
        std::fs::write(&csv, rows_csv(&o.rows))
            .with_context(|| format!("write {}", csv.display()))?;
        let hgrm = dir.join("e2e_latency.hgrm");
        std::fs::write(&hgrm, summary::hgrm_text(&o.e2e))
            .with_context(|| format!("write {}", hgrm.display()))?;
        summaries.push(summary);
        if util::stopped() {
            break;
        }
    }
    util::write_command(&out)?;
    let charts = plot::draw(std::slice::from_ref(&out), &out)?;
    let refs: Vec<&Summary> = summaries.iter().collect();
    print!("{}", table(&refs));
    for c in charts {
        println!("chart: {}", out.join(c).display());
    }
    println!("results: {}", out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_round_trips() {
        let b = body(7, 42, 123_456, 64);
        assert_eq!(b.len(), 64);
        assert_eq!(parse_body(&b), Some((7, 42, 123_456)));
        assert_eq!(parse_body(&b[..10]), None);
    }

    #[test]
    fn tracker_counts_duplicates_and_order() {
        let t = Tracker::new(Instant::now());
        t.success(&body(1, 0, 0, 20), false);
        t.success(&body(1, 2, 0, 20), false);
        t.success(&body(1, 1, 0, 20), false);
        t.success(&body(1, 2, 0, 20), false);
        assert_eq!(t.distinct(), 3);
        assert_eq!(t.duplicates.load(Ordering::Relaxed), 1);
        assert_eq!(t.out_of_order.load(Ordering::Relaxed), 1);
    }
}
