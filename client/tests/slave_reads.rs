//! Slave reads and producer failover over the wire (issue 14): in-process
//! name server and broker nodes on loopback (ports chosen by the system),
//! the routed TCP clients of `mqlab_client::tcp::routed`.
//!
//! - two broker groups (A: SYNC_MASTER + slave, B: master); A's master
//!   stops; the producer keeps sending (to B) and loses no acknowledged
//!   send; the consumer reads A's queues from A's slave, commits there, and
//!   gets every message acknowledged before and after the stop;
//! - a master with slaveReadEnable and a test-sized memory suggests the
//!   slave for data past the threshold, the consumer's next pull of that
//!   queue goes to the slave, which sends it back to the master once it is
//!   caught up; without slaveReadEnable the suggestion is always the master;
//! - a slave answers a pull over the wire with nothing past its flushed
//!   offset, and with everything once it flushed.
//!
//! Random choices are seeded; every failure names its seed.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mqlab_broker::ha::BrokerRole;
use mqlab_broker::node::{Node, NodeConfig};
use mqlab_broker::remoting::RemotingServer;
use mqlab_broker::testkit::{self, wait_for};
use mqlab_broker::{BrokerConfig, MessageQueue, PullStatus};
use mqlab_client::tcp::pipelined::lookup_route;
use mqlab_client::tcp::routed::{GroupQueue, RoutedConfig, RoutedConsumer, RoutedProducer};
use mqlab_client::tcp::TcpBroker;
use mqlab_client::BrokerApi;
use mqlab_engine::{FlushKind, Message};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const TOPIC: &str = "SlaveReads";

/// One test's name server and the directory of its nodes.
struct Cluster {
    ns_server: RemotingServer,
    ns: SocketAddr,
    dir: tempfile::TempDir,
}

