//! `mqlab crash`: proves the loss window on the simulated disk.
//!
//! Crash i (seed = --seed + i) runs its own workload on a fresh
//! `io::sim::SimEnv`, crashes it at a moment drawn from the seed, and then:
//! 1. marks the crash instant just before crashing the disk (acks returned
//!    after it are not counted: the producer would never have seen them,
//!    and puts failing on the dead disk are not store failures), stops and
//!    joins the senders;
//! 2. samples the loss window at that instant from the store's offsets and
//!    the loss tracker: acked - flushed for power loss, acked - committed
//!    for a process crash. The disk is dead, so no offset can advance past
//!    what really became durable;
//! 3. recovers (`Store::open_with_env` on the crashed disk), looks every
//!    acknowledged message up by its physical offset and compares topic,
//!    queue, queue offset, key and body byte for byte, checks survivors are
//!    reachable through their consume queue, and scans the whole log.
//!
//! A crash passes when no message is corrupt, every lost message lies in
//! the window (its end is past the durable offset at the crash instant),
//! the count lost is at most the window's, and everything is reachable.
//! Any failure prints the seed and the one command that replays it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use mqlab_engine::io::sim::SimEnv;
use mqlab_engine::{Env, Error as EngineError, FlushKind, Store, StoreConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::recorder::{OffsetsJson, Window};
use crate::spec::Workload;
use crate::table::{render_table, round3};
use crate::util;
use crate::workload::{expected_body, key_for, RunOptions, Running};

/// What a crash takes away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CrashMode {
    /// Power loss: only durable (fdatasync'ed) bytes survive; window =
    /// acked - flushed.
    Power,
    /// Process crash: the page cache survives; window = acked - committed.
    Process,
}

/// Where the simulated store lives (a path on the simulated disk only).
const SIM_DIR: &str = "/mqlab-sim/store";

/// Settings of one crash.
#[derive(Debug, Clone)]
pub struct CrashParams {
    /// Flush strategy.
    pub flush: FlushKind,
    /// Power or process.
    pub mode: CrashMode,
    /// Producer threads.
    pub producers: usize,
    /// Body size.
    pub msg_size: usize,
    /// Queues.
    pub queues: u32,
    /// Flusher period, ms.
    pub flush_interval_ms: u64,
    /// Crash moment window, ms after start.
    pub min_ms: u64,
    /// See `min_ms`.
    pub max_ms: u64,
    /// Torn writes on power loss.
    pub torn: bool,
}

impl CrashParams {
    /// The command that replays crash `seed` alone.
    pub fn replay(&self, seed: u64) -> String {
        format!(
            "mqlab crash --flush {} --mode {} --seed {seed} --crashes 1 --producers {} --msg-size {} \
             --queues {} --flush-interval-ms {} --min-ms {} --max-ms {} --torn {}",
            self.flush.name(),
            match self.mode {
                CrashMode::Power => "power",
                CrashMode::Process => "process",
            },
            self.producers,
            self.msg_size,
            self.queues,
            self.flush_interval_ms,
            self.min_ms,
            self.max_ms,
            self.torn
        )
    }

    /// Rejects settings that cannot run, before anything is created.
    pub fn validate(&self) -> Result<()> {
        if self.producers == 0 || self.producers > 1024 {
            anyhow::bail!("--producers must be between 1 and 1024");
        }
        if self.queues == 0 {
            anyhow::bail!("--queues must be at least 1");
        }
        if self.flush_interval_ms == 0 {
            anyhow::bail!("--flush-interval-ms must be > 0");
        }
        let max = self.store_config().max_message_bytes as usize;
        if self.msg_size < 16 || self.msg_size > max {
            anyhow::bail!(
                "--msg-size {} is outside 16..={max} bytes (the body carries the sender id and \
                 sequence; {max} is the simulated store's maximum message size)",
                self.msg_size
            );
        }
        Ok(())
    }

    fn store_config(&self) -> StoreConfig {
        let mut cfg = StoreConfig::small();
        cfg.flush.kind = self.flush;
        cfg.flush.flush_interval_ms = self.flush_interval_ms;
        cfg.flush.commit_interval_ms = self.flush_interval_ms.clamp(1, 200);
        // After the crash every sync fails; do not wait 5 s for it.
        cfg.flush.sync_flush_timeout_ms = 1_000;
        cfg
    }
}

