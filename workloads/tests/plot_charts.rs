//! `mqlab plot` draws SVG and PNG charts from run, crash and delay folders,
//! with no system fonts needed; every series has its own style, legends
//! sit outside the plotting area, tick labels fit in the image, and short
//! runs are sampled every 100 ms.

mod common;

use std::collections::HashSet;
use std::path::Path;

/// The chart styling rules, compiled here as they are in the binary.
#[allow(dead_code)]
#[path = "../src/plot/style.rs"]
mod style;

use style::{
    log_range, marker_indices, marker_phase, needs_log_axis, series_style, split_at_gaps, Marker,
    PALETTE,
};

/// Image width of every chart (plot.rs `W`).
const W: f64 = 1100.0;

#[test]
fn up_to_sixteen_series_have_distinct_styles() {
    for n in [15, 16] {
        let styles: Vec<_> = (0..n).map(series_style).collect();
        let distinct: HashSet<_> = styles.iter().collect();
        assert_eq!(distinct.len(), n, "{n} series, styles {styles:?}");
        // Even without the dash pattern (small legends, thin lines) colour
        // and marker alone tell them apart.
        let pairs: HashSet<_> = styles.iter().map(|s| (s.color, s.marker)).collect();
        assert_eq!(pairs.len(), n, "{n} series share a colour and a marker");
    }
    // The first ten differ in colour alone, and no colour is used twice
    // with the same line pattern before series 20.
    let colours: HashSet<_> = (0..10).map(|i| series_style(i).color).collect();
    assert_eq!(colours.len(), PALETTE.len());
    let solid_or_dashed: HashSet<_> = (0..20)
        .map(|i| (series_style(i).color, series_style(i).dashed))
        .collect();
    assert_eq!(solid_or_dashed.len(), 20);
    // Every marker shape is used within seven series.
    let shapes: HashSet<Marker> = (0..7).map(|i| series_style(i).marker).collect();
    assert_eq!(shapes.len(), Marker::ALL.len());
}

#[test]
fn markers_spread_along_each_line_and_apart_between_lines() {
    // Short lines: a marker on every point.
    let xs: Vec<f64> = (0..20).map(f64::from).collect();
    assert_eq!(marker_indices(&xs, 12, 0.3), (0..20).collect::<Vec<_>>());
    // Long lines: about `count` markers, increasing, spread over the range.
    let xs: Vec<f64> = (0..500).map(|i| f64::from(i) / 100.0).collect();
    let a = marker_indices(&xs, 12, marker_phase(0, 2));
    let b = marker_indices(&xs, 12, marker_phase(1, 2));
    for m in [&a, &b] {
        assert!((10..=12).contains(&m.len()), "{m:?}");
        assert!(m.windows(2).all(|w| w[0] < w[1]), "{m:?}");
        assert!(
            *m.first().unwrap() < 50 && *m.last().unwrap() > 450,
            "{m:?}"
        );
    }
    // Two lines drawn on top of each other do not hide each other's markers.
    let shared: HashSet<_> = a.iter().filter(|i| b.contains(i)).collect();
    assert!(shared.is_empty(), "{a:?} vs {b:?}");
}

#[test]
fn throughput_axis_is_log_when_runs_are_orders_of_magnitude_apart() {
    // The matrix: sync/group around 10k msg/s, async/pool 300k to 900k.
    assert!(needs_log_axis(&[8_678.0, 18_262.0, 377_493.0, 905_976.0]));
    // One family (the messaging experiments): linear.
    assert!(!needs_log_axis(&[2_900.0, 3_000.0, 3_100.0]));
    // Empty buckets do not count.
    assert!(!needs_log_axis(&[0.0, 4_000.0, 3_990.0]));
    assert!(!needs_log_axis(&[]));
}

#[test]
fn narrow_log_axes_widen_to_whole_decades() {
    // Two decades or more: as given.
    assert_eq!(log_range(0.7, 7_000.0), (0.7, 7_000.0));
    // Less: the powers of ten around it, at least two decades.
    assert_eq!(log_range(4.7, 132.0), (1.0, 1_000.0));
    assert_eq!(log_range(20.0, 60.0), (10.0, 1_000.0));
}

#[test]
fn lines_break_at_gaps_without_data() {
    let pts = [(0.0, 1.0), (0.1, 2.0), (0.2, 1.0), (4.0, 5.0), (4.1, 6.0)];
    let parts = split_at_gaps(&pts, 3.0);
    assert_eq!(parts, vec![pts[..3].to_vec(), pts[3..].to_vec()]);
    assert_eq!(split_at_gaps(&pts[..3], 3.0).len(), 1);
    assert!(split_at_gaps(&[], 3.0).is_empty());
}

