//! A broker node as `mqlab broker` runs it: the store, the broker core,
//! the remoting server on `listen` (127.0.0.1:10911 by default), an
//! embedded name server (127.0.0.1:9876 by default, off when name servers
//! are given) and a registrar that announces the broker and its topics to
//! every name server: at start, every `register_interval_ms` (30 s, as
//! RocketMQ), and within a second of a new topic; UNREGISTER_BROKER at
//! shutdown; and, when `metrics` is set, the Prometheus endpoint
//! ([`crate::metrics`]), bound before anything else starts and stopped
//! first at shutdown. Replication ([`crate::ha`]): a master binds its HA
//! port with the broker's (before the store opens) and serves slaves; a
//! slave follows `ha.master`, refuses sends and registers under the same
//! broker name with its `broker_id`. In controller mode (`controller` set)
//! the role is the controller's to decide and changes at runtime
//! ([`crate::ha::replicas`]): the HA port is bound whatever the role, the
//! node starts as a slave following nobody, and re-registers with the name
//! servers as broker 0 when it becomes master (its own id otherwise).

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mqlab_engine::{clock, Store, StoreConfig};
use mqlab_protocol::body::register::{TopicConfig, TopicConfigWrapper};
use mqlab_protocol::codes::{request, response};
use mqlab_protocol::RemotingCommand;

use crate::controller::BrokerIdentity;
use crate::ha::replicas::{ControllerMode, HaRef, Replication};
use crate::ha::{BrokerRole, HaConfig, HaService};
use crate::metrics::{MetricsServer, NodeLabels, Sources};
use crate::namesrv::{NameServer, Registration};
use crate::remoting::{call, BrokerHandler, RemotingServer, ServerConfig, WireStats};
use crate::{Broker, BrokerConfig};

/// What a node runs.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Store directory.
    pub data_dir: PathBuf,
    /// Where the broker listens (and the address it announces). Default
    /// 127.0.0.1:10911.
    pub listen: SocketAddr,
    /// Where an embedded name server listens, if one runs. Default
    /// 127.0.0.1:9876.
    pub embedded_namesrv: Option<SocketAddr>,
    /// Name servers to register with (besides the embedded one).
    pub namesrv: Vec<SocketAddr>,
    /// Broker group name. Default "broker-a".
    pub broker_name: String,
    /// Cluster name. Default "DefaultCluster".
    pub cluster: String,
    /// Re-registration period, ms. Default 30,000.
    pub register_interval_ms: u64,
    /// The store.
    pub store: StoreConfig,
    /// The broker core.
    pub broker: BrokerConfig,
    /// Require signed requests (ACL 1.0), if set.
    pub acl: Option<Arc<crate::acl::Acl>>,
    /// Most sends being stored at once; past it a send is answered
    /// SYSTEM_BUSY. Default 10,000.
    pub max_pending_sends: usize,
    /// A send that waited longer for a thread to store it is answered
    /// SYSTEM_BUSY [waitTimeMillsInSendQueue], ms. Default 200.
    pub wait_time_ms_in_send_queue: u64,
    /// Most open client connections; more are closed at once. Default
    /// 10,000.
    pub max_connections: usize,
    /// A client connection silent this long is closed, ms. Default
    /// 120,000 (RocketMQ's `serverChannelMaxIdleTimeSeconds`).
    pub idle_timeout_ms: u64,
    /// Where `GET /metrics` (Prometheus text format) is served, if at
    /// all. Default: off.
    pub metrics: Option<SocketAddr>,
    /// Replication: role, HA addresses, timeouts. Default ASYNC_MASTER
    /// listening on the broker's port + 1.
    pub ha: HaConfig,
    /// RocketMQ's brokerId: 0 for a master, 1.. for a slave (see
    /// [`NodeConfig::settle_role`]). Default 0. In controller mode: this
    /// broker's id in its group, 1.., unique and kept for its life.
    pub broker_id: u64,
    /// Controller mode (`enableControllerMode`, `controllerAddr`): the
    /// controller decides the role; `ha.role` is then what this broker is
    /// as master (ASYNC_MASTER or SYNC_MASTER). Default: off.
    pub controller: Option<ControllerMode>,
}

