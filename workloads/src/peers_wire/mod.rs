//! `mqlab peers-wire`: the lab of scripts/peers-wire.sh (issue 15), peers
//! on the same wire, same machine, same durability.
//!
//! - `mqlab peers-wire redis`: Redis streams driven with pipelined `XADD`s
//!   ([`redis`]), the figures under `run --target`'s names.
//! - `mqlab peers-wire report DIR`: reads the runs the script recorded in
//!   `DIR/runs.jsonl` (one line per run: round, engine, durability,
//!   concurrency, msg_bytes, the run's folder holding its summary.json, and
//!   a status) and the device measured each round (`DIR/device/round-N.json`,
//!   `mqlab baseline --json`), and writes `DIR/summary.json` (`engines`:
//!   one row per engine x durability x concurrency x size with the median
//!   over rounds; `device`; `ratios`), `DIR/table.csv`, `DIR/table.md` and
//!   the chart `DIR/peers-wire.{svg,png}` (msgs/s vs in flight per engine).
//!
//! Workloads (`workload` in runs.jsonl and in every row): `produce`
//! (producers only) and `produce+consume` (consumers reading the same
//! stream or topic during the run: `run --target ... --consume true`, or
//! `peers-wire redis --consumers N`); their rows carry the consumers'
//! figures (`consume_msgs_per_s`, end-to-end p50/p99), and each workload
//! gets its own ratios. runs.jsonl lines without `workload` are `produce`.
//!
//! Durability classes: `sync` when the ack waits for an fdatasync/fsync
//! covering the message (mqlab `sync` and `group`, rocketmq-rust
//! SYNC_FLUSH, Redis `appendfsync always`), `async` otherwise (mqlab
//! `async` and `pool`, rocketmq-rust ASYNC_FLUSH, Redis `everysec`).

pub mod redis;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::baseline::Baseline;
use crate::plot::{
    chart_beside_legend, draw_both, draw_marker, legend_column, line_only, pe, register_fonts,
    series_style, with_legend_column, Glyph, LegendEntry,
};
use crate::util::thousands;

/// `mqlab peers-wire`'s options.
#[derive(Debug, clap::Args)]
pub struct PeersWireRequest {
    #[command(subcommand)]
    pub command: PeersWireCommand,
}

/// What `mqlab peers-wire` does.
#[derive(Debug, clap::Subcommand)]
pub enum PeersWireCommand {
    /// Drive a Redis server with pipelined XADDs (Redis streams as a peer):
    /// --inflight XADDs in flight over --connections connections for
    /// --duration seconds after --warmup; prints msgs/s and p50/p99 and
    /// writes summary.json with `run --target`'s field names.
    Redis(redis::RedisRequest),
    /// Aggregate a scripts/peers-wire.sh folder (runs.jsonl, device/) into
    /// summary.json, table.csv, table.md and peers-wire.{svg,png}.
    Report(ReportRequest),
}

