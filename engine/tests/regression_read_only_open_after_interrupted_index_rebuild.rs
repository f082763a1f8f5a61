//! Regression (found by `reliability_kill9` in the full run of
//! scripts/reliability.sh at a1fccd9, pool/uring and group/uring): a
//! process killed during crash recovery, while the newest index file's
//! rebuild was zeroing the items it re-adds, left items zeroed under a
//! header that still counted them. `mqlab verify` opens read-only, and
//! read-only recovery skipped the rebuild, so re-dispatch took the stale
//! header's end offset as "already indexed" and the keys of those records
//! looked lost (a writable open rebuilt and found them). Read-only opens
//! now rebuild too, on their in-memory overlay.

mod common;

use std::time::Duration;

use common::{message, test_config};
use mqlab_engine::{FlushKind, Store};

const N: u64 = 40;

fn missing_keys(store: &Store) -> Vec<u64> {
    let end = store.recovery_report().end_offset;
    assert!(store.wait_dispatched(end, Duration::from_secs(10)));
    (0..N)
        .filter(|&i| {
            let m = message(i);
            store
                .query_by_key(&m.topic, &format!("key-{i}"), 0, i64::MAX)
                .unwrap()
                .is_empty()
        })
        .collect()
}

#[test]
fn read_only_open_finds_keys_after_a_rebuild_was_cut() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = test_config(FlushKind::Sync);
    let store = Store::open(dir.path(), cfg.clone()).unwrap();
    for i in 0..N {
        assert!(store.put(&message(i)).is_ok());
    }
    let end = store.offsets().committed;
    assert!(store.wait_dispatched(end, Duration::from_secs(10)));
    // A process crash: the abort marker stays, the next open recovers.
    drop(store);

    // The state a kill during the rebuild leaves: the header (flushed
    // earlier) counts every item, the first ones are already zeroed.
    let index_dir = dir.path().join("index");
    let mut files: Vec<_> = std::fs::read_dir(&index_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 1, "the test needs one index file: {files:?}");
    let mut bytes = std::fs::read(&files[0]).unwrap();
    let items_at = 40 + cfg.index_slots as usize * 4;
    let item = |b: &[u8], n: usize| b[items_at + n * 20..items_at + n * 20 + 20].to_vec();
    let count = (1..cfg.index_items as usize)
        .take_while(|&n| item(&bytes, n) != [0u8; 20])
        .count();
    assert!(
        count > 30,
        "expected more than 30 index items, found {count}"
    );
    let last_phys = u64::from_be_bytes(item(&bytes, count)[4..12].try_into().unwrap());
    bytes[24..32].copy_from_slice(&last_phys.to_be_bytes());
    bytes[36..40].copy_from_slice(&(count as u32 + 1).to_be_bytes());
    for n in 1..=count / 2 {
        bytes[items_at + n * 20..items_at + n * 20 + 20].fill(0);
    }
    std::fs::write(&files[0], &bytes).unwrap();

    let mut ro = cfg.clone();
    ro.read_only = true;
    let store = Store::open(dir.path(), ro).unwrap();
    assert!(store.recovery_report().abnormal);
    let missing = missing_keys(&store);
    assert!(
        missing.is_empty(),
        "read-only open: keys not found: {missing:?}"
    );
    drop(store);
    assert_eq!(
        std::fs::read(&files[0]).unwrap(),
        bytes,
        "a read-only open modified the index file"
    );

    let store = Store::open(dir.path(), cfg).unwrap();
    let missing = missing_keys(&store);
    assert!(
        missing.is_empty(),
        "writable open: keys not found: {missing:?}"
    );
    store.shutdown().unwrap();
}
