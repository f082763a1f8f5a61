//! mqlab-client: RocketMQ-style clients. Producers (round robin and
//! sharding-key selectors, retries on another queue, async and one-way
//! sends), the transactional producer, push consumers (concurrent and
//! orderly, long polling, flow control, retries) and pull consumers,
//! queue allocation strategies and process queues.
//!
//! A client reaches a broker only through [`BrokerApi`], one method per
//! request a RocketMQ client sends; the broker reaches the client only
//! through the `mqlab_broker::ClientChannel` it is handed at heartbeat
//! (transaction check-backs, membership changes). [`local`] implements
//! `BrokerApi` for an in-process `mqlab_broker::Broker`, [`tcp`] over
//! RocketMQ's remoting protocol (the broker's requests arrive as pushes on
//! the connection the heartbeats go over). Over several broker groups,
//! routed by a name server, [`tcp::routed`] has a producer that sends to
//! masters only and fails over to another group, and a pull consumer that
//! follows the brokers' `suggestWhichBrokerId` and reads a group's slave
//! while its master is gone. Dependencies point one way:
//! this crate on `mqlab-broker` (the shared request types and the local
//! implementation) on `mqlab-engine`.
//!
//! Where mqlab differs from RocketMQ on purpose:
//! - clustering consumers commit offsets to the broker after every batch
//!   (RocketMQ's client caches them and sends them every 5 s);
//! - ordered consumption: a rebalance marks a queue dropped only after it
//!   holds the queue's consume lock, so the batch in flight commits first
//!   (RocketMQ 4.x marks it dropped before taking the lock);
//! - one call per request, no batching of heartbeats: a consumer sends one
//!   heartbeat when it starts (RocketMQ every 30 s) and leaves with
//!   UNREGISTER_CLIENT; membership follows that, not a channel timeout
//!   (over TCP the transport repeats each heartbeat every 30 s, to keep
//!   and re-open the connection the broker's requests come on);
//! - the pull consumer polls its queues without holding a pull (RocketMQ's
//!   lite pull consumer runs a long-polling pull task per queue), looking
//!   again every millisecond until its timeout.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod api;
pub mod consumer;
pub mod error;
pub mod local;
pub mod producer;
pub mod tcp;
pub mod transaction;

pub use api::{BrokerApi, LocalFiles};
pub use error::{Error, Result};
