//! Time wheel: cancel by handle, by key and by UNIQ_KEY, whether the
//! timer's slot is far away, already loaded, or beyond the window (rolled);
//! a cancel survives a power loss; a cancel after the due time is refused.

mod common;
mod delay_common;

use delay_common::*;
use mqlab_engine::delay::{DeliverAt, WheelConfig};
use mqlab_engine::io::sim::SimEnv;
use mqlab_engine::message::PROPERTY_UNIQ_KEY;
use mqlab_engine::FlushKind;

fn config() -> WheelConfig {
    // 100 ms slots, loaded 200 ms ahead, a 10 s window.
    WheelConfig {
        prefetch_ms: 200,
        ..wheel_config(100, 10_000)
    }
}

#[test]
fn cancelled_timers_never_arrive() {
    let env = SimEnv::new(31);
    let store = open_store(&env, FlushKind::Async);
    let clock = clock();
    let s = open_wheel(&store, &env, config(), &clock);
    let far = s.schedule(msg(0), DeliverAt::AfterMs(5_000)).unwrap();
    let near = s.schedule(msg(1), DeliverAt::AfterMs(300)).unwrap();
    let _keyed = s.schedule(msg(2), DeliverAt::AfterMs(2_000)).unwrap();
    let _uniq = s
        .schedule(
            msg(3).with_property(PROPERTY_UNIQ_KEY, "C0A8000100002A9F0000000000000003"),
            DeliverAt::AfterMs(2_500),
        )
        .unwrap();
    let rolled = s.schedule(msg(4), DeliverAt::AfterMs(60_000)).unwrap();
    let kept = s.schedule(msg(5), DeliverAt::AfterMs(250)).unwrap();
    // The near timer's slot gets loaded (prefetch) before it is cancelled.
    clock.advance(150);
    s.tick().unwrap();
    assert!(s.cancel(&near).unwrap());
    assert!(s.cancel(&far).unwrap());
    assert_eq!(s.cancel_by_key("k2").unwrap(), 1);
    assert_eq!(
        s.cancel_by_key("C0A8000100002A9F0000000000000003").unwrap(),
        1
    );
    assert_eq!(s.cancel_by_key("no-such-key").unwrap(), 0);
    assert!(s.cancel(&rolled).unwrap());
    run_until(s.as_ref(), &clock, T0 + 300, 10);
    // Too late: already due and delivered.
    assert!(!s.cancel(&kept).unwrap());
    run_until(s.as_ref(), &clock, T0 + 61_000, 250);
    let c = counts(&store);
    assert_eq!(c.keys().copied().collect::<Vec<_>>(), vec![5]);
    let st = s.stats();
    assert_eq!(st.cancelled, 5, "{st:?}");
    assert_eq!(st.pending, 0, "{st:?}");
}

#[test]
fn a_cancel_survives_power_loss() {
    let env = SimEnv::new(32);
    let store = open_store(&env, FlushKind::Group);
    let clock = clock();
    let s = open_wheel(&store, &env, config(), &clock);
    let mut handles = Vec::new();
    for i in 0..20u64 {
        handles.push(
            s.schedule(msg(i), DeliverAt::AfterMs(1_000 + i * 100))
                .unwrap(),
        );
    }
    run_until(s.as_ref(), &clock, T0 + 500, 50);
    for h in handles.iter().step_by(2) {
        assert!(s.cancel(h).unwrap());
    }
    // Crash before the wheel took the cancels in or checkpointed.
    let after = env.crash(true, 32);
    drop((s, store));
    let store = open_store(&after, FlushKind::Group);
    let s = open_wheel(&store, &after, config(), &clock);
    run_until(s.as_ref(), &clock, T0 + 5_000, 100);
    let c = counts(&store);
    assert_eq!(
        c.keys().copied().collect::<Vec<_>>(),
        (0..20).filter(|i| i % 2 == 1).collect::<Vec<u64>>()
    );
    assert!(c.values().all(|&k| k == 1));
}
