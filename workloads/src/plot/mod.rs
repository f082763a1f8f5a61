//! Charts as SVG and PNG: the kit every chart of the lab draws with
//! (fonts, markers, styled lines, legends in a column right of the plot,
//! the "nines" percentile axis) and the store-run charts ([`runs`]).
//! Messaging and delay charts live beside their experiments
//! (`crate::messaging::plot`, `crate::delay::charts`) and use this kit.
//!
//! Every series has its own colour, marker and line pattern
//! ([`style::series_style`]) and legends sit in a column right of the plot,
//! never over data.
//!
//! PNG text is rendered with DejaVu Sans compiled into the binary (the
//! `dejavu` crate) through plotters' ab_glyph backend, so charts render on
//! a machine without any system fonts or fontconfig.

use std::path::Path;
use std::sync::Once;

use anyhow::{anyhow, Result};
use plotters::coord::ranged1d::AsRangedCoord;
use plotters::coord::{CoordTranslate, Shift};
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontStyle;

pub mod runs;
pub mod style;

pub use style::{
    legend_width, log_range, marker_indices, marker_phase, needs_log_axis, series_style,
    split_at_gaps, Marker, SeriesStyle, MARKERS_PER_LINE, PALETTE,
};

pub const W: u32 = 1100;
pub const H: u32 = 700;

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
pub fn pe<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing failed: {e:?}")
}

/// A chart on `x` and `y` as plotters builds it.
pub type Chart2d<'a, DB, X, Y> = ChartContext<
    'a,
    DB,
    Cartesian2d<<X as AsRangedCoord>::CoordDescType, <Y as AsRangedCoord>::CoordDescType>,
>;

/// The chart in the plot area left of a legend column
/// ([`with_legend_column`]): 15 px margins, `margin_right` px on the right
/// (room for the last x tick label), 50 px for the x labels and 80 for the
/// y labels.
pub fn chart_beside_legend<'a, DB, X, Y>(
    plot: &'a DrawingArea<DB, Shift>,
    margin_right: u32,
    x: X,
    y: Y,
) -> Result<Chart2d<'a, DB, X, Y>>
where
    DB: DrawingBackend + 'a,
    X: AsRangedCoord,
    Y: AsRangedCoord,
{
    ChartBuilder::on(plot)
        .margin(15)
        .margin_right(margin_right)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(x, y)
        .map_err(pe)
}

/// [`both`] with one drawing for both backends:
/// `draw_both!(out, "name", |a| chart(a, &data))` draws `chart` as the SVG
/// and as the PNG (a closure cannot be generic over the backend, so the
/// drawing is written once and expanded twice).
macro_rules! draw_both {
    ($out:expr, $name:expr, |$a:ident| $draw:expr) => {
        $crate::plot::both($out, $name, |$a| $draw, |$a| $draw)
    };
}
pub(crate) use draw_both;

