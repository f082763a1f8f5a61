//! Many load hosts: `mqlab merge` adds the result folders of `run
//! --target` runs exactly (counts and errors by code add, the merged
//! histograms equal histograms of every run's values, the series add by
//! wall-clock second), first on two seeded synthetic runs whose every
//! value the test knows, then on two real `run --target --start-at`
//! processes against `mqlab broker` that start together; with OMB's
//! status lines and result fields. And the inputs merge refuses.

mod common;
mod interop_common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use hdrhistogram::Histogram;
use interop_common::Broker;
use mqlab::recorder::{latency_hist, LatencySummary, SenderStats};
use mqlab::spec::{Overrides, SpecFile, Workload};
use mqlab::summary::{read_hdr, RunConfig, Summary};
use mqlab::wire::series::{self, WallSeries, WallTimes};
use mqlab::wire::{target_figures, write_outputs, Outputs};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Everything one synthetic run recorded, value by value.
struct Synthetic {
    acks: Vec<(u64, u64, u64)>,
    consumed: Vec<(u64, u64)>,
    errors: BTreeMap<String, u64>,
    error_walls: Vec<u64>,
}

const BASE_US: u64 = 1_796_558_400_000_000;

/// A run of `name` with random acks (wall time, latency, intended
/// latency), consumptions and errors between `from_s` and `to_s` seconds
/// after BASE_US, written as `run --target` writes it into `dir`.
fn synthetic_run(rng: &mut ChaCha8Rng, dir: &Path, from_s: u64, to_s: u64) -> Synthetic {
    let span = (to_s - from_s) * 1_000_000;
    let n = rng.random_range(2000..5000);
    let mut s = Synthetic {
        acks: Vec::new(),
        consumed: Vec::new(),
        errors: BTreeMap::new(),
        error_walls: Vec::new(),
    };
    for _ in 0..n {
        let wall = BASE_US + from_s * 1_000_000 + rng.random_range(0..span);
        // Log-uniform from 20 µs to 200 ms.
        let lat = (20.0 * 10f64.powf(rng.random_range(0.0..4.0))) as u64;
        s.acks.push((wall, lat, lat + rng.random_range(0..500)));
        if rng.random_bool(0.8) {
            let e2e = lat + rng.random_range(100..20_000);
            s.consumed.push((wall + e2e, e2e));
        }
    }
    for code in ["SYSTEM_BUSY", "TIMEOUT"] {
        let k = rng.random_range(0..20);
        if k > 0 {
            s.errors.insert(code.into(), k);
        }
        for _ in 0..k {
            s.error_walls
                .push(BASE_US + from_s * 1_000_000 + rng.random_range(0..span));
        }
    }
    let mut w = Workload::resolve_within(
        &SpecFile::default(),
        None,
        None,
        &Overrides {
            rate: Some(1000.0),
            msg_size: Some(100),
            topic: Some("MergeTopic".into()),
            ..Overrides::default()
        },
        Some("merge-test"),
        1 << 20,
    )
    .unwrap();
    w.warmup_secs = 0.0;
    let start_us = BASE_US + from_s * 1_000_000;
    let mut stats = SenderStats::default();
    let (mut series, mut delay, mut e2e) = (WallSeries::default(), latency_hist(), latency_hist());
    for &(wall, lat, int) in &s.acks {
        let bucket = ((wall - start_us) / 100_000) as usize;
        stats.record_ack(bucket, true, lat, Some(int), 100);
        series.record_ack(wall, lat, 100);
        delay.record(int - lat + 1).unwrap();
    }
    for &(wall, e) in &s.consumed {
        series.record_consumed(wall, e, 100);
        e2e.record(e).unwrap();
    }
    for (code, k) in &s.errors {
        for _ in 0..*k {
            stats.record_error(0, code);
        }
    }
    for &wall in &s.error_walls {
        series.record_error(wall);
    }
    let secs = (to_s - from_s) as f64;
    let mut extra = BTreeMap::new();
    extra.insert("send_failed".to_string(), 3.0);
    let summary = Summary {
        mqlab_version: "test".into(),
        name: w.name.clone(),
        label: "rocketmq://127.0.0.1:9876".into(),
        command: "synthetic".into(),
        started_utc: "20261206-120000".into(),
        config: RunConfig {
            store: w.store_config(),
            workload: w.clone(),
        },
        duration_s: secs,
        messages_acked: stats.msgs,
        bytes_acked: stats.bytes,
        throughput_msgs_per_s: stats.msgs as f64 / secs,
        throughput_mib_per_s: 0.0,
        ack_latency_us: LatencySummary::of(&stats.ack),
        intended_latency_us: Some(LatencySummary::of(&stats.intended)),
        loss_window: Default::default(),
        errors: s.errors.clone(),
        offsets_end: Default::default(),
        open_ms: 1.0,
        shutdown_ms: None,
        baseline: None,
        ratios: None,
        machine: Default::default(),
        interrupted: false,
        messaging: Some(target_figures(
            "v",
            (s.acks.len() as u64, s.consumed.len() as u64),
            s.consumed.len() as f64 / secs,
            &e2e,
            &[],
            extra,
        )),
    };
    std::fs::create_dir_all(dir).unwrap();
    write_outputs(
        dir,
        &Outputs {
            summary: &summary,
            stats: &stats,
            delay: &delay,
            e2e: Some(&e2e),
            series: &series,
            times: WallTimes {
                start_unix_us: start_us,
                measure_from_unix_us: start_us,
                measured_end_unix_us: BASE_US + to_s * 1_000_000,
            },
            backlog: None,
            total_secs: secs,
            extra: Default::default(),
        },
    )
    .unwrap();
    s
}

