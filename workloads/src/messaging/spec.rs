//! The `[messaging]` table of a spec file: which experiment, which
//! variants, and the knobs each experiment reads (unset ones take the
//! defaults named on each field).

use serde::{Deserialize, Serialize};

/// The experiments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Experiment {
    /// Bursty producer, fixed-rate consumer: push vs pull.
    PeakShaving,
    /// Ordered vs concurrent consumption under membership churn.
    Ordered,
    /// Transactional vs plain sends, and check-back resolution.
    Transactions,
    /// A consumer failing a share of deliveries.
    Retry,
    /// Broadcasting vs clustering.
    Broadcast,
}

impl Experiment {
    /// The experiment's name in folders and legends.
    pub fn name(self) -> &'static str {
        match self {
            Experiment::PeakShaving => "peak-shaving",
            Experiment::Ordered => "ordered",
            Experiment::Transactions => "transactions",
            Experiment::Retry => "retry",
            Experiment::Broadcast => "broadcast",
        }
    }

    /// The variants run when the spec names none.
    pub fn default_variants(self) -> Vec<String> {
        let v: &[&str] = match self {
            Experiment::PeakShaving => &["push", "pull"],
            Experiment::Ordered => &["concurrent", "orderly", "orderly-no-pq-lock"],
            Experiment::Transactions => &["plain", "txn", "txn-unanswered"],
            Experiment::Retry => &["fail-10"],
            Experiment::Broadcast => &["clustering", "broadcasting"],
        };
        v.iter().map(|s| s.to_string()).collect()
    }
}

/// The `[messaging]` table of a spec file. Unset values take the defaults
/// named on each field.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MessagingSpec {
    /// Which experiment.
    pub experiment: Option<Experiment>,
    /// Variants to run, each on a fresh store. Default: all of the
    /// experiment's.
    pub variants: Option<Vec<String>>,
    /// Consumers in the group. Default 1 (peak-shaving), 3 (others).
    pub consumers: Option<usize>,
    /// Peak shaving: messages per second the consumer processes. Default
    /// 2,000.
    pub consume_rate: Option<f64>,
    /// Processing time per message, µs. Default 0 (peak-shaving: set by
    /// consume_rate; ordered: 200).
    pub process_us: Option<u64>,
    /// Push consumer flow control: cached messages per queue. Default 1,000.
    pub pull_threshold: Option<usize>,
    /// Ordered: sharding keys. Default 64.
    pub keys: Option<u32>,
    /// Ordered: a member leaves and a new one joins this often, ms.
    /// Default 1,000.
    pub churn_ms: Option<u64>,
    /// Ordered: messages stored before the members start, to measure how
    /// fast each variant drains them (`extra.drain_msgs_per_s`); 0 skips.
    /// Default 20,000.
    pub capacity_messages: Option<u64>,
    /// Retry: share of deliveries the consumer fails, percent. Overrides
    /// the `fail-N` variant names. Default from the variant.
    pub fail_percent: Option<f64>,
    /// Retry: reconsumes before the DLQ. Default 16.
    pub max_reconsume: Option<u32>,
    /// Retry: delay levels, RocketMQ syntax ("10ms 50ms 100ms ..."). Default
    /// RocketMQ's levels divided by 100 (level 3 = 100 ms), so a run sees
    /// many retry rounds.
    pub retry_levels: Option<String>,
    /// Transactions: share of transactions whose local outcome is UNKNOWN,
    /// resolved by check-back, percent. Default 10.
    pub unknown_percent: Option<f64>,
    /// Transactions (txn-unanswered): share of those whose producer never
    /// answers checks, percent. Default 50.
    pub unanswered_percent: Option<f64>,
    /// Transactions: check service period, ms. Default 500.
    pub check_interval_ms: Option<u64>,
    /// Transactions: age before a half message is checked, ms. Default 300.
    pub txn_timeout_ms: Option<u64>,
    /// Transactions: checks before a discard. Default 5.
    pub check_max: Option<u32>,
    /// Longest wait for consumers to drain after producers stop, s.
    /// Default 30.
    pub drain_secs: Option<f64>,
    /// Backlog sampling period, ms. Default 50.
    pub sample_ms: Option<u64>,
    /// Seed of the failure/outcome choices. Default 1.
    pub seed: Option<u64>,
}
