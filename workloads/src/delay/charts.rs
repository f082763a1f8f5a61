//! The delay charts: lateness by percentile and over time, one line per
//! scheduler, drawn after a run and redrawn by `mqlab plot` from the saved
//! lateness.hgrm and lateness_timeseries.csv.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::outputs::{delay_schedulers, read_text};
use crate::plot::{
    chart_beside_legend, draw_both, draw_marker, legend_column, line_only, marker_indices,
    marker_phase, nines_label, pe, register_fonts, series_style, split_at_gaps, styled_line,
    with_legend_column, Glyph, LegendEntry, SeriesStyle, MARKERS_PER_LINE, PALETTE,
    SPECTRUM_RIGHT_MARGIN,
};
use crate::table::csv_columns;
use crate::util::thousands;

/// One scheduler's curves: lateness by percentile and over time.
pub(super) struct Curves {
    pub(super) name: String,
    /// (nines, lateness ms)
    pub(super) spectrum: Vec<(f64, f64)>,
    /// (seconds since the first due time, p50 ms, max ms)
    pub(super) series: Vec<(f64, f64, f64)>,
}

impl Curves {
    pub(super) fn parse(name: &str, hgrm: &str, csv: &str) -> Curves {
        let spectrum = crate::summary::parse_hgrm(hgrm)
            .into_iter()
            .filter(|(_, p)| *p < 1.0)
            .map(|(v, p)| (-(1.0 - p).log10(), v))
            .collect();
        let series = csv_columns(csv, &["t_s", "lateness_p50_ms", "lateness_max_ms"])
            .into_iter()
            .map(|f| (f[0], f[1], f[2]))
            .collect();
        Curves {
            name: name.to_string(),
            spectrum,
            series,
        }
    }
}

/// Draws lateness_spectrum and lateness_over_time into `out`.
pub(super) fn draw_charts(out: &Path, curves: &[Curves]) -> Result<Vec<String>> {
    register_fonts();
    let mut files = draw_both!(out, "lateness_spectrum", |a| spectrum(&a, curves))?;
    files.extend(draw_both!(out, "lateness_over_time", |a| over_time(
        &a, curves
    ))?);
    Ok(files)
}

/// `mqlab plot` on `mqlab delay` folders: redraws their charts into `out`
/// from the saved lateness.hgrm and lateness_timeseries.csv (several
/// folders: one chart, lines named folder/scheduler).
pub fn draw_delay_only(inputs: &[PathBuf], out: &Path) -> Result<Vec<String>> {
    let dirs: Vec<(&PathBuf, Vec<String>)> = inputs
        .iter()
        .filter_map(|d| Some((d, delay_schedulers(d)?)))
        .collect();
    let mut curves = Vec::new();
    for (dir, schedulers) in &dirs {
        for name in schedulers {
            let sub = dir.join(name);
            let read = |f: &str| read_text(&sub.join(f));
            let label = if dirs.len() > 1 {
                let folder = dir.file_name().map(|f| f.to_string_lossy().into_owned());
                format!("{}/{name}", folder.unwrap_or_default())
            } else {
                name.clone()
            };
            curves.push(Curves::parse(
                &label,
                &read("lateness.hgrm")?,
                &read("lateness_timeseries.csv")?,
            ));
        }
    }
    if curves.is_empty() {
        return Ok(Vec::new());
    }
    std::fs::create_dir_all(out)
        .with_context(|| format!("create chart folder {}", out.display()))?;
    draw_charts(out, &curves)
}

/// Style of the i-th scheduler: the delay charts' own colours (blue, red,
/// green, ...), not `crate::plot::series_style`'s order, with its markers.
fn style(i: usize) -> SeriesStyle {
    // Blue, red, green, orange, purple of the palette.
    const ORDER: [usize; 5] = [0, 3, 2, 1, 4];
    SeriesStyle {
        color: PALETTE[ORDER[i % ORDER.len()]],
        ..series_style(i)
    }
}

/// Lateness is often 0 ms: plotted at 0.5 ms on the log axis.
fn floor_ms(v: f64) -> f64 {
    v.max(0.5)
}

/// The x axis of a lateness chart.
struct XAxis {
    /// It runs from 0 to here.
    end: f64,
    /// Room right of the plot for the last tick label, px.
    margin_right: u32,
    /// Percentiles: one tick per nine, labelled 90%, 99%, ...
    nines: bool,
    desc: &'static str,
}

