//! Model test: random puts, clean restarts, process crashes and power
//! losses (torn or not) on the simulated disk, checked after every step
//! against an in-memory model: the list of messages in put order.
//!
//! Single producer, so commit-log order is put order and the store's
//! content after any crash must be a prefix of the model: at least every
//! message that was durable (sync/group: every acknowledged one; async/pool:
//! those below the flushed offset sampled at the crash), and exactly the
//! same bytes, queue offsets and keys.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::{message, number_of, test_config};
use mqlab_engine::io::sim::SimEnv;
use mqlab_engine::{FlushKind, PutStatus, Store};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Put(u64),
    Restart,
    ProcessCrash,
    PowerLoss { torn: bool },
    Pause,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        20 => (0u64..1_000_000).prop_map(Op::Put),
        1 => Just(Op::Restart),
        1 => Just(Op::ProcessCrash),
        1 => any::<bool>().prop_map(|torn| Op::PowerLoss { torn }),
        1 => Just(Op::Pause),
    ]
}

fn strategy() -> impl Strategy<Value = FlushKind> {
    prop_oneof![
        Just(FlushKind::Sync),
        Just(FlushKind::Group),
        Just(FlushKind::Async),
        Just(FlushKind::Pool)
    ]
}

struct Entry {
    i: u64,
    phys: u64,
    end: u64,
}

/// The store must hold exactly `model` (in order) and nothing else.
fn check(store: &Store, model: &[Entry]) -> Result<(), TestCaseError> {
    let mut seen = Vec::new();
    store
        .scan(store.min_offset(), &mut |r| {
            match r {
                Ok(m) => seen.push((m.phys_offset, number_of(m), m.body.clone())),
                Err(e) => seen.push((u64::MAX, None, e.to_string().into_bytes())),
            }
            true
        })
        .unwrap();
    prop_assert_eq!(seen.len(), model.len(), "record count");
    for (s, e) in seen.iter().zip(model) {
        prop_assert_eq!(s.0, e.phys);
        prop_assert_eq!(s.1, Some(e.i));
        prop_assert_eq!(&s.2, &message(e.i).body);
    }
    let end = store.offsets().committed;
    prop_assert!(store.wait_dispatched(end, Duration::from_secs(10)));
    let mut total = 0;
    for q in store.queues() {
        let msgs = store
            .get_from_queue(&q.topic, q.queue_id, 0, 1_000_000)
            .unwrap();
        total += msgs.len();
        let want: Vec<u64> = model
            .iter()
            .filter(|e| {
                let m = message(e.i);
                m.topic == q.topic && m.queue_id == q.queue_id
            })
            .map(|e| e.i)
            .collect();
        let got: Vec<u64> = msgs.iter().map(|m| number_of(m).unwrap()).collect();
        prop_assert_eq!(got, want, "queue {}:{}", q.topic, q.queue_id);
    }
    prop_assert_eq!(total, model.len());
    Ok(())
}

fn run(flush: FlushKind, ops: Vec<Op>, seed: u64) -> Result<(), TestCaseError> {
    let dir = PathBuf::from("/sim/model");
    let mut cfg = test_config(flush);
    cfg.flush.flush_interval_ms = 2;
    let mut sim = SimEnv::new(seed);
    let mut store = Store::open_with_env(Arc::new(sim.clone()), &dir, cfg.clone()).unwrap();
    let mut model: Vec<Entry> = Vec::new();
    let wait_committed = |store: &Store| {
        let w = store.offsets().written;
        let t0 = std::time::Instant::now();
        while store.offsets().committed < w && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Put(i) => {
                let r = store.put(&message(i));
                prop_assert_eq!(r.status, PutStatus::PutOk, "step {}", step);
                let o = r.offsets.unwrap();
                model.push(Entry {
                    i,
                    phys: o.phys_offset,
                    end: o.phys_offset + o.wrote_bytes as u64,
                });
            }
            Op::Pause => std::thread::sleep(Duration::from_millis(3)),
            Op::Restart => {
                store.shutdown().unwrap();
                store = Store::open_with_env(Arc::new(sim.clone()), &dir, cfg.clone()).unwrap();
                prop_assert!(!store.recovery_report().abnormal);
                if std::env::var_os("MODEL_DEBUG").is_some() {
                    eprintln!(
                        "step {step} restart {:?} queues {:?}",
                        store.recovery_report(),
                        store.queues()
                    );
                }
            }
            Op::ProcessCrash | Op::PowerLoss { .. } => {
                let process = matches!(op, Op::ProcessCrash);
                if process && flush == FlushKind::Pool {
                    // What the pool had not committed dies with the
                    // process; the model only follows committed data here.
                    wait_committed(&store);
                }
                let off = store.offsets();
                let safe = if process { off.committed } else { off.flushed };
                sim = if process {
                    sim.process_crash()
                } else {
                    let torn = matches!(op, Op::PowerLoss { torn: true });
                    sim.crash(torn, seed + step as u64)
                };
                drop(store);
                store = Store::open_with_env(Arc::new(sim.clone()), &dir, cfg.clone()).unwrap();
                let end = store.recovery_report().end_offset;
                if std::env::var_os("MODEL_DEBUG").is_some() {
                    eprintln!(
                        "step {step} {op:?} safe {safe} {:?} queues {:?}",
                        store.recovery_report(),
                        store.queues()
                    );
                }
                let must_keep = model.iter().filter(|e| e.end <= safe).count();
                let kept = model.iter().filter(|e| e.end <= end).count();
                prop_assert!(
                    kept >= must_keep,
                    "step {}: kept {} < durable {}",
                    step,
                    kept,
                    must_keep
                );
                if flush.acks_durable() {
                    prop_assert_eq!(kept, model.len(), "step {}: {} lost acks", step, flush);
                }
                model.truncate(kept);
            }
        }
    }
    wait_committed(&store);
    check(&store, &model)?;
    store.shutdown().unwrap();
    let store = Store::open_with_env(Arc::new(sim), &dir, cfg).unwrap();
    check(&store, &model)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_model(flush in strategy(), ops in prop::collection::vec(op(), 1..120), seed in any::<u64>()) {
        run(flush, ops, seed)?;
    }
}
