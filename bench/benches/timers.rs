//! `timers`: insert, cancel and expire cost of delay-timer structures at
//! 1k / 100k / 10M pending timers.
//!
//! Contenders:
//! - `wheel`: the time wheel's index (`mqlab_engine::delay::wheel::WheelIndex`:
//!   slot entries over the append-only timer log, on real files), 1 ms slots;
//! - `levels`: the level scheduler's structure, one consume queue per level
//!   (`mqlab_engine::queue`, 20-byte units on real files) whose head is
//!   checked against the clock; 16 levels spread over the horizon; cancel
//!   is a tombstone set (RocketMQ 4.x has no cancel);
//! - `heap`: a `BinaryHeap` of (due, id), tombstones for cancel (baseline);
//! - `tokio-delayqueue`: `tokio_util::time::DelayQueue` (slab + tokio's
//!   hierarchical wheel), driven on a paused tokio clock.
//!
//! Method: steady state. Every simulated millisecond N/1000 timers are
//! inserted with delays uniform in 1..=2000 ms and the clock moves 1 ms,
//! expiring what is due, so N stay pending. `insert` times the inserts,
//! `expire` the expiry per timer expired, `cancel` the cancel of timers
//! just inserted; the other steps run untimed. The structures are filled
//! with N timers before measuring.
//!
//! `MQLAB_TIMER_SIZES=1000,100000` limits the sizes (default
//! 1000,100000,10000000; the 10M fill takes a few seconds per contender).
//! Not run in CI; `cargo clippy --all-targets` builds it.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use mqlab_engine::delay::wheel::WheelIndex;
use mqlab_engine::queue::{ConsumeQueue, QueueSet, Unit};
use mqlab_engine::{BackendKind, Env};

/// Delays are uniform in 1..=HORIZON_MS.
const HORIZON_MS: i64 = 2_000;
/// Levels of the `levels` contender.
const LEVELS: usize = 16;

/// What every contender offers. Handles are (due, id) pairs plus the
/// contender's own key where it has one.
trait Timers {
    /// Inserts timer `id`, at `now_ms`, due at `due_ms`; returns a key.
    fn insert(&mut self, now_ms: i64, due_ms: i64, id: u64) -> u64;
    fn cancel(&mut self, due_ms: i64, id: u64, key: u64);
    /// Expires everything due at `now_ms`; returns how many.
    fn expire(&mut self, now_ms: i64) -> usize;
    /// Called once per simulated ms, after the inserts of that ms.
    fn end_of_tick(&mut self) {}
}

struct Heap {
    heap: BinaryHeap<Reverse<(i64, u64)>>,
    cancelled: HashSet<u64>,
}

impl Timers for Heap {
    fn insert(&mut self, _now_ms: i64, due_ms: i64, id: u64) -> u64 {
        self.heap.push(Reverse((due_ms, id)));
        id
    }
    fn cancel(&mut self, _due_ms: i64, id: u64, _key: u64) {
        self.cancelled.insert(id);
    }
    fn expire(&mut self, now_ms: i64) -> usize {
        let mut n = 0;
        while let Some(Reverse((due, id))) = self.heap.peek().copied() {
            if due > now_ms {
                break;
            }
            self.heap.pop();
            if !self.cancelled.remove(&id) {
                n += 1;
            }
        }
        n
    }
}

struct Wheel {
    index: WheelIndex,
    out: Vec<(i64, u64)>,
    ticks: u64,
    _dir: tempfile::TempDir,
}

impl Wheel {
    fn new(env: &Arc<dyn Env>) -> Wheel {
        let dir = tempfile::tempdir().expect("temp dir");
        let index = WheelIndex::open(
            env.clone(),
            &dir.path().join("timerlog"),
            1,
            4_096,
            64 << 20,
            0,
            None,
        )
        .expect("open wheel index");
        Wheel {
            index,
            out: Vec::new(),
            ticks: 0,
            _dir: dir,
        }
    }
}

impl Timers for Wheel {
    fn insert(&mut self, _now_ms: i64, due_ms: i64, id: u64) -> u64 {
        self.index.insert(due_ms, id).expect("insert")
    }
    fn cancel(&mut self, due_ms: i64, id: u64, _key: u64) {
        self.index.cancel(due_ms, id).expect("cancel");
    }
    fn expire(&mut self, now_ms: i64) -> usize {
        self.out.clear();
        let n = self.index.expire(now_ms, &mut self.out).expect("expire");
        self.ticks += 1;
        if self.ticks.is_multiple_of(1_024) {
            // Timer-log files whose slots all passed are deleted, as the
            // scheduler's checkpoint does.
            self.index.release_before(now_ms).expect("release");
        }
        n
    }
}

