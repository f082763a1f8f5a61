//! [`BrokerApi`]: the only way a client reaches a broker. One method per
//! request a RocketMQ client sends (its request code in parentheses), each
//! taking and returning plain structs from `mqlab_broker::types`, so that
//! the in-process implementation ([`crate::local`]) and a network one can
//! stand behind the same `Arc<dyn BrokerApi>`.
//!
//! Requests the other way (the broker asking a producer to check a
//! transaction, or telling consumers the group changed) reach the client
//! through the [`ClientChannel`] it hands over in [`BrokerApi::heartbeat`].

use std::collections::BTreeSet;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use mqlab_broker::types::{
    ConsumerSendMsgBackRequest, EndTransactionRequest, HeartbeatRequest, LockBatchRequest,
    MessageQueue, PullRequest, PullResult, QueryConsumerOffsetRequest, UnregisterClientRequest,
    UpdateConsumerOffsetRequest,
};
use mqlab_broker::ClientChannel;
use mqlab_engine::clock::Clock;
use mqlab_engine::io::Env;
use mqlab_engine::{Message, PutResult};

use crate::error::Result;

/// Where a client keeps its own files (a broadcasting consumer's offsets).
#[derive(Clone)]
pub struct LocalFiles {
    /// The env the files are written through.
    pub env: Arc<dyn Env>,
    /// The default directory (`ConsumerConfig::local_offset_dir` overrides
    /// it).
    pub dir: std::path::PathBuf,
}

impl std::fmt::Debug for LocalFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalFiles")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// A broker as a client sees it. Object-safe; every method is one request
/// and its response.
pub trait BrokerApi: Send + Sync {
    /// Stores one message (SEND_MESSAGE). A message with the property
    /// `TRAN_MSG=true` is stored as a half message, as RocketMQ's broker
    /// does; its physical offset names it in [`BrokerApi::end_transaction`].
    fn send_message(&self, msg: &Message) -> PutResult;

    /// The queues of a topic, created with the broker's default queue count
    /// when unknown (GET_ROUTEINFO_BY_TOPIC, autoCreateTopicEnable).
    fn get_route_info(&self, topic: &str) -> Result<Vec<MessageQueue>>;

    /// The queues of a topic as they are, without creating it (empty when
    /// unknown); what a rebalance divides.
    fn get_topic_queues(&self, topic: &str) -> Vec<MessageQueue>;

    /// Creates a topic with `queues` queues or grows it to that many
    /// (UPDATE_AND_CREATE_TOPIC); consumers create their retry topic so.
    fn create_topic(&self, topic: &str, queues: u32) -> Result<()>;

    /// (first, one past last) offset of a queue; (0, 0) when empty
    /// (GET_MIN_OFFSET, GET_MAX_OFFSET).
    fn get_offset_range(&self, mq: &MessageQueue) -> (u64, u64);

    /// Pulls from a queue (PULL_MESSAGE); with `suspend_ms` > 0 and nothing
    /// to return the broker holds the pull (long polling). `cancel` is the
    /// caller's own flag, never sent: once set, the call returns (in-process
    /// the held pull ends within 50 ms; a remote implementation stops
    /// waiting for the answer).
    fn pull_message(&self, req: &PullRequest, cancel: Option<&AtomicBool>) -> Result<PullResult>;

    /// A group's committed offset on a queue (QUERY_CONSUMER_OFFSET).
    fn query_consumer_offset(&self, req: &QueryConsumerOffsetRequest) -> Option<u64>;

    /// Sets a group's committed offset on a queue (UPDATE_CONSUMER_OFFSET).
    fn update_consumer_offset(&self, req: &UpdateConsumerOffsetRequest);

    /// Announces the client's producer and consumer groups (HEARTBEAT) and
    /// hands the broker the channel it sends requests to this client on
    /// (CHECK_TRANSACTION_STATE, NOTIFY_CONSUMER_IDS_CHANGED).
    fn heartbeat(&self, req: &HeartbeatRequest, channel: Arc<dyn ClientChannel>) -> Result<()>;

    /// The client leaves its groups (UNREGISTER_CLIENT).
    fn unregister_client(&self, req: &UnregisterClientRequest);

    /// Client ids of a consumer group, sorted (GET_CONSUMER_LIST_BY_GROUP).
    fn get_consumer_list(&self, group: &str) -> Vec<String>;

    /// Locks (or renews) queues for ordered consumption; returns those the
    /// client holds now (LOCK_BATCH_MQ).
    fn lock_batch_mq(&self, req: &LockBatchRequest) -> BTreeSet<MessageQueue>;

    /// Releases queues the client holds (UNLOCK_BATCH_MQ).
    fn unlock_batch_mq(&self, req: &LockBatchRequest);

    /// Commits or rolls back a half message (END_TRANSACTION); the put of
    /// the real message (commit) or of the op record, None for UNKNOWN.
    fn end_transaction(&self, req: &EndTransactionRequest) -> Result<Option<PutResult>>;

    /// Gives a consumed message back for a retry, or to the dead-letter
    /// queue past its reconsume limit (CONSUMER_SEND_MSG_BACK).
    fn consumer_send_msg_back(&self, req: &ConsumerSendMsgBackRequest) -> PutResult;

    /// The clock the client stamps born times and measures lock expiry
    /// with. Not a request: in-process it is the broker's own clock, so a
    /// manual clock drives both sides of a test; a remote implementation
    /// returns the system clock.
    fn clock(&self) -> Arc<dyn Clock>;

    /// Where the client keeps its own files. Not a request: in-process, the
    /// store's env and `<store dir>/clients` (so a simulated crash takes
    /// them too); a remote implementation, the local disk.
    fn local_files(&self) -> LocalFiles;
}
