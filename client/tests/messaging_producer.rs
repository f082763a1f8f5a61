//! Producers: sync send retried on another queue, async send with a
//! callback, one-way send, round robin and sharding-key selectors.

mod messaging_support;

use std::collections::BTreeSet;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use messaging_support::*;
use mqlab_broker::types::*;
use mqlab_broker::ClientChannel;
use mqlab_client::api::{BrokerApi, LocalFiles};
use mqlab_client::producer::{HashKey, Producer, ProducerConfig};
use mqlab_engine::clock::Clock;
use mqlab_engine::{Message, PutResult, PutStatus};

/// Fails every put to the queues in `bad`, as a broker that lost them;
/// every other request goes to the broker as it is.
struct Flaky {
    broker: Arc<dyn BrokerApi>,
    bad: BTreeSet<u32>,
    tried: Mutex<Vec<u32>>,
}

impl BrokerApi for Flaky {
    fn send_message(&self, msg: &Message) -> PutResult {
        self.tried.lock().unwrap().push(msg.queue_id);
        if self.bad.contains(&msg.queue_id) {
            return PutResult {
                status: PutStatus::ServiceNotAvailable,
                offsets: None,
                detail: Some("queue unavailable".into()),
            };
        }
        self.broker.send_message(msg)
    }
    fn get_route_info(&self, topic: &str) -> mqlab_client::Result<Vec<MessageQueue>> {
        self.broker.get_route_info(topic)
    }
    fn get_topic_queues(&self, topic: &str) -> Vec<MessageQueue> {
        self.broker.get_topic_queues(topic)
    }
    fn create_topic(&self, topic: &str, queues: u32) -> mqlab_client::Result<()> {
        BrokerApi::create_topic(self.broker.as_ref(), topic, queues)
    }
    fn get_offset_range(&self, mq: &MessageQueue) -> (u64, u64) {
        self.broker.get_offset_range(mq)
    }
    fn pull_message(
        &self,
        req: &PullRequest,
        cancel: Option<&AtomicBool>,
    ) -> mqlab_client::Result<PullResult> {
        self.broker.pull_message(req, cancel)
    }
    fn query_consumer_offset(&self, req: &QueryConsumerOffsetRequest) -> Option<u64> {
        self.broker.query_consumer_offset(req)
    }
    fn update_consumer_offset(&self, req: &UpdateConsumerOffsetRequest) {
        self.broker.update_consumer_offset(req)
    }
    fn heartbeat(
        &self,
        req: &HeartbeatRequest,
        channel: Arc<dyn ClientChannel>,
    ) -> mqlab_client::Result<()> {
        BrokerApi::heartbeat(self.broker.as_ref(), req, channel)
    }
    fn unregister_client(&self, req: &UnregisterClientRequest) {
        BrokerApi::unregister_client(self.broker.as_ref(), req)
    }
    fn get_consumer_list(&self, group: &str) -> Vec<String> {
        self.broker.get_consumer_list(group)
    }
    fn lock_batch_mq(&self, req: &LockBatchRequest) -> BTreeSet<MessageQueue> {
        self.broker.lock_batch_mq(req)
    }
    fn unlock_batch_mq(&self, req: &LockBatchRequest) {
        self.broker.unlock_batch_mq(req)
    }
    fn end_transaction(
        &self,
        req: &EndTransactionRequest,
    ) -> mqlab_client::Result<Option<PutResult>> {
        BrokerApi::end_transaction(self.broker.as_ref(), req)
    }
    fn consumer_send_msg_back(&self, req: &ConsumerSendMsgBackRequest) -> PutResult {
        self.broker.consumer_send_msg_back(req)
    }
    fn clock(&self) -> Arc<dyn Clock> {
        BrokerApi::clock(self.broker.as_ref())
    }
    fn local_files(&self) -> LocalFiles {
        self.broker.local_files()
    }
}

fn sync_send_retries_on_another_queue(t: Transport) {
    let lab = Lab::new(t);
    lab.broker.create_topic("R", 4).unwrap();
    let flaky = Arc::new(Flaky {
        broker: lab.api(),
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
        broker: lab.api(),
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
    let p = Producer::new(lab.api(), ProducerConfig::default());
    let r = p.send(Message::new("R", vec![0u8; 64 * 1024]));
    assert_eq!(r.status, PutStatus::MessageIllegal);
    assert_eq!(r.attempts, 1);
    drop((flaky, all_bad));
    drop(p);
    lab.shutdown();
}

both!(sync_send_retries_on_another_queue);

fn async_callbacks_and_oneway(t: Transport) {
    let lab = Lab::new(t);
    let p = Producer::new(lab.api(), ProducerConfig::default());
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

both!(async_callbacks_and_oneway);

fn sharding_key_keeps_an_order_on_one_queue(t: Transport) {
    let lab = Lab::new(t);
    lab.broker.create_topic("O", 4).unwrap();
    let p = Producer::new(lab.api(), ProducerConfig::default());
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

both!(sharding_key_keeps_an_order_on_one_queue);
