//! ACL 1.0 on the wire of a whole [`Node`] (issue 16): unsigned requests,
//! forged signatures, signed requests replayed with another body or
//! another field, accounts without PUB on the topic (every send code),
//! without SUB on a group or topic (pull, send-back, offsets, locks,
//! heartbeats, queries), and admin codes from a non-admin: each is
//! refused NO_PERMISSION with a reason, in both header serializations,
//! and none of them writes anything (commit log, topics).
//!
//! Regression cases (found here): a signed send naming a permitted topic
//! in one field (`topic`) and a forbidden one in another (`b`, which a V2
//! send and a batch read) was stored in the forbidden topic; a send-back
//! naming a permitted `consumerGroup` and a forbidden `group` was written
//! to the forbidden group's retry topic; RocketMQ's other admin codes
//! (UPDATE_BROKER_CONFIG, DELETE_TOPIC_IN_BROKER, subscription groups,
//! ACL updates) were not refused to non-admins.

mod common;

use std::sync::Arc;

use common::signed;
use mqlab_broker::acl::{Acl, ADMIN_CODES};
use mqlab_broker::node::{Node, NodeConfig};
use mqlab_engine::StoreConfig;
use mqlab_protocol::body::batch::{encode as encode_batch, BatchEntry};
use mqlab_protocol::codes::{request, response};
use mqlab_protocol::{encode_frame, RemotingCommand, SerializeType};

const ACL: &str = r#"
[[accounts]]
accessKey = "writer"
secretKey = "writer-secret"
defaultTopicPerm = "DENY"
defaultGroupPerm = "DENY"
topicPerms = ["Open=PUB|SUB", "PubOnly=PUB"]
groupPerms = ["OkGroup=SUB"]

[[accounts]]
accessKey = "boss"
secretKey = "boss-secret"
admin = true
defaultTopicPerm = "PUB|SUB"
defaultGroupPerm = "SUB"
"#;

fn start(dir: &std::path::Path) -> Node {
    let mut cfg = NodeConfig::new(dir);
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.embedded_namesrv = None;
    cfg.store = StoreConfig::small();
    cfg.acl = Some(Arc::new(Acl::parse(ACL).unwrap()));
    Node::start(cfg).unwrap()
}

fn v2_send(topic: &str, body: &[u8]) -> RemotingCommand {
    RemotingCommand::request(request::SEND_MESSAGE_V2, 1)
        .with_field("a", "PG")
        .with_field("b", topic)
        .with_field("d", 4)
        .with_field("e", 0)
        .with_field("i", "")
        .with_body(body.to_vec())
}

fn v1_send(topic: &str, body: &[u8]) -> RemotingCommand {
    RemotingCommand::request(request::SEND_MESSAGE, 1)
        .with_field("producerGroup", "PG")
        .with_field("topic", topic)
        .with_field("defaultTopicQueueNums", 4)
        .with_field("queueId", 0)
        .with_field("properties", "")
        .with_body(body.to_vec())
}

fn batch_body() -> Vec<u8> {
    let e = BatchEntry {
        flag: 0,
        body: b"batched".to_vec(),
        properties: Vec::new(),
    };
    encode_batch(&[e.clone(), e]).unwrap()
}

fn batch(topic: &str) -> RemotingCommand {
    let mut r = v2_send(topic, &batch_body()).with_field("m", true);
    r.code = request::SEND_BATCH_MESSAGE;
    r
}

fn pull(topic: &str, group: &str) -> RemotingCommand {
    RemotingCommand::request(request::PULL_MESSAGE, 1)
        .with_field("consumerGroup", group)
        .with_field("topic", topic)
        .with_field("queueId", 0)
        .with_field("queueOffset", 0)
        .with_field("maxMsgNums", 32)
        .with_field("sysFlag", 0)
        .with_field("commitOffset", 0)
        .with_field("suspendTimeoutMillis", 0)
        .with_field("subVersion", 0)
}

