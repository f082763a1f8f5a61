//! Corrupt stores, checked-in fixtures (`tests/fixtures/corrupt/<case>/`): a
//! clean store with its `abort` marker restored and one corruption applied,
//! plus a `case.json` saying what was done and what recovery must report.
//! The generator is `scripts/corrupt-fixtures.rs`
//! (`scripts/gen-corrupt-fixtures.sh`). Hostile files and seeded mutations
//! are in `corruption.rs`.
//!
//! The invariant: opening never panics, recovery reports exactly the cut
//! the case describes, and no read returns a message other than the one
//! that was put, byte for byte.

mod common;
mod corrupt_fixture;

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::Duration;

use common::{copy_tree, number_of, read_tree, same_as_put, small_message, store_thread_panics};
use corrupt_fixture::{fixtures_root, put_recorded, small_config, Case, Rec};
use mqlab_engine::{PutStatus, RecoveryReport, Store, StoreConfig};

fn load_case(name: &str) -> Case {
    let path = fixtures_root().join(name).join("case.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run scripts/gen-corrupt-fixtures.sh",
            path.display()
        )
    });
    serde_json::from_str(&text).unwrap()
}

fn check_report(rep: &RecoveryReport, case: &Case, dir: &Path) {
    let name = &case.case;
    let e = &case.expect;
    assert_eq!(rep.abnormal, e.abnormal, "{name}: {rep:#?}");
    assert_eq!(rep.end_offset, e.end_offset, "{name}: {rep:#?}");
    let log_cuts: Vec<_> = rep
        .truncated
        .iter()
        .filter(|t| t.file.starts_with(dir.join("commitlog")))
        .collect();
    match &e.commitlog_cut {
        Some(cut) => assert!(
            log_cuts.iter().any(|t| t.file == dir.join(&cut.file)
                && t.offset == cut.offset
                && t.reason.contains(&cut.reason_contains)),
            "{name}: no truncation of {} at {} ({}) in {rep:#?}",
            cut.file,
            cut.offset,
            cut.reason_contains
        ),
        None => assert!(log_cuts.is_empty(), "{name}: {rep:#?}"),
    }
    let queue_cuts = rep
        .truncated
        .iter()
        .filter(|t| t.file.starts_with(dir.join("consumequeue")))
        .inspect(|t| {
            assert!(
                t.reason
                    .contains(&format!("commit-log end {}", e.end_offset)),
                "{name}: {t:?}"
            )
        })
        .count();
    assert_eq!(queue_cuts > 0, e.queue_units_cut, "{name}: {rep:#?}");
}

/// Everything in `live` is readable through every path, exactly as put;
/// nothing in `gone` is.
fn check_contents(store: &Store, live: &[Rec], gone: &[Rec], label: &str) {
    for r in live {
        let m = store
            .get(r.phys)
            .unwrap_or_else(|e| panic!("{label}: get {} at {}: {e}", r.i, r.phys));
        same_as_put(&m, &small_message(r.i)).unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_eq!(m.queue_offset, r.queue_offset, "{label}: message {}", r.i);
        assert_eq!(number_of(&m), Some(r.i), "{label}");
    }
    for r in gone {
        assert!(
            store.get(r.phys).is_err(),
            "{label}: message {} at {} is past the cut but readable",
            r.i,
            r.phys
        );
    }
    let mut queues: BTreeMap<(String, u32), Vec<&Rec>> = BTreeMap::new();
    for r in live.iter().chain(gone) {
        queues.entry((r.topic.clone(), r.queue_id)).or_default();
    }
    for r in live {
        queues
            .get_mut(&(r.topic.clone(), r.queue_id))
            .unwrap()
            .push(r);
    }
    let infos = store.queues();
    for ((topic, qid), want) in &queues {
        let got = store
            .get_from_queue(topic, *qid, 0, 10_000)
            .unwrap_or_else(|e| panic!("{label}: queue {topic}/{qid}: {e}"));
        let got_phys: Vec<u64> = got.iter().map(|m| m.phys_offset).collect();
        let want_phys: Vec<u64> = want.iter().map(|r| r.phys).collect();
        assert_eq!(got_phys, want_phys, "{label}: queue {topic}/{qid}");
        for (k, m) in got.iter().enumerate() {
            assert_eq!(m.queue_offset, k as u64, "{label}: queue {topic}/{qid}");
        }
        let max = infos
            .iter()
            .find(|q| &q.topic == topic && q.queue_id == *qid)
            .map_or(0, |q| q.max_offset);
        assert_eq!(
            max,
            want.len() as u64,
            "{label}: max offset of {topic}/{qid}"
        );
    }
    for r in live {
        let hits = store
            .query_by_key(&r.topic, &format!("key-{}", r.i), 0, i64::MAX)
            .unwrap();
        let phys: Vec<u64> = hits.iter().map(|m| m.phys_offset).collect();
        assert_eq!(phys, vec![r.phys], "{label}: key lookup of {}", r.i);
    }
    for r in gone {
        let hits = store
            .query_by_key(&r.topic, &format!("key-{}", r.i), 0, i64::MAX)
            .unwrap();
        assert!(hits.is_empty(), "{label}: key of cut message {}", r.i);
    }
}

