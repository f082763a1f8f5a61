//! Failover with the controller (issue 14 part 2), on loopback in one
//! process (ports chosen by the system, short heartbeat timeouts, bounded
//! waits): a SYNC_MASTER and its slave in controller mode; the master is
//! killed (its Node dropped: no clean shutdown), the controller elects
//! the slave within seconds at a higher epoch, the new master accepts
//! sends and has every message the old one acknowledged, the name
//! server's route lists it as broker 0; the old master restarted on its
//! directory rejoins as a slave. With three controllers the leader is
//! stopped too and the failover still happens. A demoted master that
//! wrote what nobody else has truncates it when it rejoins. Random
//! choices are seeded and every failure names its seed.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mqlab_broker::controller::Controller;
use mqlab_broker::ha::replicas::ControllerMode;
use mqlab_broker::ha::{BrokerRole, HaConfig};
use mqlab_broker::node::{Node, NodeConfig};
use mqlab_broker::remoting::RemotingServer;
use mqlab_broker::testkit;
use mqlab_engine::{FlushKind, Store};
use mqlab_protocol::codes::response;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const GROUP: &str = "broker-f";
const TOPIC: &str = "FailoverTopic";
/// The controller counts a broker dead after this much silence.
const HEARTBEAT_TIMEOUT_MS: u64 = 2_500;

/// [`testkit::wait_for`], polling every 20 ms.
fn wait_for(what: &str, seed: u64, secs: u64, done: impl FnMut() -> bool) {
    testkit::wait_every(Duration::from_millis(20), Some(seed), what, secs, done)
}

