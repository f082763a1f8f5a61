//! Hostile clients against a whole [`Node`] on loopback (issue 16):
//! impossible frame lengths, header lengths beyond the frame, truncated
//! frames, slow writers (one byte every 100 ms), connections that never
//! read their answers, many idle connections, unknown codes, and valid
//! frames with absurd fields (queueId -1 and 2^31, maxMsgNums 2^31,
//! negative offsets, 1 MiB topic names, properties with separators
//! inside), each in both header serializations where it has a header.
//!
//! Throughout, a well-behaved client on its own connection keeps getting
//! answers (each within [`GOOD_CLIENT_MAX_WAIT`]), the process's RSS (the
//! node runs in this process) stays under [`RSS_GROWTH_BOUND`] above what
//! it was before the hostile traffic, nothing panics, and the commit log
//! does not move: no hostile request is stored.
//!
//! Seeded: `MQLAB_WIRE_SEED=<n>` replays a run (the seed is printed first,
//! so a failure shows it). `MQLAB_WIRE_IDLE_CONNS` sets the idle
//! connections (default 2,000; the full run of issue 16 uses 9,990, as
//! many as the broker's cap of 10,000 connections leaves beside the
//! test's own). The idle connections are opened by a child process (this
//! test binary again), so both ends fit under the descriptor limit.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use mqlab_broker::node::{Node, NodeConfig};
use mqlab_engine::StoreConfig;
use mqlab_protocol::codes::{request, response};
use mqlab_protocol::{decode_frame, encode_frame, Limits, RemotingCommand, SerializeType};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Longest the well-behaved client may wait for one answer.
const GOOD_CLIENT_MAX_WAIT: Duration = Duration::from_secs(3);
/// Most the process's RSS may grow over the hostile traffic. Measured:
/// about 200 MiB with 2,000 idle connections, most of it the allocator
/// keeping what the 1 MiB requests used on each runtime thread (running
/// the frame cases 4 times levels off at the same figure); a broker that
/// reads what a client never collects passed 1 GiB within seconds.
const RSS_GROWTH_BOUND: u64 = 384 << 20;

/// The tests of this file measure the process: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
/// Connections that never read their answers.
const NON_READERS: usize = 4;
/// Bytes of the record those connections ask for again and again.
const BIG_RECORD: usize = 64 * 1024;

/// Stores one record of BIG_RECORD bytes in Good:0 over `conn`; its
/// physical offset.
fn store_big_record(conn: &mut std::net::TcpStream) -> u64 {
    let a = common::roundtrip(
        conn,
        &common::v2_send("Good", "0", "", &vec![b'g'; BIG_RECORD]),
    );
    assert_eq!(a.code, response::SUCCESS, "{:?}", a.remark);
    u64::from_str_radix(&a.ext_fields["msgId"][16..], 16).unwrap()
}

static PANICS: AtomicUsize = AtomicUsize::new(0);

/// Counts every panic of the process (runtime and blocking-pool threads
/// included) besides printing it.
fn count_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            prev(info);
        }));
    });
}

fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn start_node(dir: &std::path::Path) -> Node {
    let mut cfg = NodeConfig::new(dir);
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.embedded_namesrv = None;
    cfg.store = StoreConfig::small();
    Node::start(cfg).unwrap()
}

/// Reads one answer frame (pushed requests skipped) within `timeout`:
/// Err says "closed" or "timeout" or why the bytes did not decode.
fn read_answer(s: &mut TcpStream, timeout: Duration) -> Result<RemotingCommand, String> {
    let deadline = Instant::now() + timeout;
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        while let Some((cmd, used)) =
            decode_frame(&buf, &Limits::default()).map_err(|e| format!("bad answer: {e}"))?
        {
            buf.drain(..used);
            if cmd.is_response() {
                return Ok(cmd);
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("timeout".into());
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut chunk) {
            Ok(0) => return Err("closed".into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err("timeout".into())
            }
            Err(_) => return Err("closed".into()),
        }
    }
}

/// The well-behaved client: GET_MAX_OFFSET on its own connection every
/// 20 ms, each answer awaited at most [`GOOD_CLIENT_MAX_WAIT`].
#[derive(Default)]
struct Good {
    stop: AtomicBool,
    answered: AtomicU64,
    max_wait_us: AtomicU64,
    failures: Mutex<Vec<String>>,
}