fn open_fixture(dir: &Path, cfg: StoreConfig, label: &str) -> Store {
    catch_unwind(AssertUnwindSafe(|| Store::open(dir, cfg)))
        .unwrap_or_else(|_| panic!("{label}: open panicked"))
        .unwrap_or_else(|e| panic!("{label}: open failed: {e}"))
}

fn fixture_scenario(name: &str) {
    let panics = store_thread_panics();
    let case = load_case(name);
    let src = fixtures_root().join(name);
    let (live, gone) = case.records.split_at(case.expect.intact);

    // Read-only: recovery runs in memory; the directory stays as it was.
    let before = read_tree(&src);
    {
        let label = format!("{name} (read-only)");
        let cfg = StoreConfig {
            read_only: true,
            ..small_config()
        };
        let store = open_fixture(&src, cfg, &label);
        check_report(store.recovery_report(), &case, &src);
        check_contents(&store, live, gone, &label);
        let r = store.put(&small_message(0));
        assert_eq!(r.status, PutStatus::ServiceNotAvailable, "{label}");
        store.shutdown().unwrap();
    }
    let after = read_tree(&src);
    let changed: Vec<_> = before
        .keys()
        .chain(after.keys())
        .filter(|p| before.get(*p) != after.get(*p))
        .collect();
    assert!(
        changed.is_empty(),
        "{name}: read-only open changed {changed:?}"
    );

    // Writable, on a copy: recovery, then new puts, then a clean restart.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    copy_tree(&src, &dir);
    let store = open_fixture(&dir, small_config(), name);
    check_report(store.recovery_report(), &case, &dir);
    check_contents(&store, live, gone, name);
    let mut all = live.to_vec();
    for i in 1000..1040 {
        let r = put_recorded(&store, i);
        let before_in_queue = all
            .iter()
            .filter(|x| x.topic == r.topic && x.queue_id == r.queue_id)
            .count() as u64;
        assert_eq!(r.queue_offset, before_in_queue, "{name}: new put {i}");
        all.push(r);
    }
    assert!(store.wait_dispatched(store.offsets().flushed, Duration::from_secs(10)));
    check_contents(&store, &all, &[], &format!("{name} after new puts"));
    store.shutdown().unwrap();
    let store = open_fixture(&dir, small_config(), name);
    let rep = store.recovery_report();
    assert!(
        !rep.abnormal && rep.truncated.is_empty(),
        "{name}: {rep:#?}"
    );
    check_contents(&store, &all, &[], &format!("{name} after clean restart"));
    store.shutdown().unwrap();
    assert_eq!(store_thread_panics(), panics, "{name}: a thread panicked");
}

#[test]
fn fixture_torn_tail() {
    fixture_scenario("torn-tail");
}

#[test]
fn fixture_header_bitflip() {
    fixture_scenario("header-bitflip");
}

#[test]
fn fixture_body_bitflip() {
    fixture_scenario("body-bitflip");
}

#[test]
fn fixture_zero_tail() {
    fixture_scenario("zero-tail");
}

#[test]
fn fixture_truncated_cq() {
    fixture_scenario("truncated-cq");
}

/// Recovery re-dispatches from the checkpointed offset (abnormal) or from
/// the highest queue end (normal), never from where a short queue ends
/// (`dispatch_from` in `Store::open_with_env`); `Inner::write_units` then
/// writes the re-dispatched units past the hole, which breaks the queue's
/// "units are a prefix" invariant: reads stop at the first zero unit.
#[test]
fn fixture_truncated_cq_deep() {
    fixture_scenario("truncated-cq-deep");
}
