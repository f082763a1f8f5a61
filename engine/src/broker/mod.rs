//! The broker side of messaging, in-process: what RocketMQ's broker adds on
//! top of its store so that producers and consumer groups can use it.
//!
//! - a topic table (queues per topic, auto-created on first send,
//!   persisted to `config/topics.json`);
//! - pulls with tag filtering by the consume queue's tags hash, and long
//!   polling: a pull with nothing to return is held up to its suspend time
//!   and answered as soon as the dispatcher builds a unit for that queue;
//! - group offsets ([`offsets::ConsumerOffsets`], `config/consumerOffset.json`,
//!   flushed every `offset_flush_interval_ms` and at shutdown);
//! - the group membership that triggers rebalances, and the (group, queue)
//!   locks of ordered consumption ([`lock::LockManager`]);
//! - retries: a message a consumer gives back goes to `%RETRY%{group}` with
//!   delay level 3 + its reconsume count, or to `%DLQ%{group}` once it has
//!   been reconsumed `max_reconsume` times;
//! - transactions (half messages, commit/rollback, the check service), in
//!   [`crate::txn`];
//! - backlog (lag) per (group, queue).
//!
//! Threads: the offset flusher and the transaction check service, plain
//! periodic threads, and the delay levels scheduler's. Dropping a broker
//! without [`Broker::shutdown`] stops them without persisting anything (a
//! crash).
//!
//! Where mqlab differs from RocketMQ on purpose:
//! - clustering consumers commit offsets to the broker after every batch
//!   (RocketMQ's client caches them and sends them every 5 s); what the
//!   broker has not flushed to `config/consumerOffset.json` is what a crash
//!   re-delivers;
//! - a held pull wakes on the dispatcher's signal for every round (RocketMQ:
//!   the dispatcher's arrival notification plus a 5 s re-check);
//! - ordered consumption: a rebalance marks a queue dropped only after it
//!   holds the queue's consume lock, so the batch in flight commits first
//!   (RocketMQ 4.x marks it dropped before taking the lock, and that
//!   batch's commit is skipped);
//! - transactions: a copy re-appended by a check is not checked again
//!   before it is `timeout_ms` old (see [`crate::txn`]);
//! - retention (see [`crate::retention`]): a segment's age comes from the
//!   store time of the next segment's first record, not the file's mtime,
//!   and the delete hour is UTC.

pub mod delayed;
pub mod filter;
pub mod lock;
pub mod offsets;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::flush::Periodic;
use crate::message::{Message, PutResult, PutStatus, StoredMessage, PROPERTY_UNIQ_KEY};
use crate::store::Store;
use crate::txn::{CheckCallback, TxnConfig};

use crate::config_file::ConfigFile;
use delayed::{DelayedSend, SchedulerDelay, TimerDelay, ROCKETMQ_LEVELS_MS};
use filter::Subscription;
use lock::LockManager;
use offsets::ConsumerOffsets;

/// Prefix of a group's retry topic.
pub const RETRY_PREFIX: &str = "%RETRY%";
/// Prefix of a group's dead-letter topic.
pub const DLQ_PREFIX: &str = "%DLQ%";
/// Property of a retried message: the topic it was first sent to.
pub const PROPERTY_RETRY_TOPIC: &str = "RETRY_TOPIC";
/// Property of a retried message: the id of the original message.
pub const PROPERTY_ORIGIN_MESSAGE_ID: &str = "ORIGIN_MESSAGE_ID";
/// Property holding the delay level of a message sent with a delay.
pub const PROPERTY_DELAY: &str = "DELAY";

/// The retry topic of a group.
pub fn retry_topic(group: &str) -> String {
    format!("{RETRY_PREFIX}{group}")
}

/// The dead-letter topic of a group.
pub fn dlq_topic(group: &str) -> String {
    format!("{DLQ_PREFIX}{group}")
}

/// One queue of one topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct MessageQueue {
    /// Topic.
    pub topic: String,
    /// Queue id.
    pub queue_id: u32,
}

impl MessageQueue {
    /// The queue `queue_id` of `topic`.
    pub fn new(topic: impl Into<String>, queue_id: u32) -> MessageQueue {
        MessageQueue {
            topic: topic.into(),
            queue_id,
        }
    }
}

impl std::fmt::Display for MessageQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.topic, self.queue_id)
    }
}

/// Who holds retries until their delay level is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RetryDelay {
    /// The store's levels scheduler (`SCHEDULE_TOPIC_XXXX`, durable), as
    /// RocketMQ.
    Levels,
    /// An in-memory timer (lost in a crash).
    Memory,
}