/// `mqlab peers-wire report`'s options.
#[derive(Debug, clap::Args)]
pub struct ReportRequest {
    /// The folder scripts/peers-wire.sh writes (runs.jsonl, device/).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

/// `mqlab peers-wire`.
pub fn cmd_peers_wire(req: PeersWireRequest) -> Result<()> {
    match req.command {
        PeersWireCommand::Redis(r) => redis::cmd_redis(r),
        PeersWireCommand::Report(r) => cmd_report(&r.dir),
    }
}

/// One line of runs.jsonl.
#[derive(Debug, Clone, Deserialize)]
struct RunLine {
    round: u32,
    engine: String,
    durability: String,
    concurrency: u64,
    msg_bytes: u64,
    /// `produce` or `produce+consume`.
    #[serde(default = "produce")]
    workload: String,
    /// The run's folder, relative to the report's folder.
    dir: String,
    /// `ok` or why the run failed.
    status: String,
}

fn produce() -> String {
    PRODUCE.into()
}

/// The producers-only workload.
pub const PRODUCE: &str = "produce";
/// Producers and consumers in the same run.
pub const PRODUCE_CONSUME: &str = "produce+consume";

/// The figures every run's summary.json has under these names (mqlab's
/// `run --target` and `peers-wire redis` alike).
#[derive(Debug, Deserialize)]
struct RunFigures {
    throughput_msgs_per_s: f64,
    ack_latency_us: Lat,
    #[serde(default)]
    errors: BTreeMap<String, u64>,
    /// With consumers (at the top level of both summaries).
    #[serde(default)]
    consume_msgs_per_s: Option<f64>,
    #[serde(default)]
    e2e_latency_us: Option<Lat>,
}

#[derive(Debug, Deserialize)]
struct Lat {
    p50: u64,
    p99: u64,
}

/// One row of summary.json's `engines`.
#[derive(Debug, Clone, Serialize)]
pub struct EngineRow {
    /// `mqlab-broker-<flush>-<backend>`, `rocketmq-rust-broker`, `redis-streams`.
    pub engine: String,
    /// `sync` (ack after fdatasync) or `async`.
    pub durability: String,
    /// `produce` (producers only) or `produce+consume`.
    pub workload: String,
    /// Sends in flight.
    pub concurrency: u64,
    /// Body bytes.
    pub msg_bytes: u64,
    /// Median over rounds of acknowledged messages per second.
    pub msgs_per_s: f64,
    /// Median over rounds of the run's p50 ack latency, µs.
    pub p50_us: u64,
    /// Median over rounds of the run's p99 ack latency, µs.
    pub p99_us: u64,
    /// Rounds that produced figures.
    pub rounds: usize,
    /// Lowest and highest round, msgs/s.
    pub msgs_per_s_min: f64,
    pub msgs_per_s_max: f64,
    /// Failed sends over all rounds (error replies, timeouts).
    pub send_errors: u64,
    /// Rounds that failed, with why.
    pub failures: Vec<String>,
    /// produce+consume: median over rounds of the consumers' msgs/s
    /// (everything consumed over the run's time, warmup and catch-up
    /// included).
    pub consume_msgs_per_s: Option<f64>,
    /// produce+consume: median over rounds of the end-to-end (send to
    /// consume) p50 and p99, µs.
    pub e2e_p50_us: Option<u64>,
    pub e2e_p99_us: Option<u64>,
}

/// A ratio the issue asks for.
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    /// e.g. `mqlab / rocketmq-rust, sync, C=16`.
    pub what: String,
    /// The mqlab row (best of the class).
    pub mqlab_engine: String,
    pub mqlab_msgs_per_s: f64,
    /// The peer row.
    pub peer_engine: String,
    pub peer_msgs_per_s: f64,
    /// mqlab / peer (absent when either side has no figure).
    pub ratio: Option<f64>,
    /// The target (2.0).
    pub target: f64,
    /// ratio >= target.
    pub met: bool,
}

/// The device in one round.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceRound {
    pub round: u32,
    /// 4 KiB pwrite+fdatasync per second.
    pub fdatasync_per_s: f64,
    pub fdatasync_p99_us: u64,
    /// Buffered 1 MiB writes, MiB/s.
    pub buffered_write_mib_per_s: f64,
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn read_runs(dir: &Path) -> Result<Vec<RunLine>> {
    let path = dir.join("runs.jsonl");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).with_context(|| format!("{} line {}", path.display(), i + 1))
        })
        .collect()
}

fn read_device(dir: &Path) -> Vec<DeviceRound> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir.join("device")) else {
        return out;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(round) = name
            .strip_prefix("round-")
            .and_then(|s| s.strip_suffix(".json"))
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        if let Ok(b) = serde_json::from_str::<Baseline>(&text) {
            out.push(DeviceRound {
                round,
                fdatasync_per_s: b.fdatasync_per_s,
                fdatasync_p99_us: b.fdatasync_p99_us,
                buffered_write_mib_per_s: b.buffered_write_mib_per_s,
            });
        }
    }
    out.sort_by_key(|d| d.round);
    out
}

