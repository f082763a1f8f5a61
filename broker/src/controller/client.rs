//! A broker's side of the controller RPC: requests that need the leader
//! go to the last known leader first, then to every controller in turn,
//! following a CONTROLLER_NOT_LEADER answer's `leaderAddress`;
//! heartbeats go to every controller (each keeps its own table).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use mqlab_protocol::RemotingCommand;

use super::codes;
use super::rpc::{Heartbeat, ReplicaView, SyncStateSetBody};
use crate::remoting::call;

/// How long one controller request may take.
const CALL_TIMEOUT: Duration = Duration::from_millis(1_500);

/// Talks to a set of controllers.
#[derive(Debug)]
pub struct ControllerClient {
    addrs: Vec<SocketAddr>,
    leader: Mutex<Option<SocketAddr>>,
    opaque: AtomicI32,
}

/// What a broker registers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerIdentity {
    /// Cluster name.
    pub cluster: String,
    /// Broker group.
    pub group: String,
    /// Broker id (>= 1).
    pub id: u64,
    /// Remoting address.
    pub addr: SocketAddr,
    /// HA address.
    pub ha_addr: SocketAddr,
}

impl ControllerClient {
    /// A client of `addrs`.
    pub fn new(addrs: Vec<SocketAddr>) -> ControllerClient {
        ControllerClient {
            addrs,
            leader: Mutex::new(None),
            opaque: AtomicI32::new(1),
        }
    }

    /// The controllers.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    fn opaque(&self) -> i32 {
        self.opaque.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends `req` to the leader; the first answer that is not
    /// CONTROLLER_NOT_LEADER.
    pub fn leader_call(&self, mut req: RemotingCommand) -> Result<RemotingCommand, String> {
        let mut order: Vec<SocketAddr> = Vec::new();
        if let Some(l) = *self.leader.lock().unwrap_or_else(|e| e.into_inner()) {
            order.push(l);
        }
        order.extend(self.addrs.iter().copied());
        let mut errors = Vec::new();
        let mut i = 0;
        while i < order.len() && i < 2 * self.addrs.len() + 2 {
            let at = order[i];
            i += 1;
            req.opaque = self.opaque();
            match call(at, &req, CALL_TIMEOUT) {
                Ok(r) if r.code == codes::CONTROLLER_NOT_LEADER => {
                    if let Some(l) = r
                        .ext_fields
                        .get("leaderAddress")
                        .and_then(|a| a.parse::<SocketAddr>().ok())
                    {
                        if l != at {
                            order.insert(i, l);
                        }
                    }
                    errors.push(format!("{at}: not the leader"));
                }
                Ok(r) => {
                    *self.leader.lock().unwrap_or_else(|e| e.into_inner()) = Some(at);
                    return Ok(r);
                }
                Err(e) => errors.push(format!("{at}: {e}")),
            }
        }
        *self.leader.lock().unwrap_or_else(|e| e.into_inner()) = None;
        Err(format!(
            "no controller leader answered ({})",
            errors.join("; ")
        ))
    }

    /// CONTROLLER_REGISTER_BROKER; the group as the controller has it
    /// after the registration.
    pub fn register(&self, me: &BrokerIdentity) -> Result<ReplicaView, String> {
        let req = RemotingCommand::request(codes::CONTROLLER_REGISTER_BROKER, 0)
            .with_field("clusterName", &me.cluster)
            .with_field("brokerName", &me.group)
            .with_field("brokerId", me.id)
            .with_field("brokerAddress", me.addr)
            .with_field("haAddress", me.ha_addr);
        view(self.leader_call(req)?)
    }

    /// CONTROLLER_GET_REPLICA_INFO for `group`.
    pub fn replica_info(&self, group: &str) -> Result<ReplicaView, String> {
        let req = RemotingCommand::request(codes::CONTROLLER_GET_REPLICA_INFO, 0)
            .with_field("brokerName", group);
        view(self.leader_call(req)?)
    }

    /// CONTROLLER_ALTER_SYNC_STATE_SET from master `master` at `epoch`.
    pub fn alter_sync_state_set(
        &self,
        group: &str,
        master: u64,
        epoch: u32,
        set: SyncStateSetBody,
    ) -> Result<ReplicaView, String> {
        let req = RemotingCommand::request(codes::CONTROLLER_ALTER_SYNC_STATE_SET, 0)
            .with_field("brokerName", group)
            .with_field("masterBrokerId", master)
            .with_field("masterEpoch", epoch)
            .with_body(serde_json::to_vec(&set).unwrap_or_default());
        view(self.leader_call(req)?)
    }

    /// CONTROLLER_ELECT_MASTER for `group` (an operator's request;
    /// `designated` names the broker to elect).
    pub fn elect_master(
        &self,
        group: &str,
        designated: Option<u64>,
    ) -> Result<ReplicaView, String> {
        let mut req = RemotingCommand::request(codes::CONTROLLER_ELECT_MASTER, 0)
            .with_field("brokerName", group)
            .with_field("designateElect", designated.is_some());
        if let Some(id) = designated {
            req = req.with_field("brokerId", id);
        }
        view(self.leader_call(req)?)
    }

    /// BROKER_HEARTBEAT to every controller; how many answered SUCCESS.
    pub fn heartbeat(&self, hb: &Heartbeat) -> usize {
        self.addrs
            .iter()
            .filter(|a| {
                matches!(
                    call(**a, &hb.request(self.opaque()), CALL_TIMEOUT),
                    Ok(r) if r.code == codes::SUCCESS
                )
            })
            .count()
    }
}

/// The view in a SUCCESS answer; anything else is an error naming the
/// code and remark.
fn view(r: RemotingCommand) -> Result<ReplicaView, String> {
    if r.code != codes::SUCCESS {
        return Err(format!(
            "controller answered code {}: {}",
            r.code,
            r.remark.unwrap_or_default()
        ));
    }
    ReplicaView::read(&r)
}
