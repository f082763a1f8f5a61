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
use mqlab_broker::controller::{Controller, ControllerConfig};
use mqlab_broker::ha::replicas::ControllerMode;
use mqlab_broker::ha::BrokerRole;
use mqlab_broker::namesrv::NameServer;
use mqlab_broker::node::{Node, NodeConfig};
use mqlab_broker::node_config::{apply_file, parse_namesrv};
use mqlab_broker::remoting::{LatencySnapshot, ServerConfig};
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
    /// Serve `GET /metrics` (Prometheus text format: RocketMQ 5's metric
    /// names where they exist, see mqlab_broker::metrics) on this address,
    /// e.g. 127.0.0.1:5557. Off unless given here or in the config
    /// (metricsExporterType = "PROM").
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// Replication role: ASYNC_MASTER, SYNC_MASTER or SLAVE (RocketMQ's
    /// brokerRole). [default: ASYNC_MASTER]
    #[arg(long, value_name = "ROLE")]
    pub role: Option<BrokerRole>,
    /// Where a master listens for slaves (haListenPort). [default: the
    /// broker's port + 1]
    #[arg(long, value_name = "ADDR")]
    pub ha_listen: Option<SocketAddr>,
    /// Controller mode: the HA address announced to the controllers (and
    /// so to slaves) when it is not the bound one, e.g. a fault proxy in
    /// front of it. [default: the HA address as bound]
    #[arg(long, value_name = "ADDR")]
    pub ha_announce: Option<SocketAddr>,
    /// A slave's master: the master's HA address (haMasterAddress), e.g.
    /// 127.0.0.1:10912.
    #[arg(long, value_name = "ADDR")]
    pub ha_master: Option<SocketAddr>,
    /// brokerId: 0 for a master (always), 1.. for a slave. [default: 1
    /// for a slave]
    #[arg(long, value_name = "ID")]
    pub broker_id: Option<u64>,
    /// Most sends between decoding and their answer; past it a send is
    /// answered SYSTEM_BUSY (maxPendingSends). [default: 10000]
    #[arg(long, value_name = "N")]
    pub max_pending_sends: Option<usize>,
    /// A send that waited longer than this for a thread to store it is
    /// answered SYSTEM_BUSY [TIMEOUT_CLEAN_QUEUE], ms
    /// (waitTimeMillsInSendQueue). [default: 200]
    #[arg(long, value_name = "MS")]
    pub wait_time_mills_in_send_queue: Option<u64>,
    /// Write zeros over each commit-log segment before it is used
    /// (warmMapedFileEnable): a new store's first segment is written
    /// before the broker listens (1 GiB by default: seconds), the next
    /// ones on a thread of their own; acknowledging fdatasyncs then do not
    /// commit ext4 block allocations. [default: false]
    #[arg(long, value_name = "BOOL")]
    pub warm_segments: Option<bool>,
    /// Most open client connections; more are closed at once
    /// (maxConnections). [default: 10000]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: Option<u64>,
    /// A client connection silent this long is closed
    /// (serverChannelMaxIdleTimeSeconds). [default: 120]
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout_secs: Option<u64>,
    /// Controller mode: the controllers, `host:port;host:port`
    /// (controllerAddr with enableControllerMode). The controller then
    /// decides who is master; --role names what this broker is as master
    /// (ASYNC_MASTER or SYNC_MASTER) and --broker-id (1..) is required.
    #[arg(long, value_name = "LIST")]
    pub controller: Option<String>,
    /// Controller mode: silence after which the controller counts this
    /// broker dead, ms (controllerHeartBeatTimeoutMills). [default: 10000]
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub controller_heartbeat_timeout_ms: Option<u64>,
    /// Controller mode: an in-sync replica that has not caught up for this
    /// long leaves the in-sync set, ms (haMaxTimeSlaveNotCatchup).
    /// [default: 15000]
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub ha_max_time_slave_not_catchup_ms: Option<u64>,
    /// Controller mode: a SYNC_MASTER answers SLAVE_NOT_AVAILABLE while its
    /// in-sync set (itself included) is smaller (minInSyncReplicas).
    /// [default: 1]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub min_in_sync_replicas: Option<u64>,
    /// Slave reads (slaveReadEnable): a pull of data no longer in memory
    /// (more than accessMessageInMemoryMaxRatio, 40%, of the machine's
    /// memory behind the log's end) is answered suggesting broker 1, so
    /// the consumer pulls that queue from a slave next.
    #[arg(long)]
    pub slave_read_enable: bool,
    /// Record every store file's durable prefix in
    /// <data-dir>/powerloss.marks (StoreConfig::power_loss_marks), so that
    /// `mqlab powerloss --data-dir DIR` can turn the store of a killed
    /// broker into what a power loss would have left (issue 14; a lab
    /// switch: the marks grow by a line per sync).
    #[arg(long)]
    pub power_loss_marks: bool,
    /// Print a status line every N seconds (0 = never).
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub status_secs: u64,
}

