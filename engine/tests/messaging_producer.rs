//! Producers: sync send retried on another queue, async send with a
//! callback, one-way send, round robin and sharding-key selectors.

mod messaging_support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use messaging_support::*;
use mqlab_engine::broker::{Broker, MessageQueue};
use mqlab_engine::clock::Clock;
use mqlab_engine::producer::{HashKey, Producer, ProducerConfig, Transport};
use mqlab_engine::{Message, PutResult, PutStatus};

/// Fails every put to the queues in `bad`, as a broker that lost them.
struct Flaky {
    broker: Arc<Broker>,
    bad: BTreeSet<u32>,
    tried: Mutex<Vec<u32>>,
}

impl Transport for Flaky {
    fn route(&self, topic: &str) -> mqlab_engine::Result<Vec<MessageQueue>> {
        self.broker.route(topic)
    }
    fn put(&self, msg: &Message) -> PutResult {
        self.tried.lock().unwrap().push(msg.queue_id);
        if self.bad.contains(&msg.queue_id) {
            return PutResult {
                status: PutStatus::ServiceNotAvailable,
                offsets: None,
                detail: Some("queue unavailable".into()),
            };
        }
        self.broker.put(msg)
    }
    fn clock(&self) -> Arc<dyn Clock> {
        self.broker.clock().clone()
    }
}

#[test]
fn sync_send_retries_on_another_queue() {
    let lab = Lab::new();
    lab.broker.create_topic("R", 4).unwrap();
    let flaky = Arc::new(Flaky {
        broker: lab.broker.clone(),
        bad: [0, 1].into(),
        tried: Mutex::default(),
    });
    let p = Producer::new(flaky.clone(), ProducerConfig::default());
    for i in 0..20 {
        let r = p.send(Message::new("R", format!("{i}")));
        assert!(r.is_ok(), "{r:?}");
        assert!(r.attempts <= 3);
        assert!(!flaky.bad.contains(&r.mq.unwrap().queue_id));
    }
    let tried = flaky.tried.lock().unwrap().clone();
    // A retry never repeats the queue that just failed.
    for w in tried.windows(2) {
        if flaky.bad.contains(&w[0]) {
            assert_ne!(w[0], w[1], "{tried:?}");
        }
    }
    // All queues bad: 1 + 2 retries, then the failure is returned.
    let all_bad = Arc::new(Flaky {
        broker: lab.broker.clone(),
        bad: (0..4).collect(),
        tried: Mutex::default(),
    });
    let p_bad = Producer::new(all_bad.clone(), ProducerConfig::default());
    let r = p_bad.send(Message::new("R", "x"));
    assert_eq!(r.status, PutStatus::ServiceNotAvailable);
    assert_eq!(r.attempts, 3);
    drop(p_bad);
    drop(p);
    // Illegal messages are not retried.
    let p = Producer::new(lab.broker.clone(), ProducerConfig::default());
    let r = p.send(Message::new("R", vec![0u8; 64 * 1024]));
    assert_eq!(r.status, PutStatus::MessageIllegal);
    assert_eq!(r.attempts, 1);
    drop((flaky, all_bad));
    drop(p);
    lab.shutdown();
}

#[test]
fn async_callbacks_and_oneway() {
    let lab = Lab::new();
    let p = Producer::new(lab.broker.clone(), ProducerConfig::default());
    let (tx, rx) = mpsc::channel();
    for i in 0..200 {
        let tx = tx.clone();
        p.send_async(Message::new("A", format!("{i}")), move |r| {
            tx.send(r).unwrap();
        });
    }
    let mut ids = BTreeSet::new();
    for _ in 0..200 {
        let r = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(r.is_ok());
        ids.insert(r.msg_id);
    }
    assert_eq!(ids.len(), 200, "every message has its own id");
    for i in 0..50 {
        p.send_oneway(Message::new("A", format!("o{i}")));
    }
    p.shutdown();
    // Shut down: queued one-way sends were drained; new async sends fail.
    let total: u64 = lab
        .broker
        .queues_of("A")
        .iter()
        .map(|q| lab.broker.queue_range(q).1)
        .sum();
    wait_for(5, "250 stored", || {
        lab.broker
            .queues_of("A")
            .iter()
            .map(|q| lab.broker.queue_range(q).1)
            .sum::<u64>()
            == 250
    });
    assert!(total <= 250);
    let failed = Arc::new(AtomicUsize::new(0));
    let f = failed.clone();
    p.send_async(Message::new("A", "late"), move |r| {
        assert_eq!(r.status, PutStatus::ServiceNotAvailable);
        f.fetch_add(1, Ordering::SeqCst);
    });
    assert_eq!(failed.load(Ordering::SeqCst), 1);
    drop(p);
    lab.shutdown();
}

#[test]
fn sharding_key_keeps_an_order_on_one_queue() {
    let lab = Lab::new();
    lab.broker.create_topic("O", 4).unwrap();
    let p = Producer::new(lab.broker.clone(), ProducerConfig::default());
    let mut queue_of = std::collections::HashMap::new();
    for step in 0..5 {
        for order in 0..20 {
            let key = format!("order-{order}");
            let r =
                p.send_with_selector(Message::new("O", format!("{order}:{step}")), &HashKey, &key);
            let q = r.mq.unwrap().queue_id;
            assert_eq!(*queue_of.entry(key).or_insert(q), q);
        }
    }
    let used: BTreeSet<u32> = queue_of.values().copied().collect();
    assert!(used.len() > 1, "keys spread over queues: {used:?}");
    // Round robin spreads plain sends evenly.
    for i in 0..40 {
        p.send(Message::new("O2", format!("{i}")));
    }
    for q in lab.broker.queues_of("O2") {
        wait_for(5, "10 per queue", || lab.broker.queue_range(&q).1 == 10);
    }
    drop(p);
    lab.shutdown();
}
