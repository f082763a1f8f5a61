//! A node's replication, switchable at runtime (RocketMQ's
//! `ReplicasManager` in controller mode).
//!
//! [`Replication`] holds the node's [`HaService`] and what the rest of the
//! node needs to know about its role: the role, the master epoch, the id
//! it announces in routes (0 as master, its own broker id otherwise) and a
//! generation counter that moves with every switch (the registrar
//! re-registers with the name servers when it moves).
//!
//! Without a controller the role is fixed at start ([`Replication::fixed`]).
//! In controller mode ([`Replication::with_controller`]) the node binds
//! its HA port at start whatever its role, starts as a slave that follows
//! nobody (sends refused) and runs one thread that, every heartbeat
//! interval:
//! - heartbeats every controller (BROKER_HEARTBEAT with its epoch and log
//!   end),
//! - registers (until it once succeeded) or asks for its group's replica
//!   info, and switches:
//!   - to master when the controller names it: the HA client stops, an
//!     epoch entry (epoch, this log's end) is appended to the epoch file,
//!     the HA master starts on the kept listener (a SYNC_MASTER installs
//!     its replica gate), the store leaves slave mode (sends accepted);
//!   - to slave of another broker when the controller names that one (or
//!     a newer epoch of it): the HA master stops (puts waiting for a
//!     slave are answered FLUSH_SLAVE_TIMEOUT), the store enters slave
//!     mode, the HA client follows the new master's HA address;
//! - as master, reports its in-sync set to the controller.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mqlab_engine::Store;

use super::controlled::Controlled;
use super::epoch::EpochFile;
use super::{BrokerRole, HaConfig, HaService};
use crate::controller::{
    BrokerIdentity, ControllerClient, Heartbeat, ReplicaView, SyncStateSetBody,
};

/// Controller mode settings (RocketMQ's names in brackets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerMode {
    /// The controllers [controllerAddr].
    pub addrs: Vec<SocketAddr>,
    /// Heartbeat and role check period, ms
    /// [controllerHeartBeatIntervalMills... mqlab: one period for both].
    /// Default 1,000.
    pub heartbeat_interval_ms: u64,
    /// Silence after which the controller counts this broker dead, ms
    /// (sent in every heartbeat) [controllerHeartBeatTimeoutMills].
    /// Default 10,000.
    pub heartbeat_timeout_ms: u64,
}

impl ControllerMode {
    /// Defaults for `addrs`.
    pub fn new(addrs: Vec<SocketAddr>) -> ControllerMode {
        ControllerMode {
            addrs,
            heartbeat_interval_ms: 1_000,
            heartbeat_timeout_ms: 10_000,
        }
    }
}

/// The node's replication and role.
pub struct Replication {
    store: Arc<Store>,
    /// The configured HA settings (in controller mode `role` is what this
    /// broker is as master: ASYNC_MASTER or SYNC_MASTER).
    base: HaConfig,
    ha: Mutex<Option<HaService>>,
    /// Controller mode: the HA port, bound for the node's life.
    listener: Option<TcpListener>,
    /// Controller mode: epochs, in-sync set, truncation counts.
    ctl: Option<Arc<Controlled>>,
    role: Mutex<BrokerRole>,
    epoch: AtomicU32,
    route_id: AtomicU64,
    generation: AtomicU64,
    /// The HA address followed as slave.
    following: Mutex<Option<SocketAddr>>,
    stop: AtomicBool,
    signal: mqlab_engine::service::Signal,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Replication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replication")
            .field("role", &self.role())
            .field("epoch", &self.epoch())
            .finish()
    }
}

/// The node's [`HaService`], locked (see [`Replication::ha`]).
pub struct HaRef<'a>(MutexGuard<'a, Option<HaService>>);

impl std::ops::Deref for HaRef<'_> {
    type Target = HaService;
    fn deref(&self) -> &HaService {
        self.0
            .as_ref()
            .expect("replication is running (a controller-mode node follows no master yet)")
    }
}

impl HaRef<'_> {
    /// True when an HA service runs (a controller-mode node that follows
    /// nobody yet has none).
    pub fn is_running(&self) -> bool {
        self.0.is_some()
    }
}

impl Replication {
    /// A fixed role: `ha` started by the caller.
    pub fn fixed(store: Arc<Store>, base: HaConfig, ha: HaService, broker_id: u64) -> Self {
        Replication {
            store,
            role: Mutex::new(base.role),
            base,
            ha: Mutex::new(Some(ha)),
            listener: None,
            ctl: None,
            epoch: AtomicU32::new(0),
            route_id: AtomicU64::new(broker_id),
            generation: AtomicU64::new(0),
            following: Mutex::new(None),
            stop: AtomicBool::new(false),
            signal: Default::default(),
            thread: Mutex::new(None),
        }
    }

