//! Disk faults on the simulator (`SimEnv::with_faults`): EIO on the Nth
//! fsync, EIO on the Nth write, a full disk, bit flips on reads.
//!
//! For every fault point N of a small workload, under every flush strategy
//! it applies to:
//! - the put that hit the fault, and every later one, returns
//!   SERVICE_NOT_AVAILABLE with a detail naming the fault, and the store
//!   says it is poisoned;
//! - a failed fsync is never retried;
//! - after a power loss and recovery on a healthy disk, every acknowledged
//!   message that was durable (all of them under sync and group; those
//!   below the flushed offset under async and pool) is there, exactly as
//!   put, through `get`, its consume queue and its key;
//! - nothing that is returned differs from what was put.
//!
//! A failure names the strategy, the fault and N; the disk replays from
//! its plan (background thread timing aside).

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{env_files, message, number_of, same_as_put, sim_with_files, store_thread_panics};
use mqlab_engine::io::sim::{FaultPlan, SimEnv};
use mqlab_engine::{FlushKind, PutStatus, Store, StoreConfig};

/// Fault points: the Nth operation of its kind, for every N here.
const POINTS: std::ops::Range<u64> = 1..60;
/// Puts made at full speed under sync and group before the workload slows
/// down to let background threads reach a fault that puts do not.
const WORKLOAD: u64 = 70;

fn root() -> PathBuf {
    PathBuf::from("/faults/store")
}

/// `test_config` with the checkpointer quiet, so that the only syncs during
/// a workload are the commit log's (and, rarely, an index file's seal):
/// under sync and group, fault points then land on puts. A short group
/// timeout, because a group put whose store another thread poisons waits
/// it out (`group_waiters_fail_fast_when_another_thread_poisons`).
fn fault_config(flush: FlushKind) -> StoreConfig {
    let mut cfg = common::test_config(flush);
    cfg.checkpoint_interval_ms = 60_000;
    cfg.flush.sync_flush_timeout_ms = 300;
    cfg
}

#[derive(Debug, Clone, Copy)]
struct Acked {
    i: u64,
    phys: u64,
    end: u64,
    queue_offset: u64,
}

/// Sync calls a fresh store makes while opening.
fn syncs_at_open(flush: FlushKind) -> u64 {
    let sim = SimEnv::new(0);
    let store = Store::open_with_env(Arc::new(sim.clone()), root(), fault_config(flush)).unwrap();
    let n = sim.stats().syncs;
    drop(store);
    n
}

/// Which fault a run injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    SyncEio(u64),
    WriteEio(u64),
    Capacity(u64),
}

impl Fault {
    fn plan(self, seed: u64) -> FaultPlan {
        let mut plan = FaultPlan {
            seed,
            ..FaultPlan::default()
        };
        match self {
            Fault::SyncEio(n) => plan.sync_eio_at = Some(n),
            Fault::WriteEio(n) => plan.write_eio_at = Some(n),
            Fault::Capacity(bytes) => plan.capacity_bytes = Some(bytes),
        }
        plan
    }
}

