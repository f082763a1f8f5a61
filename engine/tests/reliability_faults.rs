//! Disk faults at every point of a workload (issue 8), and a real full
//! disk.
//!
//! On the simulator: for each flush strategy, a fault-free run of the
//! workload counts its writes, syncs and bytes; then EIO on the Nth write,
//! EIO on the Nth fsync, and ENOSPC after N bytes are injected for every N
//! up to those counts (`MQLAB_REL_FAULT_STRIDE=1`; CI takes every third
//! point of a shorter workload). At every point:
//! - once a put is refused, it and every later put get
//!   SERVICE_NOT_AVAILABLE with a detail naming the fault, the store says
//!   it is poisoned, and nothing more is appended;
//! - what was acknowledged and committed stays readable on the poisoned
//!   store;
//! - after a power loss and recovery on a healthy disk, every acknowledged
//!   durable message (all of them under sync and group, those below the
//!   flushed offset under async and pool) is there, exactly as put,
//!   through `get`, its consume queue and its key; the log scans clean;
//!   the store takes puts again.
//!
//! On a real file system (`real_enospc_*`): a small tmpfs named by
//! `MQLAB_REL_TMPFS` (scripts/reliability.sh mounts one; the tests skip,
//! saying so, without it). Each backend fills it with acknowledged puts
//! until the store refuses one; in a child process, because an mmap store
//! that touches an unallocated page of a full file system dies of SIGBUS.
//!
//! Totals come out as `RELIABILITY {json}` lines on stderr.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{message, number_of, same_as_put, store_thread_panics};
use mqlab_engine::io::sim::{FaultPlan, SimEnv};
use mqlab_engine::{BackendKind, FlushKind, Message, PutStatus, Store, StoreConfig};
use serde::Serialize;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn root() -> PathBuf {
    PathBuf::from("/faults/reliability")
}

/// Quiet checkpointer (syncs come from the log), short group timeout.
fn config(flush: FlushKind) -> StoreConfig {
    let mut cfg = common::test_config(flush);
    cfg.checkpoint_interval_ms = 60_000;
    cfg.flush.sync_flush_timeout_ms = 300;
    cfg
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    WriteEio(u64),
    SyncEio(u64),
    Capacity(u64),
}

impl Fault {
    fn plan(self) -> FaultPlan {
        let mut p = FaultPlan {
            seed: 1,
            ..FaultPlan::default()
        };
        match self {
            Fault::WriteEio(n) => p.write_eio_at = Some(n),
            Fault::SyncEio(n) => p.sync_eio_at = Some(n),
            Fault::Capacity(n) => p.capacity_bytes = Some(n),
        }
        p
    }
}

#[derive(Debug, Default, Serialize)]
struct Totals {
    suite: &'static str,
    flush: String,
    workload_puts: u64,
    fault_points: u64,
    write_eio_points: u64,
    sync_eio_points: u64,
    enospc_points: u64,
    /// Points where the fault hit during the workload (others hit only
    /// the background threads, or nothing).
    refused: u64,
    open_failed_cleanly: u64,
    acked: u64,
    /// Acknowledged durable messages lost (must be 0).
    acked_lost: u64,
    corrupt_reads: u64,
    failed_recoveries: u64,
    panics: u64,
    failures: Vec<String>,
}

#[derive(Debug, Clone, Copy)]
struct Acked {
    i: u64,
    phys: u64,
    end: u64,
    queue_offset: u64,
}

