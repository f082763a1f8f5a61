//! Time-wheel settings, validated once at open.

use super::MAX_SLOTS;
use crate::delay::timerlog::UNIT_BYTES;
use crate::error::{Error, Result};

/// Time-wheel settings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct WheelConfig {
    /// Slot width, ms. Default 1,000 (RocketMQ's `timerPrecisionMs`).
    /// Accepts 1. Delivery is at the due millisecond whatever the width.
    pub precision_ms: u64,
    /// Time covered by the wheel, ms; `window_ms / precision_ms` slots
    /// (at most 2^24). Later due times are rolled. Default 172,800,000
    /// (2 days, RocketMQ's roll window).
    pub window_ms: u64,
    /// Longest accepted delay, ms. Default 259,200,000 (3 days,
    /// `timerMaxDelaySec`).
    pub max_delay_ms: u64,
    /// A slot is loaded and its messages prepared this long before it
    /// starts, ms. Default 2,000.
    pub prefetch_ms: u64,
    /// Most prepared timers held in memory (a single slot may exceed it).
    /// Default 1,000,000.
    pub max_ready: usize,
    /// Delivery threads. Default 2.
    pub deliver_threads: usize,
    /// Checkpoint period, ms. Default 1,000.
    pub checkpoint_interval_ms: u64,
    /// Timer-log file size, bytes (multiple of 32). Default 64 MiB.
    pub timerlog_segment_bytes: u64,
    /// Delay levels for [`crate::delay::DeliverAt::Level`], ms. Default RocketMQ's 18.
    pub levels_ms: Vec<u64>,
    /// Start the background threads at open. Default true; tests drive the
    /// wheel with [`crate::delay::DelayScheduler::tick`] instead.
    pub background: bool,
}

impl Default for WheelConfig {
    fn default() -> Self {
        WheelConfig {
            precision_ms: 1_000,
            window_ms: 2 * 86_400_000,
            max_delay_ms: 3 * 86_400_000,
            prefetch_ms: 2_000,
            max_ready: 1_000_000,
            deliver_threads: 2,
            checkpoint_interval_ms: 1_000,
            timerlog_segment_bytes: 64 << 20,
            levels_ms: crate::delay::default_levels_ms(),
            background: true,
        }
    }
}

impl WheelConfig {
    /// Number of slots.
    pub fn slots(&self) -> u64 {
        self.window_ms / self.precision_ms.max(1)
    }

    /// Checks every value once.
    pub fn sanitize(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.precision_ms == 0 {
            return bad("precision_ms must be > 0".into());
        }
        if !self.window_ms.is_multiple_of(self.precision_ms) {
            return bad(format!(
                "window_ms {} is not a multiple of precision_ms {}",
                self.window_ms, self.precision_ms
            ));
        }
        let n = self.slots();
        if !(16..=MAX_SLOTS).contains(&n) {
            return bad(format!(
                "window_ms / precision_ms = {n} slots; must be 16 to {MAX_SLOTS} (use a smaller window with a fine precision: longer delays are rolled)"
            ));
        }
        if self.window_ms < self.prefetch_ms + 4 * self.precision_ms {
            return bad(format!(
                "window_ms {} must exceed prefetch_ms {} by 4 slots",
                self.window_ms, self.prefetch_ms
            ));
        }
        if self.max_delay_ms == 0 || self.max_ready == 0 || self.checkpoint_interval_ms == 0 {
            return bad("max_delay_ms, max_ready and checkpoint_interval_ms must be > 0".into());
        }
        if !(1..=64).contains(&self.deliver_threads) {
            return bad("deliver_threads must be 1 to 64".into());
        }
        if !self.timerlog_segment_bytes.is_multiple_of(UNIT_BYTES)
            || self.timerlog_segment_bytes < 4096
        {
            return bad("timerlog_segment_bytes must be >= 4096 and a multiple of 32".into());
        }
        if self.levels_ms.is_empty() {
            return bad("levels_ms must not be empty".into());
        }
        Ok(())
    }
}
