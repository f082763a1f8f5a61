//! The transactional producer (RocketMQ's TransactionMQProducer): sends a
//! half message, runs the local transaction, ends it; the broker side of
//! the two-phase scheme is `mqlab_broker::txn`.
//!
//! Check-backs: the producer hands the broker a [`ClientChannel`] in its
//! heartbeat. When the broker's check service finds a half message whose
//! end never arrived, it sends CHECK_TRANSACTION_STATE on that channel;
//! the channel only queues the request (bounded; a full queue drops it and
//! the next round asks again), and the producer's check-back thread asks
//! the [`TransactionListener`] and answers with END_TRANSACTION
//! (`from_transaction_check`).

use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use mqlab_broker::txn::{PROPERTY_PRODUCER_GROUP, PROPERTY_TRANSACTION_PREPARED};
use mqlab_broker::types::{
    CheckTransactionStateRequest, EndTransactionRequest, HeartbeatRequest, LocalTransactionState,
    UnregisterClientRequest,
};
use mqlab_broker::ClientChannel;
use mqlab_engine::message::{Message, PutStatus, StoredMessage};

use crate::api::BrokerApi;
use crate::producer::{Producer, ProducerConfig, QueueSelector, RoundRobin, SendResult};

/// The producer's side of a transaction.
pub trait TransactionListener: Send + Sync {
    /// Runs the local transaction after the half message is stored.
    fn execute_local(&self, msg: &Message) -> LocalTransactionState;
    /// Answers a check of a half message whose end never arrived.
    fn check_local(&self, msg: &StoredMessage) -> LocalTransactionState;
}

/// Outcome of a transactional send.
#[derive(Debug, Clone)]
pub struct TransactionSendResult {
    /// The half message's send.
    pub send: SendResult,
    /// What the local transaction returned (ROLLBACK when the half message
    /// was not stored, and the local transaction did not run).
    pub state: LocalTransactionState,
}

/// The producer's channel: queues the broker's check-backs for the
/// check-back thread.
struct CheckChannel {
    tx: Mutex<Option<SyncSender<CheckTransactionStateRequest>>>,
}

impl ClientChannel for CheckChannel {
    fn check_transaction_state(&self, req: CheckTransactionStateRequest) {
        if let Some(tx) = self.tx.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            // Full queue: drop the check; the next round asks again.
            let _ = tx.try_send(req);
        }
    }
}

/// A producer of transactional messages: sends half messages, runs the
/// local transaction, ends it, and answers the broker's check-backs on its
/// own thread.
pub struct TransactionProducer {
    producer: Arc<Producer>,
    broker: Arc<dyn BrokerApi>,
    listener: Arc<dyn TransactionListener>,
    round_robin: RoundRobin,
    channel: Arc<CheckChannel>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for TransactionProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransactionProducer")
            .field("producer", &self.producer)
            .finish()
    }
}

impl TransactionProducer {
    /// Starts a transactional producer of `cfg.group` and registers it for
    /// check-backs (a heartbeat with its producer group).
    pub fn start(
        broker: Arc<dyn BrokerApi>,
        cfg: ProducerConfig,
        listener: Arc<dyn TransactionListener>,
    ) -> Arc<TransactionProducer> {
        let producer = Producer::new(broker.clone(), cfg.clone());
        let (tx, rx) = sync_channel::<CheckTransactionStateRequest>(2_000);
        let b = broker.clone();
        let l = listener.clone();
        let worker = std::thread::Builder::new()
            .name("mqlab-txn-check-back".into())
            .spawn(move || {
                while let Ok(req) = rx.recv() {
                    let state = l.check_local(&req.msg);
                    // A half message gone (retention) needs no answer.
                    let _ = b.end_transaction(&EndTransactionRequest {
                        producer_group: req.producer_group,
                        commit_log_offset: req.msg.phys_offset,
                        state,
                        from_transaction_check: true,
                    });
                }
            })
            .expect("spawn check-back thread");
        let channel = Arc::new(CheckChannel {
            tx: Mutex::new(Some(tx)),
        });
        let tp = Arc::new(TransactionProducer {
            producer,
            broker: broker.clone(),
            listener,
            round_robin: RoundRobin::default(),
            channel: channel.clone(),
            worker: Mutex::new(Some(worker)),
        });
        // Producer groups are plain names; the heartbeat cannot fail on
        // them.
        let _ = broker.heartbeat(
            &HeartbeatRequest {
                client_id: cfg.client_id.clone(),
                producer_groups: vec![cfg.group.clone()],
                consumers: Vec::new(),
            },
            channel,
        );
        tp
    }

    /// The plain producer underneath (for ordinary sends).
    pub fn producer(&self) -> &Arc<Producer> {
        &self.producer
    }

    /// Sends `msg` in a transaction: half message, local transaction, end.
    pub fn send_in_transaction(&self, mut msg: Message) -> TransactionSendResult {
        let group = self.producer.config().group.clone();
        let msg_id = self.producer.stamp(&mut msg);
        let queues = match self.broker.get_route_info(&msg.topic) {
            Ok(q) if !q.is_empty() => q,
            other => {
                return TransactionSendResult {
                    send: SendResult {
                        status: PutStatus::ServiceNotAvailable,
                        detail: Some(match other {
                            Err(e) => e.to_string(),
                            Ok(_) => "topic has no queues".into(),
                        }),
                        mq: None,
                        msg_id,
                        offsets: None,
                        attempts: 1,
                    },
                    state: LocalTransactionState::RollbackMessage,
                }
            }
        };
        let mq = queues[self.round_robin.select(&queues, &msg, "")].clone();
        msg.queue_id = mq.queue_id;
        msg.properties
            .insert(PROPERTY_TRANSACTION_PREPARED.into(), "true".into());
        msg.properties
            .insert(PROPERTY_PRODUCER_GROUP.into(), group.clone());
        let r = self.broker.send_message(&msg);
        let send = SendResult {
            status: r.status,
            detail: r.detail.clone(),
            mq: Some(mq),
            msg_id,
            offsets: r.offsets,
            attempts: 1,
        };
        let Some(half) = r.offsets.filter(|_| r.is_ok()) else {
            return TransactionSendResult {
                send,
                state: LocalTransactionState::RollbackMessage,
            };
        };
        let state = self.listener.execute_local(&msg);
        // An end that fails is resolved by the check service later.
        let _ = self.broker.end_transaction(&EndTransactionRequest {
            producer_group: group,
            commit_log_offset: half.phys_offset,
            state,
            from_transaction_check: false,
        });
        TransactionSendResult { send, state }
    }

    fn leave(&self) {
        let cfg = self.producer.config();
        self.broker.unregister_client(&UnregisterClientRequest {
            client_id: cfg.client_id.clone(),
            producer_group: Some(cfg.group.clone()),
            consumer_group: None,
        });
        self.channel
            .tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }

    /// Unregisters from check-backs and stops the check-back thread.
    pub fn shutdown(&self) {
        self.leave();
        self.producer.shutdown();
        // The channel's sender is gone (above), so the thread ends once the
        // queue drains.
        if let Some(w) = self.worker.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = w.join();
        }
    }
}

impl Drop for TransactionProducer {
    fn drop(&mut self) {
        // Without shutdown: still leave the broker's registry and close the
        // channel, so the check-back thread (which holds the broker) ends.
        self.leave();
    }
}
