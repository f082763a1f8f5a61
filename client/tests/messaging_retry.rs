//! Retries and dead letters: RECONSUME_LATER sends a message through
//! %RETRY%{group} (delay level 3 + reconsume count) back to the group,
//! transparently (listeners see the original topic); after the configured
//! number of reconsumes it goes to %DLQ%{group}.

mod messaging_support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use messaging_support::*;
use mqlab_broker::{dlq_topic, MessageQueue};
use mqlab_client::consumer::push::PushConsumer;
use mqlab_client::consumer::{ConsumeStatus, Listener, OrderlyStatus};
use mqlab_client::producer::{Producer, ProducerConfig};
use mqlab_engine::Message;

/// Body -> (reconsume count, topic) of each delivery.
type Deliveries = HashMap<String, Vec<(i32, String)>>;

fn retries_reach_the_dlq_after_the_limit(t: Transport) {
    let lab = Lab::new(t);
    lab.broker.create_topic("Jobs", 2).unwrap();
    let p = Producer::new(lab.api(), ProducerConfig::default());
    for i in 0..10 {
        p.send(Message::new("Jobs", format!("j{i}")));
    }
    let seen: Arc<Mutex<Deliveries>> = Arc::default();
    let s = seen.clone();
    let mut cfg = consumer_config("gr", "c");
    cfg.max_reconsume_times = 3;
    let c = PushConsumer::start(
        lab.api(),
        cfg,
        &[("Jobs", "*")],
        Listener::concurrently(move |msgs, _| {
            let mut s = s.lock().unwrap();
            for m in msgs {
                s.entry(String::from_utf8_lossy(&m.body).into_owned())
                    .or_default()
                    .push((m.reconsume_times, m.topic.clone()));
            }
            // j0..j4 always fail; j5..j9 succeed on their second try.
            let body = String::from_utf8_lossy(&msgs[0].body).into_owned();
            let n: u32 = body[1..].parse().unwrap();
            if n < 5 || msgs[0].reconsume_times == 0 {
                ConsumeStatus::ReconsumeLater
            } else {
                ConsumeStatus::ConsumeSuccess
            }
        }),
    )
    .unwrap();
    let dlq = MessageQueue::new(dlq_topic("gr"), 0);
    wait_for(10, "5 dead letters", || lab.broker.queue_range(&dlq).1 == 5);
    std::thread::sleep(Duration::from_millis(100));
    let s = seen.lock().unwrap();
    for i in 0..10 {
        let v = &s[&format!("j{i}")];
        assert!(
            v.iter().all(|(_, t)| t == "Jobs"),
            "retries look like Jobs: {v:?}"
        );
        let counts: Vec<i32> = v.iter().map(|(r, _)| *r).collect();
        if i < 5 {
            assert_eq!(counts, vec![0, 1, 2, 3], "j{i}: 1 + 3 reconsumes, then DLQ");
        } else {
            assert_eq!(counts, vec![0, 1], "j{i}");
        }
    }
    drop(s);
    // Retries went through the delay service: level 3 is queue 2 of
    // SCHEDULE_TOPIC_XXXX, level 4 queue 3, ...
    let sched: Vec<u32> = lab
        .store
        .queues()
        .into_iter()
        .filter(|q| q.topic == mqlab_engine::delay::SCHEDULE_TOPIC)
        .map(|q| q.queue_id)
        .collect();
    assert_eq!(sched, vec![2, 3, 4], "levels 3, 4 and 5 used");
    let dead = lab.store.get_from_queue(&dlq.topic, 0, 0, 10).unwrap();
    assert!(dead.iter().all(|m| m.reconsume_times == 4));
    assert!(dead
        .iter()
        .all(|m| m.properties["RETRY_TOPIC"] == "Jobs"
            && m.properties.contains_key("ORIGIN_MESSAGE_ID")));
    c.shutdown().unwrap();
    drop(p);
    lab.shutdown();
}

both!(retries_reach_the_dlq_after_the_limit);

fn retry_waits_its_delay_level(t: Transport) {
    // Level 3 (the first retry) = 300 ms here; level 4 = 600 ms.
    let mut bcfg = broker_config();
    bcfg.delay_levels_ms = vec![100, 200, 300, 600, 900];
    let lab = Lab::with(t, bcfg);
    let times: Arc<Mutex<Vec<std::time::Instant>>> = Arc::default();
    let t = times.clone();
    let c = PushConsumer::start(
        lab.api(),
        consumer_config("gd", "c"),
        &[("D", "*")],
        Listener::concurrently(move |_, _| {
            let mut t = t.lock().unwrap();
            t.push(std::time::Instant::now());
            if t.len() < 3 {
                ConsumeStatus::ReconsumeLater
            } else {
                ConsumeStatus::ConsumeSuccess
            }
        }),
    )
    .unwrap();
    lab.broker.put(&Message::new("D", "x"));
    wait_for(10, "3 deliveries", || times.lock().unwrap().len() == 3);
    let t = times.lock().unwrap().clone();
    let gaps: Vec<Duration> = t.windows(2).map(|w| w[1] - w[0]).collect();
    eprintln!("retry gaps {gaps:?}");
    // Due times are whole milliseconds of the wall clock: allow 5 ms.
    assert!(gaps[0] >= Duration::from_millis(295), "{gaps:?}");
    assert!(gaps[1] >= Duration::from_millis(595), "{gaps:?}");
    c.shutdown().unwrap();
    lab.shutdown();
}

both!(retry_waits_its_delay_level);

fn orderly_suspend_retries_locally_then_dead_letters(t: Transport) {
    let lab = Lab::new(t);
    lab.broker.create_topic("OS", 1).unwrap();
    for i in 0..3 {
        lab.broker.put(&Message::new("OS", format!("{i}")));
    }
    let seen: Arc<Mutex<Vec<(String, i32)>>> = Arc::default();
    let s = seen.clone();
    let mut cfg = consumer_config("gos", "c");
    cfg.max_reconsume_times = 2;
    let c = PushConsumer::start(
        lab.api(),
        cfg,
        &[("OS", "*")],
        Listener::orderly(move |msgs, _| {
            let body = String::from_utf8_lossy(&msgs[0].body).into_owned();
            s.lock()
                .unwrap()
                .push((body.clone(), msgs[0].reconsume_times));
            if body == "1" {
                OrderlyStatus::SuspendCurrentQueueAMoment
            } else {
                OrderlyStatus::Success
            }
        }),
    )
    .unwrap();
    wait_for(10, "all three", || {
        seen.lock().unwrap().iter().any(|(b, _)| b == "2")
    });
    let v = seen.lock().unwrap().clone();
    assert_eq!(
        v,
        vec![
            ("0".into(), 0),
            ("1".into(), 0),
            ("1".into(), 1),
            ("1".into(), 2),
            ("2".into(), 0)
        ],
        "the queue waits for message 1, retried locally, then dead-lettered"
    );
    wait_for(5, "dlq", || {
        lab.broker
            .queue_range(&MessageQueue::new(dlq_topic("gos"), 0))
            .1
            == 1
    });
    c.shutdown().unwrap();
    lab.shutdown();
}

both!(orderly_suspend_retries_locally_then_dead_letters);
