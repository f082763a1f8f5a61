//! A controller process: the Raft member, the remoting handler for brokers
//! and peers, the heartbeat table (RocketMQ's `BrokerHeartbeatManager`,
//! local to each controller: brokers heartbeat every controller, so a new
//! leader already knows who is alive) and the leader's scanner, which
//! proposes an election for every group whose master stopped
//! heartbeating (RocketMQ's `ControllerManager` on an inactive broker).

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mqlab_protocol::{ExtFields, RemotingCommand};

use super::codes;
use super::raft_node::{decode_message, RaftNode};
use super::rpc::{nonneg, Heartbeat, ReplicaView, SyncStateSetBody};
use super::state::{Candidate, Command, Group, Outcome, ReplicaState};
use crate::remoting::{Conn, Handler, RemotingServer, ServerConfig};

/// RocketMQ's `controllerHeartBeatTimeoutMills`... as its default for a
/// broker that names none.
pub const DEFAULT_HEARTBEAT_TIMEOUT_MS: u64 = 10_000;
/// How long a proposal may take to commit.
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(3);

/// A scanner that wakes this much later than it meant to counts as a
/// stall of the controller itself (see `scan_loop`).
const STALL_GRACE_AFTER: Duration = Duration::from_millis(250);

/// What a controller runs.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// This controller's id: its position in `peers`, from 1.
    pub id: u64,
    /// Every controller's address, in id order (one entry: a controller
    /// alone). Brokers and peers both talk to these.
    pub peers: Vec<SocketAddr>,
    /// A broker whose heartbeats stop for this long is dead, unless its
    /// heartbeats name their own timeout. Default 10,000 ms.
    pub heartbeat_timeout_ms: u64,
    /// How often the leader looks for dead masters. Default 1,000 ms.
    pub scan_interval_ms: u64,
    /// Elect outside the in-sync set when none of it is alive
    /// (`enableElectUncleanMaster`). Default false.
    pub unclean_election: bool,
    /// Where the Raft log is kept (`controllerStorePath`); None: in
    /// memory only. Default None.
    pub data_dir: Option<std::path::PathBuf>,
}

