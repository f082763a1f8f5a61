//! The broker's Prometheus endpoint: `GET /metrics` in the Prometheus
//! text exposition format (version 0.0.4), served on its own address
//! (`mqlab broker --metrics ADDR`, or `metricsExporterType = "PROM"` with
//! `metricsPromExporterHost`/`metricsPromExporterPort` in the config, as
//! RocketMQ 5's broker.conf has them). Off unless asked for.
//!
//! Names are RocketMQ 5's (`BrokerMetricsConstant`,
//! `RemotingMetricsConstant`, `DefaultStoreMetricsConstant`) where mqlab
//! measures the same thing, with their label names; the rest start with
//! `mqlab_`. Every series also carries RocketMQ's `cluster`, `node_type`
//! (`broker`) and `node_id` (the broker name) labels.
//!
//! | name | type | labels | what |
//! |---|---|---|---|
//! | `rocketmq_messages_in_total` | counter | topic | messages stored in the topic's queues (consume queue max offsets; system topics included) |
//! | `rocketmq_messages_out_total` | counter | - | messages returned by pulls |
//! | `rocketmq_rpc_latency` | histogram, ms | protocol_type, request_code | send latency as the send path records it ([`WireStats::record_send`]); request_code `send_message` stands for SEND_MESSAGE and SEND_MESSAGE_V2 |
//! | `rocketmq_consumer_lag_messages` | gauge | topic, consumer_group | backlog of each group on each topic it committed an offset for |
//! | `rocketmq_storage_flush_behind_bytes` | gauge | - | written - flushed (what a power loss could take) |
//! | `rocketmq_storage_dispatch_behind_bytes` | gauge | - | written - dispatched to consume queues |
//! | `rocketmq_half_messages` | gauge | - | half messages not yet committed or rolled back |
//! | `rocketmq_send_to_dlq_messages_total` | counter | - | messages moved to a dead-letter queue |
//! | `mqlab_sends_total` | counter | result (`ok`, `failed`) | sends answered on the wire |
//! | `mqlab_remoting_connections` | gauge | - | open client connections to the broker port |
//! | `mqlab_store_offset_bytes` | gauge | offset (`min`, `written`, `committed`, `flushed`, `acked`, `dispatched`) | the store's commit-log offsets |
//!
//! Everything is read when scraped (atomics, the topic table, the offset
//! table): nothing runs between scrapes. One thread (`mqlab-metrics`)
//! answers requests; tiny_http adds its accept thread and a few
//! connection threads.

use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::remoting::{RemotingServer, WireStats, LATENCY_BOUNDS_US};
use crate::Broker;

/// The `Content-Type` of what `GET /metrics` answers.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// What the node's metrics are read from. Weak references: a scrape never
/// keeps the broker or the store alive past the node's shutdown (one
/// racing it finds nothing to report).
#[derive(Debug, Clone)]
pub struct Sources {
    /// The broker core (topics, offsets, store).
    pub broker: Weak<Broker>,
    /// The remoting server (connections).
    pub server: Weak<RemotingServer>,
    /// The wire counters.
    pub stats: Arc<WireStats>,
}

/// Constant labels of every series: RocketMQ's cluster, node_type,
/// node_id.
#[derive(Debug, Clone)]
pub struct NodeLabels {
    /// Cluster name.
    pub cluster: String,
    /// Broker name.
    pub node_id: String,
}

/// The registry the endpoint encodes: the node's collector under its
/// constant labels.
pub fn registry(labels: &NodeLabels, sources: Sources) -> Registry {
    let mut r = Registry::with_labels(
        [
            ("cluster".into(), labels.cluster.clone().into()),
            ("node_type".into(), "broker".into()),
            ("node_id".into(), labels.node_id.clone().into()),
        ]
        .into_iter(),
    );
    r.register_collector(Box::new(NodeCollector(sources)));
    r
}