/// One fault point: a workload until the store refuses puts, checks on the
/// poisoned store, a power loss, recovery, checks on what survived.
fn fault_point(flush: FlushKind, fault: Fault, opened_syncs: u64) {
    let label = format!("{flush}, {fault:?}");
    let seed = match fault {
        Fault::SyncEio(n) | Fault::WriteEio(n) | Fault::Capacity(n) => n,
    };
    let panics = store_thread_panics();
    let sim = SimEnv::with_faults(fault.plan(seed));
    let cfg = fault_config(flush);
    let store = match Store::open_with_env(Arc::new(sim.clone()), root(), cfg.clone()) {
        Ok(store) => Some(store),
        Err(e) => {
            // The fault hit the open itself: a clear error is the answer.
            assert!(
                e.to_string().contains("simulated"),
                "{label}: open failed without naming the fault: {e}"
            );
            None
        }
    };
    let mut acked: Vec<Acked> = Vec::new();
    let mut flushed = 0;
    if let Some(store) = &store {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut refused = None;
        let mut i = 0u64;
        while refused.is_none() {
            let r = store.put(&message(i));
            match r.status {
                PutStatus::PutOk => {
                    let o = r.offsets.expect("offsets on PUT_OK");
                    acked.push(Acked {
                        i,
                        phys: o.phys_offset,
                        end: o.phys_offset + o.wrote_bytes as u64,
                        queue_offset: o.queue_offset,
                    });
                }
                PutStatus::ServiceNotAvailable => {
                    let detail = r.detail.clone().unwrap_or_default();
                    assert!(
                        detail.contains("simulated"),
                        "{label}: put {i} refused without naming the fault: {detail:?}"
                    );
                    let why = store
                        .poisoned()
                        .unwrap_or_else(|| panic!("{label}: put {i} refused, store not poisoned"));
                    assert!(why.contains("simulated"), "{label}: poisoned by {why:?}");
                    if let Fault::SyncEio(n) = fault {
                        if flush.acks_durable() && n > opened_syncs {
                            // The put whose fsync failed is the one refused.
                            assert!(
                                r.offsets.is_some() && detail.contains("fdatasync"),
                                "{label}: put {i}: {r:?}"
                            );
                        }
                    }
                    refused = Some(i);
                }
                // Written, not acknowledged: the group service was slow.
                PutStatus::FlushDiskTimeout => {}
                other => panic!("{label}: put {i}: {other:?} {:?}", r.detail),
            }
            i += 1;
            if i >= WORKLOAD || !flush.acks_durable() {
                // Let the background threads run: under async and pool the
                // flusher and committer make some of the workload durable
                // before the fault, and some faults only they can hit.
                std::thread::sleep(Duration::from_millis(1));
            }
            assert!(
                Instant::now() < deadline,
                "{label}: no put refused after {i} puts; disk saw {:?}",
                sim.stats()
            );
        }
        // Every later put is refused, before anything is appended.
        for k in 0..5 {
            let r = store.put(&message(1_000_000 + k));
            assert_eq!(r.status, PutStatus::ServiceNotAvailable, "{label}");
            assert!(r.offsets.is_none(), "{label}: a poisoned store appended");
            let detail = r.detail.unwrap_or_default();
            assert!(detail.contains("simulated"), "{label}: {detail:?}");
        }
        // What was acknowledged and committed is still readable.
        let committed = store.offsets().committed;
        for a in acked.iter().filter(|a| a.end <= committed) {
            let m = store
                .get(a.phys)
                .unwrap_or_else(|e| panic!("{label}: get {} from the poisoned store: {e}", a.i));
            same_as_put(&m, &message(a.i)).unwrap_or_else(|e| panic!("{label}: {e}"));
        }
        let off = store.offsets();
        if flush.acks_durable() {
            assert!(off.acked <= off.flushed, "{label}: {off:?}");
        }
        flushed = off.flushed;
    }

    // Power loss; recovery on a healthy disk.
    let crashed = sim.crash(false, seed);
    drop(store);
    let store = Store::open_with_env(Arc::new(crashed), root(), cfg)
        .unwrap_or_else(|e| panic!("{label}: recovery after the fault: {e}"));
    let rep = store.recovery_report();
    assert!(rep.end_offset >= flushed, "{label}: {rep:#?} < {flushed}");
    let must_survive = |a: &Acked| flush.acks_durable() || a.end <= flushed;
    for a in &acked {
        match store.get(a.phys) {
            Ok(m) => {
                same_as_put(&m, &message(a.i)).unwrap_or_else(|e| panic!("{label}: {e}"));
                assert_eq!(m.queue_offset, a.queue_offset, "{label}");
            }
            Err(e) => assert!(
                !must_survive(a),
                "{label}: acknowledged durable put {} lost: {e}\n{rep:#?}",
                a.i
            ),
        }
    }
    assert!(store.wait_dispatched(rep.end_offset, Duration::from_secs(10)));
    for a in acked.iter().filter(|a| must_survive(a)) {
        let want = message(a.i);
        let via_queue = store
            .get_from_queue(&want.topic, want.queue_id, a.queue_offset, 1)
            .unwrap_or_else(|e| panic!("{label}: queue read of {}: {e}", a.i));
        assert_eq!(
            via_queue.first().map(|m| m.phys_offset),
            Some(a.phys),
            "{label}: queue read of {}",
            a.i
        );
    }
    for a in acked.iter().filter(|a| must_survive(a)).step_by(9) {
        let want = message(a.i);
        let hits = store
            .query_by_key(&want.topic, &format!("key-{}", a.i), 0, i64::MAX)
            .unwrap();
        assert_eq!(hits.len(), 1, "{label}: key lookup of {}", a.i);
    }
    // Whatever else came back (unacknowledged writes that reached the disk)
    // is intact.
    store
        .scan(store.min_offset(), &mut |m| {
            let m = m.unwrap_or_else(|e| panic!("{label}: recovered log does not scan: {e}"));
            let i = number_of(m).unwrap();
            same_as_put(m, &message(i)).unwrap_or_else(|e| panic!("{label}: {e}"));
            true
        })
        .unwrap();
    // The healthy disk takes writes again.
    let r = store.put(&message(2_000_000));
    assert_eq!(r.status, PutStatus::PutOk, "{label}: {:?}", r.detail);
    store.shutdown().unwrap();
    assert_eq!(
        store_thread_panics(),
        panics,
        "{label}: a store thread panicked"
    );
}

