//! Broadcasting: every consumer gets every message; offsets in a local file
//! per consumer; failed messages are not retried; a fresh consumer starts
//! at the newest message; a restarted one resumes from its file.

mod messaging_support;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use messaging_support::*;
use mqlab_client::consumer::push::PushConsumer;
use mqlab_client::consumer::{ConsumeFromWhere, ConsumeStatus, Listener, MessageModel};
use mqlab_client::producer::{Producer, ProducerConfig};
use mqlab_engine::Message;

type Got = Arc<Mutex<Vec<String>>>;

fn start(lab: &Lab, client: &str, got: Got, fail: bool) -> PushConsumer {
    let mut cfg = consumer_config("gb", client);
    cfg.model = MessageModel::Broadcasting;
    cfg.from_where = ConsumeFromWhere::LastOffset;
    PushConsumer::start(
        lab.api(),
        cfg,
        &[("B", "*")],
        Listener::concurrently(move |msgs, _| {
            got.lock().unwrap().extend(
                msgs.iter()
                    .map(|m| String::from_utf8_lossy(&m.body).into_owned()),
            );
            if fail {
                ConsumeStatus::ReconsumeLater
            } else {
                ConsumeStatus::ConsumeSuccess
            }
        }),
    )
    .unwrap()
}

fn broadcasting_delivers_to_all(t: Transport) {
    let lab = Lab::new(t);
    lab.broker.create_topic("B", 4).unwrap();
    let p = Producer::new(lab.api(), ProducerConfig::default());
    // Sent before anyone listens: fresh broadcasting consumers skip these.
    for i in 0..20 {
        p.send(Message::new("B", format!("old{i}")));
    }
    wait_for(5, "old messages dispatched", || {
        lab.broker
            .queues_of("B")
            .iter()
            .map(|q| lab.broker.queue_range(q).1)
            .sum::<u64>()
            == 20
    });
    let gots: Vec<Got> = (0..3).map(|_| Got::default()).collect();
    let cs: Vec<PushConsumer> = gots
        .iter()
        .enumerate()
        .map(|(i, g)| start(&lab, &format!("b{i}"), g.clone(), i == 2))
        .collect();
    wait_for(5, "all own all queues", || {
        cs.iter().all(|c| c.assignment().len() == 4)
    });
    std::thread::sleep(Duration::from_millis(50));
    for i in 0..100 {
        p.send(Message::new("B", format!("new{i}")));
    }
    let want: BTreeSet<String> = (0..100).map(|i| format!("new{i}")).collect();
    for g in &gots {
        wait_for(5, "100 each", || g.lock().unwrap().len() >= 100);
    }
    std::thread::sleep(Duration::from_millis(100));
    for (i, g) in gots.iter().enumerate() {
        let v = g.lock().unwrap().clone();
        assert_eq!(
            v.len(),
            100,
            "consumer {i} got each once (failures not retried)"
        );
        assert_eq!(v.into_iter().collect::<BTreeSet<_>>(), want);
    }
    // No retry topic traffic for broadcasting failures.
    assert_eq!(
        lab.broker
            .stats
            .retried
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    let mut cs = cs.into_iter();
    let c0 = cs.next().unwrap();
    c0.shutdown().unwrap();
    for c in cs {
        c.shutdown().unwrap();
    }
    let file = lab.dir.path().join("clients/b0/gb/offsets.json");
    assert!(file.exists(), "local offsets at {}", file.display());
    // Restarted, b0 resumes from its file: it gets only what came after.
    for i in 0..10 {
        p.send(Message::new("B", format!("later{i}")));
    }
    let again = Got::default();
    let c0 = start(&lab, "b0", again.clone(), false);
    wait_for(5, "10 later", || again.lock().unwrap().len() >= 10);
    std::thread::sleep(Duration::from_millis(50));
    let v = again.lock().unwrap().clone();
    assert_eq!(v.len(), 10, "{v:?}");
    assert!(v.iter().all(|s| s.starts_with("later")));
    c0.shutdown().unwrap();
    drop(p);
    lab.shutdown();
}

both!(broadcasting_delivers_to_all);
