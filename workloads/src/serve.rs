//! `mqlab broker` and `mqlab namesrv`: mqlab on the wire for clients
//! written by others. `mqlab broker` alone is a working single node: an
//! embedded name server on 127.0.0.1:9876 and the broker on
//! 127.0.0.1:10911, data under `./mqlab-broker-data` (printed at start).
//! Both run until Ctrl-C / SIGTERM (or `--duration`), then shut down
//! gracefully: stop accepting, answer what is in flight, persist offsets,
//! clean store shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use mqlab_broker::namesrv::NameServer;
use mqlab_broker::node::{Node, NodeConfig};
use mqlab_broker::node_config::{apply_file, parse_namesrv};
use mqlab_broker::remoting::ServerConfig;
use mqlab_engine::{BackendKind, FlushKind};

/// `mqlab broker`'s options; a config file's settings come first, flags
/// override them.
#[derive(Debug, Clone, clap::Args)]
pub struct BrokerRequest {
    /// Broker config (TOML with broker.conf's key names: brokerName,
    /// listenPort, namesrvAddr, storePathRootDir, flushDiskType, aclEnable,
    /// ...; see mqlab_broker::node_config).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Store directory. [default: ./mqlab-broker-data]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address the broker listens on and announces. [default: 127.0.0.1:10911]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Name servers to register with, `host:port;host:port`. Without it an
    /// embedded name server runs (see --namesrv-listen).
    #[arg(long, value_name = "LIST")]
    pub namesrv: Option<String>,
    /// Where the embedded name server listens. [default: 127.0.0.1:9876]
    #[arg(long, value_name = "ADDR")]
    pub namesrv_listen: Option<SocketAddr>,
    /// Broker group name. [default: broker-a]
    #[arg(long, value_name = "NAME")]
    pub broker_name: Option<String>,
    /// Flush strategy: sync, group, async or pool. [default: async, as
    /// RocketMQ's ASYNC_FLUSH]
    #[arg(long, value_name = "STRATEGY")]
    pub flush: Option<FlushKind>,
    /// I/O backend: pwrite, mmap or uring. [default: pwrite]
    #[arg(long, value_name = "BACKEND")]
    pub backend: Option<BackendKind>,
    /// Stop after this many seconds (tests, bounded runs). [default: until
    /// Ctrl-C or SIGTERM]
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Print a status line every N seconds (0 = never).
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub status_secs: u64,
}

/// `mqlab namesrv`'s options.
#[derive(Debug, Clone, clap::Args)]
pub struct NamesrvRequest {
    /// Where to listen.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9876")]
    pub listen: SocketAddr,
    /// Stop after this many seconds. [default: until Ctrl-C or SIGTERM]
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
}

/// Blocks until Ctrl-C / SIGTERM or `duration` seconds, calling `tick`
/// every `every` (if any).
fn wait(duration: Option<f64>, every: Option<Duration>, mut tick: impl FnMut()) {
    let t = Instant::now();
    let mut last = Instant::now();
    while !crate::util::stopped() && duration.is_none_or(|d| t.elapsed().as_secs_f64() < d) {
        std::thread::sleep(Duration::from_millis(50));
        if every.is_some_and(|e| last.elapsed() >= e) {
            tick();
            last = Instant::now();
        }
    }
}

/// The node configuration `mqlab broker` would run.
pub fn node_config(r: &BrokerRequest) -> Result<NodeConfig> {
    let mut cfg = NodeConfig::new(PathBuf::from("mqlab-broker-data"));
    if let Some(f) = &r.config {
        apply_file(&mut cfg, f).map_err(|e| anyhow!(e))?;
    }
    if let Some(d) = &r.data_dir {
        cfg.data_dir = d.clone();
    }
    if let Some(l) = r.listen {
        cfg.listen = l;
    }
    if let Some(list) = &r.namesrv {
        cfg.namesrv = parse_namesrv(list).map_err(|e| anyhow!("--namesrv: {e}"))?;
        cfg.embedded_namesrv = None;
    }
    if let Some(l) = r.namesrv_listen {
        cfg.embedded_namesrv = Some(l);
    }
    if let Some(n) = &r.broker_name {
        cfg.broker_name = n.clone();
    }
    if let Some(k) = r.flush {
        cfg.store.flush.kind = k;
    }
    if let Some(b) = r.backend {
        cfg.store.backend = b;
    }
    Ok(cfg)
}

/// `mqlab broker`.
pub fn cmd_broker(r: BrokerRequest) -> Result<()> {
    let cfg = node_config(&r)?;
    let node = Node::start(cfg.clone()).map_err(|e| anyhow!(e))?;
    println!(
        "mqlab broker {} ({} flush, {} backend) listening on {}; data in {}",
        cfg.broker_name,
        cfg.store.flush.kind,
        cfg.store.backend.name(),
        node.addr(),
        cfg.data_dir.display()
    );
    if let Some(ns) = node.embedded_namesrv() {
        println!("mqlab namesrv (embedded) listening on {ns}");
    }
    for ns in &cfg.namesrv {
        println!("registering with name server {ns}");
    }
    let every = (r.status_secs > 0).then(|| Duration::from_secs(r.status_secs));
    let mut last = (0u64, 0u64, Instant::now());
    wait(r.duration, every, || {
        let s = node.stats();
        let (ok, pulled) = (
            s.sends_ok.load(Ordering::Relaxed),
            s.pulled.load(Ordering::Relaxed),
        );
        let secs = last.2.elapsed().as_secs_f64().max(1e-3);
        eprintln!(
            "Send TPS: {:.0} | Pull TPS: {:.0} | Send Failed: {} | Connections: {} | Backlog bytes (written - flushed): {}",
            (ok - last.0) as f64 / secs,
            (pulled - last.1) as f64 / secs,
            s.sends_failed.load(Ordering::Relaxed),
            node.connections(),
            {
                let o = node.store().offsets();
                o.written - o.flushed
            }
        );
        last = (ok, pulled, Instant::now());
    });
    println!("mqlab broker: shutting down");
    node.shutdown().map_err(|e| anyhow!(e))?;
    println!("mqlab broker: shut down cleanly");
    Ok(())
}

/// `mqlab namesrv`.
pub fn cmd_namesrv(r: NamesrvRequest) -> Result<()> {
    let server = Arc::new(NameServer::new())
        .serve(ServerConfig {
            listen: r.listen,
            ..ServerConfig::default()
        })
        .with_context(|| format!("start the name server on {}", r.listen))?;
    println!("mqlab namesrv listening on {}", server.local_addr());
    wait(r.duration, None, || {});
    server.shutdown();
    println!("mqlab namesrv: shut down");
    Ok(())
}
