//! The controller's requests and answers over remoting frames (bytes in
//! `protocol/PROTOCOL.md`, "Controller"), shared by the controller's
//! handler and the brokers' client.

use std::collections::BTreeSet;

use mqlab_protocol::{ExtFields, RemotingCommand};
use serde::{Deserialize, Serialize};

use super::state::Group;

/// The SyncStateSet body (RocketMQ's `SyncStateSet` JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncStateSetBody {
    /// Broker ids in sync.
    pub sync_state_set: BTreeSet<u64>,
    /// The set's epoch.
    pub sync_state_set_epoch: u32,
}

/// A group's replication as a broker learns it (CONTROLLER_REGISTER_BROKER,
/// CONTROLLER_GET_REPLICA_INFO and CONTROLLER_ELECT_MASTER answers).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaView {
    /// The master's broker id, remoting address and HA address, if there
    /// is a master.
    pub master: Option<(u64, String, String)>,
    /// The master epoch.
    pub master_epoch: u32,
    /// The in-sync set.
    pub sync_state_set: BTreeSet<u64>,
    /// Its epoch.
    pub sync_state_set_epoch: u32,
}

impl ReplicaView {
    /// The view of `g`.
    pub fn of(g: &Group) -> ReplicaView {
        ReplicaView {
            master: g
                .master_replica()
                .map(|(id, r)| (id, r.addr.clone(), r.ha_addr.clone())),
            master_epoch: g.master_epoch,
            sync_state_set: g.sync_state_set.clone(),
            sync_state_set_epoch: g.sync_state_set_epoch,
        }
    }

    /// Writes the view into an answer: fields `masterBrokerId`,
    /// `masterAddress`, `masterHaAddress` (absent without a master),
    /// `masterEpoch`, `syncStateSetEpoch`; body: the SyncStateSet JSON.
    pub fn write(&self, mut resp: RemotingCommand) -> RemotingCommand {
        if let Some((id, addr, ha)) = &self.master {
            resp = resp
                .with_field("masterBrokerId", id)
                .with_field("masterAddress", addr)
                .with_field("masterHaAddress", ha);
        }
        let body = SyncStateSetBody {
            sync_state_set: self.sync_state_set.clone(),
            sync_state_set_epoch: self.sync_state_set_epoch,
        };
        resp.with_field("masterEpoch", self.master_epoch)
            .with_field("syncStateSetEpoch", self.sync_state_set_epoch)
            .with_body(serde_json::to_vec(&body).unwrap_or_default())
    }

    /// Reads a view written by [`ReplicaView::write`].
    pub fn read(resp: &RemotingCommand) -> Result<ReplicaView, String> {
        let f = &resp.ext_fields;
        let num = |k: &str| f.i64_opt(k).map_err(|e| e.to_string());
        let master = match num("masterBrokerId")? {
            Some(id) if id > 0 => Some((
                id as u64,
                f.str_opt("masterAddress").unwrap_or_default().to_string(),
                f.str_opt("masterHaAddress").unwrap_or_default().to_string(),
            )),
            _ => None,
        };
        let body: SyncStateSetBody = if resp.body.is_empty() {
            SyncStateSetBody::default()
        } else {
            serde_json::from_slice(&resp.body).map_err(|e| format!("SyncStateSet body: {e}"))?
        };
        Ok(ReplicaView {
            master,
            master_epoch: num("masterEpoch")?.unwrap_or(0) as u32,
            sync_state_set: body.sync_state_set,
            sync_state_set_epoch: body.sync_state_set_epoch,
        })
    }
}

/// What a broker says in BROKER_HEARTBEAT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    /// Cluster name.
    pub cluster: String,
    /// Broker group.
    pub group: String,
    /// Broker id (>= 1).
    pub id: u64,
    /// Remoting address.
    pub addr: String,
    /// The newest master epoch it knows.
    pub epoch: u32,
    /// Its commit log's end.
    pub max_offset: u64,
    /// How long the controller waits for the next one before it counts
    /// the broker dead, ms (`controllerHeartBeatTimeoutMills`).
    pub timeout_ms: u64,
}

impl Heartbeat {
    /// The request.
    pub fn request(&self, opaque: i32) -> RemotingCommand {
        RemotingCommand::request(super::codes::BROKER_HEARTBEAT, opaque)
            .with_field("clusterName", &self.cluster)
            .with_field("brokerName", &self.group)
            .with_field("brokerId", self.id)
            .with_field("brokerAddr", &self.addr)
            .with_field("epoch", self.epoch)
            .with_field("maxOffset", self.max_offset)
            .with_field("heartbeatTimeoutMills", self.timeout_ms)
    }

    /// Reads the request's fields.
    pub fn read(req: &RemotingCommand) -> Result<Heartbeat, String> {
        let f = &req.ext_fields;
        let e = |e: mqlab_protocol::ProtocolError| e.to_string();
        Ok(Heartbeat {
            cluster: f.str_opt("clusterName").unwrap_or_default().to_string(),
            group: f.str_req("brokerName").map_err(e)?.to_string(),
            id: nonneg(f.i64_req("brokerId").map_err(e)?, "brokerId")?,
            addr: f.str_opt("brokerAddr").unwrap_or_default().to_string(),
            epoch: nonneg(f.i64_opt("epoch").map_err(e)?.unwrap_or(0), "epoch")? as u32,
            max_offset: nonneg(f.i64_opt("maxOffset").map_err(e)?.unwrap_or(0), "maxOffset")?,
            timeout_ms: nonneg(
                f.i64_opt("heartbeatTimeoutMills").map_err(e)?.unwrap_or(0),
                "heartbeatTimeoutMills",
            )?,
        })
    }
}

/// A non-negative field value.
pub fn nonneg(v: i64, name: &str) -> Result<u64, String> {
    u64::try_from(v).map_err(|_| format!("{name} {v} is negative"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mqlab_protocol::{decode_frame, encode_frame, Limits};

    #[test]
    fn views_and_heartbeats_survive_the_wire() {
        let v = ReplicaView {
            master: Some((2, "127.0.0.1:1".into(), "127.0.0.1:2".into())),
            master_epoch: 7,
            sync_state_set: BTreeSet::from([2, 3]),
            sync_state_set_epoch: 9,
        };
        let req = RemotingCommand::request(1004, 1);
        let resp = v.write(RemotingCommand::response_to(&req, 0, None));
        let bytes = encode_frame(&resp).unwrap();
        let (back, _) = decode_frame(&bytes, &Limits::default()).unwrap().unwrap();
        assert_eq!(ReplicaView::read(&back).unwrap(), v);
        let none = ReplicaView::default();
        let resp = none.write(RemotingCommand::response_to(&req, 0, None));
        assert_eq!(ReplicaView::read(&resp).unwrap(), none);

        let hb = Heartbeat {
            cluster: "C".into(),
            group: "g".into(),
            id: 3,
            addr: "127.0.0.1:9".into(),
            epoch: 4,
            max_offset: 1 << 40,
            timeout_ms: 1500,
        };
        assert_eq!(Heartbeat::read(&hb.request(5)).unwrap(), hb);
        let bad = hb.request(5).with_field("brokerId", -1);
        assert!(Heartbeat::read(&bad).unwrap_err().contains("brokerId"));
    }
}
