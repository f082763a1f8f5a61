//! The real C++ client (PyPI `rocketmq` 0.4.4, which bundles librocketmq)
//! against mqlab's name server and broker over loopback: every message it
//! was told was sent is in the store with its body, key and tag, and its
//! push consumer receives every message sent after it joined.
//!
//! Needs the client: `.ci/run` installs it into a virtualenv it creates
//! and sets `MQLAB_INTEROP_PYTHON` to that interpreter; without the
//! variable these tests say so and do nothing.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use mqlab_broker::node::{Node, NodeConfig};
use mqlab_engine::{FlushKind, StoreConfig};

const PRODUCER: &str = r#"
import sys
from rocketmq.client import Producer, Message
p = Producer('PG_INTEROP')
p.set_namesrv_addr(sys.argv[1])
p.start()
for i in range(int(sys.argv[2])):
    m = Message('InteropTopic')
    m.set_keys('key-%d' % i)
    m.set_tags('TagA' if i % 2 == 0 else 'TagB')
    m.set_body('body-%d' % i)
    r = p.send_sync(m)
    print('sent %d %s' % (i, r.status), flush=True)
p.shutdown()
"#;

const CONSUMER: &str = r#"
import sys, time
from rocketmq.client import Producer, Message, PushConsumer
n = int(sys.argv[2])
got = {}
def on_message(msg):
    got[msg.keys.decode()] = msg.body.decode()
c = PushConsumer('CG_INTEROP')
c.set_namesrv_addr(sys.argv[1])
c.subscribe('InteropTopic', on_message)
c.start()
time.sleep(2)  # a new group starts at the queues' ends: join first
p = Producer('PG_INTEROP')
p.set_namesrv_addr(sys.argv[1])
p.start()
for i in range(n):
    m = Message('InteropTopic')
    m.set_keys('key-%d' % i)
    m.set_body('body-%d' % i)
    p.send_sync(m)
p.shutdown()
t = time.time()
while len(got) < n and time.time() - t < 60:
    time.sleep(0.1)
c.shutdown()
for k, v in sorted(got.items()):
    print('got %s %s' % (k, v), flush=True)
"#;

const ORDERLY: &str = r#"
import sys, time, threading
from rocketmq.client import Producer, Message, PushConsumer
n = int(sys.argv[2])
lock = threading.Lock()
seen = {}
def on_message(msg):
    shard, seq = msg.body.decode().split(':')
    with lock:
        seen.setdefault(shard, []).append((int(seq), msg.queue_id))
