//! The pull consumer (RocketMQ's LitePullConsumer): the application calls
//! [`PullConsumer::poll`] when it is ready for more, so a slow application
//! never has more than one batch in hand (flow control by construction).
//! Queues come from the group's rebalancing ([`PullConsumer::subscribe`]) or
//! from the application ([`PullConsumer::assign`]).
//!
//! Offsets: `poll` returns messages past the consumed offset of each queue
//! and moves it; the offsets of what earlier polls returned are committed
//! at the start of the next poll (auto-commit), by [`PullConsumer::commit`],
//! and at shutdown.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::offset_store::OffsetStore;
use super::process_queue::ProcessQueue;
use super::rebalance::Rebalancer;
use super::{join_group, leave_group, reset_retry_topic, ConsumerConfig, ConsumerStats};
use crate::api::BrokerApi;
use crate::error::Result;
use mqlab_broker::filter::Subscription;
use mqlab_broker::types::{MessageQueue, PullRequest, PullStatus};
use mqlab_engine::message::StoredMessage;

/// How long `poll` waits before looking again when every queue was empty.
const POLL_RETRY: Duration = Duration::from_millis(1);

struct QueueState {
    pq: Arc<ProcessQueue>,
    next: u64,
    committed: Option<u64>,
}

struct Inner {
    broker: Arc<dyn BrokerApi>,
    cfg: ConsumerConfig,
    subs: BTreeMap<String, Arc<Subscription>>,
    rebalancer: Option<Rebalancer>,
    offsets: Arc<dyn OffsetStore>,
    queues: Mutex<BTreeMap<MessageQueue, QueueState>>,
    rr: AtomicUsize,
    stats: Arc<ConsumerStats>,
    stopped: AtomicBool,
    trigger: AtomicBool,
    service: Mutex<Option<JoinHandle<()>>>,
}

/// A pull consumer.
pub struct PullConsumer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PullConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PullConsumer")
            .field("cfg", &self.inner.cfg)
            .finish()
    }
}

impl PullConsumer {
    /// Joins `cfg.group` and consumes the queues rebalancing gives it.
    pub fn subscribe(
        broker: Arc<dyn BrokerApi>,
        cfg: ConsumerConfig,
        subscriptions: &[(&str, &str)],
    ) -> Result<PullConsumer> {
        cfg.sanitize()?;
        let mut subs = BTreeMap::new();
        for (topic, expr) in subscriptions {
            broker.get_route_info(topic)?;
            subs.insert(topic.to_string(), Arc::new(Subscription::new(*topic, expr)));
        }
        let offsets = super::offset_store_for(&broker, &cfg)?;
        let stats = Arc::new(ConsumerStats::default());
        let rebalancer = Rebalancer {
            broker: broker.clone(),
            cfg: cfg.clone(),
            orderly: false,
            topics: subs.keys().cloned().collect(),
            offsets: offsets.clone(),
            table: Mutex::new(BTreeMap::new()),
            stats: stats.clone(),
        };
        let inner = Arc::new(Inner {
            broker: broker.clone(),
            cfg: cfg.clone(),
            subs,
            rebalancer: Some(rebalancer),
            offsets,
            queues: Mutex::new(BTreeMap::new()),
            rr: AtomicUsize::new(0),
            stats,
            stopped: AtomicBool::new(false),
            trigger: AtomicBool::new(true),
            service: Mutex::new(None),
        });
        let weak = Arc::downgrade(&inner);
        join_group(broker.as_ref(), &cfg, inner.subs.values(), move || {
            if let Some(i) = weak.upgrade() {
                i.trigger.store(true, Ordering::Release);
            }
        })?;
        inner.apply_rebalance();
        let me = inner.clone();
        let h = std::thread::Builder::new()
            .name("mqlab-pull-consumer-service".into())
            .spawn(move || me.service_loop())
            .expect("spawn pull consumer thread");
        *inner.service.lock().unwrap_or_else(|e| e.into_inner()) = Some(h);
        Ok(PullConsumer { inner })
    }

    /// Consumes exactly `queues` (no group membership, no rebalancing),
    /// all with tag expression `expression`.
    pub fn assign(
        broker: Arc<dyn BrokerApi>,
        cfg: ConsumerConfig,
        queues: &[MessageQueue],
        expression: &str,
    ) -> Result<PullConsumer> {
        cfg.sanitize()?;
        let offsets = super::offset_store_for(&broker, &cfg)?;
        let mut subs = BTreeMap::new();
        for mq in queues {
            subs.entry(mq.topic.clone())
                .or_insert_with(|| Arc::new(Subscription::new(mq.topic.clone(), expression)));
        }
        let inner = Arc::new(Inner {
            broker,
            cfg,
            subs,
            rebalancer: None,
            offsets,
            queues: Mutex::new(BTreeMap::new()),
            rr: AtomicUsize::new(0),
            stats: Arc::new(ConsumerStats::default()),
            stopped: AtomicBool::new(false),
            trigger: AtomicBool::new(false),
            service: Mutex::new(None),
        });
        {
            let mut q = inner.queues.lock().unwrap_or_else(|e| e.into_inner());
            for mq in queues {
                let next = inner.start_offset(mq);
                q.insert(
                    mq.clone(),
                    QueueState {
                        pq: Arc::new(ProcessQueue::default()),
                        next,
                        committed: None,
                    },
                );
            }
        }
        Ok(PullConsumer { inner })
    }

