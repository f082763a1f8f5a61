//! `mqlab ha`'s outputs: summary.json (a `modes` list), trials.csv,
//! lag.csv, and the charts (acked loss vs throughput per mode; per kill,
//! acked loss vs the lag sampled at the kill).

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use serde::Serialize;

use super::{HaRequest, Mode, Trial};
use crate::plot::{
    chart_beside_legend, draw_both, draw_marker, legend_column, line_only, pe, register_fonts,
    series_style, with_legend_column, Glyph, LegendEntry,
};
use crate::util::thousands;

/// p50, p99 and max of some values.
#[derive(Debug, Clone, Serialize)]
pub struct Pcts {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

fn pcts(v: &[f64]) -> Pcts {
    let mut v: Vec<f64> = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| {
        if v.is_empty() {
            0.0
        } else {
            v[((v.len() - 1) as f64 * q).round() as usize]
        }
    };
    Pcts {
        p50: at(0.5),
        p99: at(0.99),
        max: v.last().copied().unwrap_or(0.0),
    }
}

/// Failover time: not measured in this run.
#[derive(Debug, Clone, Serialize)]
pub struct Failover {
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
    pub reason: String,
}

/// One mode's line of summary.json.
#[derive(Debug, Clone, Serialize)]
pub struct ModeSummary {
    pub name: String,
    pub role: String,
    pub flush: String,
    pub slaves: usize,
    /// Master kills that ran to the end.
    pub failovers: usize,
    pub acked: u64,
    pub acked_lost: u64,
    pub kills_with_loss: usize,
    pub acked_lost_per_kill: Pcts,
    pub acked_lost_worst_slave: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
    pub send_order_inversions: u64,
    pub loss_over_lag: u64,
    pub lag_at_kill_msgs: Pcts,
    pub lag_at_kill_bytes: Pcts,
    pub lag_at_kill_age_ms: Pcts,
    pub max_lag_msgs_sampled: u64,
    pub msgs_per_s: Pcts,
    pub send_errors: u64,
    pub verify_failed_runs: usize,
    pub failover_ms: Failover,
    /// With --failover: SIGKILL to the new master in the route.
    pub election_ms: Option<Pcts>,
    pub acked_after_failover: u64,
    pub lost_after_failover: u64,
}

/// summary.json.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub generated_by: String,
    pub seed: u64,
    pub kills_per_mode: usize,
    pub fault: String,
    pub kill_after_ms: Option<String>,
    pub inflight: usize,
    pub queues: u32,
    pub body_bytes: usize,
    pub elapsed_s: f64,
    pub survivor: String,
    pub modes: Vec<ModeSummary>,
    pub failures: Vec<String>,
}

const NO_FAILOVER: &str = "not measured in this run (without --failover): the slave is the \
     survivor without promotion, so there is no first ack from a new master";

fn summarize(mode: &Mode, ts: &[&Trial]) -> ModeSummary {
    let f = |g: &dyn Fn(&Trial) -> f64| pcts(&ts.iter().map(|t| g(t)).collect::<Vec<_>>());
    ModeSummary {
        name: mode.name(),
        role: mode.role.clone(),
        flush: mode.flush.clone(),
        slaves: mode.slaves,
        failovers: ts.len(),
        acked: ts.iter().map(|t| t.acked).sum(),
        acked_lost: ts.iter().map(|t| t.acked_lost).sum(),
        kills_with_loss: ts.iter().filter(|t| t.acked_lost > 0).count(),
        acked_lost_per_kill: f(&|t| t.acked_lost as f64),
        acked_lost_worst_slave: ts.iter().map(|t| t.acked_lost_worst_slave).sum(),
        duplicated: ts.iter().map(|t| t.duplicated).sum(),
        out_of_order: ts.iter().map(|t| t.out_of_order).sum(),
        send_order_inversions: ts.iter().map(|t| t.send_order_inversions).sum(),
        loss_over_lag: ts.iter().map(|t| t.loss_over_lag).sum(),
        lag_at_kill_msgs: f(&|t| t.lag_at_kill_msgs as f64),
        lag_at_kill_bytes: f(&|t| t.lag_at_kill_bytes as f64),
        lag_at_kill_age_ms: f(&|t| t.lag_at_kill_age_ms),
        max_lag_msgs_sampled: ts.iter().map(|t| t.max_lag_msgs).max().unwrap_or(0),
        msgs_per_s: f(&|t| t.msgs_per_s),
        send_errors: ts.iter().map(|t| t.send_errors).sum(),
        verify_failed_runs: ts
            .iter()
            .filter(|t| t.verify_ok.iter().any(|ok| !ok))
            .count(),
        failover_ms: failover(ts),
        election_ms: (!ts.is_empty() && ts.iter().all(|t| t.election_ms.is_some()))
            .then(|| f(&|t| t.election_ms.unwrap_or(0.0))),
        acked_after_failover: ts.iter().map(|t| t.acked_after_failover).sum(),
        lost_after_failover: ts.iter().map(|t| t.lost_after_failover).sum(),
    }
}

