//! Charts of store runs and crash experiments, from their folders:
//!
//! - latency_spectrum: ack latency by percentile on a log "nines" axis
//!   (90%, 99%, 99.9%, ...), one line per configuration;
//! - loss_vs_throughput: the headline chart, one point per configuration,
//!   log-log, the Pareto frontier (nothing else is both faster and loses
//!   less) drawn and ringed;
//! - timeseries: throughput and p99 per time-series bucket over each run
//!   (throughput on a log axis when the runs are orders of magnitude
//!   apart, as sync/group and async/pool are);
//! - crash_loss: per crash, acknowledged messages lost vs the window
//!   sampled at the crash instant (every point must be on or under the
//!   diagonal).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::{CoordTranslate, Shift};
use plotters::prelude::*;

use super::*;
use crate::crash::CrashRecord;
use crate::summary::{parse_hgrm, parse_timeseries, Summary, TimeRow};

/// One run loaded from its folder.
pub struct RunData {
    /// summary.json.
    pub summary: Summary,
    /// (value µs, percentile) rows of ack_latency.hgrm.
    pub hgrm: Vec<(f64, f64)>,
    /// timeseries.csv rows.
    pub series: Vec<TimeRow>,
}

/// One crash experiment loaded from its folder.
pub struct CrashData {
    /// Folder.
    pub dir: PathBuf,
    /// crashes.json.
    pub records: Vec<CrashRecord>,
}

fn load_run(dir: &Path) -> Result<RunData> {
    let text = std::fs::read_to_string(dir.join("summary.json"))?;
    let summary: Summary = serde_json::from_str(&text)
        .with_context(|| format!("parsing {}/summary.json", dir.display()))?;
    let hgrm = std::fs::read_to_string(dir.join("ack_latency.hgrm"))
        .map(|t| parse_hgrm(&t))
        .unwrap_or_default();
    let series = std::fs::read_to_string(dir.join("timeseries.csv"))
        .map(|t| parse_timeseries(&t))
        .unwrap_or_default();
    Ok(RunData {
        summary,
        hgrm,
        series,
    })
}

/// Finds runs and crash experiments in `inputs` (each a run folder, a
/// crash folder, or a folder of those).
pub fn discover(inputs: &[PathBuf]) -> Result<(Vec<RunData>, Vec<CrashData>)> {
    let mut runs = Vec::new();
    let mut crashes = Vec::new();
    let mut visit = |d: &Path| -> Result<bool> {
        let mut found = false;
        if crate::delay::outputs::delay_schedulers(d).is_some() {
            // A `mqlab delay` folder: drawn by crate::delay::draw_delay_only.
            return Ok(true);
        }
        if d.join("summary.json").is_file() {
            runs.push(load_run(d)?);
            found = true;
        }
        if d.join("crashes.json").is_file() {
            let text = std::fs::read_to_string(d.join("crashes.json"))?;
            let records: Vec<CrashRecord> = serde_json::from_str(&text)
                .with_context(|| format!("parsing {}/crashes.json", d.display()))?;
            crashes.push(CrashData {
                dir: d.to_path_buf(),
                records,
            });
            found = true;
        }
        Ok(found)
    };
    for input in inputs {
        if !input.is_dir() {
            anyhow::bail!("{} is not a folder", input.display());
        }
        if visit(input)? {
            continue;
        }
        let mut subs: Vec<PathBuf> = std::fs::read_dir(input)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        subs.sort();
        for s in subs {
            visit(&s)?;
        }
    }
    Ok((runs, crashes))
}

/// Draws every chart the inputs allow into `out`; returns the file names.
pub fn plot_dirs(inputs: &[PathBuf], out: &Path) -> Result<Vec<String>> {
    let files = plot_runs(inputs, out)?;
    if files.is_empty() {
        anyhow::bail!("no summary.json or crashes.json found in the inputs");
    }
    Ok(files)
}

