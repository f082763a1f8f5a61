//! Real process crashes (issue 8): `mqlab run` on a real backend, killed
//! with SIGKILL at a random moment, checked with `mqlab verify --acked`,
//! restarted on the same directory, again and again.
//!
//! Each lineage is one data directory and one (flush strategy, backend)
//! pair, rotating over all of them; its cycles run `mqlab run --data-dir
//! <same dir> --ack-log-unbuffered --ack-log <cycle log> --topic <cycle
//! topic>` (a topic per cycle keeps keys unique in the index) with a
//! random rate, flush interval and kill moment. After each kill, `mqlab
//! verify --json` gets every acknowledgement that survived earlier cycles
//! plus this cycle's, and:
//! - the page cache survives a process crash, so under sync, group and
//!   async nothing acknowledged may be missing;
//! - under pool, acknowledged messages still in the transient buffer are
//!   lost: exactly the ack-log lines at or past the recovered end may be
//!   missing (acked - committed at the kill), counted apart; every line
//!   below the end must be there;
//! - nothing corrupt, every present message reachable through its queue
//!   and its key.
//!
//! Needs the binary: `MQLAB_BIN=target/release/mqlab` (skips, saying so,
//! without it). Scale: `MQLAB_REL_KILL9_CYCLES` (default 12),
//! `MQLAB_REL_KILL9_WORKERS` (default 2), `MQLAB_REL_KILL9_LINEAGE` cycles
//! per directory (default 8), `MQLAB_REL_KILL9_SEED`. Prints one
//! `RELIABILITY {json}` line. A failing directory is kept and named.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

const FLUSHES: [&str; 4] = ["sync", "group", "async", "pool"];
const BACKENDS: [&str; 3] = ["pwrite", "mmap", "uring"];
const HEADER: &str = "topic,queue_id,queue_offset,phys_offset,key";

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Debug, Default, Serialize)]
struct PerConfig {
    cycles: u64,
    acked: u64,
    lost: u64,
}

#[derive(Debug, Default, Serialize)]
struct Totals {
    suite: &'static str,
    kill9_cycles: u64,
    /// Cycles whose process had acknowledged at least one message.
    cycles_with_acks: u64,
    /// Ack-log lines checked after their kill (each line is checked again
    /// after every later kill of its lineage).
    acked_lines: u64,
    acked_line_checks: u64,
    /// Acknowledged messages lost where nothing may be lost (sync, group,
    /// async; pool below the recovered end). Must be 0.
    kill9_acked_lost: u64,
    /// Pool: acknowledged messages lost from the transient buffer, all at
    /// or past the recovered end (inside acked - committed).
    pool_acked_lost_in_window: u64,
    /// Largest pool loss of one kill, messages.
    pool_max_lost_one_kill: u64,
    corrupt: u64,
    unreachable: u64,
    verify_errors: u64,
    skipped_backends: Vec<String>,
    by_config: BTreeMap<String, PerConfig>,
    failures: Vec<String>,
}

/// One ack-log line we keep: the raw line and its physical offset.
#[derive(Clone)]
struct Line {
    raw: String,
    phys: u64,
}

/// Complete lines of an ack log (a last line cut by the kill is dropped,
/// as `verify` drops it).
fn read_log(path: &Path) -> Vec<Line> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let complete = match text.rfind('\n') {
        Some(k) => &text[..=k],
        None => "",
    };
    complete
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| {
            let phys = l.split(',').nth(3)?.parse().ok()?;
            Some(Line {
                raw: l.to_string(),
                phys,
            })
        })
        .collect()
}

fn available_backends(t: &Mutex<Totals>) -> Vec<&'static str> {
    let mut out = Vec::new();
    for b in BACKENDS {
        if b == "uring" {
            // The same probe the engine runs.
            if let Err(e) = mqlab_engine::BackendKind::Uring.env() {
                t.lock()
                    .unwrap()
                    .skipped_backends
                    .push(format!("uring: {e}"));
                continue;
            }
        }
        out.push(b);
    }
    out
}

