//! `mqlab delay`: timer levels vs the time wheel.
//!
//! For each scheduler asked for: a fresh store on a real backend, N timers
//! scheduled by one producer thread with a chosen delay pattern, the
//! scheduler's own threads delivering them, optionally a process crash in
//! the middle (scheduler and store dropped without shutdown, then both
//! reopened: recovery time measured), and at the end every delivered copy
//! read back from the real topic, which is what a consumer would see:
//!
//! - lateness = store time of the delivered copy - its due time
//!   (TIMER_DELIVER_MS), both on the system clock, first copy of each timer;
//! - delivered / lost / duplicated: distinct timers seen, acknowledged
//!   timers never seen, extra copies;
//! - bytes per timer at the peak of pending timers (end of scheduling): the
//!   scheduler's own memory and files, plus for reference the commit-log
//!   bytes per timer and the process RSS growth per timer.
//!
//! Patterns. `burst`: every timer due within one second (`--burst-spread-ms`,
//! default 1000) starting `--lead-ms` after the run starts (the case
//! RocketMQ issue 6566 reports). `uniform`: delays uniform in
//! [`--min-delay-ms`, `--max-delay-ms`]. `levels`: delays drawn from the
//! delay levels within that range. The levels scheduler can only express
//! levels: under `burst` every timer gets the smallest level not shorter
//! than the time left to the burst, and under `uniform` the smallest level
//! not shorter than the drawn delay, so its due times follow the scheduling
//! times instead of forming a burst.
//!
//! Outputs in `--out`: per scheduler a folder with summary.json,
//! lateness.hgrm and lateness_timeseries.csv; a summary.json listing the
//! runs; charts lateness_spectrum and lateness_over_time (SVG and PNG).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use mqlab_engine::delay::{
    Clock, DelayScheduler, DelayStats, DeliverAt, LevelMode, LevelsConfig, LevelsScheduler,
    SchedulerKind, SystemClock, WheelConfig, WheelScheduler, PROPERTY_TIMER_DELIVER_MS,
};
use mqlab_engine::{BackendKind, Env, FlushKind, Message, Store, StoreConfig};
use plotters::coord::Shift;
use plotters::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::plot::{
    both, draw_marker, legend_column, line_only, marker_indices, marker_phase, nines_label, pe,
    register_fonts, series_style, split_at_gaps, styled_line, with_legend_column, Glyph,
    LegendEntry, SeriesStyle, MARKERS_PER_LINE, SPECTRUM_RIGHT_MARGIN,
};
use crate::recorder::{latency_hist, LatencySummary};
use crate::summary::{hgrm_text, round3};
use crate::util::{
    scratch_dir, scratch_parent, thousands, timestamp, write_command, write_json, OutDir,
};

/// Real topic the timers are delivered to.
const TOPIC: &str = "DelayTarget";
/// Property carrying the timer's number.
const ID: &str = "MQLAB_ID";

/// Delay pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pattern {
    /// All due within one second.
    Burst,
    /// Delays uniform in [min, max].
    Uniform,
    /// Delays drawn from the delay levels in [min, max].
    Levels,
}

#[derive(Debug, Args)]
pub struct DelayArgs {
    /// Schedulers, comma separated: wheel, levels (one thread per level),
    /// levels-single-thread. [default: wheel,levels,levels-single-thread]
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub scheduler: Vec<SchedulerKind>,
    /// Timers to schedule per scheduler.
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    pub timers: u64,
    /// Delay pattern.
    #[arg(long, value_enum, default_value_t = Pattern::Burst)]
    pub pattern: Pattern,
    /// Crash the process (scheduler and store dropped without shutdown,
    /// page cache kept) this many seconds after scheduling starts, then
    /// recover and go on.
    #[arg(long, value_name = "SECS")]
    pub crash_at: Option<f64>,
    /// Output folder. [default: results/delay-<timestamp>]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// I/O backend of the store (RocketMQ maps its files: mmap).
    #[arg(long, default_value = "mmap", value_name = "BACKEND")]
    pub backend: BackendKind,
    /// Flush strategy of the store.
    #[arg(long, default_value = "async", value_name = "STRATEGY")]
    pub flush: FlushKind,
    /// Parent of the scratch store directories (removed afterwards).
    /// [default: the system temporary directory]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Wheel slot width, ms.
    #[arg(long, default_value_t = 1_000, value_name = "MS")]
    pub precision_ms: u64,
    /// Wheel delivery threads.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub deliver_threads: usize,
    /// Shortest delay (uniform, levels), ms.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub min_delay_ms: u64,
    /// Longest delay (uniform, levels), ms.
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    pub max_delay_ms: u64,
    /// Burst: due times spread over this many ms (0 = all the same ms).
    #[arg(long, default_value_t = 1_000, value_name = "MS")]
    pub burst_spread_ms: u64,
    /// Burst: it starts this long after the run. [default: 2 s + 8 µs per
    /// timer, so that scheduling ends before it]
    #[arg(long, value_name = "MS")]
    pub lead_ms: Option<u64>,
    /// Message body size, bytes.
    #[arg(long, default_value_t = 100, value_name = "BYTES")]
    pub body_bytes: usize,
    /// Queues of the real topic.
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub queues: u32,
    /// Give up waiting for deliveries this long after the last due time, ms.
    #[arg(long, default_value_t = 60_000, value_name = "MS")]
    pub grace_ms: u64,
    /// Do not pre-fault commit-log segments at creation (first writes to
    /// each page then pay a page fault inside the measured deliveries).
    /// Pre-faulting a 1 GiB segment stalls the put that creates it for a
    /// second or more: the first segment is created before measuring, but
    /// runs that fill more than one segment (millions of timers) measure
    /// fairer lateness with this flag.
    #[arg(long)]
    pub no_preallocate: bool,
    /// Seed of the delay draws.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Do not draw charts.
    #[arg(long)]
    pub no_plot: bool,
}

