//! The push consumer (RocketMQ's DefaultMQPushConsumer), built on long
//! polling; see the [module doc](super) for the threads and locks.
//!
//! Threads: one service thread (rebalance on membership change and every
//! `rebalance_interval_ms`, lock renewal, local offset persistence,
//! re-delivery of messages the broker would not take back), one pull thread
//! per owned queue, and either a pool of `consume_threads` (concurrent) or
//! one consume thread per owned queue (orderly).

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::offset_store::OffsetStore;
use super::process_queue::ProcessQueue;
use super::rebalance::Rebalancer;
use super::{
    join_group, leave_group, lock_request, reset_retry_topic, send_back, ConsumeContext,
    ConsumeStatus, ConsumerConfig, ConsumerStats, Listener, MessageModel, OrderlyStatus,
};
use crate::api::BrokerApi;
use crate::error::Result;
use mqlab_broker::filter::Subscription;
use mqlab_broker::types::{retry_topic, MessageQueue, PullRequest, PullStatus};
use mqlab_engine::message::StoredMessage;

struct ConsumeRequest {
    mq: MessageQueue,
    pq: Arc<ProcessQueue>,
    msgs: Vec<StoredMessage>,
}

struct Inner {
    broker: Arc<dyn BrokerApi>,
    cfg: ConsumerConfig,
    subs: BTreeMap<String, Arc<Subscription>>,
    listener: Listener,
    rebalancer: Rebalancer,
    offsets: Arc<dyn OffsetStore>,
    stats: Arc<ConsumerStats>,
    stopped: AtomicBool,
    killed: AtomicBool,
    trigger: (Mutex<bool>, Condvar),
    pool: Mutex<Option<SyncSender<ConsumeRequest>>>,
    later: Mutex<Vec<(Instant, ConsumeRequest)>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// A push consumer.
pub struct PushConsumer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PushConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushConsumer")
            .field("cfg", &self.inner.cfg)
            .field("listener", &self.inner.listener)
            .finish()
    }
}

fn sleep_unless(stop: &AtomicBool, d: Duration) {
    let deadline = Instant::now() + d;
    while !stop.load(Ordering::Acquire) {
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(20)));
    }
}

impl PushConsumer {
    /// Starts a consumer of `cfg.group` subscribed to `subscriptions`
    /// (topic, tag expression). Clustering members also consume their
    /// group's retry topic. Joining the group makes every member rebalance.
    pub fn start(
        broker: Arc<dyn BrokerApi>,
        cfg: ConsumerConfig,
        subscriptions: &[(&str, &str)],
        listener: Listener,
    ) -> Result<PushConsumer> {
        cfg.sanitize()?;
        let mut subs = BTreeMap::new();
        for (topic, expr) in subscriptions {
            broker.get_route_info(topic)?;
            subs.insert(topic.to_string(), Arc::new(Subscription::new(*topic, expr)));
        }
        if cfg.model == MessageModel::Clustering {
            let rt = retry_topic(&cfg.group);
            broker.create_topic(&rt, 1)?;
            subs.insert(rt.clone(), Arc::new(Subscription::new(rt, "*")));
        }
        let offsets = super::offset_store_for(&broker, &cfg)?;
        let stats = Arc::new(ConsumerStats::default());
        let rebalancer = Rebalancer {
            broker: broker.clone(),
            cfg: cfg.clone(),
            orderly: listener.is_orderly(),
            topics: subs.keys().cloned().collect(),
            offsets: offsets.clone(),
            table: Mutex::new(BTreeMap::new()),
            stats: stats.clone(),
        };
        let (tx, rx) = sync_channel::<ConsumeRequest>(65_536);
        let inner = Arc::new(Inner {
            broker: broker.clone(),
            cfg: cfg.clone(),
            subs,
            listener,
            rebalancer,
            offsets,
            stats,
            stopped: AtomicBool::new(false),
            killed: AtomicBool::new(false),
            trigger: (Mutex::new(true), Condvar::new()),
            pool: Mutex::new(Some(tx)),
            later: Mutex::new(Vec::new()),
            threads: Mutex::new(Vec::new()),
        });
        if !inner.listener.is_orderly() {
            let rx = Arc::new(Mutex::new(rx));
            for i in 0..cfg.consume_threads {
                let (me, rx) = (inner.clone(), rx.clone());
                inner.spawn(format!("mqlab-consume-{i}"), move || me.consume_worker(rx));
            }
        }
        let me = inner.clone();
        inner.spawn("mqlab-consumer-service".into(), move || me.service_loop());
        // Joining notifies every member, this one included.
        let weak = Arc::downgrade(&inner);
        let consumer = PushConsumer { inner };
        join_group(
            broker.as_ref(),
            &cfg,
            consumer.inner.subs.values(),
            move || {
                if let Some(i) = weak.upgrade() {
                    i.trigger_rebalance();
                }
            },
        )?;
        Ok(consumer)
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.inner.cfg.client_id
    }

