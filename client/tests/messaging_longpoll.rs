//! Long polling: a pull with nothing to return is held, and answered as
//! soon as the dispatcher builds a unit for its queue, not at the end of
//! the hold. The bounds are generous (hold 10 s, answer expected in
//! milliseconds) so the test is about which event answered the pull.

mod messaging_support;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use messaging_support::*;
use mqlab_broker::{MessageQueue, PullRequest, PullStatus};
use mqlab_client::api::BrokerApi;
use mqlab_client::consumer::push::PushConsumer;
use mqlab_client::consumer::{ConsumeStatus, Listener};
use mqlab_engine::Message;

fn held_pull_answers_when_a_message_arrives(t: Transport) {
    let lab = Lab::new(t);
    lab.broker.create_topic("LP", 1).unwrap();
    let broker = lab.api();
    let puller = std::thread::spawn(move || {
        let t = Instant::now();
        let r = broker
            .pull_message(
                &PullRequest {
                    mq: MessageQueue::new("LP", 0),
                    offset: 0,
                    max_msgs: 32,
                    filter: None,
                    suspend_ms: 10_000,
                },
                None,
            )
            .unwrap();
        (r, t.elapsed(), Instant::now())
    });
    std::thread::sleep(Duration::from_millis(200));
    let put_at = Instant::now();
    assert!(lab.broker.put(&Message::new("LP", "hello")).is_ok());
    let (r, held, answered_at) = puller.join().unwrap();
    let answer_ms = answered_at.duration_since(put_at).as_secs_f64() * 1000.0;
    eprintln!("held {held:?}, answered {answer_ms:.2} ms after the put");
    assert_eq!(r.status, PullStatus::Found);
    assert_eq!(r.msgs.len(), 1);
    assert!(held >= Duration::from_millis(190), "it was held: {held:?}");
    assert!(
        answer_ms < 1_000.0,
        "answered by the arrival, not the 10 s hold"
    );
    assert!(
        lab.broker
            .stats
            .held_pulls
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    lab.shutdown();
}

both!(held_pull_answers_when_a_message_arrives);

fn empty_pull_returns_at_the_end_of_its_hold_or_when_cancelled(t: Transport) {
    let lab = Lab::new(t);
    lab.broker.create_topic("E", 1).unwrap();
    let req = PullRequest {
        mq: MessageQueue::new("E", 0),
        offset: 0,
        max_msgs: 1,
        filter: None,
        suspend_ms: 100,
    };
    let t = Instant::now();
    let api = lab.api();
    let r = api.pull_message(&req, None).unwrap();
    assert_eq!(r.status, PullStatus::NoNewMsg);
    assert!(t.elapsed() >= Duration::from_millis(100));
    let cancel = Arc::new(AtomicBool::new(true));
    let t = Instant::now();
    let r = api
        .pull_message(
            &PullRequest {
                suspend_ms: 10_000,
                ..req.clone()
            },
            Some(&cancel),
        )
        .unwrap();
    assert_eq!(r.status, PullStatus::NoNewMsg);
    assert!(t.elapsed() < Duration::from_secs(5));
    // Cancelled while held: returns within moments, not at the hold's end.
    let cancel = Arc::new(AtomicBool::new(false));
    let c = cancel.clone();
    let setter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        c.store(true, std::sync::atomic::Ordering::Release);
    });
    let t = Instant::now();
    let _ = api.pull_message(
        &PullRequest {
            suspend_ms: 10_000,
            ..req
        },
        Some(&cancel),
    );
    setter.join().unwrap();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    drop(api);
    lab.shutdown();
}

both!(empty_pull_returns_at_the_end_of_its_hold_or_when_cancelled);

fn push_consumer_latency_on_long_polling(t: Transport) {
    let lab = Lab::new(t);
    lab.broker.create_topic("PC", 2).unwrap();
    let mut cfg = consumer_config("glp", "c");
    cfg.pull_suspend_ms = 15_000;
    let arrivals: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let a = arrivals.clone();
    let c = PushConsumer::start(
        lab.api(),
        cfg,
        &[("PC", "*")],
        Listener::concurrently(move |msgs, _| {
            a.lock()
                .unwrap()
                .extend(msgs.iter().map(|_| Instant::now()));
            ConsumeStatus::ConsumeSuccess
        }),
    )
    .unwrap();
    wait_for(5, "assigned", || owned(&c, "PC") == 2);
    // Let both pulls settle into their hold.
    std::thread::sleep(Duration::from_millis(100));
    let mut worst = Duration::ZERO;
    for i in 0..5 {
        let sent = Instant::now();
        lab.broker
            .put(&Message::new("PC", format!("{i}")).with_queue(i % 2));
        wait_for(5, "delivery", || {
            arrivals.lock().unwrap().len() == i as usize + 1
        });
        let got = *arrivals.lock().unwrap().last().unwrap();
        worst = worst.max(got.duration_since(sent));
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("worst end-to-end with long polling: {worst:?}");
    assert!(
        worst < Duration::from_secs(2),
        "never waited out a 15 s hold"
    );
    c.shutdown().unwrap();
    lab.shutdown();
}

both!(push_consumer_latency_on_long_polling);
