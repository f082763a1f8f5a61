//! Sends answered on the connection's reader task (`Handler::try_inline`):
//! a plain send to an existing topic is stored and answered even while
//! every thread of the blocking pool is taken; everything else (an
//! unknown topic, which is created; batches; half messages; delayed
//! messages; malformed sends; ACL refusals) still goes through the
//! blocking pool and is answered as before.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use mqlab_broker::acl::Acl;
use mqlab_broker::remoting::{
    BrokerHandler, Conn, Handler, RemotingServer, Reply, ServerConfig, WireStats,
};
use mqlab_broker::{Broker, BrokerConfig};
use mqlab_engine::{clock, FlushKind, Store, StoreConfig};
use mqlab_protocol::codes::{request, response};
use mqlab_protocol::{decode_frame, encode_frame, Limits, RemotingCommand, SerializeType};

/// A request code the wrapper below holds on the blocking pool.
const BLOCK: i32 = 31_999;

/// The broker's handler, except that a [`BLOCK`] request holds its
/// blocking-pool thread until released (at most 20 s).
struct Blocker {
    inner: Arc<BrokerHandler>,
    /// (entered, released)
    state: Mutex<(bool, bool)>,
    changed: Condvar,
}

impl Blocker {
    fn wait_entered(&self) {
        let st = self.state.lock().unwrap();
        let (st, t) = self
            .changed
            .wait_timeout_while(st, Duration::from_secs(10), |s| !s.0)
            .unwrap();
        assert!(st.0 && !t.timed_out(), "the blocking request never ran");
    }

    fn release(&self) {
        self.state.lock().unwrap().1 = true;
        self.changed.notify_all();
    }
}

impl Handler for Blocker {
    fn handle(&self, req: RemotingCommand, conn: &Conn) -> Option<RemotingCommand> {
        self.inner.handle(req, conn)
    }

    fn handle_async(&self, req: RemotingCommand, conn: &Conn, reply: Reply) {
        if req.code != BLOCK {
            return self.inner.handle_async(req, conn, reply);
        }
        let mut st = self.state.lock().unwrap();
        st.0 = true;
        self.changed.notify_all();
        let (st, t) = self
            .changed
            .wait_timeout_while(st, Duration::from_secs(20), |s| !s.1)
            .unwrap();
        drop(st);
        let why = if t.timed_out() {
            "timed out"
        } else {
            "released"
        };
        reply.send(&RemotingCommand::response_to(
            &req,
            response::SUCCESS,
            Some(why.into()),
        ));
    }

    fn try_inline(
        &self,
        req: RemotingCommand,
        conn: &Conn,
        reply: Reply,
    ) -> Option<(RemotingCommand, Reply)> {
        self.inner.try_inline(req, conn, reply)
    }
}

struct Served {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    broker: Arc<Broker>,
    stats: Arc<WireStats>,
    blocker: Arc<Blocker>,
    server: RemotingServer,
}

/// A broker under `flush` with topic "Known" (4 queues), served with
/// one blocking-pool thread through a [`Blocker`].
fn serve(flush: FlushKind, acl: Option<Arc<Acl>>) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = StoreConfig::small();
    cfg.flush.kind = flush;
    let store = Arc::new(Store::open(dir.path(), cfg).unwrap());
    let broker = Broker::open(store.clone(), BrokerConfig::default(), clock::system()).unwrap();
    broker.create_topic("Known", 4).unwrap();
    // (A send given back waits for the blocking pool here for longer than
    // the default 200 ms it may wait before SYSTEM_BUSY.)
    let mut handler = BrokerHandler::new(broker.clone(), "127.0.0.1:10911".parse().unwrap())
        .with_max_queue_wait(Duration::from_secs(60));
    if let Some(acl) = acl {
        handler = handler.with_acl(acl);
    }
    let stats = handler.stats();
    let blocker = Arc::new(Blocker {
        inner: Arc::new(handler),
        state: Mutex::new((false, false)),
        changed: Condvar::new(),
    });
    let server = RemotingServer::start(
        ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            blocking_threads: 1,
            ..ServerConfig::default()
        },
        blocker.clone(),
    )
    .unwrap();
    Served {
        _dir: dir,
        store,
        broker,
        stats,
        blocker,
        server,
    }
}

/// Reads one answer within `wait`, or None; `buf` keeps what was read
/// past it.
fn answer_within(s: &mut TcpStream, buf: &mut Vec<u8>, wait: Duration) -> Option<RemotingCommand> {
    let end = Instant::now() + wait;
    let mut chunk = [0u8; 4096];
    loop {
        if let Some((cmd, used)) = decode_frame(buf, &Limits::default()).unwrap() {
            buf.drain(..used);
            assert!(cmd.is_response(), "{cmd:?}");
            return Some(cmd);
        }
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut chunk) {
            Ok(0) => panic!("the broker closed the connection"),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return None
            }
            Err(e) => panic!("read: {e}"),
        }
    }
}