impl Cluster {
    fn start() -> Cluster {
        let ns_server = testkit::namesrv();
        Cluster {
            ns: ns_server.local_addr(),
            ns_server,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A node of broker group `name` on directory `sub` as `role` (a slave
    /// following `master`), registering every 200 ms, with the broker's
    /// defaults.
    fn config(&self, sub: &str, name: &str, role: BrokerRole, master: Option<&Node>) -> NodeConfig {
        NodeConfig {
            namesrv: vec![self.ns],
            register_interval_ms: 200,
            ..testkit::node_config(
                &self.dir.path().join(sub),
                name,
                testkit::store_config(256 * 1024, FlushKind::Group),
                testkit::ha_config(role, master.and_then(|m| m.ha_addr())),
            )
        }
    }

    /// Starts [`Cluster::config`]'s node.
    fn node(&self, sub: &str, name: &str, role: BrokerRole, master: Option<&Node>) -> Node {
        Node::start(self.config(sub, name, role, master)).unwrap()
    }

    /// Creates the topic on a master.
    fn create_topic(&self, node: &Node, queues: u32) {
        TcpBroker::new(node.addr(), "PG", self.dir.path().join("admin"))
            .create_topic(TOPIC, queues)
            .unwrap();
    }

    /// Waits until the route lists `groups` (name -> broker ids), each
    /// with queues.
    fn wait_route(&self, groups: &[(&str, &[i64])], seed: u64) {
        wait_for("the route", seed, 20, || {
            let Ok(Some(r)) = lookup_route(self.ns, TOPIC, Duration::from_secs(1)) else {
                return false;
            };
            groups.iter().all(|(name, ids)| {
                r.queue_datas.iter().any(|q| q.broker_name == *name)
                    && r.broker_datas.iter().any(|b| {
                        b.broker_name == *name
                            && b.broker_addrs.keys().copied().collect::<Vec<_>>() == *ids
                    })
            })
        });
    }

    fn shutdown(self) {
        self.ns_server.shutdown();
    }
}

fn caught_up(master: &Node, slave: &Node) -> bool {
    let m = master.store().offsets();
    let s = slave.store().offsets();
    s.flushed >= m.committed && slave.store().dispatched_offset() >= m.committed
}

fn cfg(group: &str) -> RoutedConfig {
    RoutedConfig {
        group: group.into(),
        route_refresh: Duration::from_millis(200),
        retry_times_when_send_failed: 2,
        pull_batch_size: 32,
        ..RoutedConfig::default()
    }
}

/// Polls until `want` bodies were all received or `secs` pass; returns
/// every body received with the (group, broker id) that served it.
fn consume_until(
    c: &RoutedConsumer,
    want: &BTreeSet<Vec<u8>>,
    got: &mut BTreeMap<Vec<u8>, (String, u64)>,
    seed: u64,
    secs: u64,
) {
    let t = Instant::now();
    while !want.iter().all(|b| got.contains_key(b)) {
        assert!(
            t.elapsed() < Duration::from_secs(secs),
            "seed {seed:#x}: {} acknowledged messages never consumed",
            want.iter().filter(|b| !got.contains_key(*b)).count()
        );
        let p = c.poll().unwrap();
        for r in p.pulled {
            for m in r.msgs {
                got.entry(m.body)
                    .or_insert((r.queue.broker_name.clone(), r.broker_id));
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn producer_and_consumer_ride_out_a_stopped_master() {
    let seed = 0x14_5001;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let cl = Cluster::start();
    let ns = cl.ns;
    let a_master = cl.node("a0", "broker-a", BrokerRole::SyncMaster, None);
    let a_slave = cl.node("a1", "broker-a", BrokerRole::Slave, Some(&a_master));
    let b_master = cl.node("b0", "broker-b", BrokerRole::AsyncMaster, None);
    cl.create_topic(&a_master, 4);
    cl.create_topic(&b_master, 4);
    cl.wait_route(&[("broker-a", &[0, 1]), ("broker-b", &[0])], seed);

    let producer = RoutedProducer::new(ns, TOPIC, cfg("PG"));
    let consumer = RoutedConsumer::new(ns, TOPIC, cfg("CG"));
    assert_eq!(consumer.queues().unwrap().len(), 8);
    let mut acked: BTreeMap<Vec<u8>, String> = BTreeMap::new();
    let send = |i: usize, rng: &mut ChaCha8Rng| {
        let pad: String = (0..rng.random_range(1..400)).map(|_| 'x').collect();
        let body = format!("m{i:05}-{pad}").into_bytes();
        let s = producer
            .send(&Message::new(TOPIC, body.clone()))
            .unwrap_or_else(|e| panic!("seed {seed:#x}: send {i}: {e}"));
        (body, s)
    };
    for i in 0..100 {
        let (body, s) = send(i, &mut rng);
        assert!(s.is_ok(), "seed {seed:#x}: send {i} before the stop: {s:?}");
        assert_eq!(s.attempts, 1, "seed {seed:#x}: send {i}: {s:?}");
        acked.insert(body, s.broker_name);
    }
    let to_a = acked.values().filter(|g| *g == "broker-a").count();
    assert!(
        to_a > 25 && to_a < 75,
        "seed {seed:#x}: {to_a} of 100 sends to broker-a"
    );

    // Consumed and committed while A's master is up: reads and offsets
    // go to the masters.
    let mut got = BTreeMap::new();
    let first: BTreeSet<Vec<u8>> = acked.keys().cloned().collect();
    consume_until(&consumer, &first, &mut got, seed, 20);
    assert!(
        got.values().all(|(_, id)| *id == 0),
        "seed {seed:#x}: master reads"
    );
    let committed = consumer.commit().unwrap();
    assert_eq!(committed.len(), 8, "seed {seed:#x}: {committed:?}");
    for (q, id) in &committed {
        assert_eq!(*id, 0, "seed {seed:#x}: {q:?} committed to broker {id}");
    }
    let a_q0 = GroupQueue {
        broker_name: "broker-a".into(),
        queue_id: 0,
    };
    assert_eq!(
        consumer.committed(&a_q0).unwrap(),
        a_master
            .broker()
            .query_offset("CG", &MessageQueue::new(TOPIC, 0)),
        "seed {seed:#x}"
    );

    // More, acknowledged but not consumed before the stop. A SYNC_MASTER's
    // acknowledgement means A's slave has the message; it flushes and
    // dispatches it.
    for i in 100..200 {
        let (body, s) = send(i, &mut rng);
        assert!(s.is_ok(), "seed {seed:#x}: send {i} before the stop: {s:?}");
        acked.insert(body, s.broker_name);
    }
    wait_for("A's slave", seed, 20, || caught_up(&a_master, &a_slave));
    a_master.shutdown().unwrap();

    // The producer keeps going: every send is acknowledged, by B.
    let mut retried = 0;
    for i in 200..400 {
        let (body, s) = send(i, &mut rng);
        assert!(s.is_ok(), "seed {seed:#x}: send {i} after the stop: {s:?}");
        assert_eq!(s.broker_name, "broker-b", "seed {seed:#x}: send {i}");
        retried += usize::from(s.attempts > 1);
        acked.insert(body, s.broker_name);
    }
    assert!(retried <= 3, "seed {seed:#x}: {retried} sends retried");
    cl.wait_route(&[("broker-a", &[1]), ("broker-b", &[0])], seed);

    // The consumer gets everything acknowledged, what A acknowledged
    // after the first round from A's slave.
    let all: BTreeSet<Vec<u8>> = acked.keys().cloned().collect();
    consume_until(&consumer, &all, &mut got, seed, 30);
    for (b, g) in &acked {
        assert_eq!(&got[b].0, g, "seed {seed:#x}: group of a message");
    }
    let a_late: Vec<_> = acked
        .iter()
        .filter(|(b, g)| *g == "broker-a" && !first.contains(*b))
        .collect();
    assert!(
        a_late.len() > 25,
        "seed {seed:#x}: {} late on A",
        a_late.len()
    );
    for (b, _) in &a_late {
        assert_eq!(got[*b].1, 1, "seed {seed:#x}: read from A's slave");
    }
    // Offsets of A's queues now go to its slave, B's to B's master.
    let committed = consumer.commit().unwrap();
    assert!(committed.iter().any(|(q, _)| q.broker_name == "broker-a"));
    for (q, id) in &committed {
        let (node, want) = if q.broker_name == "broker-a" {
            (&a_slave, 1)
        } else {
            (&b_master, 0)
        };
        assert_eq!(*id, want, "seed {seed:#x}: {q:?} committed to broker {id}");
        let mq = MessageQueue::new(TOPIC, q.queue_id);
        assert_eq!(
            node.broker().query_offset("CG", &mq),
            Some(node.broker().queue_range(&mq).1),
            "seed {seed:#x}: {q:?}: the committed offset"
        );
    }
    drop(consumer);
    drop(producer);
    b_master.shutdown().unwrap();
    a_slave.shutdown().unwrap();
    cl.shutdown();
}

#[test]
fn a_master_with_slave_reads_sends_a_slow_consumer_to_the_slave() {
    let seed = 0x14_5002;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let cl = Cluster::start();
    let ns = cl.ns;
    // 40% of 64 KiB: data more than 26,214 bytes behind the log's end is
    // "no longer in memory".
    let slave_reads = BrokerConfig {
        slave_read_enable: true,
        total_memory_bytes: Some(64 * 1024),
        ..BrokerConfig::default()
    };
    let master = Node::start(NodeConfig {
        broker: slave_reads.clone(),
        ..cl.config("a0", "broker-a", BrokerRole::AsyncMaster, None)
    })
    .unwrap();
    let slave = Node::start(NodeConfig {
        broker: slave_reads,
        ..cl.config("a1", "broker-a", BrokerRole::Slave, Some(&master))
    })
    .unwrap();
    // The same memory without slaveReadEnable: always the master.
    let plain = Node::start(NodeConfig {
        broker: BrokerConfig {
            total_memory_bytes: Some(64 * 1024),
            ..BrokerConfig::default()
        },
        ..cl.config("b0", "broker-b", BrokerRole::AsyncMaster, None)
    })
    .unwrap();
    cl.create_topic(&master, 1);
    cl.create_topic(&plain, 1);
    cl.wait_route(&[("broker-a", &[0, 1]), ("broker-b", &[0])], seed);
    // About 400 KiB into each group's one queue.
    let producer = RoutedProducer::new(ns, TOPIC, cfg("PG"));
    let mut sent: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    for i in 0..800 {
        let len = rng.random_range(500..1_500);
        let mut body = format!("m{i:05}-").into_bytes();
        body.resize(len, b'.');
        let s = producer.send(&Message::new(TOPIC, body.clone())).unwrap();
        assert!(s.is_ok(), "seed {seed:#x}: send {i}: {s:?}");
        sent.entry(s.broker_name).or_default().push(body);
    }
    wait_for("the slave", seed, 20, || caught_up(&master, &slave));

    let consumer = RoutedConsumer::new(
        ns,
        TOPIC,
        RoutedConfig {
            pull_batch_size: 8,
            ..cfg("CG")
        },
    );
    for (group, bodies) in &sent {
        let q = GroupQueue {
            broker_name: group.clone(),
            queue_id: 0,
        };
        let mut got = Vec::new();
        // (broker that answered, its suggestion) of every pull.
        let mut pulls = Vec::new();
        let t = Instant::now();
        while got.len() < bodies.len() {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "seed {seed:#x}: {group}: {} of {} consumed",
                got.len(),
                bodies.len()
            );
            let want_from = consumer.pull_from(&q);
            let p = consumer.pull(&q).unwrap();
            assert_eq!(
                p.broker_id, want_from,
                "seed {seed:#x}: {group}: pulled where told"
            );
            pulls.push((p.broker_id, p.suggested));
            got.extend(p.msgs.into_iter().map(|m| m.body));
        }
        assert_eq!(
            &got, bodies,
            "seed {seed:#x}: {group}: every message, in order"
        );
        if group == "broker-a" {
            assert_eq!(
                pulls[0],
                (0, 1),
                "seed {seed:#x}: the master's first answer"
            );
            let on_slave = pulls.iter().filter(|(id, _)| *id == 1).count();
            assert!(
                on_slave > pulls.len() / 2,
                "seed {seed:#x}: {on_slave} of {} pulls on the slave",
                pulls.len()
            );
            // Caught up: the slave sends the consumer back to the master.
            let last = *pulls.last().unwrap();
            assert_eq!(last.1, 0, "seed {seed:#x}: {pulls:?}");
            assert!(pulls.contains(&(1, 0)), "seed {seed:#x}: {pulls:?}");
        } else {
            assert!(
                pulls.iter().all(|p| *p == (0, 0)),
                "seed {seed:#x}: without slaveReadEnable: {pulls:?}"
            );
        }
    }
    // Offsets still go to the masters.
    let committed = consumer.commit().unwrap();
    assert_eq!(committed.len(), 2);
    assert!(committed.iter().all(|(_, id)| *id == 0), "{committed:?}");
    assert_eq!(
        master
            .broker()
            .query_offset("CG", &MessageQueue::new(TOPIC, 0)),
        Some(sent["broker-a"].len() as u64)
    );
    drop(consumer);
    drop(producer);
    slave.shutdown().unwrap();
    master.shutdown().unwrap();
    plain.shutdown().unwrap();
    cl.shutdown();
}

#[test]
fn a_slave_never_answers_a_pull_past_its_flushed_offset() {
    let seed = 0x14_5003;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let cl = Cluster::start();
    let ns = cl.ns;
    let master = cl.node("a0", "broker-a", BrokerRole::AsyncMaster, None);
    let mut scfg = cl.config("a1", "broker-a", BrokerRole::Slave, Some(&master));
    // The slave flushes only in thorough rounds, every 1.5 s: in between
    // it has written bytes it has not flushed.
    scfg.store.flush.kind = FlushKind::Async;
    scfg.store.flush.flush_interval_ms = 100;
    scfg.store.flush.flush_least_pages = 1 << 20;
    scfg.store.flush.flush_thorough_interval_ms = 1_500;
    let slave = Node::start(scfg).unwrap();
    cl.create_topic(&master, 2);
    cl.wait_route(&[("broker-a", &[0, 1])], seed);
    let producer = RoutedProducer::new(ns, TOPIC, cfg("PG"));
    let tcp = TcpBroker::new(slave.addr(), "PG", cl.dir.path().join("c"));
    let mut next = [0u64; 2];
    let mut served = 0;
    let mut saw_unflushed = false;
    let t = Instant::now();
    let mut i = 0;
    // Sends trickle in for 4 s while the slave is pulled over the wire.
    while t.elapsed() < Duration::from_secs(4) {
        let mut body = format!("m{i:05}-").into_bytes();
        body.resize(rng.random_range(100..3_000), b'.');
        assert!(producer.send(&Message::new(TOPIC, body)).unwrap().is_ok());
        i += 1;
        for (q, next) in next.iter_mut().enumerate() {
            let req = testkit::plain_pull(TOPIC, q as u32, *next, 32);
            let (r, suggested) = tcp.pull_suggesting(&req, "CG", None).unwrap();
            // Flushed only grows: read after the answer, it bounds what
            // the slave had flushed when it answered.
            let o = slave.store().offsets();
            saw_unflushed |= o.written > o.flushed;
            assert_eq!(suggested, 0, "seed {seed:#x}: without slaveReadEnable");
            assert_ne!(r.status, PullStatus::OffsetIllegal, "seed {seed:#x}");
            for m in &r.msgs {
                assert!(
                    m.next_phys_offset() <= o.flushed,
                    "seed {seed:#x}: served {}..{} past the flushed offset {}",
                    m.phys_offset,
                    m.next_phys_offset(),
                    o.flushed
                );
            }
            served += r.msgs.len();
            *next = r.next_offset;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(
        saw_unflushed,
        "seed {seed:#x}: the slave never lagged its flush"
    );
    // Once the slave flushes, it serves everything.
    wait_for("the slave's flush", seed, 20, || caught_up(&master, &slave));
    for (q, next) in next.iter_mut().enumerate() {
        loop {
            let req = testkit::plain_pull(TOPIC, q as u32, *next, 32);
            let (r, _) = tcp.pull_suggesting(&req, "CG", None).unwrap();
            if r.msgs.is_empty() {
                break;
            }
            served += r.msgs.len();
            *next = r.next_offset;
        }
    }
    assert_eq!(
        served, i,
        "seed {seed:#x}: every message served once flushed"
    );
    drop(producer);
    slave.shutdown().unwrap();
    master.shutdown().unwrap();
    cl.shutdown();
}

#[test]
fn a_crashed_master_still_routed_is_isolated_by_the_producer() {
    let seed = 0x14_5004;
    let cl = Cluster::start();
    let ns = cl.ns;
    let a = cl.node("a0", "broker-a", BrokerRole::AsyncMaster, None);
    let b = cl.node("b0", "broker-b", BrokerRole::AsyncMaster, None);
    cl.create_topic(&a, 4);
    cl.create_topic(&b, 4);
    cl.wait_route(&[("broker-a", &[0]), ("broker-b", &[0])], seed);
    let plain = RoutedProducer::new(ns, TOPIC, cfg("PG"));
    let isolating = RoutedProducer::new(
        ns,
        TOPIC,
        RoutedConfig {
            isolate_failed_group: Some(Duration::from_secs(60)),
            ..cfg("PG")
        },
    );
    for p in [&plain, &isolating] {
        let s = p.send(&Message::new(TOPIC, b"warm".to_vec())).unwrap();
        assert!(s.is_ok(), "seed {seed:#x}: {s:?}");
    }
    // A crash: no unregistration, the name server keeps routing A's
    // master until it expires it (120 s).
    drop(a);
    let mut retried = [0usize; 2];
    for (k, p) in [&plain, &isolating].into_iter().enumerate() {
        for i in 0..40 {
            let s = p
                .send(&Message::new(TOPIC, format!("m{i}").into_bytes()))
                .unwrap();
            assert!(s.is_ok(), "seed {seed:#x}: send {i}: {s:?}");
            assert_eq!(s.broker_name, "broker-b", "seed {seed:#x}");
            retried[k] += usize::from(s.attempts > 1);
        }
    }
    assert!(
        lookup_route(ns, TOPIC, Duration::from_secs(1))
            .unwrap()
            .unwrap()
            .broker_datas
            .iter()
            .any(|g| g.broker_name == "broker-a"),
        "seed {seed:#x}: A still routed"
    );
    // Without isolation every send that picks A fails over; with it, one.
    assert!(retried[0] >= 10, "seed {seed:#x}: {retried:?}");
    assert!(retried[1] <= 1, "seed {seed:#x}: {retried:?}");
    drop(plain);
    drop(isolating);
    b.shutdown().unwrap();
    cl.shutdown();
}
