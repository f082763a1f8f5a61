//! When each timer is due, by pattern (burst, uniform, levels), and the
//! level a levels scheduler gives it.

use mqlab_engine::delay::DeliverAt;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::request::{DelayRequest, Pattern};

/// Levels in ms (RocketMQ's defaults, as both schedulers use them).
pub(super) fn levels_ms() -> Vec<u64> {
    mqlab_engine::delay::default_levels_ms()
}

/// Smallest level (1-based) whose delay is at least `ms`, else the last.
pub(super) fn level_at_least(levels: &[u64], ms: u64) -> u32 {
    levels
        .iter()
        .position(|&l| l >= ms)
        .unwrap_or(levels.len() - 1) as u32
        + 1
}

/// When timer `i` is due.
pub(super) struct Plan {
    pub(super) pattern: Pattern,
    pub(super) levels: Vec<u64>,
    /// Levels within [min, max] (at least one).
    pub(super) allowed: Vec<u32>,
    pub(super) burst_at_ms: i64,
    pub(super) spread_ms: u64,
    pub(super) min_ms: u64,
    pub(super) max_ms: u64,
}

impl Plan {
    pub(super) fn new(args: &DelayRequest, start_ms: i64) -> Plan {
        let levels = levels_ms();
        let mut allowed: Vec<u32> = (0..levels.len())
            .filter(|&i| (args.min_delay_ms..=args.max_delay_ms).contains(&levels[i]))
            .map(|i| i as u32 + 1)
            .collect();
        if allowed.is_empty() {
            allowed.push(level_at_least(&levels, args.min_delay_ms));
        }
        let lead = args.lead_ms.unwrap_or(2_000 + args.timers * 8 / 1_000);
        Plan {
            pattern: args.pattern,
            levels,
            allowed,
            burst_at_ms: start_ms + lead as i64,
            spread_ms: args.burst_spread_ms,
            min_ms: args.min_delay_ms,
            max_ms: args.max_delay_ms.max(args.min_delay_ms),
        }
    }

    pub(super) fn at(&self, rng: &mut ChaCha8Rng, now_ms: i64, levels_only: bool) -> DeliverAt {
        match self.pattern {
            Pattern::Burst => {
                let due = self.burst_at_ms + rng.random_range(0..=self.spread_ms) as i64;
                if levels_only {
                    DeliverAt::Level(level_at_least(&self.levels, (due - now_ms).max(0) as u64))
                } else {
                    DeliverAt::AtMs(due)
                }
            }
            Pattern::Uniform => {
                let d = rng.random_range(self.min_ms..=self.max_ms);
                if levels_only {
                    DeliverAt::Level(level_at_least(&self.levels, d))
                } else {
                    DeliverAt::AfterMs(d)
                }
            }
            Pattern::Levels => {
                DeliverAt::Level(self.allowed[rng.random_range(0..self.allowed.len())])
            }
        }
    }
}
