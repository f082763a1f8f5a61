//! `mqlab plot`: charts from result folders, as SVG and PNG.
//!
//! - latency_spectrum: ack latency by percentile on a log "nines" axis
//!   (90%, 99%, 99.9%, ...), one line per configuration;
//! - loss_vs_throughput: the headline chart, one point per configuration,
//!   log-log, the Pareto frontier (nothing else is both faster and loses
//!   less) drawn and ringed;
//! - timeseries: throughput and p99 per second over each run;
//! - crash_loss: per crash, acknowledged messages lost vs the window
//!   sampled at the crash instant (every point must be on or under the
//!   diagonal).
//!
//! PNG text is rendered with DejaVu Sans compiled into the binary (the
//! `dejavu` crate) through plotters' ab_glyph backend, so charts render on
//! a machine without any system fonts or fontconfig.

use std::path::{Path, PathBuf};
use std::sync::Once;

use anyhow::{anyhow, Context, Result};
use plotters::coord::{CoordTranslate, Shift};
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::cli::PlotArgs;
use crate::crash::CrashRecord;
use crate::summary::{parse_hgrm, parse_timeseries, Summary, TimeRow};

const W: u32 = 1100;
const H: u32 = 700;

static FONTS: Once = Once::new();

/// Registers the embedded font for every family plotters may ask for.
pub fn register_fonts() {
    FONTS.call_once(|| {
        for family in ["sans-serif", "serif", "monospace"] {
            let _ =
                plotters::style::register_font(family, FontStyle::Normal, dejavu::sans::regular());
            let _ = plotters::style::register_font(family, FontStyle::Bold, dejavu::sans::bold());
        }
    });
}

/// Wraps a plotters error.
pub(crate) fn pe<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing failed: {e:?}")
}

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
    register_fonts();
    let (runs, crashes) = discover(inputs)?;
    if runs.is_empty() && crashes.is_empty() {
        anyhow::bail!("no summary.json or crashes.json found in the inputs");
    }
    std::fs::create_dir_all(out)?;
    let mut files = Vec::new();
    if !runs.is_empty() {
        files.extend(both(
            out,
            "loss_vs_throughput",
            |a| loss_vs_throughput(a, &runs),
            |a| loss_vs_throughput(a, &runs),
        )?);
        files.extend(both(
            out,
            "latency_spectrum",
            |a| latency_spectrum(a, &runs),
            |a| latency_spectrum(a, &runs),
        )?);
        files.extend(both(
            out,
            "timeseries",
            |a| timeseries(a, &runs),
            |a| timeseries(a, &runs),
        )?);
    }
    if !crashes.is_empty() {
        files.extend(both(
            out,
            "crash_loss",
            |a| crash_loss(a, &crashes),
            |a| crash_loss(a, &crashes),
        )?);
    }
    Ok(files)
}

/// Draws one chart as `<name>.svg` and `<name>.png`.
pub(crate) fn both<F, G>(out: &Path, name: &str, svg: F, png: G) -> Result<Vec<String>>
where
    F: FnOnce(DrawingArea<SVGBackend<'_>, Shift>) -> Result<()>,
    G: FnOnce(DrawingArea<BitMapBackend<'_>, Shift>) -> Result<()>,
{
    let svg_path = out.join(format!("{name}.svg"));
    let png_path = out.join(format!("{name}.png"));
    {
        let root = SVGBackend::new(&svg_path, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(pe)?;
        svg(root.clone())?;
        root.present().map_err(pe)?;
    }
    {
        let root = BitMapBackend::new(&png_path, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(pe)?;
        png(root.clone())?;
        root.present().map_err(pe)?;
    }
    Ok(vec![format!("{name}.svg"), format!("{name}.png")])
}

/// Color of the i-th series.
pub(crate) fn color(i: usize) -> RGBColor {
    const C: [RGBColor; 12] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
        RGBColor(0, 0, 128),
        RGBColor(128, 0, 0),
    ];
    C[i % C.len()]
}

/// Draws the series legend: `position`, translucent white box, black
/// border, `font_px` sans-serif labels.
pub(crate) fn draw_legend<'a, DB, CT>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
    font_px: u32,
) -> Result<()>
where
    DB: DrawingBackend + 'a,
    CT: CoordTranslate,
{
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", font_px))
        .draw()
        .map_err(pe)?;
    Ok(())
}

/// Draws `points` as a 2 px line in `c`, listed in the legend as `label`
/// with a 3 px line marker.
pub(crate) fn labelled_line<'a, DB, CT, I>(
    chart: &mut ChartContext<'a, DB, CT>,
    points: I,
    c: RGBColor,
    label: impl Into<String>,
) -> Result<()>
where
    DB: DrawingBackend + 'a,
    CT: CoordTranslate<From = (f64, f64)>,
    I: IntoIterator<Item = (f64, f64)>,
{
    chart
        .draw_series(LineSeries::new(points, c.stroke_width(2)))
        .map_err(pe)?
        .label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(3)));
    Ok(())
}

