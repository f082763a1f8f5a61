//! Run outputs: summary.json, timeseries.csv, ack_latency.hgrm and the
//! results table printed by `run` and `matrix`.
//!
//! The `.hgrm` file is HdrHistogram's percentile-distribution text format
//! (what `outputPercentileDistribution` prints and the HdrHistogram plotter
//! reads), written here because the Rust crate has no writer for it. Values
//! are microseconds. Beside each `.hgrm` a `.hdr` file holds the same
//! histogram losslessly (HdrHistogram's V2 compressed encoding in base64,
//! one line: what `Histogram.decodeFromCompressedByteBuffer` reads after
//! base64), so that `mqlab merge` can add histograms exactly.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use mqlab_engine::StoreConfig;
use serde::{Deserialize, Serialize};

use crate::baseline::Baseline;
use crate::recorder::{LatencySummary, LossStats, OffsetsJson, SenderStats, WindowSummary};
use crate::spec::Workload;
use crate::table::{csv_columns, csv_text};
pub use crate::table::{render_table, round3};
use crate::util::{thousands, MachineInfo};

/// The full configuration of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunConfig {
    /// The resolved workload.
    pub workload: Workload,
    /// The store configuration it ran with.
    pub store: StoreConfig,
}

/// The loss window over a run: the power-loss side flattened at the top
/// level (acked - flushed), the process-crash side under `process`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LossWindowJson {
    /// Power loss: acked - flushed.
    #[serde(flatten)]
    pub power: WindowSummary,
    /// Process crash: acked - committed.
    pub process: WindowSummary,
    /// Samples taken after warmup.
    pub samples: u64,
    /// Intended sampling period, ms.
    pub sample_period_ms: u64,
    /// Largest real gap between samples, ms.
    pub max_sample_gap_ms: f64,
    /// True when the tracker overflowed (message counts are lower bounds).
    pub saturated: bool,
}

/// Throughput relative to the device measured in the same run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Ratios {
    /// Messages per second divided by 4 KiB pwrite+fdatasync per second:
    /// how many messages one device sync carries.
    pub msgs_per_fdatasync: f64,
    /// MiB/s divided by buffered-write MiB/s.
    pub mib_vs_buffered_write: f64,
    /// MiB/s divided by the best batched pwrite+fdatasync MiB/s.
    pub mib_vs_best_sync_batch: f64,
}

impl Ratios {
    /// Ratios of a throughput to a baseline.
    pub fn of(msgs_per_s: f64, mib_per_s: f64, b: &Baseline) -> Ratios {
        let div = |a: f64, b: f64| if b > 0.0 { round3(a / b) } else { 0.0 };
        Ratios {
            msgs_per_fdatasync: div(msgs_per_s, b.fdatasync_per_s),
            mib_vs_buffered_write: div(mib_per_s, b.buffered_write_mib_per_s),
            mib_vs_best_sync_batch: div(mib_per_s, b.best_sync_batch_mib_per_s()),
        }
    }
}

/// summary.json of one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    /// mqlab version.
    pub mqlab_version: String,
    /// Run name.
    pub name: String,
    /// Configuration label used in tables and legends.
    pub label: String,
    /// Exact command line.
    pub command: String,
    /// Start time, UTC `YYYYmmdd-HHMMSS`.
    pub started_utc: String,
    /// Full configuration.
    pub config: RunConfig,
    /// Measured seconds (after warmup).
    pub duration_s: f64,
    /// Acknowledged messages after warmup.
    pub messages_acked: u64,
    /// Acknowledged body bytes after warmup.
    pub bytes_acked: u64,
    /// Acknowledged messages per second.
    pub throughput_msgs_per_s: f64,
    /// Acknowledged body MiB per second.
    pub throughput_mib_per_s: f64,
    /// Ack latency, µs.
    pub ack_latency_us: LatencySummary,
    /// Latency from the intended send time (rate-limited runs), µs.
    pub intended_latency_us: Option<LatencySummary>,
    /// The loss window.
    pub loss_window: LossWindowJson,
    /// Non-OK puts by status.
    pub errors: BTreeMap<String, u64>,
    /// Store offsets when the workload ended.
    pub offsets_end: OffsetsJson,
    /// Store open (and recovery) time, ms.
    pub open_ms: f64,
    /// Clean shutdown time, ms (absent with --no-shutdown).
    pub shutdown_ms: Option<f64>,
    /// The device baseline measured in the same run.
    pub baseline: Option<Baseline>,
    /// Throughput relative to the baseline.
    pub ratios: Option<Ratios>,
    /// Machine.
    pub machine: MachineInfo,
    /// True when Ctrl-C cut the run short.
    pub interrupted: bool,
    /// Messaging experiments' figures (e2e_latency_us, backlog_max,
    /// duplicates, out_of_order, dlq_messages, txn_resolution_ms, ...), at
    /// the top level of summary.json; absent for plain store runs.
    #[serde(flatten)]
    pub messaging: Option<crate::messaging::figures::Figures>,
}