/// Median rows, in the order engines first appear in runs.jsonl.
fn aggregate(dir: &Path, runs: &[RunLine]) -> Vec<EngineRow> {
    type Key = (String, String, u64, u64, String);
    let mut order: Vec<Key> = Vec::new();
    let mut groups: BTreeMap<Key, Vec<&RunLine>> = BTreeMap::new();
    for r in runs {
        let k = (
            r.engine.clone(),
            r.durability.clone(),
            r.concurrency,
            r.msg_bytes,
            r.workload.clone(),
        );
        if !groups.contains_key(&k) {
            order.push(k.clone());
        }
        groups.entry(k).or_default().push(r);
    }
    // Engines in first-seen order, each one's points by concurrency.
    let mut engine_order: Vec<(String, String)> = Vec::new();
    for k in &order {
        let e = (k.0.clone(), k.1.clone());
        if !engine_order.contains(&e) {
            engine_order.push(e);
        }
    }
    order.sort_by_key(|k| {
        (
            engine_order
                .iter()
                .position(|e| e.0 == k.0 && e.1 == k.1)
                .unwrap_or(0),
            k.4 != PRODUCE,
            k.3,
            k.2,
        )
    });
    let mut rows = Vec::new();
    for k in order {
        let lines = &groups[&k];
        let (mut tput, mut p50, mut p99) = (Vec::new(), Vec::new(), Vec::new());
        let (mut ctput, mut e50, mut e99) = (Vec::new(), Vec::new(), Vec::new());
        let mut failures = Vec::new();
        let mut send_errors = 0;
        for l in lines {
            let summary = dir.join(&l.dir).join("summary.json");
            let figures = std::fs::read_to_string(&summary)
                .ok()
                .and_then(|t| serde_json::from_str::<RunFigures>(&t).ok());
            match figures {
                Some(f) if l.status == "ok" && f.throughput_msgs_per_s > 0.0 => {
                    tput.push(f.throughput_msgs_per_s);
                    p50.push(f.ack_latency_us.p50 as f64);
                    p99.push(f.ack_latency_us.p99 as f64);
                    send_errors += f.errors.values().sum::<u64>();
                    if let (Some(c), Some(e)) = (f.consume_msgs_per_s, &f.e2e_latency_us) {
                        ctput.push(c);
                        e50.push(e.p50 as f64);
                        e99.push(e.p99 as f64);
                    }
                }
                Some(f) => {
                    send_errors += f.errors.values().sum::<u64>();
                    failures.push(format!("round {}: {}", l.round, l.status));
                }
                None => failures.push(format!("round {}: {}", l.round, l.status)),
            }
        }
        let (lo, hi) = (
            tput.iter().copied().fold(f64::INFINITY, f64::min),
            tput.iter().copied().fold(0.0, f64::max),
        );
        let consumed = !ctput.is_empty();
        rows.push(EngineRow {
            engine: k.0.clone(),
            durability: k.1.clone(),
            workload: k.4.clone(),
            concurrency: k.2,
            msg_bytes: k.3,
            rounds: tput.len(),
            msgs_per_s: median(&mut tput).round(),
            p50_us: median(&mut p50).round() as u64,
            p99_us: median(&mut p99).round() as u64,
            msgs_per_s_min: if lo.is_finite() { lo.round() } else { 0.0 },
            msgs_per_s_max: hi.round(),
            send_errors,
            failures,
            consume_msgs_per_s: consumed.then(|| median(&mut ctput).round()),
            e2e_p50_us: consumed.then(|| median(&mut e50).round() as u64),
            e2e_p99_us: consumed.then(|| median(&mut e99).round() as u64),
        });
    }
    rows
}

/// The best mqlab row of a class at one concurrency, and the peer's row.
fn ratio(
    rows: &[EngineRow],
    workload: &str,
    class: &str,
    c: u64,
    peer: &str,
    peer_label: &str,
    what: String,
) -> Ratio {
    let best = rows
        .iter()
        .filter(|r| {
            r.engine.starts_with("mqlab-broker")
                && r.workload == workload
                && r.durability == class
                && r.concurrency == c
                && r.rounds > 0
        })
        .max_by(|a, b| a.msgs_per_s.total_cmp(&b.msgs_per_s));
    let peer_row = rows.iter().find(|r| {
        r.engine == peer
            && r.workload == workload
            && r.durability == class
            && r.concurrency == c
            && r.rounds > 0
    });
    let ratio = match (best, peer_row) {
        (Some(m), Some(p)) if p.msgs_per_s > 0.0 => Some(m.msgs_per_s / p.msgs_per_s),
        _ => None,
    };
    Ratio {
        what,
        mqlab_engine: best.map_or("-".into(), |r| r.engine.clone()),
        mqlab_msgs_per_s: best.map_or(0.0, |r| r.msgs_per_s),
        peer_engine: peer_label.to_string(),
        peer_msgs_per_s: peer_row.map_or(0.0, |r| r.msgs_per_s),
        ratio: ratio.map(|x| (x * 100.0).round() / 100.0),
        target: 2.0,
        met: ratio.is_some_and(|x| x >= 2.0),
    }
}