/// [`plot_dirs`] without the error when the inputs hold no runs.
pub fn plot_runs(inputs: &[PathBuf], out: &Path) -> Result<Vec<String>> {
    register_fonts();
    let (runs, crashes) = discover(inputs)?;
    if runs.is_empty() && crashes.is_empty() {
        return Ok(Vec::new());
    }
    std::fs::create_dir_all(out)?;
    let mut files = Vec::new();
    if !runs.is_empty() {
        files.extend(draw_both!(out, "loss_vs_throughput", |a| {
            loss_vs_throughput(a, &runs)
        })?);
        files.extend(draw_both!(out, "latency_spectrum", |a| latency_spectrum(
            a, &runs
        ))?);
        files.extend(draw_both!(out, "timeseries", |a| timeseries(a, &runs))?);
    }
    if !crashes.is_empty() {
        files.extend(draw_both!(out, "crash_loss", |a| crash_loss(a, &crashes))?);
    }
    Ok(files)
}

/// Colour of a flush strategy (from the palette: red, green, blue,
/// purple; grey for anything else).
fn flush_color(flush: &str) -> RGBColor {
    match flush {
        "sync" => PALETTE[3],
        "group" => PALETTE[2],
        "async" => PALETTE[0],
        "pool" => PALETTE[4],
        _ => PALETTE[7],
    }
}

fn latency_spectrum<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    runs: &[RunData],
) -> Result<()> {
    let with: Vec<&RunData> = runs.iter().filter(|r| r.hgrm.len() > 1).collect();
    if with.is_empty() {
        return Ok(());
    }
    let pts = |r: &RunData| -> Vec<(f64, f64)> {
        r.hgrm
            .iter()
            .filter(|(_, p)| *p < 1.0)
            .map(|(v, p)| (-(1.0 - p).log10(), v.max(1.0)))
            .collect()
    };
    let max_x = with
        .iter()
        .flat_map(|r| pts(r))
        .map(|(x, _)| x)
        .fold(2.0, f64::max)
        .min(6.0)
        .ceil();
    let (ymin, ymax) = with
        .iter()
        .flat_map(|r| r.hgrm.iter().map(|(v, _)| v.max(1.0)))
        .fold((f64::MAX, 1.0f64), |(a, b), v| (a.min(v), b.max(v)));
    let labels: Vec<String> = with.iter().map(|r| r.summary.label.clone()).collect();
    let (plot, legend) = with_legend_column(&root, "Ack latency by percentile", 26, &labels)?;
    // The last tick label ("99.9999%") is centred on the right edge.
    let mut chart = chart_beside_legend(
        &plot,
        SPECTRUM_RIGHT_MARGIN,
        0f64..max_x,
        ((ymin / 1.5).max(0.5)..ymax * 2.0).log_scale(),
    )?;
    chart
        .configure_mesh()
        .x_labels(max_x as usize + 1)
        .x_label_formatter(&|x| nines_label(*x))
        .y_label_formatter(&|y| crate::util::thousands(*y))
        .x_desc("percentile (log scale of nines)")
        .y_desc("ack latency (µs, log scale)")
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 17))
        .draw()
        .map_err(pe)?;
    for (i, r) in with.iter().enumerate() {
        styled_line(
            &mut chart,
            &pts(r),
            series_style(i),
            marker_phase(i, with.len()),
        )?;
    }
    legend_column(&legend, &series_entries(&labels), 15)?;
    Ok(())
}

/// Indices of the Pareto-optimal points: no other point has at least the
/// throughput and at most the loss, with one of them strictly better.
pub fn pareto(points: &[(f64, f64)]) -> Vec<usize> {
    (0..points.len())
        .filter(|&i| {
            let (t, l) = points[i];
            !points
                .iter()
                .any(|&(t2, l2)| t2 >= t && l2 <= l && (t2 > t || l2 < l))
        })
        .collect()
}

/// Colour of the Pareto frontier.
const PARETO: RGBColor = RGBColor(255, 140, 0);

/// Loss-window floor on the log axis: zero windows are drawn here.
const LOSS_FLOOR_MS: f64 = 0.01;