fn good_client(addr: SocketAddr, good: Arc<Good>) -> std::thread::JoinHandle<()> {
    let mut s = TcpStream::connect(addr).unwrap();
    std::thread::spawn(move || {
        let mut opaque = 0;
        while !good.stop.load(Ordering::Acquire) {
            opaque += 1;
            let req = RemotingCommand::request(request::GET_MAX_OFFSET, opaque)
                .with_field("topic", "Good")
                .with_field("queueId", 0);
            let t = Instant::now();
            let r = s
                .write_all(&encode_frame(&req).unwrap())
                .map_err(|e| e.to_string())
                .and_then(|_| read_answer(&mut s, GOOD_CLIENT_MAX_WAIT));
            let us = t.elapsed().as_micros() as u64;
            good.max_wait_us.fetch_max(us, Ordering::Relaxed);
            match r {
                Ok(a) if a.code == response::SUCCESS && a.opaque == opaque => {
                    good.answered.fetch_add(1, Ordering::Relaxed);
                }
                Ok(a) => good.failures.lock().unwrap().push(format!(
                    "answer {} (opaque {}, wanted {opaque}): {:?}",
                    a.code, a.opaque, a.remark
                )),
                Err(e) => {
                    good.failures.lock().unwrap().push(e);
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
}

/// What a hostile case must get.
#[derive(Clone, Copy)]
enum Expect {
    /// The connection closed, no answer.
    Closed,
    /// An answer with a code that is not SUCCESS.
    Refused,
    /// An answer with this code.
    Code(i32),
    /// An answer, any code.
    Answer,
    /// No answer within a short wait, and the connection still serves.
    Silence,
}

struct Case {
    what: String,
    bytes: Vec<u8>,
    expect: Expect,
}

fn case(what: impl Into<String>, bytes: Vec<u8>, expect: Expect) -> Case {
    Case {
        what: what.into(),
        bytes,
        expect,
    }
}

/// `i32 total | u32 type<<24|hlen | rest`.
fn raw(total: i32, ht: u32, rest: &[u8]) -> Vec<u8> {
    let mut b = total.to_be_bytes().to_vec();
    b.extend_from_slice(&ht.to_be_bytes());
    b.extend_from_slice(rest);
    b
}

fn req(code: i32, fields: &[(&str, String)]) -> RemotingCommand {
    let mut r = RemotingCommand::request(code, 77);
    for (k, v) in fields {
        r.ext_fields.insert((*k).to_string(), v.clone());
    }
    r
}

/// The frame in both header serializations.
fn both(what: &str, cmd: &RemotingCommand, expect: Expect) -> Vec<Case> {
    [SerializeType::Json, SerializeType::RocketMq]
        .into_iter()
        .map(|ser| {
            let mut c = cmd.clone();
            c.serialize_type = ser;
            case(
                format!("{what} [{}]", ser.name()),
                encode_frame(&c).unwrap(),
                expect,
            )
        })
        .collect()
}

fn s(v: impl ToString) -> String {
    v.to_string()
}

/// A field value that removes the field.
const ABSENT: &str = "\u{0}absent";

/// A send's fields, V1 (long names) or V2, with `over` replacing or adding
/// fields by their long name.
fn send(v2: bool, over: &[(&str, String)], body: &[u8]) -> RemotingCommand {
    let mut h = mqlab_protocol::headers::SendMessageRequest {
        producer_group: "PG".into(),
        topic: "Hostile".into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        queue_id: 0,
        born_timestamp: 1_733_000_000_000,
        ..Default::default()
    }
    .to_fields(false);
    for (k, v) in over {
        if v == ABSENT {
            h.remove(*k);
        } else {
            h.insert((*k).to_string(), v.clone());
        }
    }
    let f = if v2 {
        mqlab_protocol::headers::SendMessageRequest::from_fields(&h, false)
            .map(|r| r.to_fields(true))
            // Fields that do not parse: rename by hand.
            .unwrap_or_else(|_| rename_v2(&h))
    } else {
        h
    };
    let code = if v2 {
        request::SEND_MESSAGE_V2
    } else {
        request::SEND_MESSAGE
    };
    let mut r = RemotingCommand::request(code, 78).with_body(body.to_vec());
    r.ext_fields = f;
    r
}

fn rename_v2(
    h: &std::collections::BTreeMap<String, String>,
) -> std::collections::BTreeMap<String, String> {
    const NAMES: [(&str, &str); 12] = [
        ("producerGroup", "a"),
        ("topic", "b"),
        ("defaultTopic", "c"),
        ("defaultTopicQueueNums", "d"),
        ("queueId", "e"),
        ("sysFlag", "f"),
        ("bornTimestamp", "g"),
        ("flag", "h"),
        ("properties", "i"),
        ("reconsumeTimes", "j"),
        ("unitMode", "k"),
        ("batch", "m"),
    ];
    h.iter()
        .map(|(k, v)| {
            let k = NAMES
                .iter()
                .find(|(l, _)| l == k)
                .map_or(k.as_str(), |(_, s)| s);
            (k.to_string(), v.clone())
        })
        .collect()
}

fn pull(over: &[(&str, String)]) -> RemotingCommand {
    let mut f: Vec<(&str, String)> = vec![
        ("consumerGroup", s("G")),
        ("topic", s("Good")),
        ("queueId", s(0)),
        ("queueOffset", s(0)),
        ("maxMsgNums", s(32)),
        ("sysFlag", s(0)),
        ("commitOffset", s(0)),
        ("suspendTimeoutMillis", s(0)),
        ("subVersion", s(0)),
    ];
    for (k, v) in over {
        f.retain(|(x, _)| x != k);
        f.push((k, v.clone()));
    }
    req(request::PULL_MESSAGE, &f)
}

/// Frames whose bytes break the protocol: each closes its connection.
fn framing_cases(rng: &mut ChaCha8Rng) -> Vec<Case> {
    let mut out = Vec::new();
    for len in [
        -1,
        i32::MIN,
        -4,
        0,
        1,
        2,
        3,
        (16 << 20) + 1,
        i32::MAX,
        0x7f00_0000,
    ] {
        out.push(case(
            format!("frame length {len}"),
            raw(len, 0, b"{}"),
            Expect::Closed,
        ));
    }
    // Header length beyond the frame, and the largest header length.
    for (total, hlen) in [(6, 3u32), (4 + 10, 11), (4 + 10, 0x00ff_ffff), (4, 1)] {
        out.push(case(
            format!("header length {hlen} in a frame of {total}"),
            raw(total, hlen, &[b'{'; 10][..(total as usize - 4).min(10)]),
            Expect::Closed,
        ));
    }
    // Serialize types that do not exist.
    for ty in [2u32, 0x7f, 0xff] {
        out.push(case(
            format!("serialize type {ty}"),
            raw(4 + 2, ty << 24 | 2, b"{}"),
            Expect::Closed,
        ));
    }
    // Headers that do not decode.
    let deep = "[".repeat(100_000);
    for (what, h, ty) in [
        ("JSON null", &b"null"[..], 0u32),
        ("JSON array", b"[]", 0),
        ("JSON open brace", b"{", 0),
        ("JSON deep nesting", deep.as_bytes(), 0),
        ("JSON code as text", br#"{"code":"x"}"#, 0),
        ("binary header cut short", &[0, 10, 12, 0][..], 1),
        (
            "binary remark length -1",
            &[
                0, 10, 12, 0, 1, 0, 0, 0, 7, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff,
            ],
            1,
        ),
        (
            "binary remark length 2^31-1",
            &[
                0, 10, 12, 0, 1, 0, 0, 0, 7, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff,
            ],
            1,
        ),
    ] {
        out.push(case(
            what,
            raw((4 + h.len()) as i32, ty << 24 | h.len() as u32, h),
            Expect::Closed,
        ));
    }
    // Valid frames cut short (the client then closes).
    let whole = encode_frame(&send(true, &[], b"cut short")).unwrap();
    for _ in 0..20 {
        let at = rng.random_range(1..whole.len());
        out.push(case(
            format!("send cut at {at} of {}", whole.len()),
            whole[..at].to_vec(),
            Expect::Closed,
        ));
    }
    // A frame announcing 16 MiB (allowed) that never comes.
    out.push(case(
        "16 MiB announced, 10 bytes sent",
        raw(16 << 20, 2, b"{}abcdef"),
        Expect::Closed,
    ));
    // Seeded garbage.
    for i in 0..150 {
        let n = rng.random_range(0..400);
        let mut b: Vec<u8> = (0..n).map(|_| rng.random()).collect();
        if i % 3 == 0 && b.len() >= 8 {
            // A plausible length, so the header decoder sees the garbage.
            let total = (b.len() - 4) as i32;
            b[..4].copy_from_slice(&total.to_be_bytes());
            let hlen = rng.random_range(0..=(total as u32 - 4));
            let ty = rng.random_range(0..2u32);
            b[4..8].copy_from_slice(&(ty << 24 | hlen).to_be_bytes());
        }
        out.push(case(format!("garbage {i} ({n} bytes)"), b, Expect::Closed));
    }
    out
}

/// Well-framed requests with unknown codes or absurd fields: each gets an
/// answer (a refusal for every send) and nothing is stored.
fn field_cases(rng: &mut ChaCha8Rng) -> Vec<Case> {
    let mut out = Vec::new();
    let deep = "[".repeat(100_000);
    // Unknown codes.
    let known = [
        10, 11, 12, 14, 15, 17, 29, 30, 31, 33, 34, 35, 36, 37, 38, 41, 42, 105, 310, 320,
    ];
    let mut codes: Vec<i32> = vec![-1, i32::MIN, i32::MAX, 0, 1, 9999, 16, 103, 104, 106];
    for _ in 0..20 {
        codes.push(rng.random_range(-40_000..40_000));
    }
    for code in codes.into_iter().filter(|c| !known.contains(c)) {
        // The binary header holds the code in 16 bits.
        let fits = i16::try_from(code).is_ok();
        let r = RemotingCommand::request(code, 5);
        if fits {
            out.extend(both(
                &format!("unknown code {code}"),
                &r,
                Expect::Code(response::REQUEST_CODE_NOT_SUPPORTED),
            ));
        } else {
            out.push(case(
                format!("unknown code {code}"),
                encode_frame(&r).unwrap(),
                Expect::Code(response::REQUEST_CODE_NOT_SUPPORTED),
            ));
        }
        let mut oneway = RemotingCommand::request(code, 6);
        oneway.flag = mqlab_protocol::FLAG_ONEWAY;
        out.push(case(
            format!("one-way unknown code {code}"),
            encode_frame(&oneway).unwrap(),
            Expect::Silence,
        ));
    }
    let mut answer = RemotingCommand::request(request::SEND_MESSAGE_V2, 8);
    answer.flag = mqlab_protocol::FLAG_RESPONSE;
    out.push(case(
        "a response nobody asked for",
        encode_frame(&answer).unwrap(),
        Expect::Silence,
    ));

    // Sends, V1 and V2: every one refused.
    let mb = "t".repeat(1 << 20);
    let big_i32 = s(1u64 << 31);
    let send_overs: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("queueId -1", vec![("queueId", s(-1))]),
        ("queueId 2^31", vec![("queueId", big_i32.clone())]),
        ("queueId 2^31-1", vec![("queueId", s(i32::MAX))]),
        ("queueId 4 of 4", vec![("queueId", s(4))]),
        ("queueId text", vec![("queueId", s("zero"))]),
        ("queueId empty", vec![("queueId", s(""))]),
        ("1 MiB topic", vec![("topic", mb.clone())]),
        ("empty topic", vec![("topic", s(""))]),
        ("topic with a slash", vec![("topic", s("a/b"))]),
        ("topic with NUL", vec![("topic", s("a\u{0}b"))]),
        ("topic with separators", vec![("topic", s("a\u{1}b\u{2}"))]),
        (
            "properties a=b=c",
            vec![("properties", s("a\u{1}b\u{1}c\u{2}"))],
        ),
        (
            "properties without value",
            vec![("properties", s("k\u{2}"))],
        ),
        (
            "properties empty name",
            vec![("properties", s("\u{1}v\u{2}"))],
        ),
        (
            "properties separators only",
            vec![("properties", s("\u{1}\u{2}\u{1}\u{2}"))],
        ),
        (
            "properties of 40 KiB",
            vec![("properties", format!("k\u{1}{}\u{2}", "v".repeat(40 << 10)))],
        ),
        ("sysFlag 2^31", vec![("sysFlag", big_i32.clone())]),
        (
            "bornTimestamp text",
            vec![("bornTimestamp", s("yesterday"))],
        ),
        ("no producer group", vec![("producerGroup", s(ABSENT))]),
        ("batch without a batch body", vec![("batch", s(true))]),
    ];
    for (what, over) in &send_overs {
        for v2 in [false, true] {
            let name = format!("send {} {what}", if v2 { "V2" } else { "V1" });
            out.extend(both(&name, &send(v2, over, b"hostile"), Expect::Refused));
        }
    }
    // A send whose body is over the store's largest message.
    out.push(case(
        "send with a 300 KiB body",
        encode_frame(&send(true, &[], &vec![b'x'; 300 << 10])).unwrap(),
        Expect::Refused,
    ));
    // Batches.
    let batch_bodies: Vec<(&str, Vec<u8>)> = vec![
        ("empty batch", Vec::new()),
        ("batch of garbage", (0..64).map(|_| rng.random()).collect()),
        ("batch entry of 2^31-1 bytes", {
            let mut b = i32::MAX.to_be_bytes().to_vec();
            b.extend_from_slice(&[0; 20]);
            b
        }),
        ("batch entry of -1 bytes", {
            let mut b = (-1i32).to_be_bytes().to_vec();
            b.extend_from_slice(&[0; 20]);
            b
        }),
        ("batch of 1,025 messages", {
            let e = mqlab_protocol::body::batch::BatchEntry {
                flag: 0,
                body: b"m".to_vec(),
                properties: Vec::new(),
            };
            mqlab_protocol::body::batch::encode(&vec![e; 1025]).unwrap()
        }),
    ];
    for (what, body) in batch_bodies {
        let mut r = send(true, &[("batch", s(true))], &body);
        r.code = request::SEND_BATCH_MESSAGE;
        out.extend(both(what, &r, Expect::Refused));
    }
    {
        let e = mqlab_protocol::body::batch::BatchEntry {
            flag: 0,
            body: b"m".to_vec(),
            properties: b"a\x01b\x01c\x02".to_vec(),
        };
        let body = mqlab_protocol::body::batch::encode(&[e]).unwrap();
        let mut r = send(true, &[("batch", s(true))], &body);
        r.code = request::SEND_BATCH_MESSAGE;
        out.extend(both("batch message with a=b=c", &r, Expect::Refused));
        let mut r = send(true, &[("batch", s(true)), ("queueId", s(-1))], &body);
        r.code = request::SEND_BATCH_MESSAGE;
        out.extend(both("batch to queueId -1", &r, Expect::Refused));
    }

    // Pulls (any answer; nothing stored).
    let pull_overs: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("queueId -1", vec![("queueId", s(-1))]),
        ("queueId 2^31", vec![("queueId", big_i32.clone())]),
        ("queueId 2^31-1", vec![("queueId", s(i32::MAX))]),
        ("maxMsgNums 2^31", vec![("maxMsgNums", big_i32.clone())]),
        ("maxMsgNums 2^31-1", vec![("maxMsgNums", s(i32::MAX))]),
        ("maxMsgNums -1", vec![("maxMsgNums", s(-1))]),
        ("queueOffset -1", vec![("queueOffset", s(-1))]),
        ("queueOffset i64::MIN", vec![("queueOffset", s(i64::MIN))]),
        ("queueOffset i64::MAX", vec![("queueOffset", s(i64::MAX))]),
        (
            "queueOffset 2^64",
            vec![("queueOffset", s("18446744073709551616"))],
        ),
        (
            "commitOffset -1 with COMMIT_OFFSET",
            vec![("sysFlag", s(1)), ("commitOffset", s(-1))],
        ),
        (
            "suspend -1 ms",
            vec![("sysFlag", s(2)), ("suspendTimeoutMillis", s(-1))],
        ),
        (
            "sysFlag -1",
            vec![("sysFlag", s(-1)), ("suspendTimeoutMillis", s(0))],
        ),
        ("1 MiB topic", vec![("topic", mb.clone())]),
        (
            "subscription of separators",
            vec![("sysFlag", s(4)), ("subscription", s("||| || a||"))],
        ),
        (
            "SQL92 garbage",
            vec![
                ("sysFlag", s(4)),
                ("subscription", s("a > ( AND")),
                ("expressionType", s("SQL92")),
            ],
        ),
        (
            "1 MiB subscription",
            vec![("sysFlag", s(4)), ("subscription", "x||".repeat(300_000))],
        ),
    ];
    for (what, over) in &pull_overs {
        out.extend(both(&format!("pull {what}"), &pull(over), Expect::Answer));
    }

    // Offsets, reads by offset, send-back, transactions, queries, locks,
    // heartbeats, topic creation.
    let mut misc: Vec<(String, RemotingCommand)> = Vec::new();
    for (code, name) in [
        (request::GET_MAX_OFFSET, "GET_MAX_OFFSET"),
        (request::GET_MIN_OFFSET, "GET_MIN_OFFSET"),
        (request::QUERY_CONSUMER_OFFSET, "QUERY_CONSUMER_OFFSET"),
    ] {
        for q in [s(-1), big_i32.clone(), s("x")] {
            misc.push((
                format!("{name} queueId {q}"),
                req(
                    code,
                    &[
                        ("topic", s("Good")),
                        ("queueId", q.clone()),
                        ("consumerGroup", s("G")),
                    ],
                ),
            ));
        }
        misc.push((
            format!("{name} 1 MiB topic"),
            req(
                code,
                &[
                    ("topic", mb.clone()),
                    ("queueId", s(0)),
                    ("consumerGroup", s("G")),
                ],
            ),
        ));
    }
    for o in [s(-1), s(i64::MIN), s("x")] {
        misc.push((
            format!("UPDATE_CONSUMER_OFFSET commitOffset {o}"),
            req(
                request::UPDATE_CONSUMER_OFFSET,
                &[
                    ("topic", s("Good")),
                    ("queueId", s(0)),
                    ("consumerGroup", s("G")),
                    ("commitOffset", o.clone()),
                ],
            ),
        ));
    }
    for o in [s(-1), s(1), s(7), s(i64::MAX), s(i64::MIN)] {
        misc.push((
            format!("VIEW_MESSAGE_BY_ID offset {o}"),
            req(request::VIEW_MESSAGE_BY_ID, &[("offset", o.clone())]),
        ));
        misc.push((
            format!("CONSUMER_SEND_MSG_BACK offset {o}"),
            req(
                request::CONSUMER_SEND_MSG_BACK,
                &[
                    ("offset", o.clone()),
                    ("group", s("G")),
                    ("delayLevel", s(0)),
                    ("maxReconsumeTimes", s(-1)),
                ],
            ),
        ));
        for kind in [8, 12, 0, 99, -1] {
            misc.push((
                format!("END_TRANSACTION at {o} kind {kind}"),
                req(
                    request::END_TRANSACTION,
                    &[
                        ("producerGroup", s("PG")),
                        ("commitLogOffset", o.clone()),
                        ("tranStateTableOffset", o.clone()),
                        ("commitOrRollback", s(kind)),
                        ("fromTransactionCheck", s(false)),
                    ],
                ),
            ));
        }
    }
    for (max, begin, end) in [
        (big_i32.clone(), s(0), s(i64::MAX)),
        (s(-1), s(i64::MAX), s(i64::MIN)),
        (s(i32::MAX), s(i64::MIN), s(i64::MAX)),
    ] {
        misc.push((
            format!("QUERY_MESSAGE maxNum {max} from {begin} to {end}"),
            req(
                request::QUERY_MESSAGE,
                &[
                    ("topic", s("Good")),
                    ("key", s("k")),
                    ("maxNum", max.clone()),
                    ("beginTimestamp", begin.clone()),
                    ("endTimestamp", end.clone()),
                ],
            ),
        ));
    }
    misc.push((
        "QUERY_MESSAGE 1 MiB key".into(),
        req(
            request::QUERY_MESSAGE,
            &[
                ("topic", s("Good")),
                ("key", mb.clone()),
                ("maxNum", s(32)),
                ("beginTimestamp", s(0)),
                ("endTimestamp", s(i64::MAX)),
            ],
        ),
    ));
    for (q, t) in [(s(-1), s(0)), (s(0), s(i64::MIN)), (s(0), s(i64::MAX))] {
        misc.push((
            format!("SEARCH_OFFSET_BY_TIMESTAMP queueId {q} at {t}"),
            req(
                request::SEARCH_OFFSET_BY_TIMESTAMP,
                &[
                    ("topic", s("Good")),
                    ("queueId", q.clone()),
                    ("timestamp", t.clone()),
                ],
            ),
        ));
    }
    let lock_bodies: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"{{{".to_vec()),
        (
            "queueId -1",
            br#"{"consumerGroup":"G","clientId":"c","mqSet":[{"topic":"Good","brokerName":"b","queueId":-1}]}"#.to_vec(),
        ),
        (
            "queueId 2^40",
            br#"{"consumerGroup":"G","clientId":"c","mqSet":[{"topic":"Good","brokerName":"b","queueId":1099511627776}]}"#.to_vec(),
        ),
        ("deep nesting", deep.as_bytes().to_vec()),
        ("20,000 entries", {
            let e = r#"{"topic":"Good","brokerName":"b","queueId":0}"#;
            format!(
                r#"{{"consumerGroup":"G","clientId":"c","mqSet":[{}]}}"#,
                vec![e; 20_000].join(",")
            )
            .into_bytes()
        }),
    ];
    for (what, body) in lock_bodies {
        for code in [request::LOCK_BATCH_MQ, request::UNLOCK_BATCH_MQ] {
            misc.push((
                format!("{} {what}", request::name(code)),
                req(code, &[]).with_body(body.clone()),
            ));
        }
    }
    let heartbeats: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"\x00\xff{".to_vec()),
        ("deep nesting", deep.as_bytes().to_vec()),
        (
            "1 MiB group",
            format!(
                r#"{{"clientID":"c","producerDataSet":[],"consumerDataSet":[{{"groupName":"{mb}","consumeType":"CONSUME_PASSIVELY","messageModel":"CLUSTERING","consumeFromWhere":"CONSUME_FROM_LAST_OFFSET","subscriptionDataSet":[],"unitMode":false}}]}}"#
            )
            .into_bytes(),
        ),
        (
            "group with a slash",
            br#"{"clientID":"c","producerDataSet":[],"consumerDataSet":[{"groupName":"a/b","consumeType":"CONSUME_PASSIVELY","messageModel":"CLUSTERING","consumeFromWhere":"CONSUME_FROM_LAST_OFFSET","subscriptionDataSet":[],"unitMode":false}]}"#.to_vec(),
        ),
    ];
    for (what, body) in heartbeats {
        misc.push((
            format!("HEART_BEAT {what}"),
            req(request::HEART_BEAT, &[]).with_body(body),
        ));
    }
    for (t, q) in [
        (s("New"), s(-1)),
        (s("New"), big_i32.clone()),
        (s("New"), s(1025)),
        (mb.clone(), s(4)),
        (s("a/b"), s(4)),
        (s(""), s(4)),
    ] {
        misc.push((
            format!("UPDATE_AND_CREATE_TOPIC {} queues {q}", t.len()),
            req(
                request::UPDATE_AND_CREATE_TOPIC,
                &[("topic", t.clone()), ("writeQueueNums", q.clone())],
            ),
        ));
    }
    misc.push((
        "GET_ROUTEINFO_BY_TOPIC 1 MiB topic".into(),
        req(request::GET_ROUTEINFO_BY_TOPIC, &[("topic", mb.clone())]),
    ));
    misc.push((
        "GET_CONSUMER_LIST_BY_GROUP without a group".into(),
        req(request::GET_CONSUMER_LIST_BY_GROUP, &[]),
    ));
    for (what, r) in misc {
        // Creating a topic with absurd queue counts or names is refused;
        // everything else answers somehow.
        let expect = if r.code == request::UPDATE_AND_CREATE_TOPIC {
            Expect::Refused
        } else {
            Expect::Answer
        };
        out.extend(both(&what, &r, expect));
    }
    out
}