fn ratios(rows: &[EngineRow]) -> Vec<Ratio> {
    let mut out = ratios_of(rows, PRODUCE, "");
    if rows.iter().any(|r| r.workload == PRODUCE_CONSUME) {
        out.extend(ratios_of(rows, PRODUCE_CONSUME, " (produce+consume)"));
    }
    out
}

/// The ratios of one workload; `tag` ends each `what`.
fn ratios_of(rows: &[EngineRow], workload: &str, tag: &str) -> Vec<Ratio> {
    let mut out = Vec::new();
    for class in ["sync", "async"] {
        let flush = if class == "sync" {
            "SYNC_FLUSH"
        } else {
            "ASYNC_FLUSH"
        };
        for c in [16, 256, 1024] {
            out.push(ratio(
                rows,
                workload,
                class,
                c,
                "rocketmq-rust-broker",
                &format!("rocketmq-rust-broker {flush}"),
                format!("mqlab / rocketmq-rust, {class}, {c} in flight{tag}"),
            ));
        }
    }
    out.push(ratio(
        rows,
        workload,
        "sync",
        16,
        "redis-streams",
        "redis-streams appendfsync always",
        format!("mqlab / Redis appendfsync always, sync, 16 in flight{tag}"),
    ));
    // Not a target of the issue: the async class against everysec.
    let mut r = ratio(
        rows,
        workload,
        "async",
        16,
        "redis-streams",
        "redis-streams appendfsync everysec",
        format!("mqlab / Redis appendfsync everysec, async, 16 in flight{tag} (no target)"),
    );
    r.target = 0.0;
    r.met = false;
    out.push(r);
    out
}

fn table_md(rows: &[EngineRow], ratios: &[Ratio], device: &[DeviceRound]) -> String {
    let mut s = String::new();
    s.push_str("| engine | durability | workload | in flight | msg B | msgs/s (median) | min..max | p50 µs | p99 µs | rounds | send errors | consumed msgs/s | e2e p50 µs | e2e p99 µs |\n");
    s.push_str("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    let opt = |v: Option<f64>| v.map_or("-".to_string(), thousands);
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {}..{} | {} | {} | {}{} | {} | {} | {} | {} |\n",
            r.engine,
            r.durability,
            r.workload,
            r.concurrency,
            r.msg_bytes,
            thousands(r.msgs_per_s),
            thousands(r.msgs_per_s_min),
            thousands(r.msgs_per_s_max),
            thousands(r.p50_us as f64),
            thousands(r.p99_us as f64),
            r.rounds,
            if r.failures.is_empty() {
                String::new()
            } else {
                format!(" ({} failed)", r.failures.len())
            },
            r.send_errors,
            opt(r.consume_msgs_per_s),
            opt(r.e2e_p50_us.map(|v| v as f64)),
            opt(r.e2e_p99_us.map(|v| v as f64)),
        ));
    }
    s.push_str("\n| ratio | mqlab (best of the class) | peer | ratio | target 2x |\n");
    s.push_str("|---|---|---|---:|---|\n");
    for r in ratios {
        s.push_str(&format!(
            "| {} | {} {} | {} {} | {} | {} |\n",
            r.what,
            r.mqlab_engine,
            thousands(r.mqlab_msgs_per_s),
            r.peer_engine,
            thousands(r.peer_msgs_per_s),
            r.ratio.map_or("-".into(), |x| format!("{x:.2}x")),
            if r.target == 0.0 {
                "-"
            } else if r.met {
                "met"
            } else {
                "**not met**"
            }
        ));
    }
    if !device.is_empty() {
        s.push_str("\n| round | 4 KiB pwrite+fdatasync/s | its p99 µs | buffered write MiB/s |\n");
        s.push_str("|---:|---:|---:|---:|\n");
        for d in device {
            s.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                d.round,
                thousands(d.fdatasync_per_s),
                thousands(d.fdatasync_p99_us as f64),
                thousands(d.buffered_write_mib_per_s)
            ));
        }
    }
    s
}