impl NodeConfig {
    /// Defaults for a store in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        NodeConfig {
            data_dir: data_dir.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 10911)),
            embedded_namesrv: Some(SocketAddr::from(([127, 0, 0, 1], 9876))),
            namesrv: Vec::new(),
            broker_name: "broker-a".into(),
            cluster: "DefaultCluster".into(),
            register_interval_ms: 30_000,
            store: StoreConfig::default(),
            broker: BrokerConfig::default(),
            acl: None,
            max_pending_sends: 10_000,
            wait_time_ms_in_send_queue: 200,
            max_connections: 10_000,
            idle_timeout_ms: 120_000,
            metrics: None,
            ha: HaConfig::default(),
            broker_id: 0,
            controller: None,
        }
    }

    /// Makes the broker id agree with the role, as RocketMQ's
    /// `BrokerStartup` does: a master is always broker 0; a slave must not
    /// be 0 (mqlab gives a slave left at 0 the id 1) and needs its master's
    /// HA address.
    /// In controller mode the id stays (it must be 1.., the route's 0 is
    /// given by the controller) and the role must be a master's.
    pub fn settle_role(&mut self) -> Result<(), String> {
        if let Some(c) = &self.controller {
            if c.addrs.is_empty() {
                return Err("controller mode needs controller addresses (controllerAddr)".into());
            }
            if self.broker_id == 0 {
                return Err("controller mode needs a broker id of 1 or more (brokerId, --broker-id), unique in the group".into());
            }
            if !self.ha.role.is_master() {
                return Err("in controller mode the controller makes brokers slaves; brokerRole names what this broker is as master: ASYNC_MASTER or SYNC_MASTER".into());
            }
        } else if self.ha.role.is_master() {
            self.broker_id = 0;
        } else if self.broker_id == 0 {
            self.broker_id = 1;
        }
        self.ha.validate()
    }
}

/// A running node.
pub struct Node {
    /// Stopped first on drop (its threads hold the store).
    repl: Option<Arc<Replication>>,
    store: Option<Arc<Store>>,
    broker: Option<Arc<Broker>>,
    server: Option<Arc<RemotingServer>>,
    metrics: Option<MetricsServer>,
    namesrv: Option<RemotingServer>,
    stop: Arc<AtomicBool>,
    registrar: Option<JoinHandle<()>>,
    addr: SocketAddr,
    cfg: NodeConfig,
    stats: Arc<WireStats>,
    pulls_stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("addr", &self.addr).finish()
    }
}

/// Errors starting a node, naming what failed.
pub type NodeError = String;

fn registration(
    cfg: &NodeConfig,
    addr: SocketAddr,
    repl: &Replication,
    broker: &Broker,
) -> Registration {
    let ha_addr = repl.ha_addr();
    Registration {
        cluster: cfg.cluster.clone(),
        broker_name: cfg.broker_name.clone(),
        broker_id: repl.route_id() as i64,
        broker_addr: addr.to_string(),
        ha_addr: ha_addr.map(|a| a.to_string()).unwrap_or_default(),
        topics: announced_topics(broker),
    }
}

/// RocketMQ's template topic for auto-creation.
pub const AUTO_CREATE_TOPIC: &str = "TBW102";

/// The broker's topics, and TBW102 as RocketMQ announces it with
/// `autoCreateTopicEnable` (its default, and mqlab's behaviour: a send to
/// an unknown topic creates it): 8 queues, perm 7 (read, write, inherit).
/// A producer that looks a new topic up and finds nothing asks for
/// TBW102's route and sends through it.
fn announced_topics(broker: &Broker) -> Vec<TopicConfig> {
    let mut topics: Vec<TopicConfig> = broker
        .topics()
        .iter()
        .map(|(t, q)| TopicConfig::new(t, *q as i32))
        .collect();
    if !topics.iter().any(|t| t.topic_name == AUTO_CREATE_TOPIC) {
        topics.push(TopicConfig {
            perm: 7,
            ..TopicConfig::new(AUTO_CREATE_TOPIC, 8)
        });
    }
    topics
}