fn loss_vs_throughput<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    runs: &[RunData],
) -> Result<()> {
    let pts: Vec<(f64, f64)> = runs
        .iter()
        .map(|r| {
            (
                r.summary.throughput_msgs_per_s.max(1.0),
                r.summary.loss_window.power.max_ms.max(LOSS_FLOOR_MS),
            )
        })
        .collect();
    let front = pareto(&pts);
    let (xmin, xmax) = pts
        .iter()
        .fold((f64::MAX, 0f64), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let ymax = pts.iter().map(|p| p.1).fold(1.0, f64::max);
    let mut entries = vec![LegendEntry::new(
        "Pareto frontier",
        Glyph::Line(PARETO, 3, false),
    )];
    let mut flushes: Vec<&str> = runs
        .iter()
        .map(|r| r.summary.config.workload.flush.name())
        .collect();
    flushes.sort_unstable();
    flushes.dedup();
    entries.extend(
        flushes
            .iter()
            .map(|f| LegendEntry::new(*f, Glyph::Point(Marker::Circle, flush_color(f)))),
    );
    // A log axis holding fewer than two powers of ten gets one or no tick
    // label: widen it to the powers of ten around the points (plotters then
    // labels the steps in between).
    let (mut x_lo, mut x_hi) = (xmin / 2.0, xmax * 3.0);
    if x_hi.log10().floor() - x_lo.log10().ceil() < 1.0 {
        let decade = 10f64.powf(x_lo.log10().floor());
        (x_lo, x_hi) = (decade * 0.8, x_hi.max(decade * 12.0));
    }
    let labels: Vec<String> = entries.iter().map(|e| e.label.clone()).collect();
    let (plot, legend) = with_legend_column(
        &root,
        "Loss window vs throughput (power loss), Pareto frontier ringed",
        24,
        &labels,
    )?;
    // Room for half of a tick label on the right edge.
    let mut chart = chart_beside_legend(
        &plot,
        35,
        (x_lo..x_hi).log_scale(),
        (LOSS_FLOOR_MS / 2.0..ymax * 4.0).log_scale(),
    )?;
    chart
        .configure_mesh()
        .x_label_formatter(&|x| {
            // Within one decade plotters labels 1..9 x 10^k: keep 1, 2, 5.
            let lead = (x / 10f64.powf(x.log10().floor())).round();
            if [1.0, 2.0, 5.0].contains(&lead) {
                crate::util::thousands(*x)
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|y| {
            if *y <= LOSS_FLOOR_MS * 1.01 {
                "0".to_string()
            } else if *y < 1.0 {
                format!("{y}")
            } else {
                crate::util::thousands(*y)
            }
        })
        .x_desc("throughput (acknowledged msgs/s, log scale)")
        .y_desc("max loss window: age of oldest acked-not-durable msg (ms, log; 0 = durable acks)")
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 16))
        .draw()
        .map_err(pe)?;
    // Frontier line, by throughput.
    let mut fpts: Vec<(f64, f64)> = front.iter().map(|&i| pts[i]).collect();
    fpts.sort_by(|a, b| a.0.total_cmp(&b.0));
    chart
        .draw_series(LineSeries::new(fpts, PARETO.mix(0.7).stroke_width(3)))
        .map_err(pe)?;
    for &i in &front {
        chart
            .draw_series(std::iter::once(Circle::new(
                pts[i],
                11,
                PARETO.stroke_width(3),
            )))
            .map_err(pe)?;
    }
    for (i, r) in runs.iter().enumerate() {
        let c = flush_color(r.summary.config.workload.flush.name());
        chart
            .draw_series(std::iter::once(Circle::new(pts[i], 6, c.filled())))
            .map_err(pe)?;
    }
    // Labels: greedy placement around each point, avoiding the labels
    // already placed and the points themselves.
    let pixel: Vec<(i32, i32)> = pts.iter().map(|p| chart.backend_coord(p)).collect();
    let labels: Vec<String> = runs.iter().map(|r| r.summary.label.clone()).collect();
    let offsets = place_labels(&pixel, &labels, 13);
    for (i, (dx, dy)) in offsets.into_iter().enumerate() {
        if dy.abs() > 16 || dx < 0 {
            // A leader line to a label placed away from its point.
            let anchor = if dx < 0 {
                (dx + labels[i].chars().count() as i32 * 7, dy + 7)
            } else {
                (dx, dy + 7)
            };
            chart
                .draw_series(std::iter::once(
                    EmptyElement::at(pts[i])
                        + PathElement::new(vec![(0, 0), anchor], BLACK.mix(0.35).stroke_width(1)),
                ))
                .map_err(pe)?;
        }
        chart
            .draw_series(std::iter::once(
                EmptyElement::at(pts[i])
                    + Text::new(
                        labels[i].clone(),
                        (dx, dy),
                        ("sans-serif", 13).into_font().color(&BLACK),
                    ),
            ))
            .map_err(pe)?;
    }
    legend_column(&legend, &entries, 15)?;
    Ok(())
}

/// Pixel offsets (from each point to its label's top-left corner) chosen
/// greedily so labels overlap neither each other nor the points. Label
/// sizes are estimated from the character count at `font_px`.
pub fn place_labels(points: &[(i32, i32)], labels: &[String], font_px: i32) -> Vec<(i32, i32)> {
    // DejaVu Sans averages about 0.62 em per character; rounded up, plus a
    // few pixels of air, so neighbouring labels never touch.
    let char_w = (font_px * 65 + 99) / 100;
    let h = font_px + 2;
    let mut placed: Vec<(i32, i32, i32, i32)> = points
        .iter()
        .map(|&(x, y)| (x - 7, y - 7, x + 7, y + 7))
        .collect();
    let overlaps = |r: (i32, i32, i32, i32), placed: &[(i32, i32, i32, i32)]| {
        placed
            .iter()
            .filter(|p| r.0 < p.2 && p.0 < r.2 && r.1 < p.3 && p.1 < r.3)
            .count()
    };
    let mut out = Vec::with_capacity(points.len());
    // Place from left to right so clusters fan out consistently.
    let mut order: Vec<usize> = (0..points.len()).collect();
    order.sort_by_key(|&i| (points[i].0, points[i].1));
    let mut result = vec![(9, -h / 2); points.len()];
    for i in order {
        let (x, y) = points[i];
        let w = labels[i].chars().count() as i32 * char_w + 4;
        let mut best = (usize::MAX, (9, -h / 2));
        for k in 0..12 {
            let step = (k / 4 + 1) * h;
            let cand = match k % 4 {
                0 => (9, -h / 2 - (k / 4) * h * 2),
                1 => (9, -h / 2 + step),
                2 => (9, -h / 2 - step),
                _ => (-w - 9, -h / 2 + (k / 4) * h),
            };
            let r = (x + cand.0, y + cand.1, x + cand.0 + w, y + cand.1 + h);
            let n = overlaps(r, &placed);
            if n < best.0 {
                best = (n, cand);
                if n == 0 {
                    break;
                }
            }
        }
        let (dx, dy) = best.1;
        placed.push((x + dx, y + dy, x + dx + w, y + dy + h));
        result[i] = (dx, dy);
    }
    out.extend(result);
    out
}

fn timeseries<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, runs: &[RunData]) -> Result<()> {
    let with: Vec<&RunData> = runs.iter().filter(|r| !r.series.is_empty()).collect();
    if with.is_empty() {
        return Ok(());
    }
    let labels: Vec<String> = with.iter().map(|r| r.summary.label.clone()).collect();
    let mut entries = series_entries(&labels);
    if let Some(r) = with.first().and_then(|r| r.series.first()) {
        let ms = (r.interval_s * 1000.0).round();
        let every = if ms >= 1000.0 {
            format!("{} s", ms / 1000.0)
        } else {
            format!("{ms} ms")
        };
        entries.push(LegendEntry::new(
            format!("a point every {every}"),
            Glyph::Note,
        ));
    }
    let legend_labels: Vec<String> = entries.iter().map(|e| e.label.clone()).collect();
    let (plot, legend) = with_legend_column(
        &root,
        "Throughput and p99 ack latency over time",
        24,
        &legend_labels,
    )?;
    let (top, bottom) = plot.split_vertically(plot.dim_in_pixel().1 / 2);
    let max_t = with
        .iter()
        .flat_map(|r| r.series.iter().map(|s| s.t_s + s.interval_s))
        .fold(1.0, f64::max);
    let rates: Vec<f64> = with
        .iter()
        .flat_map(|r| r.series.iter().map(|s| s.msgs_per_s))
        .collect();
    let max_rate = rates.iter().copied().fold(1.0, f64::max);
    // Runs orders of magnitude apart (sync/group next to async/pool) get a
    // log axis, on which the slow ones do not lie flat on zero. Compared on
    // each run's median, so a few empty buckets do not force it.
    let medians: Vec<f64> = with.iter().map(|r| median_rate(&r.series)).collect();
    let log_rate = needs_log_axis(&medians);
    let min_rate = rates
        .iter()
        .copied()
        .filter(|v| *v > 0.0)
        .fold(f64::MAX, f64::min)
        .min(max_rate);
    let (rate_floor, rate_top) = log_range((min_rate / 2.0).max(0.1), max_rate * 2.0);
    let (pmin, pmax) = with
        .iter()
        .flat_map(|r| r.series.iter().filter(|s| s.p99_us > 0.0).map(|s| s.p99_us))
        .fold((f64::MAX, 1.0f64), |(a, b), v| (a.min(v), b.max(v)));
    let pmin = if pmin == f64::MAX { 1.0 } else { pmin };
    let (p_lo, p_hi) = log_range((pmin / 1.5).max(0.5), pmax * 2.0);
    // Warmup, shaded when every run had the same.
    let warmup = with[0].summary.config.workload.warmup_secs;
    let warmup = with
        .iter()
        .all(|r| r.summary.config.workload.warmup_secs == warmup)
        .then_some(warmup)
        .filter(|w| *w > 0.0);
    let mid = |s: &TimeRow| s.t_s + s.interval_s / 2.0;
    let rate_pts = |r: &RunData, floor: f64| -> Vec<(f64, f64)> {
        r.series
            .iter()
            .map(|s| (mid(s), s.msgs_per_s.max(floor)))
            .collect()
    };
    let p99_pts = |r: &RunData| -> Vec<(f64, f64)> {
        r.series
            .iter()
            .filter(|s| s.p99_us > 0.0)
            .map(|s| (mid(s), s.p99_us))
            .collect()
    };
    let rate_desc = if !log_rate {
        "msgs/s"
    } else if rates.iter().any(|r| *r <= 0.0) {
        "msgs/s (log; 0 at the bottom)"
    } else {
        "msgs/s (log)"
    };
    let x = (max_t, 30);
    let descs = (None, rate_desc);
    if log_rate {
        let lines: Vec<_> = with.iter().map(|r| rate_pts(r, rate_floor)).collect();
        let y = (rate_floor..rate_top).log_scale();
        time_panel(&top, x, y, descs, warmup, (rate_floor, rate_top), &lines)?;
    } else {
        let lines: Vec<_> = with.iter().map(|r| rate_pts(r, 0.0)).collect();
        let y = 0f64..max_rate * 1.1;
        time_panel(&top, x, y, descs, warmup, (0.0, max_rate * 1.1), &lines)?;
    }
    let x_desc = if warmup.is_some() {
        "seconds since start (warmup shaded)"
    } else {
        "seconds since start"
    };
    let lines: Vec<_> = with.iter().map(|r| p99_pts(r)).collect();
    time_panel(
        &bottom,
        (max_t, 40),
        (p_lo..p_hi).log_scale(),
        (Some(x_desc), "p99 ack latency (µs, log)"),
        warmup,
        (p_lo, p_hi),
        &lines,
    )?;
    legend_column(&legend, &entries, 12)?;
    Ok(())
}