/// One test's controllers (with a leader), name server and directory for
/// its nodes.
struct Cluster {
    seed: u64,
    ctl: Vec<Controller>,
    ctl_addrs: Vec<SocketAddr>,
    ns: SocketAddr,
    _ns_server: RemotingServer,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// `controllers` controllers, once one of them leads, and a name
    /// server.
    fn start(controllers: usize, seed: u64) -> Cluster {
        let ctl = testkit::controllers(controllers, HEARTBEAT_TIMEOUT_MS);
        wait_for("a controller leader", seed, 10, || {
            ctl.iter().filter(|c| c.is_leader()).count() == 1
        });
        let ns_server = testkit::namesrv();
        Cluster {
            seed,
            ctl_addrs: ctl.iter().map(|c| c.local_addr()).collect(),
            ctl,
            ns: ns_server.local_addr(),
            _ns_server: ns_server,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Broker `id` of GROUP on directory `name`: a SYNC_MASTER whose role
    /// the controllers decide, where an in-sync member that has not caught
    /// up for `not_catchup_ms` leaves the set.
    fn config(&self, name: &str, id: u64, not_catchup_ms: u64) -> NodeConfig {
        NodeConfig {
            namesrv: vec![self.ns],
            broker_id: id,
            controller: Some(ControllerMode {
                addrs: self.ctl_addrs.clone(),
                heartbeat_interval_ms: 200,
                heartbeat_timeout_ms: HEARTBEAT_TIMEOUT_MS,
            }),
            ..testkit::node_config(
                &self.dir.path().join(name),
                GROUP,
                testkit::store_config(128 * 1024, FlushKind::Group),
                HaConfig {
                    max_time_slave_not_catchup_ms: not_catchup_ms,
                    ..testkit::ha_config(BrokerRole::SyncMaster, None)
                },
            )
        }
    }

    /// Starts a node, retrying while a dropped one still holds the
    /// directory.
    fn start_node(&self, cfg: NodeConfig) -> Node {
        testkit::start_node(cfg, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("seed {:#x}: node start: {e}", self.seed))
    }

    /// Starts [`Cluster::config`]'s node.
    fn node(&self, name: &str, id: u64, not_catchup_ms: u64) -> Node {
        self.start_node(self.config(name, id, not_catchup_ms))
    }

    /// The leader's (master, master epoch, in-sync set) of GROUP.
    fn sync_set(&self) -> Option<(Option<u64>, u32, BTreeSet<u64>)> {
        let leader = self.ctl.iter().find(|c| c.is_leader())?;
        let g = leader.group(GROUP)?;
        Some((g.master, g.master_epoch, g.sync_state_set))
    }

    /// The route of TOPIC as the name server has it: GROUP's broker
    /// addresses by id.
    fn route(&self) -> Option<BTreeMap<i64, String>> {
        testkit::route(self.ns, TOPIC)?
            .broker_datas
            .into_iter()
            .find(|b| b.broker_name == GROUP)
            .map(|b| b.broker_addrs)
    }

    fn shutdown(self) {
        for c in self.ctl {
            c.shutdown();
        }
    }
}

/// Sends `n` seeded messages to `node`; returns (answer code, body) each.
fn send_n(node: &Node, n: usize, rng: &mut ChaCha8Rng, first: i32) -> Vec<(i32, Vec<u8>)> {
    let mut c = common::connect(node.addr());
    (0..n)
        .map(|i| {
            let len = rng.random_range(16..3_000);
            let body: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            let queue = rng.random_range(0..4);
            let frame = common::keyed_send(first + i as i32, TOPIC, queue, &body);
            (common::roundtrip(&mut c, &frame).code, body)
        })
        .collect()
}

/// Every stored body, with its offset.
fn records(store: &Store) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    store
        .scan(store.min_offset(), &mut |m| {
            let m = m.expect("a valid record");
            out.push((m.phys_offset, m.body.clone()));
            true
        })
        .unwrap();
    out
}

/// Both stores hold the same records at the same offsets.
fn assert_same_records(a: &Store, b: &Store, seed: u64) {
    let (ra, rb) = (records(a), records(b));
    for (x, y) in ra.iter().zip(&rb) {
        assert!(
            x == y,
            "seed {seed:#x}: records differ at {} / {} ({} / {} bytes)",
            x.0,
            y.0,
            x.1.len(),
            y.1.len()
        );
    }
    assert_eq!(
        (ra.len(), a.min_offset(), a.offsets().written),
        (rb.len(), b.min_offset(), b.offsets().written),
        "seed {seed:#x}: records, first and end offsets"
    );
}

fn bodies(store: &Store) -> HashSet<Vec<u8>> {
    common::stored_bodies(store)
}

#[test]
fn a_killed_master_fails_over_to_its_in_sync_slave() {
    let seed = 0xfa_0001;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut cl = Cluster::start(3, seed);
    let a = cl.node("a", 1, 3_000);
    assert!(
        a.role().is_master(),
        "seed {seed:#x}: the first broker is master"
    );
    assert_eq!((a.epoch(), a.route_id()), (1, 0));
    let b = cl.node("b", 2, 3_000);
    wait_for("B following A", seed, 10, || {
        b.role() == BrokerRole::Slave && b.replication().following() == a.ha_addr()
    });
    wait_for("B in the in-sync set", seed, 15, || {
        cl.sync_set()
            .is_some_and(|(m, _, s)| m == Some(1) && s == BTreeSet::from([1, 2]))
    });
    // Acknowledged by the sync master: every member of {1, 2} has them.
    let acked = send_n(&a, 300, &mut rng, 1_000);
    for (code, _) in &acked {
        assert_eq!(*code, response::SUCCESS, "seed {seed:#x}");
    }
    wait_for("A as broker 0 in the route", seed, 10, || {
        cl.route()
            .is_some_and(|r| r.get(&0) == Some(&a.addr().to_string()))
    });

    // The controller leader goes first, then the master crashes.
    let leader = cl.ctl.iter().position(|c| c.is_leader()).unwrap();
    cl.ctl.remove(leader).shutdown();
    let a_addr = a.addr();
    let killed = Instant::now();
    drop(a);
    wait_for("B elected", seed, 20, || b.role().is_master());
    let took = killed.elapsed();
    eprintln!("failover took {} ms", took.as_millis());
    assert!(took < Duration::from_secs(10), "seed {seed:#x}: {took:?}");
    assert_eq!((b.epoch(), b.route_id()), (2, 0), "seed {seed:#x}");
    let (m, epoch, set) = cl.sync_set().unwrap();
    assert_eq!((m, epoch, set), (Some(2), 2, BTreeSet::from([2])));

    // Every acknowledged message is on the new master.
    let on_b = bodies(b.store());
    let lost = acked
        .iter()
        .filter(|(_, body)| !on_b.contains(body))
        .count();
    assert_eq!(lost, 0, "seed {seed:#x}: acknowledged messages lost");
    // It takes sends (its in-sync set is itself: nobody to wait for).
    for (code, _) in send_n(&b, 50, &mut rng, 5_000) {
        assert_eq!(code, response::SUCCESS, "seed {seed:#x}");
    }
    wait_for("B as broker 0 in the route", seed, 10, || {
        cl.route().is_some_and(|r| {
            r.get(&0) == Some(&b.addr().to_string())
                && !r.values().any(|v| *v == a_addr.to_string())
        })
    });

    // The old master rejoins as a slave of B and catches up.
    let a = cl.node("a", 1, 3_000);
    wait_for("A following B", seed, 10, || {
        a.role() == BrokerRole::Slave && a.replication().following() == b.ha_addr()
    });
    assert_eq!((a.epoch(), a.route_id()), (2, 1));
    wait_for("A caught up", seed, 20, || {
        a.store().offsets().committed == b.store().offsets().committed
    });
    wait_for("A back in the in-sync set", seed, 15, || {
        cl.sync_set()
            .is_some_and(|(m, _, s)| m == Some(2) && s == BTreeSet::from([1, 2]))
    });
    for (code, _) in send_n(&b, 50, &mut rng, 9_000) {
        assert_eq!(code, response::SUCCESS, "seed {seed:#x}");
    }
    wait_for("A caught up again", seed, 20, || {
        a.store().offsets().committed == b.store().offsets().committed
    });
    assert_same_records(a.store(), b.store(), seed);
    wait_for("A as broker 1 in the route", seed, 10, || {
        cl.route().is_some_and(|r| {
            r.get(&0) == Some(&b.addr().to_string()) && r.get(&1) == Some(&a.addr().to_string())
        })
    });
    a.shutdown().unwrap();
    b.shutdown().unwrap();
    cl.shutdown();
}

#[test]
fn a_demoted_master_truncates_what_the_new_master_never_had() {
    let seed = 0xfa_0002;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let cl = Cluster::start(1, seed);
    // Members stay in the set for 20 s without catching up: B is still in
    // it when A dies.
    let a = cl.node("a", 1, 20_000);
    let b = cl.node("b", 2, 20_000);
    wait_for("B in the in-sync set", seed, 15, || {
        cl.sync_set()
            .is_some_and(|(_, _, s)| s == BTreeSet::from([1, 2]))
    });
    let acked = send_n(&a, 100, &mut rng, 1_000);
    assert!(
        acked.iter().all(|(c, _)| *c == response::SUCCESS),
        "seed {seed:#x}"
    );
    wait_for("B caught up", seed, 20, || {
        b.store().offsets().committed == a.store().offsets().committed
    });

    // B crashes; A goes on writing what B never gets: stored, but not
    // acknowledged (SLAVE_NOT_AVAILABLE: an in-sync member is missing).
    drop(b);
    wait_for("A sees B gone", seed, 10, || {
        a.ha().master().is_some_and(|m| m.slaves().is_empty())
    });
    let unacked = send_n(&a, 40, &mut rng, 3_000);
    for (code, _) in &unacked {
        assert_eq!(*code, response::SLAVE_NOT_AVAILABLE, "seed {seed:#x}");
    }
    let a_end = a.store().offsets().written;
    drop(a);

    // B comes back first: it is in the in-sync set, A is dead: elected.
    let b = cl.node("b", 2, 20_000);
    wait_for("B elected", seed, 20, || b.role().is_master());
    assert_eq!(b.epoch(), 2);
    let b_end = b.store().offsets().written;
    assert!(b_end < a_end, "seed {seed:#x}: {b_end} < {a_end}");
    let on_b = bodies(b.store());
    assert!(
        acked.iter().all(|(_, body)| on_b.contains(body)),
        "seed {seed:#x}"
    );
    assert!(
        !unacked.iter().any(|(_, body)| on_b.contains(body)),
        "seed {seed:#x}"
    );

    // A rejoins: it cuts what B never had, then follows B.
    let a = cl.node("a", 1, 20_000);
    wait_for("A following B", seed, 10, || {
        a.role() == BrokerRole::Slave && a.replication().following() == b.ha_addr()
    });
    let st = a.replication().controlled_state().unwrap().clone();
    wait_for("A's truncation", seed, 10, || st.truncations() == 1);
    assert_eq!(st.truncated_bytes(), a_end - b_end, "seed {seed:#x}");
    let more = send_n(&b, 30, &mut rng, 6_000);
    assert!(
        more.iter().all(|(c, _)| *c == response::SUCCESS),
        "seed {seed:#x}"
    );
    wait_for("A caught up", seed, 20, || {
        a.store().offsets().committed == b.store().offsets().committed
    });
    assert_same_records(a.store(), b.store(), seed);
    let on_a = bodies(a.store());
    assert!(
        !unacked.iter().any(|(_, body)| on_a.contains(body)),
        "seed {seed:#x}"
    );
    let epochs: Vec<(u32, u64)> = st
        .epochs()
        .entries()
        .iter()
        .map(|e| (e.epoch, e.start))
        .collect();
    assert_eq!(epochs, vec![(1, 0), (2, b_end)], "seed {seed:#x}");
    a.shutdown().unwrap();
    b.shutdown().unwrap();
    cl.shutdown();
}

#[test]
fn the_in_sync_set_shrinks_without_its_slave_and_grows_back() {
    let seed = 0xfa_0003;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let cl = Cluster::start(1, seed);
    // A member that has not caught up for 1.5 s leaves the set.
    let a = cl.node("a", 1, 1_500);
    let b = cl.node("b", 2, 1_500);
    wait_for("B in the in-sync set", seed, 15, || {
        cl.sync_set()
            .is_some_and(|(_, _, s)| s == BTreeSet::from([1, 2]))
    });
    let sent = send_n(&a, 20, &mut rng, 1_000);
    assert!(
        sent.iter().all(|(c, _)| *c == response::SUCCESS),
        "seed {seed:#x}"
    );
    drop(b);
    wait_for("A sees B gone", seed, 10, || {
        a.ha().master().is_some_and(|m| m.slaves().is_empty())
    });
    // B is still a member: nobody can confirm, at once.
    let t = Instant::now();
    let (code, _) = send_n(&a, 1, &mut rng, 2_000).remove(0);
    assert!(
        code == response::SLAVE_NOT_AVAILABLE || cl.sync_set().is_some_and(|s| s.2.len() == 1),
        "seed {seed:#x}: code {code}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "seed {seed:#x}: {:?}",
        t.elapsed()
    );
    // After haMaxTimeSlaveNotCatchup the set is A alone, which confirms.
    wait_for("the set to shrink", seed, 15, || {
        cl.sync_set()
            .is_some_and(|(_, _, s)| s == BTreeSet::from([1]))
    });
    wait_for("A to take the smaller set", seed, 5, || {
        send_n(&a, 1, &mut rng, 3_000)[0].0 == response::SUCCESS
    });
    // B back: it catches up and joins again; sends wait for it.
    let b = cl.node("b", 2, 1_500);
    wait_for("the set to grow", seed, 15, || {
        cl.sync_set()
            .is_some_and(|(_, _, s)| s == BTreeSet::from([1, 2]))
    });
    let more = send_n(&a, 20, &mut rng, 4_000);
    assert!(
        more.iter().all(|(c, _)| *c == response::SUCCESS),
        "seed {seed:#x}"
    );
    // (B reported them written; its scan reads to its committed offset.)
    wait_for("B's commit", seed, 10, || {
        b.store().offsets().committed >= a.store().offsets().committed
    });
    let on_b = bodies(b.store());
    assert!(
        more.iter().all(|(_, body)| on_b.contains(body)),
        "seed {seed:#x}: a confirmed send is on every member"
    );
    b.shutdown().unwrap();
    a.shutdown().unwrap();
    cl.shutdown();
}

#[test]
fn an_operator_moves_the_master_and_the_live_old_one_follows() {
    let seed = 0xfa_0004;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let cl = Cluster::start(1, seed);
    let a = cl.node("a", 1, 5_000);
    let b = cl.node("b", 2, 5_000);
    wait_for("B in the in-sync set", seed, 15, || {
        cl.sync_set()
            .is_some_and(|(_, _, s)| s == BTreeSet::from([1, 2]))
    });
    let first = send_n(&a, 50, &mut rng, 1_000);
    assert!(
        first.iter().all(|(c, _)| *c == response::SUCCESS),
        "seed {seed:#x}"
    );
    // Both alive: an undesignated election keeps the master...
    let client = mqlab_broker::controller::ControllerClient::new(cl.ctl_addrs.clone());
    let e = client.elect_master(GROUP, None).unwrap_err();
    assert!(e.contains("2011"), "seed {seed:#x}: {e}");
    // ...a designated one moves it, and both switch while running.
    let v = client.elect_master(GROUP, Some(2)).unwrap();
    assert_eq!((v.master.unwrap().0, v.master_epoch), (2, 2));
    wait_for("B master, A its slave", seed, 10, || {
        b.role().is_master()
            && a.role() == BrokerRole::Slave
            && a.replication().following() == b.ha_addr()
    });
    assert_eq!(
        (a.epoch(), b.epoch(), a.route_id(), b.route_id()),
        (2, 2, 1, 0)
    );
    // A refuses sends now; B takes them.
    let (code, _) = send_n(&a, 1, &mut rng, 2_000).remove(0);
    assert_eq!(code, response::SERVICE_NOT_AVAILABLE, "seed {seed:#x}");
    wait_for("A back in the in-sync set", seed, 15, || {
        cl.sync_set()
            .is_some_and(|(m, _, s)| m == Some(2) && s == BTreeSet::from([1, 2]))
    });
    let second = send_n(&b, 50, &mut rng, 3_000);
    assert!(
        second.iter().all(|(c, _)| *c == response::SUCCESS),
        "seed {seed:#x}"
    );
    wait_for("A caught up", seed, 20, || {
        a.store().offsets().committed == b.store().offsets().committed
    });
    assert_same_records(a.store(), b.store(), seed);
    let st = a.replication().controlled_state().unwrap().clone();
    assert_eq!(st.truncations(), 0, "seed {seed:#x}: nothing to cut");
    a.shutdown().unwrap();
    b.shutdown().unwrap();
    cl.shutdown();
}

/// A TCP relay for one HA link: slave to master as it comes, master to
/// slave `delay` late per read, and nothing at all once `frozen`.
struct SlowLink {
    addr: SocketAddr,
    frozen: Arc<std::sync::atomic::AtomicBool>,
}

impl SlowLink {
    fn start(target: Arc<std::sync::Mutex<Option<SocketAddr>>>, delay: Duration) -> SlowLink {
        use std::io::{Read, Write};
        use std::sync::atomic::{AtomicBool, Ordering};
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let frozen = Arc::new(AtomicBool::new(false));
        let fz = frozen.clone();
        std::thread::spawn(move || {
            // A few connections at most in a test (bounded).
            for down in l.incoming().take(16) {
                let Ok(mut down) = down else { return };
                let Some(to) = *target.lock().unwrap() else {
                    continue;
                };
                let Ok(mut up) = std::net::TcpStream::connect(to) else {
                    continue;
                };
                let (mut down_r, mut up_w) = (down.try_clone().unwrap(), up.try_clone().unwrap());
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n @ 1..) = down_r.read(&mut buf) {
                        if up_w.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = up_w.shutdown(std::net::Shutdown::Both);
                });
                let fz = fz.clone();
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n @ 1..) = up.read(&mut buf) {
                        std::thread::sleep(delay);
                        while fz.load(Ordering::Acquire) {
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        if down.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = down.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        SlowLink { addr, frozen }
    }

    fn freeze(&self) {
        self.frozen
            .store(true, std::sync::atomic::Ordering::Release);
    }
}

/// Regression (issue 14: one SYNC_MASTER kill in results/ha/failover lost
/// 250 acknowledged messages). A master that acknowledges alone (its
/// in-sync set is itself) added a slave to the set once the slave had
/// "caught up" as of its previous report: what the master acknowledged
/// between that report and the controller's answer was on the master
/// only, yet the slave could now be elected. Here the slave's HA link is
/// 30 ms slow while a producer sends every 5 ms; the moment the
/// controller has the slave in the set the link freezes. Everything
/// acknowledged must already be on the slave.
#[test]
fn a_slave_joins_the_in_sync_set_holding_every_acknowledged_message() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let seed = 0xfa_0005;
    let cl = Cluster::start(1, seed);
    // A announces the slow link as its HA address.
    let target = Arc::new(std::sync::Mutex::new(None));
    let link = SlowLink::start(target.clone(), Duration::from_millis(30));
    let mut ca = cl.config("a", 1, 15_000);
    ca.ha.announce = Some(link.addr);
    let a = cl.start_node(ca);
    wait_for("A master", seed, 10, || a.role().is_master());
    *target.lock().unwrap() = Some(a.replication().bound_ha_addr().unwrap());
    // The producer, paced so the slave sometimes has all but the newest
    // few: it then counts as caught up and can join.
    let stop = Arc::new(AtomicBool::new(false));
    let producer = common::spawn_producer(a.addr(), TOPIC, seed, 0, 5, stop.clone());
    std::thread::sleep(Duration::from_millis(300));
    let b = cl.node("b", 2, 15_000);
    let t = Instant::now();
    while cl
        .sync_set()
        .is_none_or(|(_, _, s)| s != BTreeSet::from([1, 2]))
    {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "seed {seed:#x}: B never joined the in-sync set"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    link.freeze();
    stop.store(true, Ordering::Release);
    let acked = producer.join().unwrap();
    assert!(
        acked.len() > 20,
        "seed {seed:#x}: only {} sends acknowledged",
        acked.len()
    );
    wait_for("B's commit", seed, 10, || {
        let o = b.store().offsets();
        o.committed >= o.written
    });
    let on_b = bodies(b.store());
    let missing = acked.iter().filter(|m| !on_b.contains(*m)).count();
    assert_eq!(
        missing,
        0,
        "seed {seed:#x}: {missing} of {} acknowledged messages are not on B, a member of the in-sync set",
        acked.len()
    );
    drop(b);
    drop(a);
    cl.shutdown();
}