/// `(x, anchor, font size, text)` of every `<text>` of an SVG drawn by
/// plotters (the text is on the line after the tag).
fn svg_texts(svg: &str) -> Vec<(f64, String, f64, String)> {
    let attr = |tag: &str, name: &str| -> Option<String> {
        let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
        let len = tag[start..].find('"')?;
        Some(tag[start..start + len].to_string())
    };
    let mut out = Vec::new();
    let mut lines = svg.lines();
    while let Some(line) = lines.next() {
        if let Some(rest) = line.trim().strip_prefix("<text ") {
            let tag = &format!(" {rest}");
            let text = lines.next().unwrap_or("").trim().to_string();
            out.push((
                attr(tag, "x").and_then(|v| v.parse().ok()).unwrap_or(0.0),
                attr(tag, "text-anchor").unwrap_or_default(),
                attr(tag, "font-size")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0.0),
                text,
            ));
        }
    }
    out
}

/// Right edge of the plotting area: the largest x of the mesh lines.
fn plot_right_edge(svg: &str) -> f64 {
    svg.split("<line ")
        .skip(1)
        .flat_map(|l| {
            ["x1", "x2"].map(|a| {
                let k = format!(" {a}=\"");
                l.find(&k)
                    .and_then(|s| l[s + k.len()..].split('"').next())
                    .and_then(|v| v.parse::<f64>().ok())
                    .unwrap_or(0.0)
            })
        })
        .fold(0.0, f64::max)
}

/// Every series label is in a legend right of the plotting area, and no
/// other text runs into the legend column or off the image (the last tick
/// label of a percentile axis, "99.9999%", once was cut).
fn assert_legend_outside_and_text_inside(path: &Path, labels: &[&str]) {
    let svg = std::fs::read_to_string(path).unwrap();
    let edge = plot_right_edge(&svg);
    assert!(edge > 300.0 && edge < W, "{}: edge {edge}", path.display());
    let texts = svg_texts(&svg);
    let mut legend_x = W;
    for label in labels {
        let (x, ..) = texts
            .iter()
            .find(|t| t.3 == *label)
            .unwrap_or_else(|| panic!("{}: no legend entry {label}", path.display()));
        assert!(
            *x > edge,
            "{}: legend entry {label} at x {x}, inside the plot (right edge {edge})",
            path.display()
        );
        legend_x = legend_x.min(*x);
    }
    // Labels start 52 px into the legend column (a sample line before them).
    let column = legend_x - 52.0;
    for (x, anchor, size, text) in &texts {
        // The SVG font size is 0.8 of the PNG's pixel size, and DejaVu Sans
        // averages about 0.62 em per character: 0.8 em here errs wide.
        let w = text.chars().count() as f64 * size * 0.8;
        let right = match anchor.as_str() {
            "middle" => x + w / 2.0,
            "end" => *x,
            _ => x + w,
        };
        assert!(
            right <= W,
            "{}: {text:?} ends at {right}, past the image width",
            path.display()
        );
        if *x <= edge && anchor == "middle" && !text.is_empty() && *x > 60.0 && *x < edge + 1.0 {
            // A tick label of the x axis (the title is centred on the image).
            if (*x - W / 2.0).abs() > 1.0 {
                assert!(
                    right <= column,
                    "{}: {text:?} ends at {right}, in the legend column (from {column})",
                    path.display()
                );
            }
        }
    }
}

fn short_run(cwd: &Path, flush: &str, out: &str, extra: &[&str]) {
    let mut args = vec![
        "run",
        "--flush",
        flush,
        "--producers",
        "2",
        "--duration",
        "0.5",
        "--warmup",
        "0.1",
        "--small-files",
        "--no-baseline",
        "--out",
        out,
    ];
    args.extend_from_slice(extra);
    common::mqlab_ok(cwd, &args);
}

/// (t_s, interval_s) of every row of a timeseries.csv.
fn buckets(path: &Path) -> Vec<(f64, f64)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(&header[..2], ["t_s", "interval_s"], "{}", path.display());
    lines
        .map(|l| {
            let f: Vec<f64> = l.split(',').map(|v| v.parse().unwrap()).collect();
            (f[0], f[1])
        })
        .collect()
}

