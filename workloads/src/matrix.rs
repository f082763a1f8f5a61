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
//!
//! Families (`--family`, `--list-families`): `store` is the above; `wire`
//! runs each configuration twice, in process and over loopback TCP
//! against a `mqlab broker` process the lab starts with the same flush
//! strategy and backend (`run --target`, mqlab's pipelined client, the
//! same producers and sends in flight), so that what the network costs is
//! a number: the wire row's throughput and p99 over the in-process row's.
//! Its default is every flush strategy on pwrite; `--quick` keeps it to
//! group and async, 1 s each.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use mqlab_engine::{BackendKind, FlushConfig, FlushKind};
use serde::Serialize;

use crate::baseline::{self, Baseline, BaselineParams};
use crate::run::{execute, ExecError, ExecParams};
use crate::spec::{Overrides, SpecFile, Workload};
use crate::summary::{self, Summary};
use crate::table::{render_table, round3};
use crate::util;

/// A family of configurations the matrix runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Family {
    /// Every flush strategy on every backend, in process (plus async
    /// flush intervals).
    #[default]
    Store,
    /// Each configuration in process and over loopback TCP against a
    /// `mqlab broker` started by the lab: the cost of the network.
    Wire,
}

impl Family {
    /// Every family, in `--list-families` order.
    pub const ALL: [Family; 2] = [Family::Store, Family::Wire];

    /// Its `--family` name.
    pub fn name(self) -> &'static str {
        match self {
            Family::Store => "store",
            Family::Wire => "wire",
        }
    }

    /// One line on what it runs.
    pub fn describe(self) -> &'static str {
        match self {
            Family::Store => {
                "every flush strategy x backend in process (+ async intervals): throughput, \
                 latency, loss window, vs the device"
            }
            Family::Wire => {
                "each flush strategy (pwrite) in process and over loopback TCP against a mqlab \
                 broker the lab starts: wire / in-process throughput and p99 (--quick: group, \
                 async)"
            }
        }
    }
}

/// `mqlab matrix --list-families`' text.
pub fn families_text() -> String {
    Family::ALL
        .iter()
        .map(|f| format!("{:<6} {}\n", f.name(), f.describe()))
        .collect()
}

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
    /// The family run (`store`, `wire`).
    pub family: &'static str,
    /// Run folder names, in table order.
    pub runs: Vec<String>,
    /// Skipped configurations.
    pub skipped: Vec<Skipped>,
    /// The printed table.
    pub table: String,
    /// The wire family: each configuration's wire figures over its
    /// in-process ones.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub wire_cost: Vec<WireCost>,
}

