//! ACL on the wire: unsigned, forged, replayed-with-another-body, no PUB on
//! the topic, and admin codes from a non-admin are all refused with
//! NO_PERMISSION, and none of them reaches the commit log; a correctly
//! signed send is stored.

mod common;

use std::sync::Arc;

use common::signed;
use mqlab_broker::acl::Acl;
use mqlab_broker::remoting::{BrokerHandler, RemotingServer, ServerConfig};
use mqlab_broker::{Broker, BrokerConfig};
use mqlab_engine::{clock, Store, StoreConfig};
use mqlab_protocol::codes::{request, response};
use mqlab_protocol::{encode_frame, RemotingCommand};

const ACL: &str = r#"
[[accounts]]
accessKey = "writer"
secretKey = "writer-secret"
defaultTopicPerm = "DENY"
topicPerms = ["Open=PUB|SUB"]

[[accounts]]
accessKey = "boss"
secretKey = "boss-secret"
admin = true
defaultTopicPerm = "PUB|SUB"
"#;

fn send(topic: &str, body: &[u8]) -> RemotingCommand {
    RemotingCommand::request(request::SEND_MESSAGE_V2, 1)
        .with_field("a", "PG")
        .with_field("b", topic)
        .with_field("e", 0)
        .with_field("i", "")
        .with_body(body.to_vec())
}

#[test]
fn only_signed_permitted_requests_run() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), StoreConfig::small()).unwrap());
    let broker = Broker::open(store.clone(), BrokerConfig::default(), clock::system()).unwrap();
    let acl = Arc::new(Acl::parse(ACL).unwrap());
    let server = RemotingServer::start(
        ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..ServerConfig::default()
        },
        Arc::new(BrokerHandler::new(broker, "127.0.0.1:10911".parse().unwrap()).with_acl(acl)),
    )
    .unwrap();
    let mut conn = common::connect(server.local_addr());
    let before = store.offsets();
    let refused: Vec<(&str, RemotingCommand)> = vec![
        ("unsigned", send("Open", b"x")),
        ("forged", {
            let mut r = signed(send("Open", b"x"), "writer", "writer-secret");
            r.ext_fields
                .insert("Signature".into(), "AAAAAAAAAAAAAAAAAAAAAAAAAAA=".into());
            r
        }),
        (
            "wrong secret",
            signed(send("Open", b"x"), "writer", "not-the-secret"),
        ),
        ("replayed with another body", {
            let mut r = signed(send("Open", b"original"), "writer", "writer-secret");
            r.body = b"tampered".to_vec();
            r
        }),
        (
            "unknown account",
            signed(send("Open", b"x"), "nobody", "whatever-secret"),
        ),
        (
            "no PUB on the topic",
            signed(send("Closed", b"x"), "writer", "writer-secret"),
        ),
        (
            "admin code from a non-admin",
            signed(
                RemotingCommand::request(request::UPDATE_AND_CREATE_TOPIC, 2)
                    .with_field("topic", "NewTopic")
                    .with_field("writeQueueNums", 4),
                "writer",
                "writer-secret",
            ),
        ),
    ];
    for (what, req) in refused {
        let r = common::roundtrip(&mut conn, &encode_frame(&req).unwrap());
        assert_eq!(r.code, response::NO_PERMISSION, "{what}: {:?}", r.remark);
        assert!(r.remark.is_some_and(|m| !m.is_empty()), "{what}: no reason");
    }
    assert_eq!(store.offsets(), before, "a refused request wrote something");

    let r = common::roundtrip(
        &mut conn,
        &encode_frame(&signed(send("Open", b"ok"), "writer", "writer-secret")).unwrap(),
    );
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    let r = common::roundtrip(
        &mut conn,
        &encode_frame(&signed(
            RemotingCommand::request(request::UPDATE_AND_CREATE_TOPIC, 3)
                .with_field("topic", "NewTopic")
                .with_field("writeQueueNums", 4),
            "boss",
            "boss-secret",
        ))
        .unwrap(),
    );
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    assert!(store.offsets().written > before.written);
}