impl ControllerConfig {
    /// A controller alone on `listen`.
    pub fn single(listen: SocketAddr) -> ControllerConfig {
        ControllerConfig {
            id: 1,
            peers: vec![listen],
            heartbeat_timeout_ms: DEFAULT_HEARTBEAT_TIMEOUT_MS,
            scan_interval_ms: 1_000,
            unclean_election: false,
            data_dir: None,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Live {
    last: Instant,
    timeout: Duration,
    epoch: u32,
    max_offset: u64,
}

struct Inner {
    cfg: ControllerConfig,
    raft: RaftNode,
    /// (group, broker id) -> last heartbeat.
    live: Mutex<HashMap<(String, u64), Live>>,
    /// When this controller last became leader (a master it has never
    /// heard from counts as alive for one timeout after that).
    leader_since: Mutex<Option<Instant>>,
    stop: AtomicBool,
}

/// A running controller.
pub struct Controller {
    inner: Arc<Inner>,
    server: Option<RemotingServer>,
    scanner: Option<JoinHandle<()>>,
    addr: SocketAddr,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("id", &self.inner.cfg.id)
            .field("addr", &self.addr)
            .finish()
    }
}

impl Controller {
    /// Binds `cfg.peers[id - 1]` and starts.
    pub fn start(cfg: ControllerConfig) -> Result<Controller, String> {
        let at = *cfg
            .peers
            .get((cfg.id as usize).wrapping_sub(1))
            .ok_or_else(|| format!("controller id {} is not in the peers list", cfg.id))?;
        let listener = RemotingServer::bind(at).map_err(|e| format!("controller on {at}: {e}"))?;
        Controller::start_on(listener, cfg)
    }

    /// Starts on a bound listener (its address is this controller's in
    /// `cfg.peers`; tests bind port 0 first).
    pub fn start_on(listener: TcpListener, cfg: ControllerConfig) -> Result<Controller, String> {
        let addr = listener
            .local_addr()
            .map_err(|e| format!("controller: {e}"))?;
        let raft = RaftNode::start(cfg.id, &cfg.peers, cfg.data_dir.as_deref())?;
        let inner = Arc::new(Inner {
            cfg,
            raft,
            live: Mutex::new(HashMap::new()),
            leader_since: Mutex::new(None),
            stop: AtomicBool::new(false),
        });
        let server = RemotingServer::start_on(
            listener,
            ServerConfig {
                listen: addr,
                ..ServerConfig::default()
            },
            Arc::new(ControllerHandler(inner.clone())),
        )
        .map_err(|e| format!("controller on {addr}: {e}"))?;
        let i = inner.clone();
        let scanner = std::thread::Builder::new()
            .name("mqlab-controller-scan".into())
            .spawn(move || i.scan_loop())
            .map_err(|e| format!("controller scanner: {e}"))?;
        Ok(Controller {
            inner,
            server: Some(server),
            scanner: Some(scanner),
            addr,
        })
    }

    /// Where it serves.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its id.
    pub fn id(&self) -> u64 {
        self.inner.cfg.id
    }

    /// True while it is the Raft leader.
    pub fn is_leader(&self) -> bool {
        self.inner.raft.shared.is_leader.load(Ordering::Acquire)
    }

    /// The leader's id as this controller knows it (0: none).
    pub fn leader_id(&self) -> u64 {
        self.inner.raft.shared.leader_id.load(Ordering::Acquire)
    }

    /// The replicated state as applied here.
    pub fn state(&self) -> ReplicaState {
        self.inner.state().clone()
    }

    /// One group as applied here.
    pub fn group(&self, name: &str) -> Option<Group> {
        self.inner.state().group(name).cloned()
    }

    /// Replicates `cmd` (leader only) and returns its outcome.
    pub fn propose(&self, cmd: Command) -> Result<Outcome, String> {
        self.inner.raft.propose(cmd, PROPOSE_TIMEOUT)
    }

    /// Stops serving, scanning and the Raft member.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.inner.stop.store(true, Ordering::Release);
        if let Some(s) = self.server.take() {
            s.shutdown();
        }
        if let Some(t) = self.scanner.take() {
            let _ = t.join();
        }
        self.inner.raft.shutdown();
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.stop();
        // The Raft member stops when the last holder of `inner` goes.
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.raft.shutdown();
    }
}

impl Inner {
    fn state(&self) -> std::sync::RwLockReadGuard<'_, ReplicaState> {
        self.raft
            .shared
            .state
            .read()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn is_leader(&self) -> bool {
        self.raft.shared.is_leader.load(Ordering::Acquire)
    }

    fn leader_addr(&self) -> Option<SocketAddr> {
        let id = self.raft.shared.leader_id.load(Ordering::Acquire);
        self.cfg.peers.get((id as usize).checked_sub(1)?).copied()
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u64), Live>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn heartbeat(&self, hb: &Heartbeat) {
        let timeout = match hb.timeout_ms {
            0 => self.cfg.heartbeat_timeout_ms,
            t => t,
        };
        self.live().insert(
            (hb.group.clone(), hb.id),
            Live {
                last: Instant::now(),
                timeout: Duration::from_millis(timeout),
                epoch: hb.epoch,
                max_offset: hb.max_offset,
            },
        );
    }

    /// Moves every broker's last heartbeat `by` later (capped at now).
    fn forgive(&self, by: Duration) {
        let now = Instant::now();
        for l in self.live().values_mut() {
            l.last = (l.last + by).min(now);
        }
        eprintln!(
            "mqlab controller {}: stalled for {} ms; broker heartbeats given that much longer",
            self.cfg.id,
            by.as_millis()
        );
    }

    /// Whether broker `id` of `group` is alive; one never heard from is
    /// alive for one timeout after this controller became leader.
    fn alive(&self, group: &str, id: u64, now: Instant) -> bool {
        match self.live().get(&(group.to_string(), id)) {
            Some(l) => now.duration_since(l.last) < l.timeout,
            None => self
                .leader_since
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_some_and(|t| {
                    now.duration_since(t) < Duration::from_millis(self.cfg.heartbeat_timeout_ms)
                }),
        }
    }

    /// The alive brokers of `group` (heard from within their timeout).
    fn candidates(&self, group: &str, now: Instant) -> Vec<Candidate> {
        let mut c: Vec<Candidate> = self
            .live()
            .iter()
            .filter(|((g, _), l)| g == group && now.duration_since(l.last) < l.timeout)
            .map(|((_, id), l)| Candidate {
                id: *id,
                epoch: l.epoch,
                max_offset: l.max_offset,
            })
            .collect();
        c.sort_by_key(|c| c.id);
        c
    }

