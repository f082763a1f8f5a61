//! `StoreConfig::warm_segments` (RocketMQ's warmMapedFileEnable): commit-log
//! segments are written with zeros before the appender reaches them, on a
//! thread of their own, and nothing about the data changes.
//!
//! - A new store's first segment has every block allocated when `open`
//!   returns (the point of warming: no ext4 allocation for the
//!   fdatasyncs that acknowledge puts to commit).
//! - Puts across several segments, with the next segment warmed while the
//!   one before fills, read back exactly; at least some later segments
//!   are warmed whole.
//! - A clean shutdown leaves no warmed segment beyond the log's end; a
//!   reopen finds every acknowledged message, under each backend that
//!   writes through a file (pwrite, mmap).

mod common;

use std::os::unix::fs::MetadataExt;

use common::{same_as_put, small_message, test_config};
use mqlab_engine::{BackendKind, FlushKind, PutStatus, Store};

fn allocated_bytes(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).unwrap().blocks() * 512
}

fn segment_files(dir: &std::path::Path) -> Vec<(u64, std::path::PathBuf)> {
    let mut v: Vec<_> = std::fs::read_dir(dir.join("commitlog"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| {
            let base = p.file_name()?.to_str()?.parse::<u64>().ok()?;
            Some((base, p))
        })
        .collect();
    v.sort();
    v
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else if e.file_name() != "lock" {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

fn warm_round_trip(backend: BackendKind, flush: FlushKind) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(flush);
    cfg.backend = backend;
    cfg.warm_segments = true;
    cfg.segment_bytes = 2 << 20;
    let seg = cfg.segment_bytes;
    let store = Store::open(dir.path(), cfg.clone()).unwrap();
    let first = segment_files(dir.path());
    assert_eq!(
        first.len(),
        1,
        "{backend:?}: the first segment exists at open"
    );
    assert!(
        allocated_bytes(&first[0].1) >= seg,
        "{backend:?}: the first segment is allocated whole at open ({} of {seg} bytes)",
        allocated_bytes(&first[0].1)
    );
    assert_eq!(store.segments_warmed(), Some(1));
    let mut acked = Vec::new();
    let mut i = 0u64;
    while store.offsets().written < 5 * seg {
        let msg = small_message(i);
        let r = store.put(&msg);
        assert_eq!(r.status, PutStatus::PutOk, "{backend:?} put {i}");
        acked.push((msg, r.offsets.unwrap().phys_offset));
        i += 1;
    }
    let warmed = store.segments_warmed().unwrap();
    let end = store.offsets().written;
    for (msg, phys) in &acked {
        same_as_put(&store.get(*phys).unwrap(), msg).unwrap();
    }
    store.shutdown().unwrap();
    assert!(
        warmed >= 2,
        "{backend:?}: later segments warmed whole before use: {warmed}"
    );
    let files = segment_files(dir.path());
    let last = files.last().unwrap().0;
    assert_eq!(
        last,
        end - end % seg,
        "{backend:?}: no warmed segment is left past the end after a clean shutdown: {files:?}"
    );
    let store = Store::open(dir.path(), cfg).unwrap();
    assert_eq!(store.offsets().written, end);
    for (msg, phys) in &acked {
        same_as_put(&store.get(*phys).unwrap(), msg).unwrap();
    }
    store.shutdown().unwrap();
}

#[test]
fn warmed_segments_hold_every_message_pwrite_group() {
    warm_round_trip(BackendKind::Pwrite, FlushKind::Group);
}

#[test]
fn warmed_segments_hold_every_message_mmap_async() {
    warm_round_trip(BackendKind::Mmap, FlushKind::Async);
}

#[test]
fn warmed_segments_hold_every_message_pwrite_pool() {
    warm_round_trip(BackendKind::Pwrite, FlushKind::Pool);
}

#[test]
fn a_store_killed_with_a_warmed_segment_ahead_recovers_every_message() {
    // A copy of the files of a live store is what a kill leaves (every
    // put here was acknowledged after its fdatasync): here, with a warmed
    // segment past the end.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(FlushKind::Sync);
    cfg.warm_segments = true;
    cfg.segment_bytes = 1 << 20;
    let seg = cfg.segment_bytes;
    let store = Store::open(dir.path(), cfg.clone()).unwrap();
    let mut acked = Vec::new();
    let mut i = 0u64;
    // Into the second half of the second segment: the third is warmed.
    while store.offsets().written < seg + seg * 3 / 4 {
        let msg = small_message(i);
        let r = store.put(&msg);
        assert_eq!(r.status, PutStatus::PutOk);
        acked.push((msg, r.offsets.unwrap().phys_offset));
        i += 1;
    }
    // Wait for the warming of the third segment to finish.
    let t = std::time::Instant::now();
    while store.segments_warmed() < Some(3) && t.elapsed() < std::time::Duration::from_secs(20) {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(store.segments_warmed(), Some(3));
    assert!(segment_files(dir.path()).iter().any(|(b, _)| *b == 2 * seg));
    let killed = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), killed.path());
    store.shutdown().unwrap();
    let store = Store::open(killed.path(), cfg).unwrap();
    for (msg, phys) in &acked {
        same_as_put(&store.get(*phys).unwrap(), msg).unwrap();
    }
    let r = store.put(&small_message(i));
    assert_eq!(r.status, PutStatus::PutOk);
    store.shutdown().unwrap();
}
