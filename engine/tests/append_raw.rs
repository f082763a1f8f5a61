//! `Store::append_raw` (issue 14: a slave's append): a store fed another
//! store's commit log in chunks cut at arbitrary (seeded) points ends up
//! with a byte-identical commit log and the same queues, under every
//! flush strategy and across a crash of the copy; a chunk that does not
//! start at the write end, or holds anything that does not decode at its
//! position, is refused whole with nothing written; in slave mode puts
//! are refused and queues never reach past the flushed offset.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{message, read_tree, test_config};
use mqlab_engine::{Error, FlushKind, Store, StoreConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Puts `n` messages into a new store in `dir`, shuts it down cleanly and
/// returns its commit log as one byte stream from 0 to its end.
fn master_log(dir: &Path, cfg: &StoreConfig, n: u64) -> Vec<u8> {
    let store = Store::open(dir, cfg.clone()).unwrap();
    for i in 0..n {
        assert!(store.put(&message(i)).is_ok(), "put {i}");
    }
    let end = store.offsets().written;
    assert!(
        end > 3 * cfg.segment_bytes,
        "the test wants several segments (end {end})"
    );
    store.shutdown().unwrap();
    let mut stream = Vec::new();
    for (_, bytes) in read_tree(&dir.join("commitlog")) {
        stream.extend_from_slice(&bytes);
    }
    stream.truncate(end as usize);
    stream
}

/// Feeds `stream[from..to]` to `store` in chunks of seeded random sizes
/// (1 byte to 3 records), carrying each untaken tail into the next chunk,
/// as the HA slave does. Every byte must be taken by `to` when `to` is
/// the stream's end; otherwise the untaken tail is dropped (a crash).
fn feed(store: &Store, stream: &[u8], from: usize, to: usize, rng: &mut ChaCha8Rng, seed: u64) {
    let mut tail: Vec<u8> = Vec::new();
    let mut at = from;
    while at < to {
        let k = match rng.random_range(0..10) {
            0 => rng.random_range(1..16),
            1 => rng.random_range(1..200),
            _ => rng.random_range(1..12_000),
        };
        let next = (at + k).min(to);
        let mut buf = std::mem::take(&mut tail);
        buf.extend_from_slice(&stream[at..next]);
        let start = store.offsets().written;
        assert_eq!(
            start as usize + buf.len(),
            next,
            "seed {seed}: tail bookkeeping"
        );
        let r = store
            .append_raw(start, &buf)
            .unwrap_or_else(|e| panic!("seed {seed}: chunk at {start} ({} bytes): {e}", buf.len()));
        assert_eq!(r.end, start + r.taken as u64, "seed {seed}");
        tail = buf[r.taken..].to_vec();
        at = next;
    }
    assert!(
        tail.is_empty() || to < stream.len(),
        "seed {seed}: {} bytes left untaken at the stream's end",
        tail.len()
    );
}

fn assert_same_log(a: &Path, b: &Path, seed: u64, what: &str) {
    let la = read_tree(&a.join("commitlog"));
    let lb = read_tree(&b.join("commitlog"));
    assert_eq!(
        la.keys().collect::<Vec<_>>(),
        lb.keys().collect::<Vec<_>>(),
        "seed {seed} {what}: segment files differ"
    );
    for (name, bytes) in &la {
        let other = &lb[name];
        if bytes != other {
            let at = bytes
                .iter()
                .zip(other.iter())
                .position(|(x, y)| x != y)
                .unwrap_or(bytes.len().min(other.len()));
            panic!(
                "seed {seed} {what}: {} differs at byte {at} (lengths {} and {})",
                name.display(),
                bytes.len(),
                other.len()
            );
        }
    }
}

fn assert_same_queues(a: &Store, b: &Store, seed: u64, what: &str) {
    assert_eq!(a.queues(), b.queues(), "seed {seed} {what}: queue offsets");
    for q in a.queues() {
        let ma = a.get_from_queue(&q.topic, q.queue_id, 0, 10_000).unwrap();
        let mb = b.get_from_queue(&q.topic, q.queue_id, 0, 10_000).unwrap();
        assert_eq!(ma, mb, "seed {seed} {what}: {}:{}", q.topic, q.queue_id);
    }
}

#[test]
fn copies_are_byte_identical_under_every_flush_strategy() {
    for (k, kind) in FlushKind::ALL.into_iter().enumerate() {
        let seed = 0x5eed_0000 + k as u64;
        let tmp = tempfile::tempdir().unwrap();
        let (da, db) = (tmp.path().join("master"), tmp.path().join("slave"));
        let cfg = test_config(FlushKind::Async);
        let stream = master_log(&da, &cfg, 400);
        let slave = Store::open(&db, test_config(kind)).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        feed(&slave, &stream, 0, stream.len(), &mut rng, seed);
        let end = stream.len() as u64;
        assert_eq!(slave.offsets().written, end, "seed {seed} {kind}");
        assert!(
            slave.wait_dispatched(end, Duration::from_secs(20)),
            "seed {seed} {kind}: dispatcher stopped at {}",
            slave.dispatched_offset()
        );
        let master = Store::open(&da, cfg.clone()).unwrap();
        assert_same_queues(&master, &slave, seed, kind.name());
        let hits = slave.query_by_key("TopicA", "key-7", 0, i64::MAX).unwrap();
        assert_eq!(hits.len(), 1, "seed {seed} {kind}: the index of the copy");
        master.shutdown().unwrap();
        slave.shutdown().unwrap();
        assert_same_log(&da, &db, seed, kind.name());
    }
}

#[test]
fn a_copy_crashed_midway_resumes_from_its_recovered_end() {
    let seed = 0x5eed_1000;
    let tmp = tempfile::tempdir().unwrap();
    let (da, db) = (tmp.path().join("master"), tmp.path().join("slave"));
    let stream = master_log(&da, &test_config(FlushKind::Async), 400);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let cut = stream.len() / 2;
    {
        let slave = Store::open(&db, test_config(FlushKind::Group)).unwrap();
        feed(&slave, &stream, 0, cut, &mut rng, seed);
        // Crash: no shutdown. The tail past the last whole record is lost
        // with the feeder; the store recovers to a record boundary.
        drop(slave);
    }
    let slave = Store::open(&db, test_config(FlushKind::Group)).unwrap();
    let from = slave.offsets().written as usize;
    assert!(from <= cut, "seed {seed}: recovered past what was fed");
    feed(&slave, &stream, from, stream.len(), &mut rng, seed);
    slave.shutdown().unwrap();
    assert_same_log(&da, &db, seed, "after a crash");
}

#[test]
fn bad_chunks_are_refused_whole_and_nothing_is_written() {
    let seed = 0x5eed_2000;
    let tmp = tempfile::tempdir().unwrap();
    let (da, db) = (tmp.path().join("master"), tmp.path().join("slave"));
    let stream = master_log(&da, &test_config(FlushKind::Async), 400);
    let slave = Store::open(&db, test_config(FlushKind::Group)).unwrap();
    // Start with some whole records in.
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let first_cut = 50_000;
    let mut tail_free_at = 0usize;
    {
        // Find a record boundary near first_cut: feed up to it, all taken.
        let r = slave.append_raw(0, &stream[..first_cut]).unwrap();
        tail_free_at += r.taken;
    }
    let end = slave.offsets().written;
    assert_eq!(end as usize, tail_free_at);
    let rest = &stream[tail_free_at..tail_free_at + 20_000];
    let size_of = |at: usize| u32::from_be_bytes(stream[at..at + 4].try_into().unwrap()) as usize;
    let r1 = size_of(tail_free_at);
    let r2 = size_of(tail_free_at + r1);

    let refused = |what: &str, at: u64, bytes: &[u8]| {
        let e = slave
            .append_raw(at, bytes)
            .err()
            .unwrap_or_else(|| panic!("{what}: accepted"));
        assert_eq!(slave.offsets().written, end, "{what}: the write end moved");
        e
    };
    // Not at the write end, either side.
    for at in [end - 1, end + 1, 0, end + r1 as u64] {
        match refused("misplaced", at, rest) {
            Error::OffsetMismatch { offered, write_end } => {
                assert_eq!((offered, write_end), (at, end));
                let text = format!("{}", Error::OffsetMismatch { offered, write_end });
                assert!(
                    text.contains(&at.to_string()) && text.contains(&end.to_string()),
                    "{text}"
                );
            }
            e => panic!("misplaced at {at}: {e}"),
        }
    }
    // Bytes from the middle of a record (misaligned), zeros, a record
    // belonging elsewhere (wrong PHYSICALOFFSET), a flipped body byte in
    // the third record of the chunk, a bad length.
    let mut flipped = rest.to_vec();
    flipped[r1 + r2 + 100.min(size_of(tail_free_at + r1 + r2) - 1)] ^= 0x40;
    let elsewhere = &stream[..size_of(0)];
    let mut long = rest.to_vec();
    long[..4].copy_from_slice(&(1u32 << 30).to_be_bytes());
    for (what, bytes) in [
        ("misaligned", &rest[7..]),
        ("zeros", &[0u8; 4096][..]),
        ("wrong offset", elsewhere),
        ("flipped", &flipped[..]),
        ("too long", &long[..]),
    ] {
        match refused(what, end, bytes) {
            Error::Corrupt { offset, .. } => {
                assert!(offset >= end, "{what}: corrupt at {offset} before {end}")
            }
            e => panic!("{what}: {e}"),
        }
    }
    // Nothing reached the file past the end.
    let on_disk = read_tree(&db.join("commitlog"));
    let seg = test_config(FlushKind::Group).segment_bytes;
    let last = on_disk.values().nth((end / seg) as usize).unwrap();
    assert!(
        last[(end % seg) as usize..].iter().all(|b| *b == 0),
        "bytes past the write end"
    );
    // A chunk shorter than one record takes nothing; then the stream goes on.
    let r = slave.append_raw(end, &rest[..r1 - 1]).unwrap();
    assert_eq!(r.taken, 0);
    feed(&slave, &stream, end as usize, stream.len(), &mut rng, seed);
    slave.shutdown().unwrap();
    assert_same_log(&da, &db, seed, "after refusals");
}

#[test]
fn slave_mode_refuses_puts_and_keeps_queues_at_the_flushed_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let (da, db) = (tmp.path().join("master"), tmp.path().join("slave"));
    let stream = master_log(&da, &test_config(FlushKind::Async), 400);
    let mut cfg = test_config(FlushKind::Async);
    // A flusher that does not run during the test.
    cfg.flush.flush_interval_ms = 60_000;
    cfg.flush.flush_thorough_interval_ms = 60_000;
    let slave = Store::open(&db, cfg).unwrap();
    slave.set_slave_mode(true);
    assert_eq!(
        slave.put(&message(0)).status,
        mqlab_engine::PutStatus::ServiceNotAvailable,
        "a slave refuses puts"
    );
    let r = slave.append_raw(0, &stream[..60_000]).unwrap();
    assert!(r.records > 0);
    std::thread::sleep(Duration::from_millis(100));
    let o = slave.offsets();
    assert_eq!(o.flushed, 0, "nothing flushed yet");
    assert_eq!(slave.dispatched_offset(), 0, "dispatched past flushed");
    assert!(slave.queues().iter().all(|q| q.max_offset == 0));
    slave.set_slave_mode(false);
    assert!(slave.wait_dispatched(r.end, Duration::from_secs(10)));
    assert!(slave.queues().iter().any(|q| q.max_offset > 0));
    slave.shutdown().unwrap();
}

