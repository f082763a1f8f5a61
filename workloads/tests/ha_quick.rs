//! `mqlab ha --quick` (issue 14): ASYNC_MASTER and SYNC_MASTER, group
//! flush, one slave whose HA link goes through the fault proxy with a
//! delay (so the slave lags), three seeded master kills each. A
//! SYNC_MASTER loses no acknowledged message; an ASYNC_MASTER loses no
//! acknowledged message its slave had reported written at the sample
//! before the kill (loss_over_lag 0). With --failover (a controller, the
//! slave elected, the producer following the route): the same, a
//! failover time, and nothing the new master acknowledged lost. Bounded
//! to 60 s each; a failure prints the seed (MQLAB_HA_SEED sets it).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn seed() -> u64 {
    std::env::var("MQLAB_HA_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(14)
}

/// Runs `mqlab ha --quick ARGS` (60 s at most): summary.json, what it
/// printed, the output folder.
fn quick(dir: &Path, seed: u64, args: &[&str]) -> (serde_json::Value, String) {
    let out = dir.join("ha");
    let log = dir.join("ha.log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mqlab"));
    cmd.args(["ha", "--quick", "--seed"])
        .arg(seed.to_string())
        .args(args)
        .arg("--out")
        .arg(&out);
    let (status, printed) = common::run_logged(
        cmd,
        &log,
        Stdio::inherit(),
        Duration::from_secs(60),
        "mqlab ha --quick",
        seed,
    );
    assert!(status.success(), "seed {seed}: {status}\n{printed}");
    let s = common::json(&out.join("summary.json"));
    (s, printed)
}

/// The checks every mode passes; returns the modes.
fn check_modes(
    s: &serde_json::Value,
    seed: u64,
    kills: u64,
    printed: &str,
) -> Vec<serde_json::Value> {
    let modes = s["modes"].as_array().unwrap();
    assert_eq!(modes.len(), 2, "seed {seed}: {s}");
    for m in modes {
        let name = m["name"].as_str().unwrap();
        let get = |k: &str| m[k].as_u64().unwrap_or_else(|| panic!("{name}: no {k}"));
        assert_eq!(get("failovers"), kills, "seed {seed}: {name}\n{printed}");
        assert!(
            get("acked") > 0,
            "seed {seed}: {name} acked nothing\n{printed}"
        );
        assert_eq!(
            get("loss_over_lag"),
            0,
            "seed {seed}: {name} lost past the lag\n{printed}"
        );
        assert_eq!(get("duplicated"), 0, "seed {seed}: {name}\n{printed}");
        assert_eq!(get("out_of_order"), 0, "seed {seed}: {name}\n{printed}");
        assert!(m["failover_ms"]["reason"].is_string());
        if m["role"] == "SYNC_MASTER" {
            assert_eq!(
                get("acked_lost"),
                0,
                "seed {seed}: SYNC_MASTER lost acknowledged messages\n{printed}"
            );
        }
    }
    modes.clone()
}

#[test]
fn quick_ha_sync_loses_nothing_async_loses_at_most_the_lag() {
    let seed = seed();
    let dir = tempfile::tempdir().unwrap();
    let (s, printed) = quick(dir.path(), seed, &["--fault", "delay:10"]);
    check_modes(&s, seed, 3, &printed);
    let out = dir.path().join("ha");
    for f in [
        "trials.csv",
        "lag.csv",
        "ha_loss_vs_throughput.svg",
        "ha_loss_vs_lag.png",
    ] {
        assert!(out.join(f).is_file(), "no {f}");
    }
    let acks = out.join("acks/SYNC_MASTER_group_1-slave/kill-0.csv");
    let first = std::fs::read_to_string(acks).unwrap();
    assert!(first.starts_with("topic,queue_id,queue_offset,msg_id,key\n"));
}

/// The controller's heartbeat timeout is 2 s here, not the experiment's
/// 1 s: on a loaded CI machine a 1 s timeout can depose a live master
/// (results/ha/README.md: the one SYNC_MASTER failover kill that lost
/// acknowledged messages had its slave elected before the SIGKILL).
#[test]
fn quick_ha_with_controller_failover() {
    let seed = seed();
    let dir = tempfile::tempdir().unwrap();
    let (s, printed) = quick(
        dir.path(),
        seed,
        &[
            "--failover",
            "--kills",
            "1",
            "--heartbeat-timeout-ms",
            "2000",
        ],
    );
    for m in check_modes(&s, seed, 1, &printed) {
        let name = m["name"].as_str().unwrap();
        let f = &m["failover_ms"];
        let p50 = f["p50"].as_f64();
        assert!(
            p50.is_some_and(|v| v > 0.0 && v < 30_000.0),
            "seed {seed}: {name} failover {f}\n{printed}"
        );
        assert!(
            m["acked_after_failover"].as_u64().unwrap() > 0,
            "seed {seed}: {name}\n{printed}"
        );
        assert_eq!(
            m["lost_after_failover"].as_u64(),
            Some(0),
            "seed {seed}: {name}\n{printed}"
        );
    }
}
