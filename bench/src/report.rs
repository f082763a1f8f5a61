//! The peers report: runs of `mqlab-peers run` (one JSON line each, several
//! rounds interleaved) folded into `summary.json`, `table.md` and the chart
//! `peers.svg` / `peers.png`.
//!
//! Each configuration's figure is the median over its rounds (min and max
//! kept beside it). Ratios:
//! - mqlab vs each peer at the same durability class, concurrency and
//!   message size: the best mqlab configuration of that class (backend
//!   and put API: engine names ending in [`PUT_ASYNC_SUFFIX`] were driven
//!   through `Store::put_async`, the others through the blocking
//!   `Store::put`) over the peer;
//! - mqlab put_async over blocking put, same backend, class, C and size;
//! - mqlab vs the device of the same run: `group` over C x fdatasync/s at a
//!   batch of C records, `sync` over queue-depth-1 fdatasync/s at one
//!   record, `async` over buffered-write bandwidth in records/s.
//!
//! Charts are drawn with plotters and the DejaVu font compiled in (as the
//! `mqlab` CLI draws its charts), so they render without system fonts.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use mqlab::plot::{both_sized, pe, register_fonts, PALETTE};
use plotters::coord::Shift;
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::DeviceFigures;

/// Suffix of the engine name of an mqlab run driven through
/// `Store::put_async` (`mqlab-peers run --api async`): `mqlab-pwrite` ->
/// `mqlab-pwrite-put_async`, `mqlab-pwrite-pool` ->
/// `mqlab-pwrite-pool-put_async`.
pub const PUT_ASYNC_SUFFIX: &str = "-put_async";

/// The put API an mqlab engine name says it was driven through:
/// `put_async` or `put` (blocking); "" for a peer.
pub fn mqlab_api(engine: &str) -> &'static str {
    if !engine.starts_with("mqlab-") {
        ""
    } else if engine.ends_with(PUT_ASYNC_SUFFIX) {
        "put_async"
    } else {
        "put"
    }
}

/// One measured run (one line of the runs file).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct EngineRun {
    /// Engine name (`mqlab-pwrite`, `mqlab-uring-pool`, `rocketmq-store`, ...).
    pub engine: String,
    /// Durability class: `sync` (fdatasync per message), `group` (ack after
    /// a shared fdatasync), `async` (ack before durability).
    pub flush: String,
    /// Puts in flight.
    pub concurrency: usize,
    /// Body bytes.
    pub msg_bytes: usize,
    /// Acknowledged puts per second.
    pub msgs_per_s: f64,
    /// Median ack latency, µs.
    pub p50_us: u64,
    /// 99th percentile ack latency, µs.
    pub p99_us: u64,
    /// Round number of the interleaved schedule.
    #[serde(default)]
    pub round: u32,
    /// Commit-log record bytes per message (mqlab only; 0 for peers).
    #[serde(default)]
    pub record_bytes: usize,
}

/// One configuration over its rounds (the `engines` array of summary.json).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct EngineSummary {
    /// Engine name.
    pub engine: String,
    /// `sync`, `group` or `async`.
    pub flush: String,
    /// Puts in flight.
    pub concurrency: usize,
    /// Body bytes.
    pub msg_bytes: usize,
    /// Median over rounds of msg/s.
    pub msgs_per_s: f64,
    /// Median over rounds of p50, µs.
    pub p50_us: u64,
    /// Median over rounds of p99, µs.
    pub p99_us: u64,
    /// Rounds measured.
    pub rounds: usize,
    /// Lowest msg/s of a round.
    pub msgs_per_s_min: f64,
    /// Highest msg/s of a round.
    pub msgs_per_s_max: f64,
}

