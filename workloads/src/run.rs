//! `mqlab run`: one workload against an in-process store (or, with
//! `--target`, a remoting broker: [`crate::wire`]), and [`execute`],
//! which `matrix` calls once per configuration.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use mqlab_engine::{BackendKind, Error as EngineError, FlushKind, Store};

use crate::baseline::{self, Baseline, BaselineParams};
use crate::recorder::{AckLog, LatencySummary, WindowSummary};
use crate::slow_wait::{durable_message, show_slow_wait, SLOW_WAIT};
use crate::spec::{Overrides, SpecFile, Workload};
use crate::summary::{self, why_nothing_acked, LossWindowJson, Ratios, RunConfig, Summary};
use crate::table::round3;
use crate::util::{self, MachineInfo, OutDir};
use crate::workload::{RunOptions, Running};

/// What `mqlab run` is asked to do: plain data, which the binary's
/// command line fills (the `#[arg]`s and these comments are its options and
/// their help).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RunRequest {
    /// Workload spec (TOML, see workloads/specs/); command-line flags
    /// override its values.
    #[arg(long, value_name = "FILE")]
    pub spec: Option<PathBuf>,
    /// Flush strategy: sync (fdatasync per put), group (group commit), async
    /// (periodic flusher), pool (transient store pool). [default: async]
    #[arg(long, value_name = "STRATEGY")]
    pub flush: Option<FlushKind>,
    /// I/O backend: pwrite, mmap or uring. [default: pwrite]
    #[arg(long, value_name = "BACKEND")]
    pub backend: Option<BackendKind>,
    #[command(flatten)]
    pub workload: Overrides,
    /// Store directory, created if missing (and then removed again if the
    /// run fails). [default: a fresh temporary directory, removed
    /// afterwards]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Keep the data directory (only matters for the default temporary one).
    #[arg(long)]
    pub keep_data: bool,
    /// The run's output folder (summary.json, timeseries.csv,
    /// ack_latency.hgrm, command.txt), created if missing (and then removed
    /// again if the run fails); an existing folder is written into and
    /// never removed. [default: results/<timestamp>-<name>/, with -2, -3,
    /// ... added when that folder exists]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Write one CSV line per acknowledged message, as acks arrive, with the
    /// header `topic,queue_id,queue_offset,phys_offset,key` (input of
    /// `verify --acked`).
    #[arg(long, value_name = "FILE")]
    pub ack_log: Option<PathBuf>,
    /// Write each ack-log line to the file as it is acknowledged (one
    /// write per ack) instead of through a 64 KiB buffer, so that a run
    /// killed with SIGKILL leaves every acknowledgement it made in the log
    /// (scripts/reliability.sh needs this to measure what `pool` loses).
    #[arg(long)]
    pub ack_log_unbuffered: bool,
    /// Skip the device baseline (no ratios to the device in the summary).
    #[arg(long)]
    pub no_baseline: bool,
    /// Leave the store as a crash would (no clean shutdown), e.g. to test
    /// `verify` on an unclean directory.
    #[arg(long)]
    pub no_shutdown: bool,
    /// Run name used in the output folder. [default: the spec name, or
    /// <flush>-<backend> (target-<host>-<port> with --target)]
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    #[command(flatten)]
    pub wire: crate::wire::TargetArgs,
}

/// Everything one execution needs.
pub struct ExecParams<'a> {
    /// The workload.
    pub w: &'a Workload,
    /// Store directory (created if missing).
    pub data_dir: &'a Path,
    /// Output folder of the run.
    pub out: &'a Path,
    /// Optional ack log.
    pub ack_log: Option<&'a Path>,
    /// Write the ack log line by line, unbuffered.
    pub ack_log_unbuffered: bool,
    /// Baseline measured beforehand, for the ratios.
    pub baseline: Option<Baseline>,
    /// Shut the store down cleanly at the end.
    pub shutdown: bool,
    /// Draw a progress bar.
    pub progress: bool,
}

/// Why an execution did not produce a summary.
#[derive(Debug)]
pub enum ExecError {
    /// The backend does not exist on this machine (io_uring missing).
    BackendUnavailable(String),
    /// Anything else.
    Other(anyhow::Error),
}

impl From<anyhow::Error> for ExecError {
    fn from(e: anyhow::Error) -> Self {
        ExecError::Other(e)
    }
}

