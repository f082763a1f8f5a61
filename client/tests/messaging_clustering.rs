//! Clustering consumer groups: every message to exactly one member when
//! nothing fails; rebalancing on join and leave; tag filtering; lag; group
//! offsets persisted and re-consumed (never lost) after a crash.

mod messaging_support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use messaging_support::*;
use mqlab_broker::{Broker, MessageQueue};
use mqlab_client::consumer::pull::PullConsumer;
use mqlab_client::consumer::push::PushConsumer;
use mqlab_client::consumer::{AveragelyByCircle, ConsumeStatus, Listener};
use mqlab_client::producer::{Producer, ProducerConfig};
use mqlab_engine::message::PROPERTY_UNIQ_KEY;
use mqlab_engine::Message;

type Seen = Arc<Mutex<HashMap<String, Vec<String>>>>;

fn counting(seen: Seen) -> Listener {
    Listener::concurrently(move |msgs, ctx| {
        let mut s = seen.lock().unwrap();
        for m in msgs {
            s.entry(m.properties[PROPERTY_UNIQ_KEY].clone())
                .or_default()
                .push(ctx.client_id.clone());
        }
        ConsumeStatus::ConsumeSuccess
    })
}

fn each_message_consumed_once_by_one_member(t: Transport) {
    let lab = Lab::new(t);
    lab.broker.create_topic("Orders", 8).unwrap();
    let seen: Seen = Arc::default();
    let consumers: Vec<PushConsumer> = (0..3)
        .map(|i| {
            PushConsumer::start(
                lab.api(),
                consumer_config("g1", &format!("c{i}")),
                &[("Orders", "*")],
                counting(seen.clone()),
            )
            .unwrap()
        })
        .collect();
    wait_for(5, "8 queues split 3/3/2", || {
        let mut n: Vec<usize> = consumers.iter().map(|c| owned(c, "Orders")).collect();
        n.sort();
        n == vec![2, 3, 3]
    });
    let p = Producer::new(lab.api(), ProducerConfig::default());
    let n = 2_000;
    for i in 0..n {
        assert!(p.send(Message::new("Orders", format!("m{i}"))).is_ok());
    }
    wait_for(10, "every message", || seen.lock().unwrap().len() == n);
    std::thread::sleep(Duration::from_millis(50));
    let s = seen.lock().unwrap();
    let dup: Vec<_> = s.iter().filter(|(_, v)| v.len() != 1).collect();
    assert!(dup.is_empty(), "duplicates: {:?}", &dup[..dup.len().min(5)]);
    let per_member: HashMap<&String, usize> = s.values().fold(HashMap::new(), |mut m, v| {
        *m.entry(&v[0]).or_default() += 1;
        m
    });
    assert_eq!(per_member.len(), 3, "all members consumed: {per_member:?}");
    drop(s);
    for c in consumers {
        c.shutdown().unwrap();
    }
    for l in lab.broker.lag("g1", "Orders") {
        assert_eq!(l.lag, 0, "{l:?}");
    }
    drop(p);
    lab.shutdown();
}

both!(each_message_consumed_once_by_one_member);

fn rebalance_on_join_and_leave_loses_nothing(t: Transport) {
    let lab = Lab::new(t);
    lab.broker.create_topic("T", 6).unwrap();
    let seen: Seen = Arc::default();
    let mut cfg_a = consumer_config("g2", "a");
    cfg_a.allocate = Arc::new(AveragelyByCircle);
    let a = PushConsumer::start(lab.api(), cfg_a, &[("T", "*")], counting(seen.clone())).unwrap();
    wait_for(5, "a owns all", || owned(&a, "T") == 6);
    let p = Producer::new(lab.api(), ProducerConfig::default());
    for i in 0..300 {
        p.send(Message::new("T", format!("x{i}")));
    }
    let mut cfg_b = consumer_config("g2", "b");
    cfg_b.allocate = Arc::new(AveragelyByCircle);
    let b = PushConsumer::start(lab.api(), cfg_b, &[("T", "*")], counting(seen.clone())).unwrap();
    wait_for(5, "a and b split 3/3", || {
        owned(&a, "T") == 3 && owned(&b, "T") == 3
    });
    assert_eq!(
        b.assignment()
            .into_iter()
            .filter(|q| q.topic == "T")
            .collect::<Vec<_>>(),
        vec![
            MessageQueue::new("T", 1),
            MessageQueue::new("T", 3),
            MessageQueue::new("T", 5)
        ],
        "circle deals odd queues to the second member"
    );
    for i in 300..600 {
        p.send(Message::new("T", format!("x{i}")));
    }
    a.shutdown().unwrap();
    wait_for(5, "b owns all after a left", || owned(&b, "T") == 6);
    for i in 600..900 {
        p.send(Message::new("T", format!("x{i}")));
    }
    wait_for(10, "all 900", || seen.lock().unwrap().len() == 900);
    let dups: usize = seen.lock().unwrap().values().map(|v| v.len() - 1).sum();
    eprintln!("duplicates across two rebalances: {dups}");
    b.shutdown().unwrap();
    assert_eq!(lab.broker.total_lag("g2", "T"), 0);
    drop(p);
    lab.shutdown();
}

