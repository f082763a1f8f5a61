//! Fuzz target bodies of the wire decoders (cargo-fuzz binaries in
//! `protocol/fuzz/fuzz_targets/`, one per function here). Each takes
//! arbitrary bytes, must never panic, hang or allocate beyond its input's
//! bounds, and checks what it can about the answer: whatever decodes
//! re-encodes to something that decodes the same; a stream split anywhere
//! decodes as it does whole.

use std::collections::BTreeMap;

use mqlab_broker::ha::wire::{self, ReportReader, Transfer, TransferReader, WireError};
use mqlab_protocol::body::batch;
use mqlab_protocol::body::heartbeat::HeartbeatData;
use mqlab_protocol::body::register::TopicConfigWrapper;
use mqlab_protocol::body::route::TopicRouteData;
use mqlab_protocol::headers::{
    PullMessageRequest, PullMessageResponse, QueryMessageRequest, QueryMessageResponse,
    SearchOffsetRequest, SearchOffsetResponse, SendMessageRequest, SendMessageResponse,
};
use mqlab_protocol::{decode_frame, encode_frame, ExtFields, LanguageCode, Limits, SerializeType};

/// A target's body.
pub type Body = fn(&[u8]);

/// Every target: name and body.
pub const TARGETS: [(&str, Body); 10] = [
    ("frame", frame),
    ("header_json", header_json),
    ("header_binary", header_binary),
    ("headers", headers),
    ("heartbeat", heartbeat),
    ("route", route),
    ("register", register),
    ("batch", batch),
    ("ha_report", ha_report),
    ("ha_transfer", ha_transfer),
];

/// A small frame cap, so length fields near it are reachable.
const LIMITS: Limits = Limits {
    max_frame_bytes: 1 << 16,
};

/// Whatever decodes re-encodes, in its own serialization and in the
/// other, to a frame that decodes to the same command.
fn check_frame(bytes: &[u8]) {
    let Ok(Some((cmd, used))) = decode_frame(bytes, &LIMITS) else {
        return;
    };
    assert!(used <= bytes.len());
    // The same bytes with the rest cut off decode the same.
    let (again, used_again) = decode_frame(&bytes[..used], &LIMITS)
        .expect("a frame decoded once decodes again")
        .expect("whole");
    assert_eq!(again, cmd);
    assert_eq!(used_again, used);
    // A prefix is either incomplete or (for a bad length) an error, never
    // another command.
    if used > 1 {
        if let Ok(Some(_)) = decode_frame(&bytes[..used - 1], &LIMITS) {
            panic!("a cut frame decoded");
        }
    }
    for ser in [SerializeType::Json, SerializeType::RocketMq] {
        let mut c = cmd.clone();
        c.serialize_type = ser;
        let Ok(enc) = encode_frame(&c) else {
            continue; // too long for the binary header's 16-bit code, ...
        };
        let big = Limits {
            max_frame_bytes: enc.len(),
        };
        let (back, n) = decode_frame(&enc, &big)
            .expect("an encoded frame decodes")
            .expect("whole");
        assert_eq!(n, enc.len());
        if ser == cmd.serialize_type {
            // A language ordinal no client has (past NODE_JS) goes out in
            // JSON by name, as Java's OTHER: compare it as that.
            let mut want = c.clone();
            if ser == SerializeType::Json {
                want.language = LanguageCode::parse(c.language.name());
            }
            assert_eq!(back, want);
        } else {
            // Across serializations: the request itself survives.
            assert_eq!(
                (
                    back.code,
                    back.opaque,
                    back.flag,
                    &back.ext_fields,
                    &back.body
                ),
                (c.code, c.opaque, c.flag, &c.ext_fields, &c.body)
            );
        }
    }
}

/// `decode_frame` on arbitrary bytes (a stream's front: lengths, the
/// serialize type byte, either header, the body).
pub fn frame(data: &[u8]) {
    check_frame(data);
    // The stream as a server reads it: frames one after another.
    let mut rest = data;
    while let Ok(Some((_, used))) = decode_frame(rest, &LIMITS) {
        assert!(used > 0);
        rest = &rest[used..];
    }
}

