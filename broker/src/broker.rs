//! The broker itself: [`Broker`] (its background threads) over
//! [`BrokerCore`] (what the threads share): the topic table, pulls with
//! long polling, group offsets, membership, ordered-consumption locks,
//! retries and dead letters, backlog; the transaction service's state
//! lives here and its logic in [`crate::txn`].

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use mqlab_engine::clock::Clock;
use mqlab_engine::config_file::ConfigFile;
use mqlab_engine::delay::{
    DelayScheduler, DeliverAt, LevelsConfig, LevelsScheduler, TimerHandle, WheelConfig,
    WheelScheduler, PROPERTY_TIMER_DELIVER_MS, PROPERTY_TIMER_DEL_UNIQKEY, PROPERTY_TIMER_OUT_MS,
    SCHEDULE_TOPIC, TIMER_TOPIC,
};
use mqlab_engine::error::Error as StoreError;
use mqlab_engine::message::{
    sys_flag, AppendOffsets, Message, PutResult, PutStatus, StoredMessage, PROPERTY_UNIQ_KEY,
};
use mqlab_engine::service::Periodic;
use mqlab_engine::store::Store;

use crate::clients::{ClientChannel, ClientTable};
use crate::config::{BrokerConfig, RetryDelay};
use crate::delayed::{DelayedSend, SchedulerDelay, TimerDelay};
use crate::error::{validate_topic, Error, Result};
use crate::lock::LockManager;
use crate::offsets::ConsumerOffsets;
use crate::topics::{queue_range, TopicTable};
use crate::txn::{CheckRound, CheckState, Txn};
use crate::types::{
    dlq_topic, retry_topic, EndTransactionRequest, HeartbeatRequest, MessageQueue, PullRequest,
    PullResult, PullStatus, QueueLag, UnregisterClientRequest, PROPERTY_DELAY,
    PROPERTY_ORIGIN_MESSAGE_ID, PROPERTY_RETRY_TOPIC,
};

/// Counters of the broker's retry path.
#[derive(Debug, Default)]
pub struct BrokerStats {
    /// Messages sent back for a retry.
    pub retried: AtomicU64,
    /// Messages moved to a dead-letter queue.
    pub dead_lettered: AtomicU64,
    /// Pulls held by long polling.
    pub held_pulls: AtomicU64,
}

/// Everything the broker's threads share. Reached through [`Broker`]
/// (which derefs to it).
pub struct BrokerCore {
    store: Arc<Store>,
    cfg: BrokerConfig,
    clock: Arc<dyn Clock>,
    topics: TopicTable,
    offsets: ConsumerOffsets,
    locks: LockManager,
    clients: ClientTable,
    txn_state: CheckState,
    delayed: RwLock<Arc<dyn DelayedSend>>,
    /// The levels scheduler of delayed sends (`DELAY`), when the broker
    /// runs one (weak: [`Broker::shutdown`] shuts it down).
    levels_scheduler: Option<Weak<LevelsScheduler>>,
    /// The time wheel of timer messages, opened on the first one.
    wheel: Mutex<WheelState>,
    /// Retry and long-polling counters.
    pub stats: BrokerStats,
}

/// The broker: a [`BrokerCore`] plus its background threads.
pub struct Broker {
    core: Arc<BrokerCore>,
    threads: Mutex<Vec<Periodic>>,
    timer: Mutex<Option<Arc<TimerDelay>>>,
    levels: Mutex<Option<Arc<LevelsScheduler>>>,
    shut: AtomicBool,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("store", &self.core.store.dir())
            .finish()
    }
}

impl std::ops::Deref for Broker {
    type Target = BrokerCore;
    fn deref(&self) -> &BrokerCore {
        &self.core
    }
}

