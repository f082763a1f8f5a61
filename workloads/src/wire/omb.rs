//! OpenMessaging Benchmark's result file for a `--target` run (and a
//! merge of them): omb-result.json, also under `omb` in summary.json,
//! with OMB's `TestResult` field names, units and meanings where mqlab
//! measures the same thing:
//!
//! - per-period lists (`publishRate`, `publishErrorRate`, `consumeRate`,
//!   `backlog`, `publishLatencyAvg`/`50pct`/.../`Max`,
//!   `endToEndLatencyAvg`/.../`Max`), one entry per wall-clock second the
//!   measured run overlaps (OMB's period is its 10 s reporting interval;
//!   `periodSecs` says which); rates are per second of that second the run
//!   covered (a second cut by the start or the end counts over its part);
//! - `aggregated*` over the measured run from the run's full-precision
//!   histograms: publish latency (ms), publish delay (µs, the intended
//!   send time to the send: rate-limited runs only, else 0), end-to-end
//!   latency (ms, born to consumed), and their quantile maps (percentile ->
//!   value).
//!
//! Backlog is, as OMB counts it with one subscription, messages
//! acknowledged minus messages consumed so far (this run's consumers read
//! the whole topic from where it ended when they started).

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::series::{WallSeries, WallTimes};
use crate::spec::Workload;

/// The file name in a run folder.
pub const OMB_FILE: &str = "omb-result.json";

/// OMB's `TestResult`, as far as mqlab measures it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct OmbResult {
    /// The workload's name.
    pub workload: String,
    /// The driver: the target, `rocketmq://HOST:PORT`.
    pub driver: String,
    pub message_size: u64,
    pub topics: u32,
    /// Queues of the topic.
    pub partitions: u32,
    pub producers_per_topic: u64,
    /// Pull loops (one per queue), 0 without consumers.
    pub consumers_per_topic: u64,
    /// Length of one entry of the lists, s (OMB: 10).
    pub period_secs: f64,
    pub publish_rate: Vec<f64>,
    pub publish_error_rate: Vec<f64>,
    pub consume_rate: Vec<f64>,
    pub backlog: Vec<u64>,
    pub publish_latency_avg: Vec<f64>,
    pub publish_latency_50pct: Vec<f64>,
    pub publish_latency_75pct: Vec<f64>,
    pub publish_latency_95pct: Vec<f64>,
    pub publish_latency_99pct: Vec<f64>,
    pub publish_latency_999pct: Vec<f64>,
    pub publish_latency_9999pct: Vec<f64>,
    pub publish_latency_99999pct: Vec<f64>,
    pub publish_latency_max: Vec<f64>,
    pub aggregated_publish_latency_avg: f64,
    pub aggregated_publish_latency_50pct: f64,
    pub aggregated_publish_latency_75pct: f64,
    pub aggregated_publish_latency_95pct: f64,
    pub aggregated_publish_latency_99pct: f64,
    pub aggregated_publish_latency_999pct: f64,
    pub aggregated_publish_latency_9999pct: f64,
    pub aggregated_publish_latency_99999pct: f64,
    pub aggregated_publish_latency_max: f64,
    pub aggregated_publish_delay_latency_avg: f64,
    pub aggregated_publish_delay_latency_50pct: u64,
    pub aggregated_publish_delay_latency_75pct: u64,
    pub aggregated_publish_delay_latency_95pct: u64,
    pub aggregated_publish_delay_latency_99pct: u64,
    pub aggregated_publish_delay_latency_999pct: u64,
    pub aggregated_publish_delay_latency_9999pct: u64,
    pub aggregated_publish_delay_latency_99999pct: u64,
    pub aggregated_publish_delay_latency_max: u64,
    pub aggregated_publish_latency_quantiles: BTreeMap<String, f64>,
    pub aggregated_publish_delay_latency_quantiles: BTreeMap<String, u64>,
    pub end_to_end_latency_avg: Vec<f64>,
    pub end_to_end_latency_50pct: Vec<f64>,
    pub end_to_end_latency_75pct: Vec<f64>,
    pub end_to_end_latency_95pct: Vec<f64>,
    pub end_to_end_latency_99pct: Vec<f64>,
    pub end_to_end_latency_999pct: Vec<f64>,
    pub end_to_end_latency_9999pct: Vec<f64>,
    pub end_to_end_latency_99999pct: Vec<f64>,
    pub end_to_end_latency_max: Vec<f64>,
    pub aggregated_end_to_end_latency_quantiles: BTreeMap<String, f64>,
    pub aggregated_end_to_end_latency_avg: f64,
    pub aggregated_end_to_end_latency_50pct: f64,
    pub aggregated_end_to_end_latency_75pct: f64,
    pub aggregated_end_to_end_latency_95pct: f64,
    pub aggregated_end_to_end_latency_99pct: f64,
    pub aggregated_end_to_end_latency_999pct: f64,
    pub aggregated_end_to_end_latency_9999pct: f64,
    pub aggregated_end_to_end_latency_99999pct: f64,
    pub aggregated_end_to_end_latency_max: f64,
}

