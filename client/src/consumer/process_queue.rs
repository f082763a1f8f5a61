//! A consumer's cache of one queue (RocketMQ's ProcessQueue): messages
//! pulled and not yet consumed, keyed by queue offset. The committed offset
//! is always the smallest offset still cached (or one past the last pulled
//! when it is empty), so a crash re-consumes rather than skips.
//!
//! Ordered consumption adds the broker lock state, the client-side lock
//! expiry, and the consume lock held around each batch.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mqlab_engine::message::StoredMessage;

/// A mutex that can be tried with a timeout (std's cannot).
#[derive(Debug, Default)]
pub struct TimedLock {
    held: Mutex<bool>,
    cv: Condvar,
}

/// Holds a [`TimedLock`] until dropped.
#[derive(Debug)]
pub struct TimedGuard<'a> {
    lock: &'a TimedLock,
}

impl TimedLock {
    fn state(&self) -> MutexGuard<'_, bool> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Blocks until acquired.
    pub fn lock(&self) -> TimedGuard<'_> {
        let mut h = self.state();
        while *h {
            h = self.cv.wait(h).unwrap_or_else(|e| e.into_inner());
        }
        *h = true;
        TimedGuard { lock: self }
    }

    /// Acquires within `timeout`, or gives up.
    pub fn try_lock_for(&self, timeout: Duration) -> Option<TimedGuard<'_>> {
        let deadline = Instant::now() + timeout;
        let mut h = self.state();
        while *h {
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            h = self
                .cv
                .wait_timeout(h, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        *h = true;
        Some(TimedGuard { lock: self })
    }
}

impl Drop for TimedGuard<'_> {
    fn drop(&mut self) {
        *self.lock.state() = false;
        self.lock.cv.notify_one();
    }
}

#[derive(Debug, Default)]
struct State {
    msgs: BTreeMap<u64, StoredMessage>,
    /// Orderly: taken for the batch being consumed.
    consuming: BTreeMap<u64, StoredMessage>,
    /// Highest queue offset ever put.
    max_offset: Option<u64>,
}

/// One queue's cache.
#[derive(Debug, Default)]
pub struct ProcessQueue {
    state: Mutex<State>,
    arrived: Condvar,
    dropped: AtomicBool,
    /// Set when dropped or when the consumer stops: held pulls return.
    pull_cancelled: AtomicBool,
    locked: AtomicBool,
    last_lock_ms: AtomicI64,
    /// Held around each orderly batch (the third lock).
    pub consume_lock: TimedLock,
}

impl ProcessQueue {
    fn st(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds pulled messages.
    pub fn put(&self, msgs: Vec<StoredMessage>) {
        let mut s = self.st();
        for m in msgs {
            s.max_offset = Some(
                s.max_offset
                    .map_or(m.queue_offset, |o| o.max(m.queue_offset)),
            );
            s.msgs.insert(m.queue_offset, m);
        }
        drop(s);
        self.arrived.notify_all();
    }

    /// Messages cached (waiting and being consumed): the consumer-side
    /// queue depth flow control watches.
    pub fn count(&self) -> usize {
        let s = self.st();
        s.msgs.len() + s.consuming.len()
    }

    /// Removes consumed messages; returns the offset to commit (the
    /// smallest still cached, else one past the highest pulled), or None
    /// when nothing was cached.
    pub fn remove(&self, offsets: impl IntoIterator<Item = u64>) -> Option<u64> {
        let mut s = self.st();
        if s.msgs.is_empty() {
            return None;
        }
        for o in offsets {
            s.msgs.remove(&o);
        }
        Some(
            s.msgs
                .keys()
                .next()
                .copied()
                .unwrap_or_else(|| s.max_offset.map_or(0, |m| m + 1)),
        )
    }

    /// Orderly: takes the next `n` messages for consumption.
    pub fn take(&self, n: usize) -> Vec<StoredMessage> {
        let mut s = self.st();
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let Some((o, m)) = s.msgs.pop_first() else {
                break;
            };
            out.push(m.clone());
            s.consuming.insert(o, m);
        }
        out
    }

    /// Orderly: the batch taken is consumed; returns the offset to commit.
    pub fn commit(&self) -> Option<u64> {
        let mut s = self.st();
        let last = s.consuming.keys().next_back().copied();
        s.consuming.clear();
        last.map(|o| o + 1)
    }

