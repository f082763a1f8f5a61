//! Fuzz target bodies, shared by the cargo-fuzz binaries
//! (`engine/fuzz/fuzz_targets/`) and the CI harness that runs them over the
//! checked-in seeds and seeded random mutations
//! (`engine/tests/reliability_fuzz.rs`, which includes this file by path).
//!
//! Each body takes arbitrary bytes, must never panic or hang, and checks
//! what it can about the answer: a decoded record re-decodes the same way,
//! a consume-queue unit round-trips, an opened store scans clean, serves
//! only well-formed messages and keeps what it acknowledged after a clean
//! restart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mqlab_engine::index::IndexService;
use mqlab_engine::io::sim::SimEnv;
use mqlab_engine::io::{Env, OpenOptions};
use mqlab_engine::log::checkpoint::{Checkpoint, CheckpointFile};
use mqlab_engine::log::record::{self, CrcCheck, Decoded, DecodedView};
use mqlab_engine::queue::{QueueSet, Unit};
use mqlab_engine::{FlushKind, Message, PutStatus, Store, StoreConfig};

/// A target's body.
pub type Body = fn(&[u8]);

/// Every target: name and body.
pub const TARGETS: [(&str, Body); 5] = [
    ("record_decode", record_decode),
    ("cq_units", cq_units),
    ("index_file", index_file),
    ("checkpoint", checkpoint),
    ("open_store", open_store),
];

/// Segment size of fuzzed stores: about the smallest the config accepts.
pub const SEGMENT_BYTES: u64 = 72 * 1024;
/// Consume-queue units per file of fuzzed stores.
pub const CQ_UNITS: u64 = 64;
/// Index geometry of fuzzed stores.
pub const INDEX_SLOTS: u32 = 64;
/// Index items per file of fuzzed stores.
pub const INDEX_ITEMS: u32 = 256;

fn be(b: &[u8], n: usize) -> u64 {
    b.iter().take(n).fold(0u64, |acc, &x| (acc << 8) | x as u64)
}

/// Input: 8 bytes physical offset, 4 bytes segment room, then a record.
pub fn record_decode(data: &[u8]) {
    if data.len() < 12 {
        return;
    }
    let phys = be(&data[..8], 8) >> 2;
    let room = be(&data[8..12], 4);
    let buf = &data[12..];
    let _ = record::peek_header(buf);
    let _ = record::decode_properties(buf);
    for crc in [CrcCheck::Off, CrcCheck::Present, CrcCheck::Required] {
        let view = record::decode_view(buf, phys, room, crc);
        let owned = record::decode(buf, phys, room, crc);
        match (&view, &owned) {
            (Ok(DecodedView::Message(v)), Ok(Decoded::Message(m))) => {
                assert_eq!(m.phys_offset, phys, "decoded at the wrong offset");
                assert_eq!(v.next_phys_offset(), m.next_phys_offset());
                assert!(m.total_size as u64 <= room, "record longer than its room");
                assert!(m.total_size as usize <= buf.len());
                // The same bytes decode the same way again.
                let again = record::decode(&buf[..m.total_size as usize], phys, room, crc);
                assert!(matches!(again, Ok(Decoded::Message(ref a)) if a == m));
            }
            (Ok(DecodedView::Blank(a)), Ok(Decoded::Blank(b))) => {
                assert_eq!(a, b);
                assert!(*a as u64 <= room && *a >= 8);
            }
            (Err(_), Err(_)) => {}
            _ => panic!("decode_view and decode disagree: {view:?} vs {owned:?}"),
        }
    }
}