    fn scan_loop(&self) {
        let every = Duration::from_millis(self.cfg.scan_interval_ms.max(10));
        let mut was_leader = false;
        let nap = every.min(Duration::from_millis(100));
        while !self.stop.load(Ordering::Acquire) {
            let before = Instant::now();
            std::thread::sleep(nap);
            // This controller stalled (an overloaded machine): heartbeats
            // that came meanwhile may still sit unread in its sockets, so
            // a broker's silence over the stall says nothing about the
            // broker. Every broker gets the stall added to its time, as
            // if the controller had not been away (else one stall of a
            // timeout deposes a live master, or every broker at once).
            let stalled = before.elapsed().saturating_sub(nap);
            if stalled >= STALL_GRACE_AFTER {
                self.forgive(stalled);
            }
            let leader = self.is_leader();
            if leader && !was_leader {
                *self.leader_since.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
            }
            was_leader = leader;
            if leader {
                self.scan(Instant::now());
            }
        }
    }

    /// Proposes an election for every group whose master is dead (or that
    /// has none while someone is alive).
    fn scan(&self, now: Instant) {
        let groups: Vec<(String, Option<u64>)> = self
            .state()
            .groups
            .iter()
            .map(|(n, g)| (n.clone(), g.master))
            .collect();
        for (name, master) in groups {
            let needs = match master {
                Some(m) => !self.alive(&name, m, now),
                None => !self.candidates(&name, now).is_empty(),
            };
            if !needs {
                continue;
            }
            let cmd = Command::Elect {
                group: name.clone(),
                candidates: self.candidates(&name, now),
                unclean: self.cfg.unclean_election,
                designated: None,
            };
            match self.raft.propose(cmd, PROPOSE_TIMEOUT) {
                Ok(o) if o.code == codes::SUCCESS => {}
                Ok(o) if master.is_some() => eprintln!(
                    "mqlab controller {}: group {name}: master {master:?} is dead; no master elected: {}",
                    self.cfg.id,
                    o.remark.unwrap_or_default()
                ),
                Ok(_) => {}
                Err(e) => eprintln!(
                    "mqlab controller {}: group {name}: election not committed: {e}",
                    self.cfg.id
                ),
            }
        }
    }

    fn not_leader(&self, req: &RemotingCommand) -> RemotingCommand {
        let mut r = RemotingCommand::response_to(
            req,
            codes::CONTROLLER_NOT_LEADER,
            Some(format!("controller {} is not the leader", self.cfg.id)),
        );
        if let Some(a) = self.leader_addr() {
            r = r.with_field("leaderAddress", a);
        }
        r
    }

    fn answer(&self, req: &RemotingCommand, r: Result<Outcome, String>) -> RemotingCommand {
        match r {
            Err(e) if !self.is_leader() => {
                let mut r = self.not_leader(req);
                r.remark = Some(e);
                r
            }
            Err(e) => RemotingCommand::response_to(req, codes::SYSTEM_ERROR, Some(e)),
            Ok(o) => {
                let resp = RemotingCommand::response_to(req, o.code, o.remark);
                match &o.group {
                    Some(g) => ReplicaView::of(g).write(resp),
                    None => resp,
                }
            }
        }
    }