both!(rebalance_on_join_and_leave_loses_nothing);

fn tag_filter_by_hash_then_string(t: Transport) {
    let lab = Lab::new(t);
    lab.broker.create_topic("Tagged", 2).unwrap();
    let p = Producer::new(lab.api(), ProducerConfig::default());
    for i in 0..90 {
        let tag = ["TagA", "TagB", "TagC"][i % 3];
        p.send(Message::new("Tagged", format!("{i}")).with_tags(tag));
    }
    let got: Arc<Mutex<Vec<String>>> = Arc::default();
    let g = got.clone();
    let c = PushConsumer::start(
        lab.api(),
        consumer_config("gt", "c"),
        &[("Tagged", "TagA || TagC")],
        Listener::concurrently(move |msgs, _| {
            g.lock()
                .unwrap()
                .extend(msgs.iter().map(|m| m.tags().unwrap().to_string()));
            ConsumeStatus::ConsumeSuccess
        }),
    )
    .unwrap();
    wait_for(5, "60 tagged", || got.lock().unwrap().len() == 60);
    std::thread::sleep(Duration::from_millis(50));
    let tags = got.lock().unwrap().clone();
    assert_eq!(tags.len(), 60);
    assert!(tags.iter().all(|t| t == "TagA" || t == "TagC"));
    // The offsets moved past the TagB messages too.
    wait_for(5, "lag 0", || lab.broker.total_lag("gt", "Tagged") == 0);
    c.shutdown().unwrap();
    drop(p);
    lab.shutdown();
}

both!(tag_filter_by_hash_then_string);

fn crash_reconsumes_from_persisted_offsets(t: Transport) {
    // Offsets flushed rarely: a crash loses the commits since the last
    // flush, and the group consumes those messages again (never skips).
    let mut bcfg = broker_config();
    bcfg.offset_flush_interval_ms = 3_600_000;
    let lab = Lab::with(t, bcfg.clone());
    lab.broker.create_topic("C", 2).unwrap();
    let p = Producer::new(lab.api(), ProducerConfig::default());
    for i in 0..100 {
        p.send(Message::new("C", format!("{i}")));
    }
    // The lag is measured against the dispatched queue ends: wait until
    // the dispatcher has all 100 so lag arithmetic below is exact.
    wait_for(5, "100 dispatched", || dispatched(&lab.broker, "C") == 100);
    let pc = PullConsumer::subscribe(lab.api(), consumer_config("gc", "c"), &[("C", "*")]).unwrap();
    let mut first = 0;
    while first < 40 {
        first += pc.poll(10, Duration::from_millis(500)).len();
    }
    pc.commit();
    lab.broker.persist_offsets().unwrap();
    let persisted = committed(&lab.broker, "gc", "C");
    assert!(
        persisted >= 40,
        "committed {persisted} after consuming {first}"
    );
    let mut more = 0;
    while more < 30 {
        more += pc.poll(10, Duration::from_millis(500)).len();
    }
    pc.commit();
    // The crashed process's clients die with it.
    drop((pc, p));
    let lab = lab.crash_and_reopen(bcfg);
    wait_for(5, "100 redispatched", || {
        dispatched(&lab.broker, "C") == 100
    });
    assert_eq!(committed(&lab.broker, "gc", "C"), persisted);
    assert_eq!(lab.broker.total_lag("gc", "C"), 100 - persisted);
    let pc =
        PullConsumer::subscribe(lab.api(), consumer_config("gc", "c2"), &[("C", "*")]).unwrap();
    let mut rest = 0;
    loop {
        let n = pc.poll(50, Duration::from_millis(100)).len();
        if n == 0 {
            break;
        }
        rest += n;
    }
    let duplicates = (first + more + rest) as u64 - 100;
    eprintln!("consumed {first}+{more} before the crash, {rest} after; duplicates {duplicates}");
    assert_eq!(
        rest as u64,
        100 - persisted,
        "re-consumed from the persisted offsets"
    );
    assert!(duplicates >= (first + more) as u64 - persisted);
    pc.shutdown().unwrap();
    lab.shutdown();
}

both!(crash_reconsumes_from_persisted_offsets);

// Local only: no client involved.
#[test]
fn offsets_file_has_rocketmq_shape() {
    let lab = Lab::new(Transport::Local);
    lab.broker
        .commit_offset("gx", &MessageQueue::new("T", 3), 42);
    lab.broker.persist_offsets().unwrap();
    let text = std::fs::read_to_string(lab.dir.path().join("config/consumerOffset.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["offsetTable"]["T@gx"]["3"], 42, "{text}");
    lab.shutdown();
}

/// Messages of `topic` the dispatcher has made visible in its queues.
fn dispatched(broker: &Broker, topic: &str) -> u64 {
    broker
        .queues_of(topic)
        .iter()
        .map(|mq| broker.queue_range(mq).1)
        .sum()
}

/// Sum of `group`'s committed offsets over the queues of `topic`.
fn committed(broker: &Broker, group: &str, topic: &str) -> u64 {
    broker
        .queues_of(topic)
        .iter()
        .map(|mq| broker.query_offset(group, mq).unwrap_or(0))
        .sum()
}
