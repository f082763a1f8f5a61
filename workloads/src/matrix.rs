//! `mqlab matrix`: the main experiment. Every flush strategy on every
//! backend, plus async with a few flush intervals, each on a fresh store,
//! after one device baseline measured in the same place; then the table and
//! the charts.
//!
//! Budget: 15 runs of 0.5 s warmup + 3 s each, plus the device baseline
//! before and after and the charts: 78 s on the 2-core development
//! machine; `--quick` (0.25 s + 1 s each, shorter baseline) 29 s there.
//! Both use the run-length default time-series bucket (100 ms, see
//! `recorder::default_timeseries_ms`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use mqlab_engine::{BackendKind, FlushConfig, FlushKind};
use serde::Serialize;

use crate::baseline::{self, Baseline, BaselineParams};
use crate::run::{execute, ExecError, ExecParams};
use crate::spec::{Overrides, SpecFile, Workload};
use crate::summary::{self, Summary};
use crate::table::round3;
use crate::util;

/// One configuration of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cell {
    /// Flush strategy.
    pub flush: FlushKind,
    /// Backend.
    pub backend: BackendKind,
    /// Flusher period (async/pool), ms.
    pub flush_interval_ms: u64,
}

impl Cell {
    /// Folder name of the run.
    pub fn dir_name(&self) -> String {
        let flush = FlushConfig {
            flush_interval_ms: self.flush_interval_ms,
            ..FlushConfig::for_kind(self.flush)
        };
        format!("{}-{}", flush.label(), self.backend.name())
    }
}

/// The default interval of async and pool (RocketMQ's flushIntervalCommitLog),
/// as the engine's `FlushConfig::default()` sets it.
pub fn default_interval_ms() -> u64 {
    FlushConfig::default().flush_interval_ms
}

/// The cells to run, in table order.
pub fn cells(flushes: &[FlushKind], backends: &[BackendKind], intervals: &[u64]) -> Vec<Cell> {
    let mut out = Vec::new();
    for &flush in flushes {
        for &backend in backends {
            out.push(Cell {
                flush,
                backend,
                flush_interval_ms: default_interval_ms(),
            });
        }
        if flush == FlushKind::Async {
            let backend = if backends.contains(&BackendKind::Pwrite) {
                BackendKind::Pwrite
            } else {
                match backends.first() {
                    Some(b) => *b,
                    None => continue,
                }
            };
            for &ms in intervals {
                if ms != default_interval_ms() {
                    out.push(Cell {
                        flush,
                        backend,
                        flush_interval_ms: ms,
                    });
                }
            }
        }
    }
    out
}

/// A skipped configuration and why.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    /// Configuration.
    pub config: String,
    /// Why.
    pub reason: String,
}

/// matrix.json.
#[derive(Debug, Serialize)]
pub struct MatrixReport<'a> {
    /// Exact command.
    pub command: String,
    /// Start, UTC.
    pub started_utc: String,
    /// Wall time, s.
    pub elapsed_s: f64,
    /// Baseline measured before the runs (the ratios use it).
    pub baseline: Option<&'a baseline::Baseline>,
    /// The same measured after the runs, to show how steady the device was.
    pub baseline_after: Option<&'a baseline::Baseline>,
    /// Run folder names, in table order.
    pub runs: Vec<String>,
    /// Skipped configurations.
    pub skipped: Vec<Skipped>,
    /// The printed table.
    pub table: String,
}

/// What `mqlab matrix` is asked to do (the command line, as plain data).
#[derive(Debug, Clone, Default)]
pub struct MatrixRequest {
    /// 1 s per configuration after 0.25 s of warmup, shorter baseline
    /// (default: 3 s after 0.5 s).
    pub quick: bool,
    /// Flush strategies to run; empty: all.
    pub flush: Vec<FlushKind>,
    /// Backends to run; empty: all.
    pub backend: Vec<BackendKind>,
    /// Extra async flush intervals, ms. [default: 10, 100, 1000]
    pub intervals: Option<Vec<u64>>,
    /// Workload values that beat the matrix's.
    pub workload: Overrides,
    /// Parent of the per-run data directories. [default: the system
    /// temporary directory]
    pub data_dir: Option<PathBuf>,
    /// Output folder. [default: results/<timestamp>/, then results/latest]
    pub out: Option<PathBuf>,
    /// Do not draw charts.
    pub no_plot: bool,
    /// Skip the device baseline.
    pub no_baseline: bool,
}

/// What the matrix runs: its cells, the workload shared by them and the
/// device-baseline settings.
struct Plan {
    cells: Vec<Cell>,
    workload: Overrides,
    baseline: BaselineParams,
}

