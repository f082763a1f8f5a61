//! Regression (found by `reliability_sim`): consume-queue units written
//! after the last checkpoint are trusted by recovery even when a power loss
//! tore them or persisted them out of order.
//!
//! Recovery after a crash re-dispatches every record from the checkpointed
//! dispatched offset, but `Inner::write_units` (store.rs) skips a unit
//! whose queue offset is below the queue's loaded end (`have`), and
//! `ConsumeQueue::find_end` (queue/mod.rs) takes as written any unit with
//! a non-zero size and a non-negative offset, binary-searching only the
//! last file. None of these units was synced (the checkpoint did not vouch
//! for them), so a power loss can leave:
//! - a unit torn inside its 20 bytes (a write cut at a byte or a 512-byte
//!   sector boundary: `TornMode::Prefix` / `Sectors`): offset and size
//!   right, tags code half written. Recovery keeps the wrong tags code, so
//!   tag filtering (and the delivery time of delay queues, which lives in
//!   the same field) is wrong for an acknowledged message;
//! - a hole: an earlier file (or page) of units never written back while a
//!   later one was (`TornMode::Pages`). `find_end` finds the later units,
//!   re-dispatch skips everything below them, and consumers stop at the
//!   hole: acknowledged, durable messages are unreachable through their
//!   queue for good.
//!
//! Fixed in d277d8d: after a crash, re-dispatch rewrites every unit of the
//! re-dispatched records instead of skipping those below the loaded end.
//!
//! Each test builds the exact on-disk state such a power loss leaves (a
//! process-crash image, every commit-log record synced under `sync`, the
//! checkpoint's dispatched offset still 0) and damages only unsynced
//! consume-queue bytes, as the crash could have.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::{env_files, sim_with_files, test_config};
use mqlab_engine::io::sim::{FaultPlan, SimEnv};
use mqlab_engine::message::PROPERTY_TAGS;
use mqlab_engine::queue::tags_code;
use mqlab_engine::{FlushKind, Message, PutStatus, Store, StoreConfig};

fn root() -> PathBuf {
    PathBuf::from("/sim/torn-queue")
}

fn config() -> StoreConfig {
    let mut cfg = test_config(FlushKind::Sync);
    // No checkpoint after the one written at open: nothing the dispatcher
    // writes is vouched for.
    cfg.checkpoint_interval_ms = 600_000;
    cfg
}

fn msg(i: u64) -> Message {
    Message::new("TornQ", format!("body {i}"))
        .with_queue(0)
        .with_keys(format!("key-{i}"))
        .with_tags(format!("tag-{}", i % 7))
}

/// `n` messages in queue TornQ/0, acknowledged under sync; returns the
/// files of the page cache at a process crash (abort marker present) and
/// the messages' physical offsets.
fn written(n: u64) -> (BTreeMap<PathBuf, Vec<u8>>, Vec<u64>) {
    let sim = SimEnv::new(1);
    let store = Store::open_with_env(Arc::new(sim.clone()), root(), config()).unwrap();
    let phys: Vec<u64> = (0..n)
        .map(|i| {
            let r = store.put(&msg(i));
            assert_eq!(r.status, PutStatus::PutOk);
            r.offsets.unwrap().phys_offset
        })
        .collect();
    let end = store.offsets().committed;
    assert!(store.wait_dispatched(end, Duration::from_secs(10)));
    let after = sim.process_crash();
    drop(store);
    (env_files(&after, &root()), phys)
}

fn cq_file(files: &BTreeMap<PathBuf, Vec<u8>>, base_byte: u64) -> PathBuf {
    let p = root()
        .join("consumequeue/TornQ/0")
        .join(format!("{base_byte:020}"));
    assert!(files.contains_key(&p), "{} missing", p.display());
    p
}

fn reopen(files: &BTreeMap<PathBuf, Vec<u8>>) -> Store {
    let sim = sim_with_files(FaultPlan::default(), files);
    let store = Store::open_with_env(Arc::new(sim), root(), config()).unwrap();
    let end = store.recovery_report().end_offset;
    assert!(store.wait_dispatched(end, Duration::from_secs(10)));
    store
}

fn zero(files: &mut BTreeMap<PathBuf, Vec<u8>>, path: &Path, from: usize, to: usize) {
    files.get_mut(path).unwrap()[from..to].fill(0);
}

/// A unit write cut after 16 of its 20 bytes: everything before it
/// persisted, nothing after it.
#[test]
fn torn_unit_gets_its_tags_code_back() {
    let (mut files, phys) = written(10);
    let cq = cq_file(&files, 0);
    let k = 5usize;
    zero(&mut files, &cq, k * 20 + 16, 10 * 20);
    let store = reopen(&files);
    let units = store.queue_units("TornQ", 0, 0, 100).unwrap();
    assert_eq!(units.len(), 10, "every record has its unit again");
    for (i, u) in units.iter().enumerate() {
        let m = msg(i as u64);
        assert_eq!(u.phys_offset, phys[i]);
        assert_eq!(
            u.tags_code,
            tags_code(m.properties.get(PROPERTY_TAGS).map(String::as_str)),
            "unit {i}: tags code of {:?}",
            m.properties.get(PROPERTY_TAGS)
        );
    }
}

/// The second file of units never reached the disk, the third did (page
/// writeback in any order): consumers must still get every message.
#[test]
fn hole_in_units_is_rebuilt() {
    let per_file = config().cq_units_per_file as usize;
    let n = (per_file * 2 + per_file / 2) as u64;
    let (mut files, phys) = written(n);
    let second = cq_file(&files, (per_file * 20) as u64);
    // One 512-byte sector of the second file (units 25.. of it).
    zero(&mut files, &second, 512, 1024);
    let store = reopen(&files);
    let got = store
        .get_from_queue("TornQ", 0, 0, n as usize + 10)
        .unwrap();
    assert_eq!(
        got.iter().map(|m| m.phys_offset).collect::<Vec<_>>(),
        phys,
        "a consumer reads every acknowledged message in order"
    );
}
