//! `mqlab broker --config FILE`: a TOML file whose keys are RocketMQ's
//! broker.conf names where they exist, so an operator's settings carry
//! over. Unknown keys are refused with their name (a typo must not pass
//! silently).
//!
//! | key | meaning | default |
//! |---|---|---|
//! | `brokerClusterName` | cluster | DefaultCluster |
//! | `brokerName` | broker group | broker-a |
//! | `brokerIP1` | address to listen on and announce | 127.0.0.1 |
//! | `listenPort` | broker port | 10911 |
//! | `namesrvAddr` | name servers, `host:port;host:port`; none = embedded on 127.0.0.1:9876 | none |
//! | `storePathRootDir` | store directory | (the command line's) |
//! | `flushDiskType` | `SYNC_FLUSH` (group commit) or `ASYNC_FLUSH` | ASYNC_FLUSH |
//! | `flushStrategy` | mqlab's: `sync`, `group`, `async`, `pool` (overrides flushDiskType) | - |
//! | `transientStorePoolEnable` | `true` = the `pool` strategy | false |
//! | `ioBackend` | mqlab's: `pwrite`, `mmap`, `uring` | pwrite |
//! | `mappedFileSizeCommitLog` | commit-log segment bytes | 1 GiB |
//! | `maxMessageSize` | largest body, bytes | 4 MiB |
//! | `warmMapedFileEnable` | write zeros over each commit-log segment before use (a new store's first at open, the next ones on a thread); see `StoreConfig::warm_segments` | false |
//! | `brokerRole` | `ASYNC_MASTER`, `SYNC_MASTER` or `SLAVE` (see [`crate::ha`]) | ASYNC_MASTER |
//! | `brokerId` | a slave's id, 1.. (a SLAVE left at 0 gets 1); a master is always 0, as RocketMQ forces it | 0 |
//! | `haListenPort` | where a master listens for slaves (on brokerIP1) | listenPort + 1 |
//! | `haMasterAddress` | a slave's master, `host:port` of its HA port (numeric IP) | none (a SLAVE needs it) |
//! | `enableControllerMode` | the controller decides the role (see [`crate::ha::replicas`]); needs `controllerAddr` and `brokerId` >= 1 | false |
//! | `controllerAddr` | controllers, `host:port;host:port` | none |
//! | `controllerHeartBeatTimeoutMills` | silence after which the controller counts this broker dead | 10000 |
//! | `haMaxTimeSlaveNotCatchup` | controller mode: ms an in-sync replica may go without catching up before it leaves the in-sync set | 15000 |
//! | `slaveReadEnable` | a pull of data no longer in memory suggests `whichBrokerWhenConsumeSlowly` (see [`crate::BrokerConfig`]) | false |
//! | `accessMessageInMemoryMaxRatio` | percent of the memory that pulled data may lie behind the log's end and count as in memory | 40 |
//! | `whichBrokerWhenConsumeSlowly` | the broker id suggested then | 1 |
//! | `minInSyncReplicas` | controller mode: a SYNC_MASTER answers SLAVE_NOT_AVAILABLE while its in-sync set is smaller | 1 |
//! | `aclEnable`, `aclFile` | require signed requests, accounts file | false |
//! | `maxPendingSends` | mqlab's back-pressure limit | 10000 |
//! | `waitTimeMillsInSendQueue` | a send that waited longer for a thread is answered SYSTEM_BUSY `[TIMEOUT_CLEAN_QUEUE]`, ms | 200 |
//! | `maxConnections` | mqlab's: most open client connections (more are closed at once) | 10000 |
//! | `serverChannelMaxIdleTimeSeconds` | a client connection silent this long is closed | 120 |
//! | `metricsExporterType` | `PROM` serves `GET /metrics` (Prometheus text) on the host and port below; `DISABLE` | DISABLE |
//! | `metricsPromExporterHost` | metrics address (numeric IP) | brokerIP1 |
//! | `metricsPromExporterPort` | metrics port | 5557 |

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mqlab_engine::{BackendKind, FlushKind};

