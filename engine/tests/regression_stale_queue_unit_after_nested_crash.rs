//! Regression (found by `reliability_sim`, seed 12884902481, async): after
//! a torn power loss whose recovery was itself cut by another torn power
//! loss, recovery leaves a consume-queue unit that no record of the log
//! backs: queue TopicA/0 has 5 units for 4 records, so a consumer is
//! handed a unit past the queue's real end, and the next put to that
//! queue takes a queue offset one too high.
//!
//! The stale unit is the queue's last: its physical-offset field reads 0
//! (torn: the 8 bytes never reached the disk, the size did), below the
//! recovered end, so `ConsumeQueue::truncate_phys` (queue/mod.rs), which
//! binary-searches for the first unit at or past the end assuming
//! increasing offsets, keeps it; re-dispatch rewrites only the units of
//! records it finds. A fix: after re-dispatch, cut every queue at the
//! next queue offset the parsed log gives it (or treat a unit whose
//! offset is not above its predecessor's as the end).
//!
//! The fixture (`fixtures/reliability/stale-queue-unit/image/`) is the
//! exact disk image the failing recovery started from, dumped by the
//! simulator (`model.json` holds what the test expected). Every queue must
//! hold exactly one unit per record of its topic and queue in the log, in
//! log order.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mqlab_engine::io::sim::FaultPlan;
use mqlab_engine::{FlushKind, Store};

/// Loads a dumped image under `root` on a fresh simulated disk.
fn open_image(name: &str, flush: FlushKind) -> Store {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/reliability")
        .join(name)
        .join("image");
    let root = PathBuf::from("/sim/reliability");
    let files: BTreeMap<PathBuf, Vec<u8>> = common::read_tree(&dir)
        .into_iter()
        .map(|(rel, b)| (root.join(rel), b))
        .collect();
    let sim = common::sim_with_files(FaultPlan::default(), &files);
    let store = Store::open_with_env(Arc::new(sim), &root, common::test_config(flush)).unwrap();
    let end = store.recovery_report().end_offset;
    assert!(store.wait_dispatched(end, Duration::from_secs(10)));
    store
}

#[test]

fn every_unit_is_backed_by_a_record() {
    let store = open_image("stale-queue-unit", FlushKind::Async);
    let mut per_queue: BTreeMap<(String, u32), Vec<u64>> = BTreeMap::new();
    store
        .scan(store.min_offset(), &mut |m| {
            let m = m.unwrap();
            per_queue
                .entry((m.topic.clone(), m.queue_id))
                .or_default()
                .push(m.phys_offset);
            true
        })
        .unwrap();
    for q in store.queues() {
        let units = store.queue_units(&q.topic, q.queue_id, 0, 10_000).unwrap();
        let phys: Vec<u64> = units.iter().map(|u| u.phys_offset).collect();
        let want = per_queue
            .get(&(q.topic.clone(), q.queue_id))
            .cloned()
            .unwrap_or_default();
        assert_eq!(phys, want, "queue {}/{}", q.topic, q.queue_id);
    }
}