impl Broker {
    /// Opens the broker over `store`: loads `config/topics.json` and
    /// `config/consumerOffset.json` (through the store's env), registers
    /// every queue the store already has, and starts the offset flusher and
    /// the transaction check service.
    pub fn open(
        store: Arc<Store>,
        cfg: BrokerConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Broker>> {
        cfg.sanitize()?;
        // Store times and the broker's times from one clock (the
        // transaction check compares them).
        store.use_clock(clock.clone());
        let env = store.env();
        let config_dir = store.dir().join("config");
        let topics = TopicTable::load(
            ConfigFile::new(env.clone(), config_dir.join("topics.json")),
            &store,
        )?;
        let offsets =
            ConsumerOffsets::load(ConfigFile::new(env, config_dir.join("consumerOffset.json")))?;
        let (timer, levels, delayed): (_, _, Arc<dyn DelayedSend>) = match cfg.retry_delay {
            RetryDelay::Memory => {
                let tick_ms = cfg.delay_levels_ms.iter().copied().min().unwrap_or(100);
                let t = Arc::new(TimerDelay::start(
                    store.clone(),
                    clock.clone(),
                    cfg.delay_levels_ms.clone(),
                    tick_ms.clamp(1, 100),
                ));
                (Some(t.clone()), None, t)
            }
            RetryDelay::Levels => {
                let s = Arc::new(LevelsScheduler::open(
                    store.clone(),
                    store.env(),
                    store.dir(),
                    LevelsConfig {
                        levels_ms: cfg.delay_levels_ms.clone(),
                        ..LevelsConfig::default()
                    },
                    clock.clone(),
                )?);
                (None, Some(s.clone()), Arc::new(SchedulerDelay::new(s)))
            }
        };
        let core = Arc::new(BrokerCore {
            locks: LockManager::new(clock.clone(), cfg.lock_expiry_ms),
            store,
            clock,
            topics,
            offsets,
            clients: ClientTable::default(),
            txn_state: CheckState::default(),
            delayed: RwLock::new(delayed),
            levels_scheduler: levels.as_ref().map(Arc::downgrade),
            wheel: Mutex::new(WheelState::Idle),
            stats: BrokerStats::default(),
            cfg,
        });
        // Timers stored before a restart are delivered without waiting for
        // a new one to open the wheel.
        let wheel_file = core.store.dir().join("timerwheel");
        if core.store.env().exists(&wheel_file) {
            core.timer_wheel()?;
        }
        let mut threads = Vec::new();
        let c = core.clone();
        threads.push(Periodic::spawn(
            "mqlab-offset-flush",
            Duration::from_millis(core.cfg.offset_flush_interval_ms),
            move || {
                // A failed write is retried next period; the store itself
                // refuses writes after an I/O error, this file does not
                // need to.
                let _ = c.offsets.persist();
                true
            },
        ));
        if core.cfg.txn.check_enabled {
            let c = core.clone();
            threads.push(Periodic::spawn(
                "mqlab-txn-check",
                Duration::from_millis(core.cfg.txn.check_interval_ms),
                move || {
                    // A slave (controller mode: until it is elected) does
                    // not check: it cannot store what a check decides.
                    if !c.store.slave_mode() {
                        let _ = c.check_transactions_once();
                    }
                    true
                },
            ));
        }
        Ok(Arc::new(Broker {
            core,
            threads: Mutex::new(threads),
            timer: Mutex::new(timer),
            levels: Mutex::new(levels),
            shut: AtomicBool::new(false),
        }))
    }

    /// Replaces how retries are delayed.
    pub fn set_delayed_send(&self, d: Arc<dyn DelayedSend>) {
        *self.core.delayed.write().unwrap_or_else(|e| e.into_inner()) = d;
    }

    /// The in-memory retry timer, while it is the delayed sender.
    pub fn timer(&self) -> Option<Arc<TimerDelay>> {
        self.timer.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn stop_threads(&self) {
        for t in self
            .threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            t.stop();
        }
        if let Some(t) = self.timer.lock().unwrap_or_else(|e| e.into_inner()).take() {
            t.stop();
        }
    }

    /// Clean shutdown: stops the threads and persists offsets, topics and
    /// the delay levels' progress. The store stays open (its owner shuts it
    /// down).
    pub fn shutdown(&self) -> Result<()> {
        self.shut.store(true, Ordering::Release);
        self.stop_threads();
        // Retries sent from now on are refused; the scheduler stops and
        // persists its progress (shut down cleanly when nothing else holds
        // it, else persisted as it stands).
        self.set_delayed_send(Arc::new(Closed));
        self.core.close_timer_wheel()?;
        if let Some(l) = self.levels.lock().unwrap_or_else(|e| e.into_inner()).take() {
            match Arc::try_unwrap(l) {
                Ok(l) => DelayScheduler::shutdown(Box::new(l))?,
                Err(l) => DelayScheduler::persist(l.as_ref())?,
            }
        }
        self.core.offsets.persist()?;
        self.core.topics.persist()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        // A crash unless shutdown ran: stop, persist nothing.
        self.stop_threads();
    }
}

impl BrokerCore {
    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The broker's clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The configuration.
    pub fn config(&self) -> &BrokerConfig {
        &self.cfg
    }

    /// Every topic and its queue count (what the broker announces to name
    /// servers).
    pub fn topics(&self) -> std::collections::BTreeMap<String, u32> {
        self.topics.all()
    }