    fn handle(&self, req: &RemotingCommand) -> Result<RemotingCommand, String> {
        let f = &req.ext_fields;
        let e = |e: mqlab_protocol::ProtocolError| e.to_string();
        let leader_only = matches!(
            req.code,
            codes::CONTROLLER_REGISTER_BROKER
                | codes::CONTROLLER_GET_REPLICA_INFO
                | codes::CONTROLLER_ALTER_SYNC_STATE_SET
                | codes::CONTROLLER_ELECT_MASTER
        );
        if leader_only && !self.is_leader() {
            return Ok(self.not_leader(req));
        }
        let ok = |r: RemotingCommand| Ok(r);
        match req.code {
            codes::BROKER_HEARTBEAT => {
                let hb = Heartbeat::read(req)?;
                self.heartbeat(&hb);
                ok(RemotingCommand::response_to(req, codes::SUCCESS, None))
            }
            codes::CONTROLLER_REGISTER_BROKER => {
                let id = nonneg(f.i64_req("brokerId").map_err(e)?, "brokerId")?;
                let group = f.str_req("brokerName").map_err(e)?.to_string();
                let cmd = Command::Register {
                    cluster: f.str_opt("clusterName").unwrap_or_default().to_string(),
                    group: group.clone(),
                    id,
                    addr: f.str_req("brokerAddress").map_err(e)?.to_string(),
                    ha_addr: f.str_opt("haAddress").unwrap_or_default().to_string(),
                };
                // A registering broker is alive.
                self.heartbeat(&Heartbeat {
                    cluster: String::new(),
                    group,
                    id,
                    addr: String::new(),
                    epoch: 0,
                    max_offset: 0,
                    timeout_ms: 0,
                });
                ok(self.answer(req, self.raft.propose(cmd, PROPOSE_TIMEOUT)))
            }
            codes::CONTROLLER_GET_REPLICA_INFO => {
                let group = f.str_req("brokerName").map_err(e)?;
                let resp = RemotingCommand::response_to(req, codes::SUCCESS, None);
                ok(match self.state().group(group) {
                    Some(g) => ReplicaView::of(g).write(resp),
                    None => RemotingCommand::response_to(
                        req,
                        codes::CONTROLLER_BROKER_METADATA_NOT_EXIST,
                        Some(format!("no broker of group {group} registered")),
                    ),
                })
            }
            codes::CONTROLLER_ALTER_SYNC_STATE_SET => {
                let group = f.str_req("brokerName").map_err(e)?.to_string();
                let master = nonneg(f.i64_req("masterBrokerId").map_err(e)?, "masterBrokerId")?;
                let epoch = nonneg(f.i64_req("masterEpoch").map_err(e)?, "masterEpoch")? as u32;
                let body: SyncStateSetBody = serde_json::from_slice(&req.body)
                    .map_err(|e| format!("SyncStateSet body: {e}"))?;
                let now = Instant::now();
                if let Some(dead) = body
                    .sync_state_set
                    .iter()
                    .find(|id| **id != master && !self.alive(&group, **id, now))
                {
                    return ok(RemotingCommand::response_to(
                        req,
                        codes::CONTROLLER_INVALID_REPLICAS,
                        Some(format!("broker {dead} of {group} is not alive")),
                    ));
                }
                let cmd = Command::AlterSyncStateSet {
                    group,
                    master,
                    master_epoch: epoch,
                    sync_state_set_epoch: body.sync_state_set_epoch,
                    new_set: body.sync_state_set,
                };
                let r = self.answer(req, self.raft.propose(cmd, PROPOSE_TIMEOUT));
                let epoch = r.ext_fields.get("syncStateSetEpoch").cloned();
                ok(match epoch {
                    Some(e) => r.with_field("newSyncStateSetEpoch", e),
                    None => r,
                })
            }
            codes::CONTROLLER_ELECT_MASTER => {
                let group = f.str_req("brokerName").map_err(e)?.to_string();
                let designated = match f.bool_or_false("designateElect").map_err(e)? {
                    true => Some(nonneg(f.i64_req("brokerId").map_err(e)?, "brokerId")?),
                    false => None,
                };
                let cmd = Command::Elect {
                    candidates: self.candidates(&group, Instant::now()),
                    group,
                    unclean: self.cfg.unclean_election,
                    designated,
                };
                ok(self.answer(req, self.raft.propose(cmd, PROPOSE_TIMEOUT)))
            }
            other => ok(RemotingCommand::response_to(
                req,
                codes::REQUEST_CODE_NOT_SUPPORTED,
                Some(format!("request code {other} is not a controller's")),
            )),
        }
    }
}

struct ControllerHandler(Arc<Inner>);

impl Handler for ControllerHandler {
    fn handle(&self, req: RemotingCommand, _conn: &Conn) -> Option<RemotingCommand> {
        if req.code == codes::CONTROLLER_RAFT_MESSAGE {
            match decode_message(&req.body) {
                Ok(m) if m.to == self.0.cfg.id => self.0.raft.step(m),
                Ok(m) => eprintln!(
                    "mqlab controller {}: a raft message for {} dropped",
                    self.0.cfg.id, m.to
                ),
                Err(e) => eprintln!("mqlab controller {}: {e}", self.0.cfg.id),
            }
            return None;
        }
        Some(self.0.handle(&req).unwrap_or_else(|why| {
            RemotingCommand::response_to(&req, codes::CONTROLLER_INVALID_REQUEST, Some(why))
        }))
    }
}