/// Lateness percentiles, ms.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Lateness {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
    /// Timers measured (first copy of each).
    pub count: u64,
}

/// One scheduler's run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DelaySummary {
    pub scheduler: String,
    pub pattern: Pattern,
    pub timers: u64,
    pub backend: String,
    pub flush: String,
    pub precision_ms: u64,
    pub deliver_threads: usize,
    pub body_bytes: usize,
    /// Timers accepted per second by one producer thread.
    pub schedule_per_s: f64,
    pub schedule_secs: f64,
    /// Delivered copy's store time - due time, first copy of each timer.
    pub lateness_ms: Lateness,
    /// Timers delivered more than 1 s late.
    pub late_over_1s: u64,
    /// Timers delivered before their due time (must be 0).
    pub early: u64,
    /// Scheduler's memory + its own files per pending timer, at the peak.
    pub bytes_per_timer: f64,
    pub ram_bytes_per_timer: f64,
    pub index_bytes_per_timer: f64,
    /// Commit-log bytes written per timer while scheduling (the delayed
    /// record itself; not part of bytes_per_timer).
    pub commitlog_bytes_per_timer: f64,
    /// Process RSS growth per pending timer while scheduling (includes
    /// mapped commit-log pages on the mmap backend).
    pub rss_bytes_per_timer: f64,
    pub pending_at_peak: u64,
    /// Timers whose schedule call succeeded.
    pub acked: u64,
    /// Distinct timers seen in the real topic.
    pub delivered: u64,
    /// Acknowledged timers never delivered.
    pub lost: u64,
    /// Extra copies delivered.
    pub duplicated: u64,
    /// Seconds after scheduling started.
    pub crash_at_s: Option<f64>,
    /// Copies in the real topic when the crash struck.
    pub delivered_before_crash: Option<u64>,
    /// The scheduler's own recovery after the crash (reading its files,
    /// re-linking, the dedup scan), ms.
    pub recovery_ms: Option<u64>,
    /// The store's open after the crash (its recovery and pre-faulting the
    /// active segment), ms; not part of recovery_ms.
    pub store_open_ms: Option<u64>,
    /// Burst: due time of the first timer minus the end of scheduling, ms.
    pub scheduled_ahead_ms: Option<i64>,
    /// Scheduler counters at the end (after the crash: since reopening).
    pub stats: DelayStats,
}

struct Live {
    store: Arc<Store>,
    sched: Box<dyn DelayScheduler>,
    /// How long the store's open (recovery, segment pre-faulting) took, ms.
    store_open_ms: u64,
}

