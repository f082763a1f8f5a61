//! Disk faults through the broker (issue 16): a store whose disk fails an
//! fdatasync (EIO) or runs out of space (ENOSPC) while clients send over
//! TCP. Every send is answered; none answered SUCCESS is lost on the
//! disk that failed (a power loss right after, then recovery on a healthy
//! disk); the send that met the fault and every later one get an error
//! naming it, and the broker takes nothing more until it is restarted
//! (a failed fsync is never retried). The simulated disk (`io::sim`) takes
//! the faults; everything else is the real broker and server on loopback.
//! Seeded: a failure names its seed.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use mqlab_broker::remoting::{BrokerHandler, RemotingServer, ServerConfig};
use mqlab_broker::{Broker, BrokerConfig};
use mqlab_engine::io::sim::{FaultPlan, SimEnv};
use mqlab_engine::{clock, FlushKind, Store, StoreConfig};
use mqlab_protocol::codes::response;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const TOPIC: &str = "DiskFaults";

fn config(flush: FlushKind) -> StoreConfig {
    let mut cfg = StoreConfig::small();
    cfg.flush.kind = flush;
    cfg
}

/// Sends `n` seeded messages one by one; the answer code and remark of
/// each, with its body.
fn send_all(
    addr: std::net::SocketAddr,
    n: usize,
    seed: u64,
) -> Vec<(i32, Option<String>, Vec<u8>)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut c = common::connect(addr);
    (0..n)
        .map(|i| {
            let len = rng.random_range(100..3_000);
            let body: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            let r = common::roundtrip(
                &mut c,
                &common::keyed_send(i as i32 + 1, TOPIC, (i % 4) as u32, &body),
            );
            (r.code, r.remark, body)
        })
        .collect()
}

fn run(plan: FaultPlan, flush: FlushKind, what: &str) {
    let seed = plan.seed;
    let sim = Arc::new(SimEnv::with_faults(plan));
    let root = std::path::PathBuf::from("/sim/disk-faults");
    let store = Arc::new(Store::open_with_env(sim.clone(), &root, config(flush)).unwrap());
    let broker = Broker::open(store.clone(), BrokerConfig::default(), clock::system()).unwrap();
    broker.create_topic(TOPIC, 4).unwrap();
    let server = RemotingServer::start(
        ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..ServerConfig::default()
        },
        Arc::new(BrokerHandler::new(
            broker.clone(),
            "127.0.0.1:10911".parse().unwrap(),
        )),
    )
    .unwrap();
    let answers = send_all(server.local_addr(), 300, seed);
    let mut codes: BTreeMap<i32, usize> = BTreeMap::new();
    for (c, _, _) in &answers {
        *codes.entry(*c).or_default() += 1;
    }
    println!("{what}: seed {seed:#x}, answers by code {codes:?}");
    // SUCCESS first, then errors only: once the disk failed nothing is
    // acknowledged again.
    let first_err = answers
        .iter()
        .position(|(c, _, _)| *c != response::SUCCESS)
        .unwrap_or_else(|| panic!("{what}, seed {seed:#x}: the fault never showed: {codes:?}"));
    assert!(
        first_err > 0,
        "{what}, seed {seed:#x}: nothing stored before the fault"
    );
    for (i, (c, remark, _)) in answers.iter().enumerate().skip(first_err) {
        assert_ne!(
            *c,
            response::SUCCESS,
            "{what}, seed {seed:#x}: send {i} acknowledged after the disk failed at send {first_err}"
        );
        let r = remark.as_deref().unwrap_or("");
        assert!(
            !r.is_empty(),
            "{what}, seed {seed:#x}: send {i} refused without a reason (code {c})"
        );
    }
    // The later refusals say why: the store is poisoned by the fault.
    let (_, last_remark, _) = answers.last().unwrap();
    let last_remark = last_remark.as_deref().unwrap_or("");
    println!("{what}: the last refusal: {last_remark}");
    assert!(
        last_remark.contains("fsync")
            || last_remark.contains("sync")
            || last_remark.contains("space")
            || last_remark.contains("write")
            || last_remark.contains("poison"),
        "{what}, seed {seed:#x}: the refusal does not name the fault: {last_remark:?}"
    );
    server.shutdown();
    drop(broker);
    // A power loss now, recovery on a healthy disk: every SUCCESS there.
    let healthy = sim.crash(false, seed);
    drop(store);
    let store = Store::open_with_env(Arc::new(healthy), &root, config(flush)).unwrap();
    let mut on_disk = std::collections::HashSet::new();
    store
        .scan(store.min_offset(), &mut |m| {
            on_disk.insert(m.expect("a valid record").body.clone());
            true
        })
        .unwrap();
    let lost = answers[..first_err]
        .iter()
        .filter(|(_, _, b)| !on_disk.contains(b))
        .count();
    assert_eq!(
        lost, 0,
        "{what}, seed {seed:#x}: {lost} of {first_err} acknowledged sends lost after the power loss"
    );
}

#[test]
fn a_failed_fsync_stops_acknowledgements_and_loses_none() {
    for (i, flush) in [FlushKind::Group, FlushKind::Sync].into_iter().enumerate() {
        let seed = common::env_seed("MQLAB_DISK_FAULT_SEED") ^ i as u64;
        let at = 20 + seed % 40;
        run(
            FaultPlan {
                seed,
                sync_eio_at: Some(at),
                ..FaultPlan::default()
            },
            flush,
            &format!("EIO at fsync {at}, {flush:?} flush"),
        );
    }
}

#[test]
fn a_full_disk_stops_acknowledgements_and_loses_none() {
    for (i, flush) in [FlushKind::Group, FlushKind::Sync].into_iter().enumerate() {
        let seed = common::env_seed("MQLAB_DISK_FAULT_SEED") ^ (0x100 + i as u64);
        let cap = (150 << 10) + (seed % 200) * 1024;
        run(
            FaultPlan {
                seed,
                capacity_bytes: Some(cap),
                ..FaultPlan::default()
            },
            flush,
            &format!("ENOSPC after {cap} bytes, {flush:?} flush"),
        );
    }
}
