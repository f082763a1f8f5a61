//! Power loss of replicated brokers (issue 14), CI-sized.
//!
//! `mqlab ha --power-loss`: ASYNC_MASTER and SYNC_MASTER, group and async
//! flush, one slave, one seeded kill each with the master's disk losing
//! power (the slave survives) and one with every replica's disk losing
//! power at the same instant. Every broker runs with power-loss marks;
//! the killed stores are rewritten to what a power loss would leave, then
//! verified. Checked: nothing lost below the master's flushed offset at
//! the kill (loss_over_window 0, on the survivor and on the master's own
//! disk), nothing lost past the replication lag, SYNC_MASTER with a
//! surviving slave loses nothing, sync/group flush lose nothing even when
//! every replica loses power, and under async flush the master's disk
//! does lose its unsynced window (the simulation drops bytes).
//!
//! `mqlab powerloss`: refuses a directory without marks, applies once to a
//! killed broker's store, which then verifies.
//!
//! Bounded (120 s); a failure prints the seed (MQLAB_HA_SEED sets it).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn seed() -> u64 {
    std::env::var("MQLAB_HA_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(14)
}

#[test]
fn power_loss_of_the_master_and_of_every_replica() {
    let seed = seed();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pl");
    let log = dir.path().join("pl.log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mqlab"));
    cmd.args([
        "ha",
        "--power-loss",
        "--roles",
        "ASYNC_MASTER,SYNC_MASTER",
        "--flushes",
        "group,async",
        "--slaves",
        "1",
        "--kills",
        "1",
        "--kill-after-ms",
        "300..700",
        "--seed",
    ])
    .arg(seed.to_string())
    .arg("--out")
    .arg(&out);
    let (status, printed) = common::run_logged(
        cmd,
        &log,
        Stdio::inherit(),
        Duration::from_secs(120),
        "mqlab ha --power-loss",
        seed,
    );
    assert!(status.success(), "seed {seed}: {status}\n{printed}");
    let s = common::json(&out.join("summary.json"));
    assert_eq!(s["power_loss"], true);
    assert_eq!(s["violations"], 0, "seed {seed}\n{printed}");
    let modes = s["modes"].as_array().unwrap();
    assert_eq!(modes.len(), 8, "seed {seed}: {s}");
    let mut async_master_disk_lost = 0;
    for m in modes {
        let name = m["name"].as_str().unwrap();
        let get = |k: &str| m[k].as_u64().unwrap_or_else(|| panic!("{name}: no {k}"));
        assert_eq!(get("failovers"), 1, "seed {seed}: {name}\n{printed}");
        assert!(get("acked") > 0, "seed {seed}: {name}\n{printed}");
        assert_eq!(get("loss_over_window"), 0, "seed {seed}: {name}\n{printed}");
        assert_eq!(
            get("master_loss_over_window"),
            0,
            "seed {seed}: {name}\n{printed}"
        );
        assert_eq!(get("loss_over_lag"), 0, "seed {seed}: {name}\n{printed}");
        assert_eq!(get("duplicated"), 0, "seed {seed}: {name}\n{printed}");
        let (role, flush, off) = (
            m["role"].as_str().unwrap(),
            m["flush"].as_str().unwrap(),
            m["power_off"].as_str().unwrap(),
        );
        if flush == "group" {
            assert_eq!(
                get("acked_lost_master"),
                0,
                "seed {seed}: {name}\n{printed}"
            );
            if off == "all" {
                assert_eq!(get("acked_lost"), 0, "seed {seed}: {name}\n{printed}");
            }
        } else {
            async_master_disk_lost += get("acked_lost_master");
            // Within the master's window at the kill.
            assert!(
                m["acked_lost_master_per_kill"]["max"].as_f64().unwrap()
                    <= m["window_at_kill_msgs"]["max"].as_f64().unwrap(),
                "seed {seed}: {name}\n{printed}"
            );
        }
        if role == "SYNC_MASTER" && off == "master" {
            assert_eq!(get("acked_lost"), 0, "seed {seed}: {name}\n{printed}");
        }
    }
    // Kills 300..700 ms into the load, async flush every 500 ms: the
    // master's disk loses what it had acknowledged but not synced.
    assert!(
        async_master_disk_lost > 0,
        "seed {seed}: the power loss dropped nothing under async flush\n{printed}"
    );
}

#[test]
fn powerloss_command_on_a_killed_broker() {
    let dir = tempfile::tempdir().unwrap();
    // No marks: refused, saying how to get them.
    std::fs::create_dir_all(dir.path().join("plain")).unwrap();
    let err = common::fails(dir.path(), &["powerloss", "--data-dir", "plain"]);
    assert!(err.contains("--power-loss-marks"), "{err}");

    let data = dir.path().join("b");
    let mut broker = Command::new(env!("CARGO_BIN_EXE_mqlab"))
        .args([
            "broker",
            "--power-loss-marks",
            "--flush",
            "async",
            "--data-dir",
        ])
        .arg(&data)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--namesrv-listen",
            "127.0.0.1:0",
            "--status-secs",
            "0",
            "--duration",
            "60",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = broker.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let t = Instant::now();
    loop {
        let l = lines
            .next()
            .expect("the broker printed its address")
            .unwrap();
        if l.contains("listening on ") {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "no listening line");
    }
    broker.kill().unwrap();
    broker.wait().unwrap();
    assert!(data.join("powerloss.marks").exists());
    let rep = common::mqlab_ok(dir.path(), &["powerloss", "--data-dir", "b", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&rep).unwrap();
    assert_eq!(v["bad_lines"], 0, "{rep}");
    assert!(
        v["files"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["file"] == "checkpoint"),
        "{rep}"
    );
    // Applied once; the store then recovers.
    assert!(!data.join("powerloss.marks").exists());
    let again = common::fails(dir.path(), &["powerloss", "--data-dir", "b"]);
    assert!(again.contains("applied already"), "{again}");
    common::mqlab_ok(dir.path(), &["verify", "--data-dir", "b"]);
}