fn open_live(dir: &Path, args: &DelayArgs, kind: SchedulerKind) -> Result<Live> {
    let env: Arc<dyn Env> = args
        .backend
        .env()
        .with_context(|| format!("backend {}", args.backend))?;
    let cfg = StoreConfig {
        backend: args.backend,
        // The experiment never looks keys up; the index would only cost.
        index_enabled: false,
        // Pre-fault each segment when it is created (RocketMQ's
        // warmMapedFileEnable), so page faults do not masquerade as
        // scheduler lateness.
        preallocate: !args.no_preallocate,
        flush: mqlab_engine::FlushConfig {
            kind: args.flush,
            ..Default::default()
        },
        ..StoreConfig::default()
    };
    let t = Instant::now();
    let store = Arc::new(Store::open_with_env(env.clone(), dir, cfg)?);
    let store_open_ms = t.elapsed().as_millis() as u64;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let sched: Box<dyn DelayScheduler> = match kind {
        SchedulerKind::Wheel => Box::new(WheelScheduler::open(
            store.clone(),
            env,
            dir,
            WheelConfig {
                precision_ms: args.precision_ms,
                window_ms: wheel_window_ms(args.precision_ms),
                deliver_threads: args.deliver_threads,
                ..WheelConfig::default()
            },
            clock,
        )?),
        SchedulerKind::Levels | SchedulerKind::LevelsSingleThread => {
            Box::new(LevelsScheduler::open(
                store.clone(),
                env,
                dir,
                LevelsConfig {
                    mode: if kind == SchedulerKind::Levels {
                        LevelMode::PerLevel
                    } else {
                        LevelMode::SingleThread
                    },
                    ..LevelsConfig::default()
                },
                clock,
            )?)
        }
    };
    Ok(Live {
        store,
        sched,
        store_open_ms,
    })
}

/// RocketMQ's 2-day window, or as much as 2^22 slots allow.
fn wheel_window_ms(precision_ms: u64) -> u64 {
    (2 * 86_400_000).min(precision_ms * (1 << 22)) / precision_ms * precision_ms
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// Levels in ms (RocketMQ's defaults, as both schedulers use them).
fn levels_ms() -> Vec<u64> {
    mqlab_engine::delay::default_levels_ms()
}

/// Smallest level (1-based) whose delay is at least `ms`, else the last.
fn level_at_least(levels: &[u64], ms: u64) -> u32 {
    levels
        .iter()
        .position(|&l| l >= ms)
        .unwrap_or(levels.len() - 1) as u32
        + 1
}

/// When timer `i` is due.
struct Plan {
    pattern: Pattern,
    levels: Vec<u64>,
    /// Levels within [min, max] (at least one).
    allowed: Vec<u32>,
    burst_at_ms: i64,
    spread_ms: u64,
    min_ms: u64,
    max_ms: u64,
}

impl Plan {
    fn new(args: &DelayArgs, start_ms: i64) -> Plan {
        let levels = levels_ms();
        let mut allowed: Vec<u32> = (0..levels.len())
            .filter(|&i| (args.min_delay_ms..=args.max_delay_ms).contains(&levels[i]))
            .map(|i| i as u32 + 1)
            .collect();
        if allowed.is_empty() {
            allowed.push(level_at_least(&levels, args.min_delay_ms));
        }
        let lead = args.lead_ms.unwrap_or(2_000 + args.timers * 8 / 1_000);
        Plan {
            pattern: args.pattern,
            levels,
            allowed,
            burst_at_ms: start_ms + lead as i64,
            spread_ms: args.burst_spread_ms,
            min_ms: args.min_delay_ms,
            max_ms: args.max_delay_ms.max(args.min_delay_ms),
        }
    }

    fn at(&self, rng: &mut ChaCha8Rng, now_ms: i64, levels_only: bool) -> DeliverAt {
        match self.pattern {
            Pattern::Burst => {
                let due = self.burst_at_ms + rng.random_range(0..=self.spread_ms) as i64;
                if levels_only {
                    DeliverAt::Level(level_at_least(&self.levels, (due - now_ms).max(0) as u64))
                } else {
                    DeliverAt::AtMs(due)
                }
            }
            Pattern::Uniform => {
                let d = rng.random_range(self.min_ms..=self.max_ms);
                if levels_only {
                    DeliverAt::Level(level_at_least(&self.levels, d))
                } else {
                    DeliverAt::AfterMs(d)
                }
            }
            Pattern::Levels => {
                DeliverAt::Level(self.allowed[rng.random_range(0..self.allowed.len())])
            }
        }
    }
}

/// What the read-back found.
struct Readback {
    hist: Histogram<u64>,
    delivered: u64,
    duplicated: u64,
    early: u64,
    late_over_1s: u64,
    /// (delivery time ms, lateness ms) of first copies, for the time series.
    points: Vec<(i64, i64)>,
    first_due_ms: i64,
}

fn read_back(store: &Store, queues: u32, timers: u64) -> Result<Readback> {
    let end = store.offsets().written;
    if !store.wait_dispatched(end, Duration::from_secs(60)) {
        bail!("the store did not dispatch its last records within 60 s");
    }
    let mut seen = vec![0u8; timers as usize];
    let mut r = Readback {
        hist: latency_hist(),
        delivered: 0,
        duplicated: 0,
        early: 0,
        late_over_1s: 0,
        points: Vec::new(),
        first_due_ms: i64::MAX,
    };
    for q in 0..queues {
        let mut off = 0;
        loop {
            let batch = store.get_from_queue(TOPIC, q, off, 4096)?;
            if batch.is_empty() {
                break;
            }
            off += batch.len() as u64;
            for m in batch {
                let id: u64 = m
                    .properties
                    .get(ID)
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| anyhow!("delivered message without {ID}"))?;
                let due: i64 = m
                    .properties
                    .get(PROPERTY_TIMER_DELIVER_MS)
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| anyhow!("delivered message without its due time"))?;
                let slot = seen
                    .get_mut(id as usize)
                    .ok_or_else(|| anyhow!("timer id {id} out of range"))?;
                if *slot > 0 {
                    r.duplicated += 1;
                    continue;
                }
                *slot = 1;
                r.delivered += 1;
                let late = m.store_timestamp_ms - due;
                if late < 0 {
                    r.early += 1;
                }
                if late > 1_000 {
                    r.late_over_1s += 1;
                }
                r.hist.saturating_record(late.max(0) as u64);
                r.points.push((m.store_timestamp_ms, late));
                r.first_due_ms = r.first_due_ms.min(due);
            }
        }
    }
    Ok(r)
}