/// mqlab over one peer.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PeerRatio {
    /// `group` or `async`.
    pub flush: String,
    /// Puts in flight.
    pub concurrency: usize,
    /// Body bytes.
    pub msg_bytes: usize,
    /// The peer.
    pub peer: String,
    /// Its msg/s.
    pub peer_msgs_per_s: f64,
    /// Its p99, µs.
    pub peer_p99_us: u64,
    /// The best mqlab configuration of the class.
    pub mqlab: String,
    /// Its put API (`put` or `put_async`, see [`mqlab_api`]).
    #[serde(default)]
    pub mqlab_api: String,
    /// Its msg/s.
    pub mqlab_msgs_per_s: f64,
    /// Its p99, µs.
    pub mqlab_p99_us: u64,
    /// mqlab msg/s over the peer's.
    pub ratio: f64,
}

/// An mqlab backend driven through `put_async` over the same backend
/// driven through the blocking `put`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ApiRatio {
    /// The blocking engine name (`mqlab-pwrite`, `mqlab-pwrite-pool`, ...).
    pub engine: String,
    /// `sync`, `group` or `async`.
    pub flush: String,
    /// Puts in flight.
    pub concurrency: usize,
    /// Body bytes.
    pub msg_bytes: usize,
    /// Blocking put, msg/s.
    pub put_msgs_per_s: f64,
    /// Blocking put, p99 µs.
    pub put_p99_us: u64,
    /// put_async, msg/s.
    pub put_async_msgs_per_s: f64,
    /// put_async, p99 µs.
    pub put_async_p99_us: u64,
    /// put_async msg/s over blocking put msg/s (medians over rounds).
    pub ratio: f64,
}

/// An mqlab configuration over its device bound.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct DeviceRatio {
    /// mqlab engine.
    pub engine: String,
    /// `sync`, `group` or `async`.
    pub flush: String,
    /// Puts in flight.
    pub concurrency: usize,
    /// Body bytes.
    pub msg_bytes: usize,
    /// What the bound is.
    pub bound: String,
    /// The bound in msg/s.
    pub bound_msgs_per_s: f64,
    /// msg/s over the bound.
    pub ratio: f64,
    /// The target for this ratio.
    pub target: f64,
    /// p99 over the device's p99 at the matching batch (durable classes).
    pub p99_ratio: Option<f64>,
}

/// summary.json.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Summary {
    /// Every configuration, median over rounds.
    pub engines: Vec<EngineSummary>,
    /// The device figures of the same run.
    pub device: DeviceFigures,
    /// mqlab over each peer.
    pub peer_ratios: Vec<PeerRatio>,
    /// mqlab over the device.
    pub device_ratios: Vec<DeviceRatio>,
    /// mqlab put_async over blocking put.
    #[serde(default)]
    pub api_ratios: Vec<ApiRatio>,
}

