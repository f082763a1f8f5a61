//! JSON bodies: route data (name server) and heartbeats (clients).

pub mod heartbeat;
pub mod register;
pub mod route;
