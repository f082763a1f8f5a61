//! Power-loss marks (issue 14): a store run with
//! `StoreConfig::power_loss_marks` on a real backend (pwrite, mmap) is
//! "killed" (dropped without shutdown: nothing more is flushed), the power
//! loss is applied to its directory (`io::powerloss::apply`: unsynced
//! appended bytes zeroed, in-place files back to their last synced
//! copy), and the store reopens with normal recovery:
//! - under sync and group flush every acknowledged put is there, through
//!   the log, its consume queue and its key;
//! - under async flush what is missing is within the window recorded at
//!   the kill (every lost put ends past the flushed offset read then), and
//!   every put ending at or below it is there;
//! - with a flush that never runs, the unsynced puts ARE dropped (the
//!   simulation can fail a store that acknowledged what it had not
//!   synced).
//!
//! Seeded; a failure prints the seed (`MQLAB_POWERLOSS_SEED` repeats it).

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread;

use common::{message, number_of, test_config};
use mqlab_engine::io::powerloss;
use mqlab_engine::{BackendKind, FlushKind, Store};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[derive(Debug, Clone, Copy)]
struct Ack {
    n: u64,
    phys: u64,
    end: u64,
    queue: u32,
    queue_offset: u64,
}

struct Outcome {
    acks: Vec<Ack>,
    flushed_at_kill: u64,
    acked_at_kill: u64,
    report: powerloss::PowerLossReport,
    /// Message numbers found in the log after recovery.
    present: HashMap<u64, u64>,
}

fn seed() -> u64 {
    std::env::var("MQLAB_POWERLOSS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_0014)
}

/// Writes `puts` messages from 2 threads, kills, applies the power loss,
/// reopens and checks every acknowledged put against the result.
fn run(backend: BackendKind, flush: FlushKind, interval_ms: u64, puts: u64, seed: u64) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(flush);
    cfg.backend = backend;
    cfg.power_loss_marks = true;
    cfg.flush.flush_interval_ms = interval_ms;
    cfg.flush.flush_thorough_interval_ms = interval_ms.max(50);
    let store = Arc::new(Store::open(dir.path(), cfg.clone()).unwrap());
    let acks = Arc::new(Mutex::new(Vec::new()));
    let mut threads = Vec::new();
    for t in 0..2u64 {
        let (store, acks) = (store.clone(), acks.clone());
        threads.push(thread::spawn(move || {
            let mut rng = ChaCha8Rng::seed_from_u64(seed ^ t);
            for i in 0..puts / 2 {
                let n = i * 2 + t;
                let msg = message(n);
                let r = store.put(&msg);
                if r.is_ok() {
                    let o = r.offsets.unwrap();
                    acks.lock().unwrap().push(Ack {
                        n,
                        phys: o.phys_offset,
                        end: o.phys_offset + o.wrote_bytes as u64,
                        queue: msg.queue_id,
                        queue_offset: o.queue_offset,
                    });
                }
                if rng.random_range(0..8) == 0 {
                    thread::sleep(std::time::Duration::from_micros(rng.random_range(0..400)));
                }
            }
        }));
    }
    for t in threads {
        t.join().unwrap();
    }
    // The window at the kill, then the kill: drop without shutdown.
    let at_kill = store.offsets();
    let store = Arc::into_inner(store).expect("only reference");
    drop(store);
    let report = powerloss::apply(dir.path()).unwrap();
    assert_eq!(report.bad_lines, 0, "seed {seed}: {report:?}");

    cfg.power_loss_marks = false;
    let store = Store::open(dir.path(), cfg).unwrap();
    let mut present = HashMap::new();
    store
        .scan(store.min_offset(), &mut |r| {
            let m = r.unwrap_or_else(|e| panic!("seed {seed}: scan after power loss: {e}"));
            if let Some(n) = number_of(m) {
                present.insert(n, m.phys_offset);
            }
            true
        })
        .unwrap();
    let acks = std::mem::take(&mut *acks.lock().unwrap());
    // Every acknowledged put still in the log is reachable through its
    // queue and its key.
    for a in acks.iter().filter(|a| present.contains_key(&a.n)) {
        let msg = message(a.n);
        let got = store
            .get_from_queue(&msg.topic, a.queue, a.queue_offset, 1)
            .unwrap_or_else(|e| panic!("seed {seed}: queue read of put {}: {e}", a.n));
        assert_eq!(
            got.first().and_then(number_of),
            Some(a.n),
            "seed {seed}: put {} not at its queue offset",
            a.n
        );
        let by_key = store
            .query_by_key(&msg.topic, &format!("key-{}", a.n), 0, i64::MAX)
            .unwrap();
        assert!(
            by_key.iter().any(|m| m.phys_offset == a.phys),
            "seed {seed}: put {} not found by its key",
            a.n
        );
    }
    store.shutdown().unwrap();
    Outcome {
        acks,
        flushed_at_kill: at_kill.flushed,
        acked_at_kill: at_kill.acked,
        report,
        present,
    }
}

fn lost(o: &Outcome) -> Vec<Ack> {
    o.acks
        .iter()
        .filter(|a| !o.present.contains_key(&a.n))
        .copied()
        .collect()
}

