//! Bodies: JSON route data (name server) and heartbeats (clients), and
//! the binary message list of a batch send.

pub mod batch;
pub mod heartbeat;
pub mod register;
pub mod route;
