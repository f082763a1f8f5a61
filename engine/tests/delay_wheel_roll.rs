//! Time wheel: delays far beyond the wheel's window are rolled (re-filed
//! as the window moves), as often as needed, and still delivered at their
//! due millisecond, also across a restart with rolled timers pending.

mod common;
mod delay_common;

use std::sync::Arc;

use delay_common::*;
use mqlab_engine::delay::{Clock, DeliverAt, WheelConfig};
use mqlab_engine::io::sim::SimEnv;
use mqlab_engine::FlushKind;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn config() -> WheelConfig {
    // 50 slots of 10 ms: a 500 ms window, delays up to 10 s.
    WheelConfig {
        max_delay_ms: 10_000,
        ..wheel_config(10, 500)
    }
}

#[test]
fn long_delays_roll_and_arrive_on_time() {
    let env = SimEnv::new(21);
    let store = open_store(&env, FlushKind::Async);
    let clock = clock();
    let s = open_wheel(&store, &env, config(), &clock);
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let mut due = Vec::new();
    for i in 0..80u64 {
        let h = s
            .schedule(msg(i), DeliverAt::AfterMs(rng.random_range(0..9_000)))
            .unwrap();
        due.push(h.deliver_ms);
    }
    due.push(
        s.schedule(msg(80), DeliverAt::AfterMs(10_000))
            .unwrap()
            .deliver_ms,
    );
    step_to(s.as_ref(), &clock, &store, &due, T0 + 11_000);
    let got = delivered(&store);
    assert_eq!(got.len(), 81);
    for m in &got {
        let (d, out) = times(m);
        assert_eq!(d, out, "{} due {d} delivered {out}", id_of(m));
    }
    let st = s.stats();
    // The 10 s timer alone rolls about 20 times.
    assert!(st.rolled >= 20, "{st:?}");
    assert_eq!(st.pending, 0);
}

#[test]
fn rolled_timers_survive_a_restart() {
    let env = SimEnv::new(22);
    let store = open_store(&env, FlushKind::Group);
    let clock = clock();
    let s = open_wheel(&store, &env, config(), &clock);
    let mut due = Vec::new();
    for i in 0..40u64 {
        let h = s
            .schedule(msg(i), DeliverAt::AfterMs(1_000 + i * 200))
            .unwrap();
        due.push(h.deliver_ms);
    }
    step_to(s.as_ref(), &clock, &store, &due, T0 + 3_333);
    assert!(s.stats().rolled > 0);
    s.shutdown().unwrap();
    Arc::try_unwrap(store).unwrap().shutdown().unwrap();
    let store = open_store(&env, FlushKind::Group);
    let s = open_wheel(&store, &env, config(), &clock);
    assert!(clock.now_ms() == T0 + 3_333);
    step_to(s.as_ref(), &clock, &store, &due, T0 + 10_000);
    let c = counts(&store);
    assert_eq!(c.len(), 40);
    assert!(c.values().all(|&k| k == 1));
    for m in delivered(&store) {
        let (d, out) = times(&m);
        assert_eq!(d, out);
    }
}