struct Levels {
    queues: Vec<Arc<ConsumeQueue>>,
    /// Next offset to write and to expire, per level.
    tail: Vec<u64>,
    head: Vec<u64>,
    /// Units of this tick not yet written (the dispatcher writes runs).
    pending: Vec<Vec<u8>>,
    delay_ms: Vec<i64>,
    /// Due time of each level's head, read once per head (as the level
    /// scheduler caches it).
    head_due: Vec<Option<i64>>,
    cancelled: HashSet<u64>,
    _dir: tempfile::TempDir,
}

impl Levels {
    fn new(env: &Arc<dyn Env>) -> Levels {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut notes = Vec::new();
        let set = QueueSet::open(
            env.clone(),
            &dir.path().join("consumequeue"),
            300_000,
            false,
            &mut notes,
        )
        .expect("open queues");
        let queues = (0..LEVELS)
            .map(|l| {
                set.get_or_create("SCHEDULE_TOPIC_XXXX", l as u32)
                    .expect("queue")
            })
            .collect();
        Levels {
            queues,
            tail: vec![0; LEVELS],
            head: vec![0; LEVELS],
            pending: vec![Vec::new(); LEVELS],
            delay_ms: (0..LEVELS)
                .map(|l| (l as i64 + 1) * HORIZON_MS / LEVELS as i64)
                .collect(),
            head_due: vec![None; LEVELS],
            cancelled: HashSet::new(),
            _dir: dir,
        }
    }

    /// The level whose delay is closest to `delay_ms`.
    fn level_for(&self, delay_ms: i64) -> usize {
        ((delay_ms * LEVELS as i64 / HORIZON_MS).max(1) as usize - 1).min(LEVELS - 1)
    }
}

impl Timers for Levels {
    fn insert(&mut self, now_ms: i64, due_ms: i64, id: u64) -> u64 {
        // The level nearest to the requested delay; due a fixed delay later.
        let l = self.level_for(due_ms - now_ms);
        let u = Unit {
            phys_offset: id,
            size: 100,
            tags_code: now_ms + self.delay_ms[l],
        };
        self.pending[l].extend_from_slice(&u.encode());
        id
    }
    fn cancel(&mut self, _due_ms: i64, id: u64, _key: u64) {
        self.cancelled.insert(id);
    }
    fn end_of_tick(&mut self) {
        for l in 0..LEVELS {
            if !self.pending[l].is_empty() {
                self.queues[l]
                    .put_units(self.tail[l], &self.pending[l])
                    .expect("put units");
                self.tail[l] += self.pending[l].len() as u64 / 20;
                self.pending[l].clear();
            }
        }
    }
    fn expire(&mut self, now_ms: i64) -> usize {
        self.end_of_tick();
        let mut n = 0;
        for l in 0..LEVELS {
            if self.head_due[l].is_some_and(|d| d > now_ms) {
                continue;
            }
            'level: while self.head[l] < self.tail[l] {
                let units = self.queues[l]
                    .get_units(self.head[l], 256)
                    .expect("get units");
                if units.is_empty() {
                    break;
                }
                for u in units {
                    if u.tags_code > now_ms {
                        self.head_due[l] = Some(u.tags_code);
                        break 'level;
                    }
                    self.head_due[l] = None;
                    self.head[l] += 1;
                    if !self.cancelled.remove(&u.phys_offset) {
                        n += 1;
                    }
                }
            }
        }
        n
    }
}

struct Tokio {
    rt: tokio::runtime::Runtime,
    dq: tokio_util::time::DelayQueue<u64>,
    keys: Vec<Option<tokio_util::time::delay_queue::Key>>,
    base: tokio::time::Instant,
    now_ms: i64,
}

impl Tokio {
    fn new(start_ms: i64) -> Tokio {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("runtime");
        let base = rt.block_on(async { tokio::time::Instant::now() });
        Tokio {
            rt,
            dq: tokio_util::time::DelayQueue::new(),
            keys: Vec::new(),
            base,
            now_ms: start_ms,
        }
    }
}

impl Timers for Tokio {
    fn insert(&mut self, _now_ms: i64, due_ms: i64, id: u64) -> u64 {
        let at = self.base + Duration::from_millis(due_ms as u64);
        let _g = self.rt.enter();
        let k = self.dq.insert_at(id, at);
        let slot = id as usize % (1 << 24);
        if self.keys.len() <= slot {
            self.keys.resize(slot + 1, None);
        }
        self.keys[slot] = Some(k);
        id
    }
    fn cancel(&mut self, _due_ms: i64, id: u64, _key: u64) {
        if let Some(k) = self.keys[id as usize % (1 << 24)].take() {
            let _g = self.rt.enter();
            self.dq.try_remove(&k);
        }
    }
    fn expire(&mut self, now_ms: i64) -> usize {
        let step = (now_ms - self.now_ms).max(0) as u64;
        self.now_ms = now_ms;
        let dq = &mut self.dq;
        self.rt.block_on(async {
            tokio::time::advance(Duration::from_millis(step)).await;
            let mut cx = Context::from_waker(Waker::noop());
            let mut n = 0;
            while let Poll::Ready(Some(_)) = dq.poll_expired(&mut cx) {
                n += 1;
            }
            n
        })
    }
}