/// `mqlab controller`'s options.
#[derive(Debug, Clone, clap::Args)]
pub struct ControllerRequest {
    /// Where this controller listens (brokers and the other controllers
    /// reach it there). [default: its entry in --peers, else
    /// 127.0.0.1:9878]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Every controller of the quorum, this one included, in the same
    /// order on each: `host:port;host:port;host:port`. Without it the
    /// controller is alone.
    #[arg(long, value_name = "LIST")]
    pub peers: Option<String>,
    /// This controller's id: its position in --peers, from 1. [default:
    /// the position of --listen in --peers]
    #[arg(long, value_name = "N")]
    pub id: Option<u64>,
    /// A broker silent this long is dead, ms, unless its heartbeats name
    /// their own timeout (controllerHeartBeatTimeoutMills).
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub heartbeat_timeout_ms: u64,
    /// Keep the Raft log in this directory (controllerStorePath), so a
    /// restarted controller remembers every group. [default: in memory]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Elect a master outside the in-sync set when none of it is alive
    /// (enableElectUncleanMaster; acknowledged messages may be lost).
    #[arg(long)]
    pub unclean_election: bool,
    /// Stop after this many seconds. [default: until Ctrl-C or SIGTERM]
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
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
    cfg.store.power_loss_marks |= r.power_loss_marks;
    if let Some(m) = r.metrics {
        cfg.metrics = Some(m);
    }
    if let Some(role) = r.role {
        cfg.ha.role = role;
    }
    if let Some(a) = r.ha_listen {
        cfg.ha.listen = Some(a);
    }
    if let Some(a) = r.ha_announce {
        cfg.ha.announce = Some(a);
    }
    if let Some(a) = r.ha_master {
        cfg.ha.master = Some(a);
    }
    if let Some(id) = r.broker_id {
        cfg.broker_id = id;
    }
    if let Some(n) = r.max_pending_sends {
        cfg.max_pending_sends = n;
    }
    if let Some(ms) = r.wait_time_mills_in_send_queue {
        cfg.wait_time_ms_in_send_queue = ms;
    }
    if let Some(w) = r.warm_segments {
        cfg.store.warm_segments = w;
    }
    if let Some(n) = r.max_connections {
        cfg.max_connections = n as usize;
    }
    if let Some(s) = r.idle_timeout_secs {
        cfg.idle_timeout_ms = s.saturating_mul(1000);
    }
    if let Some(list) = &r.controller {
        let addrs = parse_namesrv(list).map_err(|e| anyhow!("--controller: {e}"))?;
        let mode = cfg
            .controller
            .get_or_insert_with(|| ControllerMode::new(Vec::new()));
        mode.addrs = addrs;
    }
    if let Some(ms) = r.controller_heartbeat_timeout_ms {
        match cfg.controller.as_mut() {
            Some(m) => m.heartbeat_timeout_ms = ms,
            None => {
                return Err(anyhow!(
                    "--controller-heartbeat-timeout-ms needs --controller"
                ))
            }
        }
    }
    if let Some(ms) = r.ha_max_time_slave_not_catchup_ms {
        cfg.ha.max_time_slave_not_catchup_ms = ms;
    }
    if let Some(n) = r.min_in_sync_replicas {
        cfg.ha.min_in_sync_replicas = n as usize;
    }
    if r.slave_read_enable {
        cfg.broker.slave_read_enable = true;
    }
    cfg.settle_role().map_err(|e| anyhow!(e))?;
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
    match (&cfg.controller, node.ha_addr(), cfg.ha.master) {
        (Some(c), _, _) => println!(
            "controller mode (brokerId {}, {} as master): {} now at epoch {}, controllers {}",
            cfg.broker_id,
            cfg.ha.role,
            node.role(),
            node.epoch(),
            c.addrs
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(";")
        ),
        (None, Some(ha), _) => println!("{} (brokerId 0): HA listening on {ha}", cfg.ha.role),
        (None, None, Some(m)) => println!(
            "{} (brokerId {}): replicating from master {m}",
            cfg.ha.role, cfg.broker_id
        ),
        (None, None, None) => {}
    }
    if let Some(ns) = node.embedded_namesrv() {
        println!("mqlab namesrv (embedded) listening on {ns}");
    }
    for ns in &cfg.namesrv {
        println!("registering with name server {ns}");
    }
    if let Some(m) = node.metrics_addr() {
        println!("metrics (Prometheus) on http://{m}/metrics");
    }
    let every = (r.status_secs > 0).then(|| Duration::from_secs(r.status_secs));
    let mut last = Status::read(&node);
    wait(r.duration, every, || {
        let now = Status::read(&node);
        eprintln!("{}", now.line_since(&last));
        last = now;
    });
    println!("mqlab broker: shutting down");
    node.shutdown().map_err(|e| anyhow!(e))?;
    println!("mqlab broker: shut down cleanly");
    Ok(())
}

