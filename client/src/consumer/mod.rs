//! Consumers: consumer groups in clustering mode (each message to one
//! member, queues split by an [`allocate::AllocateStrategy`], rebalanced
//! when members join or leave, offsets kept by the broker) or broadcasting
//! mode (every member gets every message, offsets in a local file, failed
//! messages not retried, a fresh consumer starts at the newest message).
//!
//! - [`push::PushConsumer`]: RocketMQ's DefaultMQPushConsumer. One pull
//!   thread per assigned queue issues long-polling pulls (held up to
//!   `pull_suspend_ms`, answered as soon as a message is dispatched) into
//!   the queue's [`process_queue::ProcessQueue`], paused while it caches
//!   `pull_threshold_per_queue` messages (flow control). Concurrent
//!   listeners run on a pool of `consume_threads`; RECONSUME_LATER sends the
//!   message back for a retry through `%RETRY%{group}`, which the group
//!   subscribes to transparently. Orderly listeners run on one thread per
//!   queue, under three locks: the broker's (group, queue) lock, the
//!   process-queue consume lock (`process_queue_lock`, which keeps a
//!   rebalance from handing a queue over mid-batch), and one thread per
//!   queue. SUSPEND_CURRENT_QUEUE_A_MOMENT retries the batch locally after
//!   `suspend_current_queue_ms`.
//! - [`pull::PullConsumer`]: the application pulls (`poll`) at its own pace,
//!   from queues it subscribes to (group rebalancing) or assigns itself.
//!
//! Offsets: the committed offset of a queue is the smallest offset not yet
//! consumed. Clustering consumers commit it to the broker after every
//! batch; the broker persists it every 5 s and at shutdown. What a crash
//! loses is re-consumed (at-least-once).

pub mod allocate;
pub mod offset_store;
pub mod process_queue;
pub mod pull;
pub mod push;
mod rebalance;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::error::{Error, Result};
use mqlab_broker::types::{
    ConsumerData, ConsumerSendMsgBackRequest, HeartbeatRequest, LockBatchRequest, MessageQueue,
    UnregisterClientRequest, PROPERTY_RETRY_TOPIC, RETRY_PREFIX,
};
use mqlab_broker::{ClientChannel, Subscription};
use mqlab_engine::message::{PutResult, StoredMessage};

use crate::api::BrokerApi;

pub use allocate::{AllocateStrategy, Averagely, AveragelyByCircle};

/// How a group shares messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageModel {
    /// Each message to one member of the group.
    Clustering,
    /// Every message to every member.
    Broadcasting,
}

/// Where a queue with no committed offset starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ConsumeFromWhere {
    /// At the newest message (RocketMQ's default). Retry topics start at
    /// their first message regardless.
    LastOffset,
    /// At the oldest message still stored.
    FirstOffset,
}

/// What a concurrent listener answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumeStatus {
    /// Consumed.
    ConsumeSuccess,
    /// Retry later (clustering: through the retry topic; broadcasting:
    /// dropped).
    ReconsumeLater,
}

/// What an orderly listener answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderlyStatus {
    /// Consumed; commit.
    Success,
    /// Stop this queue a moment and consume the same batch again.
    SuspendCurrentQueueAMoment,
}

/// Passed to listeners.
#[derive(Debug, Clone)]
pub struct ConsumeContext {
    /// Queue the messages came from.
    pub mq: MessageQueue,
    /// The consumer.
    pub client_id: String,
}

/// Consumes messages in any order, on many threads.
pub trait ConcurrentListener: Send + Sync {
    /// Consumes a batch.
    fn consume(&self, msgs: &[StoredMessage], ctx: &ConsumeContext) -> ConsumeStatus;
}

/// Consumes the messages of a queue one batch at a time, in order.
pub trait OrderlyListener: Send + Sync {
    /// Consumes a batch.
    fn consume(&self, msgs: &[StoredMessage], ctx: &ConsumeContext) -> OrderlyStatus;
}