/// One panel of the over-time chart: seconds on x (up to `max_t`, with
/// `x_label_px` for the labels), `y` linear or log, the warmup shaded from
/// `shade.0` to `shade.1`, one styled line per run.
fn time_panel<DB, Y>(
    area: &DrawingArea<DB, Shift>,
    (max_t, x_label_px): (f64, u32),
    y: Y,
    (x_desc, y_desc): (Option<&str>, &str),
    warmup: Option<f64>,
    shade: (f64, f64),
    lines: &[Vec<(f64, f64)>],
) -> Result<()>
where
    DB: DrawingBackend,
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(area)
        .margin(10)
        .margin_right(20)
        .x_label_area_size(x_label_px)
        .y_label_area_size(90)
        .build_cartesian_2d(0f64..max_t, y)
        .map_err(pe)?;
    let mut mesh = chart.configure_mesh();
    if let Some(d) = x_desc {
        mesh.x_desc(d);
    }
    mesh.y_desc(y_desc)
        .y_label_formatter(&|y| crate::util::thousands(*y))
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .draw()
        .map_err(pe)?;
    shade_warmup(chart.plotting_area(), warmup, shade.0, shade.1)?;
    for (i, pts) in lines.iter().enumerate() {
        styled_line(
            &mut chart,
            pts,
            series_style(i),
            marker_phase(i, lines.len()),
        )?;
    }
    Ok(())
}

