//! Helpers shared by the messaging tests: a store with small files and fast
//! services, a broker with every interval in milliseconds, reached in
//! process or over loopback TCP ([`Transport`], [`both!`]), and waiting.
//!
//! Every scenario that goes through a client runs on both transports
//! (`name::local`, `name::tcp`), those on a manual clock included (the
//! lab then serves a broker on that clock). Local only, and why:
//! - `messaging_sim_crash`: the store lives on the simulated disk
//!   (`SimEnv`), which a node (real files) cannot open, and the power loss
//!   is the simulator's, in process;
//! - `messaging_retention`: no client involved (the store's retention,
//!   driven by a disk-usage dial and a manual clock);
//! - `messaging_clustering::offsets_file_has_rocketmq_shape`: no client
//!   involved (the broker's offsets file).
#![allow(dead_code, unused_macros, unused_imports)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mqlab_broker::node::{Node, NodeConfig};
use mqlab_broker::remoting::{BrokerHandler, RemotingServer, ServerConfig};
use mqlab_broker::{Broker, BrokerConfig};
use mqlab_client::api::BrokerApi;
use mqlab_client::consumer::{ConsumeFromWhere, ConsumerConfig};
use mqlab_client::tcp::TcpBroker;
use mqlab_engine::clock::{self, Clock, ManualClock};
use mqlab_engine::{FlushKind, Store, StoreConfig};

/// Small segments, fast flusher and checkpoint.
pub fn store_config() -> StoreConfig {
    let mut cfg = StoreConfig::small();
    cfg.segment_bytes = 128 * 1024;
    cfg.max_message_bytes = 8 * 1024;
    cfg.cq_units_per_file = 64;
    cfg.index_slots = 64;
    cfg.index_items = 256;
    cfg.checkpoint_interval_ms = 20;
    cfg.flush.kind = FlushKind::Async;
    cfg.flush.flush_interval_ms = 5;
    cfg.flush.flush_least_pages = 1;
    cfg.flush.flush_thorough_interval_ms = 20;
    cfg
}

/// Every broker interval in milliseconds; the check service off (tests
/// run rounds by hand); 1 ms retry delays.
pub fn broker_config() -> BrokerConfig {
    let mut cfg = BrokerConfig {
        offset_flush_interval_ms: 20,
        short_polling_ms: 20,
        delay_levels_ms: vec![1; 18],
        ..BrokerConfig::default()
    };
    cfg.txn.check_enabled = false;
    cfg
}

/// How a test's clients reach its broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// In process: clients call the `Broker` itself (`local.rs`).
    Local,
    /// Over loopback TCP: every client a `TcpBroker` of its own (its own
    /// connections, as a separate process would have) against a `Node` on
    /// 127.0.0.1:0 with the same store and broker config. A test driving a
    /// manual clock gets the node's remoting server (`BrokerHandler` on a
    /// `RemotingServer`) around a broker on that clock instead, and its
    /// clients stamp times with it too.
    Tcp,
}

/// Turns `fn name(t: Transport)` into two tests, `name::local` and
/// `name::tcp`; `both!(name, tcp_ignore = "why")` marks the TCP one
/// ignored.
macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[test]
            fn local() {
                super::$name($crate::messaging_support::Transport::Local)
            }
            #[test]
            fn tcp() {
                super::$name($crate::messaging_support::Transport::Tcp)
            }
        }
    };
    ($name:ident, tcp_ignore = $why:literal) => {
        mod $name {
            #[test]
            fn local() {
                super::$name($crate::messaging_support::Transport::Local)
            }
            #[test]
            #[ignore = $why]
            fn tcp() {
                super::$name($crate::messaging_support::Transport::Tcp)
            }
        }
    };
}
pub(crate) use both;

/// What serves the broker over TCP.
enum Served {
    Node(Box<Node>),
    /// A node's remoting server around a broker on a manual clock.
    Server {
        server: RemotingServer,
        stop_pulls: Arc<AtomicBool>,
    },
}

/// A store and a broker in a fresh temporary directory, and how clients
/// reach it.
pub struct Lab {
    pub dir: tempfile::TempDir,
    pub store: Arc<Store>,
    pub broker: Arc<Broker>,
    pub transport: Transport,
    clock: Arc<dyn Clock>,
    served: Option<(Served, SocketAddr)>,
}

fn node_config(dir: &std::path::Path, cfg: BrokerConfig) -> NodeConfig {
    NodeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        embedded_namesrv: None,
        store: store_config(),
        broker: cfg,
        ..NodeConfig::new(dir)
    }
}

impl Lab {
    pub fn new(t: Transport) -> Lab {
        Self::with(t, broker_config())
    }

    /// A broker with `cfg`, on the system clock.
    pub fn with(t: Transport, cfg: BrokerConfig) -> Lab {
        let dir = tempfile::tempdir().unwrap();
        match t {
            Transport::Local => Self::local(dir, cfg, clock::system()),
            Transport::Tcp => Self::node(dir, cfg),
        }
    }

