//! The metrics endpoint of a node: after sends, a pull and an offset
//! commit over TCP, `GET /metrics` answers the Prometheus text format
//! (every sample under a HELP and TYPE of its family) with the counts
//! the wire saw; it closes with the node; a port that cannot be bound
//! fails the start, naming the address, before the store is opened.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use mqlab_broker::node::{Node, NodeConfig};
use mqlab_engine::StoreConfig;
use mqlab_protocol::codes::{request, response};
use mqlab_protocol::headers::{pull_sys_flag, PullMessageRequest, PullMessageResponse};
use mqlab_protocol::{encode_frame, RemotingCommand};

const TOPIC: &str = "MetricsTopic";

fn config(dir: &std::path::Path) -> NodeConfig {
    NodeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        embedded_namesrv: None,
        broker_name: "broker-m".into(),
        cluster: "MetricsCluster".into(),
        store: StoreConfig::small(),
        metrics: Some("127.0.0.1:0".parse().unwrap()),
        ..NodeConfig::new(dir.join("store"))
    }
}

/// One HTTP/1.1 exchange on a fresh connection: (status, headers
/// lower-cased, body).
fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a header/body split");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("status line of {head:?}"));
    (status, head.to_lowercase(), body.to_string())
}

/// A sample's labels, sorted.
type Labels = BTreeMap<String, String>;

/// Parses the text exposition format strictly enough to catch a broken
/// page: every sample's family has a TYPE line before it (a histogram's
/// samples are its `_bucket`, `_sum` and `_count`), label values are
/// quoted, values are numbers. Returns (name, labels) -> value and the
/// declared type of every family.
fn parse(text: &str) -> (BTreeMap<(String, Labels), f64>, BTreeMap<String, String>) {
    let valid_name = |n: &str| {
        !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            && !n.starts_with(|c: char| c.is_ascii_digit())
    };
    let mut types = BTreeMap::new();
    let mut helps = BTreeMap::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, _) = rest.split_once(' ').unwrap_or((rest, ""));
            assert!(valid_name(name), "HELP name: {line}");
            helps.insert(name.to_string(), ());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').expect(line);
            assert!(valid_name(name), "TYPE name: {line}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&ty),
                "{line}"
            );
            assert!(helps.contains_key(name), "TYPE without HELP: {line}");
            assert!(
                types.insert(name.to_string(), ty.to_string()).is_none(),
                "TYPE twice: {line}"
            );
            continue;
        }
        assert!(!line.starts_with('#'), "stray comment: {line}");
        // name{labels} value
        let (name, rest) = match line.find('{') {
            Some(i) => (&line[..i], &line[i..]),
            None => line.split_at(line.find(' ').expect(line)),
        };
        assert!(valid_name(name), "sample name: {line}");
        let mut labels = Labels::new();
        let value = if let Some(mut l) = rest.strip_prefix('{') {
            loop {
                if let Some(r) = l.strip_prefix('}') {
                    break r;
                }
                let (k, r) = l.split_once("=\"").expect(line);
                assert!(valid_name(k), "label name {k:?}: {line}");
                let mut v = String::new();
                let mut chars = r.char_indices();
                let end = loop {
                    match chars.next().expect(line) {
                        (_, '\\') => match chars.next().expect(line).1 {
                            'n' => v.push('\n'),
                            c => v.push(c),
                        },
                        (i, '"') => break i,
                        (_, c) => v.push(c),
                    }
                };
                labels.insert(k.to_string(), v);
                l = r[end + 1..].trim_start_matches(',');
            }
        } else {
            rest
        };
        let value = value.trim();
        let v: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("value: {line}")),
        };
        let typed = types.keys().any(|f| {
            f == name
                || (types[f] == "histogram"
                    && ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|s| name.strip_suffix(s) == Some(f.as_str())))
        });
        assert!(typed, "sample before its TYPE: {line}");
        assert!(
            samples.insert((name.to_string(), labels), v).is_none(),
            "duplicate series: {line}"
        );
    }
    (samples, types)
}

/// The one series of `name` whose labels include `want`.
fn value(samples: &BTreeMap<(String, Labels), f64>, name: &str, want: &[(&str, &str)]) -> f64 {
    let found: Vec<_> = samples
        .iter()
        .filter(|((n, l), _)| {
            n == name
                && want
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(v))
        })
        .collect();
    assert_eq!(found.len(), 1, "{name} {want:?}: {found:?}");
    *found[0].1
}

