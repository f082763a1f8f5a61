//! What `mqlab delay` writes and reads back: each scheduler's summary
//! (lateness, bytes per timer, losses), its lateness histogram and time
//! series, and how a folder is recognised as a delay output.

use std::path::Path;

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use mqlab_engine::delay::DelayStats;
use serde::{Deserialize, Serialize};

use super::request::Pattern;

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

/// Lateness per bucket of delivery time: (seconds since the first due
/// time, delivered, p50, p99, max).
pub(super) fn time_series(
    points: &[(i64, i64)],
    first_due_ms: i64,
) -> Vec<(f64, u64, u64, u64, u64)> {
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

/// Writes `text` to `path`; the error names both.
pub(super) fn write_text(path: &Path, text: String) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))
}

/// Reads `path`; the error names it.
pub(super) fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))
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
