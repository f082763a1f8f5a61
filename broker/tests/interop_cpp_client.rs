//! The real C++ client (PyPI `rocketmq` 0.4.4, which bundles librocketmq)
//! against mqlab's name server and broker over loopback: every message it
//! was told was sent is in the store with its body, key and tag, and its
//! push consumer receives every message sent after it joined.
//!
//! Needs the client: `.ci/run` installs it into a virtualenv it creates
//! and sets `MQLAB_INTEROP_PYTHON` to that interpreter; without the
//! variable these tests say so and do nothing.

use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mqlab_broker::namesrv::{NameServer, Registration};
use mqlab_broker::remoting::{BrokerHandler, RemotingServer, ServerConfig};
use mqlab_broker::{Broker, BrokerConfig};
use mqlab_engine::{clock, FlushKind, Store, StoreConfig};

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

/// A store, a broker and a name server on loopback ports.
struct Wire {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    broker: RemotingServer,
    namesrv: RemotingServer,
}

fn start() -> Wire {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = StoreConfig::small();
    cfg.flush.kind = FlushKind::Group;
    let store = Arc::new(Store::open(dir.path().join("store"), cfg).unwrap());
    let broker = Broker::open(store.clone(), BrokerConfig::default(), clock::system()).unwrap();
    // Bind first, then tell the handler and the name server where.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let broker_addr: SocketAddr = probe.local_addr().unwrap();
    drop(probe);
    let broker = RemotingServer::start(
        ServerConfig {
            listen: broker_addr,
            ..ServerConfig::default()
        },
        Arc::new(BrokerHandler::new(broker, broker_addr)),
    )
    .unwrap();
    let ns = Arc::new(NameServer::new());
    ns.register(&Registration::master(
        "broker-a",
        &broker_addr.to_string(),
        &[
            "TBW102",
            "InteropTopic",
            "%RETRY%CG_INTEROP",
            "%RETRY%CG_ORDERLY",
        ],
        4,
    ));
    let namesrv = ns
        .serve(ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..ServerConfig::default()
        })
        .unwrap();
    Wire {
        _dir: dir,
        store,
        broker,
        namesrv,
    }
}

/// Runs `script` with the client's Python, bounded; returns stdout.
fn run_client(python: &str, dir: &Path, script: &str, namesrv: SocketAddr, n: usize) -> String {
    let path = dir.join("client.py");
    std::fs::write(&path, script).unwrap();
    let mut child = Command::new(python)
        .arg(&path)
        .arg(namesrv.to_string())
        .arg(n.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {python}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(150);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the C++ client did not finish within 150 s");
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
    out
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
    let out = run_client(&python, w._dir.path(), PRODUCER, w.namesrv.local_addr(), n);
    let acked: Vec<usize> = out
        .lines()
        .filter_map(|l| l.strip_prefix("sent "))
        .map(|l| l.split(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(acked.len(), n, "{out}");
    let mut seen = std::collections::BTreeMap::new();
    w.store
        .scan(w.store.min_offset(), &mut |r| {
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
    assert!(w.broker.requests() >= n as u64);
}

#[test]
fn cpp_push_consumer_receives_every_message() {
    let Some(python) = python() else { return };
    let w = start();
    let n = 100;
    let out = run_client(&python, w._dir.path(), CONSUMER, w.namesrv.local_addr(), n);
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
}

#[test]
fn cpp_orderly_consumer_keeps_each_queue_in_order() {
    let Some(python) = python() else { return };
    let w = start();
    let n = 200;
    let out = run_client(&python, w._dir.path(), ORDERLY, w.namesrv.local_addr(), n);
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
}
