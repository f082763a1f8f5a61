//! Time wheel: any delivery time, delivered at its due millisecond (never
//! early) whatever the slot width, in due order; levels, past due times and
//! a dense burst in one slot work too.

mod common;
mod delay_common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use delay_common::*;
use mqlab_engine::delay::{
    Clock, DelayScheduler, DeliverAt, SystemClock, WheelConfig, WheelScheduler, PROPERTY_REAL_QID,
    PROPERTY_REAL_TOPIC, PROPERTY_TIMER_SOURCE_OFFSET,
};
use mqlab_engine::io::sim::SimEnv;
use mqlab_engine::FlushKind;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn exact_timing(precision_ms: u64, seed: u64) {
    let env = SimEnv::new(seed);
    let store = open_store(&env, FlushKind::Async);
    let clock = clock();
    let window = (precision_ms * 64).max(10_000);
    let s = open_wheel(&store, &env, wheel_config(precision_ms, window), &clock);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut due = Vec::new();
    for i in 0..120u64 {
        let at = match i % 4 {
            0 => DeliverAt::AfterMs(rng.random_range(0..6_000)),
            1 => DeliverAt::AtMs(clock.now_ms() + rng.random_range(1..3_000)),
            2 => DeliverAt::Level(1),
            _ => DeliverAt::AfterMs(rng.random_range(0..40)),
        };
        let h = s.schedule(msg(i), at).unwrap();
        due.push(h.deliver_ms);
        let next = clock.now_ms() + rng.random_range(0..50);
        step_to(s.as_ref(), &clock, &store, &due, next);
    }
    step_to(s.as_ref(), &clock, &store, &due, T0 + 20_000);
    let got = delivered(&store);
    assert_eq!(got.len(), 120);
    for m in &got {
        let i = id_of(m);
        let (d, out) = times(m);
        assert_eq!(
            d, out,
            "precision {precision_ms}: {i} due {d} delivered {out}"
        );
        assert_eq!(m.queue_id, msg(i).queue_id);
        assert_eq!(m.body, msg(i).body);
        assert!(!m.properties.contains_key(PROPERTY_REAL_TOPIC));
        assert!(!m.properties.contains_key(PROPERTY_REAL_QID));
        assert!(m.properties.contains_key(PROPERTY_TIMER_SOURCE_OFFSET));
    }
    for q in 0..REAL_QUEUES {
        let ds: Vec<i64> = got
            .iter()
            .filter(|m| m.queue_id == q)
            .map(|m| times(m).0)
            .collect();
        assert!(
            ds.windows(2).all(|w| w[0] <= w[1]),
            "queue {q} out of order"
        );
    }
    let st = s.stats();
    assert_eq!((st.scheduled, st.delivered, st.pending), (120, 120, 0));
    s.shutdown().unwrap();
}

#[test]
fn one_ms_slots_deliver_at_the_due_millisecond() {
    exact_timing(1, 11);
}

#[test]
fn wide_slots_still_deliver_at_the_due_millisecond() {
    exact_timing(100, 12);
    exact_timing(1_000, 13);
}

#[test]
fn a_dense_burst_in_one_slot_is_delivered_in_order() {
    let env = SimEnv::new(4);
    let store = open_store(&env, FlushKind::Async);
    let clock = clock();
    let s = open_wheel(&store, &env, wheel_config(1_000, 60_000), &clock);
    let n = 3_000u64;
    let mut due = Vec::new();
    for i in 0..n {
        // All in the same second, most at the very same millisecond.
        let d = T0 + 5_000 + if i % 3 == 0 { (i % 7) as i64 * 131 } else { 0 };
        due.push(s.schedule(msg(i), DeliverAt::AtMs(d)).unwrap().deliver_ms);
    }
    run_until(s.as_ref(), &clock, T0 + 4_999, 500);
    assert!(delivered(&store).is_empty());
    step_to(s.as_ref(), &clock, &store, &due, T0 + 7_000);
    let got = delivered(&store);
    assert_eq!(got.len() as u64, n);
    assert!(got.iter().all(|m| {
        let (d, out) = times(m);
        d == out
    }));
}

#[test]
fn rejects_delays_beyond_the_maximum() {
    let env = SimEnv::new(5);
    let store = open_store(&env, FlushKind::Async);
    let clock = clock();
    let cfg = WheelConfig {
        max_delay_ms: 10_000,
        ..wheel_config(10, 1_000)
    };
    let s = open_wheel(&store, &env, cfg, &clock);
    assert!(s.schedule(msg(1), DeliverAt::AfterMs(10_001)).is_err());
    assert!(s.schedule(msg(1), DeliverAt::Level(19)).is_err());
    assert!(s.schedule(msg(1), DeliverAt::AfterMs(10_000)).is_ok());
    assert!(WheelConfig {
        precision_ms: 1,
        window_ms: 172_800_000,
        ..WheelConfig::default()
    }
    .sanitize()
    .is_err());
}

#[test]
fn background_threads_deliver_on_the_system_clock() {
    let env = SimEnv::new(6);
    let store = open_store(&env, FlushKind::Async);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let cfg = WheelConfig {
        precision_ms: 10,
        window_ms: 10_000,
        prefetch_ms: 100,
        checkpoint_interval_ms: 50,
        ..WheelConfig::default()
    };
    let s = WheelScheduler::open(store.clone(), Arc::new(env.clone()), dir(), cfg, clock).unwrap();
    for i in 0..200u64 {
        s.schedule(msg(i), DeliverAt::AfterMs(20 + i % 200))
            .unwrap();
    }
    let start = Instant::now();
    while delivered(&store).len() < 200 && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let got = delivered(&store);
    assert_eq!(got.len(), 200);
    assert!(got.iter().all(|m| {
        let (d, out) = times(m);
        out >= d
    }));
    Box::new(s).shutdown().unwrap();
}