use crate::acl::Acl;
use crate::ha::replicas::ControllerMode;
use crate::node::NodeConfig;

#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct File {
    broker_cluster_name: Option<String>,
    broker_name: Option<String>,
    #[serde(rename = "brokerIP1")]
    broker_ip1: Option<IpAddr>,
    listen_port: Option<u16>,
    namesrv_addr: Option<String>,
    store_path_root_dir: Option<PathBuf>,
    flush_disk_type: Option<String>,
    flush_strategy: Option<String>,
    transient_store_pool_enable: Option<bool>,
    io_backend: Option<String>,
    mapped_file_size_commit_log: Option<u64>,
    warm_maped_file_enable: Option<bool>,
    max_message_size: Option<u32>,
    broker_role: Option<String>,
    broker_id: Option<u64>,
    ha_listen_port: Option<u16>,
    ha_master_address: Option<String>,
    enable_controller_mode: Option<bool>,
    controller_addr: Option<String>,
    controller_heart_beat_timeout_mills: Option<u64>,
    ha_max_time_slave_not_catchup: Option<u64>,
    min_in_sync_replicas: Option<usize>,
    slave_read_enable: Option<bool>,
    access_message_in_memory_max_ratio: Option<u32>,
    which_broker_when_consume_slowly: Option<u64>,
    acl_enable: Option<bool>,
    acl_file: Option<PathBuf>,
    max_pending_sends: Option<usize>,
    wait_time_mills_in_send_queue: Option<u64>,
    max_connections: Option<usize>,
    server_channel_max_idle_time_seconds: Option<u64>,
    metrics_exporter_type: Option<String>,
    metrics_prom_exporter_host: Option<IpAddr>,
    metrics_prom_exporter_port: Option<u16>,
}

/// RocketMQ's default `metricsPromExporterPort`.
pub const DEFAULT_METRICS_PORT: u16 = 5557;

/// Parses `host:port;host:port` (RocketMQ's namesrvAddr).
pub fn parse_namesrv(list: &str) -> Result<Vec<SocketAddr>, String> {
    list.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse().map_err(|e| {
                format!("namesrvAddr entry {s:?}: {e} (expected host:port with a numeric IP)")
            })
        })
        .collect()
}

/// Applies a config file's settings to `cfg`. Paths in the file are taken
/// relative to the file's folder.
pub fn apply_file(cfg: &mut NodeConfig, path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("read config {}: {e}", path.display()))?;
    apply_toml(cfg, &text, path.parent().unwrap_or(Path::new(".")))
        .map_err(|e| format!("config {}: {e}", path.display()))
}