/// Runs one case on a connection of its own; Err says what went wrong.
fn run_case(addr: SocketAddr, c: &Case) -> Result<(), String> {
    let mut conn = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    conn.set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let wrote = conn.write_all(&c.bytes);
    match c.expect {
        Expect::Closed => {
            let _ = conn.shutdown(Shutdown::Write);
            match read_answer(&mut conn, Duration::from_secs(5)) {
                Err(e) if e == "closed" => Ok(()),
                Err(e) => Err(format!("expected the connection closed: {e}")),
                Ok(a) => Err(format!(
                    "expected the connection closed, got answer {}: {:?}",
                    a.code, a.remark
                )),
            }
        }
        Expect::Silence => {
            wrote.map_err(|e| format!("write: {e}"))?;
            if let Ok(a) = read_answer(&mut conn, Duration::from_millis(200)) {
                return Err(format!(
                    "expected no answer, got {}: {:?}",
                    a.code, a.remark
                ));
            }
            // The connection still serves.
            let ping = RemotingCommand::request(9_999, 4242);
            conn.write_all(&encode_frame(&ping).unwrap())
                .map_err(|e| format!("write after: {e}"))?;
            match read_answer(&mut conn, Duration::from_secs(5)) {
                Ok(a) if a.opaque == 4242 => Ok(()),
                Ok(a) => Err(format!("answer to opaque {} after silence", a.opaque)),
                Err(e) => Err(format!("no answer after silence: {e}")),
            }
        }
        Expect::Refused | Expect::Code(_) | Expect::Answer => {
            wrote.map_err(|e| format!("write: {e}"))?;
            let a = read_answer(&mut conn, Duration::from_secs(10))?;
            match c.expect {
                Expect::Refused if a.code == response::SUCCESS => Err(format!(
                    "expected a refusal, got SUCCESS {:?}",
                    a.ext_fields
                )),
                Expect::Code(want) if a.code != want => Err(format!(
                    "expected code {want}, got {}: {:?}",
                    a.code, a.remark
                )),
                _ => Ok(()),
            }
        }
    }
}

