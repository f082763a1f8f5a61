//! The real C++ client (PyPI `rocketmq` 0.4.4, which bundles librocketmq)
//! sends to mqlab's name server and broker over loopback: every message it
//! was told was sent is in the store with its body, key and tag.
//!
//! Needs the client: `.ci/run` installs it into a virtualenv it creates
//! and sets `MQLAB_INTEROP_PYTHON` to that interpreter; without the
//! variable this test says so and does nothing.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mqlab_broker::namesrv::{NameServer, Registration};
use mqlab_broker::remoting::{BrokerHandler, RemotingServer, ServerConfig};
use mqlab_broker::{Broker, BrokerConfig};
use mqlab_engine::{clock, FlushKind, Store, StoreConfig};

const MESSAGES: usize = 200;

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

fn listen_any() -> ServerConfig {
    ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..ServerConfig::default()
    }
}

#[test]
fn cpp_client_sends_reach_the_store() {
    let Ok(python) = std::env::var("MQLAB_INTEROP_PYTHON") else {
        eprintln!("skipped: MQLAB_INTEROP_PYTHON is not set (.ci/run installs PyPI rocketmq 0.4.4 and sets it)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = StoreConfig::small();
    cfg.flush.kind = FlushKind::Group;
    let store = Arc::new(Store::open(dir.path().join("store"), cfg).unwrap());
    let broker = Broker::open(store.clone(), BrokerConfig::default(), clock::system()).unwrap();
    // Bind first, then tell the handler and the name server where.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let broker_addr = probe.local_addr().unwrap();
    drop(probe);
    let server = RemotingServer::start(
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
        &["TBW102", "InteropTopic"],
        4,
    ));
    let ns_server = ns.serve(listen_any()).unwrap();
    let script = dir.path().join("producer.py");
    std::fs::write(&script, PRODUCER).unwrap();
    let mut child = Command::new(&python)
        .arg(&script)
        .arg(ns_server.local_addr().to_string())
        .arg(MESSAGES.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {python}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the C++ client did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut out = String::new();
    let mut err = String::new();
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
    let acked: Vec<usize> = out
        .lines()
        .filter_map(|l| l.strip_prefix("sent "))
        .map(|l| l.split(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(acked.len(), MESSAGES, "{out}\n{err}");
    server.shutdown();
    let mut seen = std::collections::BTreeMap::new();
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
}