/// The quantiles OMB reports, in its field order after `avg`.
const QS: [f64; 7] = [0.5, 0.75, 0.95, 0.99, 0.999, 0.9999, 0.99999];

/// Avg, the seven quantiles and max of `h` in µs (zeros when empty).
fn stats_us(h: &Histogram<u64>) -> (f64, [u64; 7], u64) {
    if h.is_empty() {
        return (0.0, [0; 7], 0);
    }
    (h.mean(), QS.map(|q| h.value_at_quantile(q)), h.max())
}

/// Percentile (as Java prints a double: `99.9`, `50.0`) -> value, µs.
fn quantiles(h: &Histogram<u64>) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    if h.is_empty() {
        return out;
    }
    for v in h.iter_quantiles(1) {
        let p = v.quantile_iterated_to() * 100.0;
        out.insert(
            format!("{p:?}"),
            h.highest_equivalent(v.value_iterated_to()),
        );
    }
    out
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// What a run (or a merge) hands over for its OMB result.
#[derive(Debug)]
pub struct OmbInputs<'a> {
    /// The workload (name, message size, queues, producers).
    pub workload: &'a Workload,
    /// The target.
    pub driver: &'a str,
    /// Whether consumers ran.
    pub consumers: bool,
    /// The counts by wall-clock second.
    pub series: &'a WallSeries,
    /// The run's wall-clock times.
    pub times: WallTimes,
    /// Publish latency after the warmup, µs.
    pub publish: &'a Histogram<u64>,
    /// Publish delay after the warmup, µs (empty unless rate-limited).
    pub delay: &'a Histogram<u64>,
    /// End-to-end latency after the warmup, µs (None without consumers).
    pub e2e: Option<&'a Histogram<u64>>,
}

