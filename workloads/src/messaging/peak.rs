//! Peak shaving: bursty producers against one consumer that processes a
//! fixed number of messages per second. The broker absorbs the bursts as
//! backlog; the question is where the messages wait and for how long.
//!
//! - push: a push consumer on long polling; its pull threads prefetch up
//!   to `pull_threshold` messages per queue into the process queues
//!   (the consumer-side queue), then flow control stops them.
//! - pull: a pull consumer; the application polls a batch only when it is
//!   ready for more, so at most one batch waits on the consumer side.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use mqlab_client::consumer::pull::PullConsumer;
use mqlab_client::consumer::push::PushConsumer;
use mqlab_client::consumer::{ConsumeFromWhere, ConsumeStatus, ConsumerConfig, Listener};
use mqlab_client::producer::{Producer, ProducerConfig};
use mqlab_engine::StoredMessage;

use super::drive::{drive, plain_send};
use super::lab::{wait_until, Ctx, Outcome};
use super::series::{Row, Sampler};
use super::spec::Experiment;
use super::tracker::Tracker;

const GROUP: &str = "peak";

/// Paces processing at `rate` messages per second.
struct Pace {
    next: Mutex<Instant>,
    each: Duration,
}

impl Pace {
    fn new(rate: f64) -> Pace {
        Pace {
            next: Mutex::new(Instant::now()),
            each: Duration::from_secs_f64(1.0 / rate.max(1.0)),
        }
    }

    fn process_one(&self) {
        let until = {
            let mut n = self.next.lock().unwrap();
            let now = Instant::now();
            if *n < now {
                *n = now;
            }
            *n += self.each;
            *n
        };
        let now = Instant::now();
        if until > now {
            std::thread::sleep(until - now);
        }
    }
}

pub fn run(ctx: &Ctx<'_>, variant: &str) -> Result<Outcome> {
    let (w, m) = (ctx.w, ctx.m);
    let lab = ctx.lab(ctx.broker_config())?;
    let topic = w.topic.clone();
    lab.broker.create_topic(&topic, w.queues)?;
    let tracker = Arc::new(Tracker::new(lab.start));
    let pace = Arc::new(Pace::new(m.consume_rate.unwrap_or(2_000.0)));
    let mut cfg = ConsumerConfig::new(GROUP);
    cfg.from_where = ConsumeFromWhere::FirstOffset;
    cfg.consume_threads = 1;
    cfg.pull_threshold_per_queue = m.pull_threshold.unwrap_or(1_000);
    cfg.rebalance_interval_ms = 1_000;
    let in_hand = Arc::new(std::sync::atomic::AtomicU64::new(0));
    enum Consumer {
        Push(PushConsumer),
        Pull(Arc<PullConsumer>, std::thread::JoinHandle<()>),
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let consumer = match variant {
        "push" => {
            let (t, p) = (tracker.clone(), pace.clone());
            Consumer::Push(PushConsumer::start(
                lab.broker.clone(),
                cfg,
                &[(&topic, "*")],
                Listener::concurrently(move |msgs: &[StoredMessage], _| {
                    for msg in msgs {
                        p.process_one();
                        t.delivery();
                        t.success(&msg.body, false);
                    }
                    ConsumeStatus::ConsumeSuccess
                }),
            )?)
        }
        "pull" => {
            let pc = Arc::new(PullConsumer::subscribe(
                lab.broker.clone(),
                cfg,
                &[(&topic, "*")],
            )?);
            let (t, p, pc2, s, hand) = (
                tracker.clone(),
                pace.clone(),
                pc.clone(),
                stop.clone(),
                in_hand.clone(),
            );
            let h = std::thread::spawn(move || {
                while !s.load(Ordering::Acquire) {
                    let batch = pc2.poll(32, Duration::from_millis(100));
                    hand.store(batch.len() as u64, Ordering::Release);
                    for msg in batch {
                        p.process_one();
                        t.delivery();
                        t.success(&msg.body, false);
                        hand.fetch_sub(1, Ordering::AcqRel);
                    }
                }
            });
            Consumer::Pull(pc, h)
        }
        other => bail!("peak-shaving variants are push and pull, not {other:?}"),
    };
    let producer = Producer::new(lab.broker.clone(), ProducerConfig::default());
    let produced = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sampler = {
        let (b, t, pr, hand) = (
            lab.broker.clone(),
            tracker.clone(),
            produced.clone(),
            in_hand.clone(),
        );
        let start = lab.start;
        let topic = topic.clone();
        // Consumer-side queue: the push consumer's process queues, or the
        // batch the pulling application holds.
        let queue: Arc<dyn Fn() -> u64 + Send + Sync> = match &consumer {
            Consumer::Push(c) => {
                let probe = c.cache_probe();
                Arc::new(move || probe() as u64)
            }
            Consumer::Pull(..) => Arc::new(move || hand.load(Ordering::Acquire)),
        };
        Sampler::start(ctx.sample(), move || Row {
            t_ms: start.elapsed().as_millis() as u64,
            produced: pr.load(Ordering::Relaxed),
            consumed: t.consumed.load(Ordering::Relaxed),
            backlog: b.total_lag(GROUP, &topic),
            consumer_queue: queue(),
            retried: 0,
            dlq: 0,
        })
    };
    let send = plain_send(&producer, &topic, w.msg_size, &produced);
    let stats = drive(&ctx.plan(), lab.start, send);
    let produce_secs = lab.start.elapsed().as_secs_f64();
    let want = stats.msgs;
    wait_until(ctx.drain_secs(), || tracker.distinct() >= want);
    stop.store(true, Ordering::Release);
    let rows = sampler.finish();
    match consumer {
        Consumer::Push(c) => c.shutdown()?,
        Consumer::Pull(pc, h) => {
            let _ = h.join();
            if let Ok(pc) = Arc::try_unwrap(pc) {
                pc.shutdown()?;
            }
        }
    }
    producer.shutdown();
    drop(producer);
    let produced_by = lab.finish(stats, produce_secs)?;
    Ok(Outcome::from_tracker(
        Experiment::PeakShaving,
        variant,
        produced_by,
        &tracker,
        rows,
    ))
}
