//! `mqlab merge DIR... --out DIR`: the result folders of `mqlab run
//! --target` runs on several load hosts (started together with
//! `--start-at`) combined into one result, exactly:
//!
//! - counts add (messages and bytes acknowledged, errors by code, messages
//!   produced and consumed, the messaging figures' extra counters);
//! - histograms add: each run wrote them losslessly (`.hdr`: HdrHistogram's
//!   V2 compressed encoding), so the merged send, intended, publish-delay
//!   and end-to-end histograms are the ones a single run recording every
//!   value would have built, and their `.hgrm` and percentiles follow;
//! - time series align by wall clock: every run counted its sends and
//!   consumptions by unix second (series.json), and the merge adds them
//!   second by second; timeseries.csv then has one row per wall-clock
//!   second from the first run's start;
//! - the measured window runs from the earliest start of a measurement to
//!   the latest end, and the throughput is the sum over that window.
//!
//! The output folder is a run's: summary.json (with `omb` and
//! `merged_from`), omb-result.json, series.json (so merges merge again),
//! timeseries.csv, the `.hgrm`/`.hdr` files, messaging.csv and the charts.
//!
//! Consumers: each run's consumers read the whole topic, so with consumers
//! on every host each message is consumed once per host (`consumed` adds
//! these deliveries); run them on one host (`--consume false` on the
//! others) for a backlog of every host's messages.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;

use crate::recorder::{latency_hist, SenderStats};
use crate::summary::{read_hdr, Summary};
use crate::table::round3;
use crate::util::OutDir;
use crate::wire::series::{self, WallSeries, WallTimes};
use crate::wire::{print_result, write_outputs, Outputs};

