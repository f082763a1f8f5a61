//! Levels across crashes: offsets persisted every second (by the
//! scheduler's clock), power loss or process crash at seeded moments.
//! Nothing acknowledged is lost; what was delivered since the last persist
//! is delivered again, and the duplicates are counted. A clean restart
//! delivers nothing twice.

mod common;
mod delay_common;

use std::sync::Arc;

use delay_common::*;
use mqlab_engine::delay::{Clock, DeliverAt, LevelMode};
use mqlab_engine::io::sim::SimEnv;
use mqlab_engine::FlushKind;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[derive(Debug, PartialEq)]
enum Crash {
    Power,
    Process,
    Clean,
}

/// Returns (scheduled, lost, duplicated).
fn point(seed: u64, flush: FlushKind, crash: Crash) -> (usize, usize, usize) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let sim = SimEnv::new(seed);
    let store = open_store(&sim, flush);
    let clock = clock();
    let mode = if seed.is_multiple_of(2) {
        LevelMode::PerLevel
    } else {
        LevelMode::SingleThread
    };
    let cfg = levels_config(mode);
    let s = open_levels(&store, &sim, cfg.clone(), &clock);
    let n = rng.random_range(20..120u64);
    for i in 0..n {
        s.schedule(msg(i), DeliverAt::Level(rng.random_range(1..=3)))
            .unwrap();
        if rng.random_bool(0.5) {
            clock.advance(rng.random_range(0..150));
            s.tick().unwrap();
        }
    }
    let crash_at = clock.now_ms() + rng.random_range(0..8_000);
    while clock.now_ms() < crash_at {
        clock.advance(rng.random_range(1..200));
        s.tick().unwrap();
    }
    let after = match crash {
        Crash::Clean => {
            s.shutdown().unwrap();
            Arc::try_unwrap(store).unwrap().shutdown().unwrap();
            sim.clone()
        }
        Crash::Power => {
            let a = sim.crash(rng.random_bool(0.5), seed);
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
    let s = open_levels(&store, &after, cfg, &clock);
    run_until(s.as_ref(), &clock, clock.now_ms() + 11_000, 97);
    let c = counts(&store);
    let lost = (0..n).filter(|i| !c.contains_key(i)).count();
    let dup = c.values().map(|k| k - 1).sum();
    for m in delivered(&store) {
        let (d, out) = times(&m);
        assert!(out >= d, "seed {seed}: early delivery");
    }
    (n as usize, lost, dup)
}

fn run(name: &str, base: u64, flush: FlushKind, crash: Crash) -> usize {
    let (mut total, mut dups) = (0, 0);
    for seed in base..base + 10 {
        let (n, lost, dup) = point(
            seed,
            flush,
            match crash {
                Crash::Power => Crash::Power,
                Crash::Process => Crash::Process,
                Crash::Clean => Crash::Clean,
            },
        );
        assert_eq!(lost, 0, "{name}: seed {seed}: lost {lost} of {n}");
        total += n;
        dups += dup;
    }
    eprintln!("{name}: 10 points, {total} messages, {dups} delivered twice");
    dups
}

#[test]
fn power_loss_group_commit_loses_nothing() {
    run(
        "power_loss_group_commit",
        10,
        FlushKind::Group,
        Crash::Power,
    );
}

#[test]
fn process_crash_async_loses_nothing_and_duplicates() {
    // Deliveries since the last persist come again: over ten points some
    // certainly do.
    assert!(run("process_crash_async", 20, FlushKind::Async, Crash::Process) > 0);
}

#[test]
fn clean_restart_delivers_nothing_twice() {
    assert_eq!(run("clean_restart", 30, FlushKind::Async, Crash::Clean), 0);
}