/// The median of `v` (the mean of the middle two for an even count; 0
/// when empty).
pub fn median_f(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return 0.0;
    }
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Folds runs into the summary.
pub fn summarize(runs: &[EngineRun], device: &DeviceFigures) -> Summary {
    let mut groups: BTreeMap<(String, String, usize, usize), Vec<&EngineRun>> = BTreeMap::new();
    for r in runs {
        groups
            .entry((
                r.engine.clone(),
                r.flush.clone(),
                r.concurrency,
                r.msg_bytes,
            ))
            .or_default()
            .push(r);
    }
    let mut engines = Vec::new();
    let mut records: BTreeMap<usize, usize> = BTreeMap::new();
    for ((engine, flush, concurrency, msg_bytes), rs) in &groups {
        let rates: Vec<f64> = rs.iter().map(|r| r.msgs_per_s).collect();
        for r in rs.iter().filter(|r| r.record_bytes > 0) {
            records.insert(r.msg_bytes, r.record_bytes);
        }
        engines.push(EngineSummary {
            engine: engine.clone(),
            flush: flush.clone(),
            concurrency: *concurrency,
            msg_bytes: *msg_bytes,
            msgs_per_s: median_f(rates.clone()),
            p50_us: median_f(rs.iter().map(|r| r.p50_us as f64).collect()) as u64,
            p99_us: median_f(rs.iter().map(|r| r.p99_us as f64).collect()) as u64,
            rounds: rs.len(),
            msgs_per_s_min: rates.iter().copied().fold(f64::INFINITY, f64::min),
            msgs_per_s_max: rates.iter().copied().fold(0.0, f64::max),
        });
    }
    let is_mqlab = |e: &EngineSummary| e.engine.starts_with("mqlab-");
    let mut peer_ratios = Vec::new();
    for p in engines.iter().filter(|e| !is_mqlab(e)) {
        let best = engines
            .iter()
            .filter(|m| {
                is_mqlab(m)
                    && m.flush == p.flush
                    && m.concurrency == p.concurrency
                    && m.msg_bytes == p.msg_bytes
            })
            .max_by(|a, b| a.msgs_per_s.total_cmp(&b.msgs_per_s));
        if let Some(m) = best {
            peer_ratios.push(PeerRatio {
                flush: p.flush.clone(),
                concurrency: p.concurrency,
                msg_bytes: p.msg_bytes,
                peer: p.engine.clone(),
                peer_msgs_per_s: p.msgs_per_s,
                peer_p99_us: p.p99_us,
                mqlab: m.engine.clone(),
                mqlab_api: mqlab_api(&m.engine).into(),
                mqlab_msgs_per_s: m.msgs_per_s,
                mqlab_p99_us: m.p99_us,
                ratio: m.msgs_per_s / p.msgs_per_s.max(1e-9),
            });
        }
    }
    let mut api_ratios = Vec::new();
    for a in engines.iter().filter(|e| is_mqlab(e)) {
        let Some(base) = a.engine.strip_suffix(PUT_ASYNC_SUFFIX) else {
            continue;
        };
        let blocking = engines.iter().find(|b| {
            b.engine == base
                && b.flush == a.flush
                && b.concurrency == a.concurrency
                && b.msg_bytes == a.msg_bytes
        });
        if let Some(b) = blocking {
            api_ratios.push(ApiRatio {
                engine: base.into(),
                flush: a.flush.clone(),
                concurrency: a.concurrency,
                msg_bytes: a.msg_bytes,
                put_msgs_per_s: b.msgs_per_s,
                put_p99_us: b.p99_us,
                put_async_msgs_per_s: a.msgs_per_s,
                put_async_p99_us: a.p99_us,
                ratio: a.msgs_per_s / b.msgs_per_s.max(1e-9),
            });
        }
    }
    let mut device_ratios = Vec::new();
    for m in engines.iter().filter(|e| is_mqlab(e)) {
        let Some(&rec) = records.get(&m.msg_bytes) else {
            continue;
        };
        let (bound, value, target, p99) = match m.flush.as_str() {
            "group" => {
                let d = device.sync_at(rec * m.concurrency.max(1));
                (
                    format!(
                        "{} x fdatasync/s at {} B batches",
                        m.concurrency,
                        rec * m.concurrency.max(1)
                    ),
                    device.durable_msgs_bound(m.concurrency, rec),
                    0.8,
                    Some(m.p99_us as f64 / d.p99_us.max(1) as f64),
                )
            }
            "sync" => {
                let d = device.sync_at(rec);
                (
                    format!("qd1 fdatasync/s at {rec} B"),
                    d.ops_per_s,
                    0.9,
                    Some(m.p99_us as f64 / d.p99_us.max(1) as f64),
                )
            }
            _ => (
                format!(
                    "buffered write {:.0} MiB/s",
                    device.buffered_write_mib_per_s
                ),
                device.buffered_msgs_bound(rec),
                0.8,
                None,
            ),
        };
        device_ratios.push(DeviceRatio {
            engine: m.engine.clone(),
            flush: m.flush.clone(),
            concurrency: m.concurrency,
            msg_bytes: m.msg_bytes,
            bound,
            bound_msgs_per_s: value,
            ratio: m.msgs_per_s / value.max(1e-9),
            target,
            p99_ratio: p99,
        });
    }
    Summary {
        engines,
        device: device.clone(),
        peer_ratios,
        device_ratios,
        api_ratios,
    }
}