/// Runs one workload on a fresh store in `data_dir` and writes the run's
/// outputs into `out`.
pub fn execute(p: &ExecParams<'_>) -> Result<Summary, ExecError> {
    let w = p.w;
    std::fs::create_dir_all(p.data_dir)
        .with_context(|| format!("create data dir {}", p.data_dir.display()))?;
    let machine = MachineInfo::collect(p.data_dir);
    let cfg = w.store_config();
    let started_utc = util::timestamp();
    let t_open = Instant::now();
    let store = match Store::open(p.data_dir, cfg.clone()) {
        Ok(s) => Arc::new(s),
        Err(EngineError::BackendUnavailable { backend, reason }) => {
            return Err(ExecError::BackendUnavailable(format!(
                "{backend}: {reason}"
            )));
        }
        Err(e) => {
            return Err(ExecError::Other(
                anyhow::Error::new(e)
                    .context(format!("open the store in {}", p.data_dir.display())),
            ))
        }
    };
    let open_ms = t_open.elapsed().as_secs_f64() * 1000.0;
    let ack_log = match p.ack_log {
        Some(path) => {
            let log = if p.ack_log_unbuffered {
                AckLog::create_unbuffered(path)
            } else {
                AckLog::create(path)
            };
            Some(Arc::new(log.with_context(|| {
                format!("create ack log {}", path.display())
            })?))
        }
        None => None,
    };
    let mut running = Running::start(
        store.clone(),
        w,
        RunOptions {
            ack_log,
            progress: p.progress,
            label: w.label(),
            ..RunOptions::default()
        },
    );
    running.wait();
    let outcome = running.finish();
    let offsets_end = store.offsets();
    let shutdown_ms = if p.shutdown {
        let t = Instant::now();
        match Arc::try_unwrap(store) {
            Ok(s) => show_slow_wait(SLOW_WAIT, &durable_message(&w.label(), offsets_end), || {
                s.shutdown()
            })
            .with_context(|| format!("shut down the store in {}", p.data_dir.display()))?,
            Err(_) => return Err(anyhow::anyhow!("store still shared at shutdown").into()),
        }
        Some(round3(t.elapsed().as_secs_f64() * 1000.0))
    } else {
        // Leave the directory as a crash would: no clean shutdown.
        std::mem::forget(store);
        None
    };
    // A run that acknowledged nothing measured nothing: a table of zeros
    // would pass for a result.
    let acked_total: u64 = outcome.stats.seconds.iter().map(|b| b.msgs).sum();
    if acked_total == 0 {
        let why = why_nothing_acked(&outcome.stats.errors);
        return Err(anyhow::anyhow!("{}: no message was acknowledged: {why}", w.label()).into());
    }
    let secs = outcome.measured_secs.max(1e-9);
    let msgs_per_s = round3(outcome.stats.msgs as f64 / secs);
    let mib_per_s = round3(outcome.stats.bytes as f64 / secs / (1024.0 * 1024.0));
    let summary = Summary {
        mqlab_version: env!("CARGO_PKG_VERSION").to_string(),
        name: w.name.clone(),
        label: w.label(),
        command: util::command_line(),
        started_utc,
        config: RunConfig {
            workload: w.clone(),
            store: cfg,
        },
        duration_s: round3(outcome.measured_secs),
        messages_acked: outcome.stats.msgs,
        bytes_acked: outcome.stats.bytes,
        throughput_msgs_per_s: msgs_per_s,
        throughput_mib_per_s: mib_per_s,
        ack_latency_us: LatencySummary::of(&outcome.stats.ack),
        intended_latency_us: (w.rate > 0.0).then(|| LatencySummary::of(&outcome.stats.intended)),
        loss_window: LossWindowJson {
            power: WindowSummary::of(&outcome.loss.power),
            process: WindowSummary::of(&outcome.loss.process),
            samples: outcome.loss.samples,
            sample_period_ms: w.sample_ms,
            max_sample_gap_ms: round3(outcome.loss.max_gap_ms),
            saturated: outcome.saturated,
        },
        errors: outcome.stats.errors.clone(),
        offsets_end: offsets_end.into(),
        open_ms: round3(open_ms),
        shutdown_ms,
        ratios: p
            .baseline
            .as_ref()
            .map(|b| Ratios::of(msgs_per_s, mib_per_s, b)),
        baseline: p.baseline.clone(),
        machine,
        interrupted: outcome.interrupted,
        messaging: None,
    };
    summary::write_run_outputs(
        p.out,
        &summary,
        &outcome.stats,
        &outcome.loss,
        outcome.total_secs,
    )
    .with_context(|| format!("write the run's results into {}", p.out.display()))?;
    Ok(summary)
}