/// Broker settings (RocketMQ's names in brackets).
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Queues of a topic created by its first send. Default 4
    /// [defaultTopicQueueNums].
    pub default_topic_queues: u32,
    /// Hold pulls that find nothing until a message arrives (long polling).
    /// Default true [longPollingEnable]; false = short polling.
    pub long_polling: bool,
    /// Short polling: how long a pull that finds nothing waits before
    /// looking once more, ms. Default 1,000 [shortPollingTimeMills].
    pub short_polling_ms: u64,
    /// Consumer offsets are written to `config/consumerOffset.json` this
    /// often, ms. Default 5,000 [flushConsumerOffsetInterval].
    pub offset_flush_interval_ms: u64,
    /// Ordered consumption: a (group, queue) lock not renewed for this long
    /// is free, ms. Default 60,000 [REBALANCE_LOCK_MAX_LIVE_TIME].
    pub lock_expiry_ms: u64,
    /// Retries wait delay level `retry_base_level + reconsume count`.
    /// Default 3 (10 s for the first retry).
    pub retry_base_level: u32,
    /// Delay levels of retries, ms. Default RocketMQ's
    /// `1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h`.
    pub delay_levels_ms: Vec<u64>,
    /// Who holds retries until due. Default the levels scheduler.
    pub retry_delay: RetryDelay,
    /// Units a pull scans at most looking for matching tags. Default 800.
    pub max_scan_units: usize,
    /// Transactions.
    pub txn: TxnConfig,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            default_topic_queues: 4,
            long_polling: true,
            short_polling_ms: 1_000,
            offset_flush_interval_ms: 5_000,
            lock_expiry_ms: 60_000,
            retry_base_level: 3,
            delay_levels_ms: ROCKETMQ_LEVELS_MS.to_vec(),
            retry_delay: RetryDelay::Levels,
            max_scan_units: 800,
            txn: TxnConfig::default(),
        }
    }
}

impl BrokerConfig {
    /// Checks every value once.
    pub fn sanitize(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::Config(m.to_string()));
        if self.default_topic_queues == 0 {
            return bad("default_topic_queues must be > 0");
        }
        if self.offset_flush_interval_ms == 0 || self.short_polling_ms == 0 {
            return bad("offset_flush_interval_ms and short_polling_ms must be > 0");
        }
        if self.lock_expiry_ms == 0 || self.max_scan_units == 0 {
            return bad("lock_expiry_ms and max_scan_units must be > 0");
        }
        if self.delay_levels_ms.is_empty() {
            return bad("delay_levels_ms must name at least one level");
        }
        self.txn.sanitize()
    }
}

/// What a pull asks for.
#[derive(Debug, Clone)]
pub struct PullRequest {
    /// Queue to read.
    pub mq: MessageQueue,
    /// First queue offset wanted.
    pub offset: u64,
    /// At most this many messages.
    pub max_msgs: usize,
    /// Tag filter (None = every message).
    pub filter: Option<Arc<Subscription>>,
    /// Long polling: hold an empty pull up to this long, ms (0 = answer at
    /// once). RocketMQ's push consumer asks for 15,000.
    pub suspend_ms: u64,
}

/// How a pull ended (RocketMQ's PullStatus).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum PullStatus {
    /// Messages returned.
    Found,
    /// Nothing at or past the offset (after holding, with long polling).
    NoNewMsg,
    /// Units scanned, none matched the filter; pull again from `next`.
    NoMatchedMsg,
    /// The offset is below the queue's first or past its last unit; pull
    /// again from `next`.
    OffsetIllegal,
}

/// What a pull returns.
#[derive(Debug, Clone)]
pub struct PullResult {
    /// How it ended.
    pub status: PullStatus,
    /// Where the next pull starts.
    pub next_offset: u64,
    /// Queue's first offset.
    pub min_offset: u64,
    /// One past the queue's last unit.
    pub max_offset: u64,
    /// The messages (tags code matched; the client still compares tags).
    pub msgs: Vec<StoredMessage>,
}

/// Backlog of one group on one queue.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct QueueLag {
    /// The queue.
    pub mq: MessageQueue,
    /// One past the last message of the queue.
    pub broker_offset: u64,
    /// The group's committed offset (the queue's first offset when none).
    pub consumer_offset: u64,
    /// Messages not consumed yet: broker - consumer offset.
    pub lag: u64,
}

type Notify = Arc<dyn Fn() + Send + Sync>;

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
    pub(crate) store: Arc<Store>,
    pub(crate) cfg: BrokerConfig,
    pub(crate) clock: Arc<dyn Clock>,
    topics: RwLock<BTreeMap<String, u32>>,
    topics_file: ConfigFile,
    pub(crate) offsets: ConsumerOffsets,
    locks: LockManager,
    consumers: Mutex<HashMap<String, BTreeMap<String, Notify>>>,
    pub(crate) producers: Mutex<HashMap<String, BTreeMap<String, CheckCallback>>>,
    pub(crate) txn_state: crate::txn::CheckState,
    delayed: RwLock<Arc<dyn DelayedSend>>,
    /// Retry and long-polling counters.
    pub stats: BrokerStats,
}