    /// Controller mode: a slave following nobody until the controller
    /// says; `listener` is the HA port kept for the node's life.
    pub fn controlled(
        store: Arc<Store>,
        base: HaConfig,
        listener: TcpListener,
        broker_id: u64,
    ) -> Result<Self, String> {
        store.set_slave_mode(true);
        let epochs = EpochFile::open(store.dir())?;
        let ctl = Arc::new(Controlled::new(
            broker_id,
            epochs,
            base.min_in_sync_replicas,
        ));
        Ok(Replication {
            store,
            base,
            ha: Mutex::new(None),
            listener: Some(listener),
            ctl: Some(ctl),
            role: Mutex::new(BrokerRole::Slave),
            epoch: AtomicU32::new(0),
            route_id: AtomicU64::new(broker_id),
            generation: AtomicU64::new(0),
            following: Mutex::new(None),
            stop: AtomicBool::new(false),
            signal: Default::default(),
            thread: Mutex::new(None),
        })
    }

    /// Starts the controller-mode thread: registers once now (so a first
    /// broker is master when this returns, if a controller answers), then
    /// every heartbeat interval.
    pub fn with_controller(
        self: &Arc<Self>,
        mode: ControllerMode,
        me: BrokerIdentity,
    ) -> Result<(), String> {
        let client = ControllerClient::new(mode.addrs.clone());
        let mut agent = Agent {
            repl: self.clone(),
            client,
            mode,
            me,
            registered: false,
        };
        // A controller that just started may not lead yet: a few tries,
        // so a first broker usually starts as master.
        let t = Instant::now();
        agent.round();
        while !agent.registered && t.elapsed() < Duration::from_secs(3) {
            std::thread::sleep(Duration::from_millis(100));
            agent.round();
        }
        let t = std::thread::Builder::new()
            .name("mqlab-replicas".into())
            .spawn(move || {
                let every = Duration::from_millis(agent.mode.heartbeat_interval_ms.max(10));
                while agent.repl.signal.wait(every) {
                    agent.round();
                }
            })
            .map_err(|e| format!("replicas thread: {e}"))?;
        *self.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(t);
        Ok(())
    }

