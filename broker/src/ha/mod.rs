//! Master/slave replication over RocketMQ's classic HA protocol
//! (`store/ha/DefaultHAService`, `DefaultHAConnection`,
//! `DefaultHAClient`); the bytes are in [`wire`] and
//! `protocol/PROTOCOL.md`, "HA replication".
//!
//! Roles ([`BrokerRole`], RocketMQ's `brokerRole`):
//! - ASYNC_MASTER (default) and SYNC_MASTER listen on the HA port (the
//!   broker's port + 1 unless configured, 10912 by default) and stream
//!   their committed commit log to every slave that connects
//!   ([`master`]). A SYNC_MASTER also installs itself as the store's
//!   replica gate: a put acknowledged by the flush strategy is then
//!   answered only once a slave reported an offset at or past its end
//!   ([`HaService::when_replicated`]; FLUSH_SLAVE_TIMEOUT after
//!   `slave_timeout_ms`, SLAVE_NOT_AVAILABLE at once when no slave is
//!   connected or the best one is `slave_fallbehind_max` behind).
//! - SLAVE connects to the master's HA address, retrying with backoff,
//!   and appends what it receives with `Store::append_raw` ([`slave`]);
//!   its store is in slave mode (puts refused SERVICE_NOT_AVAILABLE, as
//!   RocketMQ's store refuses them; consume queues, and so pulls, held at
//!   the slave's flushed offset).
//!
//! Threads: plain threads, as the engine's services (no tokio: every
//! socket here is one blocking stream, and the ack path must not wait for
//! a runtime). A master runs an accept thread, a sweeper (every 10 ms:
//! answers waiting puts whose slave timeout passed) and, per slave, a
//! reader (reports in, acks fired) and a writer (transfers out); a slave
//! runs one thread. At most [`MAX_SLAVE_CONNECTIONS`] slaves at once.

pub mod controlled;
pub mod epoch;
pub mod master;
pub mod replicas;
pub mod slave;
pub mod wire;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use mqlab_engine::store::ReplicaCallback;
use mqlab_engine::Store;

/// RocketMQ's default HA port (`haListenPort`): the broker's 10911 + 1.
pub const DEFAULT_HA_PORT: u16 = 10912;
/// Most slaves a master serves at once (further connections are closed).
pub const MAX_SLAVE_CONNECTIONS: usize = 8;

/// RocketMQ's `brokerRole`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BrokerRole {
    /// A master whose sends are answered without waiting for a slave.
    #[default]
    AsyncMaster,
    /// A master whose sends are answered once a slave has them.
    SyncMaster,
    /// A read-only copy of a master.
    Slave,
}

impl BrokerRole {
    /// RocketMQ's name.
    pub fn as_str(self) -> &'static str {
        match self {
            BrokerRole::AsyncMaster => "ASYNC_MASTER",
            BrokerRole::SyncMaster => "SYNC_MASTER",
            BrokerRole::Slave => "SLAVE",
        }
    }

    /// True for both masters.
    pub fn is_master(self) -> bool {
        self != BrokerRole::Slave
    }
}

impl std::fmt::Display for BrokerRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for BrokerRole {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ASYNC_MASTER" => Ok(BrokerRole::AsyncMaster),
            "SYNC_MASTER" => Ok(BrokerRole::SyncMaster),
            "SLAVE" => Ok(BrokerRole::Slave),
            o => Err(format!(
                "brokerRole {o:?}: expected ASYNC_MASTER, SYNC_MASTER or SLAVE"
            )),
        }
    }
}

/// Replication settings (RocketMQ's `MessageStoreConfig` names in
/// brackets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaConfig {
    /// The role [brokerRole]. Default ASYNC_MASTER.
    pub role: BrokerRole,
    /// Where a master listens for slaves [haListenPort]; `None`: the
    /// broker's listen address with its port + 1 (port 0 stays 0).
    pub listen: Option<SocketAddr>,
    /// Controller mode: the HA address this broker announces to the
    /// controllers (and so to its slaves) when that is not the bound one:
    /// a proxy or a translated address in front of it (RocketMQ announces
    /// `brokerIP2` with the HA port). `None`: the address as bound.
    pub announce: Option<SocketAddr>,
    /// The master's HA address a slave connects to [haMasterAddress].
    pub master: Option<SocketAddr>,
    /// Most bytes per transfer [haTransferBatchSize]. Default 32 KiB.
    pub transfer_batch_bytes: usize,
    /// Longest silence before a report (slave) or an empty transfer
    /// (master) [haSendHeartbeatInterval]. Default 5,000 ms.
    pub heartbeat_interval_ms: u64,
    /// A connection silent this long is dropped [haHousekeepingInterval].
    /// Default 20,000 ms.
    pub housekeeping_interval_ms: u64,
    /// SYNC_MASTER: longest a put waits for a slave [slaveTimeout].
    /// Default 3,000 ms.
    pub slave_timeout_ms: u64,
    /// SYNC_MASTER: a slave further behind than this cannot confirm puts
    /// (SLAVE_NOT_AVAILABLE) [haSlaveFallbehindMax]. Default 256 MiB.
    pub slave_fallbehind_max: u64,
    /// First wait before a slave reconnects; doubled after each failure up
    /// to 5 s. Default 100 ms.
    pub reconnect_backoff_ms: u64,
    /// Controller mode: a member of the in-sync set that has not caught up
    /// for this long leaves it [haMaxTimeSlaveNotCatchup]. Default 15,000.
    pub max_time_slave_not_catchup_ms: u64,
    /// Controller mode: a SYNC_MASTER answers puts SLAVE_NOT_AVAILABLE
    /// while its in-sync set (itself included) is smaller [minInSyncReplicas].
    /// Default 1.
    pub min_in_sync_replicas: usize,
}