impl<F> ConcurrentListener for F
where
    F: Fn(&[StoredMessage], &ConsumeContext) -> ConsumeStatus + Send + Sync,
{
    fn consume(&self, msgs: &[StoredMessage], ctx: &ConsumeContext) -> ConsumeStatus {
        self(msgs, ctx)
    }
}

impl<F> OrderlyListener for F
where
    F: Fn(&[StoredMessage], &ConsumeContext) -> OrderlyStatus + Send + Sync,
{
    fn consume(&self, msgs: &[StoredMessage], ctx: &ConsumeContext) -> OrderlyStatus {
        self(msgs, ctx)
    }
}

/// A push consumer's listener.
#[derive(Clone)]
pub enum Listener {
    /// Concurrent consumption.
    Concurrently(Arc<dyn ConcurrentListener>),
    /// Ordered consumption.
    Orderly(Arc<dyn OrderlyListener>),
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Listener::Concurrently(_) => "Concurrently",
            Listener::Orderly(_) => "Orderly",
        })
    }
}

impl Listener {
    /// A concurrent listener from a closure.
    pub fn concurrently(
        f: impl Fn(&[StoredMessage], &ConsumeContext) -> ConsumeStatus + Send + Sync + 'static,
    ) -> Listener {
        Listener::Concurrently(Arc::new(f))
    }

    /// An orderly listener from a closure.
    pub fn orderly(
        f: impl Fn(&[StoredMessage], &ConsumeContext) -> OrderlyStatus + Send + Sync + 'static,
    ) -> Listener {
        Listener::Orderly(Arc::new(f))
    }

    fn is_orderly(&self) -> bool {
        matches!(self, Listener::Orderly(_))
    }
}

static CLIENT_SEQ: AtomicU64 = AtomicU64::new(0);

/// Consumer settings (RocketMQ's names in brackets).
#[derive(Clone)]
pub struct ConsumerConfig {
    /// Consumer group.
    pub group: String,
    /// Client id, unique in the group. Default `consumer-<n>`.
    pub client_id: String,
    /// Clustering or broadcasting. Default clustering [messageModel].
    pub model: MessageModel,
    /// Start of a queue without a committed offset. Default LastOffset
    /// [consumeFromWhere].
    pub from_where: ConsumeFromWhere,
    /// Queue allocation. Default [`Averagely`]
    /// [allocateMessageQueueStrategy].
    pub allocate: Arc<dyn AllocateStrategy>,
    /// Concurrent consume threads. Default 20 [consumeThreadMin].
    pub consume_threads: usize,
    /// Messages per listener call. Default 1 [consumeMessageBatchMaxSize].
    pub consume_batch_max: usize,
    /// Messages per pull. Default 32 [pullBatchSize].
    pub pull_batch: usize,
    /// Long polling: how long the broker may hold an empty pull, ms; 0
    /// pulls without holding. Default 15,000 [brokerSuspendMaxTimeMillis].
    pub pull_suspend_ms: u64,
    /// Flow control: stop pulling a queue while it caches this many
    /// messages. Default 1,000 [pullThresholdForQueue].
    pub pull_threshold_per_queue: usize,
    /// Pause between pulls of a queue, ms. Default 0 [pullInterval].
    pub pull_interval_ms: u64,
    /// Pause of a queue's pulling under flow control, ms. Default 50
    /// [PULL_TIME_DELAY_MILLS_WHEN_FLOW_CONTROL].
    pub flow_control_delay_ms: u64,
    /// Pause after a failed pull or lock, ms. Default 3,000
    /// [PULL_TIME_DELAY_MILLS_WHEN_EXCEPTION].
    pub pull_error_delay_ms: u64,
    /// Periodic rebalance, ms (membership changes also trigger one at
    /// once). Default 20,000 [rebalance interval].
    pub rebalance_interval_ms: u64,
    /// Reconsumes before a message goes to the dead-letter queue.
    /// Default 16 [maxReconsumeTimes].
    pub max_reconsume_times: u32,
    /// Orderly: local retry delay after SUSPEND_CURRENT_QUEUE_A_MOMENT, ms.
    /// Default 1,000 [suspendCurrentQueueTimeMillis].
    pub suspend_current_queue_ms: u64,
    /// Orderly: broker lock renewal period, ms. Default 20,000
    /// [REBALANCE_LOCK_INTERVAL].
    pub lock_renew_interval_ms: u64,
    /// Orderly: the client treats its lock as lost this long after the
    /// last renewal, ms. Default 30,000 [REBALANCE_LOCK_MAX_LIVE_TIME].
    pub client_lock_expiry_ms: u64,
    /// Orderly: hold the process-queue consume lock while consuming, so
    /// rebalancing waits for the batch. Default true. False shows the
    /// duplicates it prevents.
    pub process_queue_lock: bool,
    /// A message the broker would not take back is consumed again locally
    /// after this long, ms. Default 5,000.
    pub send_back_retry_ms: u64,
    /// Local (broadcasting) offsets are written this often, ms. Default
    /// 5,000 [persistConsumerOffsetInterval].
    pub persist_interval_ms: u64,
    /// Where broadcasting consumers keep their offsets. Default
    /// `<store dir>/clients`; the file is
    /// `<dir>/<client_id>/<group>/offsets.json`.
    pub local_offset_dir: Option<PathBuf>,
}

