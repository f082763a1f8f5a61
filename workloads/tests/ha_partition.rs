//! `mqlab ha --partition` (issue 16, replication faults), CI-sized: a few
//! seeded schedules of network faults and failovers against a
//! controller-mode group of `mqlab broker` processes on 127.0.0.1 (every
//! broker's controller link and HA port behind a fault proxy), the
//! producer sending to every broker. Under SYNC_MASTER no acknowledged
//! message is missing from the final master; in no master epoch did two
//! brokers acknowledge writes; every other broker's log agrees with the
//! final master's. Bounded (150 s for the run); a failure prints the seed
//! and the schedule's replay command (MQLAB_HA_PARTITION_SEED sets the
//! seed, MQLAB_HA_PARTITION_SCHEDULES the count).

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

#[test]
fn partition_schedules_lose_no_sync_ack_and_never_have_two_masters() {
    let seed = env_u64("MQLAB_HA_PARTITION_SEED", 16);
    let schedules = env_u64("MQLAB_HA_PARTITION_SCHEDULES", 4);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("partition");
    let log = dir.path().join("partition.log");
    // SYNC_MASTER with 2 and 1 slaves, then ASYNC_MASTER with 2 (its
    // losses are allowed, its epochs are not).
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mqlab"));
    cmd.args(["ha", "--partition", "--seed"])
        .arg(seed.to_string())
        .args(["--schedules", &schedules.to_string()])
        .args(["--roles", "SYNC_MASTER,SYNC_MASTER,ASYNC_MASTER"])
        .args(["--slaves", "2,1"])
        .args(["--rate", "400"])
        .arg("--out")
        .arg(&out);
    let (status, printed) = common::run_logged(
        cmd,
        &log,
        Stdio::null(),
        Duration::from_secs(150),
        "mqlab ha --partition",
        seed,
    );
    let s: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("summary.json"))
            .unwrap_or_else(|e| panic!("seed {seed}: no summary.json ({e}):\n{printed}")),
    )
    .unwrap();
    let get = |k: &str| {
        s[k].as_u64()
            .unwrap_or_else(|| panic!("seed {seed}: no {k} in {s}"))
    };
    assert_eq!(
        get("partition_acked_lost_sync"),
        0,
        "seed {seed}: SYNC_MASTER lost acknowledged messages\n{printed}"
    );
    assert_eq!(
        get("dual_master_epochs"),
        0,
        "seed {seed}: two brokers acknowledged in one epoch\n{printed}"
    );
    assert_eq!(
        get("diverged"),
        0,
        "seed {seed}: a replica diverged\n{printed}"
    );
    assert_eq!(
        s["failures"].as_array().map(|f| f.len()),
        Some(0),
        "seed {seed}: schedules failed to run\n{printed}"
    );
    assert_eq!(
        get("partition_schedules"),
        schedules,
        "seed {seed}\n{printed}"
    );
    assert!(
        get("acked_sync") > 0,
        "seed {seed}: nothing acked\n{printed}"
    );
    assert!(status.success(), "seed {seed}: {status}\n{printed}");
    // Every schedule line names its seed and schedule.
    let lines: Vec<&str> = printed
        .lines()
        .filter(|l| l.starts_with("schedule "))
        .collect();
    assert_eq!(lines.len() as u64, schedules, "seed {seed}\n{printed}");
    assert!(
        lines.iter().all(|l| l.contains("(seed ")),
        "seed {seed}\n{printed}"
    );
}
