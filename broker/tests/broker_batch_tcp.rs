//! SEND_BATCH_MESSAGE (320) over loopback TCP: a batch's messages come
//! back from a pull with their own bodies, flags and properties (the
//! header's merged in), consecutive, answered with RocketMQ's
//! comma-joined message ids; a malformed batch (cut short, negative or
//! oversized lengths, seeded random bytes, a bad message among good ones)
//! is refused naming the message and field, and nothing is written.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use mqlab_engine::FlushKind;
use mqlab_protocol::body::batch::{self, BatchEntry};
use mqlab_protocol::codes::{request, response};
use mqlab_protocol::headers::{PullMessageRequest, SendMessageRequest, SendMessageResponse};
use mqlab_protocol::{encode_frame, RemotingCommand};

fn setup(max_pending_sends: usize) -> common::WireBroker {
    common::wire_broker(FlushKind::Group, max_pending_sends)
}

fn header(topic: &str, queue: i32, props: &str) -> SendMessageRequest {
    SendMessageRequest {
        producer_group: "PG".into(),
        topic: topic.into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        queue_id: queue,
        sys_flag: 0,
        born_timestamp: 1_733_000_000_000,
        flag: 0,
        properties: props.into(),
        reconsume_times: 0,
        unit_mode: false,
        batch: true,
        max_reconsume_times: None,
        broker_name: None,
    }
}

/// A SEND_BATCH_MESSAGE frame: V2 (one-letter) fields as Java sends them,
/// or the long names.
fn batch_frame(h: &SendMessageRequest, v2: bool, body: Vec<u8>) -> Vec<u8> {
    let mut req = RemotingCommand::request(request::SEND_BATCH_MESSAGE, 7).with_body(body);
    req.ext_fields = h.to_fields(v2);
    encode_frame(&req).unwrap()
}

fn entry(flag: i32, body: &[u8], props: &str) -> BatchEntry {
    BatchEntry {
        flag,
        body: body.to_vec(),
        properties: props.as_bytes().to_vec(),
    }
}

fn three() -> Vec<BatchEntry> {
    vec![
        entry(
            1,
            b"first",
            "KEYS\u{1}k1\u{2}TAGS\u{1}TagA\u{2}UNIQ_KEY\u{1}U1\u{2}X\u{1}own\u{2}",
        ),
        entry(2, b"", "UNIQ_KEY\u{1}U2\u{2}"),
        entry(
            -3,
            &[0u8, 255, 1, 254],
            "KEYS\u{1}k3 k4\u{2}UNIQ_KEY\u{1}U3",
        ),
    ]
}

fn roundtrip(addr: SocketAddr, bytes: &[u8]) -> RemotingCommand {
    common::roundtrip(&mut common::connect(addr), bytes)
}

fn max_offset(addr: SocketAddr, topic: &str, queue: u32) -> String {
    let r = roundtrip(
        addr,
        &encode_frame(
            &RemotingCommand::request(request::GET_MAX_OFFSET, 2)
                .with_field("topic", topic)
                .with_field("queueId", queue),
        )
        .unwrap(),
    );
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    r.ext_fields["offset"].clone()
}

/// Physical offsets of the records a pull returned, in order.
fn pulled(addr: SocketAddr, topic: &str, queue: u32) -> Vec<u64> {
    let req = PullMessageRequest {
        consumer_group: "CG".into(),
        topic: topic.into(),
        queue_id: queue as i32,
        queue_offset: 0,
        max_msg_nums: 32,
        sys_flag: 0,
        commit_offset: 0,
        suspend_timeout_millis: 0,
        subscription: None,
        sub_version: 0,
        expression_type: None,
    };
    let mut cmd = RemotingCommand::request(request::PULL_MESSAGE, 11);
    cmd.ext_fields = req.to_fields();
    let r = roundtrip(addr, &encode_frame(&cmd).unwrap());
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    common::record_offsets(&r.body)
}