/// Puts the workload; counts the disk's writes, syncs and bytes.
fn calibrate(flush: FlushKind, puts: u64) -> (u64, u64, u64) {
    let sim = SimEnv::new(1);
    let store = Store::open_with_env(Arc::new(sim.clone()), root(), config(flush)).unwrap();
    for i in 0..puts {
        assert_eq!(store.put(&message(i)).status, PutStatus::PutOk);
        if !flush.acks_durable() {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    std::thread::sleep(Duration::from_millis(20));
    let s = sim.stats();
    drop(store);
    (s.writes, s.syncs, s.bytes_written)
}

/// One fault point; `Err` describes a violated promise.
fn point(flush: FlushKind, fault: Fault, puts: u64, t: &mut Totals) -> Result<(), String> {
    let sim = SimEnv::with_faults(fault.plan());
    let cfg = config(flush);
    let store = match Store::open_with_env(Arc::new(sim.clone()), root(), cfg.clone()) {
        Ok(s) => Some(s),
        Err(e) => {
            if !e.to_string().contains("simulated") {
                return Err(format!("open failed without naming the fault: {e}"));
            }
            t.open_failed_cleanly += 1;
            None
        }
    };
    let mut acked: Vec<Acked> = Vec::new();
    let mut flushed = 0;
    if let Some(store) = &store {
        let mut refused = false;
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut i = 0u64;
        // The workload, then more puts (slowly) until the fault hits or a
        // bound passes: some points are reachable only by background
        // threads.
        while !refused && i < puts * 2 && Instant::now() < deadline {
            let r = store.put(&message(i));
            match r.status {
                PutStatus::PutOk => {
                    let o = r.offsets.ok_or("PUT_OK without offsets")?;
                    acked.push(Acked {
                        i,
                        phys: o.phys_offset,
                        end: o.phys_offset + o.wrote_bytes as u64,
                        queue_offset: o.queue_offset,
                    });
                }
                PutStatus::ServiceNotAvailable => {
                    let detail = r.detail.clone().unwrap_or_default();
                    if !detail.contains("simulated") {
                        return Err(format!(
                            "put {i} refused without naming the fault: {detail:?}"
                        ));
                    }
                    let why = store
                        .poisoned()
                        .ok_or_else(|| format!("put {i} refused, store not poisoned"))?;
                    if !why.contains("simulated") {
                        return Err(format!("poisoned by {why:?}"));
                    }
                    refused = true;
                }
                PutStatus::FlushDiskTimeout => {}
                other => return Err(format!("put {i}: {other:?} {:?}", r.detail)),
            }
            i += 1;
            if i >= puts || !flush.acks_durable() {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        if refused {
            t.refused += 1;
            for k in 0..3 {
                let r = store.put(&message(1_000_000 + k));
                if r.status != PutStatus::ServiceNotAvailable || r.offsets.is_some() {
                    return Err(format!("a poisoned store took a put: {r:?}"));
                }
            }
        }
        let committed = store.offsets().committed;
        for a in acked.iter().filter(|a| a.end <= committed) {
            let m = store
                .get(a.phys)
                .map_err(|e| format!("get {} from the poisoned store: {e}", a.i))?;
            same_as_put(&m, &message(a.i)).inspect_err(|_| t.corrupt_reads += 1)?;
        }
        let off = store.offsets();
        if flush.acks_durable() && off.acked > off.flushed {
            return Err(format!("acked past flushed: {off:?}"));
        }
        flushed = off.flushed;
    }
    t.acked += acked.len() as u64;
    let crashed = sim.crash(false, 7);
    drop(store);
    let store = Store::open_with_env(Arc::new(crashed), root(), cfg).map_err(|e| {
        t.failed_recoveries += 1;
        format!("recovery on a healthy disk: {e}")
    })?;
    let must = |a: &Acked| flush.acks_durable() || a.end <= flushed;
    for a in &acked {
        match store.get(a.phys) {
            Ok(m) => {
                same_as_put(&m, &message(a.i)).inspect_err(|_| t.corrupt_reads += 1)?;
                if m.queue_offset != a.queue_offset {
                    return Err(format!("{} moved queue offset", a.i));
                }
            }
            Err(e) if must(a) => {
                t.acked_lost += 1;
                return Err(format!("acknowledged durable put {} lost: {e}", a.i));
            }
            Err(_) => {}
        }
    }
    let end = store.recovery_report().end_offset;
    if !store.wait_dispatched(end, Duration::from_secs(10)) {
        return Err("dispatch stuck after recovery".into());
    }
    for a in acked.iter().filter(|a| must(a)) {
        let want = message(a.i);
        let q = store
            .get_from_queue(&want.topic, want.queue_id, a.queue_offset, 1)
            .map_err(|e| format!("queue read of {}: {e}", a.i))?;
        if q.first().map(|m| m.phys_offset) != Some(a.phys) {
            return Err(format!("{} not reachable through its queue", a.i));
        }
        let hits = store
            .query_by_key(&want.topic, &format!("key-{}", a.i), 0, i64::MAX)
            .map_err(|e| e.to_string())?;
        if hits.len() != 1 {
            return Err(format!("key-{} found {} times", a.i, hits.len()));
        }
    }
    let mut bad = None;
    store
        .scan(store.min_offset(), &mut |m| match m {
            Ok(m) => match number_of(m).map(|i| same_as_put(m, &message(i))) {
                Some(Ok(())) => true,
                other => {
                    bad = Some(format!("{other:?}"));
                    false
                }
            },
            Err(e) => {
                bad = Some(e.to_string());
                false
            }
        })
        .map_err(|e| e.to_string())?;
    if let Some(b) = bad {
        t.corrupt_reads += 1;
        return Err(format!("recovered log: {b}"));
    }
    let r = store.put(&message(2_000_000));
    if r.status != PutStatus::PutOk {
        return Err(format!("healthy disk refuses puts after recovery: {r:?}"));
    }
    store.shutdown().map_err(|e| e.to_string())?;
    Ok(())
}

fn sweep(flush: FlushKind) {
    let puts = env_u64("MQLAB_REL_FAULT_PUTS", 12);
    let stride = env_u64("MQLAB_REL_FAULT_STRIDE", 3).max(1);
    let (writes, syncs, bytes) = calibrate(flush, puts);
    let mut t = Totals {
        suite: "faults",
        flush: flush.to_string(),
        workload_puts: puts,
        ..Totals::default()
    };
    let bytes_step = (bytes / writes.max(1)).max(1);
    let mut points = Vec::new();
    points.extend(
        (1..=writes + 1)
            .step_by(stride as usize)
            .map(Fault::WriteEio),
    );
    points.extend((1..=syncs + 1).step_by(stride as usize).map(Fault::SyncEio));
    points.extend(
        (0..=writes + 1)
            .step_by(stride as usize)
            .map(|k| Fault::Capacity(k * bytes_step)),
    );
    let panics = store_thread_panics();
    for fault in points {
        t.fault_points += 1;
        match fault {
            Fault::WriteEio(_) => t.write_eio_points += 1,
            Fault::SyncEio(_) => t.sync_eio_points += 1,
            Fault::Capacity(_) => t.enospc_points += 1,
        }
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            point(flush, fault, puts, &mut t)
        }));
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => t.failures.push(format!("{flush} {fault:?}: {e}")),
            Err(_) => {
                t.panics += 1;
                t.failures.push(format!("{flush} {fault:?}: panicked"));
            }
        }
    }
    t.panics += (store_thread_panics() - panics) as u64;
    eprintln!("RELIABILITY {}", serde_json::to_string(&t).unwrap());
    assert!(
        t.failures.is_empty() && t.panics == 0,
        "{} failures: {:#?}",
        t.failures.len(),
        t.failures
    );
}

