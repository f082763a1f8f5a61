//! `mqlab delay`: timer levels vs the time wheel.
//!
//! For each scheduler asked for: a fresh store on a real backend, N timers
//! scheduled by one producer thread with a chosen delay pattern, the
//! scheduler's own threads delivering them, optionally a process crash in
//! the middle (scheduler and store dropped without shutdown, then both
//! reopened: recovery time measured), and at the end every delivered copy
//! read back from the real topic, which is what a consumer would see:
//!
//! - lateness = store time of the delivered copy - its due time
//!   (TIMER_DELIVER_MS), both on the system clock, first copy of each timer;
//! - delivered / lost / duplicated: distinct timers seen, acknowledged
//!   timers never seen, extra copies;
//! - bytes per timer at the peak of pending timers (end of scheduling): the
//!   scheduler's own memory and files, plus for reference the commit-log
//!   bytes per timer and the process RSS growth per timer.
//!
//! Patterns. `burst`: every timer due within one second (`--burst-spread-ms`,
//! default 1000) starting `--lead-ms` after the run starts (the case
//! RocketMQ issue 6566 reports). `uniform`: delays uniform in
//! [`--min-delay-ms`, `--max-delay-ms`]. `levels`: delays drawn from the
//! delay levels within that range. The levels scheduler can only express
//! levels: under `burst` every timer gets the smallest level not shorter
//! than the time left to the burst, and under `uniform` the smallest level
//! not shorter than the drawn delay, so its due times follow the scheduling
//! times instead of forming a burst.
//!
//! Outputs in `--out`: per scheduler a folder with summary.json,
//! lateness.hgrm and lateness_timeseries.csv; a summary.json listing the
//! runs; charts lateness_spectrum and lateness_over_time (SVG and PNG).

pub mod charts;
mod live;
pub mod outputs;
mod plan;
pub mod request;
mod run;

use std::path::PathBuf;

use anyhow::{bail, Result};
use mqlab_engine::delay::SchedulerKind;
use serde::Serialize;

use crate::util::{scratch_parent, thousands, timestamp, write_command, write_json, OutDir};
use charts::{draw_charts, Curves};
use outputs::{read_text, DelaySummary};
pub use request::{DelayRequest, Pattern};

/// A delay run in which no scheduler delivered a single timer measured
/// nothing: a table of zeros would pass for a result.
/// `runs`: (scheduler, acknowledged, delivered).
fn check_delivered(runs: &[(&str, u64, u64)]) -> Result<()> {
    if runs.is_empty() || runs.iter().any(|r| r.2 > 0) {
        return Ok(());
    }
    let what: Vec<String> = runs
        .iter()
        .map(|(name, acked, _)| format!("{name}: 0 of {acked} acknowledged timers"))
        .collect();
    bail!("no timer was delivered ({})", what.join("; "))
}

fn table(runs: &[DelaySummary]) -> String {
    let mut s = format!(
        "{:<22} {:>10} {:>7} {:>7} {:>7} {:>7} {:>9} {:>10} {:>6} {:>6} {:>9}\n",
        "scheduler",
        "sched/s",
        "p50 ms",
        "p99",
        "p99.9",
        "max",
        "B/timer",
        "delivered",
        "lost",
        "dup",
        "recov ms"
    );
    for r in runs {
        s.push_str(&format!(
            "{:<22} {:>10} {:>7} {:>7} {:>7} {:>7} {:>9.1} {:>10} {:>6} {:>6} {:>9}\n",
            r.scheduler,
            thousands(r.schedule_per_s),
            r.lateness_ms.p50,
            r.lateness_ms.p99,
            r.lateness_ms.p999,
            r.lateness_ms.max,
            r.bytes_per_timer,
            r.delivered,
            r.lost,
            r.duplicated,
            r.recovery_ms
                .map(|v| v.to_string())
                .unwrap_or_else(|| "-".into())
        ));
    }
    s
}

/// `mqlab delay`.
pub fn cmd_delay(mut args: DelayRequest) -> Result<()> {
    if args.scheduler.is_empty() {
        args.scheduler = SchedulerKind::ALL.to_vec();
    }
    if args.timers == 0 || args.timers > u32::MAX as u64 {
        bail!("--timers must be 1 to {}", u32::MAX);
    }
    if args.queues == 0 {
        bail!("--queues must be > 0");
    }
    // The data directory first: a bad one fails before anything is created.
    let parent = scratch_parent(args.data_dir.as_deref())?;
    // Claimed now (a fresh `delay-<ts>`, `-2`, ... when taken), removed
    // again if the run fails.
    let out_dir = match &args.out {
        Some(p) => OutDir::given(p, "output folder")?,
        None => OutDir::unique(
            &PathBuf::from("results").join(format!("delay-{}", timestamp())),
            "results folder",
        )?,
    };
    let out = out_dir.path().to_path_buf();
    write_command(&out)?;
    let mut runs = Vec::new();
    let mut hgrams = Vec::new();
    for &kind in &args.scheduler {
        eprintln!(
            "mqlab delay: {} with {} timers ({:?})",
            kind.name(),
            args.timers,
            args.pattern
        );
        let sub = out.join(kind.name());
        let s = run::run_one(&args, kind, &parent, &sub)?;
        hgrams.push((
            s.scheduler.clone(),
            read_text(&sub.join("lateness.hgrm"))?,
            read_text(&sub.join("lateness_timeseries.csv"))?,
        ));
        runs.push(s);
    }
    #[derive(Serialize)]
    struct All<'a> {
        runs: &'a [DelaySummary],
    }
    check_delivered(
        &runs
            .iter()
            .map(|r| (r.scheduler.as_str(), r.acked, r.delivered))
            .collect::<Vec<_>>(),
    )?;
    write_json(&out.join("summary.json"), &All { runs: &runs })?;
    if !args.no_plot {
        let curves: Vec<Curves> = hgrams
            .iter()
            .map(|(name, hgrm, csv)| Curves::parse(name, hgrm, csv))
            .collect();
        draw_charts(&out, &curves)?;
    }
    let out = out_dir.keep();
    crate::util::print_out(&table(&runs));
    eprintln!("results in {}", out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_delivered_is_an_error() {
        let err = check_delivered(&[("wheel", 10, 0), ("levels", 0, 0)]).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("no timer was delivered"), "{msg}");
        assert!(msg.contains("wheel: 0 of 10"), "{msg}");
        // One scheduler delivering is a result (the others lost everything).
        assert!(check_delivered(&[("wheel", 10, 0), ("levels", 10, 3)]).is_ok());
        assert!(check_delivered(&[("wheel", 10, 10)]).is_ok());
    }
}