/// Input: units per file (1 byte), a cut offset (8 bytes), flags (1
/// byte), then the bytes of one queue's files, cut into files of the
/// queue's size (the last one may be short).
pub fn cq_units(data: &[u8]) {
    if data.len() < 10 {
        return;
    }
    let units = 1 + data[0] as u64 % CQ_UNITS;
    let cut = be(&data[1..9], 8);
    let flags = data[9];
    let bytes = &data[10..];
    for chunk in bytes.chunks(20) {
        if let Some(u) = Unit::decode(chunk) {
            assert_eq!(Unit::decode(&u.encode()), Some(u), "unit round trip");
        }
    }
    let sim = SimEnv::new(1);
    let root = PathBuf::from("/fuzz/consumequeue");
    let qname = if flags & 1 == 1 { "00" } else { "0" };
    let file_bytes = (units * 20) as usize;
    let mut files = BTreeMap::new();
    for (k, chunk) in bytes.chunks(file_bytes).enumerate() {
        let base = (k * file_bytes) as u64;
        files.insert(
            root.join("T").join(qname).join(format!("{base:020}")),
            chunk.to_vec(),
        );
    }
    if flags & 2 == 2 && !files.is_empty() {
        // A missing file in the middle of the series.
        let k = files.len() / 2;
        let key = files.keys().nth(k).cloned();
        if let Some(key) = key {
            files.remove(&key);
        }
    }
    load(&sim, &files);
    let mut notes = Vec::new();
    let Ok(set) = QueueSet::open(Arc::new(sim), &root, units, false, &mut notes) else {
        return;
    };
    for (_, _, cq) in set.all() {
        let before = cq.get_units(0, 100_000).unwrap_or_default();
        assert!(before.len() as u64 <= cq.max_offset().saturating_sub(cq.min_offset()));
        let _ = cq.last_phys_end();
        if let Ok(removed) = cq.truncate_phys(cut) {
            let after = cq.get_units(0, 100_000).unwrap_or_default();
            assert!(after.len() <= before.len(), "truncation added units");
            assert!(removed <= before.len() as u64 + cq.max_offset() + removed);
        }
        let _ = cq.correct_min_offset(cut / 2);
        let _ = cq.get_units(cq.min_offset(), 10);
    }
}

/// Input: slots (1 byte), items (1 byte), flags (1 byte), query range
/// (2 x 8 bytes), then the index file's bytes.
pub fn index_file(data: &[u8]) {
    if data.len() < 19 {
        return;
    }
    let slots = 1 + data[0] as u32 % INDEX_SLOTS;
    let items = 2 + data[1] as u32 % (INDEX_ITEMS - 1);
    let flags = data[2];
    let begin = be(&data[3..11], 8) as i64;
    let end = be(&data[11..19], 8) as i64;
    let mut file = data[19..].to_vec();
    if flags & 1 == 1 {
        file.resize(40 + slots as usize * 4 + items as usize * 20, 0);
    }
    let sim = SimEnv::new(1);
    let dir = PathBuf::from("/fuzz/index");
    let mut files = BTreeMap::new();
    files.insert(dir.join("20250101000000000"), file);
    if flags & 2 == 2 {
        files.insert(dir.join("2025010100000000x"), vec![1, 2, 3]);
    }
    load(&sim, &files);
    let mut notes = Vec::new();
    let Ok(ix) = IndexService::open(Arc::new(sim), &dir, slots, items, false, &mut notes) else {
        return;
    };
    for key in ["T#key-1", "T#common", "T#", "#"] {
        if let Ok(hits) = ix.query(key, begin, end) {
            assert!(hits.len() <= mqlab_engine::index::MAX_HITS);
        }
        let _ = ix.query(key, 0, i64::MAX);
    }
    let _ = ix.truncate_phys(be(&data[3..11], 8) >> 1);
    let _ = ix.put(&["T#new".to_string()], 1 << 20, 1_700_000_000_000);
    let _ = ix.query("T#new", 0, i64::MAX);
}

/// Input: the checkpoint file's bytes.
pub fn checkpoint(data: &[u8]) {
    let cp = Checkpoint::decode(data);
    let again = Checkpoint::decode(&cp.encode());
    assert_eq!(again, cp, "checkpoint round trip");
    let sim = SimEnv::new(1);
    let path = PathBuf::from("/fuzz/checkpoint");
    let mut files = BTreeMap::new();
    files.insert(path.clone(), data.to_vec());
    load(&sim, &files);
    match CheckpointFile::read(&sim, &path) {
        Ok(Some(read)) => assert_eq!(read, cp, "file read differs from decode"),
        Ok(None) => panic!("checkpoint present but not read"),
        Err(_) => {}
    }
}