impl Summary {
    /// The loss column: messages and ms of the worst window.
    pub fn loss_cell(&self) -> String {
        let lw = &self.loss_window.power;
        // A saturated tracker undercounts: the true window is at least this.
        let at_least = if self.loss_window.saturated { ">=" } else { "" };
        format!(
            "{at_least}{} / {:.1}",
            thousands(lw.max_msgs as f64),
            lw.max_ms
        )
    }

    /// The device-ratio column: messages per device sync for strategies that
    /// sync before acking, share of buffered bandwidth for the others.
    pub fn device_cell(&self) -> String {
        match &self.ratios {
            None => "-".into(),
            Some(r) if self.config.workload.flush.acks_durable() => {
                format!("{:.2}x fsync", r.msgs_per_fdatasync)
            }
            Some(r) => format!("{:.0}% buf", r.mib_vs_buffered_write * 100.0),
        }
    }
}

/// Writes `h` in HdrHistogram's percentile-distribution text format.
pub fn hgrm_text(h: &Histogram<u64>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    if !h.is_empty() {
        for v in h.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let q = v.quantile_iterated_to();
            let value = h.highest_equivalent(v.value_iterated_to()) as f64;
            if q < 1.0 {
                let _ = writeln!(
                    out,
                    "{:12.3} {:2.12} {:10} {:14.2}",
                    value,
                    q,
                    total,
                    1.0 / (1.0 - q)
                );
            } else {
                let _ = writeln!(out, "{value:12.3} {q:2.12} {total:10}");
            }
        }
    }
    let sub_buckets = 1u64 << (64 - (2 * 10u64.pow(h.sigfig() as u32) - 1).leading_zeros());
    let _ = writeln!(
        out,
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]",
        if h.is_empty() { 0.0 } else { h.mean() },
        if h.is_empty() { 0.0 } else { h.stdev() }
    );
    let _ = writeln!(
        out,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        h.max() as f64,
        h.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        sub_buckets
    );
    out
}

/// `h` losslessly: HdrHistogram's V2 compressed encoding, base64 (one
/// line, no newline).
pub fn hdr_text(h: &Histogram<u64>) -> String {
    use base64::Engine as _;
    use hdrhistogram::serialization::{Serializer as _, V2DeflateSerializer};
    let mut buf = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut buf)
        .expect("serializing a histogram into memory");
    base64::engine::general_purpose::STANDARD.encode(buf)
}

/// Reads a histogram written by [`hdr_text`]; `what` (a path, a field)
/// names it in the error.
pub fn parse_hdr(text: &str, what: &str) -> Result<Histogram<u64>> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| anyhow::anyhow!("{what}: not a base64 HdrHistogram: {e}"))?;
    hdrhistogram::serialization::Deserializer::new()
        .deserialize(&mut std::io::Cursor::new(bytes))
        .map_err(|e| anyhow::anyhow!("{what}: not an HdrHistogram V2 encoding: {e}"))
}

/// Reads a `.hdr` file (see [`hdr_text`]).
pub fn read_hdr(path: &Path) -> Result<Histogram<u64>> {
    let text = fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    parse_hdr(&text, &path.display().to_string())
}

/// Parses the (value, percentile) rows of an `.hgrm` file.
pub fn parse_hgrm(text: &str) -> Vec<(f64, f64)> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let v = it.next()?.parse::<f64>().ok()?;
            let p = it.next()?.parse::<f64>().ok()?;
            Some((v, p))
        })
        .collect()
}