/// `registry` in the Prometheus text format (None if encoding failed).
pub fn render(registry: &Registry) -> Option<String> {
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, registry).ok()?;
    Some(out)
}

#[derive(Debug)]
struct NodeCollector(Sources);

/// Labels of one series.
type Labels = Vec<(&'static str, String)>;

fn counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: &[(Labels, u64)],
) -> std::fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in series {
        ConstCounter::new(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

fn gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: &[(Labels, i64)],
) -> std::fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in series {
        ConstGauge::new(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

fn one<T>(v: T) -> Vec<(Labels, T)> {
    vec![(Vec::new(), v)]
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Collector for NodeCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let Some(broker) = self.0.broker.upgrade() else {
            return Ok(()); // shut down: the endpoint is stopping too
        };
        let store = broker.store();
        let stats = &self.0.stats;
        let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);

        // Messages in, per topic: what the consume queues hold (their max
        // offsets only grow, so this is a counter across restarts too).
        let mut per_topic = std::collections::BTreeMap::<String, u64>::new();
        for q in store.queues() {
            *per_topic.entry(q.topic).or_default() += q.max_offset;
        }
        let series: Vec<_> = per_topic
            .into_iter()
            .map(|(t, n)| (vec![("topic", t)], n))
            .collect();
        counter(
            &mut enc,
            "rocketmq_messages_in",
            "Messages stored, per topic (consume queue max offsets).",
            &series,
        )?;
        counter(
            &mut enc,
            "rocketmq_messages_out",
            "Messages returned by pulls.",
            &one(load(&stats.pulled)),
        )?;

        // Send latency, milliseconds, RocketMQ's rpc latency for the send
        // request code.
        let snap = stats.send_latency.snapshot();
        // Per bucket, not cumulative: the encoder accumulates them (found
        // once sends were timed: the +Inf bucket summed the running totals).
        let buckets: Vec<(f64, u64)> = snap
            .counts
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                let bound = LATENCY_BOUNDS_US
                    .get(i)
                    .map_or(f64::INFINITY, |&us| us as f64 / 1000.0);
                (bound, c)
            })
            .collect();
        let total = snap.count();
        {
            let mut m = enc.encode_descriptor(
                "rocketmq_rpc_latency",
                "Send latency in milliseconds, from the request reaching the handler to its answer.",
                None,
                MetricType::Histogram,
            )?;
            let labels: Labels = vec![
                ("protocol_type", "remoting".into()),
                ("request_code", "send_message".into()),
            ];
            m.encode_family(&labels)?.encode_histogram::<NoLabelSet>(
                snap.sum_us as f64 / 1000.0,
                total,
                &buckets,
                None,
            )?;
        }

        // Backlog of every group on every topic it committed offsets for.
        let series: Vec<_> = broker
            .offset_group_topics()
            .into_iter()
            .map(|(g, t)| {
                let lag = broker.total_lag(&g, &t);
                (vec![("topic", t), ("consumer_group", g)], i(lag))
            })
            .collect();
        gauge(
            &mut enc,
            "rocketmq_consumer_lag_messages",
            "Messages not yet consumed (committed) by a group, per topic.",
            &series,
        )?;

        let o = store.offsets();
        let dispatched = store.dispatched_offset();
        gauge(
            &mut enc,
            "rocketmq_storage_flush_behind_bytes",
            "Commit-log bytes written but not yet flushed to the device.",
            &one(i(o.written.saturating_sub(o.flushed))),
        )?;
        gauge(
            &mut enc,
            "rocketmq_storage_dispatch_behind_bytes",
            "Commit-log bytes written but not yet dispatched to consume queues.",
            &one(i(o.written.saturating_sub(dispatched))),
        )?;
        gauge(
            &mut enc,
            "rocketmq_half_messages",
            "Half (transactional) messages neither committed nor rolled back.",
            &one(i(broker.pending_transactions())),
        )?;
        counter(
            &mut enc,
            "rocketmq_send_to_dlq_messages",
            "Messages moved to a dead-letter queue.",
            &one(load(&broker.stats.dead_lettered)),
        )?;

        counter(
            &mut enc,
            "mqlab_sends",
            "Sends answered on the wire: stored (ok) or refused/failed.",
            &[
                (vec![("result", "ok".into())], load(&stats.sends_ok)),
                (vec![("result", "failed".into())], load(&stats.sends_failed)),
            ],
        )?;
        let connections = self.0.server.upgrade().map_or(0, |s| s.connections());
        gauge(
            &mut enc,
            "mqlab_remoting_connections",
            "Open client connections to the broker port.",
            &one(connections as i64),
        )?;
        let offsets: Vec<_> = [
            ("min", store.min_offset()),
            ("written", o.written),
            ("committed", o.committed),
            ("flushed", o.flushed),
            ("acked", o.acked),
            ("dispatched", dispatched),
        ]
        .into_iter()
        .map(|(k, v)| (vec![("offset", k.to_string())], i(v)))
        .collect();
        gauge(
            &mut enc,
            "mqlab_store_offset_bytes",
            "The store's commit-log offsets (bytes since the store was created).",
            &offsets,
        )?;
        Ok(())
    }
}