/// Where a patch of [`store_files`] lands.
fn patch_target(t: u8) -> (&'static str, u64) {
    match t % 8 {
        0 => ("commitlog/00000000000000000000", SEGMENT_BYTES),
        1 => ("commitlog/00000000000000073728", SEGMENT_BYTES),
        2 => ("consumequeue/TopicA/0/00000000000000000000", CQ_UNITS * 20),
        3 => ("consumequeue/TopicA/1/00000000000000000000", CQ_UNITS * 20),
        4 => (
            "index/20250101000000000",
            40 + INDEX_SLOTS as u64 * 4 + INDEX_ITEMS as u64 * 20,
        ),
        5 => ("checkpoint", 4096),
        6 => ("consumequeue/TopicB/0/00000000000000000000", CQ_UNITS * 20),
        _ => ("commitlog/00000000000000147456", SEGMENT_BYTES),
    }
}

/// Store directory from fuzzer bytes: flags (1 byte: bit 0 abort marker,
/// bits 1-2 flush strategy, bit 3 a stray file), then patches `[target
/// (1 byte; bit 7: set the file's length to the offset instead)][offset
/// (3 bytes)][length (2 bytes)][bytes]` onto zero-filled files of their
/// usual sizes (see `patch_target`). A file exists once a patch names it.
pub fn store_files(data: &[u8]) -> (u8, BTreeMap<PathBuf, Vec<u8>>) {
    let root = store_root();
    let mut files: BTreeMap<PathBuf, Vec<u8>> = BTreeMap::new();
    let Some((&flags, mut rest)) = data.split_first() else {
        return (0, files);
    };
    while rest.len() >= 6 {
        let t = rest[0];
        let off = be(&rest[1..4], 3);
        let len = be(&rest[4..6], 2) as usize;
        rest = &rest[6..];
        let (name, size) = patch_target(t);
        let file = files
            .entry(root.join(name))
            .or_insert_with(|| vec![0u8; size as usize]);
        if t & 0x80 != 0 {
            // Truncate or extend: a file cut anywhere, or too long.
            file.resize((off as usize).min(size as usize * 2), 0);
            continue;
        }
        let n = len.min(rest.len());
        let at = (off % size) as usize;
        if file.len() < at + n {
            file.resize(at + n, 0);
        }
        file[at..at + n].copy_from_slice(&rest[..n]);
        rest = &rest[n..];
    }
    if flags & 1 == 1 {
        files.insert(root.join("abort"), Vec::new());
    }
    if flags & 8 == 8 {
        files.insert(root.join("commitlog/0000000000000000000x"), vec![0xff; 64]);
    }
    (flags, files)
}

/// The inverse of [`store_files`] for seeds: patches covering every
/// non-zero run of every file (runs closer than 64 bytes merged).
pub fn encode_store_files(flags: u8, files: &BTreeMap<PathBuf, Vec<u8>>) -> Vec<u8> {
    let root = store_root();
    let mut out = vec![flags];
    for (path, bytes) in files {
        let Ok(rel) = path.strip_prefix(&root) else {
            continue;
        };
        let Some(t) = (0..8u8).find(|&t| Path::new(patch_target(t).0) == rel) else {
            continue;
        };
        let mut i = 0;
        let mut wrote = false;
        while i < bytes.len() {
            if bytes[i] == 0 {
                i += 1;
                continue;
            }
            let start = i;
            let mut end = i;
            let mut zeros = 0;
            while i < bytes.len() && i - start < 60_000 {
                if bytes[i] == 0 {
                    zeros += 1;
                    if zeros > 64 {
                        break;
                    }
                } else {
                    zeros = 0;
                    end = i + 1;
                }
                i += 1;
            }
            out.push(t);
            out.extend_from_slice(&(start as u32).to_be_bytes()[1..]);
            out.extend_from_slice(&((end - start) as u16).to_be_bytes());
            out.extend_from_slice(&bytes[start..end]);
            wrote = true;
        }
        if !wrote {
            // An all-zero file still exists.
            out.extend_from_slice(&[t, 0, 0, 0, 0, 0]);
        }
    }
    out
}