/// Shades x from 0 to `warmup` s (y from `y0` to `y1`), if any.
fn shade_warmup<DB, CT>(
    area: &DrawingArea<DB, CT>,
    warmup: Option<f64>,
    y0: f64,
    y1: f64,
) -> Result<()>
where
    DB: DrawingBackend,
    CT: CoordTranslate<From = (f64, f64)>,
{
    if let Some(w) = warmup {
        area.draw(&Rectangle::new(
            [(0.0, y0), (w, y1)],
            RGBColor(0, 0, 0).mix(0.06).filled(),
        ))
        .map_err(pe)?;
    }
    Ok(())
}

/// Median of a run's per-bucket throughputs (0 for none).
fn median_rate(series: &[TimeRow]) -> f64 {
    let mut v: Vec<f64> = series.iter().map(|s| s.msgs_per_s).collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn crash_loss<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, sets: &[CrashData]) -> Result<()> {
    let max = sets
        .iter()
        .flat_map(|s| {
            s.records
                .iter()
                .map(|r| r.window.predicted.msgs.max(r.lost_msgs) as f64)
        })
        .fold(1.0, f64::max)
        * 1.1;
    let names: Vec<String> = sets
        .iter()
        .map(|s| {
            s.records
                .first()
                .map(|r| format!("{} / {} ({} crashes)", r.flush, r.mode, s.records.len()))
                .unwrap_or_else(|| s.dir.display().to_string())
        })
        .collect();
    let mut entries = vec![LegendEntry::new(
        "lost = window (upper bound)",
        Glyph::Line(RGBColor(128, 128, 128), 2, false),
    )];
    for (i, name) in names.iter().enumerate() {
        let st = series_style(i);
        entries.push(LegendEntry::new(
            name.clone(),
            Glyph::Point(st.marker, st.color),
        ));
    }
    if sets.iter().any(|s| s.records.iter().any(|r| !r.ok)) {
        entries.push(LegendEntry::new(
            "failed (lost more than the window)",
            Glyph::Point(Marker::Cross, RED),
        ));
    }
    let labels: Vec<String> = entries.iter().map(|e| e.label.clone()).collect();
    let (plot, legend) = with_legend_column(
        &root,
        "Crash experiment: acknowledged messages lost vs window at the crash",
        22,
        &labels,
    )?;
    // Room for half of a tick label on the right edge.
    let mut chart = chart_beside_legend(&plot, 35, 0f64..max, 0f64..max)?;
    chart
        .configure_mesh()
        .x_desc("predicted loss window at the crash instant (acked msgs not durable)")
        .y_desc("measured: acked msgs missing after recovery")
        .x_label_formatter(&|x| crate::util::thousands(*x))
        .y_label_formatter(&|y| crate::util::thousands(*y))
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 16))
        .draw()
        .map_err(pe)?;
    chart
        .draw_series(LineSeries::new(
            vec![(0.0, 0.0), (max, max)],
            BLACK.mix(0.5).stroke_width(2),
        ))
        .map_err(pe)?;
    for (i, s) in sets.iter().enumerate() {
        let st = series_style(i);
        for r in &s.records {
            let p = (r.window.predicted.msgs as f64, r.lost_msgs as f64);
            draw_marker(chart.plotting_area(), p, st.marker, st.color, 5)?;
        }
        let bad: Vec<(f64, f64)> = s
            .records
            .iter()
            .filter(|r| !r.ok)
            .map(|r| (r.window.predicted.msgs as f64, r.lost_msgs as f64))
            .collect();
        chart
            .draw_series(
                bad.into_iter()
                    .map(|p| Cross::new(p, 9, RED.stroke_width(3))),
            )
            .map_err(pe)?;
    }
    legend_column(&legend, &entries, 15)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pareto_frontier() {
        // (throughput, loss)
        let pts = [
            (100.0, 0.01),
            (1000.0, 5.0),
            (900.0, 10.0),
            (1000.0, 1.0),
            (50.0, 0.01),
        ];
        assert_eq!(pareto(&pts), vec![0, 3]);
    }
}
