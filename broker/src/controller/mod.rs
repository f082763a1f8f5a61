//! The controller (issue 14 part 2; RocketMQ 5's controller mode): a small
//! replicated service that decides which broker of each group is master.
//!
//! It holds per broker group the registered replicas, the master's broker
//! id and address, the master epoch and the in-sync replica set
//! (SyncStateSet) ([`state`]), replicated among 1 or 3 controllers with
//! tikv's `raft` crate ([`raft_node`]). Brokers in controller mode
//! register (CONTROLLER_REGISTER_BROKER), heartbeat every controller
//! (BROKER_HEARTBEAT, every second), learn their role
//! (CONTROLLER_GET_REPLICA_INFO) and, as master, report their in-sync set
//! (CONTROLLER_ALTER_SYNC_STATE_SET); the leader elects a new master among
//! the alive members of the in-sync set when the master's heartbeats stop
//! ([`server`]). The bytes are in `protocol/PROTOCOL.md`, "Controller";
//! the broker's side is [`crate::ha::replicas`].

pub mod client;
pub mod raft_node;
pub mod rpc;
pub mod server;
pub mod state;
pub mod wal;

pub use client::{BrokerIdentity, ControllerClient};
pub use rpc::{Heartbeat, ReplicaView, SyncStateSetBody};
pub use server::{Controller, ControllerConfig, DEFAULT_HEARTBEAT_TIMEOUT_MS};
pub use state::{Candidate, Command, Group, Outcome, Replica, ReplicaState};

/// Request and response codes: RocketMQ 5's `RequestCode` /
/// `ResponseCode` numbers, plus mqlab's peer message.
pub mod codes {
    pub use mqlab_protocol::codes::response::{REQUEST_CODE_NOT_SUPPORTED, SUCCESS, SYSTEM_ERROR};

    /// A broker's liveness report (RocketMQ's BROKER_HEARTBEAT).
    pub const BROKER_HEARTBEAT: i32 = 904;
    /// A master's new in-sync set.
    pub const CONTROLLER_ALTER_SYNC_STATE_SET: i32 = 1001;
    /// Elect a master now (an operator's request).
    pub const CONTROLLER_ELECT_MASTER: i32 = 1002;
    /// A broker joins its group.
    pub const CONTROLLER_REGISTER_BROKER: i32 = 1003;
    /// A group's master, epoch and in-sync set.
    pub const CONTROLLER_GET_REPLICA_INFO: i32 = 1004;
    /// mqlab's: one Raft message between controllers (one-way; body: the
    /// raft-rs `eraftpb.Message` protobuf encoding). RocketMQ's DLedger
    /// and JRaft use their own ports and protocols.
    pub const CONTROLLER_RAFT_MESSAGE: i32 = 1090;

    /// The sender is not the master at that epoch.
    pub const CONTROLLER_FENCED_MASTER_EPOCH: i32 = 2000;
    /// The sender's SyncStateSet epoch is stale.
    pub const CONTROLLER_FENCED_SYNC_STATE_SET_EPOCH: i32 = 2001;
    /// A named replica is not registered or not alive.
    pub const CONTROLLER_INVALID_REPLICAS: i32 = 2003;
    /// No broker could be elected.
    pub const CONTROLLER_MASTER_NOT_AVAILABLE: i32 = 2004;
    /// A malformed request.
    pub const CONTROLLER_INVALID_REQUEST: i32 = 2005;
    /// Only the leader answers this; `leaderAddress` names it if known.
    pub const CONTROLLER_NOT_LEADER: i32 = 2007;
    /// The group is unknown.
    pub const CONTROLLER_BROKER_METADATA_NOT_EXIST: i32 = 2008;
    /// The master is alive: no election.
    pub const CONTROLLER_MASTER_STILL_EXIST: i32 = 2011;
    /// Broker id 0 (or otherwise unusable).
    pub const CONTROLLER_BROKER_ID_INVALID: i32 = 2014;
}
