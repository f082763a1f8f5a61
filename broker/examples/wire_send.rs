//! Starts a broker node with its embedded name server on loopback for a
//! bounded time (at most 300 s), so a real client can be tried by hand:
//! `cargo run -p mqlab-broker --example wire_send -- NAMESRV_PORT BROKER_PORT SECS DIR`,
//! then point a client at 127.0.0.1:NAMESRV_PORT (topic InteropTopic
//! exists). Prints `READY` when both listen and every stored message at
//! the end. `broker/tests/interop_cpp_client.rs` is the automated version.

use std::time::Duration;

use mqlab_broker::node::{Node, NodeConfig};
use mqlab_engine::{FlushKind, StoreConfig};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, default: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (ns_port, broker_port) = (arg(1, 19876) as u16, arg(2, 10911) as u16);
    let secs = arg(3, 20).min(300);
    let dir = args
        .get(4)
        .cloned()
        .unwrap_or_else(|| "/tmp/mqlab-wire-send".into());
    let mut store = StoreConfig::small();
    store.flush.kind = FlushKind::Group;
    let node = Node::start(NodeConfig {
        listen: format!("127.0.0.1:{broker_port}").parse().unwrap(),
        embedded_namesrv: Some(format!("127.0.0.1:{ns_port}").parse().unwrap()),
        store,
        ..NodeConfig::new(&dir)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    node.broker().create_topic("InteropTopic", 4).unwrap();
    println!("READY");
    std::thread::sleep(Duration::from_secs(secs));
    let mut n = 0;
    let store = node.store().clone();
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
    drop(store);
    node.shutdown().unwrap_or_else(|e| panic!("{e}"));
}