    /// The HA service, locked while the result lives (hold it briefly: a
    /// role switch waits for it).
    pub fn ha(&self) -> HaRef<'_> {
        HaRef(self.ha.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The current role (in controller mode: SLAVE until the controller
    /// names this broker master).
    pub fn role(&self) -> BrokerRole {
        *self.role.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The master epoch this broker last learned (0 without a controller).
    pub fn epoch(&self) -> u32 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The id announced in routes: 0 as master, the broker id otherwise.
    pub fn route_id(&self) -> u64 {
        self.route_id.load(Ordering::Acquire)
    }

    /// Moves with every role switch.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Where this node serves slaves now (None while it is a slave).
    pub fn ha_addr(&self) -> Option<SocketAddr> {
        self.ha().0.as_ref().and_then(|h| h.local_addr())
    }

    /// Controller mode: epochs, in-sync set, truncations.
    pub fn controlled_state(&self) -> Option<&Arc<Controlled>> {
        self.ctl.as_ref()
    }

    /// Controller mode: the HA port as bound.
    pub fn bound_ha_addr(&self) -> Option<SocketAddr> {
        self.listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The HA address followed as slave (controller mode).
    pub fn following(&self) -> Option<SocketAddr> {
        *self.following.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stops the controller-mode thread, then the HA service.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::Release);
        self.signal.stop();
        let t = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = t {
            let _ = t.join();
        }
        if let Some(mut ha) = self.ha.lock().unwrap_or_else(|e| e.into_inner()).take() {
            ha.shutdown();
        }
    }

    fn master_role(&self) -> BrokerRole {
        match self.base.role {
            BrokerRole::Slave => BrokerRole::AsyncMaster,
            r => r,
        }
    }

    /// Becomes master at `v`'s epoch with `v`'s in-sync set.
    fn become_master(&self, v: &ReplicaView) -> Result<(), String> {
        let epoch = v.master_epoch;
        let ctl = self.ctl.as_ref().ok_or("not in controller mode")?;
        let listener = self
            .listener
            .as_ref()
            .ok_or("no HA listener (not in controller mode)")?
            .try_clone()
            .map_err(|e| format!("HA listener: {e}"))?;
        let mut ha = self.ha.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mut old) = ha.take() {
            old.shutdown();
        }
        // What this log holds from here on is the new epoch's.
        ctl.epochs().begin(epoch, self.store.offsets().written)?;
        ctl.sync
            .confirm(v.sync_state_set.clone(), v.sync_state_set_epoch);
        let cfg = HaConfig {
            role: self.master_role(),
            master: None,
            ..self.base.clone()
        };
        let started =
            HaService::start_with(self.store.clone(), cfg, Some(listener), Some(ctl.clone()))?;
        *ha = Some(started);
        self.store.set_slave_mode(false);
        *self.role.lock().unwrap_or_else(|e| e.into_inner()) = self.master_role();
        *self.following.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.epoch.store(epoch, Ordering::Release);
        self.route_id.store(0, Ordering::Release);
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Becomes a slave of the master serving HA on `master` at `epoch`.
    fn become_slave(&self, master: SocketAddr, epoch: u32, my_id: u64) -> Result<(), String> {
        let mut ha = self.ha.lock().unwrap_or_else(|e| e.into_inner());
        // Sends refused first, then the master's side stopped (its gate
        // answers what is still waiting FLUSH_SLAVE_TIMEOUT): no put
        // slips in between to be acknowledged unreplicated by a broker
        // that is no longer master.
        self.store.set_slave_mode(true);
        if let Some(mut old) = ha.take() {
            old.shutdown();
        }
        let cfg = HaConfig {
            role: BrokerRole::Slave,
            master: Some(master),
            ..self.base.clone()
        };
        *ha = Some(HaService::start_with(
            self.store.clone(),
            cfg,
            None,
            self.ctl.clone(),
        )?);
        *self.role.lock().unwrap_or_else(|e| e.into_inner()) = BrokerRole::Slave;
        *self.following.lock().unwrap_or_else(|e| e.into_inner()) = Some(master);
        self.epoch.store(epoch, Ordering::Release);
        self.route_id.store(my_id, Ordering::Release);
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }
}

impl Drop for Replication {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The controller-mode thread's state.
struct Agent {
    repl: Arc<Replication>,
    client: ControllerClient,
    mode: ControllerMode,
    me: BrokerIdentity,
    registered: bool,
}

impl Agent {
    fn round(&mut self) {
        if self.repl.stop.load(Ordering::Acquire) {
            return;
        }
        // The epoch of this log's newest bytes (an election prefers it).
        let data_epoch = self
            .repl
            .ctl
            .as_ref()
            .map_or(0, |c| c.epochs().last_epoch());
        let hb = Heartbeat {
            cluster: self.me.cluster.clone(),
            group: self.me.group.clone(),
            id: self.me.id,
            addr: self.me.addr.to_string(),
            epoch: data_epoch,
            max_offset: self.repl.store.offsets().written,
            timeout_ms: self.mode.heartbeat_timeout_ms,
        };
        self.client.heartbeat(&hb);
        let view = if self.registered {
            self.client.replica_info(&self.me.group)
        } else {
            self.client.register(&self.me)
        };
        match view {
            Ok(v) => {
                self.registered = true;
                self.apply(&v);
                self.maintain_sync_set(&v);
            }
            Err(e) => eprintln!(
                "mqlab broker {}/{}: controller: {e}",
                self.me.group, self.me.id
            ),
        }
    }

    /// Switches the role to what `v` says, if it differs.
    fn apply(&mut self, v: &ReplicaView) {
        let Some((master, _, ha)) = &v.master else {
            return;
        };
        let r = &self.repl;
        let role = r.role();
        let result = if *master == self.me.id {
            if role.is_master() && r.epoch() == v.master_epoch {
                return;
            }
            r.become_master(v).map(|()| {
                format!(
                    "master at epoch {} (HA on {})",
                    v.master_epoch,
                    r.ha_addr().map(|a| a.to_string()).unwrap_or_default()
                )
            })
        } else {
            let Ok(ha) = ha.parse::<SocketAddr>() else {
                eprintln!(
                    "mqlab broker {}/{}: master {master} has no usable HA address {ha:?}",
                    self.me.group, self.me.id
                );
                return;
            };
            if !role.is_master() && r.following() == Some(ha) && r.epoch() == v.master_epoch {
                return;
            }
            r.become_slave(ha, v.master_epoch, self.me.id).map(|()| {
                format!(
                    "slave of broker {master} (HA {ha}) at epoch {}",
                    v.master_epoch
                )
            })
        };
        match result {
            Ok(what) => eprintln!("mqlab broker {}/{}: now {what}", self.me.group, self.me.id),
            Err(e) => eprintln!(
                "mqlab broker {}/{}: role switch failed: {e}",
                self.me.group, self.me.id
            ),
        }
    }

    /// As master: takes the controller's newer in-sync set, drops members
    /// that have not caught up for `haMaxTimeSlaveNotCatchup`, adds
    /// connected slaves that caught up lately, and asks the controller for
    /// the change (CONTROLLER_ALTER_SYNC_STATE_SET); puts wait for both
    /// sets' members until it answers.
    fn maintain_sync_set(&mut self, v: &ReplicaView) {
        let r = self.repl.clone();
        let Some(ctl) = r.ctl.as_ref() else {
            return;
        };
        if !r.role().is_master() || v.master.as_ref().map(|m| m.0) != Some(self.me.id) {
            return;
        }
        let (_, known) = ctl.sync.confirmed();
        if v.master_epoch == r.epoch() && v.sync_state_set_epoch > known {
            ctl.sync
                .confirm(v.sync_state_set.clone(), v.sync_state_set_epoch);
        }
        let (cur, cur_epoch) = ctl.sync.confirmed();
        let now = Instant::now();
        let max_lag = Duration::from_millis(r.base.max_time_slave_not_catchup_ms);
        let fresh = Duration::from_millis(2 * r.base.heartbeat_interval_ms + 500).min(max_lag);
        let recent = |id: u64, within: Duration| {
            ctl.sync
                .last_caught_up(id)
                .is_some_and(|t| now.saturating_duration_since(t) <= within)
        };
        let slaves = {
            let ha = r.ha();
            if !ha.is_running() {
                return;
            }
            ha.master().map(|m| m.slaves()).unwrap_or_default()
        };
        let mut new = cur.clone();
        new.retain(|id| *id == self.me.id || recent(*id, max_lag));
        for s in slaves {
            if s.broker_id != 0 && s.broker_id != self.me.id && recent(s.broker_id, fresh) {
                new.insert(s.broker_id);
            }
        }
        if new == cur {
            return;
        }
        ctl.sync.propose(new.clone());
        // A member joins only holding every message acknowledged while it
        // was out. Its catch-up time says it had what this log held at its
        // previous report, not what was acknowledged since (without it:
        // the SYNC_MASTER failover loss in results/ha/failover). From the
        // proposal on, puts wait for it; what was acknowledged before ends
        // at or below `need`, so the request waits for its report to pass
        // that.
        let added: Vec<u64> = new.difference(&cur).copied().collect();
        if !added.is_empty() {
            let need = r.store.offsets().written;
            if let Err(behind) = wait_reported(&r, &added, need, fresh) {
                ctl.sync.abandon();
                eprintln!(
                    "mqlab broker {}/{}: in-sync set {cur:?} -> {new:?} not asked: broker {behind} did not report offset {need} within {} ms",
                    self.me.group,
                    self.me.id,
                    fresh.as_millis()
                );
                return;
            }
        }
        let asked = SyncStateSetBody {
            sync_state_set: new.clone(),
            sync_state_set_epoch: cur_epoch,
        };
        match self
            .client
            .alter_sync_state_set(&self.me.group, self.me.id, r.epoch(), asked)
        {
            Ok(view) => {
                ctl.sync
                    .confirm(view.sync_state_set.clone(), view.sync_state_set_epoch);
                eprintln!(
                    "mqlab broker {}/{}: in-sync set {:?} -> {:?} (epoch {})",
                    self.me.group, self.me.id, cur, view.sync_state_set, view.sync_state_set_epoch
                );
            }
            Err(e) => {
                ctl.sync.abandon();
                eprintln!(
                    "mqlab broker {}/{}: in-sync set {cur:?} -> {new:?} refused: {e}",
                    self.me.group, self.me.id
                );
            }
        }
        let ha = r.ha();
        if let Some(m) = ha.master() {
            m.resync();
        }
    }
}

/// Waits up to `within` until every broker in `ids` has reported an offset
/// at or past `need` to this master; `Err(id)` names one that has not.
fn wait_reported(r: &Replication, ids: &[u64], need: u64, within: Duration) -> Result<(), u64> {
    let deadline = Instant::now() + within;
    loop {
        let behind = {
            let ha = r.ha();
            let slaves = if ha.is_running() {
                ha.master().map(|m| m.slaves()).unwrap_or_default()
            } else {
                Vec::new()
            };
            ids.iter().copied().find(|id| {
                !slaves
                    .iter()
                    .any(|s| s.broker_id == *id && s.acked.is_some_and(|a| a >= need))
            })
        };
        match behind {
            None => return Ok(()),
            Some(id) if Instant::now() >= deadline => return Err(id),
            Some(_) => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}