/// Lateness per bucket of delivery time: (seconds since the first due
/// time, delivered, p50, p99, max).
fn time_series(points: &[(i64, i64)], first_due_ms: i64) -> Vec<(f64, u64, u64, u64, u64)> {
    if points.is_empty() {
        return Vec::new();
    }
    let last = points.iter().map(|p| p.0).max().unwrap_or(first_due_ms);
    let span = (last - first_due_ms).max(1);
    let bucket_ms = (span / 200).clamp(10, 60_000);
    let n = (span / bucket_ms + 1) as usize;
    let mut hs: Vec<Histogram<u64>> = (0..n)
        .map(|_| Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("bounds"))
        .collect();
    for &(at, late) in points {
        let b = ((at - first_due_ms).max(0) / bucket_ms) as usize;
        hs[b.min(n - 1)].saturating_record(late.max(0) as u64);
    }
    hs.iter()
        .enumerate()
        .filter(|(_, h)| !h.is_empty())
        .map(|(i, h)| {
            (
                (i as i64 * bucket_ms) as f64 / 1000.0,
                h.len(),
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.99),
                h.max(),
            )
        })
        .collect()
}

fn run_one(
    args: &DelayArgs,
    kind: SchedulerKind,
    parent: &Path,
    out: &Path,
) -> Result<DelaySummary> {
    let scratch = scratch_dir(parent, &format!("mqlab-delay-{}-", kind.name()))?;
    let dir = scratch.path().to_path_buf();
    let rss0 = rss_bytes();
    let mut live = Some(open_live(&dir, args, kind)?);
    // The first put creates (and with pre-faulting, populates) the first
    // segment, which can take seconds: do it before anything is measured.
    let warm = live_ref(&live)
        .store
        .put(&Message::new("DelayWarmup", Vec::new()));
    if !warm.is_ok() {
        bail!("warm-up put failed: {:?}", warm.detail);
    }
    // --crash-at counts from here: the first open (pre-faulting a segment
    // can take seconds) is not part of the run.
    let start = Instant::now();
    let clock = SystemClock;
    let plan = Plan::new(args, clock.now_ms());
    let levels_only = kind != SchedulerKind::Wheel;
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let body = vec![b'x'; args.body_bytes];
    let mut crash_pending = args.crash_at;
    let mut recovery_ms = None;
    let mut store_open_ms = None;
    let mut delivered_before_crash = None;
    let mut acked = vec![false; args.timers as usize];
    let mut n_acked = 0u64;
    let mut last_due = i64::MIN;
    let mut first_due = i64::MAX;
    let log_start = live_ref(&live).store.offsets().written;
    let crash = |live: &mut Option<Live>, at: f64| -> Result<(u64, u64, u64)> {
        let before: u64 = live_ref(live)
            .store
            .queues()
            .iter()
            .filter(|q| q.topic == TOPIC)
            .map(|q| q.max_offset)
            .sum();
        eprintln!(
            "  {}: crash at {at:.1} s, {before} copies delivered",
            kind.name()
        );
        // Drop without shutdown: threads stop, nothing more is persisted;
        // the page cache keeps what was written (a process crash).
        if let Some(dead) = live.take() {
            drop(dead.sched);
            drop(dead.store);
        }
        let l = open_live(&dir, args, kind)?;
        let r = (l.sched.stats().recovery_ms, l.store_open_ms, before);
        *live = Some(l);
        Ok(r)
    };
    let sched_start = Instant::now();
    let mut last_report = Instant::now();
    for i in 0..args.timers {
        if let Some(at) = crash_pending {
            if start.elapsed().as_secs_f64() >= at {
                let (r, s, b) = crash(&mut live, at)?;
                (recovery_ms, store_open_ms) = (Some(r), Some(s));
                delivered_before_crash = Some(b);
                crash_pending = None;
            }
        }
        let m = Message::new(TOPIC, body.clone())
            .with_queue((i % args.queues as u64) as u32)
            .with_property(ID, i.to_string());
        let now = clock.now_ms();
        let at = plan.at(&mut rng, now, levels_only);
        match live_ref(&live).sched.schedule(m, at) {
            Ok(h) => {
                acked[i as usize] = true;
                n_acked += 1;
                last_due = last_due.max(h.deliver_ms);
                first_due = first_due.min(h.deliver_ms);
            }
            Err(e) => eprintln!("  schedule {i}: {e}"),
        }
        if last_report.elapsed() > Duration::from_secs(2) {
            eprintln!("  {}: scheduled {i} of {}", kind.name(), args.timers);
            last_report = Instant::now();
        }
    }
    let schedule_secs = sched_start.elapsed().as_secs_f64();
    let sched_end_ms = clock.now_ms();
    // The peak of pending timers: everything scheduled, little delivered
    // yet (the burst and long delays), so per-timer figures are fair.
    let peak = live_ref(&live).sched.stats();
    let rss1 = rss_bytes();
    let log_bytes = live_ref(&live)
        .store
        .offsets()
        .written
        .saturating_sub(log_start);
    let pending = peak.pending.max(1);
    // Wait for the deliveries.
    let deadline_ms = last_due + args.grace_ms as i64;
    loop {
        if let Some(at) = crash_pending {
            if start.elapsed().as_secs_f64() >= at {
                let (r, s, b) = crash(&mut live, at)?;
                (recovery_ms, store_open_ms) = (Some(r), Some(s));
                delivered_before_crash = Some(b);
                crash_pending = None;
            }
        }
        let st = live_ref(&live).sched.stats();
        let in_topic: u64 = live_ref(&live)
            .store
            .queues()
            .iter()
            .filter(|q| q.topic == TOPIC)
            .map(|q| q.max_offset)
            .sum();
        if (in_topic >= n_acked && st.pending == 0 && crash_pending.is_none())
            || clock.now_ms() > deadline_ms
        {
            break;
        }
        if last_report.elapsed() > Duration::from_secs(2) {
            eprintln!(
                "  {}: {in_topic} of {n_acked} delivered, {} pending",
                kind.name(),
                st.pending
            );
            last_report = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let Live { store, sched, .. } = live.take().expect("the store is open");
    let stats = sched.stats();
    sched.shutdown()?;
    let rb = read_back(&store, args.queues, args.timers)?;
    Arc::try_unwrap(store)
        .map_err(|_| anyhow!("store still shared"))?
        .shutdown()?;
    drop(scratch);
    let _ = acked;

    let l = LatencySummary::of(&rb.hist);
    let summary = DelaySummary {
        scheduler: kind.name().into(),
        pattern: args.pattern,
        timers: args.timers,
        backend: args.backend.name().into(),
        flush: args.flush.to_string(),
        precision_ms: args.precision_ms,
        deliver_threads: args.deliver_threads,
        body_bytes: args.body_bytes,
        schedule_per_s: round3(n_acked as f64 / schedule_secs.max(1e-9)),
        schedule_secs: round3(schedule_secs),
        lateness_ms: Lateness {
            p50: l.p50,
            p90: l.p90,
            p99: l.p99,
            p999: l.p999,
            max: l.max,
            mean: l.mean,
            count: l.count,
        },
        late_over_1s: rb.late_over_1s,
        early: rb.early,
        bytes_per_timer: round3((peak.ram_bytes + peak.index_bytes) as f64 / pending as f64),
        ram_bytes_per_timer: round3(peak.ram_bytes as f64 / pending as f64),
        index_bytes_per_timer: round3(peak.index_bytes as f64 / pending as f64),
        commitlog_bytes_per_timer: round3(log_bytes as f64 / n_acked.max(1) as f64),
        rss_bytes_per_timer: round3(rss1.saturating_sub(rss0) as f64 / pending as f64),
        pending_at_peak: peak.pending,
        acked: n_acked,
        delivered: rb.delivered,
        lost: n_acked.saturating_sub(rb.delivered),
        duplicated: rb.duplicated,
        crash_at_s: args.crash_at,
        delivered_before_crash,
        recovery_ms,
        store_open_ms,
        scheduled_ahead_ms: (args.pattern == Pattern::Burst && first_due != i64::MAX)
            .then_some(first_due - sched_end_ms),
        stats,
    };
    std::fs::create_dir_all(out)
        .with_context(|| format!("create scheduler folder {}", out.display()))?;
    write_json(&out.join("summary.json"), &summary)?;
    write_text(&out.join("lateness.hgrm"), hgrm_text(&rb.hist))?;
    let mut csv = String::from("t_s,delivered,lateness_p50_ms,lateness_p99_ms,lateness_max_ms\n");
    for (t, n, p50, p99, max) in time_series(&rb.points, rb.first_due_ms) {
        csv.push_str(&format!("{t:.3},{n},{p50},{p99},{max}\n"));
    }
    write_text(&out.join("lateness_timeseries.csv"), csv)?;
    write_command(out)?;
    Ok(summary)
}

/// Writes `text` to `path`; the error names both.
fn write_text(path: &Path, text: String) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))
}