fn heartbeat(group: &str, topic: &str) -> RemotingCommand {
    let body = format!(
        r#"{{"clientID":"acl-client","producerDataSet":[],"consumerDataSet":[{{"groupName":"{group}","consumeType":"CONSUME_PASSIVELY","messageModel":"CLUSTERING","consumeFromWhere":"CONSUME_FROM_LAST_OFFSET","subscriptionDataSet":[{{"topic":"{topic}","subString":"*","tagsSet":[],"codeSet":[],"subVersion":0,"expressionType":"TAG"}}],"unitMode":false}}]}}"#
    );
    RemotingCommand::request(request::HEART_BEAT, 1).with_body(body.into_bytes())
}

fn send_back(group: &str, offset: u64) -> RemotingCommand {
    RemotingCommand::request(request::CONSUMER_SEND_MSG_BACK, 1)
        .with_field("offset", offset)
        .with_field("group", group)
        .with_field("delayLevel", 0)
        .with_field("originMsgId", "x")
        .with_field("originTopic", "Open")
        .with_field("maxReconsumeTimes", 16)
}

fn writer(req: RemotingCommand) -> RemotingCommand {
    signed(req, "writer", "writer-secret")
}

/// Sends `req` in both serializations on `conn`; the answers.
fn ask_both(conn: &mut std::net::TcpStream, req: &RemotingCommand) -> Vec<RemotingCommand> {
    [SerializeType::Json, SerializeType::RocketMq]
        .into_iter()
        .map(|ser| {
            let mut r = req.clone();
            r.serialize_type = ser;
            common::roundtrip(conn, &encode_frame(&r).unwrap())
        })
        .collect()
}

