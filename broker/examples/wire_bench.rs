//! Sync sends over loopback against an in-process broker node, for a
//! first look at what the wire costs (not mqlab's client: a bare remoting
//! sender, one request at a time per connection, C connections).
//!
//! `cargo run --release -p mqlab-broker --example wire_bench -- FLUSH CONNS SECS [MSG_BYTES]`
//! prints one line: flush, connections, msgs/s, p50 and p99 µs. Bounded:
//! SECS at most 30, CONNS at most 256; 127.0.0.1 only.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use mqlab_broker::node::{Node, NodeConfig};
use mqlab_engine::{FlushKind, StoreConfig};
use mqlab_protocol::codes::{request, response};
use mqlab_protocol::{decode_frame, encode_frame, Limits, RemotingCommand};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flush: FlushKind = args.get(1).map_or("group", String::as_str).parse().unwrap();
    let conns: usize = args
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
    node.broker().create_topic("Bench", 8).unwrap();
    let addr = node.addr();
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let threads: Vec<_> = (0..conns)
        .map(|c| {
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_nodelay(true).unwrap();
                let mut lat = Vec::new();
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let mut i = 0i32;
                while Instant::now() < deadline {
                    i += 1;
                    let req = RemotingCommand::request(request::SEND_MESSAGE_V2, i)
                        .with_field("a", "PG")
                        .with_field("b", "Bench")
                        .with_field("e", c % 8)
                        .with_field("i", "")
                        .with_body(vec![b'x'; size]);
                    let t = Instant::now();
                    s.write_all(&encode_frame(&req).unwrap()).unwrap();
                    let resp = loop {
                        if let Some((r, used)) = decode_frame(&buf, &Limits::default()).unwrap() {
                            buf.drain(..used);
                            break r;
                        }
                        let n = s.read(&mut chunk).unwrap();
                        assert!(n > 0);
                        buf.extend_from_slice(&chunk[..n]);
                    };
                    assert_eq!(resp.code, response::SUCCESS, "{:?}", resp.remark);
                    lat.push(t.elapsed().as_micros() as u64);
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
        "flush={flush} conns={conns} msg_bytes={size} msgs_per_s={:.0} p50_us={} p99_us={}",
        lat.len() as f64 / secs,
        pct(0.50),
        pct(0.99)
    );
    node.shutdown().unwrap_or_else(|e| panic!("{e}"));
}
