//! A `--target` run's counts by wall-clock second (series.json): sends
//! acknowledged and failed, body bytes, send latency, messages consumed
//! and their end-to-end latency, each bucketed by the unix second in which
//! the answer (or the consumption) came, warmup included. Runs on several
//! load hosts (`--start-at`) line up by these seconds, so `mqlab merge`
//! adds them second by second: counts add, histograms (HdrHistogram, µs,
//! 2 significant digits, stored as `.hdr` text) add exactly.
//!
//! The file also carries the run's wall-clock start, the start of its
//! measurement (after the warmup) and its end, from which a merge takes
//! its measured window.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::recorder::{coarse_hist, SecondBucket};
use crate::summary::{hdr_text, parse_hdr};

/// The file name in a run folder.
pub const SERIES_FILE: &str = "series.json";

/// Format version of series.json.
pub const SERIES_VERSION: u32 = 1;

/// One wall-clock second.
#[derive(Debug, Clone)]
pub struct Second {
    /// SEND_OK answers.
    pub msgs: u64,
    /// Their body bytes.
    pub bytes: u64,
    /// Failed sends (any code, timeouts, connection errors).
    pub errors: u64,
    /// Send latency of the SEND_OK answers, µs.
    pub pub_latency: Histogram<u64>,
    /// Messages consumed.
    pub consumed: u64,
    /// Their body bytes.
    pub consumed_bytes: u64,
    /// End-to-end latency (born to consumed) of those, µs.
    pub e2e: Histogram<u64>,
}

impl Default for Second {
    fn default() -> Self {
        Second {
            msgs: 0,
            bytes: 0,
            errors: 0,
            pub_latency: coarse_hist(),
            consumed: 0,
            consumed_bytes: 0,
            e2e: coarse_hist(),
        }
    }
}

/// Wall-clock times of a run, µs since the epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WallTimes {
    /// When the producers started.
    pub start_unix_us: u64,
    /// When the measurement started (after the warmup).
    pub measure_from_unix_us: u64,
    /// When the measurement ended.
    pub measured_end_unix_us: u64,
}

/// Seconds by unix second.
#[derive(Debug, Clone, Default)]
pub struct WallSeries {
    /// The seconds that saw anything, by unix second.
    pub seconds: BTreeMap<u64, Second>,
}

/// series.json as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeriesFile {
    /// [`SERIES_VERSION`].
    pub version: u32,
    /// The run's wall-clock times.
    pub times: WallTimes,
    /// One entry per second that saw anything, in order.
    pub seconds: Vec<SecondJson>,
}

/// One second in series.json.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SecondJson {
    /// Unix second.
    pub unix_s: u64,
    /// SEND_OK answers.
    pub msgs: u64,
    /// Their body bytes.
    pub bytes: u64,
    /// Failed sends.
    pub errors: u64,
    /// Messages consumed.
    pub consumed: u64,
    /// Their body bytes.
    pub consumed_bytes: u64,
    /// Send latency, µs (`.hdr` text).
    pub pub_latency_hdr: String,
    /// End-to-end latency, µs (`.hdr` text).
    pub e2e_latency_hdr: String,
}

/// The unix second of a wall-clock time in µs.
pub fn unix_second(wall_us: u64) -> u64 {
    wall_us / 1_000_000
}

impl WallSeries {
    /// The bucket of unix second `s`.
    pub fn second(&mut self, s: u64) -> &mut Second {
        self.seconds.entry(s).or_default()
    }

    /// Records a SEND_OK answer that came at `wall_us`.
    pub fn record_ack(&mut self, wall_us: u64, latency_us: u64, bytes: u64) {
        let b = self.second(unix_second(wall_us));
        b.msgs += 1;
        b.bytes += bytes;
        b.pub_latency.saturating_record(latency_us.max(1));
    }

    /// Records a failed send that ended at `wall_us`.
    pub fn record_error(&mut self, wall_us: u64) {
        self.second(unix_second(wall_us)).errors += 1;
    }

    /// Records a message consumed at `wall_us`.
    pub fn record_consumed(&mut self, wall_us: u64, e2e_us: u64, bytes: u64) {
        let b = self.second(unix_second(wall_us));
        b.consumed += 1;
        b.consumed_bytes += bytes;
        b.e2e.saturating_record(e2e_us.max(1));
    }

    /// Adds `other` second by second.
    pub fn add(&mut self, other: &WallSeries) -> Result<()> {
        for (&s, o) in &other.seconds {
            let b = self.second(s);
            b.msgs += o.msgs;
            b.bytes += o.bytes;
            b.errors += o.errors;
            b.consumed += o.consumed;
            b.consumed_bytes += o.consumed_bytes;
            b.pub_latency
                .add(&o.pub_latency)
                .map_err(|e| anyhow::anyhow!("second {s}: send latency: {e:?}"))?;
            b.e2e
                .add(&o.e2e)
                .map_err(|e| anyhow::anyhow!("second {s}: end-to-end latency: {e:?}"))?;
        }
        Ok(())
    }

