//! A store written by an independent implementation (rocketmq-store 1.0.0,
//! see fixtures/rocketmq-store-1/README.md) opens and reads correctly:
//! geometry comes from its files, not from our configuration.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mqlab_engine::{Message, PutStatus, Store, StoreConfig};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rocketmq-store-1")
}

struct Expected {
    topic: String,
    queue_id: u32,
    queue_offset: u64,
    phys_offset: u64,
    size: u32,
    body: Vec<u8>,
    keys: String,
    tags: String,
    uniq: String,
}

fn manifest() -> Vec<Expected> {
    let text = std::fs::read_to_string(fixture().join("manifest.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| Expected {
            topic: m["topic"].as_str().unwrap().into(),
            queue_id: m["queue_id"].as_u64().unwrap() as u32,
            queue_offset: m["queue_offset"].as_u64().unwrap(),
            phys_offset: m["phys_offset"].as_u64().unwrap(),
            size: m["size"].as_u64().unwrap() as u32,
            body: m["body_utf8"].as_str().unwrap().as_bytes().to_vec(),
            keys: m["keys"].as_str().unwrap().into(),
            tags: m["tags"].as_str().unwrap().into(),
            uniq: m["uniq_key"].as_str().unwrap().into(),
        })
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn check(store: &Store, expected: &[Expected], appended: u64) {
    assert_eq!(store.segment_bytes(), 65536, "segment size from the files");
    for e in expected {
        let m = store.get(e.phys_offset).unwrap();
        assert_eq!(m.topic, e.topic);
        assert_eq!(m.queue_id, e.queue_id);
        assert_eq!(m.queue_offset, e.queue_offset);
        assert_eq!(m.total_size, e.size);
        assert_eq!(m.body, e.body);
        assert_eq!(m.tags(), Some(e.tags.as_str()));
        assert_eq!(m.keys().collect::<Vec<_>>(), vec![e.keys.as_str()]);
        let q = store
            .get_from_queue(&e.topic, e.queue_id, e.queue_offset, 1)
            .unwrap();
        assert_eq!(q.len(), 1);
        assert_eq!(q[0].phys_offset, e.phys_offset);
    }
    for e in expected.iter().step_by(7) {
        let hits = store.query_by_key(&e.topic, &e.keys, 0, i64::MAX).unwrap();
        assert_eq!(
            hits.iter().map(|h| h.phys_offset).collect::<Vec<_>>(),
            vec![e.phys_offset],
            "key {}",
            e.keys
        );
        assert!(!e.uniq.is_empty());
    }
    let queues = store.queues();
    assert_eq!(queues.len(), 6);
    assert!(queues.iter().all(|q| q.max_offset >= 50));
    assert_eq!(
        queues.iter().map(|q| q.max_offset).sum::<u64>(),
        300 + appended
    );
}

#[test]
fn opens_and_reads_a_rocketmq_store() {
    let expected = manifest();
    assert_eq!(expected.len(), 300);
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&fixture().join("store"), tmp.path());
    // Our defaults (1 GiB segments, 300,000-unit queues, 5M-slot indexes)
    // differ from the fixture's: the files must win.
    let store = Store::open(tmp.path(), StoreConfig::default()).unwrap();
    let rep = store.recovery_report().clone();
    assert!(!rep.abnormal);
    assert!(rep.truncated.is_empty(), "{rep:?}");
    assert_eq!(rep.end_offset, 151_180);
    check(&store, &expected, 0);

    // Appending continues its queues; a clean restart keeps both.
    let r = store.put(
        &Message::new("FixtureTopicA", b"ours".to_vec())
            .with_queue(1)
            .with_keys("mine"),
    );
    assert_eq!(r.status, PutStatus::PutOk, "{:?}", r.detail);
    assert_eq!(r.offsets.unwrap().queue_offset, 50);
    assert_eq!(r.offsets.unwrap().phys_offset, 151_180);
    store.shutdown().unwrap();
    let store = Store::open(tmp.path(), StoreConfig::default()).unwrap();
    check(&store, &expected, 1);
    let hits = store
        .query_by_key("FixtureTopicA", "mine", 0, i64::MAX)
        .unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].body, b"ours");
    store.shutdown().unwrap();
}

#[test]
fn read_only_open_changes_nothing() {
    let expected = manifest();
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&fixture().join("store"), tmp.path());
    // Pretend it crashed, so recovery has work to do (in memory only).
    std::fs::write(tmp.path().join("abort"), b"").unwrap();
    let before = snapshot(tmp.path());
    let store = Store::open(
        tmp.path(),
        StoreConfig {
            read_only: true,
            ..StoreConfig::default()
        },
    )
    .unwrap();
    assert!(store.recovery_report().abnormal);
    check(&store, &expected, 0);
    let r = store.put(&Message::new("FixtureTopicA", b"x".to_vec()));
    assert_eq!(r.status, PutStatus::ServiceNotAvailable);
    store.shutdown().unwrap();
    assert_eq!(
        snapshot(tmp.path()),
        before,
        "read-only open modified the directory"
    );
}
