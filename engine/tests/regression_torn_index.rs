//! Regression (found by `reliability_sim`): index writes past the last
//! checkpoint are trusted by recovery even when a power loss persisted
//! them out of order.
//!
//! An index file is written in place: items, hash slots and (lazily) the
//! header, none synced until the checkpointer flushes. Page-cache
//! writeback takes a file's dirty pages in any order, so a power loss can
//! persist the page holding the header and the slots while a later page of
//! items never reaches the disk. Recovery re-dispatches from the
//! checkpointed offset, but the index skips every record at or below the
//! header's end physical offset (`IndexService` in index/mod.rs), so the
//! lost items are never re-added; worse, a slot that persisted pointing at
//! a lost (zero) item ends the hash chain there and hides older items of
//! the same slot. Acknowledged, durable messages (under `sync`) are then
//! not found by their keys.
//!
//! Fixed in d277d8d: after a crash, recovery rebuilds the newest index
//! file's tail from the re-dispatched records.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::{env_files, message, sim_with_files, test_config};
use mqlab_engine::io::sim::{FaultPlan, SimEnv};
use mqlab_engine::{FlushKind, PutStatus, Store};

#[test]
fn keys_survive_a_lost_page_of_index_items() {
    let root = PathBuf::from("/sim/torn-index");
    let mut cfg = test_config(FlushKind::Sync);
    cfg.checkpoint_interval_ms = 600_000;
    let sim = SimEnv::new(1);
    let store = Store::open_with_env(Arc::new(sim.clone()), &root, cfg.clone()).unwrap();
    // Two keys per message ("key-i" and "common"): items past the first
    // 4 KiB page of the file belong to the last ~25 messages.
    let acked: Vec<(u64, u64)> = (0..120u64)
        .map(|i| {
            let r = store.put(&message(i));
            assert_eq!(r.status, PutStatus::PutOk);
            (i, r.offsets.unwrap().phys_offset)
        })
        .collect();
    assert!(store.wait_dispatched(store.offsets().committed, Duration::from_secs(10)));
    let after = sim.process_crash();
    drop(store);
    let mut files = env_files(&after, &root);
    let index: Vec<PathBuf> = files
        .keys()
        .filter(|p| p.parent() == Some(root.join("index").as_path()))
        .cloned()
        .collect();
    assert_eq!(index.len(), 1, "{index:?}");
    // The second page of the index file was never written back; the first
    // (header, slots, first items) was. The commit log is synced (sync).
    let bytes = files.get_mut(&index[0]).unwrap();
    assert!(bytes.len() > 4096);
    bytes[4096..].fill(0);

    let store = Store::open_with_env(
        Arc::new(sim_with_files(FaultPlan::default(), &files)),
        &root,
        cfg,
    )
    .unwrap();
    let end = store.recovery_report().end_offset;
    assert!(store.wait_dispatched(end, Duration::from_secs(10)));
    let mut missing = Vec::new();
    for (i, phys) in &acked {
        let m = message(*i);
        let hits = store
            .query_by_key(&m.topic, &format!("key-{i}"), 0, i64::MAX)
            .unwrap();
        if hits.iter().map(|h| h.phys_offset).collect::<Vec<_>>() != vec![*phys] {
            missing.push(*i);
        }
    }
    assert!(missing.is_empty(), "keys not found: {missing:?}");
}