/// A valid request written one byte every 100 ms; its answer must come.
fn slow_writer(addr: SocketAddr, id: i32) -> std::thread::JoinHandle<Result<(), String>> {
    std::thread::spawn(move || {
        let mut r = RemotingCommand::request(request::GET_MAX_OFFSET, 1000 + id)
            .with_field("topic", "Good")
            .with_field("queueId", 0);
        r.serialize_type = SerializeType::RocketMq;
        let bytes = encode_frame(&r).unwrap();
        let mut conn = TcpStream::connect(addr).map_err(|e| e.to_string())?;
        for b in &bytes {
            conn.write_all(&[*b])
                .map_err(|e| format!("slow writer {id}: {e}"))?;
            std::thread::sleep(Duration::from_millis(100));
        }
        match read_answer(&mut conn, Duration::from_secs(10)) {
            Ok(a) if a.code == response::SUCCESS && a.opaque == 1000 + id => Ok(()),
            Ok(a) => Err(format!(
                "slow writer {id}: answer {} {:?}",
                a.code, a.remark
            )),
            Err(e) => Err(format!("slow writer {id}: {e}")),
        }
    })
}

/// Sends VIEW_MESSAGE_BY_ID for the big record over and over without ever
/// reading; returns how many requests the socket took before writes
/// blocked (back-pressure), or Err when the broker kept reading past
/// `max` requests or the process grew past the bound.
fn never_read(addr: SocketAddr, offset: u64, max: usize, rss0: u64) -> Result<usize, String> {
    let mut conn = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    conn.set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut frames = Vec::new();
    for i in 0..64 {
        let r = RemotingCommand::request(request::VIEW_MESSAGE_BY_ID, i)
            .with_field("offset", offset)
            .with_field("pad", "p".repeat(900));
        frames.extend(encode_frame(&r).unwrap());
    }
    let mut sent = 0;
    while sent < max {
        match conn.write_all(&frames) {
            Ok(()) => sent += 64,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(sent);
            }
            Err(e) => return Err(format!("write: {e}")),
        }
        if sent % 4096 == 0 && rss_bytes().saturating_sub(rss0) > 2 * RSS_GROWTH_BOUND {
            return Err(format!(
                "RSS grew by {} MiB while a client sent {sent} requests and read nothing",
                (rss_bytes() - rss0) >> 20
            ));
        }
    }
    Err(format!(
        "the broker read {sent} requests whose answers nobody reads: no back-pressure"
    ))
}