fn hist_of(values: impl Iterator<Item = u64>) -> Histogram<u64> {
    let mut h = latency_hist();
    for v in values {
        h.record(v.max(1)).unwrap();
    }
    h
}

#[test]
fn merging_two_runs_adds_them_exactly() {
    let seed: u64 = std::env::var("MQLAB_MERGE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let ctx = format!("MQLAB_MERGE_SEED={seed}");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let (a_dir, b_dir, m_dir) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("m"),
    );
    // Overlapping but not equal spans: seconds 0..4 and 2..5.
    let a = synthetic_run(&mut rng, &a_dir, 0, 4);
    let b = synthetic_run(&mut rng, &b_dir, 2, 5);
    let merged = mqlab::merge::merge(&[a_dir.clone(), b_dir.clone()], &m_dir).unwrap();
    let acks: Vec<_> = a.acks.iter().chain(&b.acks).copied().collect();
    let consumed: Vec<_> = a.consumed.iter().chain(&b.consumed).copied().collect();
    // Counts add.
    assert_eq!(merged.messages_acked, acks.len() as u64, "{ctx}");
    assert_eq!(merged.bytes_acked, 100 * acks.len() as u64, "{ctx}");
    let mut errors = a.errors.clone();
    for (k, v) in &b.errors {
        *errors.entry(k.clone()).or_default() += v;
    }
    assert_eq!(merged.errors, errors, "{ctx}");
    let s = common::json(&m_dir.join("summary.json"));
    assert_eq!(s["messages_acked"], acks.len() as u64, "{ctx}");
    assert_eq!(s["produced"], acks.len() as u64, "{ctx}");
    assert_eq!(s["consumed"], consumed.len() as u64, "{ctx}");
    assert_eq!(s["extra"]["send_failed"], 6.0, "{ctx}");
    assert_eq!(s["duration_s"], 5.0, "{ctx}");
    assert_eq!(s["merged_from"].as_array().unwrap().len(), 2, "{ctx}");
    // The merged histograms are the histograms of every value.
    let want_ack = hist_of(acks.iter().map(|a| a.1));
    let want_int = hist_of(acks.iter().map(|a| a.2));
    let want_e2e = hist_of(consumed.iter().map(|c| c.1));
    let got_ack = read_hdr(&m_dir.join("ack_latency.hdr")).unwrap();
    assert!(got_ack == want_ack, "{ctx}: ack histogram differs");
    assert!(
        read_hdr(&m_dir.join("intended_latency.hdr")).unwrap() == want_int,
        "{ctx}: intended histogram differs"
    );
    assert!(
        read_hdr(&m_dir.join("e2e_latency.hdr")).unwrap() == want_e2e,
        "{ctx}: end-to-end histogram differs"
    );
    assert_eq!(
        std::fs::read_to_string(m_dir.join("ack_latency.hgrm")).unwrap(),
        mqlab::summary::hgrm_text(&want_ack),
        "{ctx}"
    );
    for (field, h) in [("ack_latency_us", &want_ack), ("e2e_latency_us", &want_e2e)] {
        let l = &s[field];
        assert_eq!(l["count"], h.len(), "{ctx}: {field}");
        assert_eq!(l["p99"], h.value_at_quantile(0.99), "{ctx}: {field}");
        assert_eq!(l["p999"], h.value_at_quantile(0.999), "{ctx}: {field}");
        assert_eq!(l["max"], h.max(), "{ctx}: {field}");
    }
    let omb = common::json(&m_dir.join("omb-result.json"));
    assert_eq!(
        omb["aggregatedPublishLatency99pct"].as_f64().unwrap(),
        want_ack.value_at_quantile(0.99) as f64 / 1000.0,
        "{ctx}"
    );
    assert_eq!(s["omb"], omb, "{ctx}");
    // The series add by wall-clock second.
    let mut per_second: BTreeMap<u64, (u64, u64, u64)> = BTreeMap::new();
    for &(wall, _, _) in &acks {
        per_second.entry(wall / 1_000_000).or_default().0 += 1;
    }
    for &(wall, _) in &consumed {
        per_second.entry(wall / 1_000_000).or_default().1 += 1;
    }
    for &wall in a.error_walls.iter().chain(&b.error_walls) {
        per_second.entry(wall / 1_000_000).or_default().2 += 1;
    }
    let (series, times) = series::read(&m_dir).unwrap();
    assert_eq!(times.start_unix_us, BASE_US, "{ctx}");
    assert_eq!(times.measured_end_unix_us, BASE_US + 5_000_000, "{ctx}");
    let got: BTreeMap<u64, (u64, u64, u64)> = series
        .seconds
        .iter()
        .map(|(&s, b)| (s, (b.msgs, b.consumed, b.errors)))
        .collect();
    assert_eq!(got, per_second, "{ctx}");
    // ... and so does timeseries.csv, one row per wall-clock second.
    let ts = std::fs::read_to_string(m_dir.join("timeseries.csv")).unwrap();
    let col = |name: &str| {
        let header: Vec<&str> = ts.lines().next().unwrap().split(',').collect();
        let i = header.iter().position(|h| *h == name).unwrap();
        ts.lines()
            .skip(1)
            .map(|l| l.split(',').nth(i).unwrap().parse::<u64>().unwrap())
            .collect::<Vec<_>>()
    };
    let msgs = col("msgs");
    assert_eq!(msgs.iter().sum::<u64>(), acks.len() as u64, "{ctx}");
    let want_msgs: Vec<u64> = (0..msgs.len() as u64)
        .map(|i| {
            per_second
                .get(&(BASE_US / 1_000_000 + i))
                .map_or(0, |c| c.0)
        })
        .collect();
    assert_eq!(msgs, want_msgs, "{ctx}");
    assert_eq!(
        col("errors").iter().sum::<u64>(),
        (a.error_walls.len() + b.error_walls.len()) as u64,
        "{ctx}"
    );
    for f in [
        "messaging.csv",
        "timeseries.svg",
        "backlog.svg",
        "e2e_latency.svg",
    ] {
        assert!(m_dir.join(f).is_file(), "{ctx}: {f} missing");
    }
    // A merge is a run folder too: merging it with a third run adds again.
    let c_dir = dir.path().join("c");
    let c = synthetic_run(&mut rng, &c_dir, 1, 3);
    let again = mqlab::merge::merge(&[m_dir.clone(), c_dir], &dir.path().join("m2")).unwrap();
    assert_eq!(
        again.messages_acked,
        (acks.len() + c.acks.len()) as u64,
        "{ctx}"
    );
}