    /// Orderly: puts a taken batch back (with updated reconsume counts) to
    /// be consumed again.
    pub fn consume_again(&self, msgs: Vec<StoredMessage>) {
        let mut s = self.st();
        for m in msgs {
            s.consuming.remove(&m.queue_offset);
            s.msgs.insert(m.queue_offset, m);
        }
    }

    /// Waits up to `timeout` for a message to be cached; true if one is.
    pub fn wait_messages(&self, timeout: Duration) -> bool {
        let s = self.st();
        if !s.msgs.is_empty() {
            return true;
        }
        let s = self
            .arrived
            .wait_timeout(s, timeout)
            .unwrap_or_else(|e| e.into_inner())
            .0;
        !s.msgs.is_empty()
    }

    /// Marks the queue as no longer this consumer's.
    pub fn set_dropped(&self) {
        self.dropped.store(true, Ordering::Release);
        self.pull_cancelled.store(true, Ordering::Release);
        self.arrived.notify_all();
    }

    /// True once dropped.
    pub fn is_dropped(&self) -> bool {
        self.dropped.load(Ordering::Acquire)
    }

    /// Ends pulls in progress (the consumer is stopping) without dropping
    /// the queue, so batches in flight still commit.
    pub fn cancel_pulls(&self) {
        self.pull_cancelled.store(true, Ordering::Release);
    }

    /// Set once pulls must stop: held pulls watch it to return early.
    pub fn pull_cancel_flag(&self) -> &AtomicBool {
        &self.pull_cancelled
    }

    /// Orderly: records whether the broker lock is held, at `now_ms`.
    pub fn set_locked(&self, locked: bool, now_ms: i64) {
        self.locked.store(locked, Ordering::Release);
        if locked {
            self.last_lock_ms.store(now_ms, Ordering::Release);
        }
    }

    /// Orderly: the broker lock is held and was renewed within `expiry_ms`.
    pub fn lock_valid(&self, now_ms: i64, expiry_ms: u64) -> bool {
        self.locked.load(Ordering::Acquire)
            && now_ms - self.last_lock_ms.load(Ordering::Acquire) <= expiry_ms as i64
    }

    /// Orderly: the broker lock flag.
    pub fn is_locked(&self) -> bool {
        self.locked.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mqlab_engine::message::Message;

    fn msg(q: u64) -> StoredMessage {
        let m = Message::new("T", vec![1]);
        StoredMessage {
            total_size: 0,
            magic: 0,
            body_crc: 0,
            queue_id: 0,
            flag: 0,
            queue_offset: q,
            phys_offset: q * 100,
            sys_flag: 0,
            born_timestamp_ms: 0,
            born_host: m.born_host,
            store_timestamp_ms: 0,
            store_host: m.born_host,
            reconsume_times: 0,
            prepared_tx_offset: 0,
            body: m.body,
            topic: m.topic,
            properties: m.properties,
        }
    }

    #[test]
    fn commit_offset_is_smallest_unconsumed() {
        let pq = ProcessQueue::default();
        assert_eq!(pq.remove([1]), None);
        pq.put((10..15).map(msg).collect());
        assert_eq!(pq.count(), 5);
        assert_eq!(pq.remove([11, 12]), Some(10));
        assert_eq!(pq.remove([10]), Some(13));
        assert_eq!(pq.remove([13, 14]), Some(15));
    }

    #[test]
    fn orderly_take_commit_and_again() {
        let pq = ProcessQueue::default();
        pq.put((0..5).map(msg).collect());
        let b = pq.take(2);
        assert_eq!(b.len(), 2);
        pq.consume_again(b);
        let b = pq.take(3);
        assert_eq!(b[0].queue_offset, 0);
        assert_eq!(pq.commit(), Some(3));
        assert_eq!(pq.count(), 2);
    }

    #[test]
    fn timed_lock_times_out() {
        let l = TimedLock::default();
        let g = l.lock();
        assert!(l.try_lock_for(Duration::from_millis(5)).is_none());
        drop(g);
        assert!(l.try_lock_for(Duration::from_millis(5)).is_some());
    }
}