/// A contender in steady state at `n` pending timers.
struct Steady<T: Timers> {
    t: T,
    now_ms: i64,
    per_tick: u64,
    next_id: u64,
    rng: u64,
}

impl<T: Timers> Steady<T> {
    fn new(mut t: T, n: u64) -> Steady<T> {
        let mut s = Steady {
            t: {
                t.expire(0);
                t
            },
            now_ms: 0,
            per_tick: (n / 1_000).max(1),
            next_id: 0,
            rng: 0x9e37_79b9_7f4a_7c15,
        };
        // Fill: n timers due over the horizon.
        for _ in 0..n {
            let d = s.due();
            let id = s.id();
            s.t.insert(0, d, id);
        }
        s.t.end_of_tick();
        s
    }

    fn rand(&mut self) -> u64 {
        // xorshift64*: cheap and deterministic.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn due(&mut self) -> i64 {
        self.now_ms + 1 + (self.rand() % HORIZON_MS as u64) as i64
    }

    /// One simulated ms: `k` inserts, the clock moves, expiry. Returns
    /// (insert time, expire time, expired).
    fn tick(&mut self, k: u64) -> (Duration, Duration, usize) {
        let mut due = Vec::with_capacity(k as usize);
        for _ in 0..k {
            let d = self.due();
            let id = self.id();
            due.push((d, id));
        }
        let t0 = Instant::now();
        let now = self.now_ms;
        for &(d, id) in &due {
            self.t.insert(now, d, id);
        }
        self.t.end_of_tick();
        let ins = t0.elapsed();
        self.now_ms += 1;
        let t1 = Instant::now();
        let n = self.t.expire(self.now_ms);
        (ins, t1.elapsed(), n)
    }

    fn bench_insert(&mut self, iters: u64) -> Duration {
        let (mut total, mut done) = (Duration::ZERO, 0);
        while done < iters {
            let k = self.per_tick.min(iters - done);
            total += self.tick(k).0;
            done += k;
        }
        total
    }

    fn bench_expire(&mut self, iters: u64) -> Duration {
        let (mut total, mut expired) = (Duration::ZERO, 0u64);
        while expired < iters {
            let (_, t, n) = self.tick(self.per_tick);
            total += t;
            expired += n as u64;
        }
        total.mul_f64(iters as f64 / expired.max(1) as f64)
    }

    fn bench_cancel(&mut self, iters: u64) -> Duration {
        let (mut total, mut done) = (Duration::ZERO, 0);
        while done < iters {
            // Insert one extra timer per cancel so the pending count holds.
            let k = self.per_tick.min(iters - done);
            let mut fresh = Vec::with_capacity(k as usize);
            for _ in 0..k {
                let d = self.due();
                let id = self.id();
                let key = self.t.insert(self.now_ms, d, id);
                fresh.push((d, id, key));
            }
            self.t.end_of_tick();
            let t0 = Instant::now();
            for &(d, id, key) in &fresh {
                self.t.cancel(d, id, key);
            }
            total += t0.elapsed();
            done += k;
            self.tick(self.per_tick);
        }
        total
    }
}

fn sizes() -> Vec<u64> {
    std::env::var("MQLAB_TIMER_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000, 100_000, 10_000_000])
}

fn label(n: u64) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

fn run<T: Timers>(c: &mut Criterion, name: &str, n: u64, make: impl Fn() -> T) {
    let mut s = Steady::new(make(), n);
    let id = |op: &str| BenchmarkId::new(format!("{op}/{name}"), label(n));
    let mut g = c.benchmark_group("timers");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    g.bench_function(id("insert"), |b| b.iter_custom(|it| s.bench_insert(it)));
    g.bench_function(id("expire"), |b| b.iter_custom(|it| s.bench_expire(it)));
    g.bench_function(id("cancel"), |b| b.iter_custom(|it| s.bench_cancel(it)));
    g.finish();
}

fn timers(c: &mut Criterion) {
    let env: Arc<dyn Env> = BackendKind::Pwrite.env().expect("pwrite env");
    for n in sizes() {
        run(c, "wheel", n, || Wheel::new(&env));
        run(c, "levels", n, || Levels::new(&env));
        run(c, "heap", n, || Heap {
            heap: BinaryHeap::new(),
            cancelled: HashSet::new(),
        });
        run(c, "tokio-delayqueue", n, || Tokio::new(0));
    }
}

criterion_group! {
    name = benches;
    // No plots: criterion's charts need system fonts.
    config = Criterion::default().without_plots();
    targets = timers
}
criterion_main!(benches);