#[test]
fn merge_refuses_what_it_cannot_add() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    synthetic_run(&mut rng, &cwd.join("a"), 0, 2);
    let e = common::error_line(cwd, &["merge", "a", "--out", "m"]);
    assert!(e.contains("two or more"), "{e}");
    let e = common::error_line(cwd, &["merge", "a", "./a", "--out", "m"]);
    assert!(e.contains("same folder"), "{e}");
    // A folder that is not a --target run's: the missing file is named.
    std::fs::create_dir(cwd.join("b")).unwrap();
    std::fs::copy(cwd.join("a/summary.json"), cwd.join("b/summary.json")).unwrap();
    let e = common::error_line(cwd, &["merge", "a", "b", "--out", "m"]);
    assert!(e.contains("b/series.json"), "{e}");
    // A damaged histogram: the file is named.
    let e = {
        std::fs::remove_dir_all(cwd.join("b")).unwrap();
        synthetic_run(&mut rng, &cwd.join("b"), 0, 2);
        std::fs::write(cwd.join("b/ack_latency.hdr"), "garbage").unwrap();
        common::error_line(cwd, &["merge", "a", "b", "--out", "m"])
    };
    assert!(e.contains("b/ack_latency.hdr"), "{e}");
    assert!(!cwd.join("m").exists(), "a failed merge left its folder");
}

