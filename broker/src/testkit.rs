//! Helpers for tests and the lab, not part of the broker: the pieces of
//! an in-process cluster on loopback (a name server, controllers, node
//! configurations with small stores and short HA intervals, every port
//! chosen by the system), bounded waits and route look-ups. The broker's
//! and the client's integration tests share them; the broker itself uses
//! none of this. Everything here panics on what a test cannot go on from
//! (a port that does not bind, a name server that does not answer).

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mqlab_engine::{FlushKind, StoreConfig};
use mqlab_protocol::body::route::TopicRouteData;
use mqlab_protocol::codes::{request, response};
use mqlab_protocol::RemotingCommand;

use crate::controller::{Controller, ControllerConfig};
use crate::ha::{BrokerRole, HaConfig};
use crate::namesrv::NameServer;
use crate::node::{Node, NodeConfig, NodeError};
use crate::remoting::{RemotingServer, ServerConfig};

/// 127.0.0.1 port 0: a port the system chooses.
pub fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// How often [`wait_for`] polls.
pub const POLL: Duration = Duration::from_millis(10);

/// Polls `done` every [`POLL`] until it holds; after `secs` seconds
/// panics, naming `seed` and `what`.
pub fn wait_for(what: &str, seed: u64, secs: u64, done: impl FnMut() -> bool) {
    wait_every(POLL, Some(seed), what, secs, done)
}

/// [`wait_for`] polling every `every`, and naming `seed` only if there is
/// one.
pub fn wait_every(
    every: Duration,
    seed: Option<u64>,
    what: &str,
    secs: u64,
    mut done: impl FnMut() -> bool,
) {
    let t = Instant::now();
    while !done() {
        if t.elapsed() >= Duration::from_secs(secs) {
            match seed {
                Some(seed) => {
                    panic!("seed {seed:#x}: timed out after {secs} s waiting for {what}")
                }
                None => panic!("timed out after {secs} s waiting for {what}"),
            }
        }
        std::thread::sleep(every);
    }
}

/// A name server served on loopback; its address is `local_addr()`.
pub fn namesrv() -> RemotingServer {
    Arc::new(NameServer::new())
        .serve(ServerConfig {
            listen: loopback(),
            ..ServerConfig::default()
        })
        .expect("a name server on loopback")
}

/// `n` controllers in one Raft group on loopback (ids 1..=n), in memory,
/// scanning for dead masters every 100 ms; a broker is dead after
/// `heartbeat_timeout_ms` of silence.
pub fn controllers(n: usize, heartbeat_timeout_ms: u64) -> Vec<Controller> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind(loopback()).expect("a controller port"))
        .collect();
    let peers: Vec<SocketAddr> = listeners
        .iter()
        .map(|l| l.local_addr().expect("a bound address"))
        .collect();
    listeners
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            Controller::start_on(
                l,
                ControllerConfig {
                    id: i as u64 + 1,
                    peers: peers.clone(),
                    heartbeat_timeout_ms,
                    scan_interval_ms: 100,
                    unclean_election: false,
                    data_dir: None,
                },
            )
            .expect("a controller")
        })
        .collect()
}

/// A small store for replication tests: segments of `segment_bytes`
/// (several in a test, so blanks and rolls are replicated too), messages
/// of 32 KiB at most, flushed with `flush` every 5 ms (a page is enough,
/// thoroughly every 50 ms), a checkpoint every 50 ms.
pub fn store_config(segment_bytes: u64, flush: FlushKind) -> StoreConfig {
    let mut s = StoreConfig::small();
    s.segment_bytes = segment_bytes;
    s.max_message_bytes = 32 * 1024;
    s.flush.kind = flush;
    s.flush.flush_interval_ms = 5;
    s.flush.flush_least_pages = 1;
    s.flush.flush_thorough_interval_ms = 50;
    s.checkpoint_interval_ms = 50;
    s
}

/// Replication as `role` (a slave following `master`'s HA address) with
/// the HA port on loopback, heartbeats every 200 ms, housekeeping every
/// 5 s, a 3 s slave timeout and reconnects after 20 ms.
pub fn ha_config(role: BrokerRole, master: Option<SocketAddr>) -> HaConfig {
    HaConfig {
        role,
        listen: Some(loopback()),
        master,
        heartbeat_interval_ms: 200,
        housekeeping_interval_ms: 5_000,
        slave_timeout_ms: 3_000,
        reconnect_backoff_ms: 20,
        ..HaConfig::default()
    }
}

/// A node of broker group `broker_name` in `dir`, listening on loopback,
/// without an embedded name server, registering every 500 ms with the
/// name servers it is given (none here).
pub fn node_config(dir: &Path, broker_name: &str, store: StoreConfig, ha: HaConfig) -> NodeConfig {
    NodeConfig {
        listen: loopback(),
        embedded_namesrv: None,
        broker_name: broker_name.into(),
        register_interval_ms: 500,
        store,
        ha,
        ..NodeConfig::new(dir)
    }
}

/// Starts a node, retrying every 100 ms for up to `retry_for` while it
/// fails (a dropped node on the same directory may still hold it).
pub fn start_node(cfg: NodeConfig, retry_for: Duration) -> Result<Node, NodeError> {
    let t = Instant::now();
    loop {
        match Node::start(cfg.clone()) {
            Ok(n) => return Ok(n),
            Err(e) if t.elapsed() < retry_for => {
                eprintln!("retrying a node start: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e),
        }
    }
}

/// The route of `topic` as the name server at `ns` has it
/// (GET_ROUTEINFO_BY_TOPIC, version 401); None when it answers anything
/// but SUCCESS.
pub fn route(ns: SocketAddr, topic: &str) -> Option<TopicRouteData> {
    let mut req =
        RemotingCommand::request(request::GET_ROUTEINFO_BY_TOPIC, 1).with_field("topic", topic);
    req.version = 401;
    let r = crate::remoting::call(ns, &req, Duration::from_secs(10)).expect("a route answer");
    (r.code == response::SUCCESS).then(|| TopicRouteData::decode(&r.body).expect("a route body"))
}

/// An unfiltered pull of at most `max_msgs` messages of `topic`'s
/// `queue` from `offset` on, answered at once (no long polling).
pub fn plain_pull(topic: &str, queue: u32, offset: u64, max_msgs: usize) -> crate::PullRequest {
    crate::PullRequest {
        mq: crate::MessageQueue::new(topic, queue),
        offset,
        max_msgs,
        filter: None,
        suspend_ms: 0,
    }
}