    /// Counters.
    pub fn stats(&self) -> &ConsumerStats {
        &self.inner.stats
    }

    /// Queues owned now.
    pub fn assignment(&self) -> Vec<MessageQueue> {
        self.inner
            .rebalancer
            .process_queues()
            .into_iter()
            .map(|(m, _)| m)
            .collect()
    }

    /// Messages cached and not yet consumed (the consumer-side queue
    /// depth).
    pub fn cached(&self) -> usize {
        self.inner
            .rebalancer
            .process_queues()
            .iter()
            .map(|(_, p)| p.count())
            .sum()
    }

    /// A probe of [`PushConsumer::cached`] that outlives borrows (for a
    /// sampler thread); 0 once the consumer is gone.
    pub fn cache_probe(&self) -> Arc<dyn Fn() -> usize + Send + Sync> {
        let weak = Arc::downgrade(&self.inner);
        Arc::new(move || {
            weak.upgrade().map_or(0, |i| {
                i.rebalancer
                    .process_queues()
                    .iter()
                    .map(|(_, p)| p.count())
                    .sum()
            })
        })
    }

    /// Asks for a rebalance now.
    pub fn rebalance_now(&self) {
        self.inner.trigger_rebalance();
    }

    /// Clean shutdown: stops pulling, lets batches in flight finish and
    /// commit, persists offsets, releases ordered locks, leaves the group
    /// (the others rebalance).
    pub fn shutdown(self) -> Result<()> {
        let i = &self.inner;
        i.stopped.store(true, Ordering::Release);
        for (_, pq) in i.rebalancer.process_queues() {
            pq.cancel_pulls();
        }
        i.pool.lock().unwrap_or_else(|e| e.into_inner()).take();
        i.trigger_rebalance();
        i.join_threads();
        let r = i.offsets.persist_all();
        i.rebalancer.unlock_all();
        for (_, pq) in i.rebalancer.process_queues() {
            pq.set_dropped();
        }
        leave_group(i.broker.as_ref(), &i.cfg);
        r
    }

    /// A crash: stops at once, commits and persists nothing more, keeps its
    /// ordered locks (they expire at the broker), and drops out of the
    /// group as a closed connection would.
    pub fn kill(self) {
        let i = &self.inner;
        i.killed.store(true, Ordering::Release);
        i.stopped.store(true, Ordering::Release);
        for (_, pq) in i.rebalancer.process_queues() {
            pq.set_dropped();
        }
        i.pool.lock().unwrap_or_else(|e| e.into_inner()).take();
        i.trigger_rebalance();
        i.join_threads();
        leave_group(i.broker.as_ref(), &i.cfg);
    }
}

impl Drop for PushConsumer {
    fn drop(&mut self) {
        let i = &self.inner;
        if !i.stopped.swap(true, Ordering::AcqRel) {
            for (_, pq) in i.rebalancer.process_queues() {
                pq.cancel_pulls();
            }
            i.pool.lock().unwrap_or_else(|e| e.into_inner()).take();
            i.trigger_rebalance();
            i.join_threads();
            leave_group(i.broker.as_ref(), &i.cfg);
        }
    }
}

impl Inner {
    fn spawn(&self, name: String, f: impl FnOnce() + Send + 'static) {
        let h = std::thread::Builder::new()
            .name(name)
            .spawn(f)
            .expect("spawn consumer thread");
        self.threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(h);
    }

