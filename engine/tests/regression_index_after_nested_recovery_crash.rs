//! Regression (found by `reliability_sim`, seed 17179869338, pool): after
//! a power loss with sector-granular writeback in any order, a second
//! such power loss during the first recovery, and a third recovery, the
//! key of a message far below the checkpoint (key-23 at physical offset
//! 35951; parsing started at 131072) is no longer found by the index,
//! though the message is in the log.
//!
//! Index files are rewritten in place (items, hash slots, header) and
//! recovery's rebuild of the newest file's tail (d277d8d) writes over
//! entries the checkpoint already vouched for; when that rebuild is itself
//! cut by a power loss that persists some of its writes and not others, a
//! slot can point at an item that never reached the disk, cutting the
//! chain of older keys, and the next recovery trusts the checkpoint and
//! re-adds only records past it. A fix: sync the rebuilt tail before the
//! rebuild can change a slot an older item depends on (write items before
//! slots with a sync between), or rebuild from the start of the newest
//! file rather than from the checkpoint.
//!
//! The fixture (`fixtures/reliability/index-nested-recovery/image/`) is the
//! exact disk image the failing (third) recovery started from, dumped by
//! the simulator.

mod common;

use mqlab_engine::FlushKind;

#[test]
#[ignore = "open: this disk image was produced by an engine whose index rebuild was not sealed before re-dispatch could create a newer file; the current engine seals it first, so the state should not recur, but recovering an older index file with damaged slots needs a full index rebuild, not done yet"]
fn old_keys_survive_a_crash_during_recovery() {
    let missing =
        common::keys_missing_after_replaying_image("index-nested-recovery", FlushKind::Pool);
    assert!(
        missing.is_empty(),
        "keys not found (message, offset): {missing:?}"
    );
}
