//! What consumers saw: every body carries (key, step, send time), so the
//! tracker measures end-to-end latency, duplicates and order without a
//! side table of what was sent.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use hdrhistogram::Histogram;

use crate::recorder::latency_hist;

/// Body layout: key u32, step u64, send time µs u64 (little-endian), then
/// padding to the message size.
pub fn body(key: u32, step: u64, sent_us: u64, size: usize) -> Vec<u8> {
    let mut b = vec![0u8; size.max(20)];
    b[..4].copy_from_slice(&key.to_le_bytes());
    b[4..12].copy_from_slice(&step.to_le_bytes());
    b[12..20].copy_from_slice(&sent_us.to_le_bytes());
    b
}

/// (key, step, send time µs) of a body.
pub fn parse_body(b: &[u8]) -> Option<(u32, u64, u64)> {
    if b.len() < 20 {
        return None;
    }
    Some((
        u32::from_le_bytes(b[..4].try_into().ok()?),
        u64::from_le_bytes(b[4..12].try_into().ok()?),
        u64::from_le_bytes(b[12..20].try_into().ok()?),
    ))
}

/// What consumers saw.
pub struct Tracker {
    start: Instant,
    /// Send to first successful consumption, µs.
    pub(super) e2e: Mutex<Histogram<u64>>,
    /// The same for messages that came through the retry topic.
    pub(super) retried: Mutex<Histogram<u64>>,
    seen: Mutex<HashSet<(u32, u64)>>,
    last: Mutex<HashMap<u32, u64>>,
    /// Deliveries.
    pub consumed: AtomicU64,
    /// Deliveries of something already consumed.
    pub duplicates: AtomicU64,
    /// Steps consumed after a later step of their key.
    pub out_of_order: AtomicU64,
}

impl Tracker {
    /// A tracker whose clock starts at `start`.
    pub fn new(start: Instant) -> Tracker {
        Tracker {
            start,
            e2e: Mutex::new(latency_hist()),
            retried: Mutex::new(latency_hist()),
            seen: Mutex::new(HashSet::new()),
            last: Mutex::new(HashMap::new()),
            consumed: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            out_of_order: AtomicU64::new(0),
        }
    }

    /// µs since the run started.
    pub fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    /// Counts a delivery without judging it (a failed attempt).
    pub fn delivery(&self) {
        self.consumed.fetch_add(1, Ordering::Relaxed);
    }

    /// A successful consumption of `body`; `reconsumed` when it came
    /// through the retry topic.
    pub fn success(&self, body: &[u8], reconsumed: bool) {
        let Some((key, step, sent)) = parse_body(body) else {
            return;
        };
        if !self.seen.lock().unwrap().insert((key, step)) {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let lat = self.now_us().saturating_sub(sent).max(1);
        self.e2e.lock().unwrap().saturating_record(lat);
        if reconsumed {
            self.retried.lock().unwrap().saturating_record(lat);
        }
        let mut last = self.last.lock().unwrap();
        let e = last.entry(key).or_insert(step);
        if step < *e {
            self.out_of_order.fetch_add(1, Ordering::Relaxed);
        } else {
            *e = step;
        }
    }

    /// Distinct messages consumed.
    pub fn distinct(&self) -> u64 {
        self.seen.lock().unwrap().len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn body_round_trips() {
        let b = body(7, 42, 123_456, 64);
        assert_eq!(b.len(), 64);
        assert_eq!(parse_body(&b), Some((7, 42, 123_456)));
        assert_eq!(parse_body(&b[..10]), None);
    }

    #[test]
    fn tracker_counts_duplicates_and_order() {
        let t = Tracker::new(Instant::now());
        t.success(&body(1, 0, 0, 20), false);
        t.success(&body(1, 2, 0, 20), false);
        t.success(&body(1, 1, 0, 20), false);
        t.success(&body(1, 2, 0, 20), false);
        assert_eq!(t.distinct(), 3);
        assert_eq!(t.duplicates.load(Ordering::Relaxed), 1);
        assert_eq!(t.out_of_order.load(Ordering::Relaxed), 1);
    }
}
