//! The real C++ client (PyPI `rocketmq` 0.4.4, which bundles librocketmq)
//! against `mqlab broker` (the binary, with its embedded name server) on
//! loopback:
//! - a push consumer joins, a producer sends 1,000 messages synchronously
//!   with keys and tags; every message the producer was told was sent
//!   reaches the consumer with the same id, key, tag and body, and after
//!   the broker's shutdown `mqlab verify --acked` finds every one of them
//!   in the store (resolved from the id and queue offset the client was
//!   given);
//! - an orderly producer and an orderly push consumer keep each sharding
//!   key's messages on one queue, consumed in the order sent.
//!
//! Needs the client: `.ci/run` installs it into a virtualenv it creates
//! and sets `MQLAB_INTEROP_PYTHON` to that interpreter; without the
//! variable these tests say so and do nothing.

mod interop_common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use interop_common::{run_client, verify_acked, Ack, Broker};

const ROUND_TRIP: &str = r#"
import sys, time, threading
from rocketmq.client import Producer, Message, PushConsumer
n = int(sys.argv[2])
lock = threading.Lock()
got = {}
def on_message(msg):
    with lock:
        got[msg.id] = (msg.keys.decode(), msg.tags.decode(), msg.body.decode(),
                       msg.get_property('UNIQ_KEY').decode())
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
    m.set_tags('TagA' if i % 2 == 0 else 'TagB')
    m.set_body('body-%d' % i)
    r = p.send_sync(m)
    print('sent %d %s %s %d' % (i, r.status.name, r.msg_id, r.offset), flush=True)
p.shutdown()
t = time.time()
while len(got) < n and time.time() - t < 60:
    time.sleep(0.1)
c.shutdown()
with lock:
    for i, (k, tag, body, uniq) in sorted(got.items()):
        print('got %s %s %s %s %s' % (i, k, tag, body, uniq), flush=True)
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

/// Runs `script` with the client's Python, bounded; returns stdout.
fn run_script(python: &str, dir: &Path, script: &str, namesrv: SocketAddr, n: usize) -> String {
    let path = dir.join("client.py");
    std::fs::write(&path, script).unwrap();
    let mut cmd = Command::new(python);
    cmd.arg(&path).arg(namesrv.to_string()).arg(n.to_string());
    run_client(cmd, "the C++ client", 240)
}

fn python() -> Option<String> {
    let p = std::env::var("MQLAB_INTEROP_PYTHON").ok();
    if p.is_none() {
        eprintln!("skipped: MQLAB_INTEROP_PYTHON is not set (.ci/run installs PyPI rocketmq 0.4.4 and sets it)");
    }
    p
}

#[test]
fn cpp_client_round_trips_every_message_and_verify_finds_every_ack() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), "group", "InteropTopic", 4);
    let n = 1_000;
    let out = run_script(&python, dir.path(), ROUND_TRIP, broker.namesrv, n);
    // i -> (msg id, queue offset), as the producer was told.
    let mut acks = BTreeMap::new();
    for l in out.lines().filter_map(|l| l.strip_prefix("sent ")) {
        let f: Vec<&str> = l.split(' ').collect();
        assert_eq!(f.len(), 4, "{l}");
        assert_eq!(f[1], "OK", "{l}");
        acks.insert(
            f[0].parse::<usize>().unwrap(),
            (f[2].to_string(), f[3].parse::<u64>().unwrap()),
        );
    }
    assert_eq!(acks.len(), n, "{out}");
    // msg id -> (key, tag, body, UNIQ_KEY), as the consumer received it.
    let got: BTreeMap<&str, Vec<&str>> = out
        .lines()
        .filter_map(|l| l.strip_prefix("got "))
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f[0], f[1..].to_vec())
        })
        .collect();
    for (i, (id, _)) in &acks {
        let tag = if i % 2 == 0 { "TagA" } else { "TagB" };
        let want = vec![
            format!("key-{i}"),
            tag.to_string(),
            format!("body-{i}"),
            id.clone(),
        ];
        let seen = got.get(id.as_str()).unwrap_or_else(|| {
            panic!(
                "message {i} (id {id}) not received; got {} of {n}",
                got.len()
            )
        });
        assert_eq!(seen, &want, "message {i}");
    }
    broker.stop();
    let acks: Vec<Ack> = acks
        .iter()
        .map(|(i, (id, off))| Ack {
            topic: "InteropTopic".into(),
            queue_id: None, // the C++ client's send result has none
            queue_offset: *off,
            msg_id: id.clone(),
            key: format!("key-{i}"),
        })
        .collect();
    verify_acked(dir.path(), &dir.path().join("data"), &acks);
}

#[test]
fn cpp_orderly_consumer_keeps_each_queue_in_order() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), "group", "InteropTopic", 4);
    let n = 200;
    let out = run_script(&python, dir.path(), ORDERLY, broker.namesrv, n);
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
    broker.stop();
}