/// Opens `n` connections to `addr` from a child process (this test binary
/// running [`idle_connections_child`]); they stay open until the child's
/// stdin closes.
fn idle_connections(addr: SocketAddr, n: usize) -> (std::process::Child, usize) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "idle_connections_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("MQLAB_IDLE_CHILD_ADDR", addr.to_string())
        .env("MQLAB_IDLE_CHILD_CONNS", n.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            // (libtest's "test ... " may precede it on the line.)
            if let Some((_, v)) = l.split_once("IDLE_OPEN ") {
                let _ = tx.send(v.trim().parse::<usize>().unwrap_or(0));
            }
        }
    });
    let Ok(opened) = rx.recv_timeout(Duration::from_secs(120)) else {
        let _ = child.kill();
        panic!("the idle-connection child did not open its connections within 120 s");
    };
    (child, opened)
}

/// The child side of [`idle_connections`]; does nothing when run
/// otherwise.
#[test]
#[ignore = "run by wire_hostile's idle-connection phase"]
fn idle_connections_child() {
    let (Ok(addr), Ok(n)) = (
        std::env::var("MQLAB_IDLE_CHILD_ADDR"),
        std::env::var("MQLAB_IDLE_CHILD_CONNS"),
    ) else {
        return;
    };
    let addr: SocketAddr = addr.parse().unwrap();
    let n: usize = n.parse().unwrap();
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        match TcpStream::connect(addr) {
            Ok(c) => conns.push(c),
            Err(e) => {
                eprintln!("idle connection {}: {e}", conns.len());
                break;
            }
        }
    }
    println!("IDLE_OPEN {}", conns.len());
    std::io::stdout().flush().unwrap();
    let mut sink = String::new();
    let _ = std::io::stdin().read_to_string(&mut sink);
    drop(conns);
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Regression (issue 16): an answer freed its connection's in-flight slot
/// when it was queued, not when it was written, so a client that sent
/// requests and never read the answers was read on and on while the
/// answers piled up in memory (1 GiB in seconds with 64 KiB answers).
/// Now the connection is not read past 1,024 unwritten answers or 8 MiB
/// of them, and closes as soon as its peer is gone.
#[test]
fn a_client_that_never_reads_is_not_read_either() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path());
    let addr = node.addr();
    let mut conn = common::connect(addr);
    let offset = store_big_record(&mut conn);
    let rss0 = rss_bytes();
    // 8 MiB of queued answers is 128 of them; with the socket buffers the
    // writes block after a few thousand requests of 1 KiB.
    let sent = never_read(addr, offset, 50_000, rss0).unwrap();
    assert!(sent < 50_000);
    // Meanwhile another connection is served.
    let r = common::roundtrip(
        &mut conn,
        &encode_frame(
            &RemotingCommand::request(request::GET_MAX_OFFSET, 5)
                .with_field("topic", "Good")
                .with_field("queueId", 0),
        )
        .unwrap(),
    );
    assert_eq!(r.code, response::SUCCESS);
    // The non-reader is gone: its connection closes at once, not after
    // the idle timeout.
    wait_until(
        "the non-reader's connection closed",
        Duration::from_secs(10),
        || node.connections() <= 1,
    );
    node.shutdown().unwrap();
}