/// Reads `path`; the error names it.
fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))
}

/// A delay run in which no scheduler delivered a single timer measured
/// nothing: a table of zeros would pass for a result.
/// `runs`: (scheduler, acknowledged, delivered).
fn check_delivered(runs: &[(&str, u64, u64)]) -> Result<()> {
    if runs.is_empty() || runs.iter().any(|r| r.2 > 0) {
        return Ok(());
    }
    let what: Vec<String> = runs
        .iter()
        .map(|(name, acked, _)| format!("{name}: 0 of {acked} acknowledged timers"))
        .collect();
    bail!("no timer was delivered ({})", what.join("; "))
}

fn live_ref(live: &Option<Live>) -> &Live {
    live.as_ref().expect("the store is open")
}

fn table(runs: &[DelaySummary]) -> String {
    let mut s = format!(
        "{:<22} {:>10} {:>7} {:>7} {:>7} {:>7} {:>9} {:>10} {:>6} {:>6} {:>9}\n",
        "scheduler",
        "sched/s",
        "p50 ms",
        "p99",
        "p99.9",
        "max",
        "B/timer",
        "delivered",
        "lost",
        "dup",
        "recov ms"
    );
    for r in runs {
        s.push_str(&format!(
            "{:<22} {:>10} {:>7} {:>7} {:>7} {:>7} {:>9.1} {:>10} {:>6} {:>6} {:>9}\n",
            r.scheduler,
            thousands(r.schedule_per_s),
            r.lateness_ms.p50,
            r.lateness_ms.p99,
            r.lateness_ms.p999,
            r.lateness_ms.max,
            r.bytes_per_timer,
            r.delivered,
            r.lost,
            r.duplicated,
            r.recovery_ms
                .map(|v| v.to_string())
                .unwrap_or_else(|| "-".into())
        ));
    }
    s
}

