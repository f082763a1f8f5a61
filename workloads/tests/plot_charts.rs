//! `mqlab plot` draws SVG and PNG charts from run and crash folders, with
//! no system fonts needed.

mod common;

#[test]
fn charts_from_runs_and_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    std::fs::create_dir_all(cwd.join("m")).unwrap();
    for (flush, name) in [("group", "m/group"), ("async", "m/async")] {
        common::mqlab_ok(
            cwd,
            &[
                "run",
                "--flush",
                flush,
                "--producers",
                "2",
                "--duration",
                "0.3",
                "--warmup",
                "0",
                "--small-files",
                "--no-baseline",
                "--timeseries-ms",
                "100",
                "--out",
                name,
            ],
        );
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
}
