//! Fixed delay levels (RocketMQ 4.x `ScheduleMessageService`).
//!
//! A message with delay level `l` is rewritten to `SCHEDULE_TOPIC_XXXX`,
//! queue `l - 1`, with its real topic and queue in REAL_TOPIC / REAL_QID,
//! the level in DELAY and its due time in TIMER_DELIVER_MS. All messages of
//! one level have the same delay, so each level's consume queue is already
//! in due order: the scheduler only has to deliver the head of each queue
//! when it comes due, and remember one offset per level.
//!
//! Modes: `per-level` runs one thread per level (RocketMQ 4.9.3+);
//! `single-thread` runs all levels on one thread, as RocketMQ's single
//! `java.util.Timer` did up to 4.9.2. A level thread sleeps until its head
//! is due, or re-checks after 100 ms when its queue is empty.
//!
//! Offsets are persisted to `config/delayOffset.json` every
//! `persist_interval_ms` (10 s) and at shutdown. After a crash the levels
//! restart from the persisted offsets, so what was delivered since is
//! delivered again (duplicates, counted by `mqlab delay`), never lost: an
//! offset only moves past a message once its delivery put was
//! acknowledged, so it is as durable as the store makes that put.
//!
//! Differences from RocketMQ: the due time is read from the record's
//! TIMER_DELIVER_MS property (written at schedule time from the scheduler's
//! clock) instead of the consume-queue tags code, which mqlab's dispatcher
//! computes from TAGS for every topic; a record without the property falls
//! back to RocketMQ's store time + level delay.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{
    deliver_ms_of, progress_file, put_outcome, to_real_topic, to_system_topic, Clock, Counter,
    DelayScheduler, DelayStats, DeliverAt, PutOutcome, TimerHandle, PROPERTY_DELAY,
    PROPERTY_TIMER_OUT_MS, SCHEDULE_TOPIC,
};
use crate::error::{Error, Result};
use crate::io::Env;
use crate::message::Message;
use crate::queue::UNIT_BYTES;
use crate::service::Service;
use crate::store::Store;

/// Name of the per-level mode in results.
pub const NAME_PER_LEVEL: &str = "levels";
/// Name of the single-thread mode in results.
pub const NAME_SINGLE_THREAD: &str = "levels-single-thread";
/// How long an empty level waits before looking again, ms (RocketMQ's
/// `DELAY_FOR_A_WHILE`).
pub const IDLE_RECHECK_MS: u64 = 100;

/// How level queues are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LevelMode {
    /// One thread for all levels (RocketMQ up to 4.9.2).
    SingleThread,
    /// One thread per level (RocketMQ 4.9.3+).
    PerLevel,
}

/// Level-scheduler settings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct LevelsConfig {
    /// Delay of each level, ms. Default RocketMQ's
    /// `1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h`.
    pub levels_ms: Vec<u64>,
    /// Threads. Default per-level.
    pub mode: LevelMode,
    /// Offsets are persisted this often, ms. Default 10,000 (RocketMQ's
    /// `flushDelayOffsetInterval`).
    pub persist_interval_ms: u64,
    /// Consume-queue units read per look at a level. Default 256.
    pub batch: usize,
    /// Start the background threads at open. Default true; tests drive
    /// the levels with [`DelayScheduler::tick`] instead.
    pub background: bool,
}

impl Default for LevelsConfig {
    fn default() -> Self {
        LevelsConfig {
            levels_ms: super::default_levels_ms(),
            mode: LevelMode::PerLevel,
            persist_interval_ms: 10_000,
            batch: 256,
            background: true,
        }
    }
}

impl LevelsConfig {
    /// Checks every value once.
    pub fn sanitize(&self) -> Result<()> {
        if self.levels_ms.is_empty() || self.levels_ms.len() > 255 {
            return Err(Error::Config("levels_ms must have 1 to 255 levels".into()));
        }
        if self.persist_interval_ms == 0 || self.batch == 0 {
            return Err(Error::Config(
                "persist_interval_ms and batch must be > 0".into(),
            ));
        }
        Ok(())
    }
}

/// What one look at a level did.
#[derive(Debug, Default, Clone, Copy)]
struct LevelOutcome {
    delivered: u64,
    /// Due time of the head, when it is not due yet.
    next_due: Option<i64>,
    /// The store refused a put: look again later.
    retry: bool,
}

