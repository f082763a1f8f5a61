//! Regression (found by `mqlab crash --torn true`): unsynced writes to two
//! consume-queue files (or within one) can reach the disk out of order, so
//! a torn power loss left a hole in a queue: the record was intact in the
//! commit log but missing from its queue, and re-dispatch skipped it
//! because the queue claimed a higher end. Recovery now rewrites every
//! unit of the records it re-dispatches and rebuilds the newest index
//! file's tail.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{message, number_of, test_config};
use mqlab_engine::io::sim::SimEnv;
use mqlab_engine::{FlushKind, Store};

#[test]
fn queues_have_no_holes_after_torn_power_loss() {
    for flush in [FlushKind::Sync, FlushKind::Group, FlushKind::Async] {
        for seed in 0..40u64 {
            let sim = SimEnv::new(seed);
            let dir = std::path::PathBuf::from("/sim/holes");
            let mut cfg = test_config(flush);
            cfg.cq_units_per_file = 4; // queue files roll every 4 units
            cfg.checkpoint_interval_ms = 1_000; // units stay unsynced
            let store = Store::open_with_env(Arc::new(sim.clone()), &dir, cfg.clone()).unwrap();
            let acked: Vec<(u64, u64)> = (0..120u64)
                .map(|i| (i, store.put(&message(i)).offsets.unwrap().phys_offset))
                .collect();
            // Let the dispatcher write units (unsynced) before the crash.
            store.wait_dispatched(store.offsets().flushed, Duration::from_secs(5));
            let crashed = sim.crash(true, seed * 7 + 1);
            drop(store);
            let store = Store::open_with_env(Arc::new(crashed), &dir, cfg).unwrap();
            let end = store.recovery_report().end_offset;
            assert!(store.wait_dispatched(end, Duration::from_secs(5)));
            let mut reachable = 0;
            for q in store.queues() {
                let msgs = store
                    .get_from_queue(&q.topic, q.queue_id, 0, 10_000)
                    .unwrap_or_else(|e| panic!("{flush} seed {seed}: {e}"));
                assert_eq!(
                    msgs.len() as u64,
                    q.max_offset,
                    "{flush} seed {seed}: {q:?}"
                );
                reachable += msgs.len();
                for m in &msgs {
                    assert_eq!(m.body, message(number_of(m).unwrap()).body);
                }
            }
            let survivors = acked.iter().filter(|(_, p)| *p < end).count();
            assert_eq!(reachable, survivors, "{flush} seed {seed}: queue holes");
            for (i, p) in acked.iter().filter(|(_, p)| *p < end) {
                let m = message(*i);
                let hits = store
                    .query_by_key(&m.topic, &format!("key-{i}"), 0, i64::MAX)
                    .unwrap();
                assert_eq!(hits.len(), 1, "{flush} seed {seed}: key-{i} at {p}");
            }
        }
    }
}
