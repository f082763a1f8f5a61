//! mqlab-broker: the broker core on top of the `mqlab-engine` store, what
//! RocketMQ's broker adds to its store so that producers and consumer
//! groups can use it. It knows nothing of clients but the requests they
//! send ([`types`]) and the [`ClientChannel`] it answers them through;
//! `mqlab-client` reaches it through its `BrokerApi` trait, in-process
//! today, over the wire later.
//!
//! Crate layering (no module imports one that imports it back):
//! `error`, `types`, `filter`, `config`, `delayed`, `lock`, `offsets`,
//! `topics`, `clients` depend on the engine only (and `types` on `filter`); `txn`
//! on those; `broker` on all of them.
//!
//! What the broker does:
//!
//! - a topic table (queues per topic, auto-created on first send,
//!   persisted to `config/topics.json`);
//! - pulls with tag filtering by the consume queue's tags hash, and long
//!   polling: a pull with nothing to return is held up to its suspend time
//!   and answered as soon as the dispatcher builds a unit for that queue;
//! - group offsets ([`offsets::ConsumerOffsets`], `config/consumerOffset.json`,
//!   flushed every `offset_flush_interval_ms` and at shutdown);
//! - the group membership that triggers rebalances, and the (group, queue)
//!   locks of ordered consumption ([`lock::LockManager`]);
//! - retries: a message a consumer gives back goes to `%RETRY%{group}` with
//!   delay level 3 + its reconsume count, or to `%DLQ%{group}` once it has
//!   been reconsumed `max_reconsume` times;
//! - transactions (half messages, commit/rollback, the check service), in
//!   [`txn`]: the check-back is a CHECK_TRANSACTION_STATE request sent to a
//!   producer's [`ClientChannel`], answered by END_TRANSACTION;
//! - backlog (lag) per (group, queue).
//!
//! Threads: the offset flusher and the transaction check service, plain
//! periodic threads, and the delay levels scheduler's. Dropping a broker
//! without [`Broker::shutdown`] stops them without persisting anything (a
//! crash).
//!
//! Where mqlab differs from RocketMQ on purpose:
//! - clustering consumers commit offsets to the broker after every batch
//!   (RocketMQ's client caches them and sends them every 5 s); what the
//!   broker has not flushed to `config/consumerOffset.json` is what a crash
//!   re-delivers;
//! - a held pull wakes on the dispatcher's signal for every round (RocketMQ:
//!   the dispatcher's arrival notification plus a 5 s re-check);
//! - ordered consumption: a rebalance marks a queue dropped only after it
//!   holds the queue's consume lock, so the batch in flight commits first
//!   (RocketMQ 4.x marks it dropped before taking the lock, and that
//!   batch's commit is skipped);
//! - transactions: a copy re-appended by a check is not checked again
//!   before it is `timeout_ms` old (see [`txn`]);
//! - retention (see `mqlab_engine::retention`): a segment's age comes from the
//!   store time of the next segment's first record, not the file's mtime,
//!   and the delete hour is UTC.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod acl;
mod broker;
pub mod clients;
pub mod config;
pub mod controller;
pub mod delayed;
pub mod error;
pub mod filter;
pub mod ha;
pub mod lock;
pub mod metrics;
pub mod namesrv;
pub mod node;
pub mod node_config;
pub mod offsets;
pub mod remoting;
/// Helpers for tests and the lab (not the broker's API).
#[doc(hidden)]
pub mod testkit;
mod topics;
pub mod txn;
pub mod types;

pub use broker::{Broker, BrokerCore, BrokerStats};
pub use clients::ClientChannel;
pub use config::{BrokerConfig, RetryDelay, TxnConfig};
pub use error::{Error, Result};
pub use filter::Subscription;
pub use types::*;