fn table_csv(rows: &[EngineRow]) -> String {
    let mut s = String::from(
        "engine,durability,workload,concurrency,msg_bytes,msgs_per_s,p50_us,p99_us,rounds,msgs_per_s_min,msgs_per_s_max,send_errors,failed_rounds,consume_msgs_per_s,e2e_p50_us,e2e_p99_us\n",
    );
    let opt = |v: Option<String>| v.unwrap_or_default();
    for r in rows {
        s.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            r.engine,
            r.durability,
            r.workload,
            r.concurrency,
            r.msg_bytes,
            r.msgs_per_s,
            r.p50_us,
            r.p99_us,
            r.rounds,
            r.msgs_per_s_min,
            r.msgs_per_s_max,
            r.send_errors,
            r.failures.len(),
            opt(r.consume_msgs_per_s.map(|v| v.to_string())),
            opt(r.e2e_p50_us.map(|v| v.to_string())),
            opt(r.e2e_p99_us.map(|v| v.to_string())),
        ));
    }
    s
}

/// One line per engine x durability: (label, [(log2 in flight, msgs/s)]).
type Series = Vec<(String, Vec<(f64, f64)>)>;

fn series(rows: &[EngineRow]) -> Series {
    let mut out: Series = Vec::new();
    for r in rows.iter().filter(|r| r.rounds > 0 && r.msgs_per_s > 0.0) {
        let label = if r.workload == PRODUCE {
            format!("{} ({})", r.engine, r.durability)
        } else {
            format!("{} ({}, {})", r.engine, r.durability, r.workload)
        };
        let p = ((r.concurrency.max(1) as f64).log2(), r.msgs_per_s);
        match out.iter_mut().find(|s| s.0 == label) {
            Some(s) => s.1.push(p),
            None => out.push((label, vec![p])),
        }
    }
    for s in &mut out {
        s.1.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    out
}

fn chart<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, series: &Series) -> Result<()> {
    let labels: Vec<String> = series.iter().map(|s| s.0.clone()).collect();
    let (plot, legend) = with_legend_column(
        root,
        "Peers on the wire: acknowledged 1 KiB sends/s vs sends in flight",
        22,
        &labels,
    )?;
    let xs = series.iter().flat_map(|s| s.1.iter().map(|p| p.0));
    let max_x = xs.fold(1.0, f64::max).ceil();
    let ys: Vec<f64> = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.1))
        .collect();
    let lo = ys.iter().copied().fold(f64::INFINITY, f64::min).max(1.0);
    let hi = ys.iter().copied().fold(1.0, f64::max);
    let mut ch = chart_beside_legend(
        &plot,
        30,
        -0.3f64..max_x + 0.3,
        ((lo / 1.6).max(1.0)..hi * 1.6).log_scale(),
    )?;
    ch.configure_mesh()
        .x_labels(max_x as usize + 1)
        .x_label_formatter(&|x| format!("{}", 2f64.powf(x.round()) as u64))
        .y_label_formatter(&|y| thousands(*y))
        .x_desc("sends in flight (log 2)")
        .y_desc("msgs/s, median of rounds (log)")
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 17))
        .draw()
        .map_err(pe)?;
    for (i, (_, pts)) in series.iter().enumerate() {
        let s = series_style(i);
        line_only(&mut ch, pts, s.color, s.dashed, 2)?;
        for &p in pts {
            draw_marker(ch.plotting_area(), p, s.marker, s.color, 4)?;
        }
    }
    let entries: Vec<LegendEntry> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| LegendEntry::new(l.clone(), Glyph::Series(series_style(i))))
        .collect();
    legend_column(&legend, &entries, 15)?;
    Ok(())
}

