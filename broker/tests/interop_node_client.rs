//! The Node client (npm `ali-ons` 3.12, pure JavaScript) against mqlab's
//! embedded name server and broker on loopback: a push consumer joins, a
//! producer sends 50 messages (SEND_OK each), and the consumer receives
//! every one with its body.
//!
//! Needs the client: `.ci/run` installs it with npm into a folder it
//! creates and sets `MQLAB_INTEROP_NODE_MODULES` to its node_modules;
//! without the variable this test says so and does nothing.

mod common;

use std::process::Command;
use std::time::Duration;

use mqlab_broker::node::{Node, NodeConfig};
use mqlab_engine::{FlushKind, StoreConfig};

#[test]
fn ali_ons_sends_and_consumes() {
    let Ok(modules) = std::env::var("MQLAB_INTEROP_NODE_MODULES") else {
        eprintln!("skipped: MQLAB_INTEROP_NODE_MODULES is not set (.ci/run installs npm ali-ons 3.12 and sets it)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut store = StoreConfig::small();
    store.flush.kind = FlushKind::Group;
    let node = Node::start(NodeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        embedded_namesrv: Some("127.0.0.1:0".parse().unwrap()),
        store,
        ..NodeConfig::new(dir.path().join("store"))
    })
    .unwrap();
    node.broker().create_topic("InteropTopic", 4).unwrap();
    std::thread::sleep(Duration::from_millis(600)); // the registrar announces it
    let n = 50;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/ali-ons-send-consume.js"
    );
    let mut cmd = Command::new("node");
    cmd.arg(script)
        .arg(node.embedded_namesrv().unwrap().to_string())
        .arg(n.to_string())
        .env("NODE_PATH", &modules);
    let out = common::run_client(cmd, "the Node client", 120);
    let sent = out
        .lines()
        .filter(|l| l.starts_with("sent ") && l.contains("SEND_OK"))
        .count();
    assert_eq!(sent, n, "{out}");
    for i in 0..n {
        let want = format!("got node-key-{i} node-body-{i}");
        assert!(
            out.lines().any(|l| l == want),
            "message {i} not received:\n{out}"
        );
    }
    // What the client was told was sent is in the store.
    let mut stored = 0;
    node.store()
        .scan(node.store().min_offset(), &mut |r| {
            stored += r.is_ok_and(|m| m.topic == "InteropTopic") as usize;
            true
        })
        .unwrap();
    assert!(stored >= n, "{stored} stored");
    node.shutdown().unwrap();
}
