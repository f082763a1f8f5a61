//! The clients a broker knows: consumer group members (whose membership
//! triggers rebalances) and producers (whom the transaction check service
//! asks about half messages), each reached through its [`ClientChannel`].
//!
//! A channel is how the broker sends requests to a client, the reverse of
//! the client's calls: in-process it is the client's own handler object, on
//! the wire it is the client's connection. The broker never holds a
//! client's closure or thread, only this request-shaped interface.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::types::CheckTransactionStateRequest;

/// Requests the broker sends to a client. Both have empty defaults: a
/// producer handles the first, a consumer the second.
pub trait ClientChannel: Send + Sync {
    /// CHECK_TRANSACTION_STATE: a half message of the client's producer
    /// group was not ended in time; the client answers later with
    /// END_TRANSACTION. Must not block (queue the work).
    fn check_transaction_state(&self, req: CheckTransactionStateRequest) {
        let _ = req;
    }

    /// NOTIFY_CONSUMER_IDS_CHANGED: the members of `group` changed;
    /// rebalance. Must not block.
    fn notify_consumer_ids_changed(&self, group: &str) {
        let _ = group;
    }
}

type Members = HashMap<String, BTreeMap<String, Arc<dyn ClientChannel>>>;

/// Group members and producers by group, then client id.
#[derive(Default)]
pub(crate) struct ClientTable {
    consumers: Mutex<Members>,
    producers: Mutex<Members>,
    next_producer: AtomicUsize,
}

impl std::fmt::Debug for ClientTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTable").finish_non_exhaustive()
    }
}

fn lock(m: &Mutex<Members>) -> std::sync::MutexGuard<'_, Members> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ClientTable {
    /// Adds a consumer to a group (or refreshes its channel: a repeated
    /// heartbeat, a reconnect). When it is new, every member (this one
    /// included) is notified, outside the table's lock, so they
    /// rebalance, as RocketMQ's NOTIFY_CONSUMER_IDS_CHANGED does; a
    /// repeated heartbeat changes no membership and notifies no one.
    pub(crate) fn register_consumer(
        &self,
        group: &str,
        client_id: &str,
        channel: Arc<dyn ClientChannel>,
    ) {
        let all: Vec<Arc<dyn ClientChannel>> = {
            let mut c = lock(&self.consumers);
            let g = c.entry(group.to_string()).or_default();
            if g.insert(client_id.to_string(), channel).is_some() {
                return;
            }
            g.values().cloned().collect()
        };
        for ch in all {
            ch.notify_consumer_ids_changed(group);
        }
    }

    /// Removes a consumer from a group and notifies the others.
    pub(crate) fn unregister_consumer(&self, group: &str, client_id: &str) {
        let rest: Vec<Arc<dyn ClientChannel>> = {
            let mut c = lock(&self.consumers);
            let Some(g) = c.get_mut(group) else {
                return;
            };
            if g.remove(client_id).is_none() {
                return;
            }
            g.values().cloned().collect()
        };
        for ch in rest {
            ch.notify_consumer_ids_changed(group);
        }
    }

    /// Client ids of a group, sorted.
    pub(crate) fn consumer_ids(&self, group: &str) -> Vec<String> {
        lock(&self.consumers)
            .get(group)
            .map(|g| g.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Registers a producer of `group` to be asked about its half messages.
    pub(crate) fn register_producer(
        &self,
        group: &str,
        client_id: &str,
        channel: Arc<dyn ClientChannel>,
    ) {
        lock(&self.producers)
            .entry(group.to_string())
            .or_default()
            .insert(client_id.to_string(), channel);
    }

    /// Removes a producer.
    pub(crate) fn unregister_producer(&self, group: &str, client_id: &str) {
        if let Some(g) = lock(&self.producers).get_mut(group) {
            g.remove(client_id);
        }
    }

    /// One producer of `group`, round robin; None when it has none.
    pub(crate) fn pick_producer(&self, group: &str) -> Option<Arc<dyn ClientChannel>> {
        let p = lock(&self.producers);
        let g = p.get(group).filter(|g| !g.is_empty())?;
        let i = self.next_producer.fetch_add(1, Ordering::Relaxed) % g.len();
        g.values().nth(i).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Count(AtomicUsize);

    impl ClientChannel for Count {
        fn notify_consumer_ids_changed(&self, _group: &str) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn only_membership_changes_notify() {
        let t = ClientTable::default();
        let (a, b) = (Arc::new(Count::default()), Arc::new(Count::default()));
        t.register_consumer("g", "a", a.clone());
        assert_eq!(a.0.load(Ordering::Relaxed), 1);
        // A repeated heartbeat: nothing changed, nobody rebalances.
        t.register_consumer("g", "a", a.clone());
        assert_eq!(a.0.load(Ordering::Relaxed), 1);
        t.register_consumer("g", "b", b.clone());
        assert_eq!(
            (a.0.load(Ordering::Relaxed), b.0.load(Ordering::Relaxed)),
            (2, 1)
        );
        t.unregister_consumer("g", "b");
        assert_eq!(
            (a.0.load(Ordering::Relaxed), b.0.load(Ordering::Relaxed)),
            (3, 1)
        );
        t.unregister_consumer("g", "b"); // already gone
        assert_eq!(a.0.load(Ordering::Relaxed), 3);
    }
}