c = PushConsumer('CG_ORDERLY', orderly=True)
c.set_namesrv_addr(sys.argv[1])
c.subscribe('InteropTopic', on_message)
c.start()
time.sleep(2)
p = Producer('PG_ORDERLY')
p.set_namesrv_addr(sys.argv[1])
p.start()
for i in range(n):
    shard = i % 4
    m = Message('InteropTopic')
    m.set_keys('o-%d' % i)
    m.set_body('%d:%d' % (shard, i // 4))
    p.send_orderly(m, shard)
p.shutdown()
t = time.time()
while sum(len(v) for v in seen.values()) < n and time.time() - t < 60:
    time.sleep(0.1)
c.shutdown()
for shard, l in sorted(seen.items()):
    print('shard %s %s' % (shard, ' '.join('%d@%d' % x for x in l)), flush=True)
"#;

/// A broker node with its embedded name server on loopback ports.
struct Wire {
    dir: tempfile::TempDir,
    node: Node,
}

impl Wire {
    fn namesrv(&self) -> SocketAddr {
        self.node.embedded_namesrv().unwrap()
    }
}

fn start() -> Wire {
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
    // Clients look the topic up before anything is sent to it.
    node.broker().create_topic("InteropTopic", 4).unwrap();
    let ns = node.embedded_namesrv().unwrap();
    let t = Instant::now();
    while !routed(ns, "InteropTopic") {
        assert!(t.elapsed() < Duration::from_secs(10), "topic never routed");
        std::thread::sleep(Duration::from_millis(50));
    }
    Wire { dir, node }
}

fn routed(ns: SocketAddr, topic: &str) -> bool {
    let req = mqlab_protocol::RemotingCommand::request(
        mqlab_protocol::codes::request::GET_ROUTEINFO_BY_TOPIC,
        1,
    )
    .with_field("topic", topic);
    let r = mqlab_broker::remoting::call(ns, &req, Duration::from_secs(3)).unwrap();
    r.code == mqlab_protocol::codes::response::SUCCESS
}

/// Runs `script` with the client's Python, bounded; returns stdout.
fn run_client(python: &str, dir: &Path, script: &str, namesrv: SocketAddr, n: usize) -> String {
    let path = dir.join("client.py");
    std::fs::write(&path, script).unwrap();
    let mut cmd = Command::new(python);
    cmd.arg(&path).arg(namesrv.to_string()).arg(n.to_string());
    common::run_client(cmd, "the C++ client", 150)
}

fn python() -> Option<String> {
    let p = std::env::var("MQLAB_INTEROP_PYTHON").ok();
    if p.is_none() {
        eprintln!("skipped: MQLAB_INTEROP_PYTHON is not set (.ci/run installs PyPI rocketmq 0.4.4 and sets it)");
    }
    p
}

#[test]
fn cpp_client_sends_reach_the_store() {
    let Some(python) = python() else { return };
    let w = start();
    let n = 200;
    let out = run_client(&python, w.dir.path(), PRODUCER, w.namesrv(), n);
    let acked: Vec<usize> = out
        .lines()
        .filter_map(|l| l.strip_prefix("sent "))
        .map(|l| l.split(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(acked.len(), n, "{out}");
    let mut seen = std::collections::BTreeMap::new();
    let store = w.node.store();
    store
        .scan(store.min_offset(), &mut |r| {
            let m = r.unwrap();
            let key: String = m.keys().next().unwrap_or("").to_string();
            seen.insert(
                key,
                (
                    m.body.clone(),
                    m.properties.get("TAGS").cloned(),
                    m.topic.clone(),
                ),
            );
            true
        })
        .unwrap();
    for i in acked {
        let (body, tags, topic) = seen
            .get(&format!("key-{i}"))
            .unwrap_or_else(|| panic!("acknowledged message {i} is not in the store"));
        assert_eq!(body, format!("body-{i}").as_bytes());
        assert_eq!(
            tags.as_deref(),
            Some(if i % 2 == 0 { "TagA" } else { "TagB" })
        );
        assert_eq!(topic, "InteropTopic");
    }
    w.node.shutdown().unwrap();
}

#[test]
fn cpp_push_consumer_receives_every_message() {
    let Some(python) = python() else { return };
    let w = start();
    let n = 100;
    let out = run_client(&python, w.dir.path(), CONSUMER, w.namesrv(), n);
    let got: std::collections::BTreeMap<String, String> = out
        .lines()
        .filter_map(|l| l.strip_prefix("got "))
        .map(|l| {
            let (k, v) = l.split_once(' ').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect();
    for i in 0..n {
        assert_eq!(
            got.get(&format!("key-{i}")).map(String::as_str),
            Some(format!("body-{i}").as_str()),
            "message {i} not received; got {} of {n}",
            got.len()
        );
    }
    // A graceful shutdown with the consumer's pulls possibly still held.
    w.node.shutdown().unwrap();
}

#[test]
fn cpp_orderly_consumer_keeps_each_queue_in_order() {
    let Some(python) = python() else { return };
    let w = start();
    let n = 200;
    let out = run_client(&python, w.dir.path(), ORDERLY, w.namesrv(), n);
    let mut total = 0;
    for line in out.lines().filter_map(|l| l.strip_prefix("shard ")) {
        let (shard, rest) = line.split_once(' ').unwrap();
        let got: Vec<(usize, u32)> = rest
            .split(' ')
            .map(|x| {
                let (seq, q) = x.split_once('@').unwrap();
                (seq.parse().unwrap(), q.parse().unwrap())
            })
            .collect();
        // One shard key, one queue, consumed in the order it was sent.
        let seqs: Vec<usize> = got.iter().map(|x| x.0).collect();
        assert_eq!(
            seqs,
            (0..n / 4).collect::<Vec<_>>(),
            "shard {shard}: {rest}"
        );
        assert!(
            got.iter().all(|x| x.1 == got[0].1),
            "shard {shard} spread: {rest}"
        );
        total += got.len();
    }
    assert_eq!(total, n, "{out}");
    w.node.shutdown().unwrap();
}
