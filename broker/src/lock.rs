//! Broker-side locks of ordered consumption (RocketMQ's
//! RebalanceLockManager): one owner per (group, queue), so that only one
//! consumer of a group consumes a queue at a time, even while a rebalance
//! moves it. A lock not renewed within the expiry (60 s) is free for the
//! taking; owners renew every 20 s (client side).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use mqlab_engine::clock::Clock;

use crate::types::MessageQueue;

#[derive(Debug, Clone)]
struct Entry {
    client_id: String,
    last_update_ms: i64,
}

/// The (group, queue) lock table.
#[derive(Debug)]
pub struct LockManager {
    clock: Arc<dyn Clock>,
    expiry_ms: u64,
    table: Mutex<HashMap<String, HashMap<MessageQueue, Entry>>>,
}

impl LockManager {
    /// Locks expire `expiry_ms` after their last renewal.
    pub fn new(clock: Arc<dyn Clock>, expiry_ms: u64) -> LockManager {
        LockManager {
            clock,
            expiry_ms,
            table: Mutex::new(HashMap::new()),
        }
    }

    /// Locks (or renews) every queue of `mqs` that is free, expired, or
    /// already `client_id`'s; returns the ones `client_id` holds now.
    pub fn try_lock_batch(
        &self,
        group: &str,
        mqs: &[MessageQueue],
        client_id: &str,
    ) -> BTreeSet<MessageQueue> {
        let now = self.clock.now_ms();
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let g = t.entry(group.to_string()).or_default();
        let mut held = BTreeSet::new();
        for mq in mqs {
            let free = match g.get(mq) {
                None => true,
                Some(e) => {
                    e.client_id == client_id || now - e.last_update_ms > self.expiry_ms as i64
                }
            };
            if free {
                g.insert(
                    mq.clone(),
                    Entry {
                        client_id: client_id.to_string(),
                        last_update_ms: now,
                    },
                );
                held.insert(mq.clone());
            }
        }
        held
    }

    /// Releases the queues of `mqs` that `client_id` holds.
    pub fn unlock_batch(&self, group: &str, mqs: &[MessageQueue], client_id: &str) {
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(g) = t.get_mut(group) {
            for mq in mqs {
                if g.get(mq).is_some_and(|e| e.client_id == client_id) {
                    g.remove(mq);
                }
            }
        }
    }

    /// The live owner of a queue, if any.
    pub fn owner(&self, group: &str, mq: &MessageQueue) -> Option<String> {
        let now = self.clock.now_ms();
        let t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        t.get(group)?
            .get(mq)
            .filter(|e| now - e.last_update_ms <= self.expiry_ms as i64)
            .map(|e| e.client_id.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mqlab_engine::clock::ManualClock;

    #[test]
    fn one_owner_until_expiry() {
        let clock = ManualClock::at(0);
        let locks = LockManager::new(clock.clone(), 60_000);
        let q = vec![MessageQueue::new("T", 0)];
        assert_eq!(locks.try_lock_batch("g", &q, "a").len(), 1);
        assert!(locks.try_lock_batch("g", &q, "b").is_empty());
        clock.advance(20_000);
        assert_eq!(locks.try_lock_batch("g", &q, "a").len(), 1, "renewal");
        clock.advance(59_000);
        assert!(locks.try_lock_batch("g", &q, "b").is_empty());
        clock.advance(2_000);
        assert_eq!(locks.try_lock_batch("g", &q, "b").len(), 1, "expired");
        assert_eq!(locks.owner("g", &q[0]).as_deref(), Some("b"));
        locks.unlock_batch("g", &q, "a");
        assert_eq!(locks.owner("g", &q[0]).as_deref(), Some("b"));
        locks.unlock_batch("g", &q, "b");
        assert_eq!(locks.owner("g", &q[0]), None);
    }
}