/// Applies TOML settings (see the module docs) to `cfg`.
pub fn apply_toml(cfg: &mut NodeConfig, text: &str, base: &Path) -> Result<(), String> {
    let f: File = toml::from_str(text).map_err(|e| e.to_string())?;
    if let Some(c) = f.broker_cluster_name {
        cfg.cluster = c;
    }
    if let Some(n) = f.broker_name {
        cfg.broker_name = n;
    }
    if let Some(ip) = f.broker_ip1 {
        cfg.listen.set_ip(ip);
    }
    if let Some(p) = f.listen_port {
        cfg.listen.set_port(p);
    }
    if let Some(list) = f.namesrv_addr {
        cfg.namesrv = parse_namesrv(&list)?;
        cfg.embedded_namesrv = None;
    }
    if let Some(d) = f.store_path_root_dir {
        cfg.data_dir = base.join(d);
    }
    match f.flush_disk_type.as_deref() {
        None => {}
        Some("SYNC_FLUSH") => cfg.store.flush.kind = FlushKind::Group,
        Some("ASYNC_FLUSH") => cfg.store.flush.kind = FlushKind::Async,
        Some(o) => {
            return Err(format!(
                "flushDiskType {o:?}: expected SYNC_FLUSH or ASYNC_FLUSH"
            ))
        }
    }
    if f.transient_store_pool_enable == Some(true) {
        cfg.store.flush.kind = FlushKind::Pool;
    }
    if let Some(s) = f.flush_strategy {
        cfg.store.flush.kind = s.parse().map_err(|e| format!("flushStrategy: {e}"))?;
    }
    if let Some(b) = f.io_backend {
        cfg.store.backend = b
            .parse::<BackendKind>()
            .map_err(|e| format!("ioBackend: {e}"))?;
    }
    if let Some(n) = f.mapped_file_size_commit_log {
        cfg.store.segment_bytes = n;
    }
    if let Some(w) = f.warm_maped_file_enable {
        cfg.store.warm_segments = w;
    }
    if let Some(n) = f.max_message_size {
        cfg.store.max_message_bytes = n;
    }
    if let Some(r) = f.broker_role {
        cfg.ha.role = r.parse()?;
    }
    if let Some(id) = f.broker_id {
        cfg.broker_id = id;
    }
    if let Some(p) = f.ha_listen_port {
        cfg.ha.listen = Some(SocketAddr::new(cfg.listen.ip(), p));
    }
    if let Some(a) = f.ha_master_address {
        cfg.ha.master = Some(a.trim().parse().map_err(|e| {
            format!("haMasterAddress {a:?}: {e} (expected host:port with a numeric IP)")
        })?);
    }
    if let Some(ms) = f.ha_max_time_slave_not_catchup {
        cfg.ha.max_time_slave_not_catchup_ms = ms.max(1);
    }
    if let Some(n) = f.min_in_sync_replicas {
        cfg.ha.min_in_sync_replicas = n.max(1);
    }
    if let Some(b) = f.slave_read_enable {
        cfg.broker.slave_read_enable = b;
    }
    if let Some(r) = f.access_message_in_memory_max_ratio {
        if r > 100 {
            return Err(format!(
                "accessMessageInMemoryMaxRatio {r}: a percentage, 0..=100"
            ));
        }
        cfg.broker.access_message_in_memory_max_ratio = r;
    }
    if let Some(id) = f.which_broker_when_consume_slowly {
        cfg.broker.which_broker_when_consume_slowly = id;
    }
    // As RocketMQ: controllerAddr counts only with enableControllerMode.
    match (f.enable_controller_mode, &f.controller_addr) {
        (Some(true), None) => return Err("enableControllerMode = true needs controllerAddr".into()),
        (Some(true), Some(list)) => {
            let addrs = parse_namesrv(list).map_err(|e| format!("controllerAddr: {e}"))?;
            let mut mode = ControllerMode::new(addrs);
            if let Some(ms) = f.controller_heart_beat_timeout_mills {
                mode.heartbeat_timeout_ms = ms.max(1);
            }
            cfg.controller = Some(mode);
        }
        (Some(false), _) => cfg.controller = None,
        (None, _) => {}
    }
    cfg.settle_role()?;
    match (f.acl_enable.unwrap_or(false), f.acl_file) {
        (true, Some(file)) => cfg.acl = Some(Arc::new(Acl::load(&base.join(file))?)),
        (true, None) => return Err("aclEnable = true needs aclFile".into()),
        (false, _) => {}
    }
    if let Some(n) = f.max_pending_sends {
        cfg.max_pending_sends = n;
    }
    if let Some(ms) = f.wait_time_mills_in_send_queue {
        cfg.wait_time_ms_in_send_queue = ms;
    }
    if let Some(n) = f.max_connections {
        if n == 0 {
            return Err("maxConnections = 0 would refuse every client".into());
        }
        cfg.max_connections = n;
    }
    if let Some(s) = f.server_channel_max_idle_time_seconds {
        if s == 0 {
            return Err("serverChannelMaxIdleTimeSeconds = 0 would close every connection".into());
        }
        cfg.idle_timeout_ms = s.saturating_mul(1000);
    }
    // As RocketMQ: host and port count only with PROM; the host defaults
    // to brokerIP1 (the broker's listen address).
    match f.metrics_exporter_type.as_deref() {
        None | Some("DISABLE") => {}
        Some("PROM") => {
            let ip = f.metrics_prom_exporter_host.unwrap_or(cfg.listen.ip());
            let port = f.metrics_prom_exporter_port.unwrap_or(DEFAULT_METRICS_PORT);
            cfg.metrics = Some(SocketAddr::new(ip, port));
        }
        Some(o) => {
            return Err(format!(
                "metricsExporterType {o:?}: mqlab serves PROM (a Prometheus endpoint) or DISABLE"
            ))
        }
    }
    cfg.store.sanitize().map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_conf_names_carry_over() {
        let mut cfg = NodeConfig::new("/data");
        apply_toml(
            &mut cfg,
            r#"
brokerClusterName = "C1"
brokerName = "broker-b"
listenPort = 20911
namesrvAddr = "127.0.0.1:9876;127.0.0.1:9877"
storePathRootDir = "store-b"
flushDiskType = "SYNC_FLUSH"
mappedFileSizeCommitLog = 67108864
warmMapedFileEnable = true
metricsExporterType = "PROM"
metricsPromExporterPort = 15557
maxConnections = 64
serverChannelMaxIdleTimeSeconds = 30
waitTimeMillsInSendQueue = 1500
"#,
            Path::new("/etc/mqlab"),
        )
        .unwrap();
        assert_eq!(cfg.cluster, "C1");
        assert_eq!(cfg.listen.port(), 20911);
        assert_eq!(cfg.namesrv.len(), 2);
        assert!(cfg.embedded_namesrv.is_none());
        assert_eq!(cfg.data_dir, Path::new("/etc/mqlab/store-b"));
        assert_eq!(cfg.store.flush.kind, FlushKind::Group);
        assert_eq!(cfg.store.segment_bytes, 64 << 20);
        assert!(cfg.store.warm_segments);
        assert_eq!(cfg.metrics, Some("127.0.0.1:15557".parse().unwrap()));
        assert_eq!((cfg.max_connections, cfg.idle_timeout_ms), (64, 30_000));
        assert_eq!(cfg.wait_time_ms_in_send_queue, 1_500);
        for bad in ["maxConnections = 0", "serverChannelMaxIdleTimeSeconds = 0"] {
            let e = apply_toml(&mut NodeConfig::new("/data"), bad, Path::new("/")).unwrap_err();
            assert!(e.contains(bad.split(' ').next().unwrap()), "{e}");
        }
    }

    #[test]
    fn replication_keys() {
        let mut cfg = NodeConfig::new("/data");
        apply_toml(
            &mut cfg,
            r#"
listenPort = 20911
brokerRole = "SLAVE"
haMasterAddress = "127.0.0.1:10912"
"#,
            Path::new("."),
        )
        .unwrap();
        assert_eq!(cfg.ha.role, crate::ha::BrokerRole::Slave);
        assert_eq!(cfg.broker_id, 1, "a slave is never broker 0");
        assert_eq!(cfg.ha.master, Some("127.0.0.1:10912".parse().unwrap()));
        let mut cfg = NodeConfig::new("/data");
        apply_toml(
            &mut cfg,
            "brokerRole = \"SYNC_MASTER\"\nhaListenPort = 30912",
            Path::new("."),
        )
        .unwrap();
        assert_eq!(cfg.ha.role, crate::ha::BrokerRole::SyncMaster);
        assert_eq!(cfg.ha.listen, Some("127.0.0.1:30912".parse().unwrap()));
        assert_eq!(cfg.broker_id, 0);
        apply_toml(&mut cfg, "brokerId = 3", Path::new(".")).unwrap();
        assert_eq!(cfg.broker_id, 0, "a master is broker 0");
    }

    #[test]
    fn slave_read_keys() {
        let mut cfg = NodeConfig::new("/data");
        assert!(!cfg.broker.slave_read_enable);
        assert_eq!(cfg.broker.access_message_in_memory_max_ratio, 40);
        apply_toml(
            &mut cfg,
            "slaveReadEnable = true\naccessMessageInMemoryMaxRatio = 25\nwhichBrokerWhenConsumeSlowly = 2",
            Path::new("."),
        )
        .unwrap();
        assert!(cfg.broker.slave_read_enable);
        assert_eq!(cfg.broker.access_message_in_memory_max_ratio, 25);
        assert_eq!(cfg.broker.which_broker_when_consume_slowly, 2);
        let e = apply_toml(
            &mut NodeConfig::new("/data"),
            "accessMessageInMemoryMaxRatio = 101",
            Path::new("."),
        )
        .unwrap_err();
        assert!(e.contains("accessMessageInMemoryMaxRatio"), "{e}");
    }

    #[test]
    fn controller_mode_keys() {
        let mut cfg = NodeConfig::new("/data");
        apply_toml(
            &mut cfg,
            r#"
enableControllerMode = true
controllerAddr = "127.0.0.1:9878;127.0.0.1:9868"
controllerHeartBeatTimeoutMills = 3000
haMaxTimeSlaveNotCatchup = 5000
minInSyncReplicas = 2
brokerId = 2
brokerRole = "SYNC_MASTER"
"#,
            Path::new("."),
        )
        .unwrap();
        let c = cfg.controller.as_ref().unwrap();
        assert_eq!(c.addrs.len(), 2);
        assert_eq!(c.heartbeat_timeout_ms, 3000);
        assert_eq!(cfg.ha.max_time_slave_not_catchup_ms, 5000);
        assert_eq!(cfg.ha.min_in_sync_replicas, 2);
        assert_eq!(cfg.broker_id, 2, "controller mode keeps the id");
        for (text, names) in [
            ("enableControllerMode = true", "controllerAddr"),
            (
                "enableControllerMode = true\ncontrollerAddr = \"127.0.0.1:1\"",
                "broker id",
            ),
        ] {
            let e = apply_toml(&mut NodeConfig::new("/d"), text, Path::new(".")).unwrap_err();
            assert!(e.contains(names), "{text}: {e}");
        }
    }

    #[test]
    fn metrics_are_off_unless_prom() {
        let mut cfg = NodeConfig::new("/data");
        apply_toml(&mut cfg, "metricsPromExporterPort = 1", Path::new(".")).unwrap();
        assert_eq!(cfg.metrics, None);
        apply_toml(
            &mut cfg,
            "brokerIP1 = \"10.0.0.7\"\nmetricsExporterType = \"PROM\"",
            Path::new("."),
        )
        .unwrap();
        assert_eq!(cfg.metrics, Some("10.0.0.7:5557".parse().unwrap()));
    }

    #[test]
    fn mistakes_are_named() {
        for (text, names) in [
            ("listenPortt = 1", "listenPortt"),
            ("flushDiskType = \"SOMETIMES\"", "flushDiskType"),
            ("brokerRole = \"SLAVE\"", "haMasterAddress"),
            ("brokerRole = \"BACKUP\"", "brokerRole"),
            ("haMasterAddress = \"master:10912\"", "haMasterAddress"),
            ("namesrvAddr = \"nameserver:9876\"", "namesrvAddr"),
            ("aclEnable = true", "aclFile"),
            ("ioBackend = \"floppy\"", "ioBackend"),
            ("metricsExporterType = \"OTLP_GRPC\"", "metricsExporterType"),
            (
                "metricsPromExporterHost = \"metrics.local\"",
                "metricsPromExporterHost",
            ),
        ] {
            let mut cfg = NodeConfig::new("/data");
            let e = apply_toml(&mut cfg, text, Path::new(".")).unwrap_err();
            assert!(e.contains(names), "{text}: {e}");
        }
    }
}