/// Runs one lineage of `cycles` kills on a fresh directory.
fn lineage(bin: &str, flush: &str, backend: &str, cycles: u64, seed: u64, t: &Mutex<Totals>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let work = tempfile::Builder::new()
        .prefix("mqlab-kill9-")
        .tempdir()
        .unwrap();
    let dir = work.path().join("data");
    let label = format!("{flush}/{backend}");
    let mut survivors: Vec<Line> = Vec::new();
    for c in 0..cycles {
        let ack = work.path().join(format!("ack-{c}.csv"));
        let out = work.path().join(format!("out-{c}"));
        let rate = rng.random_range(500..8000u32);
        let interval = rng.random_range(5..300u32);
        let kill_ms = rng.random_range(150..1000u64);
        let mut cmd = Command::new(bin);
        cmd.args(["run", "--no-baseline", "--small-files", "--warmup", "0"])
            .args(["--duration", "60", "--producers", "2"])
            .args(["--flush", flush, "--backend", backend])
            .args(["--msg-size", &rng.random_range(16..2000u32).to_string()])
            .args(["--rate", &rate.to_string()])
            .args(["--flush-interval-ms", &interval.to_string()])
            .args(["--topic", &format!("k9c{c}")])
            .arg("--data-dir")
            .arg(&dir)
            .arg("--out")
            .arg(&out)
            .arg("--ack-log")
            .arg(&ack)
            .arg("--ack-log-unbuffered")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().unwrap();
        std::thread::sleep(Duration::from_millis(kill_ms));
        let early_exit = child.try_wait().unwrap();
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let new = read_log(&ack);
        {
            let mut t = t.lock().unwrap();
            t.kill9_cycles += 1;
            t.by_config.entry(label.clone()).or_default().cycles += 1;
            if let Some(status) = early_exit {
                t.failures.push(format!(
                    "{label} cycle {c}: mqlab run exited before the kill: {status}"
                ));
                return;
            }
        }
        // The surviving acks of earlier cycles, then this cycle's.
        let combined = work.path().join("acked.csv");
        let mut text = String::from(HEADER);
        text.push('\n');
        for l in survivors.iter().chain(new.iter()) {
            text.push_str(&l.raw);
            text.push('\n');
        }
        std::fs::write(&combined, text).unwrap();
        let v = Command::new(bin)
            .args(["verify", "--json", "--data-dir"])
            .arg(&dir)
            .arg("--acked")
            .arg(&combined)
            .output()
            .unwrap();
        let report: Option<serde_json::Value> = serde_json::from_slice(&v.stdout).ok();
        let mut t = t.lock().unwrap();
        let Some(report) = report else {
            if new.is_empty() && survivors.is_empty() {
                // Killed before the store existed: nothing to check.
                continue;
            }
            t.verify_errors += 1;
            t.failures.push(format!(
                "{label} cycle {c}: verify gave no report: {}",
                String::from_utf8_lossy(&v.stderr)
            ));
            let _ = work.keep();
            return;
        };
        let end = report["recovery"]["end_offset"].as_u64().unwrap_or(0);
        let acked = &report["acked"];
        let missing = acked["missing"].as_u64().unwrap_or(0);
        let corrupt = acked["corrupt"].as_u64().unwrap_or(0)
            + report["corruption"]
                .as_array()
                .map_or(0, |a| a.len() as u64);
        let unreachable = acked["unreachable_via_queue"].as_u64().unwrap_or(0)
            + acked["unreachable_via_index"].as_u64().unwrap_or(0);
        let past_end = new.iter().filter(|l| l.phys >= end).count() as u64
            + survivors.iter().filter(|l| l.phys >= end).count() as u64;
        t.acked_lines += new.len() as u64;
        t.acked_line_checks += (new.len() + survivors.len()) as u64;
        if !new.is_empty() {
            t.cycles_with_acks += 1;
        }
        t.by_config.entry(label.clone()).or_default().acked += new.len() as u64;
        t.corrupt += corrupt;
        t.unreachable += unreachable;
        let mut bad = Vec::new();
        if flush == "pool" {
            // Only the transient buffer may be lost: lines past the end.
            let survivors_past_end = survivors.iter().any(|l| l.phys >= end);
            if missing != past_end || survivors_past_end {
                t.kill9_acked_lost += missing.saturating_sub(past_end).max(1);
                bad.push(format!(
                    "pool: {missing} missing, {past_end} at or past the recovered end {end}"
                ));
            } else {
                t.pool_acked_lost_in_window += missing;
                t.pool_max_lost_one_kill = t.pool_max_lost_one_kill.max(missing);
                t.by_config.entry(label.clone()).or_default().lost += missing;
            }
        } else if missing > 0 || past_end > 0 {
            t.kill9_acked_lost += missing.max(past_end);
            bad.push(format!(
                "{missing} acknowledged messages missing (end {end})"
            ));
        }
        if corrupt > 0 {
            bad.push(format!("corruption: {}", report["corruption"]));
        }
        if unreachable > 0 {
            bad.push(format!("unreachable: {}", acked["examples"]));
        }
        if !bad.is_empty() {
            let kept = work.keep();
            t.failures.push(format!(
                "{label} cycle {c} (seed {seed}, killed at {kill_ms} ms): {} (directory kept: {})",
                bad.join("; "),
                kept.display()
            ));
            return;
        }
        drop(t);
        survivors.extend(new.into_iter().filter(|l| l.phys < end));
    }
}

#[test]
fn kill9_loop() {
    let Ok(bin) = std::env::var("MQLAB_BIN") else {
        eprintln!(
            "skipping kill9_loop: MQLAB_BIN is not set (scripts/reliability.sh builds mqlab in release and sets it)"
        );
        return;
    };
    let total = env_u64("MQLAB_REL_KILL9_CYCLES", 12);
    let workers = env_u64("MQLAB_REL_KILL9_WORKERS", 2).max(1);
    let per = env_u64("MQLAB_REL_KILL9_LINEAGE", 8).max(1);
    let seed = env_u64("MQLAB_REL_KILL9_SEED", 1);
    let t = Arc::new(Mutex::new(Totals {
        suite: "kill9",
        ..Totals::default()
    }));
    let backends = available_backends(&t);
    let configs: Vec<(&str, &str)> = backends
        .iter()
        .flat_map(|b| FLUSHES.iter().map(move |f| (*f, *b)))
        .collect();
    // Lineages, round-robin over the configurations.
    let mut jobs = Vec::new();
    let mut left = total;
    let mut k = 0u64;
    while left > 0 {
        let n = per.min(left);
        let (f, b) = configs[(k % configs.len() as u64) as usize];
        jobs.push((f, b, n, seed * 1_000_003 + k));
        left -= n;
        k += 1;
    }
    let jobs = Arc::new(Mutex::new(jobs));
    let started = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|_| {
            let (jobs, t, bin) = (jobs.clone(), t.clone(), bin.clone());
            std::thread::spawn(move || loop {
                let Some((f, b, n, s)) = jobs.lock().unwrap().pop() else {
                    break;
                };
                lineage(&bin, f, b, n, s, &t);
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let t = t.lock().unwrap();
    eprintln!(
        "RELIABILITY {} ({:.0}s)",
        serde_json::to_string(&*t).unwrap(),
        started.elapsed().as_secs_f64()
    );
    assert!(t.failures.is_empty(), "{:#?}", t.failures);
}