/// The OMB result of a run.
pub fn result(i: &OmbInputs<'_>) -> OmbResult {
    let w = i.workload;
    let mut r = OmbResult {
        workload: w.name.clone(),
        driver: i.driver.to_string(),
        message_size: w.msg_size as u64,
        topics: 1,
        partitions: w.queues,
        producers_per_topic: w.producers as u64,
        consumers_per_topic: if i.consumers { w.queues as u64 } else { 0 },
        period_secs: 1.0,
        ..OmbResult::default()
    };
    // The seconds the measured run overlaps, each over the part of it the
    // run covered (slivers under 0.1 s left out: their rates are noise).
    let t = i.times;
    let first = t.measure_from_unix_us / 1_000_000;
    let end = t.measured_end_unix_us.div_ceil(1_000_000);
    let (mut produced, mut consumed) = (0u64, 0u64);
    let empty = super::series::Second::default();
    for s in i.series.seconds.keys().next().copied().unwrap_or(first)..end {
        let b = i.series.seconds.get(&s).unwrap_or(&empty);
        produced += b.msgs;
        consumed += b.consumed;
        let (from, to) = (s * 1_000_000, (s + 1) * 1_000_000);
        let covered = to.min(t.measured_end_unix_us) as f64 - from.max(t.start_unix_us) as f64;
        if s < first || covered < 100_000.0 {
            continue;
        }
        let per_s = |n: u64| n as f64 * 1e6 / covered;
        r.publish_rate.push(per_s(b.msgs));
        r.publish_error_rate.push(per_s(b.errors));
        r.consume_rate.push(per_s(b.consumed));
        r.backlog.push(produced.saturating_sub(consumed));
        let (avg, q, max) = stats_us(&b.pub_latency);
        r.publish_latency_avg.push(avg / 1000.0);
        let lists = [
            &mut r.publish_latency_50pct,
            &mut r.publish_latency_75pct,
            &mut r.publish_latency_95pct,
            &mut r.publish_latency_99pct,
            &mut r.publish_latency_999pct,
            &mut r.publish_latency_9999pct,
            &mut r.publish_latency_99999pct,
        ];
        for (l, v) in lists.into_iter().zip(q) {
            l.push(ms(v));
        }
        r.publish_latency_max.push(ms(max));
        if i.consumers {
            let (avg, q, max) = stats_us(&b.e2e);
            r.end_to_end_latency_avg.push(avg / 1000.0);
            let lists = [
                &mut r.end_to_end_latency_50pct,
                &mut r.end_to_end_latency_75pct,
                &mut r.end_to_end_latency_95pct,
                &mut r.end_to_end_latency_99pct,
                &mut r.end_to_end_latency_999pct,
                &mut r.end_to_end_latency_9999pct,
                &mut r.end_to_end_latency_99999pct,
            ];
            for (l, v) in lists.into_iter().zip(q) {
                l.push(ms(v));
            }
            r.end_to_end_latency_max.push(ms(max));
        }
    }
    let (avg, q, max) = stats_us(i.publish);
    r.aggregated_publish_latency_avg = avg / 1000.0;
    [
        r.aggregated_publish_latency_50pct,
        r.aggregated_publish_latency_75pct,
        r.aggregated_publish_latency_95pct,
        r.aggregated_publish_latency_99pct,
        r.aggregated_publish_latency_999pct,
        r.aggregated_publish_latency_9999pct,
        r.aggregated_publish_latency_99999pct,
    ] = q.map(ms);
    r.aggregated_publish_latency_max = ms(max);
    r.aggregated_publish_latency_quantiles = quantiles(i.publish)
        .into_iter()
        .map(|(k, v)| (k, ms(v)))
        .collect();
    let (avg, q, max) = stats_us(i.delay);
    r.aggregated_publish_delay_latency_avg = avg;
    [
        r.aggregated_publish_delay_latency_50pct,
        r.aggregated_publish_delay_latency_75pct,
        r.aggregated_publish_delay_latency_95pct,
        r.aggregated_publish_delay_latency_99pct,
        r.aggregated_publish_delay_latency_999pct,
        r.aggregated_publish_delay_latency_9999pct,
        r.aggregated_publish_delay_latency_99999pct,
    ] = q;
    r.aggregated_publish_delay_latency_max = max;
    r.aggregated_publish_delay_latency_quantiles = quantiles(i.delay);
    if let Some(e) = i.e2e {
        let (avg, q, max) = stats_us(e);
        r.aggregated_end_to_end_latency_avg = avg / 1000.0;
        [
            r.aggregated_end_to_end_latency_50pct,
            r.aggregated_end_to_end_latency_75pct,
            r.aggregated_end_to_end_latency_95pct,
            r.aggregated_end_to_end_latency_99pct,
            r.aggregated_end_to_end_latency_999pct,
            r.aggregated_end_to_end_latency_9999pct,
            r.aggregated_end_to_end_latency_99999pct,
        ] = q.map(ms);
        r.aggregated_end_to_end_latency_max = ms(max);
        r.aggregated_end_to_end_latency_quantiles =
            quantiles(e).into_iter().map(|(k, v)| (k, ms(v))).collect();
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recorder::latency_hist;
    use crate::spec::{Overrides, SpecFile};

    #[test]
    fn fields_carry_ombs_names_and_units() {
        let w = Workload::resolve_within(
            &SpecFile::default(),
            None,
            None,
            &Overrides::default(),
            Some("w"),
            1 << 20,
        )
        .unwrap();
        let mut series = WallSeries::default();
        // Second 10 is half warmup, 11 measured, 12 half measured, 13 past
        // the end.
        for (s, n) in [(10u64, 5u64), (11, 100), (12, 200), (13, 7)] {
            for k in 0..n {
                series.record_ack(s * 1_000_000 + k, 1000 + k, 1024);
            }
        }
        for k in 0..150 {
            series.record_consumed(12_000_000 + k, 5000, 1024);
        }
        series.record_error(11_500_000);
        let (mut publish, mut e2e) = (latency_hist(), latency_hist());
        for v in 1..=1000 {
            publish.record(v * 10).unwrap();
            e2e.record(v * 100).unwrap();
        }
        let r = result(&OmbInputs {
            workload: &w,
            driver: "rocketmq://127.0.0.1:9876",
            consumers: true,
            series: &series,
            times: WallTimes {
                start_unix_us: 10_000_000,
                measure_from_unix_us: 10_500_000,
                measured_end_unix_us: 12_500_000,
            },
            publish: &publish,
            delay: &latency_hist(),
            e2e: Some(&e2e),
        });
        assert_eq!(r.publish_rate, [5.0, 100.0, 400.0]);
        assert_eq!(r.publish_error_rate, [0.0, 1.0, 0.0]);
        assert_eq!(r.consume_rate, [0.0, 0.0, 300.0]);
        assert_eq!(r.backlog, [5, 105, 155]);
        assert!(r.publish_latency_max[1] >= 1.099 && r.publish_latency_max[1] < 1.11);
        assert_eq!(r.end_to_end_latency_50pct.len(), 3);
        assert!((r.aggregated_publish_latency_50pct - 5.0).abs() < 0.01);
        assert!((r.aggregated_end_to_end_latency_max - 100.0).abs() < 0.1);
        assert_eq!(r.aggregated_publish_delay_latency_max, 0);
        assert_eq!(r.consumers_per_topic, 8);
        let json = serde_json::to_value(&r).unwrap();
        for k in [
            "publishRate",
            "consumeRate",
            "backlog",
            "publishLatencyAvg",
            "publishLatency50pct",
            "publishLatency99pct",
            "publishLatency999pct",
            "publishLatencyMax",
            "aggregatedPublishLatencyAvg",
            "aggregatedPublishLatency50pct",
            "aggregatedPublishLatency99pct",
            "aggregatedPublishLatency999pct",
            "aggregatedPublishLatencyMax",
            "aggregatedPublishDelayLatency99pct",
            "aggregatedPublishLatencyQuantiles",
            "endToEndLatency99pct",
            "aggregatedEndToEndLatency999pct",
            "aggregatedEndToEndLatencyMax",
            "messageSize",
            "producersPerTopic",
        ] {
            assert!(json.get(k).is_some(), "{k} missing in {json}");
        }
        let q = &json["aggregatedPublishLatencyQuantiles"];
        assert!(q.get("50.0").is_some() && q.get("100.0").is_some(), "{q}");
    }
}
