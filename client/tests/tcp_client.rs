//! mqlab's own client over TCP (`TcpBroker`) against `mqlab broker` on
//! loopback: producers send through the wire, a group of push consumers
//! receives every message exactly once when nothing fails, and what was
//! acknowledged is in the broker's store.

mod messaging_support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use messaging_support::{consumer_config, owned, wait_for};
use mqlab_broker::node::{Node, NodeConfig};
use mqlab_client::api::BrokerApi;
use mqlab_client::consumer::push::PushConsumer;
use mqlab_client::consumer::{ConsumeStatus, Listener};
use mqlab_client::producer::{Producer, ProducerConfig};
use mqlab_client::tcp::TcpBroker;
use mqlab_engine::message::PROPERTY_UNIQ_KEY;
use mqlab_engine::{FlushKind, Message, StoreConfig};

#[test]
fn produce_and_consume_over_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = StoreConfig::small();
    store.flush.kind = FlushKind::Group;
    let node = Node::start(NodeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        embedded_namesrv: None,
        store,
        ..NodeConfig::new(dir.path().join("store"))
    })
    .unwrap();
    let client = |name: &str| -> Arc<dyn BrokerApi> {
        Arc::new(TcpBroker::new(node.addr(), "PG", dir.path().join(name)))
    };
    client("admin").create_topic("Wire", 4).unwrap();
    let seen: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let consumers: Vec<PushConsumer> = (0..2)
        .map(|i| {
            let seen = seen.clone();
            PushConsumer::start(
                client(&format!("c{i}")),
                consumer_config("wire-group", &format!("c{i}")),
                &[("Wire", "*")],
                Listener::concurrently(move |msgs, _ctx| {
                    let mut s = seen.lock().unwrap();
                    for m in msgs {
                        *s.entry(m.properties[PROPERTY_UNIQ_KEY].clone())
                            .or_default() += 1;
                    }
                    ConsumeStatus::ConsumeSuccess
                }),
            )
            .unwrap()
        })
        .collect();
    // The second member's join reaches the first as a push
    // (NOTIFY_CONSUMER_IDS_CHANGED). Until both have rebalanced, the first
    // one still holds every queue and a message may be consumed twice
    // (at-least-once), so send once the split has settled.
    wait_for(30, "4 queues split 2/2", || {
        consumers
            .iter()
            .map(|c| owned(c, "Wire"))
            .collect::<Vec<_>>()
            == vec![2, 2]
    });
    let p = Producer::new(client("p"), ProducerConfig::default());
    let n = 500;
    let mut acked = Vec::new();
    for i in 0..n {
        let r = p.send(Message::new("Wire", format!("wire-{i}")));
        assert!(r.is_ok(), "send {i}: {:?} {:?}", r.status, r.detail);
        acked.push(r.offsets.unwrap().phys_offset);
    }
    wait_for(30, "every message consumed", || {
        seen.lock().unwrap().len() == n
    });
    // Exactly once each.
    assert!(seen.lock().unwrap().values().all(|c| *c == 1));
    for c in consumers {
        c.shutdown().unwrap();
    }
    for phys in acked {
        let m = node.store().get(phys).unwrap();
        assert_eq!(m.topic, "Wire");
    }
    drop(p);
    node.shutdown().unwrap();
}