fn phys_of(msg_id: &str) -> u64 {
    assert_eq!(msg_id.len(), 32, "{msg_id}");
    u64::from_str_radix(&msg_id[16..], 16).unwrap()
}

#[test]
fn a_batch_round_trips_message_by_message() {
    let s = setup(10_000);
    let addr = s.server.local_addr();
    let entries = three();
    let h = header(
        "BatchTopic",
        1,
        "WAIT\u{1}true\u{2}X\u{1}header\u{2}UNIQ_KEY\u{1}BATCH\u{2}",
    );
    let r = roundtrip(
        addr,
        &batch_frame(&h, true, batch::encode(&entries).unwrap()),
    );
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    let resp = SendMessageResponse::from_fields(&r.ext_fields).unwrap();
    assert_eq!((resp.queue_id, resp.queue_offset), (1, 0));
    assert_eq!(resp.transaction_id.as_deref(), Some("BATCH"));
    let ids: Vec<u64> = resp.msg_id.split(',').map(phys_of).collect();
    assert_eq!(ids.len(), 3, "{}", resp.msg_id);

    s.store
        .wait_dispatched(s.store.offsets().committed, Duration::from_secs(10));
    let phys = pulled(addr, "BatchTopic", 1);
    assert_eq!(phys, ids, "the pull returns the ids the send answered");
    for (k, (p, e)) in phys.iter().zip(&entries).enumerate() {
        let m = s.store.get(*p).unwrap();
        assert_eq!(m.body, e.body, "message {k}");
        assert_eq!(m.flag, e.flag, "message {k}");
        assert_eq!((m.topic.as_str(), m.queue_id), ("BatchTopic", 1));
        assert_eq!(m.queue_offset, k as u64, "consecutive in the queue");
        assert_eq!(m.born_timestamp_ms, 1_733_000_000_000);
        let own = mqlab_engine::log::record::decode_properties(&e.properties).unwrap();
        for (name, v) in &own {
            assert_eq!(m.properties.get(name), Some(v), "message {k}: {name}");
        }
        // The header's properties are merged in; a message's own value
        // wins, and the batch's id stays the batch's.
        assert_eq!(m.properties.get("WAIT").map(String::as_str), Some("true"));
        let x = if k == 0 { "own" } else { "header" };
        assert_eq!(m.properties.get("X").map(String::as_str), Some(x));
        assert_ne!(
            m.properties.get("UNIQ_KEY").map(String::as_str),
            Some("BATCH")
        );
    }

    // Long names are read too; the next batch follows in the queue.
    let h = header("BatchTopic", 1, "");
    let r = roundtrip(
        addr,
        &batch_frame(&h, false, batch::encode(&entries[..1]).unwrap()),
    );
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    assert_eq!(r.ext_fields["queueOffset"], "3");
    assert!(!r.ext_fields["msgId"].contains(','));
}