fn sweep(flush: FlushKind, fault: fn(u64) -> Fault, points: impl Iterator<Item = u64>) {
    let opened = syncs_at_open(flush);
    for n in points {
        fault_point(flush, fault(n), opened);
    }
}

#[test]
fn fsync_eio_sync() {
    sweep(FlushKind::Sync, Fault::SyncEio, POINTS);
}

#[test]
fn fsync_eio_group() {
    sweep(FlushKind::Group, Fault::SyncEio, POINTS);
}

/// The flusher syncs once per interval at most, so fewer points.
#[test]
fn fsync_eio_async_and_pool() {
    sweep(FlushKind::Async, Fault::SyncEio, 1..12);
    sweep(FlushKind::Pool, Fault::SyncEio, 1..12);
}

#[test]
fn write_eio_sync() {
    sweep(FlushKind::Sync, Fault::WriteEio, POINTS);
}

#[test]
fn write_eio_group() {
    sweep(FlushKind::Group, Fault::WriteEio, POINTS);
}

#[test]
fn write_eio_async() {
    sweep(FlushKind::Async, Fault::WriteEio, POINTS);
}

#[test]
fn write_eio_pool() {
    sweep(FlushKind::Pool, Fault::WriteEio, POINTS);
}

/// Capacity N KiB: the open's 4 KiB checkpoint, then a few records each.
#[test]
fn disk_full_every_strategy() {
    for flush in FlushKind::ALL {
        sweep(flush, Fault::Capacity, POINTS.map(|n| n * 1024));
    }
}