#[test]
fn sync_and_group_lose_nothing_acknowledged() {
    let base = seed();
    for (i, (backend, flush)) in [
        (BackendKind::Pwrite, FlushKind::Sync),
        (BackendKind::Pwrite, FlushKind::Group),
        (BackendKind::Mmap, FlushKind::Group),
    ]
    .into_iter()
    .enumerate()
    {
        let seed = base ^ (i as u64) << 8;
        let puts = ChaCha8Rng::seed_from_u64(seed).random_range(200..400);
        let o = run(backend, flush, 5, puts, seed);
        let lost = lost(&o);
        assert!(
            lost.is_empty(),
            "seed {seed} {backend}/{flush:?}: {} acknowledged puts lost, first {:?}; report {:?}",
            lost.len(),
            lost.first(),
            o.report
        );
        assert!(!o.acks.is_empty(), "seed {seed}: nothing acknowledged");
    }
}

#[test]
fn async_loses_at_most_its_window() {
    let base = seed();
    for (i, backend) in [BackendKind::Pwrite, BackendKind::Mmap]
        .into_iter()
        .enumerate()
    {
        let seed = base ^ 0xa5 ^ (i as u64) << 8;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (puts, interval) = (rng.random_range(400..1200), rng.random_range(2..30));
        let o = run(backend, FlushKind::Async, interval, puts, seed);
        for a in lost(&o) {
            assert!(
                a.end > o.flushed_at_kill,
                "seed {seed} {backend}: put {} ending at {} lost although flushed was {} at the kill",
                a.n,
                a.end,
                o.flushed_at_kill
            );
        }
        for a in o.acks.iter().filter(|a| a.end <= o.flushed_at_kill) {
            assert!(
                o.present.contains_key(&a.n),
                "seed {seed}: put {} lost",
                a.n
            );
        }
        assert!(o.acked_at_kill >= o.flushed_at_kill);
    }
}

#[test]
fn unsynced_bytes_are_dropped() {
    // Async flush that never runs within the test: everything put after
    // open is unsynced, so the power loss must take all of it (a store
    // whose recovery kept it would be reading bytes a disk never had).
    let seed = seed() ^ 0xd0;
    for backend in [BackendKind::Pwrite, BackendKind::Mmap] {
        let o = run(backend, FlushKind::Async, 600_000, 200, seed);
        assert!(!o.acks.is_empty());
        assert_eq!(
            o.flushed_at_kill, 0,
            "seed {seed} {backend}: a flush ran after all"
        );
        assert!(
            o.present.is_empty(),
            "seed {seed} {backend}: {} unsynced puts survived the power loss",
            o.present.len()
        );
        let seg = o
            .report
            .files
            .iter()
            .find(|f| f.file.starts_with("commitlog/"))
            .expect("the segment is in the marks");
        assert_eq!(seg.unsynced_from, Some(0), "seed {seed}: {seg:?}");
        assert!(seg.bytes_dropped > 0, "seed {seed}: {seg:?}");
    }
}

#[test]
fn a_reopened_store_keeps_what_the_last_run_made_durable() {
    // A clean run, then a second run with marks that writes (async flush,
    // no checkpoint: nothing synced) and is killed: the power loss drops
    // the second run's puts only; the first run's stay reachable through
    // their queues and keys (its index file was written again, unsynced,
    // in the second run).
    let seed = seed() ^ 0x7e;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(FlushKind::Group);
    cfg.index_items = 4096;
    cfg.power_loss_marks = true;
    let first: u64 = ChaCha8Rng::seed_from_u64(seed).random_range(20..60);
    let store = Store::open(dir.path(), cfg.clone()).unwrap();
    for n in 0..first {
        assert!(store.put(&message(n)).is_ok());
    }
    store.shutdown().unwrap();
    cfg.flush.kind = FlushKind::Async;
    cfg.flush.flush_interval_ms = 600_000;
    cfg.flush.flush_thorough_interval_ms = 600_000;
    cfg.checkpoint_interval_ms = 600_000;
    let store = Store::open(dir.path(), cfg.clone()).unwrap();
    for n in first..first + 30 {
        assert!(store.put(&message(n)).is_ok());
    }
    assert!(store.wait_dispatched(store.offsets().committed, std::time::Duration::from_secs(5)));
    drop(store);
    let rep = powerloss::apply(dir.path()).unwrap();
    // The index file existed before the second run: nothing of it is
    // dropped (its items of the first run are durable).
    for f in rep.files.iter().filter(|f| f.file.starts_with("index/")) {
        assert_eq!(f.bytes_dropped, 0, "seed {seed}: {f:?}");
    }
    assert!(rep.bytes_dropped > 0, "seed {seed}: {rep:?}");
    cfg.power_loss_marks = false;
    let store = Store::open(dir.path(), cfg).unwrap();
    let mut present = Vec::new();
    store
        .scan(store.min_offset(), &mut |r| {
            present.push(number_of(r.unwrap()).unwrap());
            true
        })
        .unwrap();
    assert_eq!(
        present,
        (0..first).collect::<Vec<_>>(),
        "seed {seed}: {rep:?}"
    );
    for n in 0..first {
        let msg = message(n);
        assert_eq!(
            store
                .query_by_key(&msg.topic, &format!("key-{n}"), 0, i64::MAX)
                .unwrap()
                .len(),
            1,
            "seed {seed}: put {n} of the first run not found by its key; {rep:?}"
        );
    }
    store.shutdown().unwrap();
}