/// Color of a flush strategy.
fn flush_color(flush: &str) -> RGBColor {
    match flush {
        "sync" => RGBColor(214, 39, 40),
        "group" => RGBColor(44, 160, 44),
        "async" => RGBColor(31, 119, 180),
        "pool" => RGBColor(148, 103, 189),
        _ => RGBColor(127, 127, 127),
    }
}

/// "90%", "99%", "99.9%" for 1, 2, 3 nines.
pub fn nines_label(x: f64) -> String {
    if x.abs() < 1e-9 {
        return "0%".into();
    }
    let p = 100.0 * (1.0 - 10f64.powf(-x));
    let decimals = (x.ceil() as i32 - 2).max(0) as usize;
    format!("{p:.decimals$}%")
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
    let mut chart = ChartBuilder::on(&root)
        .caption("Ack latency by percentile", ("sans-serif", 26))
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..max_x, ((ymin / 1.5).max(0.5)..ymax * 2.0).log_scale())
        .map_err(pe)?;
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
        let c = color(i);
        labelled_line(&mut chart, pts(r), c, r.summary.label.clone())?;
    }
    draw_legend(&mut chart, SeriesLabelPosition::UpperLeft, 13)?;
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
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Loss window vs throughput (power loss), Pareto frontier ringed",
            ("sans-serif", 24),
        )
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(
            (xmin / 2.0..xmax * 3.0).log_scale(),
            (LOSS_FLOOR_MS / 2.0..ymax * 4.0).log_scale(),
        )
        .map_err(pe)?;
    chart
        .configure_mesh()
        .x_label_formatter(&|x| crate::util::thousands(*x))
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
        .draw_series(LineSeries::new(
            fpts,
            RGBColor(255, 140, 0).mix(0.7).stroke_width(3),
        ))
        .map_err(pe)?
        .label("Pareto frontier")
        .legend(|(x, y)| {
            PathElement::new(
                vec![(x, y), (x + 20, y)],
                RGBColor(255, 140, 0).stroke_width(3),
            )
        });
    for &i in &front {
        chart
            .draw_series(std::iter::once(Circle::new(
                pts[i],
                11,
                RGBColor(255, 140, 0).stroke_width(3),
            )))
            .map_err(pe)?;
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, r) in runs.iter().enumerate() {
        let flush = r.summary.config.workload.flush.name();
        let c = flush_color(flush);
        let s = chart
            .draw_series(std::iter::once(Circle::new(pts[i], 6, c.filled())))
            .map_err(pe)?;
        if seen.insert(flush) {
            s.label(flush.to_string())
                .legend(move |(x, y)| Circle::new((x + 10, y), 5, c.filled()));
        }
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
    draw_legend(&mut chart, SeriesLabelPosition::UpperLeft, 14)?;
    Ok(())
}

