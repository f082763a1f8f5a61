//! Producers: sync send with retries on another queue, async send with a
//! callback, one-way send, and sends through a [`QueueSelector`] (a
//! sharding key's hash for ordered messages).
//!
//! A producer reaches the broker through a [`BrokerApi`] (in-process: the
//! broker itself; a network front later), so tests can put a flaky one in
//! between. Every message gets a `UNIQ_KEY` (its message id) before the
//! first attempt, so retries of one send carry the same id and consumers
//! can count duplicates.
//!
//! Retries (RocketMQ's DefaultMQProducer): a send that fails with
//! SERVICE_NOT_AVAILABLE (nothing was written) is retried up to
//! `retry_times_when_send_failed` times, each on another queue than the
//! one that failed. Other statuses are returned as they are unless
//! `retry_another_queue_when_not_store_ok` is set (FLUSH_DISK_TIMEOUT,
//! and a sync master's FLUSH_SLAVE_TIMEOUT and SLAVE_NOT_AVAILABLE, leave
//! the message written, so retrying it makes a duplicate).
//! Selector sends are not retried on another queue: that would break the
//! key's order.

pub mod selector;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use mqlab_broker::types::MessageQueue;
use mqlab_engine::message::{AppendOffsets, Message, PutResult, PutStatus, PROPERTY_UNIQ_KEY};

use crate::api::BrokerApi;

pub use selector::{HashKey, QueueSelector, RoundRobin};

/// Producer settings (RocketMQ's names in brackets).
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// Producer group. Default `DEFAULT_PRODUCER`.
    pub group: String,
    /// Client id. Default `producer-<n>`.
    pub client_id: String,
    /// Extra attempts of a failed sync send, each on another queue.
    /// Default 2 [retryTimesWhenSendFailed].
    pub retry_times_when_send_failed: u32,
    /// Extra attempts of a failed async send. Default 2
    /// [retryTimesWhenSendAsyncFailed].
    pub retry_times_when_send_async_failed: u32,
    /// Also retry statuses that left the message written
    /// (FLUSH_DISK_TIMEOUT). Default false [retryAnotherBrokerWhenNotStoreOK].
    pub retry_another_queue_when_not_store_ok: bool,
    /// Threads running async and one-way sends. Default 4.
    pub async_threads: usize,
    /// Async and one-way sends queued at most; more block the caller.
    /// Default 50,000.
    pub async_queue_capacity: usize,
}

static CLIENT_SEQ: AtomicU64 = AtomicU64::new(0);

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            group: "DEFAULT_PRODUCER".into(),
            client_id: format!("producer-{}", CLIENT_SEQ.fetch_add(1, Ordering::Relaxed)),
            retry_times_when_send_failed: 2,
            retry_times_when_send_async_failed: 2,
            retry_another_queue_when_not_store_ok: false,
            async_threads: 4,
            async_queue_capacity: 50_000,
        }
    }
}

/// Outcome of a send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendResult {
    /// Status of the last attempt.
    pub status: PutStatus,
    /// Why, when not PUT_OK.
    pub detail: Option<String>,
    /// Queue of the last attempt.
    pub mq: Option<MessageQueue>,
    /// The message id (its UNIQ_KEY).
    pub msg_id: String,
    /// Where it landed, when written.
    pub offsets: Option<AppendOffsets>,
    /// Attempts made (1 = no retry).
    pub attempts: u32,
}

