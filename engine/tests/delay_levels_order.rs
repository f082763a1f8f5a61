//! Levels: each message is delivered at its level's delay, never a
//! millisecond early, in FIFO order per level, to its real topic and queue
//! with the system properties removed; both thread modes deliver with
//! their threads running.

mod common;
mod delay_common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use delay_common::*;
use mqlab_engine::delay::{
    Clock, DelayScheduler, DeliverAt, LevelMode, LevelsConfig, LevelsScheduler, SystemClock,
    PROPERTY_DELAY, PROPERTY_REAL_QID, PROPERTY_REAL_TOPIC,
};
use mqlab_engine::io::sim::SimEnv;
use mqlab_engine::FlushKind;

#[test]
fn delivered_at_the_due_millisecond_in_level_order() {
    let env = SimEnv::new(1);
    let store = open_store(&env, FlushKind::Async);
    let clock = clock();
    let s = open_levels(&store, &env, levels_config(LevelMode::PerLevel), &clock);
    let levels = [1_000i64, 5_000, 10_000];
    let mut due: Vec<i64> = Vec::new();
    for i in 0..30u64 {
        let level = (i % 3) as u32 + 1;
        let h = s.schedule(msg(i), DeliverAt::Level(level)).unwrap();
        assert_eq!(h.deliver_ms, clock.now_ms() + levels[level as usize - 1]);
        due.push(h.deliver_ms);
        step_to(s.as_ref(), &clock, &store, &due, clock.now_ms() + 137);
    }
    step_to(s.as_ref(), &clock, &store, &due, T0 + 20_000);
    let got = delivered(&store);
    assert_eq!(got.len(), 30);
    for m in &got {
        let i = id_of(m);
        let (d, out) = times(m);
        assert_eq!(d, out, "message {i} delivered at {out}, due {d}");
        let want = msg(i);
        assert_eq!(m.topic, REAL_TOPIC);
        assert_eq!(m.queue_id, want.queue_id);
        assert_eq!(m.body, want.body);
        for p in [PROPERTY_REAL_TOPIC, PROPERTY_REAL_QID, PROPERTY_DELAY] {
            assert!(!m.properties.contains_key(p), "{p} left on {i}");
        }
        assert_eq!(m.keys().collect::<Vec<_>>(), vec![format!("k{i}")]);
    }
    // Each real queue holds its messages in due order.
    for q in 0..REAL_QUEUES {
        let ds: Vec<i64> = got
            .iter()
            .filter(|m| m.queue_id == q)
            .map(|m| times(m).0)
            .collect();
        assert!(ds.windows(2).all(|w| w[0] <= w[1]), "queue {q}: {ds:?}");
    }
    assert_eq!(s.stats().pending, 0);
    assert_eq!(s.stats().delivered, 30);
    s.shutdown().unwrap();
}

#[test]
fn rejects_what_levels_cannot_do() {
    let env = SimEnv::new(2);
    let store = open_store(&env, FlushKind::Async);
    let clock = clock();
    let s = open_levels(&store, &env, levels_config(LevelMode::SingleThread), &clock);
    assert!(s.schedule(msg(1), DeliverAt::Level(0)).is_err());
    assert!(s.schedule(msg(1), DeliverAt::Level(4)).is_err());
    assert!(s.schedule(msg(1), DeliverAt::AfterMs(10)).is_err());
    let h = s.schedule(msg(1), DeliverAt::Level(1)).unwrap();
    assert!(s.cancel(&h).is_err());
    assert_eq!(s.name(), "levels-single-thread");
}

#[test]
fn both_thread_modes_deliver_in_the_background() {
    for mode in [LevelMode::PerLevel, LevelMode::SingleThread] {
        let env = SimEnv::new(3);
        let store = open_store(&env, FlushKind::Async);
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let cfg = LevelsConfig {
            levels_ms: vec![50, 120],
            mode,
            persist_interval_ms: 100,
            ..LevelsConfig::default()
        };
        let s =
            LevelsScheduler::open(store.clone(), Arc::new(env.clone()), dir(), cfg, clock).unwrap();
        for i in 0..40u64 {
            s.schedule(msg(i), DeliverAt::Level((i % 2) as u32 + 1))
                .unwrap();
        }
        let start = Instant::now();
        while delivered(&store).len() < 40 && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let got = delivered(&store);
        assert_eq!(got.len(), 40, "{mode:?}");
        for m in &got {
            let (d, out) = times(m);
            assert!(out >= d, "{mode:?}: delivered early");
        }
        Box::new(s).shutdown().unwrap();
    }
}