#[test]
fn malformed_batches_are_refused_and_write_nothing() {
    let s = setup(10_000);
    let addr = s.server.local_addr();
    let good = batch::encode(&three()).unwrap();
    // Where the second message starts: the first one's totalSize.
    let second = i32::from_be_bytes(good[..4].try_into().unwrap()) as usize;
    let patch = |at: usize, bytes: &[u8]| {
        let mut b = good.clone();
        b[at..at + bytes.len()].copy_from_slice(bytes);
        b
    };
    let h = header("Hostile", 0, "");
    // (header, body, what the remark must name)
    let mut cases: Vec<(SendMessageRequest, Vec<u8>, &str)> = vec![
        (
            h.clone(),
            good[..good.len() - 1].to_vec(),
            "message 2: totalSize",
        ),
        (
            h.clone(),
            good[..second + 10].to_vec(),
            "message 1: totalSize",
        ),
        (
            h.clone(),
            patch(0, &(-1i32).to_be_bytes()),
            "message 0: totalSize",
        ),
        (
            h.clone(),
            patch(0, &i32::MAX.to_be_bytes()),
            "message 0: totalSize",
        ),
        (
            h.clone(),
            patch(second + 16, &(-7i32).to_be_bytes()),
            "message 1: bodyLen",
        ),
        (
            h.clone(),
            patch(16, &(1i32 << 30).to_be_bytes()),
            "message 0: bodyLen",
        ),
        (
            h.clone(),
            patch(25, &(-1i16).to_be_bytes()),
            "message 0: propertiesLen",
        ),
        (h.clone(), Vec::new(), "message 0: totalSize"),
        (
            h.clone(),
            batch::encode(&vec![entry(0, b"", ""); 1025]).unwrap(),
            "message 1024: totalSize",
        ),
        (
            h.clone(),
            batch::encode(&[entry(0, &vec![7u8; 300 * 1024], "")]).unwrap(),
            "max_message_bytes",
        ),
        (
            h.clone(),
            batch::encode(&[entry(0, b"ok", ""), entry(0, b"ok", "no-separator-here")]).unwrap(),
            "message 1: properties",
        ),
        (
            h.clone(),
            batch::encode(&[entry(0, b"ok", ""), entry(0, b"x", "DELAY\u{1}2\u{2}")]).unwrap(),
            "message 1: properties",
        ),
        (
            h.clone(),
            batch::encode(&[entry(0, b"x", "TIMER_DELAY_MS\u{1}soon\u{2}")]).unwrap(),
            "message 0: property TIMER_DELAY_MS",
        ),
        (
            h.clone(),
            batch::encode(&[entry(0, b"x", "TRAN_MSG\u{1}true\u{2}")]).unwrap(),
            "message 0: TRAN_MSG",
        ),
        (
            header("Hostile", 0, "DELAY\u{1}3\u{2}"),
            good.clone(),
            "DELAY",
        ),
        (
            SendMessageRequest {
                sys_flag: 0x4,
                ..h.clone()
            },
            good.clone(),
            "sysFlag",
        ),
        (header("%RETRY%G", 0, ""), good.clone(), "retry topic"),
        (header("Hostile", -1, ""), good.clone(), "queueId"),
    ];
    // Seeded random bodies, and the good batch with seeded bytes flipped
    // inside its length fields.
    let mut rng = 0x5eed_ba7c_u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for i in 0..150 {
        let body: Vec<u8> = if i % 3 == 0 {
            let mut b = good.clone();
            let field = [0usize, 16, 25, second, second + 16][(next() % 5) as usize];
            b[field + (next() % 2) as usize] ^= 0x80 | next() as u8;
            b
        } else {
            (0..next() % 400).map(|_| next() as u8).collect()
        };
        cases.push((h.clone(), body, "message "));
    }
    let before = s.store.offsets();
    let mut conn = common::connect(addr);
    for (i, (h, body, names)) in cases.into_iter().enumerate() {
        let r = common::roundtrip(&mut conn, &batch_frame(&h, true, body));
        assert_eq!(
            r.code,
            response::MESSAGE_ILLEGAL,
            "case {i}: {:?}",
            r.remark
        );
        let remark = r.remark.unwrap_or_default();
        assert!(
            remark.contains(names),
            "case {i}: {remark:?} should name {names:?}"
        );
    }
    assert_eq!(s.store.offsets(), before, "a refused batch wrote something");
    assert_eq!(max_offset(addr, "Hostile", 0), "0");
    // The broker still takes a good batch.
    let r = roundtrip(addr, &batch_frame(&h, true, good));
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    s.store
        .wait_dispatched(s.store.offsets().committed, Duration::from_secs(10));
    assert_eq!(max_offset(addr, "Hostile", 0), "3");
}

#[test]
fn a_saturated_broker_answers_system_busy_to_a_batch() {
    let s = setup(0);
    let before = s.store.offsets();
    let h = header("Busy", 0, "");
    let r = roundtrip(
        s.server.local_addr(),
        &batch_frame(&h, true, batch::encode(&three()).unwrap()),
    );
    assert_eq!(r.code, response::SYSTEM_BUSY, "{:?}", r.remark);
    assert_eq!(s.store.offsets(), before);
}