fn failover(ts: &[&Trial]) -> Failover {
    let v: Vec<f64> = ts.iter().filter_map(|t| t.failover_ms).collect();
    if v.is_empty() || v.len() < ts.len() {
        return Failover {
            p50: None,
            p99: None,
            max: None,
            reason: NO_FAILOVER.into(),
        };
    }
    let p = pcts(&v);
    Failover {
        p50: Some(p.p50),
        p99: Some(p.p99),
        max: Some(p.max),
        reason: "last ack from the killed master to the first ack from the elected slave \
                 (controller heartbeat timeout, election, route lookup every 20 ms, reconnect)"
            .into(),
    }
}

/// Writes summary.json, trials.csv, lag.csv and the charts.
pub fn write(
    out: &Path,
    r: &HaRequest,
    modes: &[Mode],
    kills: usize,
    trials: &[Trial],
    failures: &[String],
    started: Instant,
) -> Result<Summary> {
    let ms: Vec<ModeSummary> = modes
        .iter()
        .map(|m| {
            let ts: Vec<&Trial> = trials.iter().filter(|t| t.mode == m.name()).collect();
            summarize(m, &ts)
        })
        .collect();
    let summary = Summary {
        generated_by: format!(
            "mqlab ha{}{} --seed {}",
            if r.quick { " --quick" } else { "" },
            if r.failover { " --failover" } else { "" },
            r.seed
        ),
        seed: r.seed,
        kills_per_mode: kills,
        fault: r.fault.clone(),
        kill_after_ms: r.kill_after_ms.clone(),
        inflight: r.inflight,
        queues: r.queues,
        body_bytes: r.body_bytes,
        elapsed_s: started.elapsed().as_secs_f64(),
        survivor: if r.failover {
            "the slave the controller elected, which took the load after the kill, stopped \
             cleanly at the end"
                .into()
        } else {
            "the slave with the longest log, stopped cleanly after the master's SIGKILL, not \
             promoted"
                .into()
        },
        modes: ms,
        failures: failures.to_vec(),
    };
    std::fs::write(
        out.join("summary.json"),
        serde_json::to_string_pretty(&summary)? + "\n",
    )
    .context("write summary.json")?;

    let mut csv = String::from(
        "mode,kill,seed,kill_at_ms,sent,acked,send_errors,msgs_per_s,acked_lost,acked_lost_worst_slave,verify_missing,verify_ok,duplicated,out_of_order,send_order_inversions,lag_at_kill_msgs,lag_at_kill_bytes,lag_at_kill_age_ms,loss_over_lag,samples,max_lag_msgs,failover_ms,election_ms,acked_after_failover,lost_after_failover\n",
    );
    for t in trials {
        let join = |v: Vec<String>| v.join(";");
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{:.0},{},{},{},{},{},{},{},{},{},{:.2},{},{},{},{},{},{},{}",
            t.mode,
            t.kill,
            t.seed,
            t.kill_at_ms,
            t.sent,
            t.acked,
            t.send_errors,
            t.msgs_per_s,
            t.acked_lost,
            t.acked_lost_worst_slave,
            join(t.verify_missing.iter().map(|v| v.to_string()).collect()),
            join(t.verify_ok.iter().map(|v| v.to_string()).collect()),
            t.duplicated,
            t.out_of_order,
            t.send_order_inversions,
            t.lag_at_kill_msgs,
            t.lag_at_kill_bytes,
            t.lag_at_kill_age_ms,
            t.loss_over_lag,
            t.samples,
            t.max_lag_msgs,
            t.failover_ms.map_or(String::new(), |v| format!("{v:.1}")),
            t.election_ms.map_or(String::new(), |v| format!("{v:.1}")),
            t.acked_after_failover,
            t.lost_after_failover
        );
    }
    std::fs::write(out.join("trials.csv"), csv).context("write trials.csv")?;

    let mut lag = String::from(
        "mode,kill,t_ms,master_committed,slave_written,lag_bytes,lag_msgs,lag_age_ms\n",
    );
    for t in trials {
        for s in &t.lag {
            let _ = writeln!(
                lag,
                "{},{},{:.1},{},{},{},{},{:.2}",
                t.mode,
                t.kill,
                s.t_ms,
                s.master_committed,
                s.slave_written
                    .iter()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join(";"),
                s.lag_bytes,
                s.lag_msgs,
                s.lag_age_ms
            );
        }
    }
    std::fs::write(out.join("lag.csv"), lag).context("write lag.csv")?;

    if !trials.is_empty() {
        register_fonts();
        draw_both!(out, "ha_loss_vs_throughput", |a| loss_chart(
            &a,
            &summary.modes
        ))?;
        draw_both!(out, "ha_loss_vs_lag", |a| lag_chart(&a, modes, trials))?;
    }
    Ok(summary)
}