pub fn cmd_delay(mut args: DelayArgs) -> Result<()> {
    if args.scheduler.is_empty() {
        args.scheduler = SchedulerKind::ALL.to_vec();
    }
    if args.timers == 0 || args.timers > u32::MAX as u64 {
        bail!("--timers must be 1 to {}", u32::MAX);
    }
    if args.queues == 0 {
        bail!("--queues must be > 0");
    }
    // The data directory first: a bad one fails before anything is created.
    let parent = scratch_parent(args.data_dir.as_deref())?;
    // Claimed now (a fresh `delay-<ts>`, `-2`, ... when taken), removed
    // again if the run fails.
    let out_dir = match &args.out {
        Some(p) => OutDir::given(p, "output folder")?,
        None => OutDir::unique(
            &PathBuf::from("results").join(format!("delay-{}", timestamp())),
            "results folder",
        )?,
    };
    let out = out_dir.path().to_path_buf();
    write_command(&out)?;
    let mut runs = Vec::new();
    let mut hgrams = Vec::new();
    for &kind in &args.scheduler {
        eprintln!(
            "mqlab delay: {} with {} timers ({:?})",
            kind.name(),
            args.timers,
            args.pattern
        );
        let sub = out.join(kind.name());
        let s = run_one(&args, kind, &parent, &sub)?;
        hgrams.push((
            s.scheduler.clone(),
            read_text(&sub.join("lateness.hgrm"))?,
            read_text(&sub.join("lateness_timeseries.csv"))?,
        ));
        runs.push(s);
    }
    #[derive(Serialize)]
    struct All<'a> {
        runs: &'a [DelaySummary],
    }
    check_delivered(
        &runs
            .iter()
            .map(|r| (r.scheduler.as_str(), r.acked, r.delivered))
            .collect::<Vec<_>>(),
    )?;
    write_json(&out.join("summary.json"), &All { runs: &runs })?;
    if !args.no_plot {
        let curves: Vec<Curves> = hgrams
            .iter()
            .map(|(name, hgrm, csv)| Curves::parse(name, hgrm, csv))
            .collect();
        draw_charts(&out, &curves)?;
    }
    let out = out_dir.keep();
    crate::util::print_out(&table(&runs));
    eprintln!("results in {}", out.display());
    Ok(())
}