impl std::fmt::Debug for ConsumerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerConfig")
            .field("group", &self.group)
            .field("client_id", &self.client_id)
            .field("model", &self.model)
            .field("allocate", &self.allocate.name())
            .finish_non_exhaustive()
    }
}

impl ConsumerConfig {
    /// Defaults for a member of `group`.
    pub fn new(group: impl Into<String>) -> ConsumerConfig {
        ConsumerConfig {
            group: group.into(),
            client_id: format!("consumer-{}", CLIENT_SEQ.fetch_add(1, Ordering::Relaxed)),
            model: MessageModel::Clustering,
            from_where: ConsumeFromWhere::LastOffset,
            allocate: Arc::new(Averagely),
            consume_threads: 20,
            consume_batch_max: 1,
            pull_batch: 32,
            pull_suspend_ms: 15_000,
            pull_threshold_per_queue: 1_000,
            pull_interval_ms: 0,
            flow_control_delay_ms: 50,
            pull_error_delay_ms: 3_000,
            rebalance_interval_ms: 20_000,
            max_reconsume_times: 16,
            suspend_current_queue_ms: 1_000,
            lock_renew_interval_ms: 20_000,
            client_lock_expiry_ms: 30_000,
            process_queue_lock: true,
            send_back_retry_ms: 5_000,
            persist_interval_ms: 5_000,
            local_offset_dir: None,
        }
    }

    /// Checks every value once.
    pub fn sanitize(&self) -> Result<()> {
        if self.group.is_empty() || self.client_id.is_empty() {
            return Err(Error::Config(
                "consumer group and client id must not be empty".into(),
            ));
        }
        mqlab_engine::topic::validate(&mqlab_broker::retry_topic(&self.group))
            .map_err(Error::Config)?;
        if self.consume_threads == 0 || self.consume_batch_max == 0 || self.pull_batch == 0 {
            return Err(Error::Config(
                "consume_threads, consume_batch_max and pull_batch must be > 0".into(),
            ));
        }
        if self.rebalance_interval_ms == 0
            || self.lock_renew_interval_ms == 0
            || self.persist_interval_ms == 0
        {
            return Err(Error::Config(
                "rebalance, lock renewal and persist intervals must be > 0".into(),
            ));
        }
        Ok(())
    }
}

/// Counters of a consumer.
#[derive(Debug, Default)]
pub struct ConsumerStats {
    /// Messages handed to the listener (a batch counts its messages).
    pub consumed: AtomicU64,
    /// Messages the listener asked to retry (RECONSUME_LATER or SUSPEND).
    pub reconsume_later: AtomicU64,
    /// Messages sent back to the broker for a retry or the DLQ.
    pub sent_back: AtomicU64,
    /// Pulls issued.
    pub pulls: AtomicU64,
    /// Times a queue's pulling paused for flow control.
    pub flow_control: AtomicU64,
    /// Rebalances run.
    pub rebalances: AtomicU64,
}

