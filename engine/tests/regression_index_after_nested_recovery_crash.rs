//! Regression (found by `reliability_sim`, seed 17179869338, pool): after
//! a power loss with sector-granular writeback in any order, a second
//! such power loss during the first recovery, and a third recovery, the
//! key of a message far below the checkpoint (key-23 at physical offset
//! 35951; parsing started at 131072) is no longer found by the index,
//! though the message is in the log.
//!
//! Index files are rewritten in place (items, hash slots, header) and the
//! recovery of the time rebuilt only the newest file's tail (d277d8d),
//! trusting the links of the items it kept; when that rebuild was itself
//! cut by a power loss that persisted some of its writes and not others, a
//! slot or link could point at an item that never reached the disk, cutting
//! the chain of older keys. Fixed: every crash recovery recomputes every
//! link and slot of the newest file from the items themselves (nothing is
//! moved, so the rebuild is idempotent and a crash during it is repaired by
//! the next one).
//!
//! The fixture (`fixtures/reliability/index-nested-recovery/image/`) is the
//! exact disk image the failing (third) recovery started from, dumped by
//! the simulator.

mod common;

use mqlab_engine::FlushKind;

#[test]
fn old_keys_survive_a_crash_during_recovery() {
    let missing =
        common::keys_missing_after_replaying_image("index-nested-recovery", FlushKind::Pool);
    assert!(
        missing.is_empty(),
        "keys not found (message, offset): {missing:?}"
    );
}
