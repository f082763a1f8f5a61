//! How chart series look and where their markers go: pure functions, no
//! drawing, so the tests can check them (`workloads/tests/plot_charts.rs`
//! includes this file).
//!
//! Every series gets a colour, a marker shape and a line pattern. Ten
//! colours (matplotlib's tab10) and seven marker shapes: as 10 and 7 are
//! coprime, the (colour, marker) pair repeats only after 70 series, and
//! series 10 to 19 are also dashed, so the 15 lines of the matrix are 15
//! different styles even where two share a colour.

use plotters::style::RGBColor;

/// The ten series colours (tab10).
pub const PALETTE: [RGBColor; 10] = [
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
];

/// Marker shape of a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Marker {
    /// Filled circle.
    Circle,
    /// Filled square.
    Square,
    /// Filled triangle, point up.
    TriangleUp,
    /// Filled diamond.
    Diamond,
    /// Filled triangle, point down.
    TriangleDown,
    /// Diagonal cross (strokes).
    Cross,
    /// Hollow circle (a ring).
    Ring,
}

impl Marker {
    /// Every shape, in the order series use them.
    pub const ALL: [Marker; 7] = [
        Marker::Circle,
        Marker::Square,
        Marker::TriangleUp,
        Marker::Diamond,
        Marker::TriangleDown,
        Marker::Cross,
        Marker::Ring,
    ];
}

/// How one series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SeriesStyle {
    /// Line and marker colour.
    pub color: RGBColor,
    /// Marker shape.
    pub marker: Marker,
    /// Dashed line (series 10 to 19, 30 to 39, ...), else solid.
    pub dashed: bool,
}

/// Style of the i-th series (0-based).
pub fn series_style(i: usize) -> SeriesStyle {
    SeriesStyle {
        color: PALETTE[i % PALETTE.len()],
        marker: Marker::ALL[i % Marker::ALL.len()],
        dashed: (i / PALETTE.len()) % 2 == 1,
    }
}

/// Markers drawn on one line: about this many, spread along x.
pub const MARKERS_PER_LINE: usize = 12;

/// Indices of the points of a line (sorted by x) that get a marker: every
/// point when there are at most `2 * count`, else the point nearest to each
/// of `count` evenly spaced x positions shifted by `phase` (0..1) of a step,
/// so that lines drawn on top of each other show their markers side by
/// side instead of on top of each other.
pub fn marker_indices(xs: &[f64], count: usize, phase: f64) -> Vec<usize> {
    if xs.len() <= 2 * count.max(1) {
        return (0..xs.len()).collect();
    }
    let (lo, hi) = (xs[0], xs[xs.len() - 1]);
    let step = (hi - lo) / count as f64;
    let mut out: Vec<usize> = Vec::with_capacity(count);
    for k in 0..count {
        let target = lo + step * (k as f64 + phase.rem_euclid(1.0));
        let j = xs.partition_point(|&x| x < target).min(xs.len() - 1);
        let j = if j > 0 && (target - xs[j - 1]).abs() < (xs[j] - target).abs() {
            j - 1
        } else {
            j
        };
        if out.last() != Some(&j) {
            out.push(j);
        }
    }
    out
}

/// Phase of the i-th of `n` series for [`marker_indices`]: spread evenly
/// over a step.
pub fn marker_phase(i: usize, n: usize) -> f64 {
    (i as f64 + 0.5) / n.max(1) as f64
}

/// Whether throughputs this far apart need a log axis: the largest
/// positive value is at least 10 times the smallest (on a linear axis the
/// small ones would lie flat on zero).
pub fn needs_log_axis(values: &[f64]) -> bool {
    let pos = values.iter().copied().filter(|v| *v > 0.0 && v.is_finite());
    let (lo, hi) = pos.fold((f64::MAX, 0f64), |(a, b), v| (a.min(v), b.max(v)));
    hi > 0.0 && hi >= 10.0 * lo
}

/// Splits a line (sorted by x) where consecutive points are more than
/// `factor` times the smallest step apart, so a line does not bridge a
/// stretch without data.
pub fn split_at_gaps(points: &[(f64, f64)], factor: f64) -> Vec<Vec<(f64, f64)>> {
    let step = points
        .windows(2)
        .map(|w| w[1].0 - w[0].0)
        .filter(|d| *d > 0.0)
        .fold(f64::MAX, f64::min);
    let mut out: Vec<Vec<(f64, f64)>> = Vec::new();
    for (i, &p) in points.iter().enumerate() {
        if i == 0 || p.0 - points[i - 1].0 > step * factor {
            out.push(Vec::new());
        }
        if let Some(last) = out.last_mut() {
            last.push(p);
        }
    }
    out
}

/// Width in pixels of a legend column holding `labels` at `font_px`
/// (a sample line, a gap and the longest label), between 120 and 340.
pub fn legend_width(labels: &[String], font_px: u32) -> u32 {
    let chars = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0) as u32;
    (50 + chars * font_px * 62 / 100 + 16).clamp(120, 340)
}

/// Range of a log axis for data from `lo` to `hi` (both > 0): kept when it
/// spans at least two decades, else widened to the powers of ten around it
/// (over a narrower range plotters piles its tick labels up).
pub fn log_range(lo: f64, hi: f64) -> (f64, f64) {
    if hi / lo >= 100.0 {
        return (lo, hi);
    }
    let lo = 10f64.powf(lo.log10().floor());
    let hi = 10f64.powf(hi.log10().ceil()).max(lo * 100.0);
    (lo, hi)
}