/// Store directory of [`store_files`].
pub fn store_root() -> PathBuf {
    PathBuf::from("/fuzz/store")
}

/// The configuration fuzzed stores open with.
pub fn store_config(flags: u8) -> StoreConfig {
    let mut cfg = StoreConfig::small();
    cfg.segment_bytes = SEGMENT_BYTES;
    cfg.max_message_bytes = 2048;
    cfg.cq_units_per_file = CQ_UNITS;
    cfg.index_slots = INDEX_SLOTS;
    cfg.index_items = INDEX_ITEMS;
    cfg.checkpoint_interval_ms = 60_000;
    cfg.flush.kind = FlushKind::ALL[((flags >> 1) & 3) as usize];
    cfg.flush.flush_interval_ms = 5;
    cfg.flush.commit_interval_ms = 3;
    cfg.flush.sync_flush_timeout_ms = 2_000;
    cfg
}

/// Opens a store directory built from fuzzer bytes (see [`store_files`])
/// on the simulator. Open may fail with an error; if it opens, the log
/// scans clean, reads return only well-formed answers, a put is
/// acknowledged and still there after a clean restart.
pub fn open_store(data: &[u8]) {
    let (flags, files) = store_files(data);
    let sim = SimEnv::new(1);
    load(&sim, &files);
    let cfg = store_config(flags);
    let Ok(store) = Store::open_with_env(Arc::new(sim.clone()), store_root(), cfg.clone()) else {
        return;
    };
    let mut scan_error = None;
    let mut records = 0u64;
    let _ = store.scan(store.min_offset(), &mut |r| match r {
        Ok(m) => {
            records += 1;
            assert!(m.total_size >= 8);
            true
        }
        Err(e) => {
            scan_error = Some(e.to_string());
            false
        }
    });
    assert_eq!(scan_error, None, "a recovered store must scan clean");
    let end = store.offsets().committed;
    store.wait_dispatched(end, Duration::from_secs(5));
    for q in store.queues() {
        if let Ok(msgs) = store.get_from_queue(&q.topic, q.queue_id, 0, 64) {
            for m in msgs {
                assert_eq!(
                    (m.topic.as_str(), m.queue_id),
                    (q.topic.as_str(), q.queue_id)
                );
            }
        }
        for key in ["key-1", "common"] {
            if let Ok(hits) = store.query_by_key(&q.topic, key, 0, i64::MAX) {
                for h in hits {
                    assert!(
                        h.keys().any(|k| k == key),
                        "key lookup returned another key"
                    );
                }
            }
        }
    }
    let msg = Message::new("FuzzTopic", b"acknowledged".to_vec())
        .with_queue(1)
        .with_keys("fuzz-key");
    let r = store.put(&msg);
    let acked = match (r.status, r.offsets) {
        (PutStatus::PutOk, Some(o)) => {
            // Under pool an acknowledged put is readable once committed.
            let end = o.phys_offset + o.wrote_bytes as u64;
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while store.offsets().committed < end && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            let got = store
                .get(o.phys_offset)
                .expect("read back an acknowledged put");
            assert_eq!(got.body, msg.body);
            Some(o.phys_offset)
        }
        _ => None,
    };
    let clean = store.shutdown();
    if let Some(phys) = acked {
        clean.expect("clean shutdown of a healthy disk");
        let store = Store::open_with_env(Arc::new(sim), store_root(), cfg)
            .expect("reopen after a clean shutdown");
        let got = store
            .get(phys)
            .expect("acknowledged put survives a clean restart");
        assert_eq!(got.body, msg.body);
        drop(store);
    }
}

/// Writes `files` onto the simulated disk as durable bytes.
fn load(sim: &SimEnv, files: &BTreeMap<PathBuf, Vec<u8>>) {
    for (path, bytes) in files {
        if let Some(parent) = path.parent() {
            sim.create_dir_all(parent).expect("sim mkdir");
        }
        let f = sim
            .open(
                path,
                OpenOptions {
                    create: true,
                    ..OpenOptions::default()
                },
            )
            .expect("sim open");
        if !bytes.is_empty() {
            f.write_at(0, bytes).expect("sim write");
        }
        f.sync_data().expect("sim sync");
    }
}
