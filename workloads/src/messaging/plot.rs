//! Charts of messaging runs, drawn with the same plotting code as every
//! run (`crate::plot`): backlog and consumer-side queue over time, and
//! end-to-end latency by percentile, one line per variant. The producers'
//! ack-latency and throughput charts come from `crate::plot::plot_dirs`.

use std::path::{Path, PathBuf};

use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::plot::{
    chart_beside_legend, draw_both, legend_column, marker_phase, nines_label, pe, register_fonts,
    series_entries, series_style, styled_line, with_legend_column, SPECTRUM_RIGHT_MARGIN,
};
use crate::summary::parse_hgrm;
use crate::table::csv_columns;

/// One variant folder.
struct Variant {
    label: String,
    /// (t s, backlog, consumer queue)
    series: Vec<(f64, f64, f64)>,
    /// (µs, percentile)
    e2e: Vec<(f64, f64)>,
}

fn load(dir: &Path) -> Option<Variant> {
    let csv = std::fs::read_to_string(dir.join("messaging.csv")).ok()?;
    let series = csv_columns(&csv, &["t_ms", "backlog", "consumer_queue"])
        .into_iter()
        .map(|f| (f[0] / 1000.0, f[1], f[2]))
        .collect();
    let e2e = std::fs::read_to_string(dir.join("e2e_latency.hgrm"))
        .map(|t| parse_hgrm(&t))
        .unwrap_or_default();
    let label = serde_json::from_str::<serde_json::Value>(
        &std::fs::read_to_string(dir.join("summary.json")).ok()?,
    )
    .ok()?
    .get("label")?
    .as_str()?
    .to_string();
    Some(Variant { label, series, e2e })
}

fn discover(inputs: &[PathBuf]) -> Vec<Variant> {
    let mut out = Vec::new();
    for input in inputs {
        if let Some(v) = load(input) {
            out.push(v);
            continue;
        }
        let mut subs: Vec<PathBuf> = std::fs::read_dir(input)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        subs.sort();
        out.extend(subs.iter().filter_map(|s| load(s)));
    }
    out
}

fn backlog<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, vs: &[Variant]) -> Result<()> {
    let labels: Vec<String> = vs.iter().map(|v| v.label.clone()).collect();
    let (plot, legend) = with_legend_column(
        &root,
        "Backlog (not yet consumed by the group)",
        22,
        &labels,
    )?;
    let (top, bottom) = plot.split_vertically(plot.dim_in_pixel().1 / 2);
    let max_t = vs
        .iter()
        .flat_map(|v| v.series.iter().map(|s| s.0))
        .fold(1.0, f64::max);
    let max_b = vs
        .iter()
        .flat_map(|v| v.series.iter().map(|s| s.1))
        // At least 0..5 messages, so the tick labels are whole numbers.
        .fold(5.0, f64::max);
    let max_q = vs
        .iter()
        .flat_map(|v| v.series.iter().map(|s| s.2))
        .fold(5.0, f64::max);
    let mut c1 = ChartBuilder::on(&top)
        .margin(10)
        .margin_right(20)
        .x_label_area_size(30)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..max_t, 0f64..max_b * 1.1)
        .map_err(pe)?;
    c1.configure_mesh()
        .y_desc("messages")
        .y_label_formatter(&|y| crate::util::thousands(*y))
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(pe)?;
    let mut c2 = ChartBuilder::on(&bottom)
        .caption(
            "Consumer-side queue (cached, not processed)",
            ("sans-serif", 20),
        )
        .margin(10)
        .margin_right(20)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..max_t, 0f64..max_q * 1.1)
        .map_err(pe)?;
    c2.configure_mesh()
        .x_desc("seconds since start")
        .y_desc("messages")
        .y_label_formatter(&|y| crate::util::thousands(*y))
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(pe)?;
    for (i, v) in vs.iter().enumerate() {
        let (s, phase) = (series_style(i), marker_phase(i, vs.len()));
        let backlog: Vec<(f64, f64)> = v.series.iter().map(|s| (s.0, s.1)).collect();
        styled_line(&mut c1, &backlog, s, phase)?;
        let queue: Vec<(f64, f64)> = v.series.iter().map(|s| (s.0, s.2)).collect();
        styled_line(&mut c2, &queue, s, phase)?;
    }
    legend_column(&legend, &series_entries(&labels), 12)?;
    Ok(())
}

fn e2e<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, vs: &[Variant]) -> Result<()> {
    let with: Vec<&Variant> = vs.iter().filter(|v| v.e2e.len() > 1).collect();
    if with.is_empty() {
        return Ok(());
    }
    let pts = |v: &Variant| -> Vec<(f64, f64)> {
        v.e2e
            .iter()
            .filter(|(_, p)| *p < 1.0)
            .map(|(us, p)| (-(1.0 - p).log10(), (us / 1000.0).max(0.001)))
            .collect()
    };
    let max_x = with
        .iter()
        .flat_map(|v| pts(v))
        .map(|(x, _)| x)
        .fold(2.0, f64::max)
        .min(5.0)
        .ceil();
    let (lo, hi) = with
        .iter()
        .flat_map(|v| pts(v))
        .fold((f64::MAX, 0.001f64), |(a, b), (_, y)| (a.min(y), b.max(y)));
    let labels: Vec<String> = with.iter().map(|v| v.label.clone()).collect();
    let (plot, legend) = with_legend_column(
        &root,
        "End-to-end latency (send to consumption) by percentile",
        24,
        &labels,
    )?;
    let mut chart = chart_beside_legend(
        &plot,
        SPECTRUM_RIGHT_MARGIN,
        0f64..max_x,
        ((lo / 1.5).max(0.001)..hi * 2.0).log_scale(),
    )?;
    chart
        .configure_mesh()
        .x_labels(max_x as usize + 1)
        .x_label_formatter(&|x| nines_label(*x))
        .x_desc("percentile (log scale of nines)")
        .y_desc("end-to-end latency (ms, log scale)")
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(pe)?;
    for (i, v) in with.iter().enumerate() {
        styled_line(
            &mut chart,
            &pts(v),
            series_style(i),
            marker_phase(i, with.len()),
        )?;
    }
    legend_column(&legend, &series_entries(&labels), 15)?;
    Ok(())
}

/// Draws the messaging charts (when the inputs hold messaging runs) and
/// the standard run charts into `out`; returns the file names.
pub fn draw(inputs: &[PathBuf], out: &Path) -> Result<Vec<String>> {
    register_fonts();
    let vs = discover(inputs);
    let mut files = Vec::new();
    if !vs.is_empty() {
        std::fs::create_dir_all(out)?;
        files.extend(draw_both!(out, "backlog", |a| backlog(a, &vs))?);
        files.extend(draw_both!(out, "e2e_latency", |a| e2e(a, &vs))?);
    }
    files.extend(crate::plot::runs::plot_dirs(inputs, out)?);
    Ok(files)
}

/// The messaging charts only, for `mqlab plot` (which draws the rest).
pub fn draw_messaging_only(inputs: &[PathBuf], out: &Path) -> Result<Vec<String>> {
    let vs = discover(inputs);
    if vs.is_empty() {
        return Ok(Vec::new());
    }
    register_fonts();
    std::fs::create_dir_all(out)?;
    let mut files = draw_both!(out, "backlog", |a| backlog(a, &vs))?;
    files.extend(draw_both!(out, "e2e_latency", |a| e2e(a, &vs))?);
    Ok(files)
}
