//! Starts a name server and a broker on loopback for a bounded time (at
//! most 300 s), so a real client can be tried against them by hand:
//! `cargo run -p mqlab-broker --example wire_send -- NAMESRV_PORT BROKER_PORT SECS DIR`,
//! then point a producer at 127.0.0.1:NAMESRV_PORT (topic InteropTopic).
//! Prints `READY` when both listen, then every stored message at the end.
//! `broker/tests/interop_cpp_client.rs` is the automated version.

use std::sync::Arc;
use std::time::Duration;

use mqlab_broker::namesrv::{NameServer, Registration};
use mqlab_broker::remoting::{BrokerHandler, RemotingServer, ServerConfig};
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
    let topics = ["TBW102", "InteropTopic"];
    ns.register(&Registration::master("broker-a", &broker_addr, &topics, 4));
    let _ns_server = ns
        .serve(ServerConfig {
            listen: format!("127.0.0.1:{ns_port}").parse().unwrap(),
            ..ServerConfig::default()
        })
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
