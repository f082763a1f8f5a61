//! A short `mqlab run` writes a valid summary.json, .hgrm, time series,
//! command line and ack log.

mod common;

use std::fs;

#[test]
fn short_run_writes_valid_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let stdout = common::mqlab_ok(
        cwd,
        &[
            "run",
            "--flush",
            "async",
            "--flush-interval-ms",
            "50",
            "--producers",
            "2",
            "--duration",
            "0.6",
            "--warmup",
            "0.1",
            "--msg-size",
            "100",
            "--small-files",
            "--no-baseline",
            "--timeseries-ms",
            "200",
            "--out",
            "r",
            "--ack-log",
            "acks.csv",
        ],
    );
    assert!(stdout.contains("async-50ms/pwrite"), "{stdout}");
    let s = common::json(&cwd.join("r/summary.json"));
    for key in [
        "config",
        "throughput_msgs_per_s",
        "throughput_mib_per_s",
        "ack_latency_us",
        "loss_window",
        "machine",
        "baseline",
        "ratios",
    ] {
        assert!(s.get(key).is_some(), "summary.json lacks {key}: {s}");
    }
    assert!(s["throughput_msgs_per_s"].as_f64().unwrap() > 0.0);
    let lat = &s["ack_latency_us"];
    for p in ["p50", "p90", "p99", "p999", "max"] {
        assert!(lat[p].as_u64().is_some(), "ack_latency_us.{p}: {lat}");
    }
    assert!(lat["p50"].as_u64() <= lat["p99"].as_u64());
    assert!(lat["p99"].as_u64() <= lat["max"].as_u64());
    let lw = &s["loss_window"];
    for k in ["max_bytes", "max_msgs", "max_ms", "p99_ms"] {
        assert!(lw.get(k).is_some(), "loss_window.{k}: {lw}");
    }
    assert!(lw["samples"].as_u64().unwrap() > 10, "sampler ran: {lw}");
    assert_eq!(s["config"]["store"]["flush"]["kind"], "async");
    assert_eq!(s["config"]["workload"]["producers"], 2);
    assert!(!s["machine"]["kernel"].as_str().unwrap().is_empty());
    assert!(s["machine"]["cores"].as_u64().unwrap() >= 1);
    assert!(!s["machine"]["filesystem"].as_str().unwrap().is_empty());

    let hgrm = fs::read_to_string(cwd.join("r/ack_latency.hgrm")).unwrap();
    assert!(hgrm.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)\n\n"));
    assert!(hgrm.contains("#[Mean    ="));
    assert!(hgrm.contains("#[Max     ="));
    let rows: Vec<Vec<f64>> = hgrm
        .lines()
        .skip(2)
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(|v| v.parse().unwrap()).collect())
        .collect();
    assert!(rows.len() > 10);
    assert_eq!(rows.last().unwrap()[1], 1.0);
    let total = rows.last().unwrap()[2] as u64;
    assert_eq!(total, lat["count"].as_u64().unwrap());

    let ts = fs::read_to_string(cwd.join("r/timeseries.csv")).unwrap();
    assert!(ts.starts_with("t_s,interval_s,warmup,msgs,msgs_per_s"));
    assert!(ts.lines().count() >= 3, "{ts}");
    let cmd = fs::read_to_string(cwd.join("r/command.txt")).unwrap();
    assert!(cmd.contains("run --flush async"), "{cmd}");

    let acks = fs::read_to_string(cwd.join("acks.csv")).unwrap();
    let mut lines = acks.lines();
    assert_eq!(
        lines.next(),
        Some("topic,queue_id,queue_offset,phys_offset,key")
    );
    assert!(lines.count() as u64 >= s["messages_acked"].as_u64().unwrap());
}

#[test]
fn spec_file_and_rate_limit() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let spec = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("specs/rate-limited.toml");
    common::mqlab_ok(
        cwd,
        &[
            "run",
            "--spec",
            spec.to_str().unwrap(),
            "--flush",
            "async",
            "--rate",
            "2000",
            "--duration",
            "0.5",
            "--warmup",
            "0",
            "--small-files",
            "--no-baseline",
            "--out",
            "r",
        ],
    );
    let s = common::json(&cwd.join("r/summary.json"));
    assert_eq!(s["name"], "rate-limited");
    assert_eq!(s["config"]["workload"]["inflight"], 2);
    let rate = s["throughput_msgs_per_s"].as_f64().unwrap();
    assert!(
        rate > 1000.0 && rate < 3000.0,
        "rate-limited to 2000/s, got {rate}"
    );
    assert!(s["intended_latency_us"]["count"].as_u64().unwrap() > 0);
    assert!(cwd.join("r/intended_latency.hgrm").is_file());
}
