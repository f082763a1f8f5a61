//! Regression (found by `reliability_sim` in the full run of
//! scripts/reliability.sh at 1c7dc2e, i.e. with the fixes of d277d8d and
//! b491525; seed 8589939636, group): after power losses that persisted
//! unsynced index writes torn or out of order, the recovered store no
//! longer finds some keys of messages that are in the log, far below the
//! recovery's parse start (key-23 at 35732; parsing started at 131072).
//! 17 lineages of the full run (100,000 crash points) ended so, under
//! every flush strategy; the images they started from all reproduce.
//!
//! Unlike `regression_index_after_nested_recovery_crash.rs` (an image left
//! by the engine before b491525), this image was written by the engine of
//! the time: recovery kept the newest index file's items only up to the
//! first one at or past the checkpoint and trusted every kept item's link
//! to its predecessor, so a link or slot that a torn or reordered write had
//! damaged cut the chain of older keys. Fixed: recovery now keeps every
//! item below the checkpoint wherever it sits, zeroes the others, and
//! recomputes every link and slot from the kept items.
//!
//! The fixture (`fixtures/reliability/index-after-torn-crash/image/`) is
//! the exact disk image the failing recovery started from.

mod common;

use mqlab_engine::FlushKind;

#[test]
fn every_key_in_the_log_is_found() {
    let missing =
        common::keys_missing_after_replaying_image("index-after-torn-crash", FlushKind::Group);
    assert!(
        missing.is_empty(),
        "keys not found (message, offset): {missing:?}"
    );
}