/// The per-second time series as CSV.
///
/// One row per bucket of `bucket_s` seconds since the start (warmup
/// included); rates are per second over the part of the bucket the run
/// covered (`total_s` ends the last one).
pub fn timeseries_csv(
    stats: &SenderStats,
    loss: &LossStats,
    warmup_secs: f64,
    bucket_s: f64,
    total_s: f64,
) -> String {
    let n = stats.seconds.len().max(loss.seconds.len());
    let mut rows = Vec::with_capacity(n);
    for i in 0..n {
        let t = i as f64 * bucket_s;
        if t >= total_s && i > 0 {
            // Puts that straddled the end: not part of the measured run.
            break;
        }
        let covered = (total_s - t).min(bucket_s).max(bucket_s * 0.01);
        let b = stats.seconds.get(i);
        let l = loss.seconds.get(i).copied().unwrap_or_default();
        let (msgs, bytes, errors) = b.map_or((0, 0, 0), |b| (b.msgs, b.bytes, b.errors));
        let (p50, p99, max) = b.filter(|b| !b.hist.is_empty()).map_or((0, 0, 0), |b| {
            (
                b.hist.value_at_quantile(0.5),
                b.hist.value_at_quantile(0.99),
                b.hist.max(),
            )
        });
        let warm = (t < warmup_secs) as u8;
        rows.push([
            format!("{t:.3}"),
            format!("{bucket_s:.3}"),
            warm.to_string(),
            msgs.to_string(),
            format!("{:.1}", msgs as f64 / covered),
            format!("{:.3}", bytes as f64 / (1024.0 * 1024.0) / covered),
            p50.to_string(),
            p99.to_string(),
            max.to_string(),
            errors.to_string(),
            format!("{:.3}", l.max_ms),
            l.max_msgs.to_string(),
            l.max_bytes.to_string(),
        ]);
    }
    csv_text(
        &[
            "t_s",
            "interval_s",
            "warmup",
            "msgs",
            "msgs_per_s",
            "mib_per_s",
            "p50_us",
            "p99_us",
            "max_us",
            "errors",
            "loss_max_ms",
            "loss_max_msgs",
            "loss_max_bytes",
        ],
        rows,
    )
}

/// One parsed row of timeseries.csv.
#[derive(Debug, Clone, Copy, Default)]
pub struct TimeRow {
    /// Start of the bucket, seconds since the run started.
    pub t_s: f64,
    /// Bucket length, seconds.
    pub interval_s: f64,
    /// Messages that second.
    pub msgs_per_s: f64,
    /// p99 ack latency that second, µs.
    pub p99_us: f64,
}

/// Parses timeseries.csv.
pub fn parse_timeseries(text: &str) -> Vec<TimeRow> {
    csv_columns(text, &["t_s", "interval_s", "msgs_per_s", "p99_us"])
        .into_iter()
        .map(|f| TimeRow {
            t_s: f[0],
            interval_s: f[1],
            msgs_per_s: f[2],
            p99_us: f[3],
        })
        .collect()
}

/// Writes summary.json, timeseries.csv, ack_latency.hgrm and .hdr (and
/// intended_latency.hgrm and .hdr for rate-limited runs) and command.txt
/// into `dir`.
pub fn write_run_outputs(
    dir: &Path,
    summary: &Summary,
    stats: &SenderStats,
    loss: &LossStats,
    total_s: f64,
) -> Result<()> {
    write_run_outputs_with(dir, summary, stats, loss, total_s, serde_json::Map::new())
}

/// [`write_run_outputs`] with `extra` fields added at the top level of
/// summary.json (e.g. a `--target` run's `omb` object).
pub fn write_run_outputs_with(
    dir: &Path,
    summary: &Summary,
    stats: &SenderStats,
    loss: &LossStats,
    total_s: f64,
    extra: serde_json::Map<String, serde_json::Value>,
) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("create run folder {}", dir.display()))?;
    let mut json = serde_json::to_value(summary).context("summary.json")?;
    if let Some(obj) = json.as_object_mut() {
        obj.extend(extra);
    }
    crate::util::write_json(&dir.join("summary.json"), &json)?;
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        fs::write(&path, text).with_context(|| format!("write {}", path.display()))
    };
    write(
        "timeseries.csv",
        timeseries_csv(
            stats,
            loss,
            summary.config.workload.warmup_secs,
            summary.config.workload.timeseries_ms as f64 / 1000.0,
            total_s,
        ),
    )?;
    write("ack_latency.hgrm", hgrm_text(&stats.ack))?;
    write("ack_latency.hdr", hdr_text(&stats.ack))?;
    if summary.intended_latency_us.is_some() {
        write("intended_latency.hgrm", hgrm_text(&stats.intended))?;
        write("intended_latency.hdr", hdr_text(&stats.intended))?;
    }
    write("command.txt", format!("{}\n", summary.command))?;
    Ok(())
}

