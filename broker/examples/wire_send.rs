//! Starts a name server and a broker on loopback for a bounded time (at
//! most 300 s), so a real client can be tried against them by hand:
//! `cargo run -p mqlab-broker --example wire_send -- NAMESRV_PORT BROKER_PORT SECS DIR`,
//! then point a producer at 127.0.0.1:NAMESRV_PORT (topic InteropTopic).
//! Prints `READY` when both listen, then every stored message at the end.
//! `broker/tests/interop_cpp_client.rs` is the automated version.

use std::sync::Arc;
use std::time::Duration;

use mqlab_broker::namesrv::{NameServer, Registration};
use mqlab_broker::remoting::{BrokerHandler, Handler, RemotingServer, ServerConfig};
use mqlab_protocol::codes::request;
use mqlab_protocol::RemotingCommand;

/// The name server as a handler value.
struct NsHandler(Arc<NameServer>);

impl Handler for NsHandler {
    fn handle(&self, req: RemotingCommand, peer: std::net::SocketAddr) -> Option<RemotingCommand> {
        self.0.handle(req, peer)
    }
}

/// Prints each request and its answer's code (MQLAB_WIRE_TRACE=1).
struct Trace<H>(&'static str, H);

impl<H: Handler> Handler for Trace<H> {
    fn handle(&self, req: RemotingCommand, peer: std::net::SocketAddr) -> Option<RemotingCommand> {
        let (code, fields) = (req.code, format!("{:?}", req.ext_fields));
        let r = self.1.handle(req, peer);
        if std::env::var_os("MQLAB_WIRE_TRACE").is_some() {
            let answer = r.as_ref().map(|r| (r.code, r.remark.clone(), r.body.len()));
            println!("{}: {} {fields} -> {answer:?}", self.0, request::name(code));
        }
        r
    }
}
use mqlab_broker::{Broker, BrokerConfig};
use mqlab_engine::{clock, FlushKind, Store, StoreConfig};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let ns_port: u16 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(19876);
    let broker_port: u16 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10911);
    let secs: u64 = args
        .get(3)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20)
        .min(300);
    let dir = args
        .get(4)
        .cloned()
        .unwrap_or_else(|| "/tmp/mqlab-wire-send".into());
    let broker_addr = format!("127.0.0.1:{broker_port}");

    let ns = Arc::new(NameServer::new());
    let topics = ["TBW102", "InteropTopic", "%RETRY%CG_INTEROP"];
    ns.register(&Registration::master("broker-a", &broker_addr, &topics, 4));
    let _ns_server = RemotingServer::start(
        ServerConfig {
            listen: format!("127.0.0.1:{ns_port}").parse().unwrap(),
            ..ServerConfig::default()
        },
        Arc::new(Trace("namesrv", NsHandler(ns.clone()))),
    )
    .expect("name server listens");
    let mut cfg = StoreConfig::small();
    cfg.flush.kind = FlushKind::Group;
    let store = Arc::new(Store::open(&dir, cfg).expect("store opens"));
    let broker = Broker::open(store.clone(), BrokerConfig::default(), clock::system()).unwrap();
    let handler = Arc::new(BrokerHandler::new(
        broker.clone(),
        broker_addr.parse().unwrap(),
    ));
    let server = RemotingServer::start(
        ServerConfig {
            listen: broker_addr.parse().unwrap(),
            ..ServerConfig::default()
        },
        handler,
    )
    .expect("broker listens");
    println!("READY");
    std::thread::sleep(Duration::from_secs(secs));
    println!("requests served: {}", server.requests());
    server.shutdown();
    let mut n = 0;
    store
        .scan(store.min_offset(), &mut |r| {
            if let Ok(m) = r {
                n += 1;
                println!(
                    "stored {} q{} keys={:?} tags={:?} body={:?}",
                    m.topic,
                    m.queue_id,
                    m.keys().collect::<Vec<_>>(),
                    m.properties.get("TAGS"),
                    String::from_utf8_lossy(&m.body)
                );
            }
            true
        })
        .unwrap();
    println!("stored messages: {n}");
}