fn phys_of(msg_id: &str) -> u64 {
    u64::from_str_radix(&msg_id[16..], 16).unwrap()
}

/// The message an answer's msgId names (under `pool` readable once the
/// committer wrote it: waits up to 10 s).
fn stored(store: &Store, answer: &RemotingCommand) -> mqlab_engine::StoredMessage {
    let at = phys_of(&answer.ext_fields["msgId"]);
    let t = Instant::now();
    loop {
        match store.get(at) {
            Ok(m) => return m,
            Err(e) if t.elapsed() > Duration::from_secs(10) => panic!("{at}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

#[test]
fn a_send_to_an_existing_topic_is_answered_while_the_blocking_pool_is_taken() {
    for flush in [
        FlushKind::Async,
        FlushKind::Group,
        FlushKind::Sync,
        FlushKind::Pool,
    ] {
        let sv = serve(flush, None);
        let mut s = common::connect(sv.server.local_addr());
        let mut buf = Vec::new();
        // The one blocking-pool thread is taken.
        s.write_all(&encode_frame(&RemotingCommand::request(BLOCK, 1)).unwrap())
            .unwrap();
        sv.blocker.wait_entered();

        // A plain send to an existing topic is answered anyway, stored.
        s.write_all(&common::v2_send_with(2, "Known", "3", "", b"inline"))
            .unwrap();
        let a = answer_within(&mut s, &mut buf, Duration::from_secs(5))
            .unwrap_or_else(|| panic!("{flush:?}: the send waited for the blocking pool"));
        assert_eq!(a.opaque, 2, "{flush:?}");
        assert_eq!(a.code, response::SUCCESS, "{flush:?}: {:?}", a.remark);
        assert_eq!(a.ext_fields.get("queueId").map(String::as_str), Some("3"));
        let m = stored(&sv.store, &a);
        assert_eq!((m.topic.as_str(), &m.body[..]), ("Known", &b"inline"[..]));
        assert_eq!(sv.stats.inline_sends.load(Ordering::Relaxed), 1);

        // A send to an unknown topic (created: its config is persisted)
        // waits for the blocking pool.
        s.write_all(&common::v2_send_with(3, "Unknown", "0", "", b"created"))
            .unwrap();
        assert!(
            answer_within(&mut s, &mut buf, Duration::from_millis(300)).is_none(),
            "{flush:?}: a send to an unknown topic was answered inline"
        );
        assert_eq!(sv.broker.topic_queues("Unknown"), None);

        sv.blocker.release();
        let mut rest: Vec<RemotingCommand> = (0..2)
            .map(|_| answer_within(&mut s, &mut buf, Duration::from_secs(10)).unwrap())
            .collect();
        rest.sort_by_key(|a| a.opaque);
        assert_eq!(rest[0].remark.as_deref(), Some("released"), "{flush:?}");
        assert_eq!(rest[1].code, response::SUCCESS, "{:?}", rest[1].remark);
        assert_eq!(sv.broker.topic_queues("Unknown"), Some(4));
        let m = stored(&sv.store, &rest[1]);
        assert_eq!(
            (m.topic.as_str(), &m.body[..]),
            ("Unknown", &b"created"[..])
        );
        assert_eq!(sv.stats.inline_sends.load(Ordering::Relaxed), 1);
        assert_eq!(sv.stats.sends_ok.load(Ordering::Relaxed), 2);
        sv.server.shutdown();
    }
}

#[test]
fn only_plain_sends_to_existing_topics_are_taken_inline() {
    let sv = serve(FlushKind::Group, None);
    let mut s = common::connect(sv.server.local_addr());
    let mut buf = Vec::new();
    let mut exchange = |req: Vec<u8>| {
        s.write_all(&req).unwrap();
        answer_within(&mut s, &mut buf, Duration::from_secs(10)).expect("answered")
    };
    let inline = || sv.stats.inline_sends.load(Ordering::Relaxed);

    // Given back: delayed, half, a batch, a queue past the topic's.
    let delayed = exchange(common::v2_send_with(
        1,
        "Known",
        "0",
        "DELAY\u{1}2\u{2}",
        b"d",
    ));
    assert_eq!(delayed.code, response::SUCCESS, "{:?}", delayed.remark);
    let half = exchange(common::v2_send_with(
        2,
        "Known",
        "0",
        "TRAN_MSG\u{1}true\u{2}PGROUP\u{1}PG\u{2}UNIQ_KEY\u{1}tx-1\u{2}",
        b"h",
    ));
    assert_eq!(half.code, response::SUCCESS, "{:?}", half.remark);
    let mut batch = RemotingCommand::request(request::SEND_MESSAGE_V2, 3)
        .with_field("a", "PG")
        .with_field("b", "Known")
        .with_field("d", 4)
        .with_field("e", 1)
        .with_field("i", "")
        .with_field("m", true);
    batch.body = mqlab_protocol::body::batch::encode(&[mqlab_protocol::body::batch::BatchEntry {
        flag: 0,
        body: b"b".to_vec(),
        properties: Vec::new(),
    }])
    .unwrap();
    let batch = exchange(encode_frame(&batch).unwrap());
    assert_eq!(batch.code, response::SUCCESS, "{:?}", batch.remark);
    let before = sv.store.offsets();
    let past = exchange(common::v2_send_with(4, "Known", "9", "", b"p"));
    assert_eq!(past.code, response::MESSAGE_ILLEGAL, "{:?}", past.remark);
    assert_eq!(sv.store.offsets().written, before.written);
    assert_eq!(inline(), 0);

    // Taken: V2 and V1 headers, JSON and RocketMQ's binary serialization;
    // the answer in the request's.
    let mut n = 0;
    for (code, ser) in [
        (request::SEND_MESSAGE_V2, SerializeType::Json),
        (request::SEND_MESSAGE, SerializeType::Json),
        (request::SEND_MESSAGE_V2, SerializeType::RocketMq),
        (request::SEND_MESSAGE, SerializeType::RocketMq),
    ] {
        n += 1;
        let mut req = if code == request::SEND_MESSAGE_V2 {
            RemotingCommand::request(code, 10 + n)
                .with_field("a", "PG")
                .with_field("b", "Known")
                .with_field("e", 2)
                .with_field("i", "KEYS\u{1}k\u{2}")
        } else {
            RemotingCommand::request(code, 10 + n)
                .with_field("producerGroup", "PG")
                .with_field("topic", "Known")
                .with_field("queueId", 2)
                .with_field("properties", "KEYS\u{1}k\u{2}")
        }
        .with_body(format!("plain-{n}").into_bytes());
        req.serialize_type = ser;
        let a = exchange(encode_frame(&req).unwrap());
        assert_eq!(a.code, response::SUCCESS, "{code} {ser:?}: {:?}", a.remark);
        assert_eq!(a.serialize_type, ser);
        assert_eq!(a.opaque, 10 + n);
        let m = stored(&sv.store, &a);
        assert_eq!(m.body, format!("plain-{n}").as_bytes());
        assert_eq!(m.queue_id, 2);
        assert_eq!(inline(), n as u64, "{code} {ser:?}");
    }
    sv.server.shutdown();
}

const ACL: &str = r#"
[[accounts]]
accessKey = "writer"
secretKey = "writer-secret"
defaultTopicPerm = "DENY"
topicPerms = ["Known=PUB|SUB"]
"#;

#[test]
fn a_send_the_acl_refuses_writes_nothing_inline_or_not() {
    let sv = serve(FlushKind::Async, Some(Arc::new(Acl::parse(ACL).unwrap())));
    let mut s = common::connect(sv.server.local_addr());
    let send = |opaque: i32, topic: &str| {
        RemotingCommand::request(request::SEND_MESSAGE_V2, opaque)
            .with_field("a", "PG")
            .with_field("b", topic)
            .with_field("e", 0)
            .with_field("i", "")
            .with_body(b"x".to_vec())
    };
    let before = sv.store.offsets();
    for (what, req) in [
        ("unsigned", send(1, "Known")),
        (
            "wrong secret",
            common::signed(send(2, "Known"), "writer", "nope"),
        ),
        (
            "no PUB on the topic",
            common::signed(send(3, "Other"), "writer", "writer-secret"),
        ),
    ] {
        let a = common::roundtrip(&mut s, &encode_frame(&req).unwrap());
        assert_eq!(a.code, response::NO_PERMISSION, "{what}: {:?}", a.remark);
    }
    assert_eq!(sv.store.offsets(), before, "a refused send wrote something");
    assert_eq!(sv.stats.inline_sends.load(Ordering::Relaxed), 0);
    assert_eq!(sv.broker.topic_queues("Other"), None);
    let ok = common::roundtrip(
        &mut s,
        &encode_frame(&common::signed(send(4, "Known"), "writer", "writer-secret")).unwrap(),
    );
    assert_eq!(ok.code, response::SUCCESS, "{:?}", ok.remark);
    assert_eq!(sv.stats.inline_sends.load(Ordering::Relaxed), 1);
    assert!(sv.store.offsets().written > before.written);
    sv.server.shutdown();
}