/// What `mqlab merge` is asked to do.
#[derive(Debug, Clone, clap::Args)]
pub struct MergeRequest {
    /// Result folders of `mqlab run --target` runs (one per load host).
    #[arg(required = true, value_name = "DIR")]
    pub inputs: Vec<PathBuf>,
    /// The merged result's folder, created if missing (and then removed
    /// again if the merge fails).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// One input folder, read.
struct Input {
    dir: PathBuf,
    summary: Summary,
    ack: Histogram<u64>,
    intended: Option<Histogram<u64>>,
    delay: Option<Histogram<u64>>,
    e2e: Option<Histogram<u64>>,
    series: WallSeries,
    times: WallTimes,
}

fn read_input(dir: &Path) -> Result<Input> {
    let path = dir.join("summary.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    let summary: Summary =
        serde_json::from_str(&text).with_context(|| format!("parse {}", path.display()))?;
    let (series, times) = series::read(dir)?;
    let rate = summary.config.workload.rate > 0.0;
    Ok(Input {
        ack: read_hdr(&dir.join("ack_latency.hdr"))?,
        intended: match summary.intended_latency_us {
            Some(_) => Some(read_hdr(&dir.join("intended_latency.hdr"))?),
            None => None,
        },
        delay: match rate {
            true => Some(read_hdr(&dir.join("publish_delay.hdr"))?),
            false => None,
        },
        e2e: match summary.messaging {
            Some(_) => Some(read_hdr(&dir.join("e2e_latency.hdr"))?),
            None => None,
        },
        dir: dir.to_path_buf(),
        summary,
        series,
        times,
    })
}

fn add(into: &mut Histogram<u64>, h: &Histogram<u64>, what: &str, dir: &Path) -> Result<()> {
    into.add(h)
        .map_err(|e| anyhow::anyhow!("{}: {what}: cannot add: {e:?}", dir.display()))
}

/// `mqlab merge`.
pub fn cmd_merge(r: MergeRequest) -> Result<()> {
    merge(&r.inputs, &r.out).map(|_| ())
}

/// Merges the run folders `inputs` into `out`; returns the merged summary.
pub fn merge(inputs: &[PathBuf], out: &Path) -> Result<Summary> {
    if inputs.len() < 2 {
        bail!("merge takes two or more result folders");
    }
    let mut seen = BTreeMap::new();
    for d in inputs {
        let canon = d
            .canonicalize()
            .with_context(|| format!("result folder {}", d.display()))?;
        if let Some(first) = seen.insert(canon, d) {
            bail!(
                "{} and {} are the same folder: it would count twice",
                first.display(),
                d.display()
            );
        }
    }
    let runs = inputs
        .iter()
        .map(|d| read_input(d))
        .collect::<Result<Vec<_>>>()?;
    let first = &runs[0];
    for r in &runs[1..] {
        let (a, b) = (&first.summary.config.workload, &r.summary.config.workload);
        if a.topic != b.topic {
            bail!(
                "{} ran topic {:?} and {} topic {:?}: merge combines runs of one workload",
                first.dir.display(),
                a.topic,
                r.dir.display(),
                b.topic
            );
        }
        if (a.rate > 0.0) != (b.rate > 0.0) {
            bail!(
                "{} and {} differ in --rate (one is rate-limited, one is not): their \
                 intended-time latencies cannot add",
                first.dir.display(),
                r.dir.display()
            );
        }
    }
    let out_dir = OutDir::given(out, "output folder")?;
    let mut stats = SenderStats::default();
    let mut delay = latency_hist();
    let mut e2e: Option<Histogram<u64>> = None;
    let mut all = WallSeries::default();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for r in &runs {
        add(&mut stats.ack, &r.ack, "ack_latency.hdr", &r.dir)?;
        if let Some(h) = &r.intended {
            add(&mut stats.intended, h, "intended_latency.hdr", &r.dir)?;
        }
        if let Some(h) = &r.delay {
            add(&mut delay, h, "publish_delay.hdr", &r.dir)?;
        }
        if let Some(h) = &r.e2e {
            add(
                e2e.get_or_insert_with(latency_hist),
                h,
                "e2e_latency.hdr",
                &r.dir,
            )?;
        }
        all.add(&r.series)
            .with_context(|| format!("{}", r.dir.join(series::SERIES_FILE).display()))?;
        stats.msgs += r.summary.messages_acked;
        stats.bytes += r.summary.bytes_acked;
        for (code, n) in &r.summary.errors {
            *errors.entry(code.clone()).or_default() += n;
        }
    }
    stats.errors = errors.clone();
    let times = WallTimes {
        start_unix_us: runs
            .iter()
            .map(|r| r.times.start_unix_us)
            .min()
            .unwrap_or(0),
        measure_from_unix_us: runs
            .iter()
            .map(|r| r.times.measure_from_unix_us)
            .min()
            .unwrap_or(0),
        measured_end_unix_us: runs
            .iter()
            .map(|r| r.times.measured_end_unix_us)
            .max()
            .unwrap_or(0),
    };
    let first_s = series::unix_second(times.start_unix_us);
    let origin_us = first_s * 1_000_000;
    stats.seconds = all.buckets_from(first_s);
    let measured_secs = times
        .measured_end_unix_us
        .saturating_sub(times.measure_from_unix_us) as f64
        / 1e6;
    let total_secs = times.measured_end_unix_us.saturating_sub(origin_us) as f64 / 1e6;
    // The workload of all hosts together.
    let mut w = first.summary.config.workload.clone();
    let ws = || runs.iter().map(|r| &r.summary.config.workload);
    w.producers = ws().map(|w| w.producers).sum();
    w.rate = ws().map(|w| w.rate).sum();
    w.messages = ws().map(|w| w.messages).sum();
    w.duration_secs = round3(measured_secs);
    w.warmup_secs = round3(times.measure_from_unix_us.saturating_sub(origin_us) as f64 / 1e6);
    w.timeseries_ms = 1000;
    let labels: Vec<&str> = runs.iter().map(|r| r.summary.label.as_str()).collect();
    let label = if labels.iter().all(|l| *l == labels[0]) {
        labels[0].to_string()
    } else {
        labels.join(" + ")
    };
    let (_, _, _, consumed) = all.totals();
    let backlog_rows = all.backlog_rows(first_s);
    let messaging = e2e.as_ref().map(|h| {
        let mut extra: BTreeMap<String, f64> = BTreeMap::new();
        for f in runs.iter().filter_map(|r| r.summary.messaging.as_ref()) {
            for (k, v) in &f.extra {
                *extra.entry(k.clone()).or_default() += v;
            }
        }
        crate::wire::target_figures(
            &label,
            (all.totals().0, consumed),
            round3(
                runs.iter()
                    .filter_map(|r| r.summary.messaging.as_ref())
                    .map(|f| f.consume_msgs_per_s)
                    .sum(),
            ),
            h,
            &backlog_rows,
            extra,
        )
    });
    let summary = crate::wire::target_summary(
        &w,
        crate::wire::RunFacts {
            label,
            started_utc: runs
                .iter()
                .map(|r| r.summary.started_utc.clone())
                .min()
                .unwrap_or_default(),
            store: first.summary.config.store.clone(),
            open_ms: runs.iter().map(|r| r.summary.open_ms).fold(0.0, f64::max),
            machine: first.summary.machine.clone(),
            interrupted: runs.iter().any(|r| r.summary.interrupted),
            messaging,
        },
        &stats,
        measured_secs,
    );
    let mut extra = serde_json::Map::new();
    extra.insert(
        "merged_from".into(),
        serde_json::Value::from(
            runs.iter()
                .map(|r| r.dir.display().to_string())
                .collect::<Vec<_>>(),
        ),
    );
    let outputs = Outputs {
        summary: &summary,
        stats: &stats,
        delay: &delay,
        e2e: e2e.as_ref(),
        series: &all,
        times,
        backlog: e2e
            .is_some()
            .then(|| crate::wire::backlog_csv(&backlog_rows)),
        total_secs,
        extra,
    };
    let charts = write_outputs(out_dir.path(), &outputs)?;
    let out = out_dir.keep();
    println!("merged {} runs:", runs.len());
    print_result(&summary, &charts, &out);
    Ok(summary)
}
