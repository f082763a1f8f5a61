//! The name server's state: which brokers are alive and which topics they
//! serve, as RocketMQ's `RouteInfoManager` keeps it. Brokers register
//! (REGISTER_BROKER) every 30 s and unregister at shutdown; a broker not
//! heard from for [`BROKER_EXPIRED_MS`] is dropped with its routes.
//! Clients ask for a topic's route (GET_ROUTEINFO_BY_TOPIC) and get the
//! queues of every broker group that serves it with the addresses of
//! each group's master (id 0) and slaves (ids 1..).
//!
//! [`RouteTable`] is the state, with no I/O; [`NameServer`] serves it on
//! TCP through the remoting server.

mod routes;
mod server;

pub use routes::{Registration, RouteTable, BROKER_EXPIRED_MS};
pub use server::NameServer;