/// The counters behind `mqlab broker`'s status line at one moment.
struct Status {
    at: Instant,
    sends_ok: u64,
    sends_failed: u64,
    pulled: u64,
    latency: LatencySnapshot,
    connections: usize,
    flush_behind: u64,
}

impl Status {
    fn read(node: &Node) -> Status {
        let s = node.stats();
        let o = node.store().offsets();
        Status {
            at: Instant::now(),
            sends_ok: s.sends_ok.load(Ordering::Relaxed),
            sends_failed: s.sends_failed.load(Ordering::Relaxed),
            pulled: s.pulled.load(Ordering::Relaxed),
            latency: s.send_latency.snapshot(),
            connections: node.connections(),
            flush_behind: o.written.saturating_sub(o.flushed),
        }
    }

    /// Rates over the interval since `before`; failures and latency of
    /// that interval too, the latency only once sends are timed.
    fn line_since(&self, before: &Status) -> String {
        let secs = self.at.duration_since(before.at).as_secs_f64().max(1e-3);
        let rate = |now: u64, then: u64| now.saturating_sub(then) as f64 / secs;
        let lat = self.latency.since(&before.latency);
        let latency = match lat.count() {
            0 => String::new(),
            n => format!(
                " | Send avg: {:.2} ms, p99 <= {}",
                lat.sum_us as f64 / n as f64 / 1000.0,
                lat.quantile_bound_us(0.99)
                    .map_or("over 3 s".into(), |us| format!("{} ms", us as f64 / 1000.0))
            ),
        };
        format!(
            "Send TPS: {:.0} | Pull TPS: {:.0} | Send failed: {} in {:.0} s ({} in all){latency} | Connections: {} | Flush behind: {} bytes",
            rate(self.sends_ok, before.sends_ok),
            rate(self.pulled, before.pulled),
            self.sends_failed.saturating_sub(before.sends_failed),
            secs,
            self.sends_failed,
            self.connections,
            self.flush_behind,
        )
    }
}

/// The controller configuration `mqlab controller` would run.
pub fn controller_config(r: &ControllerRequest) -> Result<ControllerConfig> {
    let peers = match &r.peers {
        Some(list) => parse_namesrv(list).map_err(|e| anyhow!("--peers: {e}"))?,
        None => vec![r.listen.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 9878)))],
    };
    if peers.is_empty() {
        return Err(anyhow!("--peers lists no controller"));
    }
    let id = match (r.id, r.listen) {
        (Some(id), _) => id,
        (None, Some(l)) => peers
            .iter()
            .position(|p| *p == l)
            .map(|i| i as u64 + 1)
            .ok_or_else(|| anyhow!("--listen {l} is not in --peers; give --id"))?,
        (None, None) if peers.len() == 1 => 1,
        (None, None) => return Err(anyhow!("a controller of a quorum needs --id or --listen")),
    };
    if id == 0 || id as usize > peers.len() {
        return Err(anyhow!("--id {id} outside 1..={}", peers.len()));
    }
    if let Some(l) = r.listen {
        if peers[id as usize - 1] != l {
            return Err(anyhow!(
                "--listen {l} is not entry {id} of --peers ({})",
                peers[id as usize - 1]
            ));
        }
    }
    Ok(ControllerConfig {
        id,
        peers,
        heartbeat_timeout_ms: r.heartbeat_timeout_ms.max(1),
        scan_interval_ms: 1_000.min(r.heartbeat_timeout_ms / 4).max(10),
        unclean_election: r.unclean_election,
        data_dir: r.data_dir.clone(),
    })
}

