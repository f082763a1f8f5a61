//! Helpers shared by the wire tests: a broker served on loopback, a
//! connection and one request/answer exchange, a producer's send frame.
//! (The pieces of in-process clusters are `mqlab_broker::testkit`'s.)

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use std::sync::Arc;

use mqlab_broker::remoting::{BrokerHandler, RemotingServer, ServerConfig};
use mqlab_broker::{Broker, BrokerConfig};
use mqlab_engine::{clock, FlushKind, Store, StoreConfig};
use mqlab_protocol::codes::request;
use mqlab_protocol::{decode_frame, encode_frame, Limits, RemotingCommand};

/// A broker on a small store in a temporary directory, served on
/// 127.0.0.1 (a port the system chose).
pub struct WireBroker {
    pub dir: tempfile::TempDir,
    pub store: Arc<Store>,
    pub server: RemotingServer,
}

/// [`WireBroker`] with `flush` and at most `max_pending_sends` sends being
/// stored at once.
pub fn wire_broker(flush: FlushKind, max_pending_sends: usize) -> WireBroker {
    wire_broker_with(
        flush,
        max_pending_sends,
        ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..ServerConfig::default()
        },
    )
}

/// [`wire_broker`] served with `server`'s settings.
pub fn wire_broker_with(
    flush: FlushKind,
    max_pending_sends: usize,
    server: ServerConfig,
) -> WireBroker {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = StoreConfig::small();
    cfg.flush.kind = flush;
    let store = Arc::new(Store::open(dir.path(), cfg).unwrap());
    let broker = Broker::open(store.clone(), BrokerConfig::default(), clock::system()).unwrap();
    let handler = Arc::new(
        BrokerHandler::new(broker, "127.0.0.1:10911".parse().unwrap())
            .with_max_pending_sends(max_pending_sends),
    );
    let server = RemotingServer::start(server, handler).unwrap();
    WireBroker { dir, store, server }
}

/// A SEND_MESSAGE_V2 frame as Java's producer shapes it (`queue` as the
/// text the client sends, so tests can send bad ones).
pub fn v2_send(topic: &str, queue: &str, props: &str, body: &[u8]) -> Vec<u8> {
    v2_send_with(3, topic, queue, props, body)
}

/// [`v2_send`] with the request's opaque.
pub fn v2_send_with(opaque: i32, topic: &str, queue: &str, props: &str, body: &[u8]) -> Vec<u8> {
    let req = RemotingCommand::request(request::SEND_MESSAGE_V2, opaque)
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

/// [`v2_send_with`] of `body` to `topic`'s `queue`, keyed `k{opaque}`.
pub fn keyed_send(opaque: i32, topic: &str, queue: u32, body: &[u8]) -> Vec<u8> {
    let props = format!("KEYS\u{1}k{opaque}\u{2}");
    v2_send_with(opaque, topic, &queue.to_string(), &props, body)
}

/// Physical offsets of the records in a pull or query answer's body, in
/// order.
pub fn record_offsets(body: &[u8]) -> Vec<u64> {
    let (mut at, mut out) = (0, Vec::new());
    while at < body.len() {
        let size = u32::from_be_bytes(body[at..at + 4].try_into().unwrap()) as usize;
        out.push(u64::from_be_bytes(
            body[at + 28..at + 36].try_into().unwrap(),
        ));
        at += size;
    }
    out
}

/// The seed in the environment variable `var` (a run to replay), else
/// one from the clock.
pub fn env_seed(var: &str) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
}

/// `req` signed by account `key` with `secret` (AccessKey and Signature
/// fields, as RocketMQ's ACL hook adds them).
pub fn signed(mut req: RemotingCommand, key: &str, secret: &str) -> RemotingCommand {
    req.ext_fields.insert("AccessKey".into(), key.into());
    let sig = mqlab_broker::acl::sign(&req.ext_fields, &req.body, secret);
    req.ext_fields.insert("Signature".into(), sig);
    req
}

/// A connection to `addr` whose reads give up after 10 s.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Sends raw bytes and reads one answer frame (requests the broker pushes
/// meanwhile are skipped).
pub fn roundtrip(s: &mut TcpStream, bytes: &[u8]) -> RemotingCommand {
    s.write_all(bytes).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Some((cmd, used)) = decode_frame(&buf, &Limits::default()).unwrap() {
            buf.drain(..used);
            if cmd.is_response() {
                return cmd;
            }
        }
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "connection closed before an answer");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Every body `store` holds (scanned from its first offset).
pub fn stored_bodies(store: &Store) -> std::collections::HashSet<Vec<u8>> {
    let mut out = std::collections::HashSet::new();
    store
        .scan(store.min_offset(), &mut |m| {
            out.insert(m.expect("a valid record").body.clone());
            true
        })
        .unwrap();
    out
}

/// A producer thread: one connection to `addr`, seeded bodies of 100 to
/// 2,000 bytes over queues 0..4 of `topic`, `pause_ms` between sends,
/// until `stop` (30 s at most); returns the bodies answered SUCCESS.
/// `lane` keeps several producers' opaques and bodies apart.
pub fn spawn_producer(
    addr: SocketAddr,
    topic: &'static str,
    seed: u64,
    lane: u32,
    pause_ms: u64,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Vec<Vec<u8>>> {
    use rand::{Rng, SeedableRng};
    std::thread::spawn(move || {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ (u64::from(lane) << 32));
        let mut c = connect(addr);
        let mut acked = Vec::new();
        let t = std::time::Instant::now();
        let mut i = 0u32;
        while !stop.load(std::sync::atomic::Ordering::Acquire)
            && t.elapsed() < Duration::from_secs(30)
        {
            let len = rng.random_range(100..2_000);
            let body: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            let opaque = (lane * 1_000_000 + 10_000 + i) as i32;
            if roundtrip(&mut c, &keyed_send(opaque, topic, i % 4, &body)).code
                == mqlab_protocol::codes::response::SUCCESS
            {
                acked.push(body);
            }
            i += 1;
            if pause_ms > 0 {
                std::thread::sleep(Duration::from_millis(pause_ms));
            }
        }
        acked
    })
}