/// One scheduler's curves: lateness by percentile and over time.
struct Curves {
    name: String,
    /// (nines, lateness ms)
    spectrum: Vec<(f64, f64)>,
    /// (seconds since the first due time, p50 ms, max ms)
    series: Vec<(f64, f64, f64)>,
}

impl Curves {
    fn parse(name: &str, hgrm: &str, csv: &str) -> Curves {
        let spectrum = crate::summary::parse_hgrm(hgrm)
            .into_iter()
            .filter(|(_, p)| *p < 1.0)
            .map(|(v, p)| (-(1.0 - p).log10(), v))
            .collect();
        let series = csv
            .lines()
            .skip(1)
            .filter_map(|l| {
                let f: Vec<f64> = l.split(',').filter_map(|x| x.parse().ok()).collect();
                (f.len() == 5).then(|| (f[0], f[2], f[4]))
            })
            .collect();
        Curves {
            name: name.to_string(),
            spectrum,
            series,
        }
    }
}

/// Draws lateness_spectrum and lateness_over_time into `out`.
fn draw_charts(out: &Path, curves: &[Curves]) -> Result<Vec<String>> {
    register_fonts();
    let mut files = both(
        out,
        "lateness_spectrum",
        |a| spectrum(&a, curves),
        |a| spectrum(&a, curves),
    )?;
    files.extend(both(
        out,
        "lateness_over_time",
        |a| over_time(&a, curves),
        |a| over_time(&a, curves),
    )?);
    Ok(files)
}

/// Schedulers of a `mqlab delay` output folder (its summary.json lists
/// runs with a `scheduler`), in run order; None for any other folder.
pub fn delay_schedulers(dir: &Path) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(dir.join("summary.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v.get("runs")?
        .as_array()?
        .iter()
        .map(|r| Some(r.get("scheduler")?.as_str()?.to_string()))
        .collect()
}

/// `mqlab plot` on `mqlab delay` folders: redraws their charts into `out`
/// from the saved lateness.hgrm and lateness_timeseries.csv (several
/// folders: one chart, lines named folder/scheduler).
pub fn draw_delay_only(inputs: &[PathBuf], out: &Path) -> Result<Vec<String>> {
    let dirs: Vec<(&PathBuf, Vec<String>)> = inputs
        .iter()
        .filter_map(|d| Some((d, delay_schedulers(d)?)))
        .collect();
    let mut curves = Vec::new();
    for (dir, schedulers) in &dirs {
        for name in schedulers {
            let sub = dir.join(name);
            let read = |f: &str| read_text(&sub.join(f));
            let label = if dirs.len() > 1 {
                let folder = dir.file_name().map(|f| f.to_string_lossy().into_owned());
                format!("{}/{name}", folder.unwrap_or_default())
            } else {
                name.clone()
            };
            curves.push(Curves::parse(
                &label,
                &read("lateness.hgrm")?,
                &read("lateness_timeseries.csv")?,
            ));
        }
    }
    if curves.is_empty() {
        return Ok(Vec::new());
    }
    std::fs::create_dir_all(out)
        .with_context(|| format!("create chart folder {}", out.display()))?;
    draw_charts(out, &curves)
}

/// Style of the i-th scheduler: the delay charts' own colours (blue, red,
/// green, ...), not `crate::plot::series_style`'s order, with its markers.
fn style(i: usize) -> SeriesStyle {
    const C: [RGBColor; 5] = [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
        RGBColor(255, 127, 14),
        RGBColor(148, 103, 189),
    ];
    SeriesStyle {
        color: C[i % C.len()],
        ..series_style(i)
    }
}

/// Lateness is often 0 ms: plotted at 0.5 ms on the log axis.
fn floor_ms(v: f64) -> f64 {
    v.max(0.5)
}

fn spectrum<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, curves: &[Curves]) -> Result<()> {
    let max_x = curves
        .iter()
        .flat_map(|c| c.spectrum.iter().map(|p| p.0))
        .fold(2.0, f64::max)
        .min(7.0)
        .ceil();
    let max_y = curves
        .iter()
        .flat_map(|c| c.spectrum.iter().map(|p| p.1))
        .fold(1.0, f64::max);
    let entries: Vec<LegendEntry> = curves
        .iter()
        .enumerate()
        .map(|(i, c)| LegendEntry::new(c.name.clone(), Glyph::Series(style(i))))
        .collect();
    let labels: Vec<String> = entries.iter().map(|e| e.label.clone()).collect();
    let (plot, legend) = with_legend_column(root, "Delivery lateness by percentile", 26, &labels)?;
    let mut chart = ChartBuilder::on(&plot)
        .margin(15)
        .margin_right(SPECTRUM_RIGHT_MARGIN)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..max_x, (0.4f64..max_y * 2.0).log_scale())
        .map_err(pe)?;
    chart
        .configure_mesh()
        .x_labels(max_x as usize + 1)
        .x_label_formatter(&|x| nines_label(*x))
        .y_label_formatter(&|y| thousands(*y))
        .x_desc("percentile (log scale of nines)")
        .y_desc("lateness, ms (log; 0 drawn at 0.5)")
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 17))
        .draw()
        .map_err(pe)?;
    for (i, c) in curves.iter().enumerate() {
        let pts: Vec<(f64, f64)> = c.spectrum.iter().map(|&(x, y)| (x, floor_ms(y))).collect();
        styled_line(&mut chart, &pts, style(i), marker_phase(i, curves.len()))?;
    }
    legend_column(&legend, &entries, 15)?;
    Ok(())
}