/// `mqlab controller`.
pub fn cmd_controller(r: ControllerRequest) -> Result<()> {
    let cfg = controller_config(&r)?;
    let c = Controller::start(cfg.clone()).map_err(|e| anyhow!(e))?;
    println!(
        "mqlab controller {} listening on {} (quorum of {}: {}); brokers dead after {} ms of silence{}",
        cfg.id,
        c.local_addr(),
        cfg.peers.len(),
        cfg.peers
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(";"),
        cfg.heartbeat_timeout_ms,
        if cfg.unclean_election {
            "; unclean elections on"
        } else {
            ""
        }
    );
    wait(r.duration, None, || {});
    c.shutdown();
    println!("mqlab controller: shut down");
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        r: BrokerRequest,
    }

    #[test]
    fn metrics_flag_sets_the_address_and_a_bad_one_is_named() {
        let w = Wrapper::try_parse_from(["mqlab", "--metrics", "127.0.0.1:5557"]).unwrap();
        let cfg = node_config(&w.r).unwrap();
        assert_eq!(cfg.metrics, Some("127.0.0.1:5557".parse().unwrap()));
        assert_eq!(
            node_config(&Wrapper::parse_from(["mqlab"]).r)
                .unwrap()
                .metrics,
            None
        );
        let e = Wrapper::try_parse_from(["mqlab", "--metrics", "localhost"])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("--metrics") && e.contains("localhost"), "{e}");
    }

    #[test]
    fn replication_flags() {
        let w = Wrapper::try_parse_from([
            "mqlab",
            "--role",
            "SLAVE",
            "--ha-master",
            "127.0.0.1:10912",
            "--broker-id",
            "2",
        ])
        .unwrap();
        let cfg = node_config(&w.r).unwrap();
        assert_eq!(cfg.ha.role, BrokerRole::Slave);
        assert_eq!(cfg.ha.master, Some("127.0.0.1:10912".parse().unwrap()));
        assert_eq!(cfg.broker_id, 2);
        let w = Wrapper::try_parse_from(["mqlab", "--role", "SLAVE"]).unwrap();
        let e = node_config(&w.r).unwrap_err().to_string();
        assert!(e.contains("--ha-master"), "{e}");
        let e = Wrapper::try_parse_from(["mqlab", "--role", "LEADER"])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("--role") && e.contains("LEADER"), "{e}");
        let w = Wrapper::try_parse_from(["mqlab", "--role", "SYNC_MASTER", "--broker-id", "3"])
            .unwrap();
        let cfg = node_config(&w.r).unwrap();
        assert_eq!((cfg.ha.role, cfg.broker_id), (BrokerRole::SyncMaster, 0));
    }

    #[test]
    fn status_line_gives_interval_rates_and_failures() {
        let t = Instant::now();
        let before = Status {
            at: t,
            sends_ok: 100,
            sends_failed: 2,
            pulled: 50,
            latency: LatencySnapshot::default(),
            connections: 3,
            flush_behind: 0,
        };
        let mut after = Status {
            at: t + Duration::from_secs(10),
            sends_ok: 1100,
            sends_failed: 5,
            pulled: 550,
            latency: LatencySnapshot::default(),
            connections: 4,
            flush_behind: 4096,
        };
        assert_eq!(
            after.line_since(&before),
            "Send TPS: 100 | Pull TPS: 50 | Send failed: 3 in 10 s (5 in all) | Connections: 4 | Flush behind: 4096 bytes"
        );
        // Timed sends add their latency.
        after.latency.counts[3] = 10; // 10 sends of at most 1 ms
        after.latency.sum_us = 5_000;
        assert!(
            after
                .line_since(&before)
                .contains("| Send avg: 0.50 ms, p99 <= 1 ms |"),
            "{}",
            after.line_since(&before)
        );
    }
}