    /// Creates `topic` with `queues` queues (or grows it to that many).
    pub fn create_topic(&self, topic: &str, queues: u32) -> Result<()> {
        self.topics.create(topic, queues)
    }

    /// Queue count of a topic, if it exists.
    pub fn topic_queues(&self, topic: &str) -> Option<u32> {
        self.topics.queues(topic)
    }

    /// The queues of `topic`, sorted; an unknown topic is created with
    /// `default_topic_queues` (RocketMQ's autoCreateTopicEnable).
    pub fn route(&self, topic: &str) -> Result<Vec<MessageQueue>> {
        let n = match self.topic_queues(topic) {
            Some(n) => n,
            None => {
                self.create_topic(topic, self.cfg.default_topic_queues)?;
                self.cfg.default_topic_queues
            }
        };
        Ok((0..n).map(|q| MessageQueue::new(topic, q)).collect())
    }

    /// The queues of `topic` without creating it.
    pub fn queues_of(&self, topic: &str) -> Vec<MessageQueue> {
        (0..self.topic_queues(topic).unwrap_or(0))
            .map(|q| MessageQueue::new(topic, q))
            .collect()
    }

    /// Puts a message as a producer's send does. A delayed message is
    /// not stored in its topic but handed to a delay scheduler, as
    /// RocketMQ's `HookUtils.handleScheduleMessage` does (see
    /// [`Self::delivery_of`] for how its properties are read):
    /// - `DELAY` (a level, 1-based; above the last level means the last) to
    ///   the levels scheduler: `SCHEDULE_TOPIC_XXXX`, queue level - 1, the
    ///   real topic and queue in `REAL_TOPIC` / `REAL_QID`; a broker whose
    ///   retries use the in-memory timer has no levels scheduler, and its
    ///   levels go to the time wheel instead (durable, same delays);
    /// - `TIMER_DELIVER_MS` / `TIMER_DELAY_SEC` / `TIMER_DELAY_MS` to the
    ///   time wheel (`rmq_sys_wheel_timer`), opened on the first timer.
    ///
    /// The result of a delayed put is that of the system-topic record
    /// (RocketMQ answers the same): its physical and queue offsets, with
    /// `wrote_bytes` and `store_timestamp_ms` 0 (the scheduler does not
    /// report them). Unreadable or out-of-range delay properties are
    /// MESSAGE_ILLEGAL naming the property, and nothing is stored.
    ///
    /// Half messages are not delayed here (RocketMQ delays them at commit;
    /// mqlab's commit does not: see `crate::txn`).
    pub fn put(&self, msg: &Message) -> PutResult {
        match self.delivery_of(msg) {
            Ok(Delivery::Now) => self.store.put(msg),
            Ok(Delivery::Level(level)) => {
                let mut m = msg.clone();
                // RocketMQ drops the timer properties of a level-delayed
                // message.
                for p in [
                    PROPERTY_TIMER_DELIVER_MS,
                    PROPERTY_TIMER_DELAY_SEC,
                    PROPERTY_TIMER_DELAY_MS,
                ] {
                    m.properties.remove(p);
                }
                match self.levels_scheduler.as_ref().map(Weak::upgrade) {
                    Some(Some(l)) => scheduled(l.schedule(m, DeliverAt::Level(level))),
                    Some(None) => shut_down(),
                    None => self.to_wheel(m, DeliverAt::Level(level)),
                }
            }
            Ok(Delivery::AtMs(due)) => self.to_wheel(msg.clone(), DeliverAt::AtMs(due)),
            Err(why) => PutResult {
                status: PutStatus::MessageIllegal,
                offsets: None,
                detail: Some(why),
            },
        }
    }

    /// [`Self::put`] without waiting: `done` gets the result once the
    /// flush strategy acknowledges the put (the engine's asynchronous put:
    /// no thread waits for an fdatasync). A delayed message goes to its
    /// scheduler as `put` sends it, on this thread, and `done` is called
    /// before this returns; so is a refusal.
    pub fn put_async(&self, msg: &Message, done: impl FnOnce(PutResult) + Send + 'static) {
        match self.delivery_of(msg) {
            Ok(Delivery::Now) => self.store.put_async(msg, done),
            _ => done(self.put(msg)),
        }
    }

