//! Two broker nodes form one cluster: node A runs the embedded name
//! server, node B registers with it over TCP; a topic created on B appears
//! in the route within seconds; B's graceful shutdown unregisters it and
//! leaves a clean store.

mod common;

use std::time::{Duration, Instant};

use mqlab_broker::node::{Node, NodeConfig};
use mqlab_broker::testkit;
use mqlab_engine::StoreConfig;
use mqlab_protocol::codes::{request, response};
use mqlab_protocol::{encode_frame, RemotingCommand};

fn config(dir: &std::path::Path, name: &str) -> NodeConfig {
    NodeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        embedded_namesrv: None,
        broker_name: name.into(),
        store: StoreConfig::small(),
        ..NodeConfig::new(dir.join(name))
    }
}

/// [`testkit::wait_every`] for 20 s, polling every 50 ms, without a seed.
fn wait_for(what: &str, done: impl FnMut() -> bool) {
    testkit::wait_every(Duration::from_millis(50), None, what, 20, done)
}

#[test]
fn two_nodes_one_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let a = Node::start(NodeConfig {
        embedded_namesrv: Some("127.0.0.1:0".parse().unwrap()),
        ..config(dir.path(), "broker-a")
    })
    .unwrap();
    let ns = a.embedded_namesrv().unwrap();
    let b = Node::start(NodeConfig {
        namesrv: vec![ns],
        ..config(dir.path(), "broker-b")
    })
    .unwrap();
    a.broker().create_topic("Shared", 2).unwrap();
    // B learns the topic from a client's UPDATE_AND_CREATE_TOPIC.
    let create = RemotingCommand::request(request::UPDATE_AND_CREATE_TOPIC, 2)
        .with_field("topic", "Shared")
        .with_field("readQueueNums", 4)
        .with_field("writeQueueNums", 4);
    let r = common::roundtrip(
        &mut common::connect(b.addr()),
        &encode_frame(&create).unwrap(),
    );
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    wait_for("both brokers in the route", || {
        testkit::route(ns, "Shared").is_some_and(|r| r.broker_datas.len() == 2)
    });
    let r = testkit::route(ns, "Shared").unwrap();
    let b_queues = r
        .queue_datas
        .iter()
        .find(|q| q.broker_name == "broker-b")
        .unwrap();
    assert_eq!(b_queues.write_queue_nums, 4);
    assert!(r
        .broker_datas
        .iter()
        .any(|d| d.broker_addrs[&0] == b.addr().to_string()));

    // B leaves: unregistered, its store shut down cleanly.
    b.shutdown().unwrap();
    let r = testkit::route(ns, "Shared").unwrap();
    assert_eq!(r.broker_datas.len(), 1);
    assert_eq!(r.broker_datas[0].broker_name, "broker-a");
    assert!(!dir.path().join("broker-b").join("abort").exists());
    a.shutdown().unwrap();
}

/// A node on a port the system chose names that port in its message ids
/// and in its records' store host, so the id a producer is told and the
/// id a consumer decodes from the record are one id, and it leads back to
/// the message (found by the Node client: ids named port 0).
#[test]
fn message_ids_name_the_bound_address() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(config(dir.path(), "ids")).unwrap();
    let addr = node.addr();
    assert_ne!(addr.port(), 0);
    let send = RemotingCommand::request(request::SEND_MESSAGE_V2, 1)
        .with_field("a", "PG")
        .with_field("b", "IdTopic")
        .with_field("e", 0)
        .with_field("i", "KEYS\u{1}id-key\u{2}")
        .with_body(b"which host".to_vec());
    let r = mqlab_broker::remoting::call(addr, &send, Duration::from_secs(10)).unwrap();
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    let id = r.ext_fields.get("msgId").unwrap().clone();
    // 4 address bytes, 4 port bytes, 8 offset bytes.
    assert_eq!(&id[..8], "7F000001");
    assert_eq!(
        u32::from_str_radix(&id[8..16], 16).unwrap(),
        addr.port() as u32
    );
    let phys = u64::from_str_radix(&id[16..], 16).unwrap();
    let stored = node.store().get(phys).unwrap();
    assert_eq!(stored.body, b"which host");
    assert_eq!(stored.store_host, addr);
    assert_eq!(
        mqlab_broker::remoting::offset_msg_id(stored.store_host, phys),
        id
    );
    node.shutdown().unwrap();
}

/// A producer's first send to a new topic asks the name server for TBW102
/// (autoCreateTopicEnable, RocketMQ's default): a node announces it, 8
/// queues with perm 7, and the route's broker entries carry what RocketMQ
/// 5's clients require (found by rocketmq-rust's client, which refused
/// the route without `enableActingMaster` and had no TBW102 route).
#[test]
fn the_name_server_routes_tbw102_for_auto_creation() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(NodeConfig {
        embedded_namesrv: Some("127.0.0.1:0".parse().unwrap()),
        ..config(dir.path(), "auto")
    })
    .unwrap();
    let ns = node.embedded_namesrv().unwrap();
    let mut r = None;
    wait_for("the TBW102 route", || {
        r = testkit::route(ns, "TBW102");
        r.is_some()
    });
    let r = r.unwrap();
    assert_eq!(r.queue_datas.len(), 1);
    assert_eq!(r.queue_datas[0].write_queue_nums, 8);
    assert_eq!(r.queue_datas[0].perm, 7);
    assert_eq!(r.broker_datas[0].broker_addrs[&0], node.addr().to_string());
    let mut req =
        RemotingCommand::request(request::GET_ROUTEINFO_BY_TOPIC, 2).with_field("topic", "TBW102");
    req.version = 474; // rocketmq-rust 1.0's client
    let raw = common::roundtrip(&mut common::connect(ns), &encode_frame(&req).unwrap());
    let body = String::from_utf8(raw.body).unwrap();
    assert!(body.contains(r#""enableActingMaster":false"#), "{body}");
    node.shutdown().unwrap();
}

/// The connection limit and the idle timeout as configured: past
/// `max_connections` a new connection is closed at once (the ones open
/// keep working), and a connection silent for `idle_timeout_ms` is closed.
#[test]
fn connection_limit_and_idle_timeout() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(NodeConfig {
        max_connections: 2,
        idle_timeout_ms: 600,
        ..config(dir.path(), "limits")
    })
    .unwrap();
    let ping = || {
        encode_frame(
            &RemotingCommand::request(request::GET_ROUTEINFO_BY_TOPIC, 9).with_field("topic", "T"),
        )
        .unwrap()
    };
    let mut a = common::connect(node.addr());
    let mut b = common::connect(node.addr());
    // Both served (the server counts them once it has answered one).
    common::roundtrip(&mut a, &ping());
    common::roundtrip(&mut b, &ping());
    let mut c = common::connect(node.addr());
    let mut buf = [0u8; 64];
    assert_eq!(
        c.read(&mut buf).unwrap_or(0),
        0,
        "a third connection is closed"
    );
    common::roundtrip(&mut a, &ping());
    // Silent past the idle timeout: closed by the broker.
    let t = Instant::now();
    assert_eq!(b.read(&mut buf).unwrap_or(0), 0);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    node.shutdown().unwrap();
}