    /// Counters.
    pub fn stats(&self) -> &ConsumerStats {
        &self.inner.stats
    }

    /// Queues consumed now.
    pub fn assignment(&self) -> Vec<MessageQueue> {
        self.inner.sync_assignment();
        self.inner
            .queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// Moves a queue's next offset.
    pub fn seek(&self, mq: &MessageQueue, offset: u64) {
        if let Some(q) = self
            .inner
            .queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(mq)
        {
            q.next = offset;
        }
    }

    /// Up to `max` messages from one queue (the next non-empty queue in
    /// round robin), waiting up to `timeout` for some to arrive.
    pub fn poll(&self, max: usize, timeout: Duration) -> Vec<StoredMessage> {
        let i = &self.inner;
        i.commit_returned();
        i.sync_assignment();
        let deadline = Instant::now() + timeout;
        loop {
            let out = i.poll_once(max);
            if !out.is_empty() {
                return out;
            }
            let now = Instant::now();
            if now >= deadline || i.stopped.load(Ordering::Acquire) {
                return out;
            }
            // Every queue came back empty: look again in a moment. (A held
            // pull would wait on one queue only; the application's timeout
            // bounds the whole poll.)
            std::thread::sleep((deadline - now).min(POLL_RETRY));
        }
    }

    /// Commits the offsets of everything `poll` returned so far.
    pub fn commit(&self) {
        self.inner.commit_returned();
    }

    /// Commits, persists offsets, leaves the group.
    pub fn shutdown(self) -> Result<()> {
        let i = &self.inner;
        i.stopped.store(true, Ordering::Release);
        if let Some(h) = i.service.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = h.join();
        }
        i.commit_returned();
        let r = i.offsets.persist_all();
        if i.rebalancer.is_some() {
            leave_group(i.broker.as_ref(), &i.cfg);
        }
        r
    }
}

impl Drop for PullConsumer {
    fn drop(&mut self) {
        let i = &self.inner;
        if !i.stopped.swap(true, Ordering::AcqRel) {
            if let Some(h) = i.service.lock().unwrap_or_else(|e| e.into_inner()).take() {
                let _ = h.join();
            }
            if i.rebalancer.is_some() {
                leave_group(i.broker.as_ref(), &i.cfg);
            }
        }
    }
}

impl Inner {
    fn start_offset(&self, mq: &MessageQueue) -> u64 {
        let (min, max) = self.broker.get_offset_range(mq);
        match self.offsets.read(mq) {
            Some(o) => o.clamp(min, max),
            None => match self.cfg.from_where {
                super::ConsumeFromWhere::FirstOffset => min,
                super::ConsumeFromWhere::LastOffset => max,
            },
        }
    }

    fn service_loop(self: Arc<Self>) {
        let mut next = Instant::now() + Duration::from_millis(self.cfg.rebalance_interval_ms);
        while !self.stopped.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(10));
            if self.trigger.swap(false, Ordering::AcqRel) || Instant::now() >= next {
                next = Instant::now() + Duration::from_millis(self.cfg.rebalance_interval_ms);
                self.apply_rebalance();
            }
        }
    }

    fn apply_rebalance(&self) {
        let Some(rb) = &self.rebalancer else {
            return;
        };
        // Commit what was returned before queues may move away.
        self.commit_returned();
        let added = rb.rebalance();
        let mut q = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        for (mq, pq, next) in added {
            q.insert(
                mq,
                QueueState {
                    pq,
                    next,
                    committed: None,
                },
            );
        }
    }

    fn sync_assignment(&self) {
        self.queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, s| !s.pq.is_dropped());
    }

    fn commit_returned(&self) {
        let mut q = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        for (mq, s) in q.iter_mut() {
            if s.committed != Some(s.next) && !s.pq.is_dropped() {
                self.offsets.update(mq, s.next, false);
                s.committed = Some(s.next);
            }
        }
    }

    fn poll_once(&self, max: usize) -> Vec<StoredMessage> {
        let targets: Vec<(MessageQueue, u64)> = self
            .queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(m, s)| (m.clone(), s.next))
            .collect();
        if targets.is_empty() {
            return Vec::new();
        }
        let start = self.rr.fetch_add(1, Ordering::Relaxed);
        for k in 0..targets.len() {
            let (mq, offset) = &targets[(start + k) % targets.len()];
            let sub = self.subs.get(&mq.topic).cloned();
            self.stats.pulls.fetch_add(1, Ordering::Relaxed);
            let req = PullRequest {
                mq: mq.clone(),
                offset: *offset,
                max_msgs: max.max(1),
                filter: sub.clone().filter(|s| !s.is_all()),
                suspend_ms: 0,
            };
            let Ok(r) = self.broker.pull_message(&req, None) else {
                continue;
            };
            if r.next_offset != *offset {
                if let Some(s) = self
                    .queues
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_mut(mq)
                {
                    if s.next == *offset {
                        s.next = r.next_offset;
                    }
                }
            }
            if r.status != PullStatus::Found {
                continue;
            }
            let msgs: Vec<StoredMessage> = r
                .msgs
                .into_iter()
                .filter(|m| sub.as_ref().is_none_or(|s| s.matches_tags(m.tags())))
                .map(|mut m| {
                    reset_retry_topic(&mut m, &self.cfg.group);
                    m
                })
                .collect();
            if !msgs.is_empty() {
                self.stats
                    .consumed
                    .fetch_add(msgs.len() as u64, Ordering::Relaxed);
                return msgs;
            }
        }
        Vec::new()
    }
}
