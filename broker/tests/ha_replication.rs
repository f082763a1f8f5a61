//! Master/slave replication over RocketMQ's classic HA protocol (issue
//! 14), two nodes in one process on loopback (ports chosen by the
//! system): what is sent to the master reaches the slave byte for byte
//! and can be pulled there; a slave that crashed catches up from its own
//! recovered end; a SYNC_MASTER answers a send only once a slave has it
//! (SLAVE_NOT_AVAILABLE without one, FLUSH_SLAVE_TIMEOUT with a silent
//! one); a slave refuses sends and serves nothing past its flushed offset;
//! the routes list master and slave; hostile bytes on the HA port do not
//! hurt the master. Random choices are seeded and every failure names its
//! seed.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mqlab_broker::ha::{wire, BrokerRole};
use mqlab_broker::node::{Node, NodeConfig};
use mqlab_broker::testkit::{self, wait_for};
use mqlab_broker::PullStatus;
use mqlab_engine::{FlushKind, Store};
use mqlab_protocol::codes::response;
use mqlab_protocol::headers::SendMessageResponse;
use mqlab_protocol::RemotingCommand;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const TOPICS: [&str; 2] = ["HaTopicA", "HaTopicB"];

/// A node of "broker-ha" as `role`, a slave following `master`.
fn node_config(dir: &Path, role: BrokerRole, master: Option<SocketAddr>) -> NodeConfig {
    testkit::node_config(
        dir,
        "broker-ha",
        // Several segments in a test: blanks and rolls are replicated too.
        testkit::store_config(128 * 1024, FlushKind::Group),
        testkit::ha_config(role, master),
    )
}

fn master(dir: &Path, role: BrokerRole) -> Node {
    Node::start(node_config(&dir.join("master"), role, None)).unwrap()
}

fn slave(dir: &Path, master: &Node) -> Node {
    Node::start(node_config(
        &dir.join("slave"),
        BrokerRole::Slave,
        master.ha_addr(),
    ))
    .unwrap()
}

/// Physical offset of a sent message, from its offset message id.
fn phys_of(r: &RemotingCommand) -> u64 {
    let h = SendMessageResponse::from_fields(&r.ext_fields).unwrap();
    u64::from_str_radix(&h.msg_id[h.msg_id.len() - 16..], 16).unwrap()
}

/// Sends `n` seeded messages to `node` over one connection; returns the
/// answers.
fn send_n(node: &Node, n: usize, rng: &mut ChaCha8Rng, first: i32) -> Vec<RemotingCommand> {
    let mut c = common::connect(node.addr());
    (0..n)
        .map(|i| {
            let topic = TOPICS[rng.random_range(0..TOPICS.len())];
            let queue = rng.random_range(0..4);
            let len = match rng.random_range(0..10) {
                0 => rng.random_range(8_000..30_000),
                _ => rng.random_range(1..2_000),
            };
            let body: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            common::roundtrip(
                &mut c,
                &common::keyed_send(first + i as i32, topic, queue, &body),
            )
        })
        .collect()
}

/// Every record of a store, as stored, with its offset.
fn records(store: &Store) -> Vec<(u64, Vec<u8>)> {
    let mut at = Vec::new();
    store
        .scan(store.min_offset(), &mut |m| {
            at.push(m.expect("a valid record").phys_offset);
            true
        })
        .unwrap();
    at.into_iter()
        .map(|p| (p, store.record_bytes(p).unwrap()))
        .collect()
}

/// The slave's records are the master's from the slave's first offset on
/// (a slave started late begins at the master's last segment then).
fn assert_same_records(master: &Store, slave: &Store, seed: u64) {
    let from = slave.min_offset();
    let mut a = records(master);
    a.retain(|(p, _)| *p >= from);
    let b = records(slave);
    assert_eq!(a.len(), b.len(), "seed {seed:#x}: record counts");
    for (x, y) in a.iter().zip(&b) {
        assert!(x == y, "seed {seed:#x}: record at {} differs", x.0);
    }
}