fn unix_now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

#[test]
fn two_load_hosts_start_together_and_merge() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), "async", "HostsTopic", 4);
    let target = format!("rocketmq://{}", broker.namesrv);
    let at_us = unix_now_us() + 4_000_000;
    let at = format!("{}.{:06}", at_us / 1_000_000, at_us % 1_000_000);
    let hosts: Vec<PathBuf> = ["h1", "h2"].iter().map(|h| dir.path().join(h)).collect();
    let runs: Vec<_> = hosts
        .iter()
        .enumerate()
        .map(|(i, out)| {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_mqlab"));
            cmd.current_dir(dir.path())
                .args(["run", "--target", &target, "--topic", "HostsTopic"])
                .args(["--producers", "1", "--inflight", "50", "--msg-size", "128"])
                .args(["--rate", "400", "--duration", "1.5", "--warmup", "0.5"])
                .args(["--status-secs", "0.5", "--status-format", "both"])
                .args(["--start-at", &at, "--out"])
                .arg(out);
            // The second host consumes nothing (its consumers would read
            // the first host's messages as well).
            if i == 1 {
                cmd.args(["--consume", "false"]);
            }
            std::thread::spawn(move || {
                interop_common::run_client_both(cmd, "mqlab run --target --start-at", 120)
            })
        })
        .collect();
    let outputs: Vec<(String, String)> = runs.into_iter().map(|t| t.join().unwrap()).collect();
    for (stdout, stderr) in &outputs {
        assert!(stderr.contains("mqlab: starting in "), "{stderr}");
        // OMB's periodic and closing lines, and RocketMQ's beside them.
        let omb: Vec<&str> = stdout
            .lines()
            .filter(|l| l.starts_with("Pub rate "))
            .collect();
        assert!(omb.len() >= 2, "{stdout}");
        for l in &omb {
            for part in [
                " msg/s / ",
                " MB/s | Pub err ",
                " err/s | Cons rate ",
                " | Backlog: ",
                " K | Pub Latency (ms) avg: ",
                " - 50%: ",
                " - 99%: ",
                " - 99.9%: ",
                " - Max: ",
                " | Pub Delay Latency (us) avg: ",
            ] {
                assert!(l.contains(part), "{part:?} not in {l}");
            }
        }
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with("----- Aggregated Pub Latency (ms) avg: ")),
            "{stdout}"
        );
        assert!(stdout.contains("| Send TPS: "), "{stdout}");
    }
    let (s1, s2) = (
        common::json(&hosts[0].join("summary.json")),
        common::json(&hosts[1].join("summary.json")),
    );
    // Both started at the time given, not when their command came.
    for h in &hosts {
        let (_, times) = series::read(h).unwrap();
        let off = times.start_unix_us as i64 - at_us as i64;
        assert!(
            (0..300_000).contains(&off),
            "started {off} µs after --start-at"
        );
    }
    // OMB's names in the result.
    let omb = &s1["omb"];
    assert_eq!(omb, &common::json(&hosts[0].join("omb-result.json")));
    assert_eq!(omb["messageSize"], 128);
    assert_eq!(omb["partitions"], 4);
    assert!(!omb["publishRate"].as_array().unwrap().is_empty(), "{omb}");
    assert!(
        omb["aggregatedPublishLatency99pct"].as_f64().unwrap() > 0.0,
        "{omb}"
    );
    assert!(omb["aggregatedPublishDelayLatency50pct"].is_u64(), "{omb}");
    assert!(
        omb["aggregatedEndToEndLatency999pct"].as_f64().unwrap() > 0.0,
        "{omb}"
    );
    assert!(s2["omb"]["endToEndLatency99pct"]
        .as_array()
        .unwrap()
        .is_empty());
    let m = dir.path().join("merged");
    let out = common::mqlab_ok(
        dir.path(),
        &["merge", "h1", "h2", "--out", m.to_str().unwrap()],
    );
    assert!(out.contains("merged 2 runs"), "{out}");
    let s = common::json(&m.join("summary.json"));
    let acked = |v: &serde_json::Value| v["messages_acked"].as_u64().unwrap();
    assert_eq!(acked(&s), acked(&s1) + acked(&s2), "{s}");
    assert!(acked(&s1) > 300 && acked(&s2) > 300, "{s1} {s2}");
    // Errors by code add (a loaded machine may answer a few SYSTEM_BUSY).
    let mut errors = s1["errors"].as_object().unwrap().clone();
    for (code, n) in s2["errors"].as_object().unwrap() {
        let sum = errors.get(code).and_then(|v| v.as_u64()).unwrap_or(0) + n.as_u64().unwrap();
        errors.insert(code.clone(), sum.into());
    }
    assert_eq!(s["errors"], serde_json::Value::Object(errors), "{s}");
    assert_eq!(s["config"]["workload"]["producers"], 2);
    assert_eq!(s["config"]["workload"]["rate"], 800.0);
    let mut sum = read_hdr(&hosts[0].join("ack_latency.hdr")).unwrap();
    sum.add(read_hdr(&hosts[1].join("ack_latency.hdr")).unwrap())
        .unwrap();
    assert!(read_hdr(&m.join("ack_latency.hdr")).unwrap() == sum);
    assert_eq!(s["ack_latency_us"]["count"], sum.len());
    // Only the first host consumed: its end-to-end histogram is the merge's.
    assert!(
        read_hdr(&m.join("e2e_latency.hdr")).unwrap()
            == read_hdr(&hosts[0].join("e2e_latency.hdr")).unwrap()
    );
    let total = |d: &Path| series::read(d).unwrap().0.totals();
    let (t1, t2, tm) = (total(&hosts[0]), total(&hosts[1]), total(&m));
    assert_eq!(tm, (t1.0 + t2.0, t1.1 + t2.1, t1.2 + t2.2, t1.3 + t2.3));
    // The one consumer read (at least) its own host's messages.
    assert!(tm.3 >= t1.0, "consumed {} of {} sent", tm.3, t1.0);
    for f in [
        "omb-result.json",
        "timeseries.svg",
        "e2e_latency.svg",
        "backlog.svg",
    ] {
        assert!(m.join(f).is_file(), "{f} missing");
    }
    broker.stop();
}

#[test]
fn start_at_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let past = (unix_now_us() / 1_000_000 - 60).to_string();
    let e = common::error_line(
        cwd,
        &[
            "run",
            "--target",
            "rocketmq://127.0.0.1:9",
            "--start-at",
            &past,
        ],
    );
    assert!(e.contains("in the past") && e.contains("--start-at"), "{e}");
    let e = common::error_line(
        cwd,
        &[
            "run",
            "--target",
            "rocketmq://127.0.0.1:9",
            "--start-at",
            "noon",
        ],
    );
    assert!(e.contains("RFC 3339") && e.contains("unix seconds"), "{e}");
    let e = common::error_line(cwd, &["run", "--start-at", "2099-01-01T00:00:00Z"]);
    assert!(
        e.contains("--start-at only applies to a run with --target"),
        "{e}"
    );
}