#[test]
fn refused_requests_get_no_permission_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path());
    let mut conn = common::connect(node.addr());

    // What the refused requests could reach: a record in Open (for the
    // send-back), the Open topic itself.
    let a = common::roundtrip(
        &mut conn,
        &encode_frame(&writer(v2_send("Open", b"first"))).unwrap(),
    );
    assert_eq!(a.code, response::SUCCESS, "{:?}", a.remark);
    let record = u64::from_str_radix(&a.ext_fields["msgId"][16..], 16).unwrap();

    let before = node.store().offsets();
    let topics_before = node.broker().topics();

    let mut cases: Vec<(String, RemotingCommand)> = Vec::new();
    let mut add = |what: &str, r: RemotingCommand| cases.push((what.to_string(), r));

    // Unsigned, every kind of request.
    for (what, r) in [
        ("V2 send", v2_send("Open", b"x")),
        ("V1 send", v1_send("Open", b"x")),
        ("batch", batch("Open")),
        ("pull", pull("Open", "OkGroup")),
        ("heartbeat", heartbeat("OkGroup", "Open")),
        ("send-back", send_back("OkGroup", record)),
        (
            "create topic",
            RemotingCommand::request(request::UPDATE_AND_CREATE_TOPIC, 1)
                .with_field("topic", "New")
                .with_field("writeQueueNums", 4),
        ),
        (
            "end transaction",
            RemotingCommand::request(request::END_TRANSACTION, 1)
                .with_field("producerGroup", "PG")
                .with_field("commitLogOffset", record)
                .with_field("commitOrRollback", 8),
        ),
        ("unknown code", RemotingCommand::request(9_999, 1)),
    ] {
        add(&format!("unsigned {what}"), r);
    }
    // An AccessKey without a signature, or with an empty one.
    {
        let mut r = v2_send("Open", b"x");
        r.ext_fields.insert("AccessKey".into(), "writer".into());
        add("AccessKey without Signature", r.clone());
        r.ext_fields.insert("Signature".into(), String::new());
        add("empty Signature", r);
    }
    // Forged: a made-up signature, the wrong secret, an unknown account,
    // another account's signature under this key.
    {
        let mut r = writer(v2_send("Open", b"x"));
        r.ext_fields
            .insert("Signature".into(), "AAAAAAAAAAAAAAAAAAAAAAAAAAA=".into());
        add("made-up signature", r);
        add(
            "wrong secret",
            signed(v2_send("Open", b"x"), "writer", "not-the-secret"),
        );
        add(
            "unknown account",
            signed(v2_send("Open", b"x"), "nobody", "nobody-secret"),
        );
        let mut r = signed(v2_send("Open", b"x"), "boss", "boss-secret");
        r.ext_fields.insert("AccessKey".into(), "writer".into());
        add("the boss's signature under the writer's key", r);
        let mut r = writer(v2_send("Open", b"x"));
        r.ext_fields.insert("AccessKey".into(), "boss".into());
        add("the writer's signature under the boss's key", r);
    }
    // Replayed: a signed request with another body, another field, a
    // field added, or a batch with another body.
    {
        let mut r = writer(v2_send("Open", b"original"));
        r.body = b"tampered".to_vec();
        add("replayed with another body", r);
        let mut r = writer(v2_send("Open", b"original"));
        r.ext_fields.insert("e".into(), "1".into());
        add("replayed with another queue", r);
        let mut r = writer(v2_send("Open", b"original"));
        r.ext_fields.insert("i".into(), "KEYS\u{1}k\u{2}".into());
        add("replayed with properties", r);
        let mut r = writer(v2_send("Open", b"original"));
        r.ext_fields.insert("b".into(), "Closed".into());
        add("replayed to another topic", r);
        let mut r = writer(batch("Open"));
        let mut other = batch_body();
        other.extend_from_slice(&batch_body());
        r.body = other;
        add("replayed batch with another body", r);
        let mut r = writer(v2_send("Open", b"original"));
        r.body.clear();
        add("replayed without its body", r);
    }
    // No PUB on the topic, every send code.
    add("V2 send, no PUB", writer(v2_send("Closed", b"x")));
    add("V1 send, no PUB", writer(v1_send("Closed", b"x")));
    add("batch, no PUB", writer(batch("Closed")));
    add(
        "V2 send marked batch, no PUB",
        writer(v2_send("Closed", &batch_body()).with_field("m", true)),
    );
    add(
        "V1 send marked batch, no PUB",
        writer(v1_send("Closed", &batch_body()).with_field("batch", true)),
    );
    add(
        "send to the retry topic of a group, no PUB",
        writer(v2_send("%RETRY%OkGroup", b"x")),
    );
    // Two topic fields, one permitted (regression: the first found was
    // checked, the handler stored into the other).
    add(
        "V2 send: topic=Open, b=Closed",
        writer(v2_send("Closed", b"x").with_field("topic", "Open")),
    );
    add(
        "V1 batch: topic=Open, b=Closed",
        writer(
            v1_send("Open", &batch_body())
                .with_field("batch", true)
                .with_field("a", "PG")
                .with_field("b", "Closed")
                .with_field("e", 0),
        ),
    );
    add(
        "batch: topic=Open, b=Closed",
        writer(batch("Closed").with_field("topic", "Open")),
    );
    // No SUB: topics and groups.
    add(
        "pull, no SUB on the topic",
        writer(pull("PubOnly", "OkGroup")),
    );
    add(
        "pull, no SUB on the group",
        writer(pull("Open", "OtherGroup")),
    );
    add(
        "query by key, no SUB on the topic",
        writer(
            RemotingCommand::request(request::QUERY_MESSAGE, 1)
                .with_field("topic", "PubOnly")
                .with_field("key", "k")
                .with_field("maxNum", 32)
                .with_field("beginTimestamp", 0)
                .with_field("endTimestamp", i64::MAX),
        ),
    );
    add(
        "heartbeat into a group without SUB",
        writer(heartbeat("OtherGroup", "Open")),
    );
    add(
        "heartbeat subscribing a topic without SUB",
        writer(heartbeat("OkGroup", "PubOnly")),
    );
    add(
        "send-back as a group without SUB",
        writer(send_back("OtherGroup", record)),
    );
    // Regression: the permitted consumerGroup was checked, the handler
    // used `group`.
    add(
        "send-back: consumerGroup=OkGroup, group=OtherGroup",
        writer(send_back("OtherGroup", record).with_field("consumerGroup", "OkGroup")),
    );
    for code in [
        request::UPDATE_CONSUMER_OFFSET,
        request::QUERY_CONSUMER_OFFSET,
    ] {
        add(
            &format!("{}, no SUB on the group", request::name(code)),
            writer(
                RemotingCommand::request(code, 1)
                    .with_field("consumerGroup", "OtherGroup")
                    .with_field("topic", "Open")
                    .with_field("queueId", 0)
                    .with_field("commitOffset", 5),
            ),
        );
    }
    for code in [request::LOCK_BATCH_MQ, request::UNLOCK_BATCH_MQ] {
        // The group is in the body for a lock; RocketMQ's clients also
        // name it in no field, so the ACL judges the empty group name
        // (DENY by this account's default).
        add(
            &format!("{}, no SUB on the group", request::name(code)),
            writer(RemotingCommand::request(code, 1).with_body(
                br#"{"consumerGroup":"OtherGroup","clientId":"c","mqSet":[{"topic":"Open","brokerName":"b","queueId":0}]}"#.to_vec(),
            )),
        );
    }
    add(
        "consumer list, no SUB on the group",
        writer(
            RemotingCommand::request(request::GET_CONSUMER_LIST_BY_GROUP, 1)
                .with_field("consumerGroup", "OtherGroup"),
        ),
    );
    // Admin codes from a non-admin.
    for code in ADMIN_CODES {
        add(
            &format!(
                "admin code {code} ({}) from a non-admin",
                request::name(code)
            ),
            writer(
                RemotingCommand::request(code, 1)
                    .with_field("topic", "Open")
                    .with_field("writeQueueNums", 8)
                    .with_field("groupName", "OkGroup"),
            ),
        );
    }

    let n = cases.len();
    let mut failures = Vec::new();
    for (what, r) in &cases {
        for a in ask_both(&mut conn, r) {
            if a.code != response::NO_PERMISSION {
                failures.push(format!("{what}: code {} {:?}", a.code, a.remark));
            } else if a.remark.as_deref().is_none_or(str::is_empty) {
                failures.push(format!("{what}: no reason given"));
            }
        }
    }
    println!("ACL_WIRE cases={} refused_both_serializations", n);
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(
        node.store().offsets().written,
        before.written,
        "a refused request wrote to the commit log"
    );
    assert_eq!(
        node.broker().topics(),
        topics_before,
        "a refused request created a topic"
    );
    assert!(node.broker().consumer_ids("OtherGroup").is_empty());

    // What the accounts may do still works.
    let ok = |conn: &mut std::net::TcpStream, r: RemotingCommand| {
        let a = common::roundtrip(conn, &encode_frame(&r).unwrap());
        assert_eq!(a.code, response::SUCCESS, "{:?}", a.remark);
        a
    };
    ok(&mut conn, writer(v1_send("Open", b"v1")));
    ok(&mut conn, writer(v2_send("PubOnly", b"v2")));
    ok(&mut conn, writer(batch("Open")));
    ok(&mut conn, writer(heartbeat("OkGroup", "Open")));
    ok(&mut conn, writer(pull("Open", "OkGroup")));
    ok(&mut conn, writer(send_back("OkGroup", record)));
    ok(
        &mut conn,
        signed(
            RemotingCommand::request(request::UPDATE_AND_CREATE_TOPIC, 3)
                .with_field("topic", "NewTopic")
                .with_field("writeQueueNums", 4),
            "boss",
            "boss-secret",
        ),
    );
    assert!(node.broker().topics().contains_key("NewTopic"));
    assert!(node.store().offsets().written > before.written);
    node.shutdown().unwrap();
}