/// The window sampled at the crash instant.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CrashWindow {
    /// Offsets at the crash.
    pub offsets: OffsetsJson,
    /// acked - flushed.
    pub power: Window,
    /// acked - committed.
    pub process: Window,
    /// The side that applies to this crash's mode.
    pub predicted: Window,
    /// Durable offset for this mode (flushed or committed).
    pub durable_offset: u64,
}

/// One crash's record (crash-<i>.json).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CrashRecord {
    /// Index of the crash.
    pub index: u32,
    /// Its seed.
    pub seed: u64,
    /// Flush strategy.
    pub flush: String,
    /// power or process.
    pub mode: String,
    /// Crash moment, ms after the workload started.
    pub crash_at_ms: u64,
    /// Messages acknowledged before the crash.
    pub acked: u64,
    /// The window at the crash instant.
    pub window: CrashWindow,
    /// Acknowledged messages not found after recovery.
    pub lost_msgs: u64,
    /// Their record bytes.
    pub lost_bytes: u64,
    /// Lost messages whose end was at or before the durable offset: must be 0.
    pub lost_outside_window: u64,
    /// Acknowledged messages found with wrong content or a bad checksum.
    pub corrupt: u64,
    /// Survivors not reachable through their consume queue.
    pub unreachable_via_queue: u64,
    /// Records walked by a full scan of the recovered log.
    pub scanned_records: u64,
    /// Error the full scan stopped at (corruption), if any.
    pub scan_error: Option<String>,
    /// Recovery: abnormal, end offset, truncations, time.
    pub recovery_abnormal: bool,
    /// End of valid data after recovery.
    pub recovery_end_offset: u64,
    /// Truncations recovery did.
    pub recovery_truncations: usize,
    /// Recovery time, ms.
    pub recovery_ms: f64,
    /// Notes (e.g. the old store not stopping in time).
    pub notes: Vec<String>,
    /// Verdict.
    pub ok: bool,
    /// Why not ok.
    pub failures: Vec<String>,
    /// The command that replays this crash.
    pub replay: String,
}

/// crash_summary.json.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CrashSummary {
    /// Command line.
    pub command: String,
    /// Flush strategy.
    pub flush: String,
    /// Mode.
    pub mode: String,
    /// First seed.
    pub seed: u64,
    /// Crashes run.
    pub crashes: u32,
    /// Crashes that passed.
    pub passed: u32,
    /// Acked messages over all crashes.
    pub acked: u64,
    /// Lost over all crashes.
    pub lost_msgs: u64,
    /// Largest loss of one crash.
    pub max_lost_msgs: u64,
    /// Largest predicted window of one crash, messages.
    pub max_window_msgs: u64,
    /// Largest predicted window age, ms.
    pub max_window_ms: f64,
    /// Corrupt over all crashes.
    pub corrupt: u64,
    /// Lost outside the window over all crashes.
    pub lost_outside_window: u64,
    /// Seeds of failed crashes.
    pub failed_seeds: Vec<u64>,
}

/// Drops `store` on a helper thread, giving up (and leaking it) after
/// `timeout`: a store whose disk died must not hang the experiment.
fn drop_with_timeout(store: Store, timeout: Duration) -> bool {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(store);
        let _ = tx.send(());
    });
    rx.recv_timeout(timeout).is_ok()
}