/// A message from a retry topic shows its original topic to listeners.
pub(crate) fn reset_retry_topic(msg: &mut StoredMessage, group: &str) {
    if msg.topic.starts_with(RETRY_PREFIX) && msg.topic[RETRY_PREFIX.len()..] == *group {
        if let Some(t) = msg.properties.get(PROPERTY_RETRY_TOPIC) {
            msg.topic = t.clone();
        }
    }
}

/// A consumer's channel: NOTIFY_CONSUMER_IDS_CHANGED asks it to rebalance.
struct RebalanceChannel<F>(F);

impl<F: Fn() + Send + Sync> ClientChannel for RebalanceChannel<F> {
    fn notify_consumer_ids_changed(&self, _group: &str) {
        (self.0)()
    }
}

/// Joins `cfg.group` with `subs` (HEARTBEAT); `rebalance` runs whenever the
/// group's members change, this join included.
pub(crate) fn join_group<'a>(
    broker: &dyn BrokerApi,
    cfg: &ConsumerConfig,
    subs: impl IntoIterator<Item = &'a Arc<Subscription>>,
    rebalance: impl Fn() + Send + Sync + 'static,
) -> Result<()> {
    broker.heartbeat(
        &HeartbeatRequest {
            client_id: cfg.client_id.clone(),
            producer_groups: Vec::new(),
            consumers: vec![ConsumerData {
                group: cfg.group.clone(),
                subscriptions: subs.into_iter().map(|s| (**s).clone()).collect(),
            }],
        },
        Arc::new(RebalanceChannel(rebalance)),
    )
}

/// Leaves `cfg.group` (UNREGISTER_CLIENT); the other members rebalance.
pub(crate) fn leave_group(broker: &dyn BrokerApi, cfg: &ConsumerConfig) {
    broker.unregister_client(&UnregisterClientRequest {
        client_id: cfg.client_id.clone(),
        producer_group: None,
        consumer_group: Some(cfg.group.clone()),
    });
}

/// Gives a consumed message back for a retry (CONSUMER_SEND_MSG_BACK).
pub(crate) fn send_back(
    broker: &dyn BrokerApi,
    cfg: &ConsumerConfig,
    msg: &StoredMessage,
) -> PutResult {
    broker.consumer_send_msg_back(&ConsumerSendMsgBackRequest {
        group: cfg.group.clone(),
        msg: msg.clone(),
        max_reconsume_times: cfg.max_reconsume_times,
    })
}

/// The (LOCK|UNLOCK)_BATCH_MQ request of this consumer for `mqs`.
pub(crate) fn lock_request(cfg: &ConsumerConfig, mqs: &[MessageQueue]) -> LockBatchRequest {
    LockBatchRequest {
        group: cfg.group.clone(),
        client_id: cfg.client_id.clone(),
        mqs: mqs.to_vec(),
    }
}

/// Where a consumer keeps its offsets: the broker for clustering, a
/// local file per client for broadcasting (as RocketMQ's clients do).
pub(crate) fn offset_store_for(
    broker: &Arc<dyn BrokerApi>,
    cfg: &ConsumerConfig,
) -> Result<Arc<dyn offset_store::OffsetStore>> {
    use offset_store::{LocalFileOffsetStore, RemoteOffsetStore};
    Ok(match cfg.model {
        MessageModel::Clustering => Arc::new(RemoteOffsetStore::new(broker.clone(), &cfg.group)),
        MessageModel::Broadcasting => Arc::new(LocalFileOffsetStore::load(
            broker.as_ref(),
            cfg.local_offset_dir.as_deref(),
            &cfg.client_id,
            &cfg.group,
        )?),
    })
}