    /// Totals over every second: (msgs, bytes, errors, consumed).
    pub fn totals(&self) -> (u64, u64, u64, u64) {
        self.seconds.values().fold((0, 0, 0, 0), |t, b| {
            (
                t.0 + b.msgs,
                t.1 + b.bytes,
                t.2 + b.errors,
                t.3 + b.consumed,
            )
        })
    }

    /// series.json's content.
    pub fn to_file(&self, times: WallTimes) -> SeriesFile {
        SeriesFile {
            version: SERIES_VERSION,
            times,
            seconds: self
                .seconds
                .iter()
                .map(|(&unix_s, b)| SecondJson {
                    unix_s,
                    msgs: b.msgs,
                    bytes: b.bytes,
                    errors: b.errors,
                    consumed: b.consumed,
                    consumed_bytes: b.consumed_bytes,
                    pub_latency_hdr: hdr_text(&b.pub_latency),
                    e2e_latency_hdr: hdr_text(&b.e2e),
                })
                .collect(),
        }
    }

    /// The series of a series.json (`what` names it in errors).
    pub fn from_file(f: &SeriesFile, what: &str) -> Result<WallSeries> {
        if f.version != SERIES_VERSION {
            anyhow::bail!(
                "{what}: version {} (this mqlab reads version {SERIES_VERSION})",
                f.version
            );
        }
        let mut out = WallSeries::default();
        for s in &f.seconds {
            let field = |name: &str| format!("{what}: second {}: {name}", s.unix_s);
            let b = Second {
                msgs: s.msgs,
                bytes: s.bytes,
                errors: s.errors,
                consumed: s.consumed,
                consumed_bytes: s.consumed_bytes,
                pub_latency: parse_hdr(&s.pub_latency_hdr, &field("pub_latency_hdr"))?,
                e2e: parse_hdr(&s.e2e_latency_hdr, &field("e2e_latency_hdr"))?,
            };
            if out.seconds.insert(s.unix_s, b).is_some() {
                anyhow::bail!("{what}: second {} appears twice", s.unix_s);
            }
        }
        Ok(out)
    }

    /// The time-series buckets (1 s each) from unix second `first` on, as
    /// an in-process run's `SenderStats::seconds`.
    pub fn buckets_from(&self, first: u64) -> Vec<SecondBucket> {
        let Some(&last) = self.seconds.keys().next_back() else {
            return Vec::new();
        };
        (first..=last)
            .map(|s| match self.seconds.get(&s) {
                Some(b) => SecondBucket {
                    msgs: b.msgs,
                    bytes: b.bytes,
                    errors: b.errors,
                    hist: b.pub_latency.clone(),
                },
                None => SecondBucket {
                    msgs: 0,
                    bytes: 0,
                    errors: 0,
                    hist: coarse_hist(),
                },
            })
            .collect()
    }

    /// Backlog rows (ms since unix second `first`, produced so far,
    /// consumed so far) at the end of each second.
    pub fn backlog_rows(&self, first: u64) -> Vec<(u64, u64, u64)> {
        let (mut p, mut c) = (0, 0);
        self.seconds
            .range(first..)
            .map(|(&s, b)| {
                p += b.msgs;
                c += b.consumed;
                ((s + 1 - first) * 1000, p, c)
            })
            .collect()
    }
}

/// Writes series.json into `dir`.
pub fn write(dir: &Path, series: &WallSeries, times: WallTimes) -> Result<()> {
    crate::util::write_json(&dir.join(SERIES_FILE), &series.to_file(times))
}

/// Reads `dir`/series.json.
pub fn read(dir: &Path) -> Result<(WallSeries, WallTimes)> {
    let path = dir.join(SERIES_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "read {} (merge takes the folders of `mqlab run --target` runs)",
            path.display()
        )
    })?;
    let what = path.display().to_string();
    let f: SeriesFile = serde_json::from_str(&text).with_context(|| format!("parse {what}"))?;
    Ok((WallSeries::from_file(&f, &what)?, f.times))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_round_trip_and_add() {
        let mut a = WallSeries::default();
        a.record_ack(5_000_000, 100, 10);
        a.record_ack(5_999_999, 300, 10);
        a.record_error(6_000_000);
        a.record_consumed(7_500_000, 2000, 10);
        let times = WallTimes {
            start_unix_us: 5_000_000,
            measure_from_unix_us: 5_500_000,
            measured_end_unix_us: 7_000_000,
        };
        let back = WallSeries::from_file(&a.to_file(times), "t").unwrap();
        assert_eq!(back.totals(), (2, 20, 1, 1));
        assert_eq!(back.seconds[&5].pub_latency.len(), 2);
        let mut sum = back.clone();
        sum.add(&a).unwrap();
        assert_eq!(sum.totals(), (4, 40, 2, 2));
        let buckets = sum.buckets_from(4);
        assert_eq!(buckets.len(), 4);
        assert_eq!(
            buckets.iter().map(|b| b.msgs).collect::<Vec<_>>(),
            [0, 4, 0, 0]
        );
        assert_eq!(buckets[2].errors, 2);
        assert_eq!(
            sum.backlog_rows(5),
            [(1000, 4, 0), (2000, 4, 0), (3000, 4, 2)]
        );
    }
}