fn over_time<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, curves: &[Curves]) -> Result<()> {
    let max_x = curves
        .iter()
        .flat_map(|c| c.series.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    let max_y = curves
        .iter()
        .flat_map(|c| c.series.iter().map(|p| p.2))
        .fold(1.0, f64::max);
    let mut entries: Vec<LegendEntry> = curves
        .iter()
        .enumerate()
        .map(|(i, c)| LegendEntry::new(c.name.clone(), Glyph::Series(style(i))))
        .collect();
    let grey = RGBColor(90, 90, 90);
    entries.push(LegendEntry::new("max (solid)", Glyph::Line(grey, 2, false)));
    entries.push(LegendEntry::new(
        "median (dashed)",
        Glyph::Line(grey, 1, true),
    ));
    entries.push(LegendEntry::new("gaps: nothing delivered", Glyph::Note));
    let labels: Vec<String> = entries.iter().map(|e| e.label.clone()).collect();
    let (plot, legend) = with_legend_column(
        root,
        "Delivery lateness over time (max solid, median dashed)",
        24,
        &labels,
    )?;
    let mut chart = ChartBuilder::on(&plot)
        .margin(15)
        .margin_right(25)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..max_x * 1.02, (0.4f64..max_y * 2.0).log_scale())
        .map_err(pe)?;
    chart
        .configure_mesh()
        .y_label_formatter(&|y| thousands(*y))
        .x_desc("delivery time, s after the first due time")
        .y_desc("lateness, ms (log; 0 drawn at 0.5)")
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 17))
        .draw()
        .map_err(pe)?;
    for (i, c) in curves.iter().enumerate() {
        let st = style(i);
        let max: Vec<(f64, f64)> = c.series.iter().map(|&(t, _, m)| (t, floor_ms(m))).collect();
        let p50: Vec<(f64, f64)> = c.series.iter().map(|&(t, p, _)| (t, floor_ms(p))).collect();
        // Buckets without deliveries are not in the file: no line across them.
        for part in split_at_gaps(&max, 3.0) {
            if let [only] = part[..] {
                chart
                    .draw_series(std::iter::once(Circle::new(only, 2, st.color.filled())))
                    .map_err(pe)?;
            }
            line_only(&mut chart, &part, st.color, false, 2)?;
        }
        for part in split_at_gaps(&p50, 3.0) {
            if part.len() > 1 {
                line_only(&mut chart, &part, st.color, true, 1)?;
            }
        }
        let xs: Vec<f64> = max.iter().map(|p| p.0).collect();
        for k in marker_indices(&xs, MARKERS_PER_LINE, marker_phase(i, curves.len())) {
            draw_marker(chart.plotting_area(), max[k], st.marker, st.color, 4)?;
        }
    }
    legend_column(&legend, &entries, 15)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_delivered_is_an_error() {
        let err = check_delivered(&[("wheel", 10, 0), ("levels", 0, 0)]).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("no timer was delivered"), "{msg}");
        assert!(msg.contains("wheel: 0 of 10"), "{msg}");
        // One scheduler delivering is a result (the others lost everything).
        assert!(check_delivered(&[("wheel", 10, 0), ("levels", 10, 3)]).is_ok());
        assert!(check_delivered(&[("wheel", 10, 10)]).is_ok());
    }
}
