//! Sync sends to a broker node on loopback: C threads, each with one send
//! in flight, through mqlab's own TCP client (`TcpBroker`), or with
//! `raw` through a bare remoting sender (one connection per thread, one
//! SEND_MESSAGE_V2 frame at a time: the wire without the client).
//!
//! `cargo run --release -p mqlab-client --example tcp_send_bench -- FLUSH IN_FLIGHT SECS [MSG_BYTES] [raw]`
//! prints one line: client, flush, in flight, msgs/s, p50 and p99 µs.
//! Bounded: SECS at most 30, IN_FLIGHT at most 256; 127.0.0.1 only.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mqlab_broker::node::{Node, NodeConfig};
use mqlab_client::api::BrokerApi;
use mqlab_client::tcp::TcpBroker;
use mqlab_engine::{FlushKind, Message, StoreConfig};
use mqlab_protocol::codes::{request, response};
use mqlab_protocol::RemotingCommand;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flush: FlushKind = args.get(1).map_or("group", String::as_str).parse().unwrap();
    let inflight: u32 = args
        .get(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1)
        .clamp(1, 256);
    let secs: f64 = args
        .get(3)
        .and_then(|a| a.parse().ok())
        .unwrap_or(3.0f64)
        .clamp(0.5, 30.0);
    let size: usize = args.get(4).and_then(|a| a.parse().ok()).unwrap_or(1024);
    let raw = args.get(5).is_some_and(|a| a == "raw");
    let dir = tempfile::tempdir().unwrap();
    let mut store = StoreConfig::default();
    store.flush.kind = flush;
    let node = Node::start(NodeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        embedded_namesrv: None,
        store,
        ..NodeConfig::new(dir.path().join("store"))
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let tcp = Arc::new(TcpBroker::new(node.addr(), "PG", dir.path().join("c")));
    let client: Arc<dyn BrokerApi> = tcp.clone();
    client.create_topic("Bench", 8).unwrap();
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let threads: Vec<_> = (0..inflight)
        .map(|t| {
            let (client, tcp) = (client.clone(), tcp.clone());
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                let body = vec![b'x'; size];
                while Instant::now() < deadline {
                    let s = Instant::now();
                    if raw {
                        let req = RemotingCommand::request(request::SEND_MESSAGE_V2, 0)
                            .with_field("a", "PG")
                            .with_field("b", "Bench")
                            .with_field("e", t % 8)
                            .with_field("i", "")
                            .with_body(body.clone());
                        // Pooled connections, one frame at a time each.
                        let r = tcp.call(req, Duration::from_secs(30)).unwrap();
                        assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
                    } else {
                        let m = Message::new("Bench", body.clone()).with_queue(t % 8);
                        let r = client.send_message(&m);
                        assert!(r.is_ok(), "{:?} {:?}", r.status, r.detail);
                    }
                    lat.push(s.elapsed().as_micros() as u64);
                }
                lat
            })
        })
        .collect();
    let mut lat: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!(
        "client={} flush={flush} in_flight={inflight} msg_bytes={size} msgs_per_s={:.0} p50_us={} p99_us={}",
        if raw { "raw-remoting" } else { "mqlab-tcp" },
        lat.len() as f64 / secs,
        pct(0.50),
        pct(0.99)
    );
    drop((client, tcp));
    node.shutdown().unwrap_or_else(|e| panic!("{e}"));
}
