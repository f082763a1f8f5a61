//! A store and one scheduler on it, opened (and after a crash reopened)
//! for a run, and reading the delivered copies back from the real topic.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use hdrhistogram::Histogram;
use mqlab_engine::delay::{
    Clock, DelayScheduler, LevelMode, LevelsConfig, LevelsScheduler, SchedulerKind, SystemClock,
    WheelConfig, WheelScheduler, PROPERTY_TIMER_DELIVER_MS,
};
use mqlab_engine::{Env, Store, StoreConfig};

use super::request::DelayRequest;
use crate::recorder::latency_hist;

/// Real topic the timers are delivered to.
pub(super) const TOPIC: &str = "DelayTarget";

/// Property carrying the timer's number.
pub(super) const ID: &str = "MQLAB_ID";

pub(super) struct Live {
    pub(super) store: Arc<Store>,
    pub(super) sched: Box<dyn DelayScheduler>,
    /// How long the store's open (recovery, segment pre-faulting) took, ms.
    pub(super) store_open_ms: u64,
}

impl Live {
    /// Copies delivered into the target topic so far (its queues' ends).
    pub(super) fn delivered(&self) -> u64 {
        self.store
            .queues()
            .iter()
            .filter(|q| q.topic == TOPIC)
            .map(|q| q.max_offset)
            .sum()
    }
}

pub(super) fn open_live(dir: &Path, args: &DelayRequest, kind: SchedulerKind) -> Result<Live> {
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
        flush: mqlab_engine::FlushConfig::for_kind(args.flush),
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
pub(super) fn wheel_window_ms(precision_ms: u64) -> u64 {
    (2 * 86_400_000).min(precision_ms * (1 << 22)) / precision_ms * precision_ms
}

pub(super) fn rss_bytes() -> u64 {
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

/// What the read-back found.
pub(super) struct Readback {
    pub(super) hist: Histogram<u64>,
    pub(super) delivered: u64,
    pub(super) duplicated: u64,
    pub(super) early: u64,
    pub(super) late_over_1s: u64,
    /// (delivery time ms, lateness ms) of first copies, for the time series.
    pub(super) points: Vec<(i64, i64)>,
    pub(super) first_due_ms: i64,
}

pub(super) fn read_back(store: &Store, queues: u32, timers: u64) -> Result<Readback> {
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

pub(super) fn live_ref(live: &Option<Live>) -> &Live {
    live.as_ref().expect("the store is open")
}
