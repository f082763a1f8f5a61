//! Time wheel across crashes: power loss (torn or not) and process crash at
//! seeded moments, with rolled and cancelled timers in flight. Recovery
//! must lose no acknowledged timer, deliver none twice, and never deliver a
//! cancelled one; a clean restart changes nothing either.
//!
//! A failure prints the seed; `MQLAB_DELAY_SEED=<seed>` replays one point.

mod common;
mod delay_common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use delay_common::*;
use mqlab_engine::delay::{
    Clock, DelayScheduler, DeliverAt, SystemClock, WheelConfig, WheelScheduler,
};
use mqlab_engine::io::sim::SimEnv;
use mqlab_engine::FlushKind;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[derive(Debug, Default)]
struct Outcome {
    scheduled: usize,
    before_crash: usize,
    lost: usize,
    duplicated: usize,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Crash {
    Power { torn: bool },
    Process,
    Clean,
}

fn point(seed: u64, flush: FlushKind, crash: Crash) -> Outcome {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let sim = SimEnv::new(seed);
    let store = open_store(&sim, flush);
    let clock = clock();
    // 10 ms slots over a 2 s window: longer delays roll.
    let cfg = wheel_config(10, 2_000);
    let s = open_wheel(&store, &sim, cfg.clone(), &clock);
    let n = rng.random_range(20..100u64);
    let mut live = BTreeSet::new();
    let mut cancelled = BTreeSet::new();
    let mut last_due = T0;
    let mut dues = Vec::new();
    for i in 0..n {
        let h = s
            .schedule(msg(i), DeliverAt::AfterMs(rng.random_range(0..5_000)))
            .unwrap_or_else(|e| panic!("seed {seed}: schedule: {e}"));
        last_due = last_due.max(h.deliver_ms);
        dues.push(h.deliver_ms);
        live.insert(i);
        if rng.random_bool(0.1) && s.cancel(&h).unwrap() {
            live.remove(&i);
            cancelled.insert(i);
        }
        if rng.random_bool(0.3) {
            clock.advance(rng.random_range(0..80));
            s.tick().unwrap();
        }
    }
    let crash_at = clock.now_ms() + rng.random_range(0..3_000);
    while clock.now_ms() < crash_at {
        clock.advance(rng.random_range(1..60));
        s.tick().unwrap();
    }
    let before_crash = counts(&store).len();
    let after = match crash {
        Crash::Clean => {
            s.shutdown().unwrap();
            Arc::try_unwrap(store).unwrap().shutdown().unwrap();
            sim.clone()
        }
        Crash::Power { torn } => {
            let a = sim.crash(torn, seed ^ 0x5eed);
            drop((s, store));
            a
        }
        Crash::Process => {
            let a = sim.process_crash();
            drop((s, store));
            a
        }
    };
    let store = open_store(&after, flush);
    let c: Arc<dyn Clock> = clock.clone();
    let w = WheelScheduler::open(store.clone(), Arc::new(after.clone()), dir(), cfg, c).unwrap();
    if std::env::var("MQLAB_DELAY_DEBUG").is_ok() {
        eprintln!("reopened: {}", w.debug_state());
    }
    run_until(&w, &clock, last_due + 200, 37);
    if std::env::var("MQLAB_DELAY_DEBUG").is_ok() {
        eprintln!("end: now {} {}", clock.now_ms(), w.debug_state());
    }
    let s: Box<dyn DelayScheduler> = Box::new(w);
    let c = counts(&store);
    for i in &cancelled {
        assert!(
            !c.contains_key(i),
            "seed {seed}: cancelled timer {i} delivered"
        );
    }
    let lost = live.iter().filter(|i| !c.contains_key(i)).count();
    if std::env::var("MQLAB_DELAY_DEBUG").is_ok() {
        let l: Vec<_> = live
            .iter()
            .filter(|i| !c.contains_key(i))
            .map(|i| (i, dues[*i as usize] - T0))
            .collect();
        eprintln!(
            "crash at {} lost {l:?} stats {:?}",
            crash_at - T0,
            s.stats()
        );
    }
    let duplicated = c.values().map(|k| k - 1).sum();
    for m in delivered(&store) {
        let (d, out) = times(&m);
        assert!(out >= d, "seed {seed}: {} delivered early", id_of(&m));
    }
    Outcome {
        scheduled: n as usize,
        before_crash,
        lost,
        duplicated,
    }
}

fn run(name: &str, base: u64, points: u64, flush: FlushKind, crash: Crash) {
    if let Some(seed) = std::env::var("MQLAB_DELAY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        eprintln!("{name}: seed {seed}: {:?}", point(seed, flush, crash));
        return;
    }
    let (mut sched, mut before) = (0, 0);
    for k in 0..points {
        let seed = base + k;
        let o = std::panic::catch_unwind(|| point(seed, flush, crash)).unwrap_or_else(|_| {
            panic!("{name}: replay with MQLAB_DELAY_SEED={seed} cargo test -p mqlab-engine --test delay_wheel_crash {name}")
        });
        assert_eq!(o.lost, 0, "{name}: seed {seed}: lost timers {o:?}");
        assert_eq!(o.duplicated, 0, "{name}: seed {seed}: duplicates {o:?}");
        sched += o.scheduled;
        before += o.before_crash;
    }
    eprintln!("{name}: {points} points, {sched} timers, {before} delivered before the crash, none lost or doubled");
}

#[test]
fn power_loss_group_commit() {
    run(
        "power_loss_group_commit",
        100,
        12,
        FlushKind::Group,
        Crash::Power { torn: false },
    );
}

#[test]
fn torn_power_loss_sync() {
    run(
        "torn_power_loss_sync",
        200,
        12,
        FlushKind::Sync,
        Crash::Power { torn: true },
    );
}

#[test]
fn process_crash_async() {
    run(
        "process_crash_async",
        300,
        12,
        FlushKind::Async,
        Crash::Process,
    );
}

#[test]
fn clean_restart() {
    run("clean_restart", 400, 6, FlushKind::Async, Crash::Clean);
}

/// Threads running on the system clock, power loss at a random instant
/// (possibly in the middle of a checkpoint).
#[test]
fn power_loss_with_threads_running() {
    for seed in 500..505u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let sim = SimEnv::new(seed);
        let store = open_store(&sim, FlushKind::Group);
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let cfg = WheelConfig {
            precision_ms: 5,
            window_ms: 400,
            prefetch_ms: 20,
            checkpoint_interval_ms: 7,
            timerlog_segment_bytes: 4096,
            ..WheelConfig::default()
        };
        let s = WheelScheduler::open(
            store.clone(),
            Arc::new(sim.clone()),
            dir(),
            cfg.clone(),
            clock.clone(),
        )
        .unwrap();
        let n = 150u64;
        let mut last_due = 0;
        for i in 0..n {
            let h = s
                .schedule(msg(i), DeliverAt::AfterMs(rng.random_range(0..900)))
                .unwrap();
            last_due = last_due.max(h.deliver_ms);
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(0..600)));
        let after = sim.crash(rng.random_bool(0.5), seed);
        drop(s);
        drop(store);
        let store = open_store(&after, FlushKind::Group);
        let s = WheelScheduler::open(
            store.clone(),
            Arc::new(after.clone()),
            dir(),
            cfg,
            clock.clone(),
        )
        .unwrap();
        let start = Instant::now();
        while (counts(&store).len() as u64) < n && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(50));
        let c = counts(&store);
        assert_eq!(c.len() as u64, n, "seed {seed}: lost timers");
        assert!(c.values().all(|&k| k == 1), "seed {seed}: duplicates {c:?}");
        assert!(clock.now_ms() >= last_due);
        Box::new(s).shutdown().unwrap();
    }
}