fn register_request(reg: &Registration, opaque: i32) -> RemotingCommand {
    let mut w = TopicConfigWrapper::default();
    for t in &reg.topics {
        w.topics.insert(t.topic_name.clone(), t.clone());
    }
    RemotingCommand::request(request::REGISTER_BROKER, opaque)
        .with_field("brokerName", &reg.broker_name)
        .with_field("brokerAddr", &reg.broker_addr)
        .with_field("clusterName", &reg.cluster)
        .with_field("haServerAddr", &reg.ha_addr)
        .with_field("brokerId", reg.broker_id)
        .with_body(w.encode())
}

impl Node {
    /// Opens the store and starts serving.
    pub fn start(mut cfg: NodeConfig) -> Result<Node, NodeError> {
        cfg.settle_role()?;
        // First, so a taken port fails the start before the store opens.
        let mut metrics = cfg.metrics.map(MetricsServer::bind).transpose()?;
        // Bound before the store opens: records name the broker's real
        // address as their store host (RocketMQ's brokerIP1:listenPort),
        // so message ids built from it reach this broker, also when the
        // port was chosen by the system.
        let listener = RemotingServer::bind(cfg.listen).map_err(|e| format!("broker: {e}"))?;
        let addr = listener.local_addr().map_err(|e| format!("broker: {e}"))?;
        // A master's HA port, bound as early (RocketMQ: listenPort + 1).
        // From the configured address: a broker port chosen by the system
        // (0) gives an HA port chosen by the system too, never bound + 1,
        // which another process may hold (tests failed on it now and then).
        let ha_listener = if cfg.ha.role.is_master() || cfg.controller.is_some() {
            let at = cfg.ha.listen_for(cfg.listen);
            Some(TcpListener::bind(at).map_err(|e| format!("HA listener on {at}: {e}"))?)
        } else {
            None
        };
        let mut store_cfg = cfg.store.clone();
        store_cfg.store_host = addr;
        let store = Arc::new(
            Store::open(&cfg.data_dir, store_cfg)
                .map_err(|e| format!("open store {}: {e}", cfg.data_dir.display()))?,
        );
        // Replication starts before the broker: a slave's store refuses
        // puts from the first one, a sync master's waits for its slaves.
        let repl = Arc::new(match (&cfg.controller, ha_listener) {
            (Some(_), Some(l)) => {
                Replication::controlled(store.clone(), cfg.ha.clone(), l, cfg.broker_id)
                    .map_err(|e| format!("replication: {e}"))?
            }
            (_, l) => {
                let ha = HaService::start(store.clone(), cfg.ha.clone(), l)
                    .map_err(|e| format!("replication: {e}"))?;
                Replication::fixed(store.clone(), cfg.ha.clone(), ha, cfg.broker_id)
            }
        });
        let mut broker_cfg = cfg.broker.clone();
        if !cfg.ha.role.is_master() && cfg.controller.is_none() {
            // A slave cannot store what a check decides; its master checks.
            // (Controller mode: the check service runs and skips its rounds
            // while the store is in slave mode.)
            broker_cfg.txn.check_enabled = false;
        }
        let broker = Broker::open(store.clone(), broker_cfg, clock::system())
            .map_err(|e| format!("open broker on {}: {e}", cfg.data_dir.display()))?;
        let mut handler = BrokerHandler::new(broker.clone(), addr)
            .with_max_pending_sends(cfg.max_pending_sends)
            .with_max_queue_wait(Duration::from_millis(cfg.wait_time_ms_in_send_queue));
        if let Some(acl) = &cfg.acl {
            handler = handler.with_acl(acl.clone());
        }
        let stats = handler.stats();
        let pulls_stop = handler.stop_flag();
        let server = RemotingServer::start_on(
            listener,
            ServerConfig {
                listen: addr,
                max_connections: cfg.max_connections,
                idle_timeout_ms: cfg.idle_timeout_ms,
                ..ServerConfig::default()
            },
            Arc::new(handler),
        )
        .map_err(|e| format!("broker: {e}"))?;
        let server = Arc::new(server);
        let (namesrv, embedded) = match cfg.embedded_namesrv {
            Some(at) => {
                let ns = Arc::new(NameServer::new());
                let s = ns
                    .clone()
                    .serve(ServerConfig {
                        listen: at,
                        ..ServerConfig::default()
                    })
                    .map_err(|e| format!("name server: {e}"))?;
                (Some(s), Some(ns))
            }
            None => (None, None),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let registrar = {
            let (cfg, broker, stop, remote, repl) = (
                cfg.clone(),
                broker.clone(),
                stop.clone(),
                cfg.namesrv.clone(),
                repl.clone(),
            );
            std::thread::Builder::new()
                .name("mqlab-registrar".into())
                .spawn(move || {
                    let mut last: Option<(Instant, usize, u64)> = None;
                    let mut opaque = 0;
                    while !stop.load(Ordering::Acquire) {
                        let topics = broker.topics().len();
                        // A role switch re-registers at once.
                        let generation = repl.generation();
                        let due = last.is_none_or(|(t, n, g)| {
                            n != topics
                                || g != generation
                                || t.elapsed() >= Duration::from_millis(cfg.register_interval_ms)
                        });
                        if due {
                            let reg = registration(&cfg, addr, &repl, &broker);
                            if let Some(ns) = &embedded {
                                ns.register(&reg);
                            }
                            for ns in &remote {
                                opaque += 1;
                                let req = register_request(&reg, opaque);
                                match call(*ns, &req, Duration::from_secs(3)) {
                                    Ok(r) if r.code == response::SUCCESS => {}
                                    Ok(r) => eprintln!(
                                        "mqlab broker: register with {ns}: code {} {:?}",
                                        r.code, r.remark
                                    ),
                                    Err(e) => eprintln!("mqlab broker: register with {ns}: {e}"),
                                }
                            }
                            last = Some((Instant::now(), topics, generation));
                        }
                        std::thread::sleep(Duration::from_millis(200));
                    }
                })
                .map_err(|e| format!("registrar thread: {e}"))?
        };
        if let Some(m) = &mut metrics {
            let labels = NodeLabels {
                cluster: cfg.cluster.clone(),
                node_id: cfg.broker_name.clone(),
            };
            m.serve(crate::metrics::registry(
                &labels,
                Sources {
                    broker: Arc::downgrade(&broker),
                    server: Arc::downgrade(&server),
                    stats: stats.clone(),
                },
            ))?;
        }
        if let Some(mode) = &cfg.controller {
            let ha_addr = cfg.ha.listen_for(cfg.listen);
            let me = BrokerIdentity {
                cluster: cfg.cluster.clone(),
                group: cfg.broker_name.clone(),
                id: cfg.broker_id,
                addr,
                // As announced, else the HA port as bound (a
                // system-chosen port when 0).
                ha_addr: cfg.ha.announce.or(repl.bound_ha_addr()).unwrap_or(ha_addr),
            };
            repl.with_controller(mode.clone(), me)?;
        }
        Ok(Node {
            repl: Some(repl),
            store: Some(store),
            broker: Some(broker),
            server: Some(server),
            metrics,
            namesrv,
            stop,
            registrar: Some(registrar),
            addr,
            cfg,
            stats,
            pulls_stop,
        })
    }

    /// The broker's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where a master listens for slaves (None on a slave).
    pub fn ha_addr(&self) -> Option<SocketAddr> {
        self.repl.as_ref().and_then(|r| r.ha_addr())
    }

    /// Replication: the master's or the slave's side.
    /// Locked while the result lives: hold it briefly (a role switch
    /// waits for it). Panics in controller mode before the first role.
    pub fn ha(&self) -> HaRef<'_> {
        self.replication().ha()
    }

