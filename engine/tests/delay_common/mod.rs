//! Helpers shared by the delay scheduler tests (`delay_*.rs`): a store on
//! the simulated disk, schedulers driven by `tick` and a manual clock, and
//! a reader of what reached the real topic. Test files declare `mod common;`
//! (the engine tests' shared helpers) before `mod delay_common;`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use mqlab_engine::delay::{
    Clock, DelayScheduler, LevelMode, LevelsConfig, LevelsScheduler, ManualClock, WheelConfig,
    WheelScheduler, PROPERTY_TIMER_DELIVER_MS, PROPERTY_TIMER_OUT_MS,
};
use mqlab_engine::io::sim::SimEnv;
use mqlab_engine::{Env, FlushKind, Message, Store, StoredMessage};

/// The real topic delayed messages go to.
pub const REAL_TOPIC: &str = "DelayedTopic";
/// Queues of the real topic.
pub const REAL_QUEUES: u32 = 4;
/// Where tests start the clock: 2023-11-14T22:13:20Z.
pub const T0: i64 = 1_700_000_000_000;

/// The store directory on the simulated disk.
pub fn dir() -> PathBuf {
    PathBuf::from("/sim/delay")
}

/// Opens the store of the tests (small files, fast background services).
pub fn open_store(env: &SimEnv, flush: FlushKind) -> Arc<Store> {
    let env: Arc<dyn Env> = Arc::new(env.clone());
    Arc::new(
        Store::open_with_env(env, dir(), crate::common::test_config(flush)).expect("open store"),
    )
}

/// A manual clock at [`T0`].
pub fn clock() -> Arc<ManualClock> {
    ManualClock::at(T0)
}

/// Message number `i` for the real topic: queue `i % 4`, property
/// MQLAB_ID, a key `k{i}` and a body that depends on `i`.
pub fn msg(i: u64) -> Message {
    let body: Vec<u8> = (0..(16 + i % 64)).map(|j| (i + j) as u8).collect();
    Message::new(REAL_TOPIC, body)
        .with_queue((i % REAL_QUEUES as u64) as u32)
        .with_keys(format!("k{i}"))
        .with_property("MQLAB_ID", i.to_string())
}

/// The id of a delivered message.
pub fn id_of(m: &StoredMessage) -> u64 {
    m.properties["MQLAB_ID"].parse().expect("MQLAB_ID")
}

/// Due time and delivery time (by the scheduler's clock) of a delivered
/// message.
pub fn times(m: &StoredMessage) -> (i64, i64) {
    (
        m.properties[PROPERTY_TIMER_DELIVER_MS].parse().unwrap(),
        m.properties[PROPERTY_TIMER_OUT_MS].parse().unwrap(),
    )
}

/// Everything delivered to the real topic so far, each queue in queue
/// order, queues one after the other.
pub fn delivered(store: &Store) -> Vec<StoredMessage> {
    let end = store.offsets().written;
    assert!(store.wait_dispatched(end, std::time::Duration::from_secs(10)));
    let mut out = Vec::new();
    for q in 0..REAL_QUEUES {
        out.extend(store.get_from_queue(REAL_TOPIC, q, 0, 1_000_000).unwrap());
    }
    out
}

/// How often each id was delivered.
pub fn counts(store: &Store) -> BTreeMap<u64, usize> {
    let mut c = BTreeMap::new();
    for m in delivered(store) {
        *c.entry(id_of(&m)).or_insert(0) += 1;
    }
    c
}

/// A wheel driven by `tick` (no threads).
pub fn wheel_config(precision_ms: u64, window_ms: u64) -> WheelConfig {
    WheelConfig {
        precision_ms,
        window_ms,
        prefetch_ms: (2 * precision_ms).min(window_ms / 4),
        checkpoint_interval_ms: 50,
        timerlog_segment_bytes: 4096,
        background: false,
        ..WheelConfig::default()
    }
}

/// Opens a wheel on the store's disk.
pub fn open_wheel(
    store: &Arc<Store>,
    env: &SimEnv,
    cfg: WheelConfig,
    clock: &Arc<ManualClock>,
) -> Box<dyn DelayScheduler> {
    let c: Arc<dyn Clock> = clock.clone();
    Box::new(
        WheelScheduler::open(store.clone(), Arc::new(env.clone()), dir(), cfg, c)
            .expect("open wheel"),
    )
}

/// Levels 1 s, 5 s, 10 s, driven by `tick`, persisting every second.
pub fn levels_config(mode: LevelMode) -> LevelsConfig {
    LevelsConfig {
        levels_ms: vec![1_000, 5_000, 10_000],
        mode,
        persist_interval_ms: 1_000,
        batch: 16,
        background: false,
    }
}

/// Opens the levels on the store's disk.
pub fn open_levels(
    store: &Arc<Store>,
    env: &SimEnv,
    cfg: LevelsConfig,
    clock: &Arc<ManualClock>,
) -> Box<dyn DelayScheduler> {
    let c: Arc<dyn Clock> = clock.clone();
    Box::new(
        LevelsScheduler::open(store.clone(), Arc::new(env.clone()), dir(), cfg, c)
            .expect("open levels"),
    )
}

/// Moves the clock to `to` in steps of `step_ms`, ticking at each step.
pub fn run_until(s: &dyn DelayScheduler, clock: &ManualClock, to: i64, step_ms: i64) {
    while clock.now_ms() < to {
        let next = (clock.now_ms() + step_ms).min(to);
        clock.set(next);
        s.tick().expect("tick");
    }
    s.tick().expect("tick");
}

/// Moves the clock to `to`, stopping one millisecond before and at every
/// due time on the way: nothing may arrive early, everything due must
/// arrive at once.
pub fn step_to(s: &dyn DelayScheduler, clock: &ManualClock, store: &Store, due: &[i64], to: i64) {
    let mut stops: Vec<i64> = due
        .iter()
        .flat_map(|&d| [d - 1, d])
        .filter(|&t| t >= clock.now_ms() && t <= to)
        .collect();
    stops.sort();
    stops.dedup();
    stops.push(to);
    for t in stops {
        clock.set(t);
        s.tick().unwrap();
        let n = delivered(store).len();
        let want = due.iter().filter(|&&d| d <= t).count();
        assert_eq!(n, want, "at {t}: {n} delivered, {want} due");
    }
}