struct Inner {
    store: Arc<Store>,
    env: Arc<dyn Env>,
    path: PathBuf,
    cfg: LevelsConfig,
    clock: Arc<dyn Clock>,
    /// Next queue offset of each level.
    offsets: Vec<AtomicU64>,
    /// (offset, due) of each level's head, read once per head.
    heads: Vec<Mutex<Option<(u64, i64)>>>,
    /// One deliverer per level at a time (threads, or `tick`).
    level_locks: Vec<Mutex<()>>,
    persist_lock: Mutex<()>,
    scheduled: Counter,
    delivered: Counter,
    dropped: Counter,
    recovery_ms: AtomicU64,
    last_tick_persist_ms: AtomicI64,
}

/// The level scheduler.
pub struct LevelsScheduler {
    inner: Arc<Inner>,
    threads: Service,
}

impl std::fmt::Debug for LevelsScheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LevelsScheduler")
            .field("levels", &self.inner.cfg.levels_ms.len())
            .field("mode", &self.inner.cfg.mode)
            .finish()
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct OffsetFile {
    /// Level (1-based, as a string key) -> next queue offset.
    offset_table: std::collections::BTreeMap<String, u64>,
}

impl LevelsScheduler {
    /// Opens the scheduler; its offsets live in `<dir>/config/delayOffset.json`
    /// (usually the store's root), on the environment the store was opened
    /// with.
    pub fn open(
        store: Arc<Store>,
        env: Arc<dyn Env>,
        dir: impl AsRef<Path>,
        cfg: LevelsConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<LevelsScheduler> {
        cfg.sanitize()?;
        let started = Instant::now();
        let path = dir.as_ref().join("config").join("delayOffset.json");
        let n = cfg.levels_ms.len();
        let loaded = progress_file(env.clone(), &path)
            .load_with(|b| serde_json::from_slice::<OffsetFile>(b).ok())?;
        let mut offsets = vec![0u64; n];
        if let Some(f) = loaded {
            for (k, v) in f.offset_table {
                if let Some(i) = k.parse::<usize>().ok().and_then(|l| l.checked_sub(1)) {
                    if i < n {
                        offsets[i] = v;
                    }
                }
            }
        }
        // The store may have lost records the offsets covered (async flush,
        // power loss): never start past a queue's end.
        for q in store.queues() {
            if q.topic == SCHEDULE_TOPIC && (q.queue_id as usize) < n {
                let o = &mut offsets[q.queue_id as usize];
                *o = (*o).min(q.max_offset);
            }
        }
        let inner = Arc::new(Inner {
            store,
            env,
            path,
            offsets: offsets.into_iter().map(AtomicU64::new).collect(),
            heads: (0..n).map(|_| Mutex::new(None)).collect(),
            level_locks: (0..n).map(|_| Mutex::new(())).collect(),
            persist_lock: Mutex::new(()),
            scheduled: Counter::default(),
            delivered: Counter::default(),
            dropped: Counter::default(),
            recovery_ms: AtomicU64::new(started.elapsed().as_millis() as u64),
            last_tick_persist_ms: AtomicI64::new(clock.now_ms()),
            clock,
            cfg,
        });
        let mut threads = Service::default();
        if inner.cfg.background {
            start_threads(&inner, &mut threads);
        }
        Ok(LevelsScheduler { inner, threads })
    }

    /// Next queue offset of each level (level 1 first).
    pub fn offsets(&self) -> Vec<u64> {
        self.inner
            .offsets
            .iter()
            .map(|o| o.load(Ordering::Acquire))
            .collect()
    }
}

fn wait_for(clock: &dyn Clock, next_due: Option<i64>) -> Duration {
    let ms = match next_due {
        Some(d) => (d - clock.now_ms()).clamp(0, IDLE_RECHECK_MS as i64) as u64,
        None => IDLE_RECHECK_MS,
    };
    Duration::from_millis(ms).max(Duration::from_micros(100))
}

fn start_threads(inner: &Arc<Inner>, threads: &mut Service) {
    match inner.cfg.mode {
        LevelMode::PerLevel => {
            for i in 0..inner.cfg.levels_ms.len() {
                let me = inner.clone();
                threads.spawn(format!("mqlab-delay-level-{}", i + 1), move |stop| {
                    while !stop.stopped() {
                        let next = match me.deliver_level(i) {
                            Ok(o) if o.retry => Some(me.clock.now_ms() + IDLE_RECHECK_MS as i64),
                            Ok(o) => o.next_due,
                            Err(e) => {
                                eprintln!("mqlab: delay level {}: {e}", i + 1);
                                None
                            }
                        };
                        stop.wait(wait_for(me.clock.as_ref(), next));
                    }
                });
            }
        }
        LevelMode::SingleThread => {
            let me = inner.clone();
            threads.spawn("mqlab-delay-levels", move |stop| {
                while !stop.stopped() {
                    let mut next: Option<i64> = None;
                    for i in 0..me.cfg.levels_ms.len() {
                        let d = match me.deliver_level(i) {
                            Ok(o) if o.retry => Some(me.clock.now_ms() + IDLE_RECHECK_MS as i64),
                            Ok(o) => o.next_due,
                            Err(e) => {
                                eprintln!("mqlab: delay level {}: {e}", i + 1);
                                None
                            }
                        };
                        next = match (next, d) {
                            (Some(a), Some(b)) => Some(a.min(b)),
                            (a, b) => a.or(b),
                        };
                    }
                    stop.wait(wait_for(me.clock.as_ref(), next));
                }
            });
        }
    }
    let me = inner.clone();
    threads.spawn("mqlab-delay-offsets", move |stop| {
        let every = Duration::from_millis(me.cfg.persist_interval_ms);
        while stop.wait(every) {
            if let Err(e) = me.persist() {
                eprintln!("mqlab: persisting delay offsets: {e}");
            }
        }
    });
}

impl Inner {
    /// Delivers the due heads of level `i` (0-based).
    fn deliver_level(&self, i: usize) -> Result<LevelOutcome> {
        let _g = self.level_locks[i]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut out = LevelOutcome::default();
        let now = self.clock.now_ms();
        let mut off = self.offsets[i].load(Ordering::Acquire);
        let mut head = self.heads[i].lock().unwrap_or_else(|e| e.into_inner());
        if let Some((o, due)) = *head {
            if o == off && due > now {
                out.next_due = Some(due);
                return Ok(out);
            }
        }
        let now_s = now.to_string();
        'outer: loop {
            let units = self
                .store
                .queue_units(SCHEDULE_TOPIC, i as u32, off, self.cfg.batch)?;
            if units.is_empty() {
                break;
            }
            for u in units {
                let m = match self.store.get(u.phys_offset) {
                    Ok(m) => m,
                    Err(_) => {
                        self.dropped.add(1);
                        off += 1;
                        continue;
                    }
                };
                let due = deliver_ms_of(&m.properties)
                    .unwrap_or(m.store_timestamp_ms + self.cfg.levels_ms[i] as i64);
                if due > now {
                    *head = Some((off, due));
                    out.next_due = Some(due);
                    break 'outer;
                }
                let mut msg = match to_real_topic(m) {
                    Ok(m) => m,
                    Err(_) => {
                        self.dropped.add(1);
                        off += 1;
                        continue;
                    }
                };
                msg.properties
                    .insert(PROPERTY_TIMER_OUT_MS.to_string(), now_s.clone());
                match put_outcome(&self.store.put(&msg)) {
                    PutOutcome::Stored => out.delivered += 1,
                    PutOutcome::Rejected(_) => self.dropped.add(1),
                    PutOutcome::Retry(_) => {
                        out.retry = true;
                        break 'outer;
                    }
                }
                off += 1;
                self.offsets[i].store(off, Ordering::Release);
            }
        }
        self.offsets[i].store(off, Ordering::Release);
        self.delivered.add(out.delivered);
        Ok(out)
    }

