//! The controller's Raft (issue 14 part 2): one controller elects itself
//! and serves registrations; three controllers agree on one leader, apply
//! the same commands, and still elect a leader and a broker master when
//! one controller (the leader) is stopped. Loopback only, ports chosen by
//! the system, bounded waits.

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use mqlab_broker::controller::{
    codes, BrokerIdentity, Controller, ControllerClient, ControllerConfig, Heartbeat, ReplicaView,
    SyncStateSetBody,
};
use mqlab_broker::testkit;

/// [`testkit::wait_every`] polling every 20 ms, without a seed.
fn wait_for(what: &str, secs: u64, done: impl FnMut() -> bool) {
    testkit::wait_every(Duration::from_millis(20), None, what, secs, done)
}

/// Puts brokers 1 and 2 of "broker-q" in the in-sync set, master 1 at
/// epoch 1, over the set `v` names.
fn sync_both(client: &ControllerClient, v: &ReplicaView) -> ReplicaView {
    client
        .alter_sync_state_set(
            "broker-q",
            1,
            1,
            SyncStateSetBody {
                sync_state_set: [1, 2].into(),
                sync_state_set_epoch: v.sync_state_set_epoch,
            },
        )
        .unwrap()
}

fn me(id: u64) -> BrokerIdentity {
    BrokerIdentity {
        cluster: "C".into(),
        group: "broker-q".into(),
        id,
        addr: format!("127.0.0.1:{}", 30_000 + id).parse().unwrap(),
        ha_addr: format!("127.0.0.1:{}", 31_000 + id).parse().unwrap(),
    }
}

fn heartbeat(id: u64, max_offset: u64) -> Heartbeat {
    Heartbeat {
        cluster: "C".into(),
        group: "broker-q".into(),
        id,
        addr: me(id).addr.to_string(),
        epoch: 1,
        max_offset,
        timeout_ms: 0,
    }
}

#[test]
fn one_controller_registers_and_elects() {
    let c = testkit::controllers(1, 600);
    wait_for("a leader", 5, || c[0].is_leader());
    let client = ControllerClient::new(vec![c[0].local_addr()]);
    let v = client.register(&me(1)).unwrap();
    assert_eq!(v.master.as_ref().map(|m| m.0), Some(1));
    assert_eq!(v.master_epoch, 1);
    let v = client.register(&me(2)).unwrap();
    assert_eq!(
        v.master.as_ref().map(|m| m.0),
        Some(1),
        "the first stays master"
    );
    // Broker 2 is in sync.
    let v = sync_both(&client, &v);
    assert_eq!(v.sync_state_set, [1, 2].into());
    // Only broker 2 heartbeats: broker 1 dies after its timeout.
    let t = Instant::now();
    wait_for("broker 2 elected", 10, || {
        client.heartbeat(&heartbeat(2, 77));
        client.replica_info("broker-q").unwrap().master_epoch == 2
    });
    assert!(t.elapsed() >= Duration::from_millis(400));
    let v = client.replica_info("broker-q").unwrap();
    assert_eq!(v.master.unwrap().0, 2);
    assert_eq!(v.sync_state_set, [2].into());
    // Unknown group, wrong code.
    let e = client.replica_info("nobody").unwrap_err();
    assert!(
        e.contains(&codes::CONTROLLER_BROKER_METADATA_NOT_EXIST.to_string()),
        "{e}"
    );
    for c in c {
        c.shutdown();
    }
}

#[test]
fn three_controllers_survive_losing_the_leader() {
    let mut cs = testkit::controllers(3, 800);
    wait_for("one leader", 10, || {
        cs.iter().filter(|c| c.is_leader()).count() == 1
    });
    let addrs: Vec<SocketAddr> = cs.iter().map(|c| c.local_addr()).collect();
    let client = ControllerClient::new(addrs.clone());
    assert_eq!(client.register(&me(1)).unwrap().master.unwrap().0, 1);
    let v = client.register(&me(2)).unwrap();
    sync_both(&client, &v);
    // Every controller applies the same state.
    wait_for("the state everywhere", 5, || {
        let s = cs[0].state();
        s.group("broker-q")
            .is_some_and(|g| g.sync_state_set.len() == 2)
            && cs.iter().all(|c| c.state() == s)
    });
    // A follower refuses leader-only requests and names the leader.
    let follower = cs.iter().find(|c| !c.is_leader()).unwrap().local_addr();
    let r = mqlab_broker::remoting::call(
        follower,
        &mqlab_protocol::RemotingCommand::request(codes::CONTROLLER_GET_REPLICA_INFO, 9)
            .with_field("brokerName", "broker-q"),
        Duration::from_secs(2),
    )
    .unwrap();
    assert_eq!(r.code, codes::CONTROLLER_NOT_LEADER);
    assert!(r.ext_fields.contains_key("leaderAddress"));

    // Stop the leader; the other two elect a new one.
    let old = cs.iter().position(|c| c.is_leader()).unwrap();
    let old_id = cs[old].id();
    cs.remove(old).shutdown();
    wait_for("a new leader", 10, || {
        cs.iter().any(|c| c.is_leader() && c.id() != old_id)
    });
    // Broker 1 (the master) stops heartbeating; broker 2 does: elected.
    wait_for("broker 2 elected by the remaining two", 15, || {
        client.heartbeat(&heartbeat(2, 5));
        client
            .replica_info("broker-q")
            .is_ok_and(|v| v.master.is_some_and(|m| m.0 == 2) && v.master_epoch == 2)
    });
    // And a new broker still registers (a quorum of two commits).
    client.register(&me(3)).unwrap();
    wait_for("both apply it", 5, || {
        cs.iter()
            .all(|c| c.group("broker-q").is_some_and(|g| g.replicas.len() == 3))
    });
    for c in cs {
        c.shutdown();
    }
}

#[test]
fn a_controller_with_a_data_dir_remembers_its_groups() {
    let dir = tempfile::tempdir().unwrap();
    let start = || {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let at = l.local_addr().unwrap();
        Controller::start_on(
            l,
            ControllerConfig {
                data_dir: Some(dir.path().join("controller")),
                ..ControllerConfig::single(at)
            },
        )
        .unwrap()
    };
    let c = start();
    wait_for("a leader", 5, || c.is_leader());
    let client = ControllerClient::new(vec![c.local_addr()]);
    client.register(&me(1)).unwrap();
    let v = client.register(&me(2)).unwrap();
    sync_both(&client, &v);
    let before = c.state();
    c.shutdown();
    let c = start();
    wait_for("a leader again", 10, || c.is_leader());
    wait_for("the groups replayed", 5, || c.state() == before);
    let client = ControllerClient::new(vec![c.local_addr()]);
    // A late registrant does not take over a group that had a master.
    let v = client.register(&me(3)).unwrap();
    assert_eq!(v.master.unwrap().0, 1);
    assert_eq!(v.sync_state_set, [1, 2].into());
    c.shutdown();
}