/// summary.json of the folder.
#[derive(Debug, Serialize)]
struct ReportSummary {
    generated_by: String,
    engines: Vec<EngineRow>,
    ratios: Vec<Ratio>,
    device: DeviceSummary,
}

#[derive(Debug, Serialize)]
struct DeviceSummary {
    rounds: Vec<DeviceRound>,
    median_fdatasync_per_s: f64,
    median_buffered_write_mib_per_s: f64,
}

/// `mqlab peers-wire report DIR`.
pub fn cmd_report(dir: &Path) -> Result<()> {
    let runs = read_runs(dir)?;
    let rows = aggregate(dir, &runs);
    let ratios = ratios(&rows);
    let device = read_device(dir);
    let mut f: Vec<f64> = device.iter().map(|d| d.fdatasync_per_s).collect();
    let mut b: Vec<f64> = device.iter().map(|d| d.buffered_write_mib_per_s).collect();
    let md = table_md(&rows, &ratios, &device);
    let summary = ReportSummary {
        generated_by: "mqlab peers-wire report (scripts/peers-wire.sh)".into(),
        engines: rows.clone(),
        ratios,
        device: DeviceSummary {
            median_fdatasync_per_s: median(&mut f).round(),
            median_buffered_write_mib_per_s: median(&mut b).round(),
            rounds: device,
        },
    };
    let write = |name: &str, text: String| -> Result<()> {
        let p = dir.join(name);
        std::fs::write(&p, text).with_context(|| format!("write {}", p.display()))
    };
    write(
        "summary.json",
        serde_json::to_string_pretty(&summary)? + "\n",
    )?;
    write("table.csv", table_csv(&rows))?;
    write("table.md", md.clone())?;
    let s = series(&rows);
    if !s.is_empty() {
        register_fonts();
        let files = draw_both!(dir, "peers-wire", |a| chart(&a, &s))?;
        for f in files {
            println!("{}", dir.join(f).display());
        }
    }
    print!("{md}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(dir: &Path, round: u32, engine: &str, dur: &str, c: u64, msgs: f64) -> String {
        let rel = format!("runs/r{round}/{engine}-{dur}/c{c}");
        std::fs::create_dir_all(dir.join(&rel)).unwrap();
        let summary = serde_json::json!({
            "throughput_msgs_per_s": msgs,
            "ack_latency_us": {"p50": 100 * round, "p99": 1000 * round},
            "errors": {}
        });
        std::fs::write(dir.join(&rel).join("summary.json"), summary.to_string()).unwrap();
        serde_json::json!({"round": round, "engine": engine, "durability": dur,
            "concurrency": c, "msg_bytes": 1024, "dir": rel, "status": "ok"})
        .to_string()
    }

    /// A produce+consume run: the consumers' figures at the top level.
    fn run_pc(dir: &Path, round: u32, engine: &str, c: u64, msgs: f64, consumed: f64) -> String {
        let rel = format!("runs/r{round}/{engine}-sync/pc-c{c}");
        std::fs::create_dir_all(dir.join(&rel)).unwrap();
        let summary = serde_json::json!({
            "throughput_msgs_per_s": msgs,
            "ack_latency_us": {"p50": 100, "p99": 1000},
            "errors": {},
            "consume_msgs_per_s": consumed,
            "e2e_latency_us": {"p50": 300 * round, "p99": 3000 * round}
        });
        std::fs::write(dir.join(&rel).join("summary.json"), summary.to_string()).unwrap();
        serde_json::json!({"round": round, "engine": engine, "durability": "sync",
            "concurrency": c, "msg_bytes": 1024, "workload": "produce+consume",
            "dir": rel, "status": "ok"})
        .to_string()
    }

    #[test]
    fn report_takes_medians_and_the_best_mqlab_of_each_class() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut lines = Vec::new();
        for (round, scale) in [(1, 1.0), (2, 3.0), (3, 2.0)] {
            lines.push(run(
                d,
                round,
                "mqlab-broker-group-pwrite",
                "sync",
                16,
                1000.0 * scale,
            ));
            lines.push(run(
                d,
                round,
                "mqlab-broker-sync-pwrite",
                "sync",
                16,
                100.0 * scale,
            ));
            lines.push(run(
                d,
                round,
                "rocketmq-rust-broker",
                "sync",
                16,
                400.0 * scale,
            ));
            lines.push(run(d, round, "redis-streams", "sync", 16, 800.0 * scale));
            lines.push(run(d, round, "redis-streams", "async", 16, 9000.0 * scale));
            lines.push(run_pc(
                d,
                round,
                "mqlab-broker-group-pwrite",
                16,
                900.0 * scale,
                800.0 * scale,
            ));
            lines.push(run_pc(
                d,
                round,
                "redis-streams",
                16,
                300.0 * scale,
                250.0 * scale,
            ));
        }
        // A failed round counts in `failures`, not in the median.
        lines.push(
            serde_json::json!({"round": 4, "engine": "rocketmq-rust-broker",
                "durability": "sync", "concurrency": 16, "msg_bytes": 1024,
                "dir": "runs/r4/none", "status": "server did not start"})
            .to_string(),
        );
        std::fs::write(d.join("runs.jsonl"), lines.join("\n") + "\n").unwrap();
        cmd_report(d).unwrap();

        let s: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(d.join("summary.json")).unwrap())
                .unwrap();
        let engines = s["engines"].as_array().unwrap();
        assert_eq!(engines.len(), 7);
        let group = &engines[0];
        assert_eq!(group["engine"], "mqlab-broker-group-pwrite");
        assert_eq!(group["workload"], "produce");
        assert_eq!(group["msgs_per_s"], 2000.0);
        assert!(group["consume_msgs_per_s"].is_null());
        // The same engine's produce+consume row follows its produce rows.
        let pc = &engines[1];
        assert_eq!(pc["engine"], "mqlab-broker-group-pwrite");
        assert_eq!(pc["workload"], "produce+consume");
        assert_eq!(pc["msgs_per_s"], 1800.0);
        assert_eq!(pc["consume_msgs_per_s"], 1600.0);
        assert_eq!(pc["e2e_p50_us"], 600);
        assert_eq!(pc["e2e_p99_us"], 6000);
        assert_eq!(group["p50_us"], 200);
        assert_eq!(group["p99_us"], 2000);
        assert_eq!(group["rounds"], 3);
        let rmq = engines
            .iter()
            .find(|e| e["engine"] == "rocketmq-rust-broker")
            .unwrap();
        assert_eq!(rmq["rounds"], 3);
        assert_eq!(rmq["failures"].as_array().unwrap().len(), 1);
        // Redis's two durability classes stay two rows.
        let redis: Vec<_> = engines
            .iter()
            .filter(|e| e["engine"] == "redis-streams" && e["workload"] == "produce")
            .collect();
        assert_eq!(redis.len(), 2);

        let ratios = s["ratios"].as_array().unwrap();
        let sync16 = &ratios[0];
        assert_eq!(sync16["mqlab_engine"], "mqlab-broker-group-pwrite");
        assert_eq!(sync16["ratio"], 2.5);
        assert_eq!(sync16["met"], true);
        let redis_always = ratios
            .iter()
            .find(|r| r["peer_engine"] == "redis-streams appendfsync always")
            .unwrap();
        assert_eq!(redis_always["ratio"], 1.25);
        assert_eq!(redis_always["met"], false);
        // produce+consume has its own ratios.
        let pc_redis = ratios
            .iter()
            .find(|r| {
                r["what"]
                    == "mqlab / Redis appendfsync always, sync, 16 in flight (produce+consume)"
            })
            .unwrap();
        assert_eq!(pc_redis["ratio"], 3.0);
        assert_eq!(pc_redis["met"], true);
        // No rocketmq-rust figure at 256: no ratio, not met.
        assert!(ratios[1]["ratio"].is_null());
        for f in ["table.csv", "table.md", "peers-wire.svg", "peers-wire.png"] {
            assert!(d.join(f).is_file(), "{f} missing");
        }
        let csv = std::fs::read_to_string(d.join("table.csv")).unwrap();
        assert!(csv.starts_with(
            "engine,durability,workload,concurrency,msg_bytes,msgs_per_s,p50_us,p99_us,rounds"
        ));
        assert!(csv.contains("mqlab-broker-group-pwrite,sync,produce+consume,16,1024,1800,"));
    }
}