    /// The node's replication: role, epoch, route id, HA service.
    pub fn replication(&self) -> &Arc<Replication> {
        self.repl.as_ref().expect("present until shutdown")
    }

    /// The current role (controller mode: as the controller decided;
    /// SLAVE until it named this broker master).
    pub fn role(&self) -> BrokerRole {
        self.replication().role()
    }

    /// The master epoch this broker last learned (0 without a
    /// controller).
    pub fn epoch(&self) -> u32 {
        self.replication().epoch()
    }

    /// The broker id announced in routes now: 0 as master.
    pub fn route_id(&self) -> u64 {
        self.replication().route_id()
    }

    /// The node's configuration (role and broker id settled).
    pub fn config(&self) -> &NodeConfig {
        &self.cfg
    }

    /// Where the metrics endpoint listens, if it runs.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|m| m.local_addr())
    }

    /// The embedded name server's address, if one runs.
    pub fn embedded_namesrv(&self) -> Option<SocketAddr> {
        self.namesrv.as_ref().map(|s| s.local_addr())
    }

    /// What was served on the wire so far.
    pub fn stats(&self) -> &WireStats {
        &self.stats
    }

    /// Open client connections.
    pub fn connections(&self) -> usize {
        self.server.as_ref().map_or(0, |s| s.connections())
    }

    /// The broker core.
    pub fn broker(&self) -> &Arc<Broker> {
        self.broker.as_ref().expect("present until shutdown")
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        self.store.as_ref().expect("present until shutdown")
    }

    /// Graceful shutdown: unregister, stop serving (requests in flight
    /// are answered or failed), persist offsets, clean store shutdown.
    pub fn shutdown(mut self) -> Result<(), NodeError> {
        if let Some(m) = self.metrics.take() {
            m.shutdown();
        }
        self.stop.store(true, Ordering::Release);
        if let Some(r) = self.registrar.take() {
            let _ = r.join();
        }
        for ns in &self.cfg.namesrv {
            let req = RemotingCommand::request(request::UNREGISTER_BROKER, 1)
                .with_field("brokerAddr", self.addr)
                .with_field("brokerName", &self.cfg.broker_name)
                .with_field("clusterName", &self.cfg.cluster)
                .with_field("brokerId", self.route_id());
            if let Err(e) = call(*ns, &req, Duration::from_secs(3)) {
                eprintln!("mqlab broker: unregister from {ns}: {e}");
            }
        }
        // Held pulls answer now, so nothing keeps the broker alive.
        self.pulls_stop.store(true, Ordering::Release);
        if let Some(s) = self.server.take() {
            // The metrics endpoint, the only other holder, is stopped.
            match Arc::try_unwrap(s) {
                Ok(s) => s.shutdown(),
                Err(s) => drop(s),
            }
        }
        if let Some(s) = self.namesrv.take() {
            s.shutdown();
        }
        // After the server (sends in flight get their slave's answer),
        // before the store (its threads hold it).
        if let Some(r) = self.repl.take() {
            r.shutdown();
        }
        let broker = self.broker.take().expect("present until shutdown");
        broker
            .shutdown()
            .map_err(|e| format!("broker shutdown: {e}"))?;
        drop(broker);
        let store = self.store.take().expect("present until shutdown");
        match Arc::try_unwrap(store) {
            Ok(s) => s.shutdown().map_err(|e| format!("store shutdown: {e}")),
            Err(_) => {
                Err("store still in use at shutdown: left for recovery at the next start".into())
            }
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // Without shutdown: a crash as far as the store knows; the
        // registrar stops announcing a dead broker, the metrics endpoint
        // closes.
        if let Some(m) = self.metrics.take() {
            m.shutdown();
        }
        self.stop.store(true, Ordering::Release);
        if let Some(r) = self.registrar.take() {
            let _ = r.join();
        }
        if let Some(r) = self.repl.take() {
            r.shutdown();
        }
    }
}
