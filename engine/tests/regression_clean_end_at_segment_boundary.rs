//! Regression (found by `reliability_hostile`): a checkpoint whose clean
//! end offset is a segment boundary below the real end of the log makes a
//! normal recovery delete every later segment, with all their
//! acknowledged messages.
//!
//! `is_end_of_data` (store.rs) accepts a clean end at a segment boundary
//! without looking at what follows (it checks that the 8 bytes after any
//! other offset are zero), the parse up to the boundary succeeds, and
//! `CommitLog::truncate` removes the segments past it. A checkpoint is one
//! 4 KiB file rewritten in place; a stale or damaged one (or one left by
//! another writer, FORMAT.md section 7) must not outrank the commit log.
//!
//! The fix: at a segment boundary, trust the clean end only when no
//! segment starts there or its first 8 bytes are zero (else parse on, as
//! after a crash).

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use common::{env_files, sim_with_files, small_message, test_config};
use mqlab_engine::io::sim::{FaultPlan, SimEnv};
use mqlab_engine::{FlushKind, PutStatus, Store};

#[test]
fn clean_end_at_an_earlier_segment_boundary_keeps_later_segments() {
    let root = PathBuf::from("/sim/clean-end");
    let mut cfg = test_config(FlushKind::Sync);
    cfg.segment_bytes = 72 * 1024;
    cfg.max_message_bytes = 2 * 1024;
    let sim = SimEnv::new(1);
    let store = Store::open_with_env(Arc::new(sim.clone()), &root, cfg.clone()).unwrap();
    let acked: Vec<(u64, u64)> = (0..260u64)
        .map(|i| {
            let r = store.put(&small_message(i));
            assert_eq!(r.status, PutStatus::PutOk);
            (i, r.offsets.unwrap().phys_offset)
        })
        .collect();
    let end = store.offsets().written;
    store.shutdown().unwrap();
    assert!(end > 2 * cfg.segment_bytes);
    let mut files = env_files(&sim, &root);
    let cp = files.get_mut(&root.join("checkpoint")).unwrap();
    // The extension's clean end offset (FORMAT.md section 4), moved back
    // to the start of the second segment.
    cp[88..96].copy_from_slice(&cfg.segment_bytes.to_be_bytes());
    let store = Store::open_with_env(
        Arc::new(sim_with_files(FaultPlan::default(), &files)),
        &root,
        cfg,
    )
    .unwrap();
    let lost: Vec<u64> = acked
        .iter()
        .filter(|(_, phys)| store.get(*phys).is_err())
        .map(|(i, _)| *i)
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged messages lost (from {:?}); recovery: {:#?}",
        lost.len(),
        lost.first(),
        store.recovery_report()
    );
}