/// After a failed fsync, nothing syncs again: not the put path, not the
/// group-commit service, not the flusher, not shutdown. With the
/// checkpointer quiet, the disk sees exactly N sync calls, the last the
/// failed one.
#[test]
fn a_failed_fsync_is_never_retried() {
    for flush in FlushKind::ALL {
        let n = syncs_at_open(flush) + 3;
        let sim = SimEnv::with_faults(Fault::SyncEio(n).plan(n));
        let store =
            Store::open_with_env(Arc::new(sim.clone()), root(), fault_config(flush)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut i = 0;
        while store.poisoned().is_none() {
            let _ = store.put(&message(i));
            i += 1;
            if !flush.acks_durable() {
                std::thread::sleep(Duration::from_millis(1));
            }
            assert!(Instant::now() < deadline, "{flush}: fault never hit");
        }
        assert_eq!(sim.stats().syncs, n, "{flush}: syncs when poisoned");
        for k in 0..10 {
            let r = store.put(&message(1000 + k));
            assert_eq!(r.status, PutStatus::ServiceNotAvailable, "{flush}");
        }
        // Many flusher intervals (5 ms) and a thorough one (50 ms).
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(sim.stats().syncs, n, "{flush}: a failed fsync was retried");
        let err = store.shutdown().unwrap_err();
        assert!(err.to_string().contains("poisoned"), "{flush}: {err}");
        assert_eq!(sim.stats().syncs, n, "{flush}: shutdown synced again");
    }
}

/// With reads flipping bits (30% of reads flip one), `get` returns the
/// right message or an error, never another message or altered bytes.
/// Recovery itself reads through the flips, so it may cut the log early:
/// later messages then read as errors, which is allowed.
#[test]
fn read_bit_flips_never_return_a_wrong_message() {
    let sim = SimEnv::new(1);
    let cfg = fault_config(FlushKind::Sync);
    let store = Store::open_with_env(Arc::new(sim.clone()), root(), cfg.clone()).unwrap();
    let acked: Vec<(u64, u64)> = (0..120)
        .map(|i| {
            let r = store.put(&message(i));
            assert_eq!(r.status, PutStatus::PutOk);
            (i, r.offsets.unwrap().phys_offset)
        })
        .collect();
    store.shutdown().unwrap();
    let files = env_files(&sim, &root());
    let (mut right, mut refused) = (0u64, 0u64);
    for seed in 0..8 {
        let plan = FaultPlan {
            seed,
            read_bitflip_ppm: 300_000,
            ..FaultPlan::default()
        };
        let flaky = sim_with_files(plan, &files);
        let Ok(store) = Store::open_with_env(Arc::new(flaky), root(), cfg.clone()) else {
            continue;
        };
        for _round in 0..3 {
            for &(i, phys) in &acked {
                match store.get(phys) {
                    Ok(m) => {
                        assert_eq!(m.phys_offset, phys, "seed {seed}");
                        assert_eq!(number_of(&m), Some(i), "seed {seed}");
                        same_as_put(&m, &message(i)).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
                        right += 1;
                    }
                    Err(_) => refused += 1,
                }
            }
        }
        for q in store.queues() {
            if let Ok(ms) = store.get_from_queue(&q.topic, q.queue_id, 0, 1000) {
                for m in &ms {
                    let i = number_of(m).unwrap_or_else(|| panic!("seed {seed}: {m:?}"));
                    same_as_put(m, &message(i)).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
                }
            }
        }
        drop(store);
    }
    assert!(
        right > 0 && refused > 0,
        "flips must both hit and miss: {right} right, {refused} refused"
    );
}

/// A group put waits for the service's fsync. When another thread (the
/// dispatcher, the checkpointer) poisons the store first, the service sees
/// the poison and goes back to sleep without waking the waiters
/// (`service` in flush/group.rs; `CommitLog::wake_blocked` only wakes the
/// pool), so the put hangs for the whole `sync_flush_timeout_ms` before it
/// is refused. It should be refused at once.
#[test]
fn group_waiters_fail_fast_when_another_thread_poisons() {
    let mut cfg = fault_config(FlushKind::Group);
    cfg.flush.sync_flush_timeout_ms = 4_000;
    // Write faults late enough to hit the dispatcher's index writes.
    for n in 40..60 {
        let sim = SimEnv::with_faults(Fault::WriteEio(n).plan(n));
        let store = Store::open_with_env(Arc::new(sim), root(), cfg.clone()).unwrap();
        for i in 0..200 {
            let t0 = Instant::now();
            let r = store.put(&message(i));
            let took = t0.elapsed();
            assert!(
                took < Duration::from_millis(2_000),
                "write EIO at {n}: put {i} took {took:?} to return {:?}: {:?}",
                r.status,
                r.detail
            );
            if r.status != PutStatus::PutOk {
                break;
            }
        }
        drop(store);
    }
}
