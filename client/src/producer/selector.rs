//! Queue selectors: which queue of a topic a message goes to. One trait;
//! round robin is the default send path's choice, the hash selector keeps
//! every message of one sharding key (an order id) on one queue, which is
//! what ordered messages need.

use std::sync::atomic::{AtomicUsize, Ordering};

use mqlab_broker::types::MessageQueue;
use mqlab_engine::message::Message;
use mqlab_engine::queue::java_hash;

/// Picks the queue of a message.
pub trait QueueSelector: Send + Sync {
    /// Name in results.
    fn name(&self) -> &'static str;
    /// Index into `queues` (non-empty) for `msg` with sharding key `key`.
    fn select(&self, queues: &[MessageQueue], msg: &Message, key: &str) -> usize;
}

/// Round robin over the queues (RocketMQ's default `sendWhichQueue`).
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl RoundRobin {
    /// Name in results.
    pub const NAME: &'static str = "round-robin";
}

impl QueueSelector for RoundRobin {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn select(&self, queues: &[MessageQueue], _msg: &Message, _key: &str) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) % queues.len()
    }
}

/// Hash of the sharding key, RocketMQ's SelectMessageQueueByHash:
/// `abs(key.hashCode() % n)` with Java's string hash.
#[derive(Debug, Default, Clone, Copy)]
pub struct HashKey;

impl HashKey {
    /// Name in results.
    pub const NAME: &'static str = "hash-key";
}

impl QueueSelector for HashKey {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn select(&self, queues: &[MessageQueue], _msg: &Message, key: &str) -> usize {
        (java_hash(key) % queues.len() as i32).unsigned_abs() as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_stable_and_round_robin_cycles() {
        let qs: Vec<MessageQueue> = (0..4).map(|q| MessageQueue::new("T", q)).collect();
        let m = Message::new("T", b"x".to_vec());
        let h = HashKey;
        let a = h.select(&qs, &m, "order-42");
        assert_eq!(a, h.select(&qs, &m, "order-42"));
        assert!(a < 4);
        // "order-1".hashCode() is negative in Java: still in range.
        for k in 0..100 {
            assert!(h.select(&qs, &m, &format!("order-{k}")) < 4);
        }
        let rr = RoundRobin::default();
        let picks: Vec<usize> = (0..8).map(|_| rr.select(&qs, &m, "")).collect();
        assert_eq!(picks, vec![0, 1, 2, 3, 0, 1, 2, 3]);
    }
}