/// Pixel offsets (from each point to its label's top-left corner) chosen
/// greedily so labels overlap neither each other nor the points. Label
/// sizes are estimated from the character count at `font_px`.
pub fn place_labels(points: &[(i32, i32)], labels: &[String], font_px: i32) -> Vec<(i32, i32)> {
    let char_w = font_px * 6 / 10;
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
        let w = labels[i].chars().count() as i32 * char_w;
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
    let (top, bottom) = root.split_vertically(H / 2);
    let max_t = with
        .iter()
        .flat_map(|r| r.series.iter().map(|s| s.t_s + s.interval_s))
        .fold(1.0, f64::max);
    let max_rate = with
        .iter()
        .flat_map(|r| r.series.iter().map(|s| s.msgs_per_s))
        .fold(1.0, f64::max);
    let (pmin, pmax) = with
        .iter()
        .flat_map(|r| r.series.iter().filter(|s| s.p99_us > 0.0).map(|s| s.p99_us))
        .fold((f64::MAX, 1.0f64), |(a, b), v| (a.min(v), b.max(v)));
    let pmin = if pmin == f64::MAX { 1.0 } else { pmin };
    let mut c1 = ChartBuilder::on(&top)
        .caption(
            "Throughput and p99 ack latency over time",
            ("sans-serif", 24),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(90)
        .build_cartesian_2d(0f64..max_t, 0f64..max_rate * 1.1)
        .map_err(pe)?;
    c1.configure_mesh()
        .y_desc("msgs/s")
        .y_label_formatter(&|y| crate::util::thousands(*y))
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .draw()
        .map_err(pe)?;
    let mut c2 = ChartBuilder::on(&bottom)
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(90)
        .build_cartesian_2d(0f64..max_t, ((pmin / 1.5).max(0.5)..pmax * 2.0).log_scale())
        .map_err(pe)?;
    c2.configure_mesh()
        .x_desc("seconds since start (warmup included)")
        .y_desc("p99 ack latency (µs, log)")
        .y_label_formatter(&|y| crate::util::thousands(*y))
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .draw()
        .map_err(pe)?;
    for (i, r) in with.iter().enumerate() {
        let c = color(i);
        // Each bucket's value is drawn at the middle of the bucket.
        let rate: Vec<(f64, f64)> = r
            .series
            .iter()
            .map(|s| (s.t_s + s.interval_s / 2.0, s.msgs_per_s))
            .collect();
        labelled_line(&mut c1, rate, c, r.summary.label.clone())?;
        let p99: Vec<(f64, f64)> = r
            .series
            .iter()
            .filter(|s| s.p99_us > 0.0)
            .map(|s| (s.t_s + s.interval_s / 2.0, s.p99_us))
            .collect();
        c2.draw_series(LineSeries::new(p99, c.stroke_width(2)))
            .map_err(pe)?;
    }
    draw_legend(&mut c1, SeriesLabelPosition::UpperRight, 11)?;
    Ok(())
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
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Crash experiment: acknowledged messages lost vs window at the crash",
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..max, 0f64..max)
        .map_err(pe)?;
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
        .map_err(pe)?
        .label("lost = window (upper bound)")
        .legend(|(x, y)| {
            PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.5).stroke_width(2))
        });
    for (i, s) in sets.iter().enumerate() {
        let c = color(i);
        let name = s
            .records
            .first()
            .map(|r| format!("{} / {} ({} crashes)", r.flush, r.mode, s.records.len()))
            .unwrap_or_else(|| s.dir.display().to_string());
        let pts: Vec<(f64, f64)> = s
            .records
            .iter()
            .map(|r| (r.window.predicted.msgs as f64, r.lost_msgs as f64))
            .collect();
        chart
            .draw_series(pts.into_iter().map(move |p| Circle::new(p, 6, c.filled())))
            .map_err(pe)?
            .label(name)
            .legend(move |(x, y)| Circle::new((x + 10, y), 5, c.filled()));
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
    draw_legend(&mut chart, SeriesLabelPosition::UpperLeft, 14)?;
    Ok(())
}

/// `mqlab plot`.
pub fn cmd_plot(args: PlotArgs) -> Result<()> {
    let mut files = plot_dirs(&args.inputs, &args.out)?;
    files.extend(crate::messaging::plot::draw_messaging_only(
        &args.inputs,
        &args.out,
    )?);
    for f in files {
        println!("{}", args.out.join(f).display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nines() {
        assert_eq!(nines_label(0.0), "0%");
        assert_eq!(nines_label(1.0), "90%");
        assert_eq!(nines_label(2.0), "99%");
        assert_eq!(nines_label(3.0), "99.9%");
        assert_eq!(nines_label(5.0), "99.999%");
    }

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