/// The markdown tables of a summary.
pub fn markdown(s: &Summary) -> String {
    let mut t = String::from("## Engines (median over rounds)\n\n| engine | flush | C | msg B | msg/s | (min-max) | p50 µs | p99 µs | rounds |\n|---|---|---:|---:|---:|---|---:|---:|---:|\n");
    for e in &s.engines {
        t.push_str(&format!(
            "| {} | {} | {} | {} | {:.0} | {:.0}-{:.0} | {} | {} | {} |\n",
            e.engine,
            e.flush,
            e.concurrency,
            e.msg_bytes,
            e.msgs_per_s,
            e.msgs_per_s_min,
            e.msgs_per_s_max,
            e.p50_us,
            e.p99_us,
            e.rounds
        ));
    }
    t.push_str("\n## mqlab over each peer (same durability, concurrency, size; target >= 2)\n\nbest mqlab: the fastest mqlab configuration of the class, backend and put API (`put`: blocking `Store::put`, one thread per put in flight; `put_async`: `Store::put_async`, C in flight from one thread, engine names ending in `-put_async`).\n\n| flush | C | msg B | peer | peer msg/s | peer p99 µs | best mqlab | API | mqlab msg/s | mqlab p99 µs | ratio |\n|---|---:|---:|---|---:|---:|---|---|---:|---:|---:|\n");
    for r in &s.peer_ratios {
        t.push_str(&format!(
            "| {} | {} | {} | {} | {:.0} | {} | {} | {} | {:.0} | {} | **{:.2}** |\n",
            r.flush,
            r.concurrency,
            r.msg_bytes,
            r.peer,
            r.peer_msgs_per_s,
            r.peer_p99_us,
            r.mqlab,
            r.mqlab_api,
            r.mqlab_msgs_per_s,
            r.mqlab_p99_us,
            r.ratio
        ));
    }
    if !s.api_ratios.is_empty() {
        t.push_str("\n## mqlab put_async over blocking put (same backend, flush, C, size)\n\n| engine | flush | C | msg B | put msg/s | put p99 µs | put_async msg/s | put_async p99 µs | put_async / put |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
        for r in &s.api_ratios {
            t.push_str(&format!(
                "| {} | {} | {} | {} | {:.0} | {} | {:.0} | {} | **{:.2}** |\n",
                r.engine,
                r.flush,
                r.concurrency,
                r.msg_bytes,
                r.put_msgs_per_s,
                r.put_p99_us,
                r.put_async_msgs_per_s,
                r.put_async_p99_us,
                r.ratio
            ));
        }
    }
    t.push_str("\n## mqlab over the device of the same run\n\n| engine | flush | C | msg B | device bound | bound msg/s | ratio | target | p99 / device p99 |\n|---|---|---:|---:|---|---:|---:|---:|---:|\n");
    for r in &s.device_ratios {
        t.push_str(&format!(
            "| {} | {} | {} | {} | {} | {:.0} | **{:.2}** | {} | {} |\n",
            r.engine,
            r.flush,
            r.concurrency,
            r.msg_bytes,
            r.bound,
            r.bound_msgs_per_s,
            r.ratio,
            r.target,
            r.p99_ratio.map_or("-".into(), |p| format!("{p:.2}"))
        ));
    }
    t.push_str("\n## Device\n\n| pwrite+fdatasync batch B | ops/s | MiB/s | p50 µs | p99 µs |\n|---:|---:|---:|---:|---:|\n");
    for d in &s.device.sync {
        t.push_str(&format!(
            "| {} | {:.0} | {:.1} | {} | {} |\n",
            d.batch_bytes, d.ops_per_s, d.mib_per_s, d.p50_us, d.p99_us
        ));
    }
    t.push_str(&format!(
        "\nbuffered write {:.0} MiB/s, memcpy {:.0} MiB/s\n",
        s.device.buffered_write_mib_per_s, s.device.memcpy_mib_per_s
    ));
    t
}

/// Reads the runs and the device file, writes summary.json, table.md and
/// the chart into `out`; returns the file names written.
pub fn write_report(runs: &Path, device: &Path, out: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(runs).with_context(|| format!("{}", runs.display()))?;
    let mut rs = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        rs.push(
            serde_json::from_str::<EngineRun>(line)
                .with_context(|| format!("{} line {}", runs.display(), i + 1))?,
        );
    }
    let dev = read_device(device)?;
    let s = summarize(&rs, &dev);
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("summary.json"), serde_json::to_vec_pretty(&s)?)?;
    std::fs::write(out.join("table.md"), markdown(&s))?;
    let mut files = vec!["summary.json".to_string(), "table.md".to_string()];
    files.extend(chart(&s, out)?);
    Ok(files)
}