/// The broker: a [`BrokerCore`] plus its background threads.
pub struct Broker {
    core: Arc<BrokerCore>,
    threads: Mutex<Vec<Periodic>>,
    timer: Mutex<Option<Arc<TimerDelay>>>,
    levels: Mutex<Option<Arc<crate::delay::LevelsScheduler>>>,
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
        let env = store.env();
        let config_dir = store.dir().join("config");
        let topics_file = ConfigFile::new(env.clone(), config_dir.join("topics.json"));
        let mut topics: BTreeMap<String, u32> = topics_file.load()?.unwrap_or_default();
        for q in store.queues() {
            let n = topics.entry(q.topic).or_insert(0);
            *n = (*n).max(q.queue_id + 1);
        }
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
                let s = Arc::new(crate::delay::LevelsScheduler::open(
                    store.clone(),
                    store.env(),
                    store.dir(),
                    crate::delay::LevelsConfig {
                        levels_ms: cfg.delay_levels_ms.clone(),
                        ..crate::delay::LevelsConfig::default()
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
            topics: RwLock::new(topics),
            topics_file,
            offsets,
            consumers: Mutex::new(HashMap::new()),
            producers: Mutex::new(HashMap::new()),
            txn_state: crate::txn::CheckState::default(),
            delayed: RwLock::new(delayed),
            stats: BrokerStats::default(),
            cfg,
        });
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
                    let _ = c.check_transactions_once();
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
        if let Some(l) = self.levels.lock().unwrap_or_else(|e| e.into_inner()).take() {
            match Arc::try_unwrap(l) {
                Ok(l) => crate::delay::DelayScheduler::shutdown(Box::new(l))?,
                Err(l) => crate::delay::DelayScheduler::persist(l.as_ref())?,
            }
        }
        self.core.offsets.persist()?;
        self.core.persist_topics()
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

    fn persist_topics(&self) -> Result<()> {
        let t = self
            .topics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        self.topics_file.store(&t)
    }

    /// Creates `topic` with `queues` queues (or grows it to that many).
    pub fn create_topic(&self, topic: &str, queues: u32) -> Result<()> {
        crate::topic::validate(topic).map_err(Error::IllegalMessage)?;
        if queues == 0 {
            return Err(Error::Config(format!(
                "topic {topic} needs at least 1 queue"
            )));
        }
        let changed = {
            let mut t = self.topics.write().unwrap_or_else(|e| e.into_inner());
            let n = t.entry(topic.to_string()).or_insert(0);
            let changed = *n < queues;
            *n = (*n).max(queues);
            changed
        };
        if changed {
            self.persist_topics()?;
        }
        Ok(())
    }

    /// Queue count of a topic, if it exists.
    pub fn topic_queues(&self, topic: &str) -> Option<u32> {
        self.topics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(topic)
            .copied()
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

    /// Puts a message as a producer's send does.
    pub fn put(&self, msg: &Message) -> PutResult {
        self.store.put(msg)
    }

    /// (first, one past last) queue offset of a queue; (0, 0) when empty.
    pub fn queue_range(&self, mq: &MessageQueue) -> (u64, u64) {
        self.store
            .queue_info(&mq.topic, mq.queue_id)
            .map(|i| (i.min_offset, i.max_offset))
            .unwrap_or((0, 0))
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
                Err(Error::NotFound(_)) => continue,
                Err(e) => return Err(e),
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

    /// Commits a group's offset on a queue (persisted by the flusher).
    pub fn commit_offset(&self, group: &str, mq: &MessageQueue, offset: u64) {
        self.offsets.commit(group, &mq.topic, mq.queue_id, offset);
    }

    /// A group's committed offset on a queue.
    pub fn query_offset(&self, group: &str, mq: &MessageQueue) -> Option<u64> {
        self.offsets.query(group, &mq.topic, mq.queue_id)
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

    /// Adds a consumer to a group; every member's `notify` runs (outside
    /// the broker's locks) so they rebalance, as RocketMQ's
    /// NOTIFY_CONSUMER_IDS_CHANGED does.
    pub fn register_consumer(&self, group: &str, client_id: &str, notify: Notify) {
        let all: Vec<Notify> = {
            let mut c = self.consumers.lock().unwrap_or_else(|e| e.into_inner());
            let g = c.entry(group.to_string()).or_default();
            g.insert(client_id.to_string(), notify);
            g.values().cloned().collect()
        };
        for n in all {
            n();
        }
    }

    /// Removes a consumer from a group (shutdown, or its connection
    /// dropping) and notifies the others.
    pub fn unregister_consumer(&self, group: &str, client_id: &str) {
        let rest: Vec<Notify> = {
            let mut c = self.consumers.lock().unwrap_or_else(|e| e.into_inner());
            let Some(g) = c.get_mut(group) else {
                return;
            };
            if g.remove(client_id).is_none() {
                return;
            }
            g.values().cloned().collect()
        };
        for n in rest {
            n();
        }
    }

    /// Client ids of a group, sorted.
    pub fn consumer_ids(&self, group: &str) -> Vec<String> {
        self.consumers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(group)
            .map(|g| g.keys().cloned().collect())
            .unwrap_or_default()
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