    fn join_threads(&self) {
        // Threads may spawn threads (rebalance adds pull threads): repeat.
        loop {
            let hs: Vec<JoinHandle<()>> = self
                .threads
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .drain(..)
                .collect();
            if hs.is_empty() {
                return;
            }
            for h in hs {
                let _ = h.join();
            }
        }
    }

    fn trigger_rebalance(&self) {
        let (m, cv) = &self.trigger;
        *m.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_all();
    }

    fn ctx(&self, mq: &MessageQueue) -> ConsumeContext {
        ConsumeContext {
            mq: mq.clone(),
            client_id: self.cfg.client_id.clone(),
        }
    }

    fn service_loop(self: Arc<Self>) {
        let cfg = &self.cfg;
        let mut next_rebalance = Instant::now();
        let mut next_lock = Instant::now() + Duration::from_millis(cfg.lock_renew_interval_ms);
        let mut next_persist = Instant::now() + Duration::from_millis(cfg.persist_interval_ms);
        loop {
            let triggered = {
                let (m, cv) = &self.trigger;
                let mut t = m.lock().unwrap_or_else(|e| e.into_inner());
                if !*t {
                    let now = Instant::now();
                    let wake = next_rebalance.min(next_lock).min(next_persist);
                    let wait = wake
                        .saturating_duration_since(now)
                        .min(Duration::from_millis(20));
                    t = cv
                        .wait_timeout(t, wait)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                std::mem::replace(&mut *t, false)
            };
            if self.stopped.load(Ordering::Acquire) {
                return;
            }
            let now = Instant::now();
            if triggered || now >= next_rebalance {
                next_rebalance = now + Duration::from_millis(cfg.rebalance_interval_ms);
                for (mq, pq, offset) in self.rebalancer.rebalance() {
                    self.start_queue(mq, pq, offset);
                }
            }
            if now >= next_lock {
                next_lock = now + Duration::from_millis(cfg.lock_renew_interval_ms);
                self.rebalancer.lock_all();
            }
            if now >= next_persist {
                next_persist = now + Duration::from_millis(cfg.persist_interval_ms);
                let _ = self.offsets.persist_all();
            }
            let due: Vec<ConsumeRequest> = {
                let mut l = self.later.lock().unwrap_or_else(|e| e.into_inner());
                let (due, keep): (Vec<_>, Vec<_>) = l.drain(..).partition(|(t, _)| *t <= now);
                *l = keep;
                due.into_iter().map(|(_, r)| r).collect()
            };
            for r in due {
                self.submit(r);
            }
        }
    }

    fn start_queue(self: &Arc<Self>, mq: MessageQueue, pq: Arc<ProcessQueue>, offset: u64) {
        let Some(sub) = self.subs.get(&mq.topic).cloned() else {
            return;
        };
        let (me, m, p) = (self.clone(), mq.clone(), pq.clone());
        self.spawn(format!("mqlab-pull-{mq}"), move || {
            me.pull_loop(m, p, offset, sub)
        });
        if self.listener.is_orderly() {
            let me = self.clone();
            self.spawn(format!("mqlab-orderly-{mq}"), move || {
                me.orderly_loop(mq, pq)
            });
        }
    }

    fn submit(&self, r: ConsumeRequest) {
        let tx = self.pool.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(tx) = tx {
            let _ = tx.send(r);
        }
    }

    fn pull_loop(
        self: Arc<Self>,
        mq: MessageQueue,
        pq: Arc<ProcessQueue>,
        mut offset: u64,
        sub: Arc<Subscription>,
    ) {
        let cfg = &self.cfg;
        let lock_needed = self.listener.is_orderly() && cfg.model == MessageModel::Clustering;
        let mut previously_locked = pq.is_locked();
        loop {
            if self.stopped.load(Ordering::Acquire) || pq.is_dropped() {
                return;
            }
            if pq.count() >= cfg.pull_threshold_per_queue {
                self.stats.flow_control.fetch_add(1, Ordering::Relaxed);
                sleep_unless(
                    pq.pull_cancel_flag(),
                    Duration::from_millis(cfg.flow_control_delay_ms),
                );
                continue;
            }
            if lock_needed {
                if !pq.is_locked() {
                    let held = self
                        .broker
                        .lock_batch_mq(&lock_request(cfg, std::slice::from_ref(&mq)));
                    if held.contains(&mq) {
                        pq.set_locked(true, self.broker.clock().now_ms());
                    } else {
                        sleep_unless(pq.pull_cancel_flag(), Duration::from_millis(100));
                        continue;
                    }
                }
                if !previously_locked {
                    // The previous owner may have moved on: start at the
                    // group's offset, read now that the lock is ours.
                    offset = self.rebalancer.pull_from(&mq);
                    previously_locked = true;
                }
            }
            self.stats.pulls.fetch_add(1, Ordering::Relaxed);
            let req = PullRequest {
                mq: mq.clone(),
                offset,
                max_msgs: cfg.pull_batch,
                filter: (!sub.is_all()).then(|| sub.clone()),
                suspend_ms: cfg.pull_suspend_ms,
            };
            let r = match self.broker.pull_message(&req, Some(pq.pull_cancel_flag())) {
                Ok(r) => r,
                Err(_) => {
                    sleep_unless(
                        pq.pull_cancel_flag(),
                        Duration::from_millis(cfg.pull_error_delay_ms),
                    );
                    continue;
                }
            };
            if pq.is_dropped() {
                return;
            }
            match r.status {
                PullStatus::Found => {
                    offset = r.next_offset;
                    let msgs: Vec<StoredMessage> = r
                        .msgs
                        .into_iter()
                        .filter(|m| sub.matches_tags(m.tags()))
                        .map(|mut m| {
                            reset_retry_topic(&mut m, &cfg.group);
                            m
                        })
                        .collect();
                    if msgs.is_empty() {
                        if pq.count() == 0 {
                            self.offsets.update(&mq, offset, true);
                        }
                    } else {
                        pq.put(msgs.clone());
                        if !self.listener.is_orderly() {
                            for chunk in msgs.chunks(cfg.consume_batch_max) {
                                self.submit(ConsumeRequest {
                                    mq: mq.clone(),
                                    pq: pq.clone(),
                                    msgs: chunk.to_vec(),
                                });
                            }
                        }
                    }
                }
                PullStatus::NoNewMsg | PullStatus::NoMatchedMsg => {
                    offset = r.next_offset;
                    if pq.count() == 0 {
                        self.offsets.update(&mq, offset, true);
                    }
                    if cfg.pull_suspend_ms == 0 && r.status == PullStatus::NoNewMsg {
                        // Plain polling: do not spin on an empty queue.
                        sleep_unless(
                            pq.pull_cancel_flag(),
                            Duration::from_millis(cfg.pull_interval_ms.max(1)),
                        );
                    }
                }
                PullStatus::OffsetIllegal => {
                    offset = r.next_offset;
                    self.offsets.update(&mq, offset, false);
                }
            }
            if cfg.pull_interval_ms > 0 {
                sleep_unless(
                    pq.pull_cancel_flag(),
                    Duration::from_millis(cfg.pull_interval_ms),
                );
            }
        }
    }

    fn consume_worker(self: Arc<Self>, rx: Arc<Mutex<Receiver<ConsumeRequest>>>) {
        loop {
            let req = {
                let rx = rx.lock().unwrap_or_else(|e| e.into_inner());
                rx.recv_timeout(Duration::from_millis(50))
            };
            let req = match req {
                Ok(r) => r,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if self.stopped.load(Ordering::Acquire) {
                        return;
                    }
                    continue;
                }
                Err(_) => return,
            };
            if self.stopped.load(Ordering::Acquire) || req.pq.is_dropped() {
                // Not consumed, not committed: the next owner (or the next
                // start) consumes it.
                continue;
            }
            self.consume_concurrently(req);
        }
    }