fn wrap(ser: u32, header: &[u8], body: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(8 + header.len() + body.len());
    b.extend_from_slice(&((4 + header.len() + body.len()) as i32).to_be_bytes());
    b.extend_from_slice(&((ser << 24) | header.len() as u32).to_be_bytes());
    b.extend_from_slice(header);
    b.extend_from_slice(body);
    b
}

/// The input as a JSON header (serialize type 0) of a well-framed frame.
pub fn header_json(data: &[u8]) {
    if data.len() > 0x00ff_ffff {
        return;
    }
    check_frame(&wrap(0, data, b"body"));
}

/// The input as a ROCKETMQ binary header (serialize type 1).
pub fn header_binary(data: &[u8]) {
    if data.len() > 0x00ff_ffff {
        return;
    }
    check_frame(&wrap(1, data, b"body"));
}

/// Field names the headers read, so one input byte can name one.
const FIELD_NAMES: [&str; 52] = [
    "producerGroup",
    "topic",
    "defaultTopic",
    "defaultTopicQueueNums",
    "queueId",
    "sysFlag",
    "bornTimestamp",
    "flag",
    "properties",
    "reconsumeTimes",
    "unitMode",
    "maxReconsumeTimes",
    "batch",
    "brokerName",
    "a",
    "b",
    "c",
    "d",
    "e",
    "f",
    "g",
    "h",
    "i",
    "j",
    "k",
    "l",
    "m",
    "n",
    "msgId",
    "transactionId",
    "consumerGroup",
    "queueOffset",
    "maxMsgNums",
    "commitOffset",
    "suspendTimeoutMillis",
    "subscription",
    "subVersion",
    "expressionType",
    "suggestWhichBrokerId",
    "nextBeginOffset",
    "minOffset",
    "maxOffset",
    "key",
    "maxNum",
    "beginTimestamp",
    "endTimestamp",
    "_UNIQUE_KEY_QUERY",
    "indexLastUpdateTimestamp",
    "indexLastUpdatePhyoffset",
    "timestamp",
    "boundaryType",
    "offset",
];

/// Ext fields from bytes: chunks split at 0xFF, taken as key, value, key,
/// value...; a one-byte key below [`FIELD_NAMES`]'s length names that
/// field, any other key and every value is the chunk as (lossy) UTF-8.
pub fn fields_of(data: &[u8]) -> BTreeMap<String, String> {
    let mut f = BTreeMap::new();
    let mut chunks = data.split(|b| *b == 0xff);
    while let (Some(k), Some(v)) = (chunks.next(), chunks.next()) {
        let key = match k {
            [i] if (*i as usize) < FIELD_NAMES.len() => FIELD_NAMES[*i as usize].to_string(),
            _ => String::from_utf8_lossy(k).into_owned(),
        };
        f.insert(key, String::from_utf8_lossy(v).into_owned());
    }
    f
}

/// Every request and response header decoder of `headers.rs` on ext
/// fields made from the input (and the lenient accessors under them);
/// whatever decodes writes fields that decode to the same header.
pub fn headers(data: &[u8]) {
    let f = fields_of(data);
    for v2 in [false, true] {
        if let Ok(h) = SendMessageRequest::from_fields(&f, v2) {
            let back = SendMessageRequest::from_fields(&h.to_fields(v2), v2)
                .expect("written send fields decode");
            assert_eq!(back, h);
        }
    }
    macro_rules! round_trip {
        ($($t:ty),*) => {$(
            if let Ok(h) = <$t>::from_fields(&f) {
                let back = <$t>::from_fields(&h.to_fields()).expect("written fields decode");
                assert_eq!(back, h);
            }
        )*};
    }
    round_trip!(
        SendMessageResponse,
        PullMessageRequest,
        PullMessageResponse,
        QueryMessageRequest,
        QueryMessageResponse,
        SearchOffsetRequest,
        SearchOffsetResponse
    );
    for name in FIELD_NAMES {
        let _ = f.str_opt(name);
        let _ = f.i64_opt(name);
        let _ = f.i32_opt(name);
        let _ = f.bool_or_false(name);
        let _ = f.enum_opt(name, &["TAG", "SQL92"]);
    }
}

/// HEART_BEAT bodies.
pub fn heartbeat(data: &[u8]) {
    if let Ok(h) = HeartbeatData::decode(data) {
        let back = HeartbeatData::decode(&h.encode()).expect("an encoded heartbeat decodes");
        assert_eq!(back, h);
    }
}

