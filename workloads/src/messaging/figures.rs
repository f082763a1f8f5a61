//! The figures a messaging run adds to summary.json: kept apart from the
//! runners so that the summary can hold them without knowing how they are
//! measured.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::recorder::LatencySummary;

/// The figures a messaging run adds to summary.json (top level).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Figures {
    /// Experiment name.
    pub experiment: String,
    /// Variant name.
    pub variant: String,
    /// Messages sent and acknowledged.
    pub produced: u64,
    /// Deliveries handed to listeners (duplicates and retries included).
    pub consumed: u64,
    /// Distinct messages consumed successfully.
    pub consumed_distinct: u64,
    /// Deliveries per second over the run.
    pub consume_msgs_per_s: f64,
    /// Send to first successful consumption, µs.
    pub e2e_latency_us: LatencySummary,
    /// Largest backlog (messages not consumed by the group) sampled.
    pub backlog_max: u64,
    /// Largest consumer-side queue (messages cached, not consumed yet).
    pub consumer_queue_max: u64,
    /// Deliveries of a message already consumed.
    pub duplicates: u64,
    /// First deliveries of a key's step after a later step of that key.
    pub out_of_order: u64,
    /// Messages in the dead-letter queue at the end.
    pub dlq_messages: u64,
    /// Messages sent back for a retry.
    pub retry_messages: u64,
    /// Retried messages: send to final successful consumption, µs.
    pub retried_e2e_latency_us: Option<LatencySummary>,
    /// Transactions: send to resolution (commit visible or discard), ms.
    pub txn_resolution_ms: Option<LatencySummary>,
    /// Anything else the experiment measured.
    pub extra: BTreeMap<String, f64>,
}
