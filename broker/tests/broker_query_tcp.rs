//! Lookups over loopback TCP: QUERY_MESSAGE finds a topic's messages by
//! key (or unique key) through the index and returns their records as
//! stored, oldest first, capped by maxNum; nothing found is QUERY_NOT_FOUND
//! (22). SEARCH_OFFSET_BY_TIMESTAMP answers, for every store time of a
//! queue whose messages were stored at different times, what a linear scan
//! of the queue answers (LOWER and UPPER).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use mqlab_engine::StoreConfig;
use mqlab_protocol::codes::{request, response};
use mqlab_protocol::headers::{
    BoundaryType, QueryMessageRequest, QueryMessageResponse, SearchOffsetRequest,
    SearchOffsetResponse,
};
use mqlab_protocol::{encode_frame, RemotingCommand};

fn setup() -> common::WireBroker {
    common::wire_broker(StoreConfig::small().flush.kind, 10_000)
}

fn call(addr: SocketAddr, req: &RemotingCommand) -> RemotingCommand {
    common::roundtrip(&mut common::connect(addr), &encode_frame(req).unwrap())
}

/// Sends one message (SEND_MESSAGE_V2) and returns its physical offset.
fn send(addr: SocketAddr, topic: &str, queue: u32, props: &str, body: &str) -> u64 {
    let req = RemotingCommand::request(request::SEND_MESSAGE_V2, 3)
        .with_field("a", "PG")
        .with_field("b", topic)
        .with_field("d", 4)
        .with_field("e", queue)
        .with_field("i", props)
        .with_body(body.as_bytes().to_vec());
    let r = call(addr, &req);
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    u64::from_str_radix(&r.ext_fields["msgId"][16..], 16).unwrap()
}

fn query(addr: SocketAddr, q: &QueryMessageRequest) -> RemotingCommand {
    let mut req = RemotingCommand::request(request::QUERY_MESSAGE, 12);
    req.ext_fields = q.to_fields();
    call(addr, &req)
}

fn by_key(topic: &str, key: &str, max_num: i32) -> QueryMessageRequest {
    QueryMessageRequest {
        topic: topic.into(),
        key: key.into(),
        max_num,
        begin_timestamp: 0,
        end_timestamp: i64::MAX,
        unique_key: false,
    }
}

#[test]
fn query_message_finds_by_key_and_answers_22_when_none() {
    let s = setup();
    let addr = s.server.local_addr();
    let mut order1 = Vec::new();
    for i in 0..4u32 {
        order1.push(send(
            addr,
            "Orders",
            i % 2,
            "KEYS\u{1}order-1 x\u{2}",
            &format!("o{i}"),
        ));
        send(addr, "Orders", 0, "KEYS\u{1}order-2\u{2}", "other key");
    }
    send(addr, "Refunds", 0, "KEYS\u{1}order-1\u{2}", "other topic");
    let uniq = send(addr, "Orders", 1, "UNIQ_KEY\u{1}7F0000010001ABCD\u{2}", "u");
    assert!(s
        .store
        .wait_dispatched(s.store.offsets().committed, Duration::from_secs(10)));

    // Every message of the topic with the key, as stored, oldest first.
    let r = query(addr, &by_key("Orders", "order-1", 32));
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    assert_eq!(common::record_offsets(&r.body), order1);
    let mut at = 0;
    for p in &order1 {
        let rec = s.store.record_bytes(*p).unwrap();
        assert_eq!(&r.body[at..at + rec.len()], rec.as_slice());
        at += rec.len();
    }
    let h = QueryMessageResponse::from_fields(&r.ext_fields).unwrap();
    assert_eq!(
        h.index_last_update_phyoffset as u64, uniq,
        "newest indexed message"
    );
    assert!(h.index_last_update_timestamp > 1_700_000_000_000);

    // maxNum keeps the newest.
    let r = query(addr, &by_key("Orders", "order-1", 2));
    assert_eq!(common::record_offsets(&r.body), order1[2..]);

    // A unique-key query.
    let r = query(
        addr,
        &QueryMessageRequest {
            unique_key: true,
            ..by_key("Orders", "7F0000010001ABCD", 1)
        },
    );
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    assert_eq!(common::record_offsets(&r.body), [uniq]);

    // Nothing: an unknown key, a time range before everything, maxNum 0.
    for q in [
        by_key("Orders", "order-3", 32),
        QueryMessageRequest {
            begin_timestamp: 1,
            end_timestamp: 2,
            ..by_key("Orders", "order-1", 32)
        },
        by_key("Orders", "order-1", 0),
        by_key("Nowhere", "order-1", 32),
    ] {
        let r = query(addr, &q);
        assert_eq!(r.code, response::QUERY_NOT_FOUND, "{q:?}: {:?}", r.remark);
        assert!(r.body.is_empty());
        assert!(QueryMessageResponse::from_fields(&r.ext_fields).is_ok());
    }

    // A field missing is named.
    let mut req = RemotingCommand::request(request::QUERY_MESSAGE, 13);
    req.ext_fields = by_key("Orders", "order-1", 32).to_fields();
    req.ext_fields.remove("maxNum");
    let r = call(addr, &req);
    assert_eq!(r.code, response::SYSTEM_ERROR);
    assert!(r.remark.unwrap().contains("maxNum"));
}

