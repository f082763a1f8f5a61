//! The broker pushes requests to clients on their own connections, as
//! RocketMQ does: a group's members get NOTIFY_CONSUMER_IDS_CHANGED when
//! someone joins, and a producer with a half message it never ended gets
//! CHECK_TRANSACTION_STATE (with the half message as the body) and ends it
//! with END_TRANSACTION, after which the message is consumable.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mqlab_broker::remoting::{BrokerHandler, RemotingServer, ServerConfig};
use mqlab_broker::{Broker, BrokerConfig};
use mqlab_engine::{clock, Store, StoreConfig};
use mqlab_protocol::body::heartbeat::{ConsumerData, HeartbeatData, Subscription};
use mqlab_protocol::codes::{request, response};
use mqlab_protocol::headers::{pull_sys_flag, PullMessageRequest};
use mqlab_protocol::{decode_frame, encode_frame, Limits, RemotingCommand};

fn start() -> (tempfile::TempDir, RemotingServer) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), StoreConfig::small()).unwrap());
    let mut cfg = BrokerConfig::default();
    cfg.txn.check_interval_ms = 100;
    cfg.txn.timeout_ms = 0;
    let broker = Broker::open(store, cfg, clock::system()).unwrap();
    let server = RemotingServer::start(
        ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..ServerConfig::default()
        },
        Arc::new(BrokerHandler::new(
            broker,
            "127.0.0.1:10911".parse().unwrap(),
        )),
    )
    .unwrap();
    (dir, server)
}

/// Reads frames until one that is a request (not a response) with `code`.
fn next_push(s: &mut TcpStream, code: i32, within: Duration) -> RemotingCommand {
    let t = Instant::now();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    loop {
        while let Some((cmd, used)) = decode_frame(&buf, &Limits::default()).unwrap() {
            buf.drain(..used);
            if !cmd.is_response() && cmd.code == code {
                assert!(cmd.is_oneway(), "pushes are one-way");
                return cmd;
            }
        }
        assert!(
            t.elapsed() < within,
            "no push of code {code} within {within:?}"
        );
        match s.read(&mut chunk) {
            Ok(0) => panic!("connection closed"),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => {} // timeout slice
        }
    }
}

fn heartbeat(client: &str, producer: Option<&str>, consumer: Option<&str>) -> Vec<u8> {
    let hb = HeartbeatData {
        client_id: client.into(),
        producer_groups: producer.into_iter().map(str::to_string).collect(),
        consumers: consumer
            .into_iter()
            .map(|g| ConsumerData {
                group_name: g.into(),
                consume_type: 1,
                message_model: 1,
                consume_from_where: 0,
                subscriptions: vec![Subscription {
                    topic: "PushTopic".into(),
                    sub_string: "*".into(),
                    expression_type: "TAG".into(),
                    ..Subscription::default()
                }],
                unit_mode: false,
            })
            .collect(),
    };
    encode_frame(&RemotingCommand::request(request::HEART_BEAT, 1).with_body(hb.encode())).unwrap()
}

#[test]
fn members_hear_of_a_join() {
    let (_dir, server) = start();
    let mut b = common::connect(server.local_addr());
    assert_eq!(
        common::roundtrip(&mut b, &heartbeat("c1", None, Some("G"))).code,
        response::SUCCESS
    );
    let mut c = common::connect(server.local_addr());
    assert_eq!(
        common::roundtrip(&mut c, &heartbeat("c2", None, Some("G"))).code,
        response::SUCCESS
    );
    let push = next_push(
        &mut b,
        request::NOTIFY_CONSUMER_IDS_CHANGED,
        Duration::from_secs(5),
    );
    assert_eq!(push.ext_fields["consumerGroup"], "G");
}

#[test]
fn an_unended_half_message_is_checked_back_and_ended_on_the_wire() {
    let (_dir, server) = start();
    let mut a = common::connect(server.local_addr());
    assert_eq!(
        common::roundtrip(&mut a, &heartbeat("p1", Some("PGT"), None)).code,
        response::SUCCESS
    );
    let send = RemotingCommand::request(request::SEND_MESSAGE_V2, 2)
        .with_field("a", "PGT")
        .with_field("b", "PushTopic")
        .with_field("e", 0)
        .with_field(
            "i",
            "TRAN_MSG\u{1}true\u{2}PGROUP\u{1}PGT\u{2}UNIQ_KEY\u{1}tx-1\u{2}",
        )
        .with_body(b"half".to_vec());
    let r = common::roundtrip(&mut a, &encode_frame(&send).unwrap());
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    // Not visible yet.
    let pull = |offset: i64| {
        let mut cmd = RemotingCommand::request(request::PULL_MESSAGE, 3);
        cmd.ext_fields = PullMessageRequest {
            consumer_group: "CG".into(),
            topic: "PushTopic".into(),
            queue_id: 0,
            queue_offset: offset,
            max_msg_nums: 8,
            sys_flag: pull_sys_flag::SUBSCRIPTION,
            commit_offset: 0,
            suspend_timeout_millis: 0,
            subscription: Some("*".into()),
            sub_version: 0,
            expression_type: Some("TAG".into()),
        }
        .to_fields();
        encode_frame(&cmd).unwrap()
    };
    let mut reader = common::connect(server.local_addr());
    assert_ne!(
        common::roundtrip(&mut reader, &pull(0)).code,
        response::SUCCESS
    );
    // The check service asks the producer on its connection.
    let check = next_push(
        &mut a,
        request::CHECK_TRANSACTION_STATE,
        Duration::from_secs(10),
    );
    assert_eq!(check.ext_fields["producerGroup"], "PGT");
    assert_eq!(check.ext_fields["transactionId"], "tx-1");
    assert!(
        check.body.windows(4).any(|w| w == b"half"),
        "the half message is the body"
    );
    let end = RemotingCommand::request(request::END_TRANSACTION, 4)
        .with_field("producerGroup", "PGT")
        .with_field(
            "tranStateTableOffset",
            &check.ext_fields["tranStateTableOffset"],
        )
        .with_field("commitLogOffset", &check.ext_fields["commitLogOffset"])
        .with_field("commitOrRollback", 8)
        .with_field("fromTransactionCheck", true)
        .with_field("msgId", "tx-1")
        .with_field("transactionId", "tx-1");
    a.write_all(&encode_frame(&end).unwrap()).unwrap();
    // Committed: the real message appears in its queue.
    let t = Instant::now();
    loop {
        let r = common::roundtrip(&mut reader, &pull(0));
        if r.code == response::SUCCESS {
            assert!(r.body.windows(4).any(|w| w == b"half"));
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "never committed: {:?}",
            r.remark
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
