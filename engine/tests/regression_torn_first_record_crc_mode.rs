//! Regression (found by `reliability_sim`, seeds 8589934839 and
//! 12884903128): when the first record of the log is torn inside its
//! properties, recovery returns it to consumers with garbage properties
//! (`KEYS = "key-1 co\0\0…"`, TAGS gone, or a `__CRC32#` user property
//! holding `"969883045\0\0"`).
//!
//! `detect_crc_mode` (store.rs) picks the CRC checks from the first
//! record alone: it fails `CrcCheck::Required` (its `__CRC32#` property is
//! torn away), passes `CrcCheck::Present` (the body and its CRC are
//! intact, and a record without the property is not checked further), so
//! the whole store runs with `Present` and accepts the torn record. A power
//! loss during the very first write of a store is enough (the write is
//! cut after the body; the unsynced tail never reaches the disk).
//!
//! A fix: do not downgrade from `Required` on the evidence of a record
//! that fails it (mqlab's own stores always carry the record CRC; decide
//! from the checkpoint's mqlab extension or `record_crc`, or look for a
//! record that passes), and treat a `__CRC32#` whose value is not ten
//! digits as corrupt in every mode.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use common::{env_files, message, same_as_put, sim_with_files, test_config};
use mqlab_engine::io::sim::{FaultPlan, SimEnv};
use mqlab_engine::{FlushKind, PutStatus, Store};

#[test]

fn a_torn_first_record_is_not_returned() {
    let root = PathBuf::from("/sim/torn-first");
    let cfg = test_config(FlushKind::Async);
    let sim = SimEnv::new(1);
    let store = Store::open_with_env(Arc::new(sim.clone()), &root, cfg.clone()).unwrap();
    let r = store.put(&message(1));
    assert_eq!(r.status, PutStatus::PutOk);
    let size = r.offsets.unwrap().wrote_bytes as usize;
    let crashed = sim.process_crash();
    drop(store);
    let mut files = env_files(&crashed, &root);
    let seg = files
        .get_mut(&root.join("commitlog/00000000000000000000"))
        .unwrap();
    // The write cut inside the KEYS value: everything after "key-1 co"
    // never reached the disk.
    let at = seg[..size]
        .windows(8)
        .position(|w| w == b"key-1 co")
        .unwrap()
        + 8;
    seg[at..size].fill(0);
    let store = Store::open_with_env(
        Arc::new(sim_with_files(FaultPlan::default(), &files)),
        &root,
        cfg,
    )
    .unwrap();
    if let Ok(m) = store.get(0) {
        same_as_put(&m, &message(1)).unwrap_or_else(|e| panic!("torn record returned: {e}"));
    }
    let mut returned = Vec::new();
    let _ = store.scan(0, &mut |m| {
        if let Ok(m) = m {
            returned.push(m.properties.clone());
        }
        true
    });
    assert!(returned.is_empty(), "scan returned {returned:?}");
}
