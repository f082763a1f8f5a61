//! Put statuses as RocketMQ names them: bad input is rejected with
//! MESSAGE_ILLEGAL before anything is written; a group-commit deadline gives
//! FLUSH_DISK_TIMEOUT and the message stays written. Store timestamps come
//! from the wall clock until a clock is installed (`Store::use_clock`).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::test_config;
use mqlab_engine::io::sim::SimEnv;
use mqlab_engine::{FlushKind, Message, PutStatus, Store};

fn store(flush: FlushKind) -> (SimEnv, Store) {
    let sim = SimEnv::new(3);
    let s = Store::open_with_env(Arc::new(sim.clone()), "/sim/status", test_config(flush)).unwrap();
    (sim, s)
}

#[test]
fn illegal_topics_never_touch_the_disk() {
    let (sim, store) = store(FlushKind::Sync);
    let before = sim.stats();
    for topic in [
        "",
        "..",
        "../../etc",
        "a/b",
        "a\\b",
        "x y",
        "tópico",
        "a.b",
        &"t".repeat(300),
    ] {
        let r = store.put(&Message::new(topic, b"x".to_vec()));
        assert_eq!(r.status, PutStatus::MessageIllegal, "{topic:?}");
        assert!(r.offsets.is_none());
        assert!(r.detail.unwrap().contains("topic"), "{topic:?}");
    }
    assert_eq!(store.offsets().written, 0);
    assert_eq!(sim.stats().bytes_written, before.bytes_written);
    // A legal name with every allowed character works.
    let r = store.put(&Message::new("%RETRY%g|x_y-Z9", b"x".to_vec()));
    assert_eq!(r.status, PutStatus::PutOk, "{:?}", r.detail);
}

#[test]
fn oversized_and_malformed_messages_are_illegal() {
    let (_sim, store) = store(FlushKind::Group);
    let max = test_config(FlushKind::Group).max_message_bytes as usize;
    let r = store.put(&Message::new("T", vec![0u8; max + 1]));
    assert_eq!(r.status, PutStatus::MessageIllegal);
    assert!(r.detail.unwrap().contains("max_message_bytes"));
    let r = store.put(&Message::new("T", vec![0u8; max]));
    assert_eq!(r.status, PutStatus::PutOk, "{:?}", r.detail);
    let r = store.put(&Message::new("T", b"x".to_vec()).with_property("k\u{1}", "v"));
    assert_eq!(r.status, PutStatus::MessageIllegal);
    let r = store.put(&Message::new("T", b"x".to_vec()).with_property("k", "v\u{2}"));
    assert_eq!(r.status, PutStatus::MessageIllegal);
    let r = store.put(&Message::new("T", b"x".to_vec()).with_property("big", "v".repeat(40_000)));
    assert_eq!(r.status, PutStatus::MessageIllegal);
    assert_eq!(store.queues().len(), 0, "nothing illegal was dispatched");
}

#[test]
fn group_deadline_gives_flush_disk_timeout_and_keeps_the_message() {
    let sim = SimEnv::new(5);
    let mut cfg = test_config(FlushKind::Group);
    cfg.flush.sync_flush_timeout_ms = 0;
    cfg.flush.group_wait_us = 20_000; // the service waits 20 ms before each flush
    let store = Store::open_with_env(Arc::new(sim), "/sim/timeout", cfg).unwrap();
    let r = store.put(&Message::new("T", b"late".to_vec()).with_keys("late"));
    assert_eq!(r.status, PutStatus::FlushDiskTimeout, "{r:?}");
    let o = r.offsets.expect("a timed-out message is written");
    // Not acknowledged, but written: it becomes durable and visible.
    assert!(store.offsets().acked < o.phys_offset + o.wrote_bytes as u64);
    assert!(store.wait_dispatched(o.phys_offset + 1, Duration::from_secs(5)));
    assert_eq!(store.get(o.phys_offset).unwrap().body, b"late");
}

#[test]
fn puts_after_poison_are_refused_with_the_reason() {
    let sim = SimEnv::with_faults(mqlab_engine::io::sim::FaultPlan {
        seed: 1,
        sync_eio_at: Some(1),
        ..Default::default()
    });
    let store = Store::open_with_env(Arc::new(sim), "/sim/poison", test_config(FlushKind::Sync));
    // The first sync happens at open (abort marker): opening fails cleanly.
    let err = store.unwrap_err().to_string();
    assert!(
        err.contains("fsync") || err.contains("EIO") || err.contains("I/O"),
        "{err}"
    );
}

#[test]
fn store_timestamps_follow_an_installed_clock() {
    let (_sim, store) = store(FlushKind::Sync);
    let before = store.put(&Message::new("Clocked", b"wall".to_vec()));
    let wall_ts = before.offsets.unwrap().store_timestamp_ms;
    assert!(wall_ts > 1_600_000_000_000, "wall clock: {wall_ts}");
    let clock = mqlab_engine::clock::ManualClock::at(1_234_567);
    assert!(store.use_clock(clock.clone()));
    assert!(
        !store.use_clock(mqlab_engine::clock::ManualClock::at(9)),
        "only the first clock counts"
    );
    let r = store.put(&Message::new("Clocked", b"manual".to_vec()));
    let o = r.offsets.unwrap();
    assert_eq!(o.store_timestamp_ms, 1_234_567);
    clock.advance(5);
    let r2 = store.put(&Message::new("Clocked", b"later".to_vec()));
    let o2 = r2.offsets.unwrap();
    assert_eq!(o2.store_timestamp_ms, 1_234_572);
    let back = store.get(o.phys_offset).unwrap();
    assert_eq!(back.store_timestamp_ms, 1_234_567);
    assert_eq!(back.born_timestamp_ms, 1_234_567, "born defaults to store");
}