/// Draws one chart as `<name>.svg` and `<name>.png`, [`W`] x [`H`] pixels.
pub fn both<F, G>(out: &Path, name: &str, svg: F, png: G) -> Result<Vec<String>>
where
    F: FnOnce(DrawingArea<SVGBackend<'_>, Shift>) -> Result<()>,
    G: FnOnce(DrawingArea<BitMapBackend<'_>, Shift>) -> Result<()>,
{
    both_sized(out, name, (W, H), svg, png)
}

/// [`both`] at `(width, height)` pixels: each drawing area is filled white
/// before `svg`/`png` draws on it and presented after.
pub fn both_sized<F, G>(
    out: &Path,
    name: &str,
    (w, h): (u32, u32),
    svg: F,
    png: G,
) -> Result<Vec<String>>
where
    F: FnOnce(DrawingArea<SVGBackend<'_>, Shift>) -> Result<()>,
    G: FnOnce(DrawingArea<BitMapBackend<'_>, Shift>) -> Result<()>,
{
    let svg_path = out.join(format!("{name}.svg"));
    let png_path = out.join(format!("{name}.png"));
    {
        let root = SVGBackend::new(&svg_path, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(pe)?;
        svg(root.clone())?;
        root.present().map_err(pe)?;
    }
    {
        let root = BitMapBackend::new(&png_path, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(pe)?;
        png(root.clone())?;
        root.present().map_err(pe)?;
    }
    Ok(vec![format!("{name}.svg"), format!("{name}.png")])
}

/// Draws `m` in `c` centred on `at` (a point of `area`'s coordinates),
/// about `r` pixels from centre to edge.
pub fn draw_marker<DB, CT>(
    area: &DrawingArea<DB, CT>,
    at: CT::From,
    m: Marker,
    c: RGBColor,
    r: i32,
) -> Result<()>
where
    DB: DrawingBackend,
    CT: CoordTranslate,
    CT::From: Clone + 'static,
{
    let e = EmptyElement::at(at);
    match m {
        Marker::Circle => area.draw(&(e + Circle::new((0, 0), r, c.filled()))),
        Marker::Square => {
            area.draw(&(e + Rectangle::new([(-r + 1, -r + 1), (r - 1, r - 1)], c.filled())))
        }
        Marker::TriangleUp => area.draw(
            &(e + Polygon::new(
                vec![(0, -r - 1), (r + 1, r - 1), (-r - 1, r - 1)],
                c.filled(),
            )),
        ),
        Marker::Diamond => area.draw(
            &(e + Polygon::new(
                vec![(0, -r - 1), (r + 1, 0), (0, r + 1), (-r - 1, 0)],
                c.filled(),
            )),
        ),
        Marker::TriangleDown => area.draw(
            &(e + Polygon::new(
                vec![(0, r + 1), (r + 1, -r + 1), (-r - 1, -r + 1)],
                c.filled(),
            )),
        ),
        Marker::Cross => area.draw(
            &(e + PathElement::new(vec![(-r, -r), (r, r)], c.stroke_width(3))
                + PathElement::new(vec![(-r, r), (r, -r)], c.stroke_width(3))),
        ),
        Marker::Ring => area.draw(
            &(e + Circle::new((0, 0), r, WHITE.filled())
                + Circle::new((0, 0), r, c.stroke_width(2))),
        ),
    }
    .map_err(pe)
}

/// Draws one series: a 2 px line (dashed when the style says so) through
/// `points` (sorted by x) and its marker on about [`MARKERS_PER_LINE`] of
/// them, shifted by `phase` (see [`style::marker_phase`]).
pub fn styled_line<'a, DB, CT>(
    chart: &mut ChartContext<'a, DB, CT>,
    points: &[(f64, f64)],
    s: SeriesStyle,
    phase: f64,
) -> Result<()>
where
    DB: DrawingBackend + 'a,
    CT: CoordTranslate<From = (f64, f64)>,
{
    line_only(chart, points, s.color, s.dashed, 2)?;
    let xs: Vec<f64> = points.iter().map(|p| p.0).collect();
    for i in marker_indices(&xs, MARKERS_PER_LINE, phase) {
        draw_marker(chart.plotting_area(), points[i], s.marker, s.color, 4)?;
    }
    Ok(())
}

/// Draws a plain line, solid or dashed, `width` px.
pub fn line_only<'a, DB, CT>(
    chart: &mut ChartContext<'a, DB, CT>,
    points: &[(f64, f64)],
    c: RGBColor,
    dashed: bool,
    width: u32,
) -> Result<()>
where
    DB: DrawingBackend + 'a,
    CT: CoordTranslate<From = (f64, f64)>,
{
    if dashed {
        chart
            .draw_series(DashedLineSeries::new(
                points.to_vec(),
                9,
                5,
                c.stroke_width(width),
            ))
            .map_err(pe)?;
    } else {
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                c.stroke_width(width),
            ))
            .map_err(pe)?;
    }
    Ok(())
}

/// What a legend entry shows before its label.
#[derive(Debug, Clone, Copy)]
pub enum Glyph {
    /// A series: its line with its marker.
    Series(SeriesStyle),
    /// A line without marker: colour, width, dashed.
    Line(RGBColor, u32, bool),
    /// A marker without line.
    Point(Marker, RGBColor),
    /// Nothing: a note.
    Note,
}

/// One legend row.
pub struct LegendEntry {
    /// Text.
    pub label: String,
    /// Sample drawn before the text.
    pub glyph: Glyph,
}

impl LegendEntry {
    pub fn new(label: impl Into<String>, glyph: Glyph) -> LegendEntry {
        LegendEntry {
            label: label.into(),
            glyph,
        }
    }
}

/// Legend text size, px.
pub const LEGEND_PX: u32 = 13;

/// Splits `root` into a title, the plotting part and a legend column on the
/// right wide enough for `labels`: legends never cover data.
pub fn with_legend_column<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    title_px: u32,
    labels: &[String],
) -> Result<(DrawingArea<DB, Shift>, DrawingArea<DB, Shift>)> {
    let body = root.titled(title, ("sans-serif", title_px)).map_err(pe)?;
    let w = body.dim_in_pixel().0;
    let legend_w = legend_width(labels, LEGEND_PX);
    Ok(body.split_horizontally(w.saturating_sub(legend_w)))
}

/// Draws `entries` top-down in `area` (a legend column), starting `top` px
/// below its top edge, in a thin box.
pub fn legend_column<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[LegendEntry],
    top: i32,
) -> Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let row = LEGEND_PX as i32 + 9;
    let (w, _) = area.dim_in_pixel();
    let font = ("sans-serif", LEGEND_PX)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Left, VPos::Center));
    let bottom = top + 6 + row * entries.len() as i32;
    area.draw(&Rectangle::new(
        [(2, top), (w as i32 - 6, bottom)],
        BLACK.mix(0.4).stroke_width(1),
    ))
    .map_err(pe)?;
    for (k, e) in entries.iter().enumerate() {
        let y = top + 3 + row * k as i32 + row / 2;
        let (x0, x1) = (10, 44);
        match e.glyph {
            Glyph::Series(s) => {
                let path = vec![(x0, y), (x1, y)];
                if s.dashed {
                    area.draw(&DashedPathElement::new(path, 9, 5, s.color.stroke_width(2)))
                } else {
                    area.draw(&PathElement::new(path, s.color.stroke_width(2)))
                }
                .map_err(pe)?;
                draw_marker(area, ((x0 + x1) / 2, y), s.marker, s.color, 4)?;
            }
            Glyph::Line(c, width, dashed) => {
                let path = vec![(x0, y), (x1, y)];
                if dashed {
                    area.draw(&DashedPathElement::new(path, 6, 4, c.stroke_width(width)))
                } else {
                    area.draw(&PathElement::new(path, c.stroke_width(width)))
                }
                .map_err(pe)?;
            }
            Glyph::Point(m, c) => draw_marker(area, ((x0 + x1) / 2, y), m, c, 5)?,
            Glyph::Note => {}
        }
        area.draw(&Text::new(e.label.clone(), (x1 + 8, y), font.clone()))
            .map_err(pe)?;
    }
    Ok(())
}

/// Legend rows for series labelled `labels`, styled by [`series_style`].
pub fn series_entries(labels: &[String]) -> Vec<LegendEntry> {
    labels
        .iter()
        .enumerate()
        .map(|(i, l)| LegendEntry::new(l.clone(), Glyph::Series(series_style(i))))
        .collect()
}

/// Right margin of the percentile charts, px: room for half of the last
/// tick label ("99.9999%").
pub const SPECTRUM_RIGHT_MARGIN: u32 = 50;

/// "90%", "99%", "99.9%" for 1, 2, 3 nines.
pub fn nines_label(x: f64) -> String {
    if x.abs() < 1e-9 {
        return "0%".into();
    }
    let p = 100.0 * (1.0 - 10f64.powf(-x));
    let decimals = (x.ceil() as i32 - 2).max(0) as usize;
    format!("{p:.decimals$}%")
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
}