/// A gate answering by a rule, recording what it was asked.
struct Gate {
    asked: std::sync::Mutex<Vec<u64>>,
    answer: mqlab_engine::PutStatus,
}

impl mqlab_engine::ReplicaGate for Gate {
    fn when_replicated(&self, end: u64, done: mqlab_engine::store::ReplicaCallback) {
        self.asked.lock().unwrap().push(end);
        if self.answer == mqlab_engine::PutStatus::PutOk {
            // From another thread, later, as a slave's ack would.
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(5));
                done(mqlab_engine::PutStatus::PutOk, None)
            });
        } else if self.answer == mqlab_engine::PutStatus::MessageIllegal {
            // Dropped unanswered: the put must still get an answer.
            drop(done);
        } else {
            done(self.answer, Some("gate says no".into()));
        }
    }
}

#[test]
fn a_replica_gate_decides_flush_acknowledged_puts() {
    use mqlab_engine::PutStatus;
    use std::sync::Arc;
    for kind in [FlushKind::Group, FlushKind::Async] {
        for (answer, want) in [
            (PutStatus::PutOk, PutStatus::PutOk),
            (PutStatus::FlushSlaveTimeout, PutStatus::FlushSlaveTimeout),
            (PutStatus::SlaveNotAvailable, PutStatus::SlaveNotAvailable),
            (PutStatus::MessageIllegal, PutStatus::FlushSlaveTimeout),
        ] {
            let tmp = tempfile::tempdir().unwrap();
            let store = Store::open(tmp.path(), test_config(kind)).unwrap();
            let gate = Arc::new(Gate {
                asked: Default::default(),
                answer,
            });
            store.set_replica_gate(Some(gate.clone()));
            let r = store.put(&message(1));
            assert_eq!(r.status, want, "{kind} {answer:?} blocking");
            let o = r.offsets.expect("written either way");
            let (tx, rx) = std::sync::mpsc::channel();
            store.put_async(&message(2), move |r| tx.send(r).unwrap());
            let r2 = rx.recv_timeout(Duration::from_secs(10)).unwrap();
            assert_eq!(r2.status, want, "{kind} {answer:?} async");
            let o2 = r2.offsets.expect("written either way");
            assert_eq!(
                *gate.asked.lock().unwrap(),
                vec![
                    o.phys_offset + o.wrote_bytes as u64,
                    o2.phys_offset + o2.wrote_bytes as u64
                ],
                "the gate is asked for each put's end"
            );
            // A refused put never reaches the gate.
            let bad = mqlab_engine::Message::new("bad topic!", b"x".to_vec());
            assert_eq!(store.put(&bad).status, PutStatus::MessageIllegal);
            assert_eq!(gate.asked.lock().unwrap().len(), 2);
            store.set_replica_gate(None);
            assert!(store.put(&message(3)).is_ok());
            store.shutdown().unwrap();
        }
    }
}