    /// When a message put now is to be delivered, from its properties, as
    /// RocketMQ's `HookUtils.handleScheduleMessage` reads them:
    /// - messages of the delay topics themselves, half messages and
    ///   rollback records are never delayed;
    /// - `DELAY` > 0: that level (clamped to the last level, as RocketMQ
    ///   does); the timer properties are then ignored; `DELAY` <= 0 means no
    ///   level; a `DELAY` that is not an integer is an error;
    /// - otherwise, unless `TIMER_OUT_MS` marks a copy the wheel already
    ///   delivered: `TIMER_DELAY_SEC`, else `TIMER_DELAY_MS`, else
    ///   `TIMER_DELIVER_MS` (absolute, ms since the epoch) give the due
    ///   time by the broker's clock; not an integer is an error, a due time
    ///   not in the future means now, one more than
    ///   [`TIMER_MAX_DELAY_MS`] (3 days, RocketMQ's `timerMaxDelaySec`)
    ///   ahead is an error; `TIMER_DEL_UNIQKEY` (RocketMQ 5's cancel
    ///   message) is refused, mqlab cancels timers in-process only.
    ///
    /// An error names the property.
    pub(crate) fn delivery_of(&self, msg: &Message) -> std::result::Result<Delivery, String> {
        let p = &msg.properties;
        if p.is_empty() || msg.topic == SCHEDULE_TOPIC || msg.topic == TIMER_TOPIC {
            return Ok(Delivery::Now);
        }
        let txn = msg.sys_flag & sys_flag::TRANSACTION_MASK;
        if txn == sys_flag::TRANSACTION_PREPARED || txn == sys_flag::TRANSACTION_ROLLBACK {
            return Ok(Delivery::Now);
        }
        let int = |name: &str, v: &str| {
            v.trim()
                .parse::<i64>()
                .map_err(|_| format!("property {name}: {v:?} is not an integer"))
        };
        if let Some(v) = p.get(PROPERTY_DELAY) {
            let level = int(PROPERTY_DELAY, v)?;
            if level > 0 {
                let last = self.cfg.delay_levels_ms.len().max(1) as i64;
                return Ok(Delivery::Level(level.min(last) as u32));
            }
        }
        if p.contains_key(PROPERTY_TIMER_OUT_MS) {
            return Ok(Delivery::Now);
        }
        let now = self.clock.now_ms();
        let (name, due) = if let Some(v) = p.get(PROPERTY_TIMER_DELAY_SEC) {
            let s = int(PROPERTY_TIMER_DELAY_SEC, v)?;
            let due = s.checked_mul(1_000).and_then(|ms| now.checked_add(ms));
            (PROPERTY_TIMER_DELAY_SEC, due)
        } else if let Some(v) = p.get(PROPERTY_TIMER_DELAY_MS) {
            let ms = int(PROPERTY_TIMER_DELAY_MS, v)?;
            (PROPERTY_TIMER_DELAY_MS, now.checked_add(ms))
        } else if let Some(v) = p.get(PROPERTY_TIMER_DELIVER_MS) {
            (
                PROPERTY_TIMER_DELIVER_MS,
                Some(int(PROPERTY_TIMER_DELIVER_MS, v)?),
            )
        } else {
            return Ok(Delivery::Now);
        };
        let too_far = || {
            format!(
                "property {name}: the delivery time is more than {TIMER_MAX_DELAY_MS} ms ahead (timerMaxDelaySec)"
            )
        };
        let due = due.ok_or_else(too_far)?;
        if due <= now {
            return Ok(Delivery::Now);
        }
        if due - now > TIMER_MAX_DELAY_MS {
            return Err(too_far());
        }
        if p.contains_key(PROPERTY_TIMER_DEL_UNIQKEY) {
            return Err(format!(
                "property {PROPERTY_TIMER_DEL_UNIQKEY}: cancelling a timer by a message is not supported"
            ));
        }
        Ok(Delivery::AtMs(due))
    }

    fn to_wheel(&self, msg: Message, at: DeliverAt) -> PutResult {
        match self.timer_wheel() {
            Ok(Some(w)) => scheduled(w.schedule(msg, at)),
            Ok(None) => shut_down(),
            Err(e) => PutResult {
                status: PutStatus::ServiceNotAvailable,
                offsets: None,
                detail: Some(format!("opening the time wheel: {e}")),
            },
        }
    }

    /// The time wheel, opened on first use (its files beside the store's,
    /// its levels the broker's); None after shutdown.
    fn timer_wheel(&self) -> Result<Option<Arc<WheelScheduler>>> {
        let mut w = self.wheel.lock().unwrap_or_else(|e| e.into_inner());
        match &*w {
            WheelState::Open(s) => Ok(Some(s.clone())),
            WheelState::Closed => Ok(None),
            WheelState::Idle => {
                let cfg = WheelConfig {
                    levels_ms: self.cfg.delay_levels_ms.clone(),
                    max_delay_ms: TIMER_MAX_DELAY_MS as u64,
                    ..WheelConfig::default()
                };
                let s = Arc::new(WheelScheduler::open(
                    self.store.clone(),
                    self.store.env(),
                    self.store.dir(),
                    cfg,
                    self.clock.clone(),
                )?);
                *w = WheelState::Open(s.clone());
                Ok(Some(s))
            }
        }
    }