    fn consume_concurrently(&self, mut req: ConsumeRequest) {
        let Listener::Concurrently(l) = &self.listener else {
            return;
        };
        let ctx = self.ctx(&req.mq);
        let n = req.msgs.len() as u64;
        let status = catch_unwind(AssertUnwindSafe(|| l.consume(&req.msgs, &ctx)))
            .unwrap_or(ConsumeStatus::ReconsumeLater);
        self.stats.consumed.fetch_add(n, Ordering::Relaxed);
        let mut failed = Vec::new();
        if status == ConsumeStatus::ReconsumeLater {
            self.stats.reconsume_later.fetch_add(n, Ordering::Relaxed);
            if self.cfg.model == MessageModel::Clustering {
                for m in &req.msgs {
                    let r = send_back(self.broker.as_ref(), &self.cfg, m);
                    if r.is_ok() {
                        self.stats.sent_back.fetch_add(1, Ordering::Relaxed);
                    } else {
                        let mut m = m.clone();
                        m.reconsume_times += 1;
                        failed.push(m);
                    }
                }
            }
            // Broadcasting: failed messages are not retried.
        }
        let done = req
            .msgs
            .iter()
            .map(|m| m.queue_offset)
            .filter(|o| !failed.iter().any(|f| f.queue_offset == *o));
        let commit = req.pq.remove(done.collect::<Vec<_>>());
        if let Some(o) = commit.filter(|_| !req.pq.is_dropped()) {
            self.offsets.update(&req.mq, o, true);
        }
        if !failed.is_empty() {
            req.msgs = failed;
            let due = Instant::now() + Duration::from_millis(self.cfg.send_back_retry_ms);
            self.later
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((due, req));
        }
    }

