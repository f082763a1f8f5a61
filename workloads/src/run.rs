//! `mqlab run`: one workload against an in-process store, and
//! [`execute`], which `matrix` calls once per configuration.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use mqlab_engine::{Error as EngineError, Offsets, Store};

use crate::baseline::{self, Baseline, BaselineParams};
use crate::cli::RunArgs;
use crate::recorder::{AckLog, LatencySummary, WindowSummary};
use crate::spec::{SpecFile, Workload};
use crate::summary::{self, round3, LossWindowJson, Ratios, RunConfig, Summary};
use crate::util::{self, MachineInfo, OutDir};
use crate::workload::{RunOptions, Running};

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

/// How long a wait goes on before [`show_slow_wait`] says what it waits for.
pub const SLOW_WAIT: Duration = Duration::from_secs(1);

/// What a store's shutdown waits for: "<label>: making 123 MiB durable"
/// (what was appended but is not durable yet when it starts).
pub fn durable_message(label: &str, o: Offsets) -> String {
    let mib = o.written.saturating_sub(o.flushed) as f64 / (1024.0 * 1024.0);
    let mib = if mib < 10.0 {
        format!("{mib:.1}")
    } else {
        format!("{mib:.0}")
    };
    format!("{label}: making {mib} MiB durable at shutdown")
}

/// Runs `work`; when it takes longer than `after`, says on stderr what it
/// waits for: a spinner when stderr is a terminal, else one line when the
/// wait starts to be long and one when it ends.
pub fn show_slow_wait<T>(after: Duration, what: &str, work: impl FnOnce() -> T) -> T {
    let terminal = std::io::stderr().is_terminal();
    show_slow_wait_to(after, what, terminal, &mut std::io::stderr(), work)
}

/// [`show_slow_wait`] writing its lines to `sink` (not a terminal) or
/// drawing an indicatif spinner on stderr (`terminal`).
pub fn show_slow_wait_to<T>(
    after: Duration,
    what: &str,
    terminal: bool,
    sink: &mut (dyn Write + Send),
    work: impl FnOnce() -> T,
) -> T {
    let started = Instant::now();
    let (done, wait) = mpsc::channel::<()>();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            if !matches!(wait.recv_timeout(after), Err(RecvTimeoutError::Timeout)) {
                return;
            }
            if terminal {
                let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
                let style = ProgressStyle::with_template("{spinner} mqlab: {msg}... {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner());
                pb.set_style(style);
                pb.set_message(what.to_string());
                pb.enable_steady_tick(Duration::from_millis(100));
                let _ = wait.recv();
                pb.finish_and_clear();
                let _ = writeln!(
                    sink,
                    "mqlab: {what}: done in {:.1} s",
                    started.elapsed().as_secs_f64()
                );
            } else {
                let _ = writeln!(sink, "mqlab: {what}...");
                let _ = wait.recv();
                let _ = writeln!(
                    sink,
                    "mqlab: {what}: done in {:.1} s",
                    started.elapsed().as_secs_f64()
                );
            }
        });
        let r = work();
        drop(done);
        r
    })
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
pub fn cmd_run(mut args: RunArgs) -> Result<()> {
    let spec = match &args.spec {
        Some(p) => SpecFile::load(p)?,
        None => SpecFile::default(),
    };
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
        args.out = Some(out.path().to_path_buf());
        crate::messaging::cmd_run(&spec, m, &args)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_wait_says_what_it_waits_for() {
        let mut out = Vec::new();
        let r = show_slow_wait_to(
            Duration::from_millis(50),
            "x: making 3.0 MiB durable at shutdown",
            false,
            &mut out,
            || {
                std::thread::sleep(Duration::from_millis(300));
                7
            },
        );
        assert_eq!(r, 7);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0], "mqlab: x: making 3.0 MiB durable at shutdown...");
        assert!(lines[1].contains(": done in 0."), "{text}");
        // A short wait says nothing.
        let mut out = Vec::new();
        show_slow_wait_to(Duration::from_secs(5), "y", false, &mut out, || ());
        assert!(out.is_empty());
    }

    #[test]
    fn durable_message_names_the_backlog() {
        let o = Offsets {
            written: 300 << 20,
            committed: 300 << 20,
            flushed: 100 << 20,
            acked: 300 << 20,
        };
        assert_eq!(
            durable_message("async-pwrite", o),
            "async-pwrite: making 200 MiB durable at shutdown"
        );
        let o = Offsets {
            written: 3 << 19,
            ..Offsets::default()
        };
        assert_eq!(
            durable_message("s", o),
            "s: making 1.5 MiB durable at shutdown"
        );
    }
}
