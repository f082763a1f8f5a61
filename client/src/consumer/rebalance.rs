//! Rebalancing (RocketMQ's RebalanceImpl): which queues this consumer
//! owns, recomputed when the group's membership changes and periodically.
//!
//! A queue that stops being ours is marked dropped and its offset
//! committed. Under ordered clustering consumption it is handed over only
//! once its consume lock is free (the batch in flight finished and
//! committed), then the broker lock is released; if the batch does not end
//! within a second the queue is kept until the next rebalance. With
//! `process_queue_lock` off the queue is dropped at once and the batch in
//! flight is not committed, so the next owner consumes it again
//! (the duplicates the lock prevents). A new queue is taken only once its
//! broker lock is ours (ordered clustering), starting at the group's
//! committed offset.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::offset_store::OffsetStore;
use super::process_queue::ProcessQueue;
use super::{lock_request, ConsumeFromWhere, ConsumerConfig, ConsumerStats, MessageModel};
use crate::api::BrokerApi;
use mqlab_broker::types::{MessageQueue, RETRY_PREFIX};

pub(crate) struct Rebalancer {
    pub broker: Arc<dyn BrokerApi>,
    pub cfg: ConsumerConfig,
    pub orderly: bool,
    pub topics: Vec<String>,
    pub offsets: Arc<dyn OffsetStore>,
    pub table: Mutex<BTreeMap<MessageQueue, Arc<ProcessQueue>>>,
    pub stats: Arc<ConsumerStats>,
}

impl Rebalancer {
    fn clustering(&self) -> bool {
        self.cfg.model == MessageModel::Clustering
    }

    fn needs_broker_lock(&self) -> bool {
        self.orderly && self.clustering()
    }

    /// Where a newly owned queue starts.
    pub fn pull_from(&self, mq: &MessageQueue) -> u64 {
        let (min, max) = self.broker.get_offset_range(mq);
        if let Some(o) = self.offsets.read(mq) {
            return o.clamp(min, max);
        }
        if mq.topic.starts_with(RETRY_PREFIX) {
            return min;
        }
        match self.cfg.from_where {
            ConsumeFromWhere::FirstOffset => min,
            ConsumeFromWhere::LastOffset => max,
        }
    }

    /// Current queues and their caches.
    pub fn process_queues(&self) -> Vec<(MessageQueue, Arc<ProcessQueue>)> {
        self.table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(m, p)| (m.clone(), p.clone()))
            .collect()
    }

    fn lock_one(&self, mq: &MessageQueue) -> bool {
        self.broker
            .lock_batch_mq(&lock_request(&self.cfg, std::slice::from_ref(mq)))
            .contains(mq)
    }

    /// Renews the broker locks of every owned queue (ordered clustering).
    pub fn lock_all(&self) {
        if !self.needs_broker_lock() {
            return;
        }
        let pqs = self.process_queues();
        let mqs: Vec<MessageQueue> = pqs.iter().map(|(m, _)| m.clone()).collect();
        let held = self.broker.lock_batch_mq(&lock_request(&self.cfg, &mqs));
        let now = self.broker.clock().now_ms();
        for (mq, pq) in pqs {
            pq.set_locked(held.contains(&mq), now);
        }
    }

    /// Releases every broker lock (shutdown).
    pub fn unlock_all(&self) {
        if !self.needs_broker_lock() {
            return;
        }
        let mqs: Vec<MessageQueue> = self.process_queues().into_iter().map(|(m, _)| m).collect();
        self.broker.unlock_batch_mq(&lock_request(&self.cfg, &mqs));
    }

    /// Gives a queue up; false when it must wait (batch in flight).
    fn remove_unnecessary(&self, mq: &MessageQueue, pq: &ProcessQueue) -> bool {
        if self.needs_broker_lock() && self.cfg.process_queue_lock {
            let Some(_g) = pq.consume_lock.try_lock_for(Duration::from_secs(1)) else {
                return false;
            };
            pq.set_dropped();
            let _ = self.offsets.persist_all();
            self.broker
                .unlock_batch_mq(&lock_request(&self.cfg, std::slice::from_ref(mq)));
            return true;
        }
        pq.set_dropped();
        let _ = self.offsets.persist_all();
        if self.needs_broker_lock() {
            self.broker
                .unlock_batch_mq(&lock_request(&self.cfg, std::slice::from_ref(mq)));
        }
        true
    }

    /// Recomputes the owned queues; returns the queues added, with their
    /// caches and start offsets.
    pub fn rebalance(&self) -> Vec<(MessageQueue, Arc<ProcessQueue>, u64)> {
        self.stats.rebalances.fetch_add(1, Ordering::Relaxed);
        let cids = self.broker.get_consumer_list(&self.cfg.group);
        let mut wanted = Vec::new();
        for topic in &self.topics {
            let mut mqs = self.broker.get_topic_queues(topic);
            mqs.sort();
            if self.clustering() {
                if !cids.contains(&self.cfg.client_id) {
                    continue;
                }
                wanted.extend(self.cfg.allocate.allocate(&self.cfg.client_id, &mqs, &cids));
            } else {
                wanted.extend(mqs);
            }
        }
        let current = self.process_queues();
        for (mq, pq) in &current {
            if !wanted.contains(mq) && self.remove_unnecessary(mq, pq) {
                self.table
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(mq);
            }
        }
        let mut added = Vec::new();
        for mq in wanted {
            if self
                .table
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(&mq)
            {
                continue;
            }
            if self.needs_broker_lock() && !self.lock_one(&mq) {
                // Still someone else's: try again at the next rebalance.
                continue;
            }
            let pq = Arc::new(ProcessQueue::default());
            if self.needs_broker_lock() {
                pq.set_locked(true, self.broker.clock().now_ms());
            }
            let offset = self.pull_from(&mq);
            self.table
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(mq.clone(), pq.clone());
            added.push((mq, pq, offset));
        }
        added
    }
}