#[test]
fn hostile_clients_never_stop_the_broker_nor_reach_the_log() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    count_panics();
    let seed = common::env_seed("MQLAB_WIRE_SEED");
    println!("seed {seed} (MQLAB_WIRE_SEED={seed} replays this run)");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path());
    let addr = node.addr();

    // What the hostile readers ask for: one record of 64 KiB.
    let mut conn = common::connect(addr);
    let big_offset = store_big_record(&mut conn);
    let topics_before = node.broker().topics().len();
    let before = node.store().offsets();
    let good = Arc::new(Good::default());
    let good_thread = good_client(addr, good.clone());
    std::thread::sleep(Duration::from_millis(200));
    let rss0 = rss_bytes();
    let mut rss_max = rss0;
    let mut cases_run = 0usize;
    let mut failures = Vec::new();

    // Slow writers, through everything else.
    let slow: Vec<_> = (0..8).map(|i| slow_writer(addr, i)).collect();

    // Frames that break the protocol, and absurd fields.
    let mut cases = framing_cases(&mut rng);
    cases.extend(field_cases(&mut rng));
    // MQLAB_WIRE_REPEAT=n runs them n times (RSS must level off).
    let repeat: usize = std::env::var("MQLAB_WIRE_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let n_frames = cases.len() * repeat;
    for c in std::iter::repeat_n(&cases, repeat).flatten() {
        if let Err(e) = run_case(addr, c) {
            failures.push(format!("{}: {e}", c.what));
        }
        let now = rss_bytes();
        if std::env::var_os("MQLAB_WIRE_DEBUG").is_some() && now > rss_max + (8 << 20) {
            println!("{}: RSS +{} MiB", c.what, now.saturating_sub(rss0) >> 20);
        }
        rss_max = rss_max.max(now);
    }
    cases_run += n_frames;
    println!(
        "{n_frames} frame cases in {:.1} s, RSS +{} MiB",
        started.elapsed().as_secs_f64(),
        rss_max.saturating_sub(rss0) >> 20
    );

    // Connections that never read their answers.
    let readers: Vec<_> = (0..NON_READERS)
        .map(|_| std::thread::spawn(move || never_read(addr, big_offset, 200_000, rss0)))
        .collect();
    for (i, r) in readers.into_iter().enumerate() {
        match r.join().unwrap() {
            Ok(sent) => println!("non-reader {i}: writes blocked after {sent} requests"),
            Err(e) => failures.push(format!("non-reader {i}: {e}")),
        }
        rss_max = rss_max.max(rss_bytes());
        cases_run += 1;
    }
    println!(
        "non-readers done at {:.1} s, RSS +{} MiB",
        started.elapsed().as_secs_f64(),
        rss_max.saturating_sub(rss0) >> 20
    );

    // Many idle connections.
    let idle: usize = std::env::var("MQLAB_WIRE_IDLE_CONNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    // The non-readers' connections close once their peers are gone (the
    // good client's and the setup's stay).
    wait_until(
        "the non-readers' connections closed",
        Duration::from_secs(20),
        || node.connections() <= 2,
    );
    let base_conns = node.connections();
    let t = Instant::now();
    let (mut child, opened) = idle_connections(addr, idle);
    assert_eq!(opened, idle, "the child opened {opened} of {idle}");
    wait_until("idle connections accepted", Duration::from_secs(60), || {
        node.connections() >= base_conns + idle
    });
    println!(
        "{idle} idle connections open in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let answered = good.answered.load(Ordering::Relaxed);
    wait_until(
        "the good client answered beside the idle connections",
        Duration::from_secs(10),
        || good.answered.load(Ordering::Relaxed) > answered + 5,
    );
    rss_max = rss_max.max(rss_bytes());
    drop(child.stdin.take());
    let _ = child.wait();
    wait_until("idle connections closed", Duration::from_secs(30), || {
        node.connections() <= base_conns
    });
    cases_run += 1;

    for (i, h) in slow.into_iter().enumerate() {
        if let Err(e) = h.join().unwrap() {
            failures.push(format!("slow writer {i}: {e}"));
        }
        cases_run += 1;
    }

    good.stop.store(true, Ordering::Release);
    good_thread.join().unwrap();
    let good_failures = good.failures.lock().unwrap().clone();
    let max_wait = Duration::from_micros(good.max_wait_us.load(Ordering::Relaxed));
    rss_max = rss_max.max(rss_bytes());
    let after = node.store().offsets();
    let panics = PANICS.load(Ordering::SeqCst);
    println!(
        "wire_hostile: {cases_run} cases, {} failed, {} good answers (longest wait {max_wait:?}), \
         RSS before {} MiB, max +{} MiB (bound {} MiB), {panics} panics, {:.1} s",
        failures.len(),
        good.answered.load(Ordering::Relaxed),
        rss0 >> 20,
        rss_max.saturating_sub(rss0) >> 20,
        RSS_GROWTH_BOUND >> 20,
        started.elapsed().as_secs_f64()
    );
    // Machine-readable, for scripts/reliability.sh.
    println!(
        "WIRE_HOSTILE cases={cases_run} failed={} panics={panics} rss_growth_bytes={} idle={idle}",
        failures.len(),
        rss_max.saturating_sub(rss0)
    );
    assert!(failures.is_empty(), "seed {seed}: {failures:#?}");
    assert!(
        good_failures.is_empty(),
        "seed {seed}: the well-behaved client failed: {good_failures:?}"
    );
    assert!(max_wait < GOOD_CLIENT_MAX_WAIT, "seed {seed}");
    assert_eq!(panics, 0, "seed {seed}: something panicked");
    assert!(
        rss_max.saturating_sub(rss0) < RSS_GROWTH_BOUND,
        "seed {seed}: RSS grew by {} MiB",
        (rss_max - rss0) >> 20
    );
    assert_eq!(
        (after.written, after.committed, after.acked),
        (before.written, before.committed, before.acked),
        "seed {seed}: hostile traffic reached the commit log"
    );
    for t in node.broker().topics().keys() {
        assert!(
            t.len() < 256 && !t.contains('/') && !t.is_empty(),
            "seed {seed}: topic {t:?} was created"
        );
    }
    assert!(node.broker().topics().len() >= topics_before);
    // The broker still stores a good send.
    let a = common::roundtrip(&mut conn, &common::v2_send("Good", "0", "", b"after"));
    assert_eq!(a.code, response::SUCCESS, "{:?}", a.remark);
    node.shutdown().unwrap();
}

/// A disk whose every fsync takes `delay` (writes and reads as the real
/// one: pwrite in a temporary directory).
struct SlowDisk {
    inner: mqlab_engine::io::pwrite::PwriteEnv,
    delay: Duration,
    syncs: Arc<AtomicU64>,
}

struct SlowFile {
    inner: Arc<dyn mqlab_engine::io::File>,
    delay: Duration,
    syncs: Arc<AtomicU64>,
}

impl mqlab_engine::io::File for SlowFile {
    fn write_at(&self, offset: u64, buf: &[u8]) -> std::io::Result<()> {
        self.inner.write_at(offset, buf)
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read_at(offset, buf)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        std::thread::sleep(self.delay);
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.inner.sync_data()
    }
    fn next_data(&self, offset: u64) -> std::io::Result<Option<u64>> {
        self.inner.next_data(offset)
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.inner.set_len(len)
    }
    fn len(&self) -> u64 {
        self.inner.len()
    }
}

impl mqlab_engine::io::Env for SlowDisk {
    fn name(&self) -> &'static str {
        "slow-pwrite"
    }
    fn open(
        &self,
        path: &std::path::Path,
        opts: mqlab_engine::io::OpenOptions,
    ) -> std::io::Result<Arc<dyn mqlab_engine::io::File>> {
        Ok(Arc::new(SlowFile {
            inner: self.inner.open(path, opts)?,
            delay: self.delay,
            syncs: self.syncs.clone(),
        }))
    }
    fn list_dir(&self, path: &std::path::Path) -> std::io::Result<Vec<String>> {
        self.inner.list_dir(path)
    }
    fn is_dir(&self, path: &std::path::Path) -> bool {
        self.inner.is_dir(path)
    }
    fn exists(&self, path: &std::path::Path) -> bool {
        self.inner.exists(path)
    }
    fn create_dir_all(&self, path: &std::path::Path) -> std::io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn remove_file(&self, path: &std::path::Path) -> std::io::Result<()> {
        self.inner.remove_file(path)
    }
    fn sync_dir(&self, path: &std::path::Path) -> std::io::Result<()> {
        self.inner.sync_dir(path)
    }
}

/// Back-pressure (issue 16): producers with far more sends in flight than
/// a slow disk (every fsync 20 ms) can store get SYSTEM_BUSY for what is
/// over `max_pending_sends`, at once, instead of the broker queueing them
/// in memory: every send is answered exactly once, some are refused busy,
/// exactly the SUCCESS ones are in the queue, and RSS stays bounded.
///
/// (A `Node` opens its store on the real disk only, so this test serves
/// the same handler and server a node runs on a store opened on a slow
/// disk; the Node tests above run with the default `max_pending_sends`.)
#[test]
fn producers_outrunning_a_slow_disk_get_system_busy_not_memory() {
    use mqlab_broker::remoting::{BrokerHandler, RemotingServer, ServerConfig};
    use mqlab_broker::{Broker, BrokerConfig};
    use mqlab_engine::{clock, FlushKind, Store};

    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    const MAX_PENDING: usize = 64;
    const CONNS: usize = 4;
    const PER_CONN: usize = 1_500;
    const BODY: usize = 16 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let syncs = Arc::new(AtomicU64::new(0));
    let env = Arc::new(SlowDisk {
        inner: mqlab_engine::io::pwrite::PwriteEnv::new(),
        delay: Duration::from_millis(20),
        syncs: syncs.clone(),
    });
    let mut cfg = StoreConfig::small();
    cfg.segment_bytes = 64 << 20;
    cfg.flush.kind = FlushKind::Group;
    let store = Arc::new(Store::open_with_env(env, dir.path(), cfg).unwrap());
    let broker = Broker::open(store.clone(), BrokerConfig::default(), clock::system()).unwrap();
    broker.create_topic("Busy", 1).unwrap();
    let server = RemotingServer::start(
        ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..ServerConfig::default()
        },
        Arc::new(
            BrokerHandler::new(broker.clone(), "127.0.0.1:10911".parse().unwrap())
                .with_max_pending_sends(MAX_PENDING),
        ),
    )
    .unwrap();
    let addr = server.local_addr();
    let rss0 = rss_bytes();
    let rss_max = Arc::new(AtomicU64::new(rss0));
    let started = Instant::now();
    let producers: Vec<_> = (0..CONNS)
        .map(|c| {
            let rss_max = rss_max.clone();
            std::thread::spawn(move || {
                let mut conn = TcpStream::connect(addr).unwrap();
                let mut reader = conn.try_clone().unwrap();
                // Every send written at once, answers read as they come.
                let writer = std::thread::spawn(move || {
                    for i in 0..PER_CONN {
                        let opaque = (c * PER_CONN + i) as i32;
                        let f = common::v2_send_with(opaque, "Busy", "0", "", &vec![b'b'; BODY]);
                        conn.write_all(&f).unwrap();
                    }
                    conn
                });
                let mut codes = std::collections::BTreeMap::new();
                let mut buf = Vec::new();
                let mut chunk = vec![0u8; 64 * 1024];
                reader
                    .set_read_timeout(Some(Duration::from_secs(60)))
                    .unwrap();
                while codes.len() < PER_CONN {
                    while let Some((cmd, used)) = decode_frame(&buf, &Limits::default()).unwrap() {
                        buf.drain(..used);
                        let queue_wait = cmd
                            .remark
                            .as_deref()
                            .is_some_and(|r| r.contains("TIMEOUT_CLEAN_QUEUE"));
                        assert!(
                            codes.insert(cmd.opaque, (cmd.code, queue_wait)).is_none(),
                            "answered twice"
                        );
                    }
                    if codes.len() < PER_CONN {
                        let n = reader.read(&mut chunk).unwrap();
                        assert!(n > 0, "closed after {} answers", codes.len());
                        buf.extend_from_slice(&chunk[..n]);
                        rss_max.fetch_max(rss_bytes(), Ordering::Relaxed);
                    }
                }
                drop(writer.join().unwrap());
                codes
            })
        })
        .collect();
    let mut ok = 0u64;
    let mut busy = 0u64;
    let mut busy_queue_wait = 0u64;
    let mut other = Vec::new();
    for p in producers {
        for (_, (code, queue_wait)) in p.join().unwrap() {
            match code {
                response::SUCCESS => ok += 1,
                response::SYSTEM_BUSY => {
                    busy += 1;
                    busy_queue_wait += queue_wait as u64;
                }
                c => other.push(c),
            }
        }
    }
    let elapsed = started.elapsed();
    // A send is answered once its write is flushed; its consume-queue unit
    // is built by the dispatcher a moment later, so wait for it to catch up
    // with everything written before counting the queue (CI once counted
    // 301 of 303).
    assert!(
        store.wait_dispatched(store.offsets().committed, Duration::from_secs(10)),
        "the dispatcher did not reach the committed offset in 10 s"
    );
    let (_, stored) = broker.queue_range(&mqlab_broker::MessageQueue::new("Busy", 0));
    let growth = rss_max.load(Ordering::Relaxed).saturating_sub(rss0);
    println!(
        "BACKPRESSURE sends={} ok={ok} busy={busy} (waited over 200 ms: {busy_queue_wait}) stored={stored} fsyncs={} max_pending={MAX_PENDING} \
         rss_growth_mib={} elapsed_s={:.1}",
        CONNS * PER_CONN,
        syncs.load(Ordering::Relaxed),
        growth >> 20,
        elapsed.as_secs_f64()
    );
    assert!(other.is_empty(), "unexpected answers: {other:?}");
    assert_eq!(ok + busy, (CONNS * PER_CONN) as u64);
    assert!(busy > 0, "no send was refused busy");
    assert!(ok > 0, "nothing was stored");
    assert_eq!(stored, ok, "the queue holds other than the SUCCESS sends");
    // In flight at once: at most MAX_PENDING being stored, 1,024 requests
    // per connection decoded: far less than the 96 MiB sent.
    assert!(growth < 192 << 20, "RSS grew by {} MiB", growth >> 20);
    server.shutdown();
}