/// What the wire costs one configuration (wire family).
#[derive(Debug, Clone, Serialize)]
pub struct WireCost {
    /// Configuration (flush/backend).
    pub config: String,
    /// In-process acknowledged msgs/s.
    pub inproc_msgs_per_s: f64,
    /// Over loopback TCP.
    pub wire_msgs_per_s: f64,
    /// wire / in-process throughput.
    pub msgs_ratio: f64,
    /// In-process p99 ack latency, µs.
    pub inproc_p99_us: u64,
    /// Over loopback TCP, µs.
    pub wire_p99_us: u64,
    /// wire / in-process p99.
    pub p99_ratio: f64,
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
    /// The family of configurations. [default: store]
    pub family: Family,
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
        let backends = if !req.backend.is_empty() {
            req.backend.clone()
        } else if req.family == Family::Wire {
            vec![BackendKind::Pwrite]
        } else {
            BackendKind::ALL.to_vec()
        };
        let flushes = match (req.family, req.flush.is_empty(), req.quick) {
            (Family::Wire, true, true) => vec![FlushKind::Group, FlushKind::Async],
            _ => flushes,
        };
        let intervals = match req.family {
            // The wire family compares configurations, not flush intervals.
            Family::Wire => req.intervals.clone().unwrap_or_default(),
            Family::Store => req.intervals.clone().unwrap_or_else(|| vec![10, 100, 1000]),
        };
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
    /// Wire family: per summary, its configuration and whether it ran
    /// over the wire.
    modes: Vec<(String, bool)>,
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
    let ran = match req.family {
        Family::Store => run_cells(&plan, &parent, &out, baseline.as_ref())?,
        Family::Wire => run_wire_cells(&plan, &parent, &out, baseline.as_ref())?,
    };
    let baseline_after = match &baseline {
        Some(before) if !util::stopped() => {
            Some(baseline_after(&parent, &out, &plan.baseline, before)?)
        }
        _ => None,
    };
    let wire_cost = wire_costs(&ran);
    let table = match req.family {
        Family::Store => summary::table(&ran.summaries.iter().collect::<Vec<_>>()),
        Family::Wire => wire_table(&ran),
    };
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
            family: req.family.name(),
            runs: ran.run_dirs,
            skipped: ran.skipped,
            table: table.clone(),
            wire_cost,
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

/// A `mqlab broker` process the wire family starts: this binary, on
/// loopback ports the system picks, with an embedded name server.
struct LabBroker {
    child: Child,
    namesrv: SocketAddr,
}

fn addr_after(line: &str, marker: &str) -> Option<SocketAddr> {
    line.split(marker)
        .nth(1)?
        .split([';', ' '])
        .next()?
        .parse()
        .ok()
}

impl LabBroker {
    /// Starts it with its data in `data`, `flush` and `backend`; waits
    /// (15 s at most) until it and its name server listen.
    fn start(data: &Path, flush: FlushKind, backend: BackendKind) -> Result<LabBroker> {
        let bin = std::env::current_exe().context("the mqlab binary (to start mqlab broker)")?;
        let mut child = Command::new(&bin)
            .arg("broker")
            .arg("--data-dir")
            .arg(data)
            .args(["--listen", "127.0.0.1:0", "--namesrv-listen", "127.0.0.1:0"])
            .args(["--flush", flush.name(), "--backend", backend.name()])
            .args(["--duration", "3600", "--status-secs", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("start {} broker", bin.display()))?;
        let stdout = child.stdout.take().context("mqlab broker's stdout")?;
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::Builder::new()
            .name("mqlab-lab-broker".into())
            .spawn(move || {
                // Read to the end, so the broker never blocks on a full pipe.
                for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                    let _ = tx.send(l);
                }
            })
            .context("spawn the broker's reader")?;
        let end = Instant::now() + Duration::from_secs(15);
        let (mut broker, mut namesrv) = (None, None);
        while broker.is_none() || namesrv.is_none() {
            let left = end.saturating_duration_since(Instant::now());
            let Ok(line) = rx.recv_timeout(left) else {
                let _ = child.kill();
                let _ = child.wait();
                anyhow::bail!(
                    "mqlab broker ({flush}/{}) did not start within 15 s",
                    backend.name()
                );
            };
            if line.contains("namesrv") {
                namesrv = namesrv.or_else(|| addr_after(&line, "listening on "));
            } else {
                broker = broker.or_else(|| addr_after(&line, "listening on "));
            }
        }
        Ok(LabBroker {
            child,
            namesrv: namesrv.context("the name server's address")?,
        })
    }