/// Reads one device figure set (JSON) or one per round (JSON lines); with
/// several, each figure is the median over the rounds.
pub fn read_device(path: &Path) -> Result<DeviceFigures> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    if let Ok(d) = serde_json::from_str::<DeviceFigures>(&text) {
        return Ok(d);
    }
    let all: Vec<DeviceFigures> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<std::result::Result<_, _>>()
        .with_context(|| format!("{}: neither JSON nor JSON lines", path.display()))?;
    Ok(median_device(&all))
}

/// Figure by figure median of several device measurements.
pub fn median_device(all: &[DeviceFigures]) -> DeviceFigures {
    let Some(first) = all.first() else {
        return DeviceFigures::default();
    };
    let mut sizes: Vec<usize> = all
        .iter()
        .flat_map(|d| d.sync.iter().map(|s| s.batch_bytes))
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    let sync = sizes
        .into_iter()
        .map(|b| {
            let at: Vec<&crate::SyncFigure> = all
                .iter()
                .filter_map(|d| d.sync.iter().find(|s| s.batch_bytes == b))
                .collect();
            let ops = median_f(at.iter().map(|s| s.ops_per_s).collect());
            crate::SyncFigure {
                batch_bytes: b,
                ops_per_s: ops,
                mib_per_s: ops * b as f64 / (1024.0 * 1024.0),
                p50_us: median_f(at.iter().map(|s| s.p50_us as f64).collect()) as u64,
                p99_us: median_f(at.iter().map(|s| s.p99_us as f64).collect()) as u64,
            }
        })
        .collect();
    DeviceFigures {
        dir: first.dir.clone(),
        sync,
        buffered_write_mib_per_s: median_f(
            all.iter().map(|d| d.buffered_write_mib_per_s).collect(),
        ),
        memcpy_mib_per_s: median_f(all.iter().map(|d| d.memcpy_mib_per_s).collect()),
    }
}

/// Size of the peers chart, px (two panels: larger than the lab's charts).
const W: u32 = 1400;
const H: u32 = 900;

/// Draws peers.svg and peers.png.
pub fn chart(s: &Summary, out: &Path) -> Result<Vec<String>> {
    register_fonts();
    both_sized(out, "peers", (W, H), |a| draw(a, s), |a| draw(a, s))
}

