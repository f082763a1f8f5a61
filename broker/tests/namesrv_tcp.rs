//! The name server on loopback TCP: brokers register, a request captured
//! from the real C++ client gets its route in the legacy form old clients
//! parse, newer clients get standard JSON, and hostile bytes close only
//! their own connection.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use common::{connect, roundtrip};
use std::sync::Arc;

use mqlab_broker::namesrv::NameServer;
use mqlab_broker::remoting::ServerConfig;
use mqlab_protocol::body::register::{TopicConfig, TopicConfigWrapper};
use mqlab_protocol::body::route::TopicRouteData;
use mqlab_protocol::codes::{request, response};
use mqlab_protocol::{encode_frame, Limits, RemotingCommand};

fn start() -> (mqlab_broker::remoting::RemotingServer, SocketAddr) {
    let cfg = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        limits: Limits {
            max_frame_bytes: 1 << 20,
        },
        ..ServerConfig::default()
    };
    let server = Arc::new(NameServer::new()).serve(cfg).unwrap();
    let addr = server.local_addr();
    assert!(addr.ip().is_loopback());
    (server, addr)
}

fn register(
    s: &mut TcpStream,
    name: &str,
    id: i64,
    addr: &str,
    topics: &[&str],
) -> RemotingCommand {
    let mut w = TopicConfigWrapper::default();
    for t in topics {
        w.topics.insert(t.to_string(), TopicConfig::new(t, 4));
    }
    let req = RemotingCommand::request(request::REGISTER_BROKER, 1)
        .with_field("brokerName", name)
        .with_field("brokerAddr", addr)
        .with_field("clusterName", "DefaultCluster")
        .with_field("haServerAddr", "127.0.0.1:10912")
        .with_field("brokerId", id)
        .with_body(w.encode());
    roundtrip(s, &encode_frame(&req).unwrap())
}

#[test]
fn routes_for_the_cpp_client_and_for_new_clients() {
    let (server, addr) = start();
    let mut s = connect(addr);
    let r = register(
        &mut s,
        "broker-a",
        0,
        "127.0.0.1:10911",
        &["CaptureTopic", "TBW102"],
    );
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    // A slave is told its master.
    let r = register(&mut s, "broker-a", 1, "127.0.0.1:10921", &[]);
    assert_eq!(
        r.ext_fields.get("masterAddr").map(String::as_str),
        Some("127.0.0.1:10911")
    );

    // The C++ client's own bytes (captured on loopback): version 63.
    let captured = include_bytes!("../../protocol/tests/captures/cpp-0.4.4-get-route.bin");
    let r = roundtrip(&mut s, captured);
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    assert!(r.is_response());
    let body = String::from_utf8(r.body.clone()).unwrap();
    assert!(
        body.contains(r#"{0:"127.0.0.1:10911",1:"127.0.0.1:10921"}"#),
        "{body}"
    );
    let route = TopicRouteData::decode(&r.body).unwrap();
    assert_eq!(route.queue_datas[0].write_queue_nums, 4);

    // A 4.9.4+ client gets standard JSON.
    let mut req = RemotingCommand::request(request::GET_ROUTEINFO_BY_TOPIC, 7)
        .with_field("topic", "CaptureTopic");
    req.version = 401;
    let r = roundtrip(&mut s, &encode_frame(&req).unwrap());
    assert_eq!(r.opaque, 7);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["brokerDatas"][0]["brokerAddrs"]["0"], "127.0.0.1:10911");

    // Unknown topic, unknown code.
    let req =
        RemotingCommand::request(request::GET_ROUTEINFO_BY_TOPIC, 8).with_field("topic", "Nope");
    assert_eq!(
        roundtrip(&mut s, &encode_frame(&req).unwrap()).code,
        response::TOPIC_NOT_EXIST
    );
    let req = RemotingCommand::request(request::PULL_MESSAGE, 9);
    let r = roundtrip(&mut s, &encode_frame(&req).unwrap());
    assert_eq!(r.code, response::REQUEST_CODE_NOT_SUPPORTED);
    assert!(r.remark.unwrap().contains("PULL_MESSAGE"));

    // Unregistering the master leaves the queues to its slave (RocketMQ:
    // a reduced group keeps its queue data); the slave gone too, they go.
    let req = RemotingCommand::request(request::UNREGISTER_BROKER, 10)
        .with_field("brokerAddr", "127.0.0.1:10911");
    assert_eq!(
        roundtrip(&mut s, &encode_frame(&req).unwrap()).code,
        response::SUCCESS
    );
    let req = RemotingCommand::request(request::GET_ROUTEINFO_BY_TOPIC, 11)
        .with_field("topic", "CaptureTopic");
    let r = roundtrip(&mut s, &encode_frame(&req).unwrap());
    assert_eq!(r.code, response::SUCCESS);
    let route = TopicRouteData::decode(&r.body).unwrap();
    assert_eq!(route.queue_datas.len(), 1);
    assert_eq!(
        route.broker_datas[0]
            .broker_addrs
            .keys()
            .copied()
            .collect::<Vec<_>>(),
        vec![1]
    );
    let req = RemotingCommand::request(request::UNREGISTER_BROKER, 12)
        .with_field("brokerAddr", "127.0.0.1:10921");
    assert_eq!(
        roundtrip(&mut s, &encode_frame(&req).unwrap()).code,
        response::SUCCESS
    );
    let req = RemotingCommand::request(request::GET_ROUTEINFO_BY_TOPIC, 13)
        .with_field("topic", "CaptureTopic");
    assert_eq!(
        roundtrip(&mut s, &encode_frame(&req).unwrap()).code,
        response::TOPIC_NOT_EXIST
    );
    server.shutdown();
}

#[test]
fn hostile_bytes_close_only_their_connection() {
    let (server, addr) = start();
    let hostile: Vec<Vec<u8>> = vec![
        (-5i32).to_be_bytes().to_vec(),
        (2_000_000i32).to_be_bytes().to_vec(),
        {
            let mut b = 12i32.to_be_bytes().to_vec();
            b.extend_from_slice(&200u32.to_be_bytes());
            b.extend_from_slice(&[0u8; 8]);
            b
        },
        {
            // Malformed JSON header (complete frame).
            let mut b = 8i32.to_be_bytes().to_vec();
            b.extend_from_slice(&4u32.to_be_bytes());
            b.extend_from_slice(b"{\"co");
            b
        },
        b"\x00\x00\x00\x08\x07\x00\x00\x00zzzz".to_vec(),
    ];
    for (i, bytes) in hostile.iter().enumerate() {
        let mut s = connect(addr);
        s.write_all(bytes).unwrap();
        let mut rest = Vec::new();
        // The server closes the connection without an answer.
        let _ = s.read_to_end(&mut rest);
        assert!(rest.is_empty(), "case {i}: answered {rest:?}");
    }
    // A half frame that never completes stays pending; others are served.
    let mut slow = connect(addr);
    slow.write_all(&100i32.to_be_bytes()).unwrap();
    let mut s = connect(addr);
    let r = register(&mut s, "b", 0, "127.0.0.1:10931", &["T"]);
    assert_eq!(r.code, response::SUCCESS);
    assert_eq!(server.bad_frames(), hostile.len() as u64);
    drop(slow);
    server.shutdown();
}
