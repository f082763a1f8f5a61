//! `Store::put_async` (issue 13: the write path does not block a thread per
//! message): every completion fires exactly once, with the result `put`
//! would have given; PUT_OK under sync and group only once the record is
//! durable; a failed fdatasync answers every pending put
//! SERVICE_NOT_AVAILABLE; stopping the store answers every pending put; and
//! under group, puts in flight together share fdatasyncs.
//!
//! Puts come from several threads, each keeping a seeded, varying number
//! of puts in flight (as a broker bounding its requests would).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use common::{message, number_of, test_config};
use mqlab_engine::io::sim::{FaultPlan, SimEnv};
use mqlab_engine::{FlushKind, Message, PutResult, PutStatus, Store, StoreConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// What a completion saw when it fired.
#[derive(Debug, Clone)]
struct Seen {
    result: PutResult,
    /// `store.offsets()` read inside the completion.
    flushed: u64,
    acked: u64,
}

/// Every completion of a run, by put number, counting calls.
struct Completions {
    seen: Mutex<HashMap<u64, Vec<Seen>>>,
    fired: Condvar,
}

impl Completions {
    fn new() -> Arc<Self> {
        Arc::new(Completions {
            seen: Mutex::new(HashMap::new()),
            fired: Condvar::new(),
        })
    }

    fn record(&self, n: u64, s: Seen) {
        self.seen.lock().unwrap().entry(n).or_default().push(s);
        self.fired.notify_all();
    }

    /// Waits until `count` puts have fired (a hang fails here, not forever).
    fn wait_for(&self, count: usize, what: &str) -> HashMap<u64, Vec<Seen>> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut g = self.seen.lock().unwrap();
        while g.len() < count {
            let now = Instant::now();
            assert!(
                now < deadline,
                "{what}: only {} of {count} completions fired within 60 s",
                g.len()
            );
            g = self.fired.wait_timeout(g, deadline - now).unwrap().0;
        }
        g.clone()
    }
}

/// A caller's bound on its puts in flight.
#[derive(Default)]
struct Window {
    n: Mutex<usize>,
    cv: Condvar,
    max_seen: AtomicUsize,
}

impl Window {
    fn enter(&self, cap: usize) {
        let mut n = self.n.lock().unwrap();
        while *n >= cap {
            n = self.cv.wait(n).unwrap();
        }
        *n += 1;
        self.max_seen.fetch_max(*n, Ordering::Relaxed);
    }

    fn leave(&self) {
        *self.n.lock().unwrap() -= 1;
        self.cv.notify_all();
    }

    fn drain(&self) {
        let mut n = self.n.lock().unwrap();
        while *n > 0 {
            n = self.cv.wait(n).unwrap();
        }
    }
}

/// Quiet background threads: only puts sync the disk.
fn config(kind: FlushKind) -> StoreConfig {
    let mut cfg = test_config(kind);
    cfg.checkpoint_interval_ms = 600_000;
    cfg.flush.flush_interval_ms = 2;
    cfg
}

/// Puts `per_thread` messages from each of `threads` threads through
/// `put_async`, each thread keeping between 1 and 256 in flight (seeded),
/// numbering them `t * per_thread + i`. Returns each thread's put numbers
/// in submission order and the largest number in flight seen.
fn put_from_threads(
    store: &Arc<Store>,
    done: &Arc<Completions>,
    threads: u64,
    per_thread: u64,
    seed: u64,
) -> (Vec<Vec<u64>>, usize) {
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let store = store.clone();
            let done = done.clone();
            std::thread::spawn(move || {
                let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (t << 32));
                let window = Arc::new(Window::default());
                let mut order = Vec::new();
                let mut cap = 1;
                for i in 0..per_thread {
                    if i % 50 == 0 {
                        cap = rng.random_range(1..=256);
                    }
                    let n = t * per_thread + i;
                    window.enter(cap);
                    let (s2, d2, w2) = (store.clone(), done.clone(), window.clone());
                    store.put_async(&message(n), move |result| {
                        let o = s2.offsets();
                        d2.record(
                            n,
                            Seen {
                                result,
                                flushed: o.flushed,
                                acked: o.acked,
                            },
                        );
                        w2.leave();
                    });
                    order.push(n);
                }
                window.drain();
                (order, window.max_seen.load(Ordering::Relaxed))
            })
        })
        .collect();
    let mut orders = Vec::new();
    let mut max_in_flight = 0;
    for h in handles {
        let (o, m) = h.join().unwrap();
        orders.push(o);
        max_in_flight = max_in_flight.max(m);
    }
    (orders, max_in_flight)
}