/// Both panels on `root` (filled and presented by [`both_sized`]).
fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, s: &Summary) -> Result<()> {
    // Categories: (flush, concurrency, msg_bytes) in a stable order;
    // durable classes first.
    let rank = |f: &str| match f {
        "sync" => 0,
        "group" => 1,
        _ => 2,
    };
    let mut cats: Vec<(String, usize, usize)> = s
        .engines
        .iter()
        .map(|e| (e.flush.clone(), e.concurrency, e.msg_bytes))
        .collect();
    cats.sort_by_key(|(f, c, m)| (rank(f), *c, *m));
    cats.dedup();
    let mut names: Vec<String> = s.engines.iter().map(|e| e.engine.clone()).collect();
    names.sort();
    names.dedup();
    if cats.is_empty() {
        return Ok(());
    }
    let (top, bottom) = root.split_vertically(H / 2);
    let n = names.len().max(1) as f64;
    let width = 0.8 / n;
    let panel = |area: DrawingArea<DB, Shift>,
                 title: &str,
                 value: &dyn Fn(&crate::report::EngineSummary) -> f64,
                 ratio_labels: bool|
     -> Result<()> {
        let vals: Vec<f64> = s.engines.iter().map(value).filter(|v| *v > 0.0).collect();
        let lo = vals.iter().copied().fold(f64::INFINITY, f64::min).max(1.0) / 2.0;
        // Bars use the lower 60% of the log range; the legend sits above.
        let top = vals.iter().copied().fold(1.0, f64::max) * 1.5;
        let hi = (lo.ln() + (top.ln() - lo.ln()) / 0.6).exp();
        let mut chart = ChartBuilder::on(&area)
            .caption(title, ("sans-serif", 20))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..cats.len() as f64, (lo..hi).log_scale())
            .map_err(pe)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .disable_x_axis()
            .y_label_formatter(&|v| crate::report::short(*v))
            .draw()
            .map_err(pe)?;
        for (ci, (f, c, m)) in cats.iter().enumerate() {
            chart
                .draw_series(std::iter::once(Text::new(
                    format!("{f} C={c} {m} B"),
                    (ci as f64 + 0.1, lo * 1.15),
                    ("sans-serif", 13),
                )))
                .map_err(pe)?;
            for (ni, name) in names.iter().enumerate() {
                let Some(e) = s.engines.iter().find(|e| {
                    &e.engine == name && &e.flush == f && e.concurrency == *c && e.msg_bytes == *m
                }) else {
                    continue;
                };
                let v = value(e);
                if v <= 0.0 {
                    continue;
                }
                let x0 = ci as f64 + 0.1 + ni as f64 * width;
                let col = PALETTE[ni % PALETTE.len()];
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(x0, lo), (x0 + width * 0.9, v)],
                        col.filled(),
                    )))
                    .map_err(pe)?;
                if ratio_labels && !name.starts_with("mqlab-") {
                    if let Some(r) = s.peer_ratios.iter().find(|r| {
                        &r.peer == name && &r.flush == f && r.concurrency == *c && r.msg_bytes == *m
                    }) {
                        chart
                            .draw_series(std::iter::once(Text::new(
                                format!("x{:.1}", r.ratio),
                                (x0, v * 1.25),
                                ("sans-serif", 12),
                            )))
                            .map_err(pe)?;
                    }
                }
            }
        }
        // Legend.
        for (ni, name) in names.iter().enumerate() {
            let col = PALETTE[ni % PALETTE.len()];
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(0.0, lo), (0.0, lo)],
                    col.filled(),
                )))
                .map_err(pe)?
                .label(name.clone())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], col.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 12))
            .draw()
            .map_err(pe)?;
        Ok(())
    };
    panel(
        top,
        "acknowledged msg/s (log; xN over a peer bar = best mqlab of the class / that peer)",
        &|e| e.msgs_per_s,
        true,
    )?;
    panel(
        bottom,
        "p99 ack latency, µs (log)",
        &|e| e.p99_us as f64,
        false,
    )?;
    Ok(())
}

