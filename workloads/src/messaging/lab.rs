//! One variant's world: a fresh store and broker ([`Lab`]), what a variant
//! runner is given ([`Ctx`]) and what it hands back ([`Outcome`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use mqlab_broker::{Broker, BrokerConfig};
use mqlab_engine::clock;
use mqlab_engine::Store;

use super::drive::Plan;
use super::figures::Figures;
use super::series::Row;
use super::spec::{Experiment, MessagingSpec};
use super::tracker::Tracker;
use crate::recorder::{LatencySummary, SenderStats};
use crate::slow_wait::{durable_message, show_slow_wait, SLOW_WAIT};
use crate::spec::Workload;
use crate::table::round3;
use crate::util;

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
                        let what = durable_message("messaging store", s.offsets());
                        return Ok(show_slow_wait(SLOW_WAIT, &what, || s.shutdown())?);
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
