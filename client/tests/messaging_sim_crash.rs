//! At-least-once across a power loss on the simulated disk: the group's
//! offsets live in `config/consumerOffset.json`, written through the
//! store's env, so the simulator crashes them with the commit log (torn
//! writes included). After recovery the file still parses, no committed
//! offset points past what survived, and every acknowledged message is
//! consumed before or after the crash; re-deliveries are counted.
//!
//! Local only: the store lives on the simulated disk, which a node (real
//! files) cannot serve, and the power loss is the simulator's, in process.

mod messaging_support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use messaging_support::*;
use mqlab_broker::Broker;
use mqlab_client::consumer::pull::PullConsumer;
use mqlab_engine::clock;
use mqlab_engine::io::sim::SimEnv;
use mqlab_engine::{Env, FlushKind, Message, Store};
use rand::{Rng, SeedableRng};

fn round(seed: u64) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let sim = SimEnv::new(seed);
    let env: Arc<dyn Env> = Arc::new(sim.clone());
    let mut cfg = store_config();
    cfg.flush.kind = FlushKind::Group;
    let dir = std::path::Path::new("/sim/store");
    let store = Arc::new(Store::open_with_env(env, dir, cfg.clone()).unwrap());
    let mut bcfg = broker_config();
    bcfg.offset_flush_interval_ms = 3;
    let broker = Broker::open(store.clone(), bcfg.clone(), clock::system()).unwrap();
    broker.create_topic("S", 2).unwrap();
    let mut acked = HashSet::new();
    let n = rng.random_range(50..150);
    for i in 0..n {
        let r = broker.put(&Message::new("S", format!("{i}")).with_queue(i % 2));
        assert!(r.is_ok());
        acked.insert(format!("{i}"));
    }
    let pc =
        PullConsumer::subscribe(broker.clone(), consumer_config("gs", "c"), &[("S", "*")]).unwrap();
    let mut before = Vec::new();
    let stop_after = rng.random_range(0..n as usize);
    while before.len() < stop_after {
        for m in pc.poll(8, Duration::from_millis(100)) {
            before.push(String::from_utf8(m.body).unwrap());
        }
        pc.commit();
    }
    std::thread::sleep(Duration::from_millis(rng.random_range(0..10)));
    // Power loss: only durable bytes survive, the last writes torn.
    let crashed = sim.crash(true, seed);
    drop(pc);
    drop(broker);
    drop(store);
    let env: Arc<dyn Env> = Arc::new(crashed);
    let store = Arc::new(Store::open_with_env(env, dir, cfg).unwrap());
    let broker = Broker::open(store.clone(), bcfg, clock::system()).unwrap();
    let pc = PullConsumer::subscribe(broker.clone(), consumer_config("gs", "c2"), &[("S", "*")])
        .unwrap();
    let mut after = Vec::new();
    loop {
        let got = pc.poll(64, Duration::from_millis(50));
        if got.is_empty() {
            break;
        }
        after.extend(got.into_iter().map(|m| String::from_utf8(m.body).unwrap()));
    }
    let seen: HashSet<&String> = before.iter().chain(after.iter()).collect();
    let lost: Vec<&String> = acked.iter().filter(|k| !seen.contains(k)).collect();
    assert!(
        lost.is_empty(),
        "seed {seed}: acked and never consumed: {lost:?}"
    );
    let duplicates = before.len() + after.len() - seen.len();
    eprintln!(
        "seed {seed}: {} before the crash, {} after, {duplicates} consumed twice",
        before.len(),
        after.len()
    );
    pc.shutdown().unwrap();
    broker.shutdown().unwrap();
    drop(broker);
    Arc::try_unwrap(store).unwrap().shutdown().unwrap();
}

#[test]
fn offsets_survive_power_loss_at_least_once() {
    let base = seed(1);
    for s in base..base + 6 {
        round(s);
    }
}