    /// Writes the offsets file.
    fn persist(&self) -> Result<()> {
        let _g = self.persist_lock.lock().unwrap_or_else(|e| e.into_inner());
        let f = OffsetFile {
            offset_table: self
                .offsets
                .iter()
                .enumerate()
                .map(|(i, o)| ((i + 1).to_string(), o.load(Ordering::Acquire)))
                .collect(),
        };
        let json = serde_json::to_vec_pretty(&f).expect("offsets serialize");
        progress_file(self.env.clone(), &self.path).store_bytes(&json)
    }

    fn tick(&self) -> Result<u64> {
        let end = self.store.offsets().written;
        self.store.wait_dispatched(end, Duration::from_secs(5));
        let mut n = 0;
        for i in 0..self.cfg.levels_ms.len() {
            n += self.deliver_level(i)?.delivered;
        }
        let now = self.clock.now_ms();
        let last = self.last_tick_persist_ms.load(Ordering::Relaxed);
        if now - last >= self.cfg.persist_interval_ms as i64 {
            self.persist()?;
            self.last_tick_persist_ms.store(now, Ordering::Relaxed);
        }
        Ok(n)
    }
}

impl DelayScheduler for LevelsScheduler {
    fn name(&self) -> &'static str {
        match self.inner.cfg.mode {
            LevelMode::PerLevel => NAME_PER_LEVEL,
            LevelMode::SingleThread => NAME_SINGLE_THREAD,
        }
    }

    fn schedule(&self, msg: Message, at: DeliverAt) -> Result<TimerHandle> {
        let n = self.inner.cfg.levels_ms.len();
        let level = match at {
            DeliverAt::Level(l) if l >= 1 && l as usize <= n => l,
            DeliverAt::Level(l) => {
                return Err(Error::IllegalMessage(format!(
                    "delay level {l} is not in 1..={n}"
                )))
            }
            _ => {
                return Err(Error::IllegalMessage(
                    "the levels scheduler only takes delay levels (DeliverAt::Level)".into(),
                ))
            }
        };
        let due = self.inner.clock.now_ms() + self.inner.cfg.levels_ms[level as usize - 1] as i64;
        let mut m = to_system_topic(msg, SCHEDULE_TOPIC, level - 1, due)?;
        m.properties
            .insert(PROPERTY_DELAY.to_string(), level.to_string());
        let r = self.inner.store.put(&m);
        match put_outcome(&r) {
            PutOutcome::Stored => {}
            PutOutcome::Rejected(d) => return Err(Error::IllegalMessage(d)),
            PutOutcome::Retry(d) => return Err(Error::Unavailable(d)),
        }
        let o = r.offsets.expect("a stored put has offsets");
        self.inner.scheduled.add(1);
        Ok(TimerHandle {
            phys_offset: o.phys_offset,
            queue_offset: o.queue_offset,
            deliver_ms: due,
        })
    }

    fn cancel(&self, _handle: &TimerHandle) -> Result<bool> {
        Err(Error::Unavailable(
            "the levels scheduler cannot cancel (RocketMQ 4.x has no cancel)".into(),
        ))
    }

    fn cancel_by_key(&self, _key: &str) -> Result<usize> {
        Err(Error::Unavailable(
            "the levels scheduler cannot cancel (RocketMQ 4.x has no cancel)".into(),
        ))
    }

    fn tick(&self) -> Result<u64> {
        self.inner.tick()
    }

    fn persist(&self) -> Result<()> {
        self.inner.persist()
    }

    fn stats(&self) -> DelayStats {
        let mut pending = 0;
        for q in self.inner.store.queues() {
            if q.topic == SCHEDULE_TOPIC {
                if let Some(o) = self.inner.offsets.get(q.queue_id as usize) {
                    pending += q.max_offset.saturating_sub(o.load(Ordering::Acquire));
                }
            }
        }
        let n = self.inner.cfg.levels_ms.len() as u64;
        DelayStats {
            scheduled: self.inner.scheduled.get(),
            delivered: self.inner.delivered.get(),
            dropped: self.inner.dropped.get(),
            pending,
            // Offsets, head caches and snapshots: nothing per timer.
            ram_bytes: n * 64,
            // The pending timers' consume-queue units.
            index_bytes: pending * UNIT_BYTES,
            recovery_ms: self.inner.recovery_ms.load(Ordering::Relaxed),
            ..DelayStats::default()
        }
    }

    fn shutdown(self: Box<Self>) -> Result<()> {
        self.threads.stop();
        self.inner.persist()
    }
}
