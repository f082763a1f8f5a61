//! The Node client (npm `ali-ons` 3.12, pure JavaScript) against mqlab's
//! embedded name server and broker on loopback: a push consumer joins, a
//! producer sends 50 messages (SEND_OK each), and the consumer receives
//! every one with its body.
//!
//! Needs the client: `.ci/run` installs it with npm into a folder it
//! creates and sets `MQLAB_INTEROP_NODE_MODULES` to its node_modules;
//! without the variable this test says so and does nothing.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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
    let mut child = Command::new("node")
        .arg(script)
        .arg(node.embedded_namesrv().unwrap().to_string())
        .arg(n.to_string())
        .env("NODE_PATH", &modules)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running node");
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the Node client did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (mut out, mut err) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "client failed: {status}\n{out}\n{err}");
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