#[test]
fn metrics_count_what_the_wire_saw() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(config(dir.path())).unwrap();
    let maddr = node.metrics_addr().expect("metrics on");
    assert_ne!(maddr.port(), 0);
    assert!(maddr.ip().is_loopback());

    // Seven sends to queue 0, one pull of them, a commit at 3.
    let mut conn = common::connect(node.addr());
    for i in 0..7 {
        let r = common::roundtrip(
            &mut conn,
            &common::v2_send(TOPIC, "0", "", format!("m{i}").as_bytes()),
        );
        assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    }
    let store = node.store();
    assert!(store.wait_dispatched(store.offsets().written, Duration::from_secs(10)));
    let mut pull = RemotingCommand::request(request::PULL_MESSAGE, 11);
    pull.ext_fields = PullMessageRequest {
        consumer_group: "CG".into(),
        topic: TOPIC.into(),
        queue_id: 0,
        queue_offset: 0,
        max_msg_nums: 32,
        sys_flag: pull_sys_flag::SUBSCRIPTION,
        commit_offset: 0,
        suspend_timeout_millis: 1_000,
        subscription: Some("*".into()),
        sub_version: 0,
        expression_type: Some("TAG".into()),
    }
    .to_fields();
    let r = common::roundtrip(&mut conn, &encode_frame(&pull).unwrap());
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    let resp = PullMessageResponse::from_fields(&r.ext_fields).unwrap();
    assert_eq!(resp.next_begin_offset, 7);
    let commit = RemotingCommand::request(request::UPDATE_CONSUMER_OFFSET, 12)
        .with_field("topic", TOPIC)
        .with_field("queueId", 0)
        .with_field("consumerGroup", "CG")
        .with_field("commitOffset", 3);
    let r = common::roundtrip(&mut conn, &encode_frame(&commit).unwrap());
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);

    let (status, head, body) = http(maddr, "GET", "/metrics");
    assert_eq!(status, 200, "{head}\n{body}");
    assert!(
        head.contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    let (samples, types) = parse(&body);
    for (family, ty) in [
        ("rocketmq_messages_in_total", "counter"),
        ("rocketmq_messages_out_total", "counter"),
        ("rocketmq_rpc_latency", "histogram"),
        ("rocketmq_consumer_lag_messages", "gauge"),
        ("rocketmq_storage_flush_behind_bytes", "gauge"),
        ("rocketmq_storage_dispatch_behind_bytes", "gauge"),
        ("mqlab_sends_total", "counter"),
        ("mqlab_remoting_connections", "gauge"),
        ("mqlab_store_offset_bytes", "gauge"),
    ] {
        assert_eq!(
            types.get(family).map(String::as_str),
            Some(ty),
            "{family}\n{body}"
        );
    }
    // RocketMQ's node labels on every series.
    for (name, labels) in samples.keys() {
        assert_eq!(labels["cluster"], "MetricsCluster", "{name}");
        assert_eq!(labels["node_type"], "broker", "{name}");
        assert_eq!(labels["node_id"], "broker-m", "{name}");
    }
    assert_eq!(
        value(&samples, "rocketmq_messages_in_total", &[("topic", TOPIC)]),
        7.0
    );
    assert_eq!(
        value(&samples, "mqlab_sends_total", &[("result", "ok")]),
        7.0
    );
    assert_eq!(
        value(&samples, "mqlab_sends_total", &[("result", "failed")]),
        0.0
    );
    assert_eq!(value(&samples, "rocketmq_messages_out_total", &[]), 7.0);
    assert!(value(&samples, "mqlab_remoting_connections", &[]) >= 1.0);
    assert_eq!(
        value(
            &samples,
            "rocketmq_consumer_lag_messages",
            &[("topic", TOPIC), ("consumer_group", "CG")]
        ),
        4.0
    );
    let behind = value(&samples, "rocketmq_storage_flush_behind_bytes", &[]);
    let written = value(
        &samples,
        "mqlab_store_offset_bytes",
        &[("offset", "written")],
    );
    let flushed = value(
        &samples,
        "mqlab_store_offset_bytes",
        &[("offset", "flushed")],
    );
    assert!(written > 0.0 && behind >= 0.0 && flushed <= written);
    // The histogram is complete: +Inf bucket == count.
    let send = [("request_code", "send_message")];
    let inf = samples
        .iter()
        .find(|((n, l), _)| n == "rocketmq_rpc_latency_bucket" && l["le"] == "+Inf")
        .map(|(_, v)| *v)
        .expect("+Inf bucket");
    assert_eq!(inf, value(&samples, "rocketmq_rpc_latency_count", &send));

    // Sends timed through WireStats::record_send show in the histogram.
    node.stats().record_send(true, 1_500);
    let (_, _, body) = http(maddr, "GET", "/metrics");
    let (samples, _) = parse(&body);
    let count = value(&samples, "rocketmq_rpc_latency_count", &send);
    assert!(count >= 1.0);
    let le = |b: &str| {
        value(
            &samples,
            "rocketmq_rpc_latency_bucket",
            &[("request_code", "send_message"), ("le", b)],
        )
    };
    assert!(le("3") >= 1.0 && le("3") <= count, "{body}");
    assert!(value(&samples, "rocketmq_rpc_latency_sum", &send) >= 1.5);

    // Only /metrics, only GET or HEAD.
    assert_eq!(http(maddr, "GET", "/").0, 404);
    assert_eq!(http(maddr, "POST", "/metrics").0, 405);

    // The endpoint closes with the node.
    drop(conn);
    node.shutdown().unwrap();
    let t = Instant::now();
    while TcpStream::connect(maddr).is_ok() {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "metrics endpoint still open after shutdown"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_metrics_address_that_cannot_be_bound_fails_the_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let at = taken.local_addr().unwrap();
    let e = Node::start(NodeConfig {
        metrics: Some(at),
        ..config(dir.path())
    })
    .unwrap_err();
    assert!(e.contains("metrics") && e.contains(&at.to_string()), "{e}");
    // Nothing else was started: the store was never opened.
    assert!(!dir.path().join("store").exists());
}
