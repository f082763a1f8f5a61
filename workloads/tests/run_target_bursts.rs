//! Bursts with `run --target`, as in-process: a spec's `burst_on_ms` /
//! `burst_off_ms` make the producers send only in the on phases (counted
//! from the start of the run), against `mqlab broker` on loopback. With
//! `--rate` the schedule moves out of each pause (sends are not late
//! because of it: latency from the intended time stays small); without a
//! rate the producers wait for the next burst. Seen in timeseries.csv's
//! 100 ms buckets: the ones well inside a pause hold (almost) nothing.

mod common;
mod interop_common;

use std::process::Command;

use interop_common::{run_client, Broker};

/// (bucket start in ms, msgs) of a timeseries.csv.
fn buckets(csv: &str) -> Vec<(u64, u64)> {
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let (t, m) = (
        header.iter().position(|h| *h == "t_s").unwrap(),
        header.iter().position(|h| *h == "msgs").unwrap(),
    );
    csv.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let t_s: f64 = f[t].parse().unwrap();
            ((t_s * 1000.0).round() as u64, f[m].parse().unwrap())
        })
        .collect()
}

#[test]
fn bursts_on_the_wire_send_only_in_the_on_phases() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), "async", "BurstTopic", 4);
    let target = format!("rocketmq://{}", broker.namesrv);
    // 200 ms on, 300 ms off: a cycle of 500 ms, four cycles in 2 s.
    let spec = dir.path().join("bursts.toml");
    std::fs::write(&spec, "burst_on_ms = 200\nburst_off_ms = 300\n").unwrap();
    for (name, rate) in [("rated", Some("2000")), ("unlimited", None)] {
        let out = dir.path().join(name);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mqlab"));
        cmd.current_dir(dir.path())
            .args(["run", "--target", &target, "--topic", "BurstTopic"])
            .arg("--spec")
            .arg(&spec)
            .args(["--producers", "2", "--inflight", "20", "--msg-size", "128"])
            .args(["--duration", "2", "--warmup", "0", "--timeseries-ms", "100"])
            .args(["--consume", "false", "--status-secs", "0", "--out"])
            .arg(&out);
        if let Some(r) = rate {
            cmd.args(["--rate", r]);
        }
        run_client(cmd, name, 120);
        let s = common::json(&out.join("summary.json"));
        assert_eq!(s["config"]["workload"]["burst_on_ms"], 200, "{s}");
        let acked = s["messages_acked"].as_u64().unwrap();
        let rows = buckets(&std::fs::read_to_string(out.join("timeseries.csv")).unwrap());
        let total: u64 = rows.iter().map(|r| r.1).sum();
        assert_eq!(total, acked, "{name}: {rows:?}");
        // Buckets starting 100 ms or more into a pause: at most a few late
        // answers (without bursts they would hold 40% of the messages).
        let in_pause: u64 = rows
            .iter()
            .filter(|(t, _)| t % 500 >= 300)
            .map(|r| r.1)
            .sum();
        assert!(
            in_pause * 10 <= total,
            "{name}: {in_pause} of {total} answered well inside a pause: {rows:?}"
        );
        // Every burst of the run sent.
        for cycle in 0..4 {
            let sent: u64 = rows
                .iter()
                .filter(|(t, _)| t / 500 == cycle && t % 500 < 300)
                .map(|r| r.1)
                .sum();
            assert!(sent > 0, "{name}: burst {cycle} sent nothing: {rows:?}");
        }
        if rate.is_some() {
            // 2,000 msgs/s for 40% of 2 s (4,000 without bursts, or with
            // a schedule that only waited out the pauses and caught up).
            assert!((1200..=2000).contains(&acked), "{name}: {acked} acked");
            // The schedule moved out of the pauses: sends were not held
            // back until the next burst (that would put the median past
            // 100 ms).
            let p50 = s["intended_latency_us"]["p50"].as_u64().unwrap();
            assert!(p50 < 100_000, "{name}: intended p50 {p50} µs");
        }
    }
    broker.stop();
}