    fn orderly_loop(self: Arc<Self>, mq: MessageQueue, pq: Arc<ProcessQueue>) {
        let Listener::Orderly(l) = &self.listener else {
            return;
        };
        let cfg = &self.cfg;
        let ctx = self.ctx(&mq);
        let clustering = cfg.model == MessageModel::Clustering;
        loop {
            if self.stopped.load(Ordering::Acquire) || pq.is_dropped() {
                return;
            }
            if !pq.wait_messages(Duration::from_millis(20)) {
                continue;
            }
            if clustering && !pq.lock_valid(self.broker.clock().now_ms(), cfg.client_lock_expiry_ms)
            {
                sleep_unless(pq.pull_cancel_flag(), Duration::from_millis(10));
                continue;
            }
            let guard = cfg.process_queue_lock.then(|| pq.consume_lock.lock());
            if pq.is_dropped() || self.stopped.load(Ordering::Acquire) {
                return;
            }
            let msgs = pq.take(cfg.consume_batch_max);
            if msgs.is_empty() {
                continue;
            }
            let n = msgs.len() as u64;
            let status = catch_unwind(AssertUnwindSafe(|| l.consume(&msgs, &ctx)))
                .unwrap_or(OrderlyStatus::SuspendCurrentQueueAMoment);
            self.stats.consumed.fetch_add(n, Ordering::Relaxed);
            let mut suspend = false;
            let mut again = Vec::new();
            if status == OrderlyStatus::SuspendCurrentQueueAMoment {
                self.stats.reconsume_later.fetch_add(n, Ordering::Relaxed);
                for mut m in msgs {
                    if clustering && m.reconsume_times as u32 >= cfg.max_reconsume_times {
                        // Over the limit: to the dead-letter queue.
                        if send_back(self.broker.as_ref(), cfg, &m).is_ok() {
                            self.stats.sent_back.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                    }
                    suspend = true;
                    m.reconsume_times += 1;
                    again.push(m);
                }
            }
            if suspend {
                // The whole batch again, after a pause, in order.
                let mut all = again;
                all.sort_by_key(|m| m.queue_offset);
                pq.consume_again(all);
                drop(guard);
                sleep_unless(
                    pq.pull_cancel_flag(),
                    Duration::from_millis(cfg.suspend_current_queue_ms),
                );
                continue;
            }
            let commit = pq.commit();
            if let Some(o) = commit {
                if !pq.is_dropped() && !self.killed.load(Ordering::Acquire) {
                    self.offsets.update(&mq, o, false);
                }
            }
            drop(guard);
        }
    }
}
