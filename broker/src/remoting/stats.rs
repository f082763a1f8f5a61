//! What the broker served on the wire, counted as it happens with plain
//! atomics (no lock on the send path): read by `mqlab broker`'s status
//! line and by the metrics endpoint ([`crate::metrics`]).

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of what the broker served on the wire (for the status line
/// and metrics).
#[derive(Debug, Default)]
pub struct WireStats {
    /// Sends stored (SUCCESS).
    pub sends_ok: AtomicU64,
    /// Sends refused or failed.
    pub sends_failed: AtomicU64,
    /// Messages returned by pulls.
    pub pulled: AtomicU64,
    /// Sends handled on their connection's reader task, without the
    /// blocking pool (`Handler::try_inline`; included in the two above
    /// once answered).
    pub inline_sends: AtomicU64,
    /// Latency of sends, stored or not: from the request reaching the
    /// handler to its answer. Filled by [`WireStats::record_send`].
    pub send_latency: LatencyHistogram,
}

impl WireStats {
    /// Counts one answered send: `ok` when it was stored (SUCCESS), and
    /// its latency in microseconds. Bumps [`WireStats::sends_ok`] or
    /// [`WireStats::sends_failed`] too, so a caller counts through this
    /// alone.
    pub fn record_send(&self, ok: bool, latency_us: u64) {
        let counter = if ok {
            &self.sends_ok
        } else {
            &self.sends_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.send_latency.record(latency_us);
    }
}

/// Upper bounds of [`LatencyHistogram`]'s buckets, microseconds: RocketMQ's
/// `rocketmq_rpc_latency` bounds (1, 3, 5, 10, 100, 1000, 3000 ms) with
/// finer ones added below a millisecond and between 10 ms and 1 s, where
/// mqlab's flush strategies differ. Past the last bound is the overflow
/// bucket.
pub const LATENCY_BOUNDS_US: [u64; 14] = [
    100, 250, 500, 1_000, 3_000, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 3_000_000,
];

/// A latency histogram with fixed buckets ([`LATENCY_BOUNDS_US`]): one
/// atomic add per bucket and one for the sum, so recording never blocks.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Non-cumulative counts; the last one is the overflow bucket.
    buckets: [AtomicU64; LATENCY_BOUNDS_US.len() + 1],
    sum_us: AtomicU64,
}

impl LatencyHistogram {
    /// Records one latency, microseconds.
    pub fn record(&self, latency_us: u64) {
        let i = LATENCY_BOUNDS_US.partition_point(|&b| b < latency_us);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(latency_us, Ordering::Relaxed);
    }

    /// The counts now (each bucket read on its own: concurrent records may
    /// be seen in some buckets and not yet in the sum).
    pub fn snapshot(&self) -> LatencySnapshot {
        LatencySnapshot {
            counts: std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed)),
            sum_us: self.sum_us.load(Ordering::Relaxed),
        }
    }
}

/// A [`LatencyHistogram`]'s counts at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LatencySnapshot {
    /// Per bucket of [`LATENCY_BOUNDS_US`], not cumulative; the last one
    /// counts what was over the last bound.
    pub counts: [u64; LATENCY_BOUNDS_US.len() + 1],
    /// Sum of the recorded latencies, microseconds.
    pub sum_us: u64,
}

impl LatencySnapshot {
    /// Recorded latencies.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// What was recorded since `earlier` (a snapshot of the same
    /// histogram).
    pub fn since(&self, earlier: &LatencySnapshot) -> LatencySnapshot {
        LatencySnapshot {
            counts: std::array::from_fn(|i| self.counts[i].saturating_sub(earlier.counts[i])),
            sum_us: self.sum_us.saturating_sub(earlier.sum_us),
        }
    }

    /// Upper bound of the bucket holding quantile `q` (0..=1), µs; None
    /// when nothing was recorded or it falls in the overflow bucket.
    pub fn quantile_bound_us(&self, q: f64) -> Option<u64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * n as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return LATENCY_BOUNDS_US.get(i).copied();
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_hold_up_to_their_bound() {
        let s = WireStats::default();
        for us in [0, 100, 101, 1_000, 2_999_999, 3_000_000, 3_000_001] {
            s.record_send(us != 0, us);
        }
        let snap = s.send_latency.snapshot();
        assert_eq!(snap.count(), 7);
        assert_eq!(snap.counts[0], 2); // 0 and 100: le 100
        assert_eq!(snap.counts[1], 1); // 101: le 250
        assert_eq!(snap.counts[3], 1); // 1000: le 1000
        assert_eq!(snap.counts[13], 2); // le 3 s
        assert_eq!(snap.counts[14], 1); // overflow
        assert_eq!(s.sends_ok.load(Ordering::Relaxed), 6);
        assert_eq!(s.sends_failed.load(Ordering::Relaxed), 1);
        assert_eq!(snap.quantile_bound_us(0.5), Some(1_000)); // the 4th of 7
        assert_eq!(snap.quantile_bound_us(0.1), Some(100));
        assert_eq!(snap.quantile_bound_us(1.0), None);
        let later = {
            s.send_latency.record(200);
            s.send_latency.snapshot()
        };
        let d = later.since(&snap);
        assert_eq!((d.count(), d.sum_us, d.counts[1]), (1, 200, 1));
    }
}