impl Default for HaConfig {
    fn default() -> Self {
        HaConfig {
            role: BrokerRole::AsyncMaster,
            listen: None,
            announce: None,
            master: None,
            transfer_batch_bytes: 32 * 1024,
            heartbeat_interval_ms: 5_000,
            housekeeping_interval_ms: 20_000,
            slave_timeout_ms: 3_000,
            slave_fallbehind_max: 256 * 1024 * 1024,
            reconnect_backoff_ms: 100,
            max_time_slave_not_catchup_ms: 15_000,
            min_in_sync_replicas: 1,
        }
    }
}

impl HaConfig {
    /// The HA address a master binds for a broker listening on `broker`.
    pub fn listen_for(&self, broker: SocketAddr) -> SocketAddr {
        self.listen.unwrap_or_else(|| {
            let port = match broker.port() {
                0 => 0,
                p => p.saturating_add(1),
            };
            SocketAddr::new(broker.ip(), port)
        })
    }

    /// Checks the values (a slave needs its master's address, sizes > 0).
    pub fn validate(&self) -> Result<(), String> {
        if self.role == BrokerRole::Slave && self.master.is_none() {
            return Err("brokerRole SLAVE needs haMasterAddress (--ha-master)".into());
        }
        if self.transfer_batch_bytes == 0 || self.transfer_batch_bytes > wire::MAX_BODY_BYTES {
            return Err(format!(
                "haTransferBatchSize {} outside [1, {}]",
                self.transfer_batch_bytes,
                wire::MAX_BODY_BYTES
            ));
        }
        if self.heartbeat_interval_ms == 0 || self.housekeeping_interval_ms == 0 {
            return Err("HA heartbeat and housekeeping intervals must be > 0".into());
        }
        Ok(())
    }
}

/// A node's replication: the master's side or the slave's.
pub struct HaService {
    master: Option<master::Master>,
    slave: Option<slave::Slave>,
}

impl std::fmt::Debug for HaService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HaService")
            .field("master", &self.local_addr())
            .field("slave", &self.slave.is_some())
            .finish()
    }
}

impl HaService {
    /// Starts the side `cfg.role` says on `store`: a master serves slaves
    /// on `listener` (bound by the caller, [`HaConfig::listen_for`]) and,
    /// as SYNC_MASTER, becomes the store's replica gate; a slave puts the
    /// store in slave mode and connects to `cfg.master`.
    pub fn start(
        store: Arc<Store>,
        cfg: HaConfig,
        listener: Option<TcpListener>,
    ) -> Result<HaService, String> {
        HaService::start_with(store, cfg, listener, None)
    }

    /// [`HaService::start`] in controller mode when `ctl` is given: both
    /// sides handshake first, a slave truncates what its master never
    /// had, a SYNC_MASTER waits for the in-sync set ([`controlled`]).
    pub fn start_with(
        store: Arc<Store>,
        cfg: HaConfig,
        listener: Option<TcpListener>,
        ctl: Option<Arc<controlled::Controlled>>,
    ) -> Result<HaService, String> {
        cfg.validate()?;
        match cfg.role {
            BrokerRole::Slave => {
                store.set_slave_mode(true);
                Ok(HaService {
                    master: None,
                    slave: Some(slave::Slave::start(store, cfg, ctl)?),
                })
            }
            role => {
                let listener = listener.ok_or("a master needs its HA listener")?;
                let m = master::Master::start(store.clone(), cfg, listener, ctl)?;
                // Replaces what a previous role's service left (a stopped
                // master's gate refuses every put).
                store.set_replica_gate(if role == BrokerRole::SyncMaster {
                    Some(m.gate())
                } else {
                    None
                });
                Ok(HaService {
                    master: Some(m),
                    slave: None,
                })
            }
        }
    }

    /// Where a master listens for slaves.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.master.as_ref().map(|m| m.local_addr())
    }

    /// The master's side, if this is a master.
    pub fn master(&self) -> Option<&master::Master> {
        self.master.as_ref()
    }

    /// The slave's side, if this is a slave.
    pub fn slave(&self) -> Option<&slave::Slave> {
        self.slave.as_ref()
    }

    /// Calls `done` once a slave reported an offset at or past `end`
    /// (PUT_OK), or with FLUSH_SLAVE_TIMEOUT after `timeout`, or at once
    /// with SLAVE_NOT_AVAILABLE when no slave could confirm it (none
    /// connected, or the best one too far behind; always on a slave).
    pub fn when_replicated(&self, end: u64, timeout: Duration, done: ReplicaCallback) {
        match &self.master {
            Some(m) => m.when_replicated(end, timeout, done),
            None => done(
                mqlab_engine::PutStatus::SlaveNotAvailable,
                Some("a slave has no slaves".into()),
            ),
        }
    }

    /// Stops every thread and closes every connection; puts still waiting
    /// for a slave are answered FLUSH_SLAVE_TIMEOUT.
    pub fn shutdown(&mut self) {
        if let Some(m) = self.master.take() {
            m.shutdown();
        }
        if let Some(s) = self.slave.take() {
            s.shutdown();
        }
    }
}

impl Drop for HaService {
    fn drop(&mut self) {
        self.shutdown();
    }
}