impl Plan {
    fn of(req: &MatrixRequest) -> Plan {
        let flushes = if req.flush.is_empty() {
            FlushKind::ALL.to_vec()
        } else {
            req.flush.clone()
        };
        let backends = if req.backend.is_empty() {
            BackendKind::ALL.to_vec()
        } else {
            req.backend.clone()
        };
        let intervals = req.intervals.clone().unwrap_or_else(|| vec![10, 100, 1000]);
        let mut workload = req.workload.clone();
        let (duration, warmup, baseline) = if req.quick {
            (
                1.0,
                0.25,
                BaselineParams {
                    per_size: std::time::Duration::from_millis(150),
                    buffered: std::time::Duration::from_millis(200),
                    ..BaselineParams::default()
                },
            )
        } else {
            (3.0, 0.5, BaselineParams::default())
        };
        workload.duration = workload.duration.or(Some(duration));
        workload.warmup = workload.warmup.or(Some(warmup));
        Plan {
            cells: cells(&flushes, &backends, &intervals),
            workload,
            baseline,
        }
    }
}

/// What the cells produced.
#[derive(Default)]
struct Ran {
    summaries: Vec<Summary>,
    run_dirs: Vec<String>,
    skipped: Vec<Skipped>,
}

/// `mqlab matrix`.
pub fn cmd_matrix(req: MatrixRequest) -> Result<()> {
    let t0 = Instant::now();
    let started = util::timestamp();
    let plan = Plan::of(&req);
    // Claimed now, removed again if the matrix fails before it has a
    // result; results/latest moves only once it succeeded.
    let out_dir = match &req.out {
        Some(p) => util::OutDir::given(p, "output folder")?,
        None => util::OutDir::unique(&PathBuf::from("results").join(&started), "results folder")?,
    };
    let out = out_dir.path().to_path_buf();
    util::write_command(&out)?;
    let parent = util::scratch_parent(req.data_dir.as_deref())?;
    let baseline = if req.no_baseline {
        None
    } else {
        Some(baseline_before(&parent, &out, &plan.baseline)?)
    };
    let ran = run_cells(&plan, &parent, &out, baseline.as_ref())?;
    let baseline_after = match &baseline {
        Some(before) if !util::stopped() => {
            Some(baseline_after(&parent, &out, &plan.baseline, before)?)
        }
        _ => None,
    };
    let table = summary::table(&ran.summaries.iter().collect::<Vec<_>>());
    print_report(&ran, &table, baseline.as_ref(), baseline_after.as_ref());
    let table_md = out.join("table.md");
    std::fs::write(&table_md, &table).with_context(|| format!("write {}", table_md.display()))?;
    util::write_json(
        &out.join("matrix.json"),
        &MatrixReport {
            command: util::command_line(),
            started_utc: started,
            elapsed_s: round3(t0.elapsed().as_secs_f64()),
            baseline: baseline.as_ref(),
            baseline_after: baseline_after.as_ref(),
            runs: ran.run_dirs,
            skipped: ran.skipped,
            table: table.clone(),
        },
    )?;
    if !req.no_plot && !ran.summaries.is_empty() {
        match crate::plot::runs::plot_dirs(std::slice::from_ref(&out), &out) {
            Ok(files) => println!("charts: {}", files.join(", ")),
            Err(e) => eprintln!("mqlab: drawing charts failed: {e:#}"),
        }
    }
    let out = out_dir.keep();
    if req.out.is_none() {
        if let Err(e) = util::update_latest(&out) {
            eprintln!("mqlab: warning: results/latest not updated: {e:#}");
        }
    }
    println!(
        "results: {} ({:.0} s)",
        out.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The device before the runs, in `out/baseline/baseline.json` and on
/// stdout.
fn baseline_before(parent: &Path, out: &Path, p: &BaselineParams) -> Result<Baseline> {
    eprintln!("mqlab: measuring the device in {} ...", parent.display());
    let scratch = util::scratch_dir(parent, "mqlab-baseline-")?;
    let b = baseline::measure(scratch.path(), p)?;
    let dir = out.join("baseline");
    std::fs::create_dir_all(&dir).with_context(|| format!("create directory {}", dir.display()))?;
    util::write_json(&out.join("baseline").join("baseline.json"), &b)?;
    println!("device baseline ({}):", b.filesystem);
    print!("{}", b.table());
    Ok(b)
}

/// The device again after the runs: a baseline that moved a lot means the
/// machine was busy (other load, thermal, writeback) and the ratios are
/// unreliable.
fn baseline_after(
    parent: &Path,
    out: &Path,
    p: &BaselineParams,
    before: &Baseline,
) -> Result<Baseline> {
    let scratch = util::scratch_dir(parent, "mqlab-baseline-")?;
    let after = baseline::measure(scratch.path(), p)?;
    util::write_json(&out.join("baseline").join("baseline_after.json"), &after)?;
    let r = after.fdatasync_per_s / before.fdatasync_per_s.max(1e-9);
    let rb = after.buffered_write_mib_per_s / before.buffered_write_mib_per_s.max(1e-9);
    if !(0.5..=2.0).contains(&r) || !(0.5..=2.0).contains(&rb) {
        eprintln!(
            "mqlab: warning: the device moved during the matrix: {:.0} fdatasync/s and {:.0} MiB/s \
             buffered before, {:.0} and {:.0} after; the machine was busy and the ratios to the \
             device are unreliable",
            before.fdatasync_per_s,
            before.buffered_write_mib_per_s,
            after.fdatasync_per_s,
            after.buffered_write_mib_per_s
        );
    }
    Ok(after)
}

/// Runs every cell on a fresh scratch store under `parent`, each into its
/// folder of `out`; fails only when none ran.
fn run_cells(plan: &Plan, parent: &Path, out: &Path, baseline: Option<&Baseline>) -> Result<Ran> {
    let cells = &plan.cells;
    let mut ran = Ran::default();
    for (i, cell) in cells.iter().enumerate() {
        if util::stopped() {
            break;
        }
        if ran.skipped.iter().any(|s: &Skipped| {
            s.config.ends_with(cell.backend.name()) && s.reason.contains("unavailable")
        }) {
            ran.skipped.push(Skipped {
                config: cell.dir_name(),
                reason: format!("backend {} unavailable (see above)", cell.backend.name()),
            });
            continue;
        }
        let w = Workload::resolve(
            &SpecFile::default(),
            Some(cell.flush),
            Some(cell.backend),
            &Overrides {
                flush_interval_ms: Some(cell.flush_interval_ms),
                ..plan.workload.clone()
            },
            Some(&cell.dir_name()),
        )?;
        let run_dir = out.join(cell.dir_name());
        let run_dir_existed = run_dir.exists();
        let scratch = util::scratch_dir(parent, "mqlab-matrix-")?;
        eprintln!(
            "mqlab: [{}/{}] {} ({:.1} s + {:.1} s warmup)",
            i + 1,
            cells.len(),
            w.label(),
            w.duration_secs,
            w.warmup_secs
        );
        let r = execute(&ExecParams {
            w: &w,
            data_dir: scratch.path(),
            out: &run_dir,
            ack_log: None,
            ack_log_unbuffered: false,
            baseline: baseline.cloned(),
            shutdown: true,
            progress: true,
        });
        drop(scratch);
        match r {
            Ok(s) => {
                ran.run_dirs.push(cell.dir_name());
                ran.summaries.push(s);
            }
            Err(ExecError::BackendUnavailable(why)) => {
                eprintln!(
                    "mqlab: skipping {}: backend unavailable: {why}",
                    cell.dir_name()
                );
                ran.skipped.push(Skipped {
                    config: cell.dir_name(),
                    reason: format!("backend unavailable: {why}"),
                });
            }
            Err(ExecError::Other(e)) => {
                if !run_dir_existed {
                    // Whatever the failed run left half-written.
                    let _ = std::fs::remove_dir_all(&run_dir);
                }
                eprintln!("mqlab: {} failed: {e:#}", cell.dir_name());
                ran.skipped.push(Skipped {
                    config: cell.dir_name(),
                    reason: format!("failed: {e:#}"),
                });
            }
        }
    }
    if ran.summaries.is_empty() {
        if util::stopped() {
            anyhow::bail!("interrupted before any configuration finished");
        }
        anyhow::bail!(
            "no configuration of the matrix ran ({} tried, all failed or skipped)",
            cells.len()
        );
    }
    Ok(ran)
}

/// The matrix's table and notes on stdout.
fn print_report(ran: &Ran, table: &str, before: Option<&Baseline>, after: Option<&Baseline>) {
    println!();
    if let Some(w) = ran.summaries.first().map(|s| &s.config.workload) {
        println!(
            "matrix: {} producers x {} inflight, {} B messages, {} queues, {} s per run after {} s warmup",
            w.producers, w.inflight, w.msg_size, w.queues, w.duration_secs, w.warmup_secs
        );
    }
    print!("{table}");
    if let (Some(b), Some(a)) = (before, after) {
        println!(
            "device: {:.0} fdatasync/s (4 KiB) and {:.0} MiB/s buffered before the runs, {:.0} and {:.0} after",
            b.fdatasync_per_s, b.buffered_write_mib_per_s, a.fdatasync_per_s, a.buffered_write_mib_per_s
        );
    }
    println!("loss = worst acked-but-not-durable window on power loss (messages / age of the oldest, ms)");
    println!("vs device = msgs per 4 KiB fdatasync for sync/group; share of buffered-write MiB/s for async/pool");
    for s in &ran.skipped {
        println!("skipped {}: {}", s.config, s.reason);
    }
    for s in &ran.summaries {
        if let Some(ms) = s.shutdown_ms.filter(|ms| *ms > 1000.0) {
            println!(
                "note: {} needed {:.1} s at shutdown to make its acknowledged data durable \
                 (the loss window kept growing after the measurement)",
                s.label,
                ms / 1000.0
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_cells() {
        let c = cells(&FlushKind::ALL, &BackendKind::ALL, &[10, 100, 500, 1000]);
        assert_eq!(c.len(), 12 + 3);
        assert_eq!(c[0].dir_name(), "sync-pwrite");
        assert!(c.iter().any(|c| c.dir_name() == "async-10ms-pwrite"));
        assert!(c.iter().any(|c| c.dir_name() == "pool-500ms-uring"));
        let only_mmap = cells(&[FlushKind::Async], &[BackendKind::Mmap], &[100]);
        assert_eq!(only_mmap.len(), 2);
        assert_eq!(only_mmap[1].dir_name(), "async-100ms-mmap");
    }
}
