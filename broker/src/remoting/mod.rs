//! The remoting server: RocketMQ's framed request/response protocol
//! (`mqlab-protocol`) on TCP, for the name server and (next) the broker.
//!
//! It runs on its own tokio runtime, so the engine's plain threads never
//! see async code. Every connection reads frames with the length cap
//! checked before anything is buffered; a frame that does not decode
//! closes that connection with a logged reason and touches nothing else.
//! Connections are capped, idle ones closed, and the listener binds
//! 127.0.0.1 unless told otherwise.

mod batch;
mod broker_handler;
mod call;
mod queries;
mod send;
mod server;
mod stats;

pub use broker_handler::{offset_msg_id, BrokerHandler, WireStats};
pub use call::call;
pub use server::{Conn, Handler, RemotingServer, Reply, ServerConfig};
pub use stats::{LatencyHistogram, LatencySnapshot, LATENCY_BOUNDS_US};