fn search(addr: SocketAddr, queue: i32, timestamp: i64, boundary: BoundaryType) -> i64 {
    let mut req = RemotingCommand::request(request::SEARCH_OFFSET_BY_TIMESTAMP, 29);
    req.ext_fields = SearchOffsetRequest {
        topic: "Timed".into(),
        queue_id: queue,
        timestamp,
        boundary_type: boundary,
    }
    .to_fields();
    let r = call(addr, &req);
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    SearchOffsetResponse::from_fields(&r.ext_fields)
        .unwrap()
        .offset
}

#[test]
fn search_offset_by_timestamp_matches_a_linear_scan() {
    let s = setup();
    let addr = s.server.local_addr();
    // Three bursts stored at different times, a few messages per
    // millisecond within a burst.
    for burst in 0..3 {
        for i in 0..7 {
            send(addr, "Timed", 0, "", &format!("b{burst}m{i}"));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    assert!(s
        .store
        .wait_dispatched(s.store.offsets().committed, Duration::from_secs(10)));
    let times: Vec<i64> = s
        .store
        .get_from_queue("Timed", 0, 0, 100)
        .unwrap()
        .iter()
        .map(|m| m.store_timestamp_ms)
        .collect();
    assert_eq!(times.len(), 21);
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    assert!(times[7] > times[6] && times[14] > times[13], "{times:?}");
    let n = times.len() as i64;
    // LOWER: first offset stored at or after; UPPER: last at or before.
    let lower = |t: i64| times.iter().position(|&x| x >= t).map_or(n, |p| p as i64);
    let upper = |t: i64| times.iter().rposition(|&x| x <= t).map_or(0, |p| p as i64);
    let mut probes: Vec<i64> = times.iter().flat_map(|&t| [t - 1, t, t + 1]).collect();
    probes.extend([0, times[0] - 1_000, times[20] + 1_000, i64::MAX]);
    for t in probes {
        assert_eq!(
            search(addr, 0, t, BoundaryType::Lower),
            lower(t),
            "LOWER {t}"
        );
        assert_eq!(
            search(addr, 0, t, BoundaryType::Upper),
            upper(t),
            "UPPER {t}"
        );
    }
    // The burst boundaries, spelled out.
    assert_eq!(search(addr, 0, times[7], BoundaryType::Lower), 7);
    assert_eq!(search(addr, 0, times[7] - 1, BoundaryType::Upper), 6);
    assert_eq!(search(addr, 0, times[20] + 1, BoundaryType::Lower), 21);
    // A queue with nothing: 0. A negative queue: refused.
    assert_eq!(search(addr, 3, times[7], BoundaryType::Lower), 0);
    let mut req = RemotingCommand::request(request::SEARCH_OFFSET_BY_TIMESTAMP, 30);
    req.ext_fields = SearchOffsetRequest {
        topic: "Timed".into(),
        queue_id: -1,
        timestamp: 0,
        boundary_type: BoundaryType::Lower,
    }
    .to_fields();
    assert_eq!(call(addr, &req).code, response::SYSTEM_ERROR);
}
