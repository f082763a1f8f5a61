//! The put_async closed loop (`mqlab_bench::async_closed_loop`, the driver
//! of `mqlab-peers run --api async` and of `benches/async_put.rs`): short
//! bounded runs on a temporary store.

use std::sync::Arc;
use std::time::Duration;

use mqlab_bench::{async_closed_loop, AsyncRun};
use mqlab_engine::{FlushConfig, FlushKind, Store, StoreConfig};

/// Opens a group-commit store in `dir`, runs the loop (0.2 s warmup,
/// 0.6 s measured), shuts the store down.
fn run(dir: &std::path::Path, cfg: StoreConfig, msg_bytes: usize, in_flight: usize) -> AsyncRun {
    let store = Arc::new(Store::open(dir.join("store"), cfg).expect("open store"));
    let r = async_closed_loop(
        &store,
        msg_bytes,
        in_flight,
        Duration::from_millis(200),
        Duration::from_millis(600),
    );
    let store =
        Arc::try_unwrap(store).unwrap_or_else(|_| panic!("store still shared after the run"));
    store.shutdown().expect("shutdown");
    r
}

fn group() -> StoreConfig {
    StoreConfig {
        flush: FlushConfig::for_kind(FlushKind::Group),
        ..StoreConfig::default()
    }
}

#[test]
fn group_commit_puts_are_all_counted() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(dir.path(), group(), 1024, 16);
    let (load, end) = (&r.load, &r.end);
    assert!(load.ops > 0, "nothing acknowledged in the window: {end:?}");
    assert_eq!(end.errors, 0, "{end:?}");
    assert!(end.first_error.is_none());
    // Every submitted put completed, once, and was counted.
    assert!(end.all_completed(), "{end:?}");
    assert_eq!(end.in_flight, 0);
    assert_eq!(end.acked, end.submitted);
    // The window's count is its histogram's, within the run's acks.
    assert_eq!(load.hist.len(), load.ops);
    assert!(load.ops <= end.acked);
    assert!(r.window.acked > 0 && r.window.errors == 0);
    assert!(load.elapsed >= Duration::from_millis(600));
    assert!(load.ops_per_s() > 0.0);
    assert!(load.hist.value_at_quantile(0.5) >= 1);
}

#[test]
fn refused_puts_are_errors_not_successes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        max_message_bytes: 512,
        ..group()
    };
    // Bodies over max_message_bytes: every put is MESSAGE_ILLEGAL.
    let r = run(dir.path(), cfg, 1024, 16);
    let (load, end) = (&r.load, &r.end);
    assert!(end.errors > 0, "{end:?}");
    assert_eq!(end.acked, 0, "{end:?}");
    assert_eq!(load.ops, 0);
    assert_eq!(load.hist.len(), 0);
    assert!(r.window.errors > 0 && r.window.acked == 0);
    assert!(end.all_completed(), "{end:?}");
    let first = end.first_error.as_deref().unwrap_or_default();
    assert!(first.contains("MessageIllegal"), "{first}");
}
