//! One conformance scenario run against every backend x flush strategy:
//! put, get, consume-queue reads, key lookup, clean restart, crash restart.

mod common;

use std::time::Duration;

use common::{env_for, message, number_of, test_config, Backend};
use mqlab_engine::io::sim::SimEnv;
use mqlab_engine::{BackendKind, FlushKind, PutStatus, Store, StoreConfig};

const N: u64 = 400;

struct Acked {
    i: u64,
    phys: u64,
    queue_offset: u64,
}

fn put_all(store: &Store, range: std::ops::Range<u64>) -> Vec<Acked> {
    range
        .map(|i| {
            let r = store.put(&message(i));
            assert_eq!(r.status, PutStatus::PutOk, "put {i}: {:?}", r.detail);
            let o = r.offsets.expect("offsets on PUT_OK");
            Acked {
                i,
                phys: o.phys_offset,
                queue_offset: o.queue_offset,
            }
        })
        .collect()
}

/// Waits until the pool's committer has handed everything to the file
/// (readers only see committed bytes).
fn wait_committed(store: &Store) {
    let w = store.offsets().written;
    let t0 = std::time::Instant::now();
    while store.offsets().committed < w && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn check_all(store: &Store, acked: &[Acked], flush: FlushKind) {
    wait_committed(store);
    let off = store.offsets();
    assert!(off.flushed <= off.committed && off.committed <= off.written);
    assert!(off.acked <= off.written);
    if flush.acks_durable() {
        assert!(off.acked <= off.flushed, "{off:?}");
    }
    assert!(
        store.wait_dispatched(off.committed.min(off.written), Duration::from_secs(10))
            || flush.acks_durable(),
        "dispatcher stuck at {} of {:?}",
        store.dispatched_offset(),
        off
    );
    for a in acked {
        let want = message(a.i);
        let got = store
            .get(a.phys)
            .unwrap_or_else(|e| panic!("get {}: {e}", a.i));
        assert_eq!(got.body, want.body, "body of {}", a.i);
        assert_eq!(got.topic, want.topic);
        assert_eq!(got.queue_id, want.queue_id);
        assert_eq!(got.queue_offset, a.queue_offset);
        assert_eq!(number_of(&got), Some(a.i));
    }
    // Wait until everything acked is visible to consumers.
    let end = acked.iter().map(|a| a.phys + 1).max().unwrap_or(0);
    assert!(store.wait_dispatched(end, Duration::from_secs(10)));
    for a in acked {
        let want = message(a.i);
        let via_queue = store
            .get_from_queue(&want.topic, want.queue_id, a.queue_offset, 1)
            .unwrap();
        assert_eq!(via_queue.len(), 1, "queue read of {}", a.i);
        assert_eq!(via_queue[0].phys_offset, a.phys);
    }
    // Queue offsets are dense per queue and in put order.
    for q in store.queues() {
        let msgs = store
            .get_from_queue(&q.topic, q.queue_id, 0, 10_000)
            .unwrap();
        assert_eq!(msgs.len() as u64, q.max_offset - q.min_offset);
        for (k, m) in msgs.iter().enumerate() {
            assert_eq!(m.queue_offset, q.min_offset + k as u64);
        }
        assert!(msgs.windows(2).all(|w| w[0].phys_offset < w[1].phys_offset));
    }
    for a in acked.iter().step_by(37) {
        let want = message(a.i);
        let hits = store
            .query_by_key(&want.topic, &format!("key-{}", a.i), 0, i64::MAX)
            .unwrap();
        assert_eq!(hits.len(), 1, "key lookup of {}", a.i);
        assert_eq!(hits[0].phys_offset, a.phys);
    }
}

fn scenario(backend: Backend, flush: FlushKind) {
    scenario_with(backend, test_config(flush));
}

fn scenario_with(backend: Backend, cfg: mqlab_engine::StoreConfig) {
    let flush = cfg.flush.kind;
    let Some(env) = env_for(backend, 7) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with_env(env.clone(), dir.path(), cfg.clone()).unwrap();
    assert!(!store.recovery_report().abnormal);
    let mut acked = put_all(&store, 0..N);
    check_all(&store, &acked, flush);
    assert!(
        store.offsets().written > 2 * cfg.segment_bytes,
        "segments must roll"
    );

    // Clean restart: nothing to recover, everything still there.
    store.shutdown().unwrap();
    let store = Store::open_with_env(env.clone(), dir.path(), cfg.clone()).unwrap();
    let rep = store.recovery_report().clone();
    assert!(!rep.abnormal, "{rep:?}");
    assert!(rep.truncated.is_empty(), "{rep:?}");
    check_all(&store, &acked, flush);

    // Appends continue the queues, then a process crash (drop without
    // shutdown): every acknowledged message survives in the page cache.
    acked.extend(put_all(&store, N..N + 100));
    check_all(&store, &acked, flush);
    // Under pool, a process crash loses what is still in the pool's
    // buffers: check_all above waited for the committer.
    drop(store);
    let store = Store::open_with_env(env.clone(), dir.path(), cfg.clone()).unwrap();
    assert!(store.recovery_report().abnormal);
    check_all(&store, &acked, flush);
    store.shutdown().unwrap();
}

macro_rules! conformance {
    ($($name:ident: $backend:expr, $flush:expr;)*) => {
        $(
            #[test]
            fn $name() {
                scenario($backend, $flush);
            }
        )*
    };
}

conformance! {
    pwrite_sync: Backend::Real(BackendKind::Pwrite), FlushKind::Sync;
    pwrite_group: Backend::Real(BackendKind::Pwrite), FlushKind::Group;
    pwrite_async: Backend::Real(BackendKind::Pwrite), FlushKind::Async;
    pwrite_pool: Backend::Real(BackendKind::Pwrite), FlushKind::Pool;
    mmap_sync: Backend::Real(BackendKind::Mmap), FlushKind::Sync;
    mmap_group: Backend::Real(BackendKind::Mmap), FlushKind::Group;
    mmap_async: Backend::Real(BackendKind::Mmap), FlushKind::Async;
    mmap_pool: Backend::Real(BackendKind::Mmap), FlushKind::Pool;
    uring_sync: Backend::Real(BackendKind::Uring), FlushKind::Sync;
    uring_group: Backend::Real(BackendKind::Uring), FlushKind::Group;
    uring_async: Backend::Real(BackendKind::Uring), FlushKind::Async;
    uring_pool: Backend::Real(BackendKind::Uring), FlushKind::Pool;
    sim_sync: Backend::Sim, FlushKind::Sync;
    sim_group: Backend::Sim, FlushKind::Group;
    sim_async: Backend::Sim, FlushKind::Async;
    sim_pool: Backend::Sim, FlushKind::Pool;
}

/// Group commit with one write per put (RocketMQ's GroupCommitService)
/// instead of one write per batch.
#[test]
fn pwrite_group_unbatched() {
    let mut cfg = test_config(FlushKind::Group);
    cfg.flush.group_batch_writes = false;
    scenario_with(Backend::Real(BackendKind::Pwrite), cfg);
}

#[test]
fn sim_group_unbatched() {
    let mut cfg = test_config(FlushKind::Group);
    cfg.flush.group_batch_writes = false;
    scenario_with(Backend::Sim, cfg);
}

/// Power loss on the simulator under every strategy: what was acked under
/// sync/group survives; nothing corrupt comes back.
#[test]
fn sim_power_loss_keeps_durable_acks() {
    for flush in FlushKind::ALL {
        let sim = SimEnv::new(11);
        let dir = std::path::PathBuf::from("/sim/store");
        let cfg = test_config(flush);
        let store =
            Store::open_with_env(std::sync::Arc::new(sim.clone()), &dir, cfg.clone()).unwrap();
        let acked = put_all(&store, 0..200);
        let flushed = store.offsets().flushed;
        let crashed = sim.crash(true, 99);
        drop(store);
        let store = Store::open_with_env(std::sync::Arc::new(crashed), &dir, cfg.clone()).unwrap();
        let end = store.recovery_report().end_offset;
        assert!(
            end >= flushed,
            "{flush}: recovered end {end} < flushed {flushed}"
        );
        let survivors: Vec<_> = acked.into_iter().filter(|a| a.phys < end).collect();
        if flush.acks_durable() {
            assert_eq!(survivors.len(), 200, "{flush}");
        }
        check_all(&store, &survivors, flush);
        let _ = StoreConfig::default();
    }
}

/// The suite must pass where io_uring is missing: re-run the uring cases
/// in a child process with io_uring disabled (`MQLAB_DISABLE_URING`, see
/// io/uring.rs) and check they skip cleanly, and that opening a store on
/// the uring backend fails with a clear error instead.
#[test]
fn uring_absent_is_skipped_cleanly() {
    if std::env::var_os("MQLAB_DISABLE_URING").is_some() {
        let err = Store::open(
            tempfile::tempdir().unwrap().path(),
            StoreConfig {
                backend: BackendKind::Uring,
                ..StoreConfig::default()
            },
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("uring") && msg.contains("unavailable"),
            "{msg}"
        );
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["uring_", "--test-threads=1", "--nocapture"])
        .env("MQLAB_DISABLE_URING", "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("skipping: backend uring unavailable"),
        "{text}"
    );
    assert!(
        text.contains("uring_absent_is_skipped_cleanly ... ok"),
        "{text}"
    );
}