/// A lateness chart beside its legend, mesh drawn: lateness in ms on a log
/// y axis up to twice `max_y` (0 drawn at 0.5), `x` as the chart needs.
fn lateness_chart<'a, DB: DrawingBackend + 'a>(
    plot: &'a DrawingArea<DB, Shift>,
    x: XAxis,
    max_y: f64,
) -> Result<ChartContext<'a, DB, Cartesian2d<RangedCoordf64, LogCoord<f64>>>> {
    let y = (0.4f64..max_y * 2.0).log_scale();
    let mut chart = chart_beside_legend(plot, x.margin_right, 0f64..x.end, y)?;
    let mut mesh = chart.configure_mesh();
    if x.nines {
        mesh.x_labels(x.end as usize + 1)
            .x_label_formatter(&|x| nines_label(*x));
    }
    mesh.y_label_formatter(&|y| thousands(*y))
        .x_desc(x.desc)
        .y_desc("lateness, ms (log; 0 drawn at 0.5)")
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 17))
        .draw()
        .map_err(pe)?;
    Ok(chart)
}

fn spectrum<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, curves: &[Curves]) -> Result<()> {
    let max_x = curves
        .iter()
        .flat_map(|c| c.spectrum.iter().map(|p| p.0))
        .fold(2.0, f64::max)
        .min(7.0)
        .ceil();
    let max_y = curves
        .iter()
        .flat_map(|c| c.spectrum.iter().map(|p| p.1))
        .fold(1.0, f64::max);
    let entries: Vec<LegendEntry> = curves
        .iter()
        .enumerate()
        .map(|(i, c)| LegendEntry::new(c.name.clone(), Glyph::Series(style(i))))
        .collect();
    let labels: Vec<String> = entries.iter().map(|e| e.label.clone()).collect();
    let (plot, legend) = with_legend_column(root, "Delivery lateness by percentile", 26, &labels)?;
    let x = XAxis {
        end: max_x,
        margin_right: SPECTRUM_RIGHT_MARGIN,
        nines: true,
        desc: "percentile (log scale of nines)",
    };
    let mut chart = lateness_chart(&plot, x, max_y)?;
    for (i, c) in curves.iter().enumerate() {
        let pts: Vec<(f64, f64)> = c.spectrum.iter().map(|&(x, y)| (x, floor_ms(y))).collect();
        styled_line(&mut chart, &pts, style(i), marker_phase(i, curves.len()))?;
    }
    legend_column(&legend, &entries, 15)?;
    Ok(())
}

fn over_time<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, curves: &[Curves]) -> Result<()> {
    let max_x = curves
        .iter()
        .flat_map(|c| c.series.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    let max_y = curves
        .iter()
        .flat_map(|c| c.series.iter().map(|p| p.2))
        .fold(1.0, f64::max);
    let mut entries: Vec<LegendEntry> = curves
        .iter()
        .enumerate()
        .map(|(i, c)| LegendEntry::new(c.name.clone(), Glyph::Series(style(i))))
        .collect();
    let grey = RGBColor(90, 90, 90);
    entries.push(LegendEntry::new("max (solid)", Glyph::Line(grey, 2, false)));
    entries.push(LegendEntry::new(
        "median (dashed)",
        Glyph::Line(grey, 1, true),
    ));
    entries.push(LegendEntry::new("gaps: nothing delivered", Glyph::Note));
    let labels: Vec<String> = entries.iter().map(|e| e.label.clone()).collect();
    let (plot, legend) = with_legend_column(
        root,
        "Delivery lateness over time (max solid, median dashed)",
        24,
        &labels,
    )?;
    let x = XAxis {
        end: max_x * 1.02,
        margin_right: 25,
        nines: false,
        desc: "delivery time, s after the first due time",
    };
    let mut chart = lateness_chart(&plot, x, max_y)?;
    for (i, c) in curves.iter().enumerate() {
        let st = style(i);
        let max: Vec<(f64, f64)> = c.series.iter().map(|&(t, _, m)| (t, floor_ms(m))).collect();
        let p50: Vec<(f64, f64)> = c.series.iter().map(|&(t, p, _)| (t, floor_ms(p))).collect();
        // Buckets without deliveries are not in the file: no line across them.
        for part in split_at_gaps(&max, 3.0) {
            if let [only] = part[..] {
                chart
                    .draw_series(std::iter::once(Circle::new(only, 2, st.color.filled())))
                    .map_err(pe)?;
            }
            line_only(&mut chart, &part, st.color, false, 2)?;
        }
        for part in split_at_gaps(&p50, 3.0) {
            if part.len() > 1 {
                line_only(&mut chart, &part, st.color, true, 1)?;
            }
        }
        let xs: Vec<f64> = max.iter().map(|p| p.0).collect();
        for k in marker_indices(&xs, MARKERS_PER_LINE, marker_phase(i, curves.len())) {
            draw_marker(chart.plotting_area(), max[k], st.marker, st.color, 4)?;
        }
    }
    legend_column(&legend, &entries, 15)?;
    Ok(())
}