/// Runs crash `index` with `seed`.
pub fn one_crash(p: &CrashParams, index: u32, seed: u64) -> Result<CrashRecord> {
    let dir = PathBuf::from(SIM_DIR);
    let cfg = p.store_config();
    let env = SimEnv::new(seed);
    let store = Arc::new(
        Store::open_with_env(Arc::new(env.clone()) as Arc<dyn Env>, &dir, cfg.clone())
            .context("opening the store on the simulated disk")?,
    );
    let w = Workload {
        name: format!("crash-{index}"),
        flush: p.flush,
        backend: mqlab_engine::BackendKind::Pwrite,
        producers: p.producers,
        inflight: 1,
        msg_size: p.msg_size,
        rate: 0.0,
        duration_secs: 3600.0,
        messages: None,
        warmup_secs: 0.0,
        queues: p.queues,
        keys: true,
        topic: "mqlab".into(),
        flush_interval_ms: p.flush_interval_ms,
        group_batch_writes: cfg.flush.group_batch_writes,
        segment_bytes: cfg.segment_bytes,
        warm_segments: cfg.warm_segments,
        sample_ms: 2,
        timeseries_ms: 1000,
        burst_on_ms: None,
        burst_off_ms: None,
        small_files: true,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let crash_at_ms = rng.random_range(p.min_ms..=p.max_ms);
    let torn_seed: u64 = rng.random();
    let crashed = Arc::new(AtomicBool::new(false));
    let running = Running::start(
        store.clone(),
        &w,
        RunOptions {
            keep_acks: true,
            crashed: Some(crashed.clone()),
            until_stopped: true,
            ..RunOptions::default()
        },
    );
    let crash_at = running.started() + Duration::from_millis(crash_at_ms);
    while Instant::now() < crash_at && !util::stopped() {
        std::thread::sleep((crash_at - Instant::now()).min(Duration::from_millis(5)));
    }
    // The crash instant. The senders are told first: a put that returns
    // after this point is not counted (the producer of a crashed machine
    // never sees its ack), and the puts that fail because the disk is gone
    // are the crash itself, not a store failure worth a warning (the
    // workload warns about 1000 failed puts in a row, and a store that
    // refuses writes after the crash fails that many in microseconds
    // while the crash copies the disk image).
    crashed.store(true, Ordering::SeqCst);
    let recovered_env = match p.mode {
        CrashMode::Power => env.crash(p.torn, torn_seed),
        CrashMode::Process => env.process_crash(),
    };
    let crash_instant = Instant::now();
    let tracker = running.tracker().clone();
    running.stop();
    let outcome = running.finish();
    // Sample after the senders are joined: every counted ack is in the
    // tracker, and the dead disk cannot make anything more durable.
    let off = store.offsets();
    let sample = tracker.sample(off, crash_instant);
    let durable_offset = match p.mode {
        CrashMode::Power => off.flushed,
        CrashMode::Process => off.committed,
    };
    let predicted = match p.mode {
        CrashMode::Power => sample.power,
        CrashMode::Process => sample.process,
    };
    let mut notes = Vec::new();
    match Arc::try_unwrap(store) {
        Ok(s) => {
            if !drop_with_timeout(s, Duration::from_secs(10)) {
                notes.push("the crashed store did not stop within 10 s (leaked)".into());
            }
        }
        Err(_) => notes.push("the crashed store was still shared (leaked)".into()),
    }

    let t = Instant::now();
    let store = Store::open_with_env(Arc::new(recovered_env) as Arc<dyn Env>, &dir, cfg.clone())
        .context("recovering the crashed store")?;
    let report = store.recovery_report().clone();
    let recovery_ms = t.elapsed().as_secs_f64() * 1000.0;
    if !store.wait_dispatched(report.end_offset, Duration::from_secs(30)) {
        notes.push("dispatch did not reach the recovered end in 30 s".into());
    }

    let mut acks = outcome.acks;
    acks.sort_by_key(|a| a.phys);
    let (mut lost, mut lost_bytes, mut outside, mut corrupt, mut unreachable) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut failures = Vec::new();
    let fail = |failures: &mut Vec<String>, s: String| {
        if failures.len() < 10 {
            failures.push(s);
        }
    };
    for a in &acks {
        let found = store.get(a.phys);
        let lost_here = match &found {
            Ok(m) => {
                let key = key_for(a.slot, a.seq);
                let same = m.topic == w.topic
                    && m.queue_id == a.queue_id
                    && m.queue_offset == a.queue_offset
                    && m.keys().any(|k| k == key)
                    && m.body == expected_body(a.slot, a.seq, w.msg_size);
                if !same {
                    corrupt += 1;
                    fail(
                        &mut failures,
                        format!(
                            "message {key} at {} comes back with different content",
                            a.phys
                        ),
                    );
                    continue;
                }
                match store.get_from_queue(&w.topic, a.queue_id, a.queue_offset, 1) {
                    Ok(v) if v.first().is_some_and(|q| q.phys_offset == a.phys) => {}
                    other => {
                        unreachable += 1;
                        let what = match other {
                            Ok(v) => match v.first() {
                                Some(q) => format!("its unit points at {}", q.phys_offset),
                                None => "no unit".to_string(),
                            },
                            Err(e) => e.to_string(),
                        };
                        fail(
                            &mut failures,
                            format!(
                                "message {key} at {} not reachable through queue {} offset {}: {what}",
                                a.phys, a.queue_id, a.queue_offset
                            ),
                        );
                    }
                }
                false
            }
            Err(EngineError::ChecksumMismatch { .. } | EngineError::Corrupt { .. })
                if a.end() <= report.end_offset =>
            {
                corrupt += 1;
                fail(
                    &mut failures,
                    format!(
                        "message at {} inside the recovered log fails its checksum",
                        a.phys
                    ),
                );
                continue;
            }
            Err(_) => true,
        };
        if lost_here {
            lost += 1;
            lost_bytes += a.size as u64;
            if a.end() <= durable_offset {
                outside += 1;
                fail(
                    &mut failures,
                    format!(
                        "acked message {} (end {}) lost although the durable offset was {durable_offset}",
                        key_for(a.slot, a.seq),
                        a.end()
                    ),
                );
            }
        }
    }
    let mut scanned = 0u64;
    let mut scan_error = None;
    store.scan(store.min_offset(), &mut |r| match r {
        Ok(_) => {
            scanned += 1;
            true
        }
        Err(e) => {
            scan_error = Some(e.to_string());
            false
        }
    })?;
    if let Some(e) = &scan_error {
        fail(
            &mut failures,
            format!("full scan of the recovered log: {e}"),
        );
    }
    if lost > predicted.msgs {
        fail(
            &mut failures,
            format!(
                "lost {lost} messages, more than the window of {}",
                predicted.msgs
            ),
        );
    }
    if let Err(e) = store.shutdown() {
        fail(
            &mut failures,
            format!("clean shutdown after recovery failed: {e}"),
        );
    }
    let ok = failures.is_empty() && corrupt == 0 && outside == 0 && unreachable == 0;
    Ok(CrashRecord {
        index,
        seed,
        flush: p.flush.name().into(),
        mode: match p.mode {
            CrashMode::Power => "power".into(),
            CrashMode::Process => "process".into(),
        },
        crash_at_ms,
        acked: acks.len() as u64,
        window: CrashWindow {
            offsets: off.into(),
            power: sample.power,
            process: sample.process,
            predicted,
            durable_offset,
        },
        lost_msgs: lost,
        lost_bytes,
        lost_outside_window: outside,
        corrupt,
        unreachable_via_queue: unreachable,
        scanned_records: scanned,
        scan_error,
        recovery_abnormal: report.abnormal,
        recovery_end_offset: report.end_offset,
        recovery_truncations: report.truncated.len(),
        recovery_ms: round3(recovery_ms),
        notes,
        ok,
        failures,
        replay: p.replay(seed),
    })
}

/// Default output folder (claimed with `OutDir::unique`, which adds a
/// suffix when it exists).
fn default_out(p: &CrashParams) -> PathBuf {
    PathBuf::from("results").join(format!(
        "{}-crash-{}-{}",
        util::timestamp(),
        p.flush.name(),
        match p.mode {
            CrashMode::Power => "power",
            CrashMode::Process => "process",
        }
    ))
}

/// The table of crashes.
pub fn table(records: &[CrashRecord]) -> String {
    let mut rows = vec![vec![
        "#".to_string(),
        "seed".into(),
        "at ms".into(),
        "acked".into(),
        "window msgs".into(),
        "window ms".into(),
        "lost".into(),
        "outside window".into(),
        "corrupt".into(),
        "verdict".into(),
    ]];
    for r in records {
        rows.push(vec![
            r.index.to_string(),
            r.seed.to_string(),
            r.crash_at_ms.to_string(),
            r.acked.to_string(),
            r.window.predicted.msgs.to_string(),
            format!("{:.1}", r.window.predicted.age_ms),
            r.lost_msgs.to_string(),
            r.lost_outside_window.to_string(),
            r.corrupt.to_string(),
            if r.ok { "ok" } else { "FAIL" }.into(),
        ]);
    }
    render_table(&rows)
}

/// Runs every crash and writes the results into `out`.
pub fn run_crashes(
    p: &CrashParams,
    seed: u64,
    crashes: u32,
    out: &Path,
) -> Result<(Vec<CrashRecord>, CrashSummary)> {
    std::fs::create_dir_all(out).with_context(|| format!("create directory {}", out.display()))?;
    util::write_command(out)?;
    let mut records = Vec::new();
    for i in 0..crashes {
        if util::stopped() {
            break;
        }
        let s = seed.wrapping_add(i as u64);
        let r = one_crash(p, i, s).with_context(|| format!("crash {i} (seed {s})"))?;
        eprintln!(
            "mqlab: crash {i} seed {s} at {} ms: acked {}, window {} msgs, lost {}, corrupt {} -> {}",
            r.crash_at_ms,
            r.acked,
            r.window.predicted.msgs,
            r.lost_msgs,
            r.corrupt,
            if r.ok { "ok" } else { "FAIL" }
        );
        util::write_json(&out.join(format!("crash-{i}.json")), &r)?;
        records.push(r);
    }
    let summary = CrashSummary {
        command: util::command_line(),
        flush: p.flush.name().into(),
        mode: match p.mode {
            CrashMode::Power => "power".into(),
            CrashMode::Process => "process".into(),
        },
        seed,
        crashes: records.len() as u32,
        passed: records.iter().filter(|r| r.ok).count() as u32,
        acked: records.iter().map(|r| r.acked).sum(),
        lost_msgs: records.iter().map(|r| r.lost_msgs).sum(),
        max_lost_msgs: records.iter().map(|r| r.lost_msgs).max().unwrap_or(0),
        max_window_msgs: records
            .iter()
            .map(|r| r.window.predicted.msgs)
            .max()
            .unwrap_or(0),
        max_window_ms: records
            .iter()
            .map(|r| r.window.predicted.age_ms)
            .fold(0.0, f64::max),
        corrupt: records.iter().map(|r| r.corrupt).sum(),
        lost_outside_window: records.iter().map(|r| r.lost_outside_window).sum(),
        failed_seeds: records.iter().filter(|r| !r.ok).map(|r| r.seed).collect(),
    };
    util::write_json(&out.join("crashes.json"), &records)?;
    util::write_json(&out.join("crash_summary.json"), &summary)?;
    Ok((records, summary))
}

/// `mqlab crash`: `crashes` crashes from `seed` on, results in `out` (or a
/// fresh results folder); exits 1 when any crash failed.
pub fn cmd_crash(p: &CrashParams, seed: u64, crashes: u32, out: Option<&Path>) -> Result<()> {
    p.validate()?;
    let out_dir = match out {
        Some(o) => util::OutDir::given(o, "output folder")?,
        None => util::OutDir::unique(&default_out(p), "results folder")?,
    };
    let (records, summary) = run_crashes(p, seed, crashes, out_dir.path())?;
    // Failed crashes are a result (with their replay commands), not a
    // failure to run: the folder stays.
    let out = out_dir.keep();
    print!("{}", table(&records));
    println!(
        "{} / {} crashes ok; {} acked, {} lost (max {} in one crash, largest window {} msgs / {:.1} ms), {} corrupt, {} lost outside the window",
        summary.passed,
        summary.crashes,
        summary.acked,
        summary.lost_msgs,
        summary.max_lost_msgs,
        summary.max_window_msgs,
        summary.max_window_ms,
        summary.corrupt,
        summary.lost_outside_window
    );
    println!("results: {}", out.display());
    let failed: Vec<&CrashRecord> = records.iter().filter(|r| !r.ok).collect();
    if !failed.is_empty() {
        for r in &failed {
            println!("FAILED crash {} (seed {}):", r.index, r.seed);
            for f in &r.failures {
                println!("  {f}");
            }
            println!("  replay: {}", r.replay);
        }
        std::process::exit(1);
    }
    Ok(())
}