/// Regression (issue 16, found by the soak): a long-polling pull waited
/// inside the broker on the server's blocking pool, one thread each, so
/// with more held pulls than the pool's 512 threads every other request
/// queued behind them: 1,000 long-polling consumers had every send
/// refused `[TIMEOUT_CLEAN_QUEUE]`. Now held pulls wait without a thread:
/// with 800 of them held, sends are answered at once, and a message
/// answers every pull waiting on its queue.
#[test]
fn held_pulls_do_not_starve_sends() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    const CONNS: usize = 4;
    const PER_CONN: usize = 200;
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path());
    let addr = node.addr();
    let mut conn = common::connect(addr);
    let created = RemotingCommand::request(request::UPDATE_AND_CREATE_TOPIC, 1)
        .with_field("topic", "Held")
        .with_field("writeQueueNums", 1);
    let r = common::roundtrip(&mut conn, &encode_frame(&created).unwrap());
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    let held0 = node
        .broker()
        .stats
        .held_pulls
        .load(std::sync::atomic::Ordering::Relaxed);
    let mut pullers = Vec::new();
    for c in 0..CONNS {
        let mut stream = TcpStream::connect(addr).unwrap();
        let mut frames = Vec::new();
        for i in 0..PER_CONN {
            let mut p = pull(&[
                ("topic", s("Held")),
                ("consumerGroup", format!("G{c}-{i}")),
                (
                    "sysFlag",
                    s(mqlab_protocol::headers::pull_sys_flag::SUSPEND),
                ),
                ("suspendTimeoutMillis", s(20_000)),
            ]);
            p.opaque = i as i32;
            frames.extend(encode_frame(&p).unwrap());
        }
        stream.write_all(&frames).unwrap();
        pullers.push(stream);
    }
    wait_until("every pull held", Duration::from_secs(20), || {
        node.broker()
            .stats
            .held_pulls
            .load(std::sync::atomic::Ordering::Relaxed)
            >= held0 + (CONNS * PER_CONN) as u64
    });
    // Sends go through at once beside them.
    for i in 0..20 {
        let t = Instant::now();
        let a = common::roundtrip(
            &mut conn,
            &common::v2_send_with(100 + i, "Other", "0", "", b"beside held pulls"),
        );
        assert_eq!(a.code, response::SUCCESS, "{:?}", a.remark);
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "a send took {:?} beside {} held pulls",
            t.elapsed(),
            CONNS * PER_CONN
        );
    }
    // A message to their queue answers every held pull, with it.
    let t = Instant::now();
    let a = common::roundtrip(&mut conn, &common::v2_send("Held", "0", "", b"wake up"));
    assert_eq!(a.code, response::SUCCESS, "{:?}", a.remark);
    for stream in &mut pullers {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let (mut buf, mut chunk, mut got) = (Vec::new(), vec![0u8; 64 * 1024], 0);
        while got < PER_CONN {
            while let Some((r, used)) = decode_frame(&buf, &Limits::default()).unwrap() {
                buf.drain(..used);
                assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
                assert!(!r.body.is_empty());
                got += 1;
            }
            if got < PER_CONN {
                let n = stream.read(&mut chunk).expect("held pulls answered");
                assert!(n > 0, "closed after {got} answers");
                buf.extend_from_slice(&chunk[..n]);
            }
        }
    }
    println!(
        "{} held pulls answered {:?} after the message",
        CONNS * PER_CONN,
        t.elapsed()
    );
    assert!(t.elapsed() < Duration::from_secs(5));
    node.shutdown().unwrap();
}