/// The HTTP endpoint: bound by [`MetricsServer::bind`], answering once
/// [`MetricsServer::serve`] gave it a registry; stopped by
/// [`MetricsServer::shutdown`] or drop.
pub struct MetricsServer {
    addr: SocketAddr,
    http: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer")
            .field("addr", &self.addr)
            .finish()
    }
}

impl MetricsServer {
    /// Binds `addr` (port 0: any free port; see [`Self::local_addr`]).
    /// Requests wait until [`Self::serve`].
    pub fn bind(addr: SocketAddr) -> Result<MetricsServer, String> {
        let http = tiny_http::Server::http(addr)
            .map_err(|e| format!("metrics endpoint: listen on {addr}: {e}"))?;
        let bound = http
            .server_addr()
            .to_ip()
            .ok_or_else(|| format!("metrics endpoint: {addr} is not an IP address"))?;
        Ok(MetricsServer {
            addr: bound,
            http: Arc::new(http),
            thread: None,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Starts answering: `GET /metrics` (or HEAD) encodes `registry`;
    /// another path is 404, another method 405.
    pub fn serve(&mut self, registry: Registry) -> Result<(), String> {
        let http = self.http.clone();
        let thread = std::thread::Builder::new()
            .name("mqlab-metrics".into())
            .spawn(move || {
                // Err: unblocked by shutdown, or the listener failed.
                while let Ok(req) = http.recv() {
                    answer(req, &registry);
                }
            })
            .map_err(|e| format!("metrics thread: {e}"))?;
        self.thread = Some(thread);
        Ok(())
    }

    /// Stops answering and closes the listener.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.http.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        // The listener closes when the last Arc of `http` goes, which is
        // this one once the thread is joined.
        self.stop();
    }
}

fn answer(req: tiny_http::Request, registry: &Registry) {
    use tiny_http::{Header, Method, Response};
    let header = |v: &str| Header::from_bytes(&b"Content-Type"[..], v.as_bytes()).ok();
    let path = req.url().split('?').next().unwrap_or("");
    let (status, body, ctype) = match (req.method(), path) {
        (Method::Get | Method::Head, "/metrics") => match render(registry) {
            Some(text) => (200, text, CONTENT_TYPE),
            None => (503, "metrics could not be encoded\n".into(), "text/plain"),
        },
        (_, "/metrics") => (405, "only GET (or HEAD) /metrics\n".into(), "text/plain"),
        _ => (404, "see /metrics\n".into(), "text/plain"),
    };
    let mut resp = Response::from_string(body).with_status_code(status);
    if let Some(h) = header(ctype) {
        resp = resp.with_header(h);
    }
    // A client that went away is its own problem.
    let _ = req.respond(resp);
}