/// One line per mode for the terminal.
pub fn table(s: &Summary) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{:<30} {:>6} {:>9} {:>7} {:>9} {:>10} {:>6} {:>6} {:>12} {:>9}",
        "mode",
        "kills",
        "acked",
        "lost",
        "over lag",
        "lag p99",
        "dup",
        "order",
        "msgs/s p50",
        "failover"
    );
    for m in &s.modes {
        let _ = writeln!(
            o,
            "{:<30} {:>6} {:>9} {:>7} {:>9} {:>10.0} {:>6} {:>6} {:>12.0} {:>9}",
            m.name,
            m.failovers,
            m.acked,
            m.acked_lost,
            m.loss_over_lag,
            m.lag_at_kill_msgs.p99,
            m.duplicated,
            m.out_of_order,
            m.msgs_per_s.p50,
            m.failover_ms
                .p50
                .map_or("n/a".to_string(), |f| format!("{f:.0} ms"))
        );
    }
    o
}

fn loss_chart<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    modes: &[ModeSummary],
) -> Result<()> {
    let labels: Vec<String> = modes.iter().map(|m| m.name.clone()).collect();
    let (plot, legend) = with_legend_column(
        root,
        "Master SIGKILLed: acknowledged messages lost per kill vs throughput",
        22,
        &labels,
    )?;
    let max_x = modes.iter().map(|m| m.msgs_per_s.p50).fold(1.0, f64::max) * 1.15;
    let max_y = modes
        .iter()
        .map(|m| m.acked_lost_per_kill.max)
        .fold(1.0, f64::max)
        * 1.15;
    let mut ch = chart_beside_legend(&plot, 30, 0f64..max_x, -max_y * 0.03..max_y)?;
    ch.configure_mesh()
        .x_label_formatter(&|x| thousands(*x))
        .y_label_formatter(&|y| thousands(*y))
        .x_desc("acknowledged msgs/s before the kill (median of kills)")
        .y_desc("acked messages lost on the best slave (median, bar to max)")
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 17))
        .draw()
        .map_err(pe)?;
    for (i, m) in modes.iter().enumerate() {
        let s = series_style(i);
        let x = m.msgs_per_s.p50;
        line_only(
            &mut ch,
            &[
                (x, m.acked_lost_per_kill.p50),
                (x, m.acked_lost_per_kill.max),
            ],
            s.color,
            false,
            1,
        )?;
        draw_marker(
            ch.plotting_area(),
            (x, m.acked_lost_per_kill.p50),
            s.marker,
            s.color,
            6,
        )?;
    }
    let entries: Vec<LegendEntry> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| {
            LegendEntry::new(
                l.clone(),
                Glyph::Point(series_style(i).marker, series_style(i).color),
            )
        })
        .collect();
    legend_column(&legend, &entries, 15)?;
    Ok(())
}

fn lag_chart<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    modes: &[Mode],
    trials: &[Trial],
) -> Result<()> {
    let labels: Vec<String> = modes.iter().map(|m| m.name()).collect();
    let (plot, legend) = with_legend_column(
        root,
        "Per kill: acked messages lost vs the lag sampled at the kill (loss <= lag)",
        22,
        &labels,
    )?;
    let max = trials
        .iter()
        .map(|t| t.lag_at_kill_msgs.max(t.acked_lost) as f64)
        .fold(1.0, f64::max)
        * 1.1;
    let mut ch = chart_beside_legend(&plot, 30, 0f64..max, 0f64..max)?;
    ch.configure_mesh()
        .x_label_formatter(&|x| thousands(*x))
        .y_label_formatter(&|y| thousands(*y))
        .x_desc("acked messages past the best slave's written offset at the kill")
        .y_desc("acked messages lost on the best slave")
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 17))
        .draw()
        .map_err(pe)?;
    line_only(
        &mut ch,
        &[(0.0, 0.0), (max, max)],
        RGBColor(150, 150, 150),
        true,
        1,
    )?;
    for (i, m) in modes.iter().enumerate() {
        let s = series_style(i);
        for t in trials.iter().filter(|t| t.mode == m.name()) {
            draw_marker(
                ch.plotting_area(),
                (t.lag_at_kill_msgs as f64, t.acked_lost as f64),
                s.marker,
                s.color,
                4,
            )?;
        }
    }
    let mut entries: Vec<LegendEntry> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| {
            LegendEntry::new(
                l.clone(),
                Glyph::Point(series_style(i).marker, series_style(i).color),
            )
        })
        .collect();
    entries.push(LegendEntry::new(
        "loss = lag",
        Glyph::Line(RGBColor(150, 150, 150), 1, true),
    ));
    legend_column(&legend, &entries, 15)?;
    Ok(())
}