/// Issue 16: a frame may be 16 MiB, so slow senders that each stop just
/// short of the end of one could hold 16 MiB apiece until their idle
/// timeout. Incomplete frames count against one budget over all
/// connections: with 32 MiB of it, twenty connections each announcing a
/// 12 MiB frame and sending 4 MiB of it before stalling cannot all keep
/// theirs; those past the budget are closed, the memory stays within it,
/// and a well-behaved client is answered throughout.
#[test]
fn slow_big_frames_share_one_budget() {
    use mqlab_broker::remoting::ServerConfig;
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    const BUDGET: usize = 32 << 20;
    const SENDERS: usize = 20;
    const SENT: usize = 4 << 20;
    let b = common::wire_broker_with(
        mqlab_engine::FlushKind::Group,
        10_000,
        ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            max_partial_frame_bytes: BUDGET,
            ..ServerConfig::default()
        },
    );
    let addr = b.server.local_addr();
    let good = Arc::new(Good::default());
    let good_thread = good_client(addr, good.clone());
    let rss0 = rss_bytes();
    // A frame of 12 MiB announced: length, header length, a small JSON
    // header, then body bytes that never complete it.
    let header = br#"{"code":310,"flag":0,"language":"JAVA","opaque":7,"serializeTypeCurrentRPC":"JSON","version":401,"extFields":{}}"#;
    let total: i32 = 12 << 20;
    let mut start = Vec::new();
    start.extend_from_slice(&total.to_be_bytes());
    start.extend_from_slice(&(header.len() as u32).to_be_bytes());
    start.extend_from_slice(header);
    let senders: Vec<TcpStream> = (0..SENDERS)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(&start).unwrap();
            let chunk = vec![b'x'; 64 << 10];
            for _ in 0..SENT / chunk.len() {
                if s.write_all(&chunk).is_err() {
                    break; // closed by the broker: expected past the budget
                }
            }
            s
        })
        .collect();
    // Let the broker read what it was sent.
    std::thread::sleep(Duration::from_millis(500));
    // Closed by the broker: the read ends (0 or a reset); open: it times
    // out (the broker never answers an incomplete frame).
    let closed = senders
        .iter()
        .filter(|s| {
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let mut one = [0u8; 1];
            match (&**s).read(&mut one) {
                Ok(0) => true,
                Ok(_) => panic!("an incomplete frame was answered"),
                Err(e) => !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
            }
        })
        .count();
    let growth = rss_bytes().saturating_sub(rss0);
    good.stop.store(true, Ordering::Release);
    good_thread.join().unwrap();
    println!(
        "PARTIAL senders={SENDERS} closed={closed} rss_growth_mib={} good_answers={} slowest_us={}",
        growth >> 20,
        good.answered.load(Ordering::Relaxed),
        good.max_wait_us.load(Ordering::Relaxed)
    );
    // 20 x 4 MiB = 80 MiB offered, 32 MiB may be held: at least 12 closed.
    let may_hold = BUDGET / SENT;
    assert!(
        closed >= SENDERS - may_hold,
        "{closed} of {SENDERS} slow senders closed; the budget holds {may_hold}"
    );
    assert!(
        growth < (3 * BUDGET) as u64,
        "RSS grew by {} MiB with a {} MiB budget",
        growth >> 20,
        BUDGET >> 20
    );
    assert!(
        good.answered.load(Ordering::Relaxed) > 0,
        "the good client was not answered"
    );
    let failures = good.failures.lock().unwrap();
    assert!(failures.is_empty(), "the good client: {failures:?}");
    drop(senders);
}