fn caught_up(master: &Node, slave: &Node) -> bool {
    // Committed: under group flush a slave's appended bytes are staged first,
    // and scans read to the committed offset.
    slave.store().offsets().committed == master.store().offsets().committed
}

fn pull_all(node: &Node, topic: &str, queue: u32) -> Vec<Vec<u8>> {
    let r = node
        .broker()
        .pull(&testkit::plain_pull(topic, queue, 0, 10_000), None)
        .unwrap();
    r.msgs.into_iter().map(|m| m.body).collect()
}

#[test]
fn sends_to_the_master_reach_the_slave_byte_for_byte() {
    let seed = 0x4a_0001;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let m = Node::start(NodeConfig {
        embedded_namesrv: Some("127.0.0.1:0".parse().unwrap()),
        ..node_config(&dir.path().join("master"), BrokerRole::AsyncMaster, None)
    })
    .unwrap();
    let ns = m.embedded_namesrv().unwrap();
    let s = Node::start(NodeConfig {
        namesrv: vec![ns],
        ..node_config(&dir.path().join("slave"), BrokerRole::Slave, m.ha_addr())
    })
    .unwrap();
    assert_eq!(s.config().broker_id, 1);
    // Connected before the first send: the slave gets everything.
    wait_for("the master's first transfer", seed, 20, || {
        s.ha().slave().unwrap().transfers() > 0
    });
    let during = send_n(&m, 400, &mut rng, 1000);
    assert!(during.iter().all(|r| r.code == response::SUCCESS));
    assert!(
        m.store().offsets().written > 3 * 128 * 1024,
        "several segments"
    );
    wait_for("the slave to catch up", seed, 30, || caught_up(&m, &s));
    assert_eq!(s.store().min_offset(), 0);
    assert_same_records(m.store(), s.store(), seed);
    // Pullable on the slave, the same as on the master.
    wait_for("the slave to dispatch", seed, 30, || {
        s.store().dispatched_offset() == s.store().offsets().written
    });
    for t in TOPICS {
        for q in 0..4 {
            assert_eq!(
                pull_all(&m, t, q),
                pull_all(&s, t, q),
                "seed {seed:#x}: {t}:{q}"
            );
        }
    }
    // A slave refuses sends, as RocketMQ's slave store does.
    let r = common::roundtrip(
        &mut common::connect(s.addr()),
        &common::keyed_send(7, TOPICS[0], 0, b"to the slave"),
    );
    assert_eq!(r.code, response::SERVICE_NOT_AVAILABLE, "{:?}", r.remark);
    assert!(r.remark.unwrap_or_default().contains("slave"));
    // The route lists the master as 0 and the slave as 1.
    wait_for("the slave's registration", seed, 20, || {
        testkit::route(ns, TOPICS[0]).is_some_and(|route| {
            route.broker_datas.iter().any(|b| {
                b.broker_name == "broker-ha"
                    && b.broker_addrs.get(&0) == Some(&m.addr().to_string())
                    && b.broker_addrs.get(&1) == Some(&s.addr().to_string())
            })
        })
    });
    let (dm, ds) = (dir.path().join("master"), dir.path().join("slave"));
    s.shutdown().unwrap();
    m.shutdown().unwrap();
    // The commit logs are the same files, byte for byte.
    let files = |d: &Path| {
        let mut v: Vec<_> = std::fs::read_dir(d.join("commitlog"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v.into_iter()
            .map(|p| {
                (
                    p.file_name().unwrap().to_owned(),
                    std::fs::read(&p).unwrap(),
                )
            })
            .collect::<Vec<_>>()
    };
    let (fm, fs) = (files(&dm), files(&ds));
    assert_eq!(fm.len(), fs.len(), "seed {seed:#x}: segment count");
    for (a, b) in fm.iter().zip(&fs) {
        assert!(a == b, "seed {seed:#x}: segment {:?} differs", a.0);
    }
}

#[test]
fn a_new_slave_starts_at_the_masters_last_segment() {
    let seed = 0x4a_0007;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let m = master(dir.path(), BrokerRole::AsyncMaster);
    send_n(&m, 300, &mut rng, 1);
    let end = m.store().offsets().committed;
    let seg = m.store().segment_bytes();
    assert!(end > 2 * seg, "seed {seed:#x}: several segments");
    let s = slave(dir.path(), &m);
    wait_for("the slave to catch up", seed, 30, || caught_up(&m, &s));
    // RocketMQ's rule: a slave reporting 0 starts at the master's last
    // segment (nothing was sent meanwhile).
    assert_eq!(s.store().min_offset(), end - end % seg, "seed {seed:#x}");
    assert_same_records(m.store(), s.store(), seed);
    // Its queues start where its records do, and pull the master's.
    wait_for("the slave to dispatch", seed, 30, || {
        s.store().dispatched_offset() == s.store().offsets().written
    });
    let mut some = 0;
    for t in TOPICS {
        for q in 0..4 {
            let Some(info) = s.store().queue_info(t, q) else {
                continue;
            };
            let req = testkit::plain_pull(t, q, info.min_offset, 10_000);
            let theirs = m.broker().pull(&req, None).unwrap();
            let mine = s.broker().pull(&req, None).unwrap();
            assert_eq!(mine.msgs, theirs.msgs, "seed {seed:#x}: {t}:{q}");
            some += mine.msgs.len();
        }
    }
    assert!(some > 0);
    s.shutdown().unwrap();
    m.shutdown().unwrap();
}

#[test]
fn a_crashed_slave_catches_up_from_its_recovered_end() {
    let seed = 0x4a_0002;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let m = master(dir.path(), BrokerRole::AsyncMaster);
    let s = slave(dir.path(), &m);
    send_n(&m, 100, &mut rng, 1);
    wait_for("the slave to catch up", seed, 30, || caught_up(&m, &s));
    // Crash: dropped without shutdown; the master goes on taking sends.
    drop(s);
    let during = send_n(&m, 200, &mut rng, 1000);
    assert!(during.iter().all(|r| r.code == response::SUCCESS));
    let s = slave(dir.path(), &m);
    assert!(
        s.store().recovery_report().abnormal,
        "the restart recovers as after a crash"
    );
    send_n(&m, 50, &mut rng, 5000);
    wait_for("the restarted slave to catch up", seed, 30, || {
        caught_up(&m, &s)
    });
    assert_same_records(m.store(), s.store(), seed);
    s.shutdown().unwrap();
    m.shutdown().unwrap();
}

#[test]
fn a_sync_master_answers_once_a_slave_has_the_message() {
    let seed = 0x4a_0003;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let m = master(dir.path(), BrokerRole::SyncMaster);
    // No slave: SLAVE_NOT_AVAILABLE, the message still written.
    let before = m.store().offsets().written;
    let r = send_n(&m, 1, &mut rng, 1).remove(0);
    assert_eq!(r.code, response::SLAVE_NOT_AVAILABLE, "{:?}", r.remark);
    assert!(m.store().offsets().written > before);
    let s = slave(dir.path(), &m);
    wait_for("the slave to report", seed, 20, || {
        m.ha()
            .master()
            .unwrap()
            .slaves()
            .iter()
            .any(|x| x.acked.is_some())
    });
    // Every answer arrives after the slave has the message: a thread
    // records the slave's end as often as it can; the answer's record end
    // must be at or below what the slave had when the answer arrived.
    let mut c = common::connect(m.addr());
    for i in 0..200 {
        let body: Vec<u8> = (0..rng.random_range(1..3000))
            .map(|_| rng.random())
            .collect();
        let r = common::roundtrip(
            &mut c,
            &common::keyed_send(100 + i as i32, TOPICS[i % 2], 0, &body),
        );
        let slave_end = s.store().offsets().written;
        let reported = m.ha().master().unwrap().slave_acked();
        assert_eq!(
            r.code,
            response::SUCCESS,
            "seed {seed:#x}: send {i}: {:?}",
            r.remark
        );
        let phys = phys_of(&r);
        let end = phys + m.store().get(phys).unwrap().total_size as u64;
        assert!(
            slave_end >= end && reported >= end,
            "seed {seed:#x}: send {i} answered with the slave at {slave_end} (reported {reported}), before its end {end}"
        );
    }
    // Many in flight on one connection: each answered once, all replicated.
    let mut c = common::connect(m.addr());
    let n = 300;
    for i in 0..n {
        c.write_all(&common::keyed_send(10_000 + i, TOPICS[0], 1, b"in flight"))
            .unwrap();
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    while seen.len() < n as usize {
        while let Some((cmd, used)) =
            mqlab_protocol::decode_frame(&buf, &mqlab_protocol::Limits::default()).unwrap()
        {
            buf.drain(..used);
            assert_eq!(
                cmd.code,
                response::SUCCESS,
                "seed {seed:#x}: {:?}",
                cmd.remark
            );
            assert!(seen.insert(cmd.opaque), "answered twice");
        }
        if seen.len() == n as usize {
            break;
        }
        let k = c.read(&mut chunk).unwrap();
        assert!(k > 0);
        buf.extend_from_slice(&chunk[..k]);
    }
    assert!(s.store().offsets().written >= m.store().offsets().acked);
    s.shutdown().unwrap();
    m.shutdown().unwrap();
}

/// A fake slave: connects to the HA port and reports `offset` once.
fn fake_slave(ha: SocketAddr, offset: u64) -> TcpStream {
    let mut c = TcpStream::connect(ha).unwrap();
    c.write_all(&wire::encode_report(offset)).unwrap();
    c
}

#[test]
fn a_sync_master_times_out_and_refuses_slaves_too_far_behind() {
    let seed = 0x4a_0004;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = node_config(&dir.path().join("master"), BrokerRole::SyncMaster, None);
    cfg.ha.slave_timeout_ms = 300;
    cfg.ha.slave_fallbehind_max = 64 * 1024;
    let m = Node::start(cfg).unwrap();
    let ha = m.ha_addr().unwrap();
    // Some data, then a slave that reports where the master is and never
    // again: FLUSH_SLAVE_TIMEOUT after the slave timeout, message written.
    assert_eq!(
        send_n(&m, 1, &mut rng, 1)[0].code,
        response::SLAVE_NOT_AVAILABLE
    );
    let end = m.store().offsets().committed;
    let silent = fake_slave(ha, end);
    wait_for("the fake slave's report", seed, 10, || {
        m.ha()
            .master()
            .unwrap()
            .slaves()
            .iter()
            .any(|x| x.acked == Some(end))
    });
    let t = Instant::now();
    let r = send_n(&m, 1, &mut rng, 2).remove(0);
    assert_eq!(r.code, response::FLUSH_SLAVE_TIMEOUT, "{:?}", r.remark);
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );
    assert!(
        m.store().get(phys_of(&r)).is_ok(),
        "the message stays written"
    );
    assert_eq!(m.ha().master().unwrap().waiting(), 0);
    drop(silent);
    // A slave further behind than haSlaveFallbehindMax cannot confirm.
    wait_for("the silent slave to go", seed, 10, || {
        m.ha().master().unwrap().slaves().is_empty()
    });
    send_n(&m, 60, &mut rng, 100);
    let _far = fake_slave(ha, 0);
    wait_for("the far slave's report", seed, 10, || {
        m.ha()
            .master()
            .unwrap()
            .slaves()
            .iter()
            .any(|x| x.acked == Some(0))
    });
    let r = send_n(&m, 1, &mut rng, 1000).remove(0);
    assert_eq!(r.code, response::SLAVE_NOT_AVAILABLE, "{:?}", r.remark);
    m.shutdown().unwrap();
}

#[test]
fn a_slave_never_serves_past_its_flushed_offset() {
    let seed = 0x4a_0005;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let m = master(dir.path(), BrokerRole::AsyncMaster);
    let mut cfg = node_config(&dir.path().join("slave"), BrokerRole::Slave, m.ha_addr());
    // A flusher that does not run during the test.
    cfg.store.flush.kind = FlushKind::Async;
    cfg.store.flush.flush_interval_ms = 600_000;
    cfg.store.flush.flush_thorough_interval_ms = 600_000;
    cfg.store.flush.flush_least_pages = 1 << 20;
    let s = Node::start(cfg).unwrap();
    send_n(&m, 50, &mut rng, 1);
    wait_for("the slave to catch up", seed, 30, || caught_up(&m, &s));
    std::thread::sleep(Duration::from_millis(100));
    let o = s.store().offsets();
    assert!(o.flushed < o.written, "seed {seed:#x}: {o:?}");
    assert!(s.store().dispatched_offset() <= o.flushed);
    for t in TOPICS {
        for q in 0..4 {
            let r = s
                .broker()
                .pull(&testkit::plain_pull(t, q, 0, 100), None)
                .unwrap();
            assert!(
                r.msgs.iter().all(|m| m.next_phys_offset() <= o.flushed),
                "seed {seed:#x}: {t}:{q} served past the flushed offset {}",
                o.flushed
            );
            assert_ne!(r.status, PullStatus::OffsetIllegal);
        }
    }
    s.shutdown().unwrap();
    m.shutdown().unwrap();
}

#[test]
fn hostile_bytes_on_the_ha_port_never_hurt_the_master() {
    static PANICS: AtomicUsize = AtomicUsize::new(0);
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current()
            .name()
            .is_some_and(|n| n.starts_with("mqlab-ha"))
        {
            PANICS.fetch_add(1, Ordering::SeqCst);
        }
        default(info);
    }));
    let seed = 0x4a_0006;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let m = master(dir.path(), BrokerRole::AsyncMaster);
    send_n(&m, 20, &mut rng, 1);
    let ha = m.ha_addr().unwrap();
    let end = m.store().offsets().committed;
    for round in 0..60 {
        let mut c = TcpStream::connect(ha).unwrap();
        c.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let bytes: Vec<u8> = match round % 6 {
            // Random bytes of random length.
            0 => (0..rng.random_range(1..200))
                .map(|_| rng.random())
                .collect(),
            // A negative offset.
            1 => (-rng.random_range(1..i64::MAX)).to_be_bytes().to_vec(),
            // Past the master's end.
            2 => wire::encode_report(end + rng.random_range(1..1 << 40)).to_vec(),
            // A good report, then one going back.
            3 => [wire::encode_report(end), wire::encode_report(end / 2)].concat(),
            // A report cut short.
            4 => wire::encode_report(end)[..rng.random_range(1..8)].to_vec(),
            // A report of a point inside a record.
            _ => wire::encode_report(rng.random_range(1..end.max(2))).to_vec(),
        };
        let _ = c.write_all(&bytes);
        let mut sink = [0u8; 4096];
        let _ = c.read(&mut sink);
    }
    // More connections at once than the master serves.
    let many: Vec<TcpStream> = (0..20).map(|_| TcpStream::connect(ha).unwrap()).collect();
    drop(many);
    // The master still works and still replicates.
    let s = slave(dir.path(), &m);
    let r = send_n(&m, 30, &mut rng, 100);
    assert!(r.iter().all(|r| r.code == response::SUCCESS));
    wait_for("the slave to catch up", seed, 30, || caught_up(&m, &s));
    assert_same_records(m.store(), s.store(), seed);
    assert_eq!(
        PANICS.load(Ordering::SeqCst),
        0,
        "seed {seed:#x}: an HA thread panicked"
    );
    s.shutdown().unwrap();
    m.shutdown().unwrap();
}