/// The store back from its `Arc` once every completion dropped its clone.
fn unwrap(mut store: Arc<Store>) -> Store {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Arc::try_unwrap(store) {
            Ok(s) => return s,
            Err(s) => {
                assert!(Instant::now() < deadline, "a completion kept the store");
                store = s;
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

fn end_of(r: &PutResult) -> u64 {
    let o = r.offsets.expect("offsets");
    o.phys_offset + o.wrote_bytes as u64
}

fn only_call<'a>(seen: &'a HashMap<u64, Vec<Seen>>, n: u64, what: &str) -> &'a Seen {
    let calls = seen
        .get(&n)
        .unwrap_or_else(|| panic!("{what}: put {n} never completed"));
    assert_eq!(
        calls.len(),
        1,
        "{what}: put {n} completed {} times",
        calls.len()
    );
    &calls[0]
}

#[test]
fn every_strategy_completes_each_async_put_once_with_put_ok() {
    let threads = 3u64;
    let per_thread = 400u64;
    let total = (threads * per_thread) as usize;
    for (k, kind) in FlushKind::ALL.into_iter().enumerate() {
        let what = kind.name();
        let sim = SimEnv::new(40 + k as u64);
        let store = Arc::new(
            Store::open_with_env(
                Arc::new(sim.clone()),
                format!("/sim/put-async-{what}"),
                config(kind),
            )
            .unwrap(),
        );
        let syncs_before = sim.stats().syncs;
        let done = Completions::new();
        let (orders, max_in_flight) =
            put_from_threads(&store, &done, threads, per_thread, 0x5eed + k as u64);
        let seen = done.wait_for(total, what);
        let syncs = sim.stats().syncs - syncs_before;

        // Exactly once, PUT_OK, durable at completion under sync and group,
        // acknowledged (`acked` moved) before the completion ran.
        let mut by_queue: BTreeMap<(String, u32), Vec<(u64, u64)>> = BTreeMap::new();
        let mut max_end = 0;
        for n in 0..total as u64 {
            let s = only_call(&seen, n, what);
            let r = &s.result;
            assert_eq!(r.status, PutStatus::PutOk, "{what}: put {n}: {r:?}");
            let end = end_of(r);
            max_end = max_end.max(end);
            if kind.acks_durable() {
                assert!(
                    s.flushed >= end,
                    "{what}: put {n} acknowledged at flushed {} < its end {end}",
                    s.flushed
                );
            }
            assert!(
                s.acked >= end,
                "{what}: put {n} completed before acked moved"
            );
            let m = message(n);
            let o = r.offsets.unwrap();
            by_queue
                .entry((m.topic.clone(), m.queue_id))
                .or_default()
                .push((o.queue_offset, o.phys_offset));
        }
        // Queue offsets: dense from 0 in each queue, in physical order.
        for ((topic, q), mut units) in by_queue {
            units.sort();
            for (i, w) in units.iter().enumerate() {
                assert_eq!(w.0, i as u64, "{what}: {topic}:{q} queue offsets not dense");
            }
            for w in units.windows(2) {
                assert!(w[0].1 < w[1].1, "{what}: {topic}:{q} physical order");
            }
        }
        // Each thread's puts to a queue got increasing queue offsets.
        for order in &orders {
            let mut last: HashMap<(String, u32), u64> = HashMap::new();
            for &n in order {
                let m = message(n);
                let qo = seen[&n][0].result.offsets.unwrap().queue_offset;
                if let Some(prev) = last.insert((m.topic.clone(), m.queue_id), qo) {
                    assert!(prev < qo, "{what}: put {n} queue offset {qo} after {prev}");
                }
            }
        }
        match kind {
            // One fdatasync of its own per message, asynchronous or not.
            FlushKind::Sync => assert!(
                syncs >= total as u64,
                "sync: {syncs} fdatasyncs for {total} puts"
            ),
            FlushKind::Group => {}
            FlushKind::Async | FlushKind::Pool => {}
        }
        if kind.acks_durable() {
            assert!(
                max_in_flight >= 2,
                "{what}: never more than {max_in_flight} put in flight"
            );
        }
        eprintln!("{what}: {total} puts, {syncs} fdatasyncs, up to {max_in_flight} in flight");

        // Readable afterwards, through the queues too.
        assert!(
            store.wait_dispatched(max_end, Duration::from_secs(10)),
            "{what}"
        );
        for n in (0..total as u64).step_by(7) {
            let o = seen[&n][0].result.offsets.unwrap();
            let got = store.get(o.phys_offset).unwrap();
            assert_eq!(number_of(&got), Some(n), "{what}");
            assert_eq!(got.body, message(n).body, "{what}: put {n}");
        }
        let queued: u64 = store.queues().iter().map(|q| q.max_offset).sum();
        assert_eq!(queued, total as u64, "{what}: units dispatched");
        unwrap(store).shutdown().unwrap();
    }
}

#[test]
fn refusals_are_delivered_through_the_completion() {
    for kind in FlushKind::ALL {
        let sim = SimEnv::new(7);
        let store = Store::open_with_env(
            Arc::new(sim),
            format!("/sim/put-async-refused-{}", kind.name()),
            config(kind),
        )
        .unwrap();
        let out: Arc<Mutex<Vec<PutResult>>> = Arc::default();
        let put = |m: Message| {
            let out = out.clone();
            store.put_async(&m, move |r| out.lock().unwrap().push(r));
        };
        put(Message::new("a/b", b"x".to_vec()));
        put(Message::new("T", vec![0u8; 40 * 1024]));
        store.set_write_block(Some("disk full".into()));
        put(Message::new("T", b"x".to_vec()));
        // Refusals are answered on the calling thread, before put_async
        // returns.
        let got = out.lock().unwrap().clone();
        let statuses: Vec<_> = got.iter().map(|r| r.status).collect();
        assert_eq!(
            statuses,
            [
                PutStatus::MessageIllegal,
                PutStatus::MessageIllegal,
                PutStatus::ServiceNotAvailable
            ],
            "{kind}: {got:?}"
        );
        assert!(got.iter().all(|r| r.offsets.is_none()));
        assert!(got[2].detail.as_deref().unwrap().contains("disk full"));
        assert_eq!(store.offsets().written, 0, "{kind}: nothing written");
        store.shutdown().unwrap();
    }
}

#[test]
fn group_async_deadline_gives_flush_disk_timeout_and_keeps_the_message() {
    let mut cfg = config(FlushKind::Group);
    cfg.flush.sync_flush_timeout_ms = 0;
    cfg.flush.group_wait_us = 20_000; // the service waits 20 ms before each flush
    let store = Store::open_with_env(Arc::new(SimEnv::new(5)), "/sim/put-async-late", cfg).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    store.put_async(&Message::new("T", b"late".to_vec()), move |r| {
        tx.send(r).unwrap()
    });
    let r = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("completion");
    assert_eq!(r.status, PutStatus::FlushDiskTimeout, "{r:?}");
    let end = end_of(&r);
    assert!(
        store.offsets().acked < end,
        "a timed-out put is not acknowledged"
    );
    assert!(store.wait_dispatched(end, Duration::from_secs(5)));
    let o = r.offsets.unwrap();
    assert_eq!(store.get(o.phys_offset).unwrap().body, b"late");
    store.shutdown().unwrap();
}

/// fdatasyncs a store of `cfg` makes while opening on a fresh disk.
fn syncs_at_open(cfg: &StoreConfig) -> u64 {
    let sim = SimEnv::new(0);
    let s = Store::open_with_env(Arc::new(sim.clone()), "/sim/count", cfg.clone()).unwrap();
    let n = sim.stats().syncs;
    drop(s);
    n
}

#[test]
fn a_failed_fdatasync_answers_every_pending_async_put_service_not_available() {
    for (k, kind) in [FlushKind::Sync, FlushKind::Group].into_iter().enumerate() {
        let what = kind.name();
        let mut cfg = config(kind);
        // Group: batches of puts wait on each flush, so the failing one
        // has many pending.
        cfg.flush.group_wait_us = 2_000;
        // One index file for the whole run: the dispatcher seals a full
        // one with an fdatasync, and that one failing would poison the
        // log while no put is pending.
        cfg.index_items = 20_000;
        let mut rng = ChaCha8Rng::seed_from_u64(0xfa11 + k as u64);
        let fail_at = syncs_at_open(&cfg) + rng.random_range(3..12);
        let sim = SimEnv::with_faults(FaultPlan {
            seed: 11,
            sync_eio_at: Some(fail_at),
            ..FaultPlan::default()
        });
        let store = Arc::new(
            Store::open_with_env(Arc::new(sim), format!("/sim/put-async-eio-{what}"), cfg).unwrap(),
        );
        let done = Completions::new();
        let threads = 3u64;
        let per_thread = 400u64;
        let total = (threads * per_thread) as usize;
        put_from_threads(&store, &done, threads, per_thread, 0xe10 + k as u64);
        let seen = done.wait_for(total, what);
        let reason = store
            .poisoned()
            .expect("the failed fdatasync poisoned the log");
        let (mut ok, mut written_refused, mut refused) = (0, 0, 0);
        for n in 0..total as u64 {
            let s = only_call(&seen, n, what);
            let r = &s.result;
            match r.status {
                PutStatus::PutOk => {
                    ok += 1;
                    assert!(
                        s.flushed >= end_of(r),
                        "{what}: put {n} PUT_OK but not durable"
                    );
                }
                PutStatus::ServiceNotAvailable => {
                    let detail = r.detail.as_deref().unwrap_or_default();
                    assert!(
                        detail.contains("fdatasync") || detail.contains(&reason),
                        "{what}: put {n}: {detail:?} does not give the reason {reason:?}"
                    );
                    if r.offsets.is_some() {
                        // Written, pending when the fdatasync failed.
                        written_refused += 1;
                        // Group refuses only what no flush covered. (Sync
                        // refuses a put whose own fdatasync failed, even
                        // when an earlier one covered it, as its blocking
                        // put does; and `acked` may be past it, moved by a
                        // put queued before it that ends after it.)
                        if kind == FlushKind::Group {
                            assert!(
                                s.flushed < end_of(r) && s.acked < end_of(r),
                                "{what}: put {n} refused though durable: {s:?}"
                            );
                        }
                    } else {
                        refused += 1;
                    }
                }
                other => panic!("{what}: put {n}: {other:?} {r:?}"),
            }
        }
        eprintln!("{what}: {ok} PUT_OK, {written_refused} written then refused, {refused} refused");
        assert!(
            written_refused >= 1,
            "{what}: no put was pending when the fdatasync failed"
        );
        assert!(ok < total, "{what}");
        let store = unwrap(store);
        assert!(
            store.shutdown().is_err(),
            "{what}: a poisoned store does not shut down clean"
        );
    }
}

/// `count` async puts whose completions record only their result (they
/// hold no reference to the store, so it can be shut down or dropped with
/// them pending). Returns how many were still pending afterwards.
fn put_pending(store: &Store, done: &Arc<Completions>, count: u64) -> usize {
    for n in 0..count {
        let d2 = done.clone();
        store.put_async(&message(n), move |result| {
            d2.record(
                n,
                Seen {
                    result,
                    flushed: 0,
                    acked: 0,
                },
            );
        });
    }
    count as usize - done.seen.lock().unwrap().len()
}

#[test]
fn shutdown_waits_for_pending_async_puts() {
    for kind in FlushKind::ALL {
        let what = kind.name();
        let mut cfg = config(kind);
        cfg.flush.group_wait_us = 50_000;
        let store = Store::open_with_env(
            Arc::new(SimEnv::new(9)),
            format!("/sim/put-async-shutdown-{what}"),
            cfg,
        )
        .unwrap();
        let done = Completions::new();
        let count = 300u64;
        let pending = put_pending(&store, &done, count);
        store.shutdown().unwrap();
        // Every completion fired before shutdown returned, and with PUT_OK:
        // shutdown waited for them instead of refusing them.
        let seen = done.seen.lock().unwrap().clone();
        assert_eq!(
            seen.len(),
            count as usize,
            "{what}: shutdown left completions"
        );
        for n in 0..count {
            let s = only_call(&seen, n, what);
            assert_eq!(
                s.result.status,
                PutStatus::PutOk,
                "{what}: put {n}: {:?}",
                s.result
            );
        }
        eprintln!("{what}: {pending} of {count} pending when shutdown started");
        if kind == FlushKind::Group {
            assert!(pending > 0, "{what}: nothing was pending");
        }
    }
}

#[test]
fn dropping_the_store_answers_every_pending_async_put() {
    for kind in [FlushKind::Sync, FlushKind::Group] {
        let what = kind.name();
        let mut cfg = config(kind);
        cfg.flush.group_wait_us = 200_000;
        let store = Store::open_with_env(
            Arc::new(SimEnv::new(13)),
            format!("/sim/put-async-drop-{what}"),
            cfg,
        )
        .unwrap();
        let done = Completions::new();
        let count = 300u64;
        let pending = put_pending(&store, &done, count);
        // A crash: stops the strategy without flushing.
        drop(store);
        let seen = done.seen.lock().unwrap().clone();
        assert_eq!(
            seen.len(),
            count as usize,
            "{what}: completions left after the drop"
        );
        let mut refused = 0;
        for n in 0..count {
            let r = &only_call(&seen, n, what).result;
            match r.status {
                PutStatus::PutOk => {}
                PutStatus::ServiceNotAvailable => {
                    refused += 1;
                    let d = r.detail.as_deref().unwrap_or_default();
                    assert!(
                        d.contains("store dropped") || d.contains("shutting down"),
                        "{what}: {d}"
                    );
                }
                other => panic!("{what}: put {n}: {other:?}"),
            }
        }
        eprintln!("{what}: {pending} pending at the drop, {refused} refused");
        if kind == FlushKind::Group {
            assert!(pending > 0 && refused > 0, "{what}: nothing was pending");
        }
    }
}

#[test]
fn group_acknowledges_async_puts_in_flight_with_shared_fdatasyncs() {
    let mut cfg = config(FlushKind::Group);
    cfg.flush.group_wait_us = 1_000;
    let sim = SimEnv::new(21);
    let store =
        Arc::new(Store::open_with_env(Arc::new(sim.clone()), "/sim/put-async-batch", cfg).unwrap());
    let before = sim.stats().syncs;
    let done = Completions::new();
    let (threads, per_thread) = (2u64, 600u64);
    put_from_threads(&store, &done, threads, per_thread, 0xba7c);
    let total = threads * per_thread;
    let seen = done.wait_for(total as usize, "group");
    assert!(seen.values().all(|c| c.len() == 1 && c[0].result.is_ok()));
    let syncs = sim.stats().syncs - before;
    eprintln!("group: {total} async puts acknowledged by {syncs} fdatasyncs");
    assert!(
        syncs * 4 < total,
        "{syncs} fdatasyncs for {total} async puts: callbacks are not batched"
    );
    unwrap(store).shutdown().unwrap();
}