#[test]
fn every_fault_point_sync() {
    sweep(FlushKind::Sync);
}

#[test]
fn every_fault_point_group() {
    sweep(FlushKind::Group);
}

#[test]
fn every_fault_point_async() {
    sweep(FlushKind::Async);
}

#[test]
fn every_fault_point_pool() {
    sweep(FlushKind::Pool);
}

// ---------------------------------------------------------------------------
// A real full disk
// ---------------------------------------------------------------------------

const CHILD_ENV: &str = "MQLAB_REL_ENOSPC_CHILD";

#[derive(Debug, Default, Serialize)]
struct RealTotals {
    suite: &'static str,
    backend: String,
    flush: String,
    preallocate: bool,
    acked: u64,
    refused_status: String,
    refused_detail: String,
    later_puts_refused: bool,
    read_only_open_found: u64,
    reopened_after_space_freed_found: u64,
    put_after_space_freed: bool,
    outcome: String,
}

/// The child: fills the file system at `dir` through `backend`, then
/// checks what a full disk left. Prints its totals; panics on a broken
/// promise.
fn fill(dir: &Path, backend: BackendKind, flush: FlushKind, preallocate: bool) -> RealTotals {
    let mut t = RealTotals {
        suite: "real-enospc",
        backend: backend.to_string(),
        flush: flush.to_string(),
        preallocate,
        ..RealTotals::default()
    };
    let store_dir = dir.join(format!("store-{backend}-{flush}-{preallocate}"));
    let filler = dir.join(format!("filler-{backend}-{flush}-{preallocate}"));
    let _ = std::fs::remove_dir_all(&store_dir);
    // Room to give back later, so the store can reopen for writing.
    std::fs::write(&filler, vec![7u8; 1 << 20]).unwrap();
    let mut cfg = StoreConfig::small();
    cfg.backend = backend;
    cfg.flush.kind = flush;
    cfg.segment_bytes = 1 << 20;
    cfg.max_message_bytes = 8 * 1024;
    cfg.preallocate = preallocate;
    let store = match Store::open(&store_dir, cfg.clone()) {
        Ok(s) => s,
        Err(e) => {
            t.outcome = format!("open failed: {e}");
            return t;
        }
    };
    let mut acked = Vec::new();
    let body = vec![0x5au8; 4096];
    let mut refused = None;
    for i in 0..100_000u64 {
        let m = Message::new("Full", body.clone())
            .with_queue((i % 4) as u32)
            .with_keys(format!("k{i}"));
        let r = store.put(&m);
        match (r.status, r.offsets) {
            (PutStatus::PutOk, Some(o)) => acked.push((i, o.phys_offset)),
            (PutStatus::FlushDiskTimeout, _) => {}
            (status, _) => {
                refused = Some((status, r.detail.unwrap_or_default()));
                break;
            }
        }
    }
    t.acked = acked.len() as u64;
    let (status, detail) = refused.expect("the file system never filled up");
    t.refused_status = status.as_str().to_string();
    t.refused_detail = detail.clone();
    assert_eq!(status, PutStatus::ServiceNotAvailable, "{detail}");
    assert!(
        detail.contains("No space left") || detail.contains("os error 28"),
        "refusal does not name the full disk: {detail}"
    );
    t.later_puts_refused = (0..3).all(|_| {
        store.put(&Message::new("Full", b"x".to_vec())).status == PutStatus::ServiceNotAvailable
    });
    assert!(t.later_puts_refused);
    // A full disk: the process goes away without a clean shutdown.
    drop(store);
    let mut ro = cfg.clone();
    ro.read_only = true;
    let store = Store::open(&store_dir, ro).expect("read-only open on a full disk");
    for &(i, phys) in &acked {
        let m = store
            .get(phys)
            .unwrap_or_else(|e| panic!("acked {i} unreadable on the full disk: {e}"));
        assert!(m.keys().any(|k| k == format!("k{i}")));
        t.read_only_open_found += 1;
    }
    drop(store);
    std::fs::remove_file(&filler).unwrap();
    let store = Store::open(&store_dir, cfg).expect("reopen after freeing space");
    for &(i, phys) in &acked {
        let m = store
            .get(phys)
            .unwrap_or_else(|e| panic!("acked {i} lost after the restart: {e}"));
        assert!(m.keys().any(|k| k == format!("k{i}")));
        t.reopened_after_space_freed_found += 1;
    }
    t.put_after_space_freed = store.put(&Message::new("Full", b"again".to_vec())).is_ok();
    assert!(t.put_after_space_freed);
    let _ = store.shutdown();
    std::fs::remove_dir_all(&store_dir).unwrap();
    t.outcome = "ok".into();
    t
}

