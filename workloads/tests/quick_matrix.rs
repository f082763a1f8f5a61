//! `mqlab matrix --quick` keeps the run-length default time-series bucket
//! (100 ms for its 1.25 s runs), like the default matrix.

mod common;

#[test]
fn quick_matrix_uses_the_default_100_ms_buckets() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    common::mqlab_ok(
        cwd,
        &[
            "matrix",
            "--quick",
            "--no-baseline",
            "--no-plot",
            "--flush",
            "sync",
            "--backend",
            "pwrite",
            "--intervals",
            "",
            "--small-files",
            "--data-dir",
            "data",
            "--out",
            "m",
        ],
    );
    let s = common::json(&cwd.join("m/sync-pwrite/summary.json"));
    assert_eq!(s["config"]["workload"]["timeseries_ms"], 100, "{s}");
    // timeseries.csv rows are 0.1 s apart.
    let csv = std::fs::read_to_string(cwd.join("m/sync-pwrite/timeseries.csv")).unwrap();
    let t: Vec<f64> = csv
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').next()?.parse().ok())
        .collect();
    assert!(t.len() >= 10, "{csv}");
    assert!((t[1] - t[0] - 0.1).abs() < 1e-6, "{csv}");
}