/// Default output folder of a named run: `results/<timestamp>-<name>`
/// (claimed with [`OutDir::unique`], which adds `-2`, `-3`, ... when a run
/// of the same second took it).
pub fn default_out(name: &str) -> PathBuf {
    PathBuf::from("results").join(format!("{}-{}", util::timestamp(), name))
}

/// The output folder of a run: the one given with `--out` (created if
/// missing, used as it is if it exists) or a fresh `results/<ts>-<name>`.
pub fn out_dir(given: Option<&Path>, name: &str) -> Result<OutDir> {
    match given {
        Some(p) => OutDir::given(p, "output folder"),
        None => OutDir::unique(&default_out(name), "results folder"),
    }
}

/// `mqlab run`.
pub fn cmd_run(args: RunRequest) -> Result<()> {
    let spec = match &args.spec {
        Some(p) => SpecFile::load(p)?,
        None => SpecFile::default(),
    };
    if args.wire.target.is_some() {
        let store_flags = [
            ("--flush", args.flush.is_some()),
            ("--backend", args.backend.is_some()),
            ("--data-dir", args.data_dir.is_some()),
            ("--keep-data", args.keep_data),
            ("--no-shutdown", args.no_shutdown),
        ];
        return crate::wire::cmd_run(&crate::wire::TargetRun {
            args: &args.wire,
            spec: &spec,
            overrides: &args.workload,
            name: args.name.as_deref(),
            out: args.out.as_deref(),
            ack_log: args.ack_log.as_deref(),
            ack_log_unbuffered: args.ack_log_unbuffered,
            store_flags: store_flags
                .iter()
                .filter(|(_, given)| *given)
                .map(|(f, _)| *f)
                .collect(),
        });
    }
    args.wire.check_unused()?;
    // Every value is checked before anything is created or measured.
    let w = Workload::resolve(
        &spec,
        args.flush,
        args.backend,
        &args.workload,
        args.name.as_deref(),
    )
    .with_context(|| match &args.spec {
        Some(p) => format!("spec {}", p.display()),
        None => "invalid workload".to_string(),
    })?;
    let out = out_dir(args.out.as_deref(), &w.name)?;
    if let Some(m) = &spec.messaging {
        crate::messaging::cmd_run(m, &w, out.path(), args.data_dir.as_deref())?;
        out.keep();
        return Ok(());
    }
    let (scratch, data_dir) = match &args.data_dir {
        Some(d) => (None, Some(OutDir::given(d, "data dir")?)),
        None => {
            let parent = util::scratch_parent(None)?;
            (Some(util::scratch_dir(&parent, "mqlab-run-")?), None)
        }
    };
    let data_path = match (&scratch, &data_dir) {
        (Some(t), _) => t.path().to_path_buf(),
        (None, Some(d)) => d.path().to_path_buf(),
        (None, None) => unreachable!("one of the two is set"),
    };
    let baseline = if args.no_baseline {
        None
    } else {
        eprintln!("mqlab: measuring the device in {} ...", data_path.display());
        Some(baseline::measure(&data_path, &BaselineParams::default())?)
    };
    let result = execute(&ExecParams {
        w: &w,
        data_dir: &data_path,
        out: out.path(),
        ack_log: args.ack_log.as_deref(),
        ack_log_unbuffered: args.ack_log_unbuffered,
        baseline,
        shutdown: !args.no_shutdown,
        progress: true,
    });
    let summary = match result {
        Ok(s) => s,
        Err(ExecError::BackendUnavailable(why)) => {
            anyhow::bail!("backend unavailable on this machine: {why}")
        }
        Err(ExecError::Other(e)) => return Err(e),
    };
    let out = out.keep();
    if let Some(d) = data_dir {
        d.keep();
    }
    if let Some(t) = scratch {
        if args.keep_data {
            let kept = t.keep();
            eprintln!("mqlab: data kept in {}", kept.display());
        }
    }
    if let Some(b) = &summary.baseline {
        println!(
            "device: {:.0} fdatasync/s (4 KiB), buffered write {:.0} MiB/s, {}",
            b.fdatasync_per_s, b.buffered_write_mib_per_s, b.filesystem
        );
    }
    print!("{}", summary::table(&[&summary]));
    if !summary.errors.is_empty() {
        println!("put errors: {:?}", summary.errors);
    }
    if summary.interrupted {
        println!("(interrupted by Ctrl-C; results cover the time run)");
    }
    println!("results: {}", out.display());
    Ok(())
}