    /// Shuts the time wheel down (persisting its checkpoint) if it runs;
    /// later timers are refused.
    fn close_timer_wheel(&self) -> Result<()> {
        let state = std::mem::replace(
            &mut *self.wheel.lock().unwrap_or_else(|e| e.into_inner()),
            WheelState::Closed,
        );
        if let WheelState::Open(w) = state {
            match Arc::try_unwrap(w) {
                Ok(w) => DelayScheduler::shutdown(Box::new(w))?,
                // A put holds it this instant: persist; its threads stop
                // when the last holder drops it.
                Err(w) => DelayScheduler::persist(w.as_ref())?,
            }
        }
        Ok(())
    }

    /// RocketMQ's `getOffsetInQueueByTime` (SEARCH_OFFSET_BY_TIMESTAMP):
    /// with `upper` false (LOWER) the first queue offset whose message was
    /// stored at or after `timestamp_ms`, the queue's max offset when none
    /// was; with `upper` true (UPPER) the last one stored at or before it,
    /// the min offset when none was. A binary search over the consume
    /// queue reading each probed record's store time (so store times are
    /// assumed non-decreasing along a queue, as RocketMQ assumes); units
    /// whose record retention already deleted count as older than any
    /// time. An unknown or empty queue answers 0 (its range is (0, 0)).
    pub fn search_offset_by_time(
        &self,
        mq: &MessageQueue,
        timestamp_ms: i64,
        upper: bool,
    ) -> Result<u64> {
        let (min, max) = self.queue_range(mq);
        let log_min = self.store.min_offset();
        // Store time of the message at queue offset `o`; None when gone.
        let stored_at = |o: u64| -> Result<Option<i64>> {
            let units = self.store.queue_units(&mq.topic, mq.queue_id, o, 1)?;
            let Some(u) = units.first().filter(|u| u.phys_offset >= log_min) else {
                return Ok(None);
            };
            match self.store.get(u.phys_offset) {
                Ok(m) => Ok(Some(m.store_timestamp_ms)),
                Err(StoreError::NotFound(_)) => Ok(None),
                Err(e) => Err(e.into()),
            }
        };
        // First offset in [min, max) for which `after` holds (max if none).
        let first = |after: &dyn Fn(i64) -> bool| -> Result<u64> {
            let (mut lo, mut hi) = (min, max);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if stored_at(mid)?.is_some_and(after) {
                    hi = mid;
                } else {
                    lo = mid + 1;
                }
            }
            Ok(lo)
        };
        Ok(if upper {
            first(&|t| t > timestamp_ms)?.saturating_sub(1).max(min)
        } else {
            first(&|t| t >= timestamp_ms)?
        })
    }

    /// (first, one past last) queue offset of a queue; (0, 0) when empty.
    pub fn queue_range(&self, mq: &MessageQueue) -> (u64, u64) {
        queue_range(&self.store, mq)
    }

