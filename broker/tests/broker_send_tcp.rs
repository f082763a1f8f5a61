//! Producers' sends over loopback TCP: SEND_MESSAGE_V2 and SEND_MESSAGE
//! (as the C++ client shapes it) reach the store with body, keys and tags;
//! a malformed send is refused with a reason naming the field and nothing
//! is written.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use mqlab_broker::remoting::{BrokerHandler, RemotingServer, ServerConfig};
use mqlab_broker::{Broker, BrokerConfig};
use mqlab_engine::{clock, FlushKind, Store, StoreConfig};
use mqlab_protocol::codes::{request, response};
use mqlab_protocol::{encode_frame, RemotingCommand};

struct Setup {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    server: RemotingServer,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = StoreConfig::small();
    cfg.flush.kind = FlushKind::Group;
    let store = Arc::new(Store::open(dir.path(), cfg).unwrap());
    let broker = Broker::open(store.clone(), BrokerConfig::default(), clock::system()).unwrap();
    let handler = Arc::new(BrokerHandler::new(
        broker,
        "127.0.0.1:10911".parse().unwrap(),
    ));
    let server = RemotingServer::start(
        ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..ServerConfig::default()
        },
        handler,
    )
    .unwrap();
    Setup {
        _dir: dir,
        store,
        server,
    }
}

fn roundtrip(addr: SocketAddr, bytes: &[u8]) -> RemotingCommand {
    common::roundtrip(&mut common::connect(addr), bytes)
}

fn v2_send(topic: &str, queue: &str, props: &str, body: &[u8]) -> Vec<u8> {
    let req = RemotingCommand::request(request::SEND_MESSAGE_V2, 3)
        .with_field("a", "PG")
        .with_field("b", topic)
        .with_field("c", "TBW102")
        .with_field("d", 4)
        .with_field("e", queue)
        .with_field("f", 0)
        .with_field("g", 1_733_000_000_000i64)
        .with_field("h", 0)
        .with_field("i", props)
        .with_field("j", 0)
        .with_field("k", false)
        .with_body(body.to_vec());
    encode_frame(&req).unwrap()
}

fn phys_of(msg_id: &str) -> u64 {
    assert_eq!(msg_id.len(), 32, "{msg_id}");
    assert!(msg_id.starts_with("7F000001"), "{msg_id}");
    u64::from_str_radix(&msg_id[16..], 16).unwrap()
}

#[test]
fn sends_reach_the_store() {
    let s = setup();
    let addr = s.server.local_addr();
    let r = roundtrip(
        addr,
        &v2_send(
            "WireTopic",
            "1",
            "KEYS\u{1}k1\u{2}TAGS\u{1}TagA\u{2}",
            b"hello",
        ),
    );
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    assert_eq!(r.opaque, 3);
    assert_eq!(r.ext_fields["queueId"], "1");
    assert_eq!(r.ext_fields["queueOffset"], "0");
    let m = s.store.get(phys_of(&r.ext_fields["msgId"])).unwrap();
    assert_eq!(m.body, b"hello");
    assert_eq!(m.topic, "WireTopic");
    assert_eq!(m.keys().collect::<Vec<_>>(), ["k1"]);
    assert_eq!(m.properties.get("TAGS").map(String::as_str), Some("TagA"));

    // SEND_MESSAGE (10) as the C++ client writes it: long names, numbers,
    // a trailing newline, no serializeTypeCurrentRPC.
    let header = br#"{"code":10,"language":"CPP","version":63,"opaque":9,"flag":0,"remark":"","extFields":{"producerGroup":"PG","topic":"WireTopic","defaultTopic":"TBW102","defaultTopicQueueNums":4,"queueId":1,"sysFlag":0,"bornTimestamp":1733000000000,"flag":0,"properties":"KEYS\u0001k2\u0002","reconsumeTimes":0,"unitMode":false,"batch":false}}
"#;
    let mut frame = ((4 + header.len() + 3) as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&(header.len() as u32).to_be_bytes());
    frame.extend_from_slice(header);
    frame.extend_from_slice(b"cpp");
    let r = roundtrip(addr, &frame);
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    assert_eq!(r.ext_fields["queueOffset"], "1");
    let m = s.store.get(phys_of(&r.ext_fields["msgId"])).unwrap();
    assert_eq!(m.body, b"cpp");
    assert_eq!(m.keys().collect::<Vec<_>>(), ["k2"]);
}

#[test]
fn malformed_sends_are_refused_and_write_nothing() {
    let s = setup();
    let addr = s.server.local_addr();
    let before = s.store.offsets();
    let cases: Vec<(Vec<u8>, i32, &str)> = vec![
        (
            v2_send("bad/topic", "0", "", b"x"),
            response::MESSAGE_ILLEGAL,
            "topic",
        ),
        (
            v2_send("T", "-1", "", b"x"),
            response::MESSAGE_ILLEGAL,
            "queueId",
        ),
        (
            v2_send("T", "x", "", b"x"),
            response::SYSTEM_ERROR,
            "queueId",
        ),
        (
            v2_send("T", "0", "KEYS-without-separators", b"x"),
            response::MESSAGE_ILLEGAL,
            "properties",
        ),
        (
            encode_frame(
                &RemotingCommand::request(request::SEND_MESSAGE_V2, 4).with_field("a", "PG"),
            )
            .unwrap(),
            response::SYSTEM_ERROR,
            "b",
        ),
        (
            encode_frame(&RemotingCommand::request(request::PULL_MESSAGE, 5)).unwrap(),
            response::REQUEST_CODE_NOT_SUPPORTED,
            "PULL_MESSAGE",
        ),
    ];
    for (i, (bytes, code, names)) in cases.into_iter().enumerate() {
        let r = roundtrip(addr, &bytes);
        assert_eq!(r.code, code, "case {i}: {:?}", r.remark);
        let remark = r.remark.unwrap_or_default();
        assert!(
            remark.contains(names) || remark.contains("topic"),
            "case {i}: {remark}"
        );
    }
    assert_eq!(s.store.offsets(), before, "a refused send wrote something");
}