/// The results table (Markdown, also readable as plain text).
pub fn table(rows: &[&Summary]) -> String {
    let header = [
        "config",
        "msgs/s",
        "MiB/s",
        "p50 µs",
        "p99 µs",
        "p999 µs",
        "max loss msgs / ms",
        "vs device",
    ];
    let mut cells: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for s in rows {
        cells.push(vec![
            s.label.clone(),
            thousands(s.throughput_msgs_per_s),
            format!("{:.1}", s.throughput_mib_per_s),
            thousands(s.ack_latency_us.p50 as f64),
            thousands(s.ack_latency_us.p99 as f64),
            thousands(s.ack_latency_us.p999 as f64),
            s.loss_cell(),
            s.device_cell(),
        ]);
    }
    render_table(&cells)
}

/// Why a run acknowledged nothing, from its put errors (status -> count).
pub fn why_nothing_acked<'a, I>(errors: I) -> String
where
    I: IntoIterator<Item = (&'a String, &'a u64)>,
{
    let failed: Vec<String> = errors
        .into_iter()
        .map(|(status, n)| format!("{n} {status}"))
        .collect();
    if failed.is_empty() {
        "no put completed".to_string()
    } else {
        format!("every put failed ({})", failed.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recorder::latency_hist;

    #[test]
    fn hgrm_round_trips() {
        let mut h = latency_hist();
        for v in 1..=10_000u64 {
            h.record(v).unwrap();
        }
        let text = hgrm_text(&h);
        assert!(text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)\n\n"));
        assert!(text.contains("#[Max     =    10007.000, Total count    =        10000]"));
        assert!(text.contains("SubBuckets     =         2048]"));
        let rows = parse_hgrm(&text);
        assert!(rows.len() > 50);
        assert_eq!(rows.first().unwrap().1, 0.0);
        assert_eq!(rows.last().unwrap().1, 1.0);
        // The last row carries the full count and no 1/(1-p) column.
        let last = text.lines().rfind(|l| !l.starts_with('#')).unwrap();
        assert_eq!(last.split_whitespace().count(), 3);
        assert!(last.ends_with("10000"));
        // Monotone in both columns.
        assert!(rows
            .windows(2)
            .all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
    }

    #[test]
    fn hdr_round_trips_exactly() {
        let mut h = latency_hist();
        for v in [1u64, 7, 999, 1000, 1001, 123_456, 3_000_000_000] {
            h.record(v).unwrap();
        }
        let back = parse_hdr(&hdr_text(&h), "x").unwrap();
        assert!(back == h);
        assert_eq!(back.len(), 7);
        let e = parse_hdr("not base64!", "dir/ack_latency.hdr").unwrap_err();
        assert!(format!("{e:#}").contains("dir/ack_latency.hdr"), "{e:#}");
    }

    #[test]
    fn empty_hgrm_is_valid() {
        let text = hgrm_text(&latency_hist());
        assert!(text.contains("Total count    =            0"));
    }

    #[test]
    fn table_aligns() {
        let t = render_table(&[
            vec!["a".into(), "bb".into()],
            vec!["ccc".into(), "1".into()],
        ]);
        assert_eq!(t, "| a   | bb |\n|-----|---:|\n| ccc |  1 |\n");
    }

    #[test]
    fn timeseries_parses_back() {
        let mut s = SenderStats::default();
        s.record_ack(0, false, 10, None, 1024);
        s.record_ack(1, true, 20, None, 1024);
        let loss = LossStats::default();
        let csv = timeseries_csv(&s, &loss, 1.0, 1.0, 1.5);
        let rows = parse_timeseries(&csv);
        assert_eq!(rows.len(), 2);
        assert!(csv
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("0.000,1.000,1,1,1.0,"));
        // The last bucket is half covered: 1 msg in 0.5 s.
        assert!(csv
            .lines()
            .nth(2)
            .unwrap()
            .starts_with("1.000,1.000,0,1,2.0,"));
        assert_eq!(rows[1].msgs_per_s, 2.0);
        assert_eq!(rows[1].t_s, 1.0);
    }
}