/// 1234567 -> "1.2M".
pub fn short(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.0}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(engine: &str, flush: &str, c: usize, rate: f64, round: u32) -> EngineRun {
        EngineRun {
            engine: engine.into(),
            flush: flush.into(),
            concurrency: c,
            msg_bytes: 1024,
            msgs_per_s: rate,
            p50_us: 10,
            p99_us: 100,
            round,
            record_bytes: if engine.starts_with("mqlab") { 1200 } else { 0 },
        }
    }

    #[test]
    fn medians_ratios_and_files() {
        let runs = vec![
            run("mqlab-pwrite", "group", 16, 100.0, 0),
            run("mqlab-pwrite", "group", 16, 300.0, 1),
            run("mqlab-pwrite", "group", 16, 200.0, 2),
            run("rocksdb", "group", 16, 50.0, 0),
            run("mqlab-pwrite", "async", 16, 1000.0, 0),
        ];
        let dev = DeviceFigures {
            sync: vec![crate::SyncFigure {
                batch_bytes: 1200 * 16,
                ops_per_s: 10.0,
                mib_per_s: 0.0,
                p50_us: 50,
                p99_us: 100,
            }],
            buffered_write_mib_per_s: 1.0,
            ..Default::default()
        };
        let s = summarize(&runs, &dev);
        let g = s
            .engines
            .iter()
            .find(|e| e.engine == "mqlab-pwrite" && e.flush == "group")
            .unwrap();
        assert_eq!(g.msgs_per_s, 200.0);
        assert_eq!(g.rounds, 3);
        assert_eq!(s.peer_ratios.len(), 1);
        assert_eq!(s.peer_ratios[0].ratio, 4.0);
        let d = s.device_ratios.iter().find(|d| d.flush == "group").unwrap();
        assert_eq!(d.bound_msgs_per_s, 160.0);
        let dir = tempfile::tempdir().unwrap();
        let rf = dir.path().join("runs.jsonl");
        let text: Vec<String> = runs
            .iter()
            .map(|r| serde_json::to_string(r).unwrap())
            .collect();
        std::fs::write(&rf, text.join("\n")).unwrap();
        let df = dir.path().join("device.json");
        std::fs::write(&df, serde_json::to_vec(&dev).unwrap()).unwrap();
        let files = write_report(&rf, &df, dir.path()).unwrap();
        assert!(files.contains(&"peers.png".to_string()));
        assert!(
            std::fs::metadata(dir.path().join("peers.png"))
                .unwrap()
                .len()
                > 0
        );
        let table = std::fs::read_to_string(dir.path().join("table.md")).unwrap();
        assert!(table.contains("rocksdb"));
    }

    #[test]
    fn put_async_rows_compete_and_are_labelled() {
        let runs = vec![
            run("mqlab-pwrite", "group", 256, 100.0, 0),
            run("mqlab-pwrite-put_async", "group", 256, 250.0, 0),
            run("mqlab-uring", "group", 256, 120.0, 0),
            run("rocketmq-store", "group", 256, 50.0, 0),
            run("mqlab-pwrite-pool", "async", 256, 900.0, 0),
            run("mqlab-pwrite-put_async", "async", 256, 400.0, 0),
            run("rocksdb", "async", 256, 100.0, 0),
        ];
        let s = summarize(&runs, &DeviceFigures::default());
        let group = s.peer_ratios.iter().find(|r| r.flush == "group").unwrap();
        assert_eq!(group.mqlab, "mqlab-pwrite-put_async");
        assert_eq!(group.mqlab_api, "put_async");
        assert_eq!(group.ratio, 5.0);
        let asynch = s.peer_ratios.iter().find(|r| r.flush == "async").unwrap();
        assert_eq!(asynch.mqlab, "mqlab-pwrite-pool");
        assert_eq!(asynch.mqlab_api, "put");
        // put_async over blocking put of the same backend and class only
        // (no blocking mqlab-pwrite async row here).
        assert_eq!(s.api_ratios.len(), 1);
        assert_eq!(s.api_ratios[0].engine, "mqlab-pwrite");
        assert_eq!(s.api_ratios[0].ratio, 2.5);
        let md = markdown(&s);
        assert!(
            md.contains("| mqlab-pwrite-put_async | put_async | 250 |"),
            "{md}"
        );
        assert!(md.contains("put_async / put"));
        assert_eq!(mqlab_api("rocksdb"), "");
    }
}