#[test]
fn short_runs_are_sampled_every_100_ms() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    short_run(cwd, "group", "default", &[]);
    let rows = buckets(&cwd.join("default/timeseries.csv"));
    // 0.6 s at 100 ms: 6 buckets (not one row a second).
    assert!(rows.len() >= 5, "{rows:?}");
    for (i, (t, iv)) in rows.iter().enumerate() {
        assert_eq!(*iv, 0.1, "{rows:?}");
        assert!((t - i as f64 * 0.1).abs() < 1e-9, "{rows:?}");
    }
    let s = common::json(&cwd.join("default/summary.json"));
    assert_eq!(s["config"]["workload"]["timeseries_ms"], 100, "{s}");
    // An explicit bucket wins.
    short_run(cwd, "group", "given", &["--timeseries-ms", "250"]);
    let rows = buckets(&cwd.join("given/timeseries.csv"));
    assert!(rows.iter().all(|r| r.1 == 0.25), "{rows:?}");
}

#[test]
fn charts_from_runs_and_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    std::fs::create_dir_all(cwd.join("m")).unwrap();
    for (flush, name) in [("group", "m/group"), ("async", "m/async")] {
        short_run(cwd, flush, name, &[]);
    }
    common::mqlab_ok(
        cwd,
        &[
            "crash",
            "--flush",
            "async",
            "--crashes",
            "1",
            "--min-ms",
            "20",
            "--max-ms",
            "60",
            "--torn",
            "false",
            "--out",
            "c",
        ],
    );
    let out = common::mqlab_ok(cwd, &["plot", "m", "c", "--out", "charts"]);
    for chart in [
        "loss_vs_throughput",
        "latency_spectrum",
        "timeseries",
        "crash_loss",
    ] {
        for ext in ["svg", "png"] {
            let p = cwd.join("charts").join(format!("{chart}.{ext}"));
            let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
            assert!(
                len > 1000,
                "{} missing or empty ({len} bytes); plot said:\n{out}",
                p.display()
            );
        }
    }
    let png = std::fs::read(cwd.join("charts/loss_vs_throughput.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    let svg = std::fs::read_to_string(cwd.join("charts/loss_vs_throughput.svg")).unwrap();
    assert!(svg.contains("Pareto"));
    let runs = ["async-500ms/pwrite", "group/pwrite"];
    for chart in ["latency_spectrum", "timeseries"] {
        assert_legend_outside_and_text_inside(&cwd.join(format!("charts/{chart}.svg")), &runs);
    }
    assert_legend_outside_and_text_inside(
        &cwd.join("charts/loss_vs_throughput.svg"),
        &["Pareto frontier", "async", "group"],
    );
    assert_legend_outside_and_text_inside(
        &cwd.join("charts/crash_loss.svg"),
        &["async / power (1 crashes)"],
    );
    // The time series says how often it was sampled.
    let ts = std::fs::read_to_string(cwd.join("charts/timeseries.svg")).unwrap();
    assert!(ts.contains("a point every 100 ms"));
}

#[test]
fn delay_folders_are_replotted() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    short_run(cwd, "async", "r", &[]);
    // A `mqlab delay` folder, its lateness taken from a run's histogram.
    let d = cwd.join("d");
    let hgrm = std::fs::read_to_string(cwd.join("r/ack_latency.hgrm")).unwrap();
    for s in ["wheel", "levels"] {
        std::fs::create_dir_all(d.join(s)).unwrap();
        std::fs::write(d.join(s).join("lateness.hgrm"), &hgrm).unwrap();
        std::fs::write(
            d.join(s).join("lateness_timeseries.csv"),
            "t_s,delivered,lateness_p50_ms,lateness_p99_ms,lateness_max_ms\n\
             0.000,10,0,4,4\n0.010,20,1,5,6\n0.020,20,1,5,6\n3.000,5,2,9,9\n",
        )
        .unwrap();
        std::fs::write(d.join(s).join("summary.json"), "{\"scheduler\": 1}").unwrap();
    }
    std::fs::write(
        d.join("summary.json"),
        r#"{"runs": [{"scheduler": "wheel"}, {"scheduler": "levels"}]}"#,
    )
    .unwrap();
    common::mqlab_ok(cwd, &["plot", "d", "--out", "charts"]);
    for chart in ["lateness_spectrum", "lateness_over_time"] {
        let svg = cwd.join(format!("charts/{chart}.svg"));
        assert_legend_outside_and_text_inside(&svg, &["wheel", "levels"]);
        assert!(cwd.join(format!("charts/{chart}.png")).is_file());
    }
    // Nothing else to plot there: no run charts.
    assert!(!cwd.join("charts/latency_spectrum.svg").exists());
}