    /// SIGTERM, then a clean exit within 30 s (else SIGKILL and an error).
    fn stop(mut self) -> Result<()> {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status()?;
        if !sent.success() {
            anyhow::bail!("kill -TERM {pid} failed");
        }
        let t = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    anyhow::bail!("mqlab broker exited {status}");
                }
                return Ok(());
            }
            if t.elapsed() > Duration::from_secs(30) {
                anyhow::bail!("mqlab broker did not stop within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for LabBroker {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One wire-family run over loopback: a broker with the cell's flush and
/// backend, `run --target` against it into `run_dir`.
fn run_wire_cell(plan: &Plan, cell: &Cell, parent: &Path, run_dir: &Path) -> Result<Summary> {
    let scratch = util::scratch_dir(parent, "mqlab-matrix-broker-")?;
    let broker = LabBroker::start(scratch.path(), cell.flush, cell.backend)?;
    let target = crate::wire::TargetArgs {
        target: Some(format!("rocketmq://{}", broker.namesrv)),
        consume: Some(false),
        status_secs: Some(0.0),
        ..Default::default()
    };
    let name = format!("{}-wire", cell.dir_name());
    let r = crate::wire::execute(&crate::wire::TargetRun {
        args: &target,
        spec: &SpecFile::default(),
        overrides: &plan.workload,
        name: Some(&name),
        out: Some(run_dir),
        ack_log: None,
        ack_log_unbuffered: false,
        store_flags: Vec::new(),
    });
    let stopped = broker.stop();
    let (summary, _) = r?;
    stopped?;
    Ok(summary)
}

/// The wire family: every cell in process, then over loopback.
fn run_wire_cells(
    plan: &Plan,
    parent: &Path,
    out: &Path,
    baseline: Option<&Baseline>,
) -> Result<Ran> {
    if plan.workload.flush_interval_ms.is_some()
        || plan.workload.segment_bytes.is_some()
        || plan.workload.small_files
        || plan.workload.group_batch_writes.is_some()
    {
        anyhow::bail!(
            "--family wire: the broker runs its own store; --flush-interval-ms, \
             --segment-bytes, --small-files and --group-batch-writes apply to the store family"
        );
    }
    let cells = &plan.cells;
    if cells
        .iter()
        .any(|c| c.flush_interval_ms != default_interval_ms())
    {
        anyhow::bail!("--family wire: --intervals applies to the store family");
    }
    let mut ran = Ran::default();
    for (i, cell) in cells.iter().enumerate() {
        let w = Workload::resolve(
            &SpecFile::default(),
            Some(cell.flush),
            Some(cell.backend),
            &plan.workload,
            Some(&format!("{}-inproc", cell.dir_name())),
        )?;
        for wire in [false, true] {
            if util::stopped() {
                break;
            }
            let mode = if wire { "wire" } else { "inproc" };
            let dir_name = format!("{}-{mode}", cell.dir_name());
            let run_dir = out.join(&dir_name);
            eprintln!(
                "mqlab: [{}/{}] {} {}",
                i + 1,
                cells.len(),
                cell.dir_name(),
                if wire {
                    "over loopback TCP (mqlab broker)"
                } else {
                    "in process"
                }
            );
            let r = if wire {
                run_wire_cell(plan, cell, parent, &run_dir).map_err(ExecError::Other)
            } else {
                let scratch = util::scratch_dir(parent, "mqlab-matrix-")?;
                execute(&ExecParams {
                    w: &w,
                    data_dir: scratch.path(),
                    out: &run_dir,
                    ack_log: None,
                    ack_log_unbuffered: false,
                    baseline: baseline.cloned(),
                    shutdown: true,
                    progress: true,
                })
            };
            match r {
                Ok(s) => {
                    ran.run_dirs.push(dir_name);
                    ran.modes.push((w.label(), wire));
                    ran.summaries.push(s);
                }
                Err(e) => {
                    let reason = match e {
                        ExecError::BackendUnavailable(why) => format!("backend unavailable: {why}"),
                        ExecError::Other(e) => format!("failed: {e:#}"),
                    };
                    eprintln!("mqlab: {dir_name}: {reason}");
                    ran.skipped.push(Skipped {
                        config: dir_name,
                        reason,
                    });
                }
            }
        }
    }
    if ran.summaries.is_empty() {
        anyhow::bail!(
            "no configuration of the wire family ran ({} tried, all failed or skipped)",
            cells.len()
        );
    }
    Ok(ran)
}

/// Each configuration's wire figures over its in-process ones (wire
/// family; configurations that ran both ways).
fn wire_costs(ran: &Ran) -> Vec<WireCost> {
    let find = |config: &str, wire: bool| {
        ran.modes
            .iter()
            .position(|(c, w)| c == config && *w == wire)
            .map(|i| &ran.summaries[i])
    };
    let div = |a: f64, b: f64| if b > 0.0 { round3(a / b) } else { 0.0 };
    let mut out = Vec::new();
    for (config, wire) in &ran.modes {
        if *wire {
            continue;
        }
        let (Some(i), Some(w)) = (find(config, false), find(config, true)) else {
            continue;
        };
        out.push(WireCost {
            config: config.clone(),
            inproc_msgs_per_s: i.throughput_msgs_per_s,
            wire_msgs_per_s: w.throughput_msgs_per_s,
            msgs_ratio: div(w.throughput_msgs_per_s, i.throughput_msgs_per_s),
            inproc_p99_us: i.ack_latency_us.p99,
            wire_p99_us: w.ack_latency_us.p99,
            p99_ratio: div(w.ack_latency_us.p99 as f64, i.ack_latency_us.p99 as f64),
        });
    }
    out
}

/// The wire family's table: one row per run, the wire rows with their
/// ratios to the in-process row of the same configuration.
fn wire_table(ran: &Ran) -> String {
    let header = [
        "config",
        "mode",
        "msgs/s",
        "p50 µs",
        "p99 µs",
        "msgs/s vs in-process",
        "p99 vs in-process",
    ];
    let costs = wire_costs(ran);
    let mut cells: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for (s, (config, wire)) in ran.summaries.iter().zip(&ran.modes) {
        let cost = costs.iter().find(|c| c.config == *config && *wire);
        cells.push(vec![
            config.clone(),
            if *wire {
                "wire (loopback)".into()
            } else {
                "in-process".into()
            },
            util::thousands(s.throughput_msgs_per_s),
            util::thousands(s.ack_latency_us.p50 as f64),
            util::thousands(s.ack_latency_us.p99 as f64),
            cost.map_or("-".into(), |c| format!("{:.2}x", c.msgs_ratio)),
            cost.map_or("-".into(), |c| format!("{:.2}x", c.p99_ratio)),
        ]);
    }
    render_table(&cells)
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
    if !ran.modes.is_empty() {
        println!(
            "wire = the same workload through `run --target` against a mqlab broker process on \
             loopback TCP with the same flush strategy and backend"
        );
    }
    if let (Some(b), Some(a)) = (before, after) {
        println!(
            "device: {:.0} fdatasync/s (4 KiB) and {:.0} MiB/s buffered before the runs, {:.0} and {:.0} after",
            b.fdatasync_per_s, b.buffered_write_mib_per_s, a.fdatasync_per_s, a.buffered_write_mib_per_s
        );
    }
    if ran.modes.is_empty() {
        println!("loss = worst acked-but-not-durable window on power loss (messages / age of the oldest, ms)");
        println!("vs device = msgs per 4 KiB fdatasync for sync/group; share of buffered-write MiB/s for async/pool");
    }
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

    #[test]
    fn the_wire_family_is_small() {
        let kinds = |req: MatrixRequest| {
            Plan::of(&req)
                .cells
                .iter()
                .map(|c| (c.flush, c.backend))
                .collect::<Vec<_>>()
        };
        let wire = MatrixRequest {
            family: Family::Wire,
            ..MatrixRequest::default()
        };
        let pw = BackendKind::Pwrite;
        assert_eq!(
            kinds(MatrixRequest {
                quick: true,
                ..wire.clone()
            }),
            [(FlushKind::Group, pw), (FlushKind::Async, pw)]
        );
        assert_eq!(
            kinds(wire.clone()),
            FlushKind::ALL.map(|f| (f, pw)).to_vec()
        );
        // The store family keeps every backend and the async intervals.
        assert_eq!(kinds(MatrixRequest::default()).len(), 15);
        assert!(families_text().lines().any(|l| l.starts_with("wire ")));
    }
}