#[test]
fn an_empty_store_starts_at_a_later_segment_base() {
    let seed = 0x5eed_3000;
    let tmp = tempfile::tempdir().unwrap();
    let (da, db) = (tmp.path().join("master"), tmp.path().join("slave"));
    let cfg = test_config(FlushKind::Async);
    let stream = master_log(&da, &cfg, 400);
    let base = 2 * cfg.segment_bytes;
    let slave = Store::open(&db, test_config(FlushKind::Group)).unwrap();
    // Not at a segment boundary: refused.
    assert!(matches!(
        slave.append_raw(base + 8, &stream[base as usize + 8..]),
        Err(Error::OffsetMismatch { .. })
    ));
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    {
        // The first chunk must start at the base: feed from there.
        let first = slave
            .append_raw(base, &stream[base as usize..base as usize + 5000])
            .unwrap();
        assert_eq!(slave.min_offset(), base);
        let from = first.end as usize;
        feed(&slave, &stream, from, stream.len(), &mut rng, seed);
    }
    let end = stream.len() as u64;
    assert!(slave.wait_dispatched(end, Duration::from_secs(20)));
    let master = Store::open(&da, cfg.clone()).unwrap();
    let check = |slave: &Store, what: &str| {
        for q in master.queues() {
            let Some(s) = slave.queue_info(&q.topic, q.queue_id) else {
                continue;
            };
            assert_eq!(
                s.max_offset, q.max_offset,
                "{what}: {}:{}",
                q.topic, q.queue_id
            );
            // The copy's first message is the master's at that offset.
            let mine = slave.get_from_queue(&q.topic, q.queue_id, 0, 1).unwrap();
            let theirs = master
                .get_from_queue(&q.topic, q.queue_id, s.min_offset, 1)
                .unwrap();
            assert_eq!(
                mine, theirs,
                "{what}: {}:{} from {}",
                q.topic, q.queue_id, s.min_offset
            );
            assert!(mine[0].phys_offset >= base, "{what}");
            assert!(s.min_offset > 0, "{what}: the queue starts past unit 0");
        }
    };
    check(&slave, "running");
    slave.shutdown().unwrap();
    let slave = Store::open(&db, test_config(FlushKind::Group)).unwrap();
    check(&slave, "reopened");
    drop(slave); // a crash
    let slave = Store::open(&db, test_config(FlushKind::Group)).unwrap();
    assert!(slave.recovery_report().abnormal);
    check(&slave, "recovered");
    assert_eq!(slave.offsets().written, end);
    slave.shutdown().unwrap();
    master.shutdown().unwrap();
    // The copied segments are the master's, byte for byte.
    let (la, lb) = (
        read_tree(&da.join("commitlog")),
        read_tree(&db.join("commitlog")),
    );
    assert_eq!(lb.len(), la.len() - 2);
    for (name, bytes) in &lb {
        assert!(la[name] == *bytes, "{} differs", name.display());
    }
}