impl SendResult {
    /// True for PUT_OK.
    pub fn is_ok(&self) -> bool {
        self.status == PutStatus::PutOk
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// A producer.
pub struct Producer {
    transport: Arc<dyn BrokerApi>,
    cfg: ProducerConfig,
    round_robin: RoundRobin,
    seq: AtomicU64,
    id_prefix: String,
    jobs: Mutex<Option<SyncSender<Job>>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("group", &self.cfg.group)
            .field("client_id", &self.cfg.client_id)
            .finish()
    }
}

fn worker(rx: Arc<Mutex<Receiver<Job>>>) {
    loop {
        let job = {
            let rx = rx.lock().unwrap_or_else(|e| e.into_inner());
            rx.recv()
        };
        match job {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}

impl Producer {
    /// A producer over `transport` (usually the broker), with its async
    /// threads started.
    pub fn new(transport: Arc<dyn BrokerApi>, cfg: ProducerConfig) -> Arc<Producer> {
        let (tx, rx) = sync_channel::<Job>(cfg.async_queue_capacity.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let workers = (0..cfg.async_threads.max(1))
            .map(|i| {
                let rx = rx.clone();
                std::thread::Builder::new()
                    .name(format!("mqlab-producer-async-{i}"))
                    .spawn(move || worker(rx))
                    .expect("spawn producer thread")
            })
            .collect();
        let id_prefix = format!(
            "{:08X}{:08X}",
            std::process::id(),
            mqlab_engine::queue::java_hash(&cfg.client_id) as u32
        );
        Arc::new(Producer {
            transport,
            round_robin: RoundRobin::default(),
            seq: AtomicU64::new(0),
            id_prefix,
            cfg,
            jobs: Mutex::new(Some(tx)),
            workers: Mutex::new(workers),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ProducerConfig {
        &self.cfg
    }

    /// The broker it sends to.
    pub fn broker(&self) -> &Arc<dyn BrokerApi> {
        &self.transport
    }

    /// Gives `msg` its id and born time when it has none; returns the id.
    pub fn stamp(&self, msg: &mut Message) -> String {
        if msg.born_timestamp_ms == 0 {
            msg.born_timestamp_ms = self.transport.clock().now_ms();
        }
        msg.properties
            .entry(PROPERTY_UNIQ_KEY.to_string())
            .or_insert_with(|| {
                format!(
                    "{}{:016X}",
                    self.id_prefix,
                    self.seq.fetch_add(1, Ordering::Relaxed)
                )
            })
            .clone()
    }

    fn retryable(&self, status: PutStatus) -> bool {
        match status {
            PutStatus::PutOk | PutStatus::MessageIllegal => false,
            PutStatus::ServiceNotAvailable => true,
            _ => self.cfg.retry_another_queue_when_not_store_ok,
        }
    }

    fn send_with_retries(&self, mut msg: Message, retries: u32) -> SendResult {
        let msg_id = self.stamp(&mut msg);
        let queues = match self.transport.get_route_info(&msg.topic) {
            Ok(q) if !q.is_empty() => q,
            Ok(_) => return failed(msg_id, "topic has no queues".into(), 0),
            Err(e) => return failed(msg_id, e.to_string(), 0),
        };
        let mut last_failed: Option<usize> = None;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let mut idx = self.round_robin.select(&queues, &msg, "");
            if Some(idx) == last_failed && queues.len() > 1 {
                idx = self.round_robin.select(&queues, &msg, "");
            }
            let mq = queues[idx].clone();
            msg.queue_id = mq.queue_id;
            let r = self.transport.send_message(&msg);
            if r.is_ok() || !self.retryable(r.status) || attempts > retries {
                return result(r, mq, msg_id, attempts);
            }
            last_failed = Some(idx);
        }
    }

    /// Sync send: round robin over the topic's queues; a failed attempt is
    /// retried on another queue (see the module doc).
    pub fn send(&self, msg: Message) -> SendResult {
        self.send_with_retries(msg, self.cfg.retry_times_when_send_failed)
    }

    /// Sync send to the queue `selector` picks for `key`; no retry on
    /// another queue.
    pub fn send_with_selector(
        &self,
        mut msg: Message,
        selector: &dyn QueueSelector,
        key: &str,
    ) -> SendResult {
        let msg_id = self.stamp(&mut msg);
        let queues = match self.transport.get_route_info(&msg.topic) {
            Ok(q) if !q.is_empty() => q,
            Ok(_) => return failed(msg_id, "topic has no queues".into(), 0),
            Err(e) => return failed(msg_id, e.to_string(), 0),
        };
        let mq = queues[selector.select(&queues, &msg, key) % queues.len()].clone();
        msg.queue_id = mq.queue_id;
        let r = self.transport.send_message(&msg);
        result(r, mq, msg_id, 1)
    }

    fn submit(&self, job: Job) -> std::result::Result<(), Job> {
        let tx = self.jobs.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match tx {
            Some(tx) => tx.send(job).map_err(|e| e.0),
            None => Err(job),
        }
    }

    /// Async send: returns at once; `callback` gets the result on a
    /// producer thread (after up to `retry_times_when_send_async_failed`
    /// retries). After shutdown the callback runs at once with
    /// SERVICE_NOT_AVAILABLE.
    pub fn send_async(
        self: &Arc<Self>,
        msg: Message,
        callback: impl FnOnce(SendResult) + Send + 'static,
    ) {
        if self
            .jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none()
        {
            callback(failed(String::new(), "producer is shut down".into(), 0));
            return;
        }
        let me = self.clone();
        let job: Job = Box::new(move || {
            let r = me.send_with_retries(msg, me.cfg.retry_times_when_send_async_failed);
            callback(r);
        });
        // Fails only when shut down in between; the job is dropped then.
        let _ = self.submit(job);
    }

    /// One-way send: hands the message to a producer thread and returns;
    /// one attempt, the result is dropped.
    pub fn send_oneway(self: &Arc<Self>, msg: Message) {
        let me = self.clone();
        let _ = self.submit(Box::new(move || {
            let _ = me.send_with_retries(msg, 0);
        }));
    }

    /// Stops accepting async sends and waits for the queued ones.
    pub fn shutdown(&self) {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner()).take();
        let workers: Vec<_> = self
            .workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        for w in workers {
            let _ = w.join();
        }
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

fn failed(msg_id: String, why: String, attempts: u32) -> SendResult {
    SendResult {
        status: PutStatus::ServiceNotAvailable,
        detail: Some(why),
        mq: None,
        msg_id,
        offsets: None,
        attempts,
    }
}

fn result(r: PutResult, mq: MessageQueue, msg_id: String, attempts: u32) -> SendResult {
    SendResult {
        status: r.status,
        detail: r.detail,
        mq: Some(mq),
        msg_id,
        offsets: r.offsets,
        attempts,
    }
}