/// Runs in the child process only.
#[test]
fn real_enospc_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut parts = spec.split(',');
    let dir = PathBuf::from(parts.next().unwrap());
    let backend: BackendKind = parts.next().unwrap().parse().unwrap();
    let flush: FlushKind = parts.next().unwrap().parse().unwrap();
    let preallocate = parts.next() == Some("true");
    let t = fill(&dir, backend, flush, preallocate);
    eprintln!("RELIABILITY {}", serde_json::to_string(&t).unwrap());
}

/// A real full file system, every backend, in a child process each.
#[test]
fn real_enospc_tmpfs() {
    let Ok(dir) = std::env::var("MQLAB_REL_TMPFS") else {
        eprintln!(
            "skipping real_enospc_tmpfs: MQLAB_REL_TMPFS is not set (scripts/reliability.sh mounts a small tmpfs and sets it)"
        );
        return;
    };
    let exe = std::env::current_exe().unwrap();
    let mut failures = Vec::new();
    for backend in BackendKind::ALL {
        if let Err(e) = backend.env() {
            eprintln!(
                "RELIABILITY {}",
                serde_json::json!({"suite": "real-enospc", "backend": backend.to_string(), "outcome": format!("skipped: {e}")})
            );
            continue;
        }
        for (flush, preallocate) in [
            (FlushKind::Sync, true),
            (FlushKind::Sync, false),
            (FlushKind::Async, false),
        ] {
            let out = std::process::Command::new(&exe)
                .args([
                    "--exact",
                    "real_enospc_child",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_ENV, format!("{dir},{backend},{flush},{preallocate}"))
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            let line = stderr.lines().find(|l| l.starts_with("RELIABILITY "));
            match line {
                Some(l) if out.status.success() => eprintln!("{l}"),
                _ => {
                    use std::os::unix::process::ExitStatusExt;
                    let why = match out.status.signal() {
                        Some(sig) => format!("killed by signal {sig}"),
                        None => format!("exit {:?}", out.status.code()),
                    };
                    eprintln!(
                        "RELIABILITY {}",
                        serde_json::json!({"suite": "real-enospc", "backend": backend.to_string(), "flush": flush.to_string(), "preallocate": preallocate, "outcome": format!("FAILED: {why}")})
                    );
                    let tail: Vec<&str> = stderr.lines().rev().take(8).collect();
                    failures.push(format!(
                        "{backend} {flush} preallocate={preallocate}: {why}: {tail:?}"
                    ));
                    let _ = std::fs::remove_dir_all(
                        Path::new(&dir).join(format!("store-{backend}-{flush}-{preallocate}")),
                    );
                    let _ = std::fs::remove_file(
                        Path::new(&dir).join(format!("filler-{backend}-{flush}-{preallocate}")),
                    );
                }
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
