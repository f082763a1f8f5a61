//! What brokers and clients exchange: queues, the requests a RocketMQ
//! client sends (pull, offsets, heartbeat, locks, end of a transaction,
//! send back) and the one the broker sends to a producer (check a
//! transaction), and their answers. Plain structs, so an in-process call
//! and a network frame carry the same thing.
//!
//! This module imports nothing from the rest of the crate but the tag
//! filter: everything else (the broker, the client crate) builds on it.

use std::sync::Arc;

use mqlab_engine::message::StoredMessage;

use crate::filter::Subscription;

/// Prefix of a group's retry topic.
pub const RETRY_PREFIX: &str = "%RETRY%";
/// Prefix of a group's dead-letter topic.
pub const DLQ_PREFIX: &str = "%DLQ%";
/// Property of a retried message: the topic it was first sent to.
pub const PROPERTY_RETRY_TOPIC: &str = "RETRY_TOPIC";
/// Property of a retried message: the id of the original message.
pub const PROPERTY_ORIGIN_MESSAGE_ID: &str = "ORIGIN_MESSAGE_ID";
/// Property holding the delay level of a message sent with a delay.
pub const PROPERTY_DELAY: &str = "DELAY";

/// The retry topic of a group.
pub fn retry_topic(group: &str) -> String {
    format!("{RETRY_PREFIX}{group}")
}

/// The dead-letter topic of a group.
pub fn dlq_topic(group: &str) -> String {
    format!("{DLQ_PREFIX}{group}")
}

/// One queue of one topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct MessageQueue {
    /// Topic.
    pub topic: String,
    /// Queue id.
    pub queue_id: u32,
}

impl MessageQueue {
    /// The queue `queue_id` of `topic`.
    pub fn new(topic: impl Into<String>, queue_id: u32) -> MessageQueue {
        MessageQueue {
            topic: topic.into(),
            queue_id,
        }
    }
}

impl std::fmt::Display for MessageQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.topic, self.queue_id)
    }
}

/// What a pull asks for (PULL_MESSAGE).
#[derive(Debug, Clone)]
pub struct PullRequest {
    /// Queue to read.
    pub mq: MessageQueue,
    /// First queue offset wanted.
    pub offset: u64,
    /// At most this many messages.
    pub max_msgs: usize,
    /// Tag filter (None = every message).
    pub filter: Option<Arc<Subscription>>,
    /// Long polling: hold an empty pull up to this long, ms (0 = answer at
    /// once). RocketMQ's push consumer asks for 15,000.
    pub suspend_ms: u64,
}

/// How a pull ended (RocketMQ's PullStatus).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum PullStatus {
    /// Messages returned.
    Found,
    /// Nothing at or past the offset (after holding, with long polling).
    NoNewMsg,
    /// Units scanned, none matched the filter; pull again from `next`.
    NoMatchedMsg,
    /// The offset is below the queue's first or past its last unit; pull
    /// again from `next`.
    OffsetIllegal,
}

/// What a pull returns.
#[derive(Debug, Clone)]
pub struct PullResult {
    /// How it ended.
    pub status: PullStatus,
    /// Where the next pull starts.
    pub next_offset: u64,
    /// Queue's first offset.
    pub min_offset: u64,
    /// One past the queue's last unit.
    pub max_offset: u64,
    /// The messages (tags code matched; the client still compares tags).
    pub msgs: Vec<StoredMessage>,
}

/// Backlog of one group on one queue.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct QueueLag {
    /// The queue.
    pub mq: MessageQueue,
    /// One past the last message of the queue.
    pub broker_offset: u64,
    /// The group's committed offset (the queue's first offset when none).
    pub consumer_offset: u64,
    /// Messages not consumed yet: broker - consumer offset.
    pub lag: u64,
}

/// A group's committed offset on a queue (QUERY_CONSUMER_OFFSET).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryConsumerOffsetRequest {
    /// Consumer group.
    pub group: String,
    /// The queue.
    pub mq: MessageQueue,
}

/// Sets a group's committed offset on a queue (UPDATE_CONSUMER_OFFSET).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateConsumerOffsetRequest {
    /// Consumer group.
    pub group: String,
    /// The queue.
    pub mq: MessageQueue,
    /// The smallest offset not consumed yet.
    pub offset: u64,
}

/// A consumer group a client belongs to, in a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerData {
    /// Consumer group.
    pub group: String,
    /// What it subscribes to (its retry topic included).
    pub subscriptions: Vec<Subscription>,
}

/// A client announcing its producer and consumer groups (HEARTBEAT). The
/// broker keeps the client's channel to send it requests (check a
/// transaction, consumer ids changed).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeartbeatRequest {
    /// Client id, unique per group.
    pub client_id: String,
    /// Producer groups the client sends for (check-backs go to them).
    pub producer_groups: Vec<String>,
    /// Consumer groups the client is a member of.
    pub consumers: Vec<ConsumerData>,
}

/// A client leaving (UNREGISTER_CLIENT): shutdown, or its connection
/// dropping.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UnregisterClientRequest {
    /// Client id.
    pub client_id: String,
    /// The producer group it leaves, if any.
    pub producer_group: Option<String>,
    /// The consumer group it leaves, if any.
    pub consumer_group: Option<String>,
}

/// Ordered consumption: locks or unlocks queues of a group for a client
/// (LOCK_BATCH_MQ, UNLOCK_BATCH_MQ).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockBatchRequest {
    /// Consumer group.
    pub group: String,
    /// The client asking.
    pub client_id: String,
    /// The queues.
    pub mqs: Vec<MessageQueue>,
}

/// A local transaction's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum LocalTransactionState {
    /// Make the message visible.
    CommitMessage,
    /// Drop it.
    RollbackMessage,
    /// Not known yet: the check service asks again later.
    Unknown,
}

/// Ends a half message (END_TRANSACTION).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndTransactionRequest {
    /// The producer group that sent it.
    pub producer_group: String,
    /// Physical offset of the half message (the send's result).
    pub commit_log_offset: u64,
    /// The outcome.
    pub state: LocalTransactionState,
    /// True when this answers a check-back.
    pub from_transaction_check: bool,
}

/// The broker asks a producer of the group about a half message whose end
/// never arrived (CHECK_TRANSACTION_STATE); the producer answers with an
/// [`EndTransactionRequest`].
#[derive(Debug, Clone)]
pub struct CheckTransactionStateRequest {
    /// The producer group asked.
    pub producer_group: String,
    /// The half message (its newest copy; `phys_offset` is what the end
    /// names).
    pub msg: StoredMessage,
}

/// A consumer gives a message back for a retry (CONSUMER_SEND_MSG_BACK).
#[derive(Debug, Clone)]
pub struct ConsumerSendMsgBackRequest {
    /// Consumer group.
    pub group: String,
    /// The message as consumed.
    pub msg: StoredMessage,
    /// Reconsumes before it goes to the dead-letter queue.
    pub max_reconsume_times: u32,
}