/// GET_ROUTEINFO_BY_TOPIC answers (both of Java's JSON styles).
pub fn route(data: &[u8]) {
    if let Ok(r) = TopicRouteData::decode(data) {
        for standard in [false, true] {
            let back =
                TopicRouteData::decode(&r.encode(standard)).expect("an encoded route decodes");
            assert_eq!(back, r, "standard JSON: {standard}");
        }
    }
}

/// REGISTER_BROKER bodies (a name server decodes them).
pub fn register(data: &[u8]) {
    if let Ok(w) = TopicConfigWrapper::decode(data) {
        let back = TopicConfigWrapper::decode(&w.encode()).expect("an encoded wrapper decodes");
        assert_eq!(back, w);
    }
}

/// SEND_BATCH_MESSAGE bodies.
pub fn batch(data: &[u8]) {
    let max = 64;
    match batch::decode(data, max) {
        Ok(entries) => {
            assert!(!entries.is_empty() && entries.len() <= max);
            let enc = batch::encode(&entries).expect("decoded entries encode");
            assert_eq!(batch::decode(&enc, max).expect("re-decodes"), entries);
            let bytes: usize = entries
                .iter()
                .map(|e| e.body.len() + e.properties.len())
                .sum();
            assert!(bytes <= data.len());
        }
        Err(e) => assert!(e.index <= max),
    }
}

/// The first byte picks how a stream is cut into reads (1..=256 bytes).
fn pieces(data: &[u8]) -> (usize, &[u8]) {
    match data.split_first() {
        Some((n, rest)) => (*n as usize + 1, rest),
        None => (1, data),
    }
}

/// A master reading slave reports: read whole or cut anywhere, the same
/// newest report and the same first error.
pub fn ha_report(data: &[u8]) {
    let (step, stream) = pieces(data);
    let mut whole = ReportReader::default();
    let at_once = whole.feed(stream);
    let mut cut = ReportReader::default();
    let mut newest = None;
    let mut err = None;
    for piece in stream.chunks(step) {
        match cut.feed(piece) {
            Ok(Some(v)) => newest = Some(v),
            Ok(None) => {}
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    match (at_once, err) {
        (Err(a), Some(b)) => assert_eq!(a, b),
        (Ok(n), None) => assert_eq!(n, newest),
        (a, b) => panic!("whole: {a:?}, cut: {b:?}"),
    }
    if stream.len() >= wire::REPORT_BYTES {
        let mut b = [0u8; wire::REPORT_BYTES];
        b.copy_from_slice(&stream[..wire::REPORT_BYTES]);
        let v = i64::from_be_bytes(b);
        if v >= 0 {
            assert_eq!(wire::encode_report(v as u64), b);
        }
    }
}

/// A slave reading transfers: read whole or cut anywhere, the same
/// transfers and the same first error; every header that decodes is in
/// bounds and re-encodes to its bytes.
pub fn ha_transfer(data: &[u8]) {
    let (step, stream) = pieces(data);
    let run = |step: usize| {
        let mut r = TransferReader::default();
        let mut got: Vec<Transfer> = Vec::new();
        let mut err = None;
        for piece in stream.chunks(step.max(1)) {
            let res = r.feed::<WireError>(piece, &mut |t| {
                got.push(t);
                Ok(())
            });
            if let Err(e) = res {
                err = Some(e);
                break;
            }
        }
        (got, err)
    };
    let whole = run(stream.len());
    let cut = run(step);
    assert_eq!(whole, cut);
    let body_bytes: usize = whole.0.iter().map(|t| t.body.len()).sum();
    assert!(body_bytes + whole.0.len() * wire::HEADER_BYTES <= stream.len());
    if stream.len() >= wire::HEADER_BYTES {
        let mut h = [0u8; wire::HEADER_BYTES];
        h.copy_from_slice(&stream[..wire::HEADER_BYTES]);
        if let Ok(d) = wire::decode_header(&h) {
            assert!(d.size <= wire::MAX_BODY_BYTES);
            assert_eq!(wire::encode_header(d.phys_offset, d.size as u32), h);
        }
    }
}