    fn pull_once(&self, req: &PullRequest) -> Result<PullResult> {
        let (min, max) = self.queue_range(&req.mq);
        let mut r = PullResult {
            status: PullStatus::NoNewMsg,
            next_offset: req.offset,
            min_offset: min,
            max_offset: max,
            msgs: Vec::new(),
        };
        if req.offset < min {
            r.status = PullStatus::OffsetIllegal;
            r.next_offset = min;
            return Ok(r);
        }
        if req.offset > max {
            r.status = PullStatus::OffsetIllegal;
            r.next_offset = max;
            return Ok(r);
        }
        if req.offset == max {
            return Ok(r);
        }
        // Without a filter every unit is a message to return; with one,
        // look further for matches.
        let scan = match req.filter {
            Some(_) => self.cfg.max_scan_units.max(req.max_msgs),
            None => req.max_msgs.max(1),
        };
        let units = self
            .store
            .queue_units(&req.mq.topic, req.mq.queue_id, req.offset, scan)?;
        let log_min = self.store.min_offset();
        let mut next = req.offset;
        for u in &units {
            if r.msgs.len() >= req.max_msgs.max(1) {
                break;
            }
            next += 1;
            if u.phys_offset < log_min {
                continue;
            }
            if let Some(f) = &req.filter {
                if !f.matches_code(u.tags_code) {
                    continue;
                }
            }
            match self.store.get(u.phys_offset) {
                Ok(m) => r.msgs.push(m),
                // Deleted by retention since the unit was read.
                Err(StoreError::NotFound(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        r.next_offset = next;
        r.status = if r.msgs.is_empty() {
            PullStatus::NoMatchedMsg
        } else {
            PullStatus::Found
        };
        Ok(r)
    }

    /// Pulls from a queue. With `suspend_ms` > 0 and nothing at the offset,
    /// the pull is held (long polling) until the dispatcher builds a unit
    /// for the queue, `suspend_ms` passes, or `cancel` is set; with long
    /// polling disabled it waits `short_polling_ms` once instead.
    pub fn pull(&self, req: &PullRequest, cancel: Option<&AtomicBool>) -> Result<PullResult> {
        let started = Instant::now();
        let hold = Duration::from_millis(req.suspend_ms);
        let mut held = false;
        loop {
            let r = self.pull_once(req)?;
            if r.status != PullStatus::NoNewMsg || req.suspend_ms == 0 {
                return Ok(r);
            }
            let cancelled = cancel.is_some_and(|c| c.load(Ordering::Acquire));
            let left = hold.saturating_sub(started.elapsed());
            if cancelled || left.is_zero() {
                return Ok(r);
            }
            if !held {
                held = true;
                self.stats.held_pulls.fetch_add(1, Ordering::Relaxed);
            }
            if self.cfg.long_polling {
                // Slices, so a cancelled pull returns within 50 ms.
                self.store.wait_queue_offset(
                    &req.mq.topic,
                    req.mq.queue_id,
                    req.offset,
                    left.min(Duration::from_millis(50)),
                );
            } else {
                std::thread::sleep(left.min(Duration::from_millis(self.cfg.short_polling_ms)));
                return self.pull_once(req);
            }
        }
    }

    /// The broker id a pull's answer suggests for the next pull of its
    /// queue (`suggestWhichBrokerId`), as RocketMQ's
    /// `DefaultMessageStore.getMessage` and `PullMessageProcessor` decide
    /// it: with `slave_read_enable`, `which_broker_when_consume_slowly`
    /// when the last message returned lies more than
    /// `access_message_in_memory_max_ratio` percent of the memory behind
    /// the commit log's end (no longer in memory: a slave should serve this
    /// consumer), else the master (0); without it, always the master. The
    /// same on a master and on a slave. A pull that returned nothing
    /// suggests the master (RocketMQ measures from offset 0 then).
    pub fn suggest_broker_id(&self, r: &PullResult) -> u64 {
        if !self.cfg.slave_read_enable {
            return 0;
        }
        let Some(last) = r.msgs.last() else {
            return 0;
        };
        let behind = self
            .store
            .offsets()
            .written
            .saturating_sub(last.phys_offset);
        if behind > self.in_memory_bytes() {
            self.cfg.which_broker_when_consume_slowly
        } else {
            0
        }
    }

    /// How far behind the commit log's end pulled data still counts as in
    /// memory, bytes.
    fn in_memory_bytes(&self) -> u64 {
        let total = self.cfg.total_memory_bytes.unwrap_or_else(physical_memory);
        (total as u128 * self.cfg.access_message_in_memory_max_ratio as u128 / 100) as u64
    }

    /// Commits a group's offset on a queue (persisted by the flusher).
    pub fn commit_offset(&self, group: &str, mq: &MessageQueue, offset: u64) {
        self.offsets.commit(group, &mq.topic, mq.queue_id, offset);
    }

    /// A group's committed offset on a queue.
    pub fn query_offset(&self, group: &str, mq: &MessageQueue) -> Option<u64> {
        self.offsets.query(group, &mq.topic, mq.queue_id)
    }

    /// Every (group, topic) with a committed offset (what backlog is
    /// reported for).
    pub fn offset_group_topics(&self) -> Vec<(String, String)> {
        self.offsets.group_topics()
    }

    /// Writes `config/consumerOffset.json` now.
    pub fn persist_offsets(&self) -> Result<()> {
        self.offsets.persist()
    }

    /// Ordered consumption: locks (or renews) queues for `client_id`;
    /// returns those it holds.
    pub fn lock_batch(
        &self,
        group: &str,
        client_id: &str,
        mqs: &[MessageQueue],
    ) -> BTreeSet<MessageQueue> {
        self.locks.try_lock_batch(group, mqs, client_id)
    }

    /// Releases queues `client_id` holds.
    pub fn unlock_batch(&self, group: &str, client_id: &str, mqs: &[MessageQueue]) {
        self.locks.unlock_batch(group, mqs, client_id)
    }

    /// The live lock owner of a queue.
    pub fn lock_owner(&self, group: &str, mq: &MessageQueue) -> Option<String> {
        self.locks.owner(group, mq)
    }

    /// A client announces its producer and consumer groups (HEARTBEAT):
    /// the broker keeps `channel` to send it check-backs and membership
    /// changes. Joining a consumer group notifies every member (the new one
    /// included) so they rebalance, as RocketMQ's
    /// NOTIFY_CONSUMER_IDS_CHANGED does. Subscriptions are checked, not
    /// kept: each pull carries its own filter.
    pub fn heartbeat(&self, req: &HeartbeatRequest, channel: Arc<dyn ClientChannel>) -> Result<()> {
        for c in &req.consumers {
            for s in &c.subscriptions {
                validate_topic(&s.topic)?;
            }
        }
        for g in &req.producer_groups {
            self.clients
                .register_producer(g, &req.client_id, channel.clone());
        }
        for c in &req.consumers {
            self.clients
                .register_consumer(&c.group, &req.client_id, channel.clone());
        }
        Ok(())
    }

    /// A client leaves its groups (UNREGISTER_CLIENT); the remaining
    /// members of a consumer group are notified.
    pub fn unregister_client(&self, req: &UnregisterClientRequest) {
        if let Some(g) = &req.producer_group {
            self.clients.unregister_producer(g, &req.client_id);
        }
        if let Some(g) = &req.consumer_group {
            self.clients.unregister_consumer(g, &req.client_id);
        }
    }

    /// Client ids of a group, sorted (GET_CONSUMER_LIST_BY_GROUP).
    pub fn consumer_ids(&self, group: &str) -> Vec<String> {
        self.clients.consumer_ids(group)
    }

    /// A consumer gives a message back (RECONSUME_LATER): it goes to
    /// `%RETRY%{group}` with delay level `retry_base_level` + its reconsume
    /// count, or, once reconsumed `max_reconsume` times, to `%DLQ%{group}`
    /// (one queue) at once.
    pub fn send_back(&self, group: &str, msg: &StoredMessage, max_reconsume: u32) -> PutResult {
        let origin_topic = msg
            .properties
            .get(PROPERTY_RETRY_TOPIC)
            .cloned()
            .unwrap_or_else(|| msg.topic.clone());
        let mut props = msg.properties.clone();
        props.insert(PROPERTY_RETRY_TOPIC.into(), origin_topic);
        if let Some(id) = msg.properties.get(PROPERTY_UNIQ_KEY) {
            props
                .entry(PROPERTY_ORIGIN_MESSAGE_ID.into())
                .or_insert_with(|| id.clone());
        }
        props.remove(PROPERTY_DELAY);
        let mut out = Message::new("", msg.body.clone());
        out.flag = msg.flag;
        out.born_timestamp_ms = msg.born_timestamp_ms;
        out.born_host = msg.born_host;
        out.reconsume_times = msg.reconsume_times + 1;
        out.properties = props;
        if msg.reconsume_times as u32 >= max_reconsume {
            out.topic = dlq_topic(group);
            out.queue_id = 0;
            if let Err(e) = self.create_topic(&out.topic, 1) {
                return illegal(e);
            }
            let r = self.store.put(&out);
            if r.is_ok() {
                self.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
            }
            return r;
        }
        out.topic = retry_topic(group);
        out.queue_id = 0;
        if let Err(e) = self.create_topic(&out.topic, 1) {
            return illegal(e);
        }
        let level = self.cfg.retry_base_level + msg.reconsume_times.max(0) as u32;
        let delayed = self
            .delayed
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let r = delayed.send_delayed(out, level);
        if r.is_ok() {
            self.stats.retried.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    /// Backlog of `group` on every queue of `topic`.
    pub fn lag(&self, group: &str, topic: &str) -> Vec<QueueLag> {
        self.queues_of(topic)
            .into_iter()
            .map(|mq| {
                let (min, max) = self.queue_range(&mq);
                let consumer = self.query_offset(group, &mq).unwrap_or(min).clamp(min, max);
                QueueLag {
                    broker_offset: max,
                    consumer_offset: consumer,
                    lag: max - consumer,
                    mq,
                }
            })
            .collect()
    }

    /// Total backlog of `group` on `topic`.
    pub fn total_lag(&self, group: &str, topic: &str) -> u64 {
        self.lag(group, topic).iter().map(|l| l.lag).sum()
    }

    fn txn(&self) -> Txn<'_> {
        Txn {
            store: &self.store,
            cfg: &self.cfg.txn,
            clock: self.clock.as_ref(),
            topics: &self.topics,
            offsets: &self.offsets,
            clients: &self.clients,
            state: &self.txn_state,
        }
    }

    /// Counters of the transaction service.
    pub fn txn_stats(&self) -> &CheckState {
        &self.txn_state
    }

    /// Stores `msg` (addressed to its real topic and queue) as a half
    /// message. The result's physical offset identifies it in
    /// [`Self::end_transaction`].
    pub fn prepare_transaction(&self, msg: &Message) -> PutResult {
        self.txn().prepare(msg)
    }

    /// Ends a half message (END_TRANSACTION): commit writes the real
    /// message then the op record, rollback only the op record, UNKNOWN
    /// nothing. Returns the put of the real message (commit) or of the op
    /// record.
    pub fn end_transaction(&self, req: &EndTransactionRequest) -> Result<Option<PutResult>> {
        self.txn().end(req.commit_log_offset, req.state)
    }

    /// One round of the check service (see [`crate::txn`]).
    pub fn check_transactions_once(&self) -> Result<CheckRound> {
        self.txn().check_once()
    }

    /// Half messages not ended, discarded or passed yet (pending).
    pub fn pending_transactions(&self) -> u64 {
        self.txn().pending()
    }
}

/// Property of a timer message: delay in seconds (RocketMQ 5.x).
pub const PROPERTY_TIMER_DELAY_SEC: &str = "TIMER_DELAY_SEC";
/// Property of a timer message: delay in ms (RocketMQ 5.x).
pub const PROPERTY_TIMER_DELAY_MS: &str = "TIMER_DELAY_MS";
/// Longest timer delay accepted, ms: RocketMQ's `timerMaxDelaySec`
/// default, 3 days.
pub const TIMER_MAX_DELAY_MS: i64 = 3 * 86_400_000;

/// When a put is to be delivered ([`BrokerCore::delivery_of`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Stored in its topic now.
    Now,
    /// After a delay level (1-based, within the broker's levels).
    Level(u32),
    /// At this time, ms by the broker's clock (in the future).
    AtMs(i64),
}

/// The time wheel's life: opened by the first timer, closed at shutdown.
enum WheelState {
    Idle,
    Open(Arc<WheelScheduler>),
    Closed,
}

/// A scheduler's answer as a put's: the system-topic record's offsets.
fn scheduled(r: mqlab_engine::Result<TimerHandle>) -> PutResult {
    match r {
        Ok(h) => PutResult {
            status: PutStatus::PutOk,
            offsets: Some(AppendOffsets {
                phys_offset: h.phys_offset,
                wrote_bytes: 0,
                queue_offset: h.queue_offset,
                store_timestamp_ms: 0,
            }),
            detail: None,
        },
        Err(StoreError::IllegalMessage(d)) => PutResult {
            status: PutStatus::MessageIllegal,
            offsets: None,
            detail: Some(d),
        },
        Err(e) => PutResult {
            status: PutStatus::ServiceNotAvailable,
            offsets: None,
            detail: Some(e.to_string()),
        },
    }
}

fn shut_down() -> PutResult {
    PutResult {
        status: PutStatus::ServiceNotAvailable,
        offsets: None,
        detail: Some("broker is shut down".into()),
    }
}

/// The delayed sender of a shut-down broker: refuses.
struct Closed;

impl DelayedSend for Closed {
    fn name(&self) -> &'static str {
        "closed"
    }
    fn send_delayed(&self, _msg: Message, _level: u32) -> PutResult {
        PutResult {
            status: PutStatus::ServiceNotAvailable,
            offsets: None,
            detail: Some("broker is shut down".into()),
        }
    }
}

fn illegal(e: Error) -> PutResult {
    PutResult {
        status: PutStatus::MessageIllegal,
        offsets: None,
        detail: Some(e.to_string()),
    }
}

/// The machine's physical memory, bytes (`MemTotal` of `/proc/meminfo`,
/// read once), or 24 GiB when it cannot be read (RocketMQ's `StoreUtil`
/// default).
fn physical_memory() -> u64 {
    static TOTAL: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TOTAL.get_or_init(|| {
        std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().strip_suffix("kB"))
                    .and_then(|kb| kb.trim().parse::<u64>().ok())
            })
            .map(|kb| kb * 1024)
            .unwrap_or(24 << 30)
    })
}
