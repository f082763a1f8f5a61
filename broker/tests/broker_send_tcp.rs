//! Producers' sends over loopback TCP: SEND_MESSAGE_V2 and SEND_MESSAGE
//! (as the C++ client shapes it) reach the store with body, keys and tags;
//! a malformed send is refused with a reason naming the field and nothing
//! is written.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use mqlab_engine::FlushKind;
use mqlab_protocol::codes::{request, response};
use mqlab_protocol::headers::{pull_sys_flag, PullMessageRequest, PullMessageResponse};
use mqlab_protocol::{encode_frame, RemotingCommand};

fn setup() -> common::WireBroker {
    setup_with(10_000)
}

fn setup_with(max_pending_sends: usize) -> common::WireBroker {
    common::wire_broker(FlushKind::Group, max_pending_sends)
}

fn roundtrip(addr: SocketAddr, bytes: &[u8]) -> RemotingCommand {
    common::roundtrip(&mut common::connect(addr), bytes)
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
        &common::v2_send(
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
            common::v2_send("bad/topic", "0", "", b"x"),
            response::MESSAGE_ILLEGAL,
            "topic",
        ),
        (
            common::v2_send("T", "-1", "", b"x"),
            response::MESSAGE_ILLEGAL,
            "queueId",
        ),
        (
            common::v2_send("T", "x", "", b"x"),
            response::SYSTEM_ERROR,
            "queueId",
        ),
        (
            common::v2_send("T", "0", "KEYS-without-separators", b"x"),
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
            // A code no RocketMQ version defines.
            encode_frame(&RemotingCommand::request(9_999, 5)).unwrap(),
            response::REQUEST_CODE_NOT_SUPPORTED,
            "9999",
        ),
        (
            encode_frame(&RemotingCommand::request(request::PULL_MESSAGE, 6)).unwrap(),
            response::SYSTEM_ERROR,
            "consumerGroup",
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

fn pull(group: &str, queue: u32, offset: u64, flags: i32) -> Vec<u8> {
    let req = PullMessageRequest {
        consumer_group: group.into(),
        topic: "WireTopic".into(),
        queue_id: queue as i32,
        queue_offset: offset as i64,
        max_msg_nums: 32,
        sys_flag: flags,
        commit_offset: 0,
        suspend_timeout_millis: 2_000,
        subscription: Some("*".into()),
        sub_version: 0,
        expression_type: Some("TAG".into()),
    };
    let mut cmd = RemotingCommand::request(request::PULL_MESSAGE, 11);
    cmd.ext_fields = req.to_fields();
    encode_frame(&cmd).unwrap()
}

#[test]
fn pulls_return_the_records_as_stored_and_offsets_follow() {
    let s = setup();
    let addr = s.server.local_addr();
    let mut conn = common::connect(addr);
    for i in 0..10 {
        let r = common::roundtrip(
            &mut conn,
            &common::v2_send(
                "WireTopic",
                "2",
                &format!("KEYS\u{1}k{i}\u{2}"),
                format!("m{i}").as_bytes(),
            ),
        );
        assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    }
    // Max/min offsets (once dispatched) and an unknown group's offset.
    s.store
        .wait_dispatched(s.store.offsets().committed, Duration::from_secs(10));
    let q = |code: i32| {
        encode_frame(
            &RemotingCommand::request(code, 20)
                .with_field("topic", "WireTopic")
                .with_field("queueId", 2)
                .with_field("consumerGroup", "CG"),
        )
        .unwrap()
    };
    let r = common::roundtrip(&mut conn, &q(request::GET_MAX_OFFSET));
    assert_eq!(r.ext_fields["offset"], "10");
    let r = common::roundtrip(&mut conn, &q(request::GET_MIN_OFFSET));
    assert_eq!(r.ext_fields["offset"], "0");
    let r = common::roundtrip(&mut conn, &q(request::QUERY_CONSUMER_OFFSET));
    assert_eq!(r.code, response::QUERY_NOT_FOUND);

    // A pull gets the ten records, byte for byte as the store holds them.
    let r = common::roundtrip(&mut conn, &pull("CG", 2, 0, pull_sys_flag::SUBSCRIPTION));
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    let resp = PullMessageResponse::from_fields(&r.ext_fields).unwrap();
    assert_eq!((resp.next_begin_offset, resp.max_offset), (10, 10));
    let mut at = 0;
    let mut bodies = Vec::new();
    while at < r.body.len() {
        let size = u32::from_be_bytes(r.body[at..at + 4].try_into().unwrap()) as usize;
        let phys = u64::from_be_bytes(r.body[at + 28..at + 36].try_into().unwrap());
        assert_eq!(
            &r.body[at..at + size],
            s.store.record_bytes(phys).unwrap().as_slice()
        );
        let m = s.store.get(phys).unwrap();
        bodies.push(String::from_utf8(m.body).unwrap());
        at += size;
    }
    assert_eq!(bodies, (0..10).map(|i| format!("m{i}")).collect::<Vec<_>>());

    // Nothing past the end: held (long polling), then PULL_NOT_FOUND.
    let t = std::time::Instant::now();
    let r = common::roundtrip(
        &mut conn,
        &pull(
            "CG",
            2,
            10,
            pull_sys_flag::SUSPEND | pull_sys_flag::COMMIT_OFFSET,
        ),
    );
    assert_eq!(r.code, response::PULL_NOT_FOUND);
    assert!(
        t.elapsed() >= Duration::from_millis(500),
        "not held: {:?}",
        t.elapsed()
    );
    // The commit offset that pull carried (0) is the group's offset now;
    // an update moves it.
    let upd = encode_frame(
        &RemotingCommand::request(request::UPDATE_CONSUMER_OFFSET, 21)
            .with_field("topic", "WireTopic")
            .with_field("queueId", 2)
            .with_field("consumerGroup", "CG")
            .with_field("commitOffset", 7),
    )
    .unwrap();
    assert_eq!(common::roundtrip(&mut conn, &upd).code, response::SUCCESS);
    let r = common::roundtrip(&mut conn, &q(request::QUERY_CONSUMER_OFFSET));
    assert_eq!(r.ext_fields["offset"], "7");
}

#[test]
fn a_saturated_broker_answers_system_busy_and_stores_nothing() {
    let s = setup_with(0);
    let before = s.store.offsets();
    let r = roundtrip(
        s.server.local_addr(),
        &common::v2_send("WireTopic", "0", "", b"x"),
    );
    assert_eq!(r.code, response::SYSTEM_BUSY, "{:?}", r.remark);
    assert!(r.remark.unwrap().contains("retry later"));
    assert_eq!(s.store.offsets(), before);
}

#[test]
fn hostile_bytes_never_write_and_never_stop_the_broker() {
    use std::io::{Read, Write};
    let s = setup();
    let addr = s.server.local_addr();
    let before = s.store.offsets();
    // Seeded garbage, valid frames with absurd fields, and frames cut short.
    let mut rng = 0x5eed_u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut cases: Vec<Vec<u8>> = (0..200)
        .map(|i| {
            (0..(next() % 300) as usize)
                .map(|j| (next() >> (j % 56)) as u8 ^ i as u8)
                .collect()
        })
        .collect();
    cases.push(common::v2_send("T", "2147483648", "", b"x"));
    cases.push(common::v2_send(&"t".repeat(1 << 20), "0", "", b"x"));
    cases.push(common::v2_send("T", "0", "a\u{1}b\u{1}c\u{2}\u{2}", b"x"));
    cases.push(pull("G", 0, u64::MAX >> 1, 0));
    let seed_frame = common::v2_send("T", "0", "", b"x");
    cases.push(seed_frame[..seed_frame.len() / 2].to_vec());
    for (i, bytes) in cases.iter().enumerate() {
        let mut c = common::connect(addr);
        c.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let _ = c.write_all(bytes);
        let _ = c.shutdown(std::net::Shutdown::Write);
        let mut sink = Vec::new();
        let _ = c.read_to_end(&mut sink);
        // The broker still answers a well-formed request.
        if i % 50 == 0 {
            let r = roundtrip(
                addr,
                &encode_frame(&RemotingCommand::request(9_999, 9)).unwrap(),
            );
            assert_eq!(r.code, response::REQUEST_CODE_NOT_SUPPORTED);
        }
    }
    assert_eq!(
        s.store.offsets(),
        before,
        "hostile bytes reached the commit log"
    );
    let r = roundtrip(addr, &common::v2_send("T", "0", "", b"after"));
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
}

/// Many sends in flight on one connection (RocketMQ clients pipeline
/// async sends, matched by opaque): each is answered once, SUCCESS, from
/// the put's completion, and the queue offsets they were given are the
/// queue's offsets 0..n with every message where its answer said.
#[test]
fn a_thousand_sends_in_flight_on_one_connection_are_each_answered_once() {
    use std::io::{Read, Write};
    let s = setup();
    let n = 1_000usize;
    let mut c = common::connect(s.server.local_addr());
    let mut frames = Vec::new();
    for i in 0..n {
        let mut req = RemotingCommand::request(request::SEND_MESSAGE_V2, i as i32)
            .with_field("a", "PG")
            .with_field("b", "Pipelined")
            .with_field("d", 1)
            .with_field("e", 0)
            .with_field("i", format!("KEYS\u{1}p-{i}\u{2}"));
        req.body = format!("pipelined-{i}").into_bytes();
        frames.extend(encode_frame(&req).unwrap());
    }
    c.write_all(&frames).unwrap();
    let mut answers = std::collections::BTreeMap::new();
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    while answers.len() < n {
        while let Some((cmd, used)) =
            mqlab_protocol::decode_frame(&buf, &mqlab_protocol::Limits::default()).unwrap()
        {
            buf.drain(..used);
            assert_eq!(cmd.code, response::SUCCESS, "{:?}", cmd.remark);
            let prev = answers.insert(cmd.opaque, cmd);
            assert!(prev.is_none(), "answered twice");
        }
        if answers.len() < n {
            let got = c.read(&mut chunk).unwrap();
            assert!(got > 0, "closed after {} answers", answers.len());
            buf.extend_from_slice(&chunk[..got]);
        }
    }
    let mut offsets: Vec<i64> = Vec::new();
    for (opaque, a) in &answers {
        let off: i64 = a.ext_fields.get("queueOffset").unwrap().parse().unwrap();
        offsets.push(off);
        let m = s
            .store
            .get(phys_of(a.ext_fields.get("msgId").unwrap()))
            .unwrap();
        assert_eq!(m.body, format!("pipelined-{opaque}").as_bytes());
        assert_eq!(m.queue_offset as i64, off);
    }
    offsets.sort_unstable();
    assert_eq!(offsets, (0..n as i64).collect::<Vec<_>>());
}

/// A SEND_MESSAGE_V2 whose header says `batch` (m=true) carries a batch
/// body, and RocketMQ's broker stores it as one: so does mqlab.
#[test]
fn a_v2_send_marked_batch_is_stored_as_a_batch() {
    use mqlab_protocol::body::batch::{encode, BatchEntry};
    let s = setup();
    let entries: Vec<BatchEntry> = (0..2)
        .map(|i| BatchEntry {
            flag: 0,
            body: format!("in-batch-{i}").into_bytes(),
            properties: format!("KEYS\u{1}b-{i}\u{2}").into_bytes(),
        })
        .collect();
    let mut req = RemotingCommand::request(request::SEND_MESSAGE_V2, 1)
        .with_field("a", "PG")
        .with_field("b", "MarkedBatch")
        .with_field("d", 1)
        .with_field("e", 0)
        .with_field("i", "")
        .with_field("m", true);
    req.body = encode(&entries).unwrap();
    let r = roundtrip(s.server.local_addr(), &encode_frame(&req).unwrap());
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    let ids: Vec<&str> = r.ext_fields.get("msgId").unwrap().split(',').collect();
    assert_eq!(ids.len(), 2);
    for (i, id) in ids.iter().enumerate() {
        let m = s.store.get(phys_of(id)).unwrap();
        assert_eq!(m.body, format!("in-batch-{i}").as_bytes());
        assert_eq!(m.topic, "MarkedBatch");
    }
}