    /// A broker with `cfg` on a manual clock, which TCP clients share.
    pub fn manual(t: Transport, cfg: BrokerConfig, clock: Arc<ManualClock>) -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let mut lab = Self::local(dir, cfg, clock);
        if t == Transport::Tcp {
            let handler =
                BrokerHandler::new(lab.broker.clone(), "127.0.0.1:10911".parse().unwrap());
            let stop_pulls = handler.stop_flag();
            let server = RemotingServer::start(
                ServerConfig {
                    listen: "127.0.0.1:0".parse().unwrap(),
                    ..ServerConfig::default()
                },
                Arc::new(handler),
            )
            .unwrap();
            let addr = server.local_addr();
            lab.transport = Transport::Tcp;
            lab.served = Some((Served::Server { server, stop_pulls }, addr));
        }
        lab
    }

    fn local(dir: tempfile::TempDir, cfg: BrokerConfig, clock: Arc<dyn Clock>) -> Lab {
        let store = Arc::new(Store::open(dir.path(), store_config()).unwrap());
        let broker = Broker::open(store.clone(), cfg, clock.clone()).unwrap();
        Lab {
            dir,
            store,
            broker,
            transport: Transport::Local,
            clock,
            served: None,
        }
    }

    fn node(dir: tempfile::TempDir, cfg: BrokerConfig) -> Lab {
        let node = Node::start(node_config(dir.path(), cfg)).unwrap();
        let addr = node.addr();
        Lab {
            store: node.store().clone(),
            broker: node.broker().clone(),
            dir,
            transport: Transport::Tcp,
            clock: clock::system(),
            served: Some((Served::Node(Box::new(node)), addr)),
        }
    }

    /// A client's way to the broker: the broker itself in process, a new
    /// `TcpBroker` over TCP.
    pub fn api(&self) -> Arc<dyn BrokerApi> {
        match self.tcp() {
            Some(t) => t,
            None => self.broker.clone(),
        }
    }

    /// A new `TcpBroker` to the broker (None in process).
    pub fn tcp(&self) -> Option<Arc<TcpBroker>> {
        let (_, addr) = self.served.as_ref()?;
        Some(Arc::new(
            TcpBroker::new(*addr, "mqlab-test", self.dir.path().join("clients"))
                .with_clock(self.clock.clone()),
        ))
    }

    /// The broker's address over TCP.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.served.as_ref().map(|(_, a)| *a)
    }

    /// Crash: broker and store dropped without shutdown (over TCP, the
    /// node too); reopened on the same directory (a new node, on a new
    /// port, over TCP). System clock only.
    pub fn crash_and_reopen(self, cfg: BrokerConfig) -> Lab {
        let Lab {
            dir,
            store,
            broker,
            transport,
            served,
            ..
        } = self;
        drop(broker);
        match served {
            None => {}
            Some((Served::Node(node), _)) => drop(node),
            Some((Served::Server { .. }, _)) => panic!("crash over TCP is a node's (system clock)"),
        }
        // The directory lock admits one store at a time: wait (bounded)
        // until consumer threads have let go of the old one.
        let deadline = Instant::now() + Duration::from_secs(20);
        while Arc::strong_count(&store) > 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(store);
        match transport {
            Transport::Local => Self::local(dir, cfg, clock::system()),
            Transport::Tcp => Self::node(dir, cfg),
        }
    }

    /// Clean shutdown of broker and store (over TCP, of the node).
    /// Producers and consumers must be gone (their threads release the
    /// broker within moments).
    pub fn shutdown(self) {
        let Lab {
            store,
            broker,
            served,
            ..
        } = self;
        match served {
            Some((Served::Node(node), _)) => {
                drop((broker, store));
                return node.shutdown().unwrap();
            }
            Some((Served::Server { server, stop_pulls }, _)) => {
                stop_pulls.store(true, Ordering::Release);
                server.shutdown();
            }
            None => {}
        }
        broker.shutdown().unwrap();
        let mut broker = Some(broker);
        let mut store = store;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(b) = broker.take() {
                if let Err(b) = Arc::try_unwrap(b) {
                    broker = Some(b);
                }
            }
            if broker.is_none() {
                match Arc::try_unwrap(store) {
                    Ok(s) => return s.shutdown().unwrap(),
                    Err(s) => store = s,
                }
            }
            assert!(
                Instant::now() < deadline,
                "broker or store still shared at shutdown"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// A consumer config with every interval in milliseconds, starting at the
/// first offset.
pub fn consumer_config(group: &str, client: &str) -> ConsumerConfig {
    let mut c = ConsumerConfig::new(group);
    c.client_id = client.to_string();
    c.from_where = ConsumeFromWhere::FirstOffset;
    c.consume_threads = 4;
    c.pull_suspend_ms = 200;
    c.pull_error_delay_ms = 20;
    c.rebalance_interval_ms = 50;
    c.lock_renew_interval_ms = 50;
    c.client_lock_expiry_ms = 30_000;
    c.suspend_current_queue_ms = 5;
    c.send_back_retry_ms = 20;
    c.persist_interval_ms = 20;
    c
}

/// Waits until `f` holds, at most `secs` seconds; panics with `what`.
pub fn wait_for(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The seed of a test: MQLAB_SEED or a fixed default, printed.
pub fn seed(default: u64) -> u64 {
    let s = std::env::var("MQLAB_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    eprintln!("seed {s} (replay with MQLAB_SEED={s})");
    s
}

/// Queues of `topic` a push consumer owns (its group's retry queue aside).
pub fn owned(c: &mqlab_client::consumer::push::PushConsumer, topic: &str) -> usize {
    c.assignment().iter().filter(|q| q.topic == topic).count()
}
