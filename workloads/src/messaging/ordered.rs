//! Ordered vs concurrent consumption while the group's membership churns
//! (every `churn_ms` the oldest member leaves and a new one joins, so
//! queues keep moving between members).
//!
//! - concurrent: a pool of consume threads per member; no order promise.
//! - orderly: broker lock per (group, queue), one consume thread per
//!   queue, process-queue lock held around each batch.
//! - orderly-no-pq-lock: the same without the process-queue lock: a
//!   rebalance may hand a queue over mid-batch, and the next owner consumes
//!   that batch again.
//!
//! Messages of one sharding key go to one queue (hash selector), each key's
//! steps in order, so `out_of_order` counts first deliveries of a step after
//! a later step of its key, and `duplicates` second deliveries.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Result};
use mqlab_client::consumer::push::PushConsumer;
use mqlab_client::consumer::{
    ConsumeFromWhere, ConsumeStatus, ConsumerConfig, Listener, OrderlyStatus,
};
use mqlab_client::producer::{HashKey, Producer, ProducerConfig};
use mqlab_engine::{Message, StoredMessage};

use super::drive::drive;
use super::lab::{wait_until, Ctx, Outcome};
use super::series::{Row, Sampler};
use super::spec::Experiment;
use super::tracker::{body, Tracker};

const GROUP: &str = "ordered";

fn spin(us: u64) {
    if us > 0 {
        std::thread::sleep(Duration::from_micros(us));
    }
}

/// How the members consume.
#[derive(Clone, Copy)]
struct Shape {
    orderly: bool,
    pq_lock: bool,
    process_us: u64,
}

/// A member of `group` consuming `topic`.
fn member(
    b: &Arc<mqlab_broker::Broker>,
    group: &str,
    topic: &str,
    client: &str,
    shape: Shape,
    t: Arc<Tracker>,
) -> Result<PushConsumer> {
    let mut cfg = ConsumerConfig::new(group);
    cfg.client_id = client.to_string();
    cfg.from_where = ConsumeFromWhere::FirstOffset;
    cfg.consume_threads = 4;
    cfg.rebalance_interval_ms = 1_000;
    cfg.lock_renew_interval_ms = 1_000;
    cfg.process_queue_lock = shape.pq_lock;
    cfg.pull_suspend_ms = 1_000;
    let process_us = shape.process_us;
    let listener = if shape.orderly {
        Listener::orderly(move |msgs: &[StoredMessage], _| {
            for msg in msgs {
                spin(process_us);
                t.delivery();
                t.success(&msg.body, false);
            }
            OrderlyStatus::Success
        })
    } else {
        Listener::concurrently(move |msgs: &[StoredMessage], _| {
            for msg in msgs {
                spin(process_us);
                t.delivery();
                t.success(&msg.body, false);
            }
            ConsumeStatus::ConsumeSuccess
        })
    };
    Ok(PushConsumer::start(
        b.clone(),
        cfg,
        &[(topic, "*")],
        listener,
    )?)
}

/// Consumption capacity: `capacity_messages` sharded messages stored
/// first, then the members (no churn) drain them; messages per second.
fn capacity(ctx: &Ctx<'_>, lab: &super::lab::Lab, shape: Shape) -> Result<f64> {
    let (w, m) = (ctx.w, ctx.m);
    let n = m.capacity_messages.unwrap_or(20_000);
    if n == 0 {
        return Ok(0.0);
    }
    let topic = format!("{}-capacity", w.topic);
    lab.broker.create_topic(&topic, w.queues)?;
    let keys = m.keys.unwrap_or(64).max(1);
    let producer = Producer::new(lab.broker.clone(), ProducerConfig::default());
    for i in 0..n {
        let key = (i % keys as u64) as u32;
        producer.send_with_selector(
            Message::new(topic.clone(), body(key, i / keys as u64, 0, w.msg_size)),
            &HashKey,
            &format!("key-{key}"),
        );
    }
    producer.shutdown();
    let end = lab.store.offsets().written;
    wait_until(10.0, || lab.store.dispatched_offset() >= end);
    let t = Arc::new(Tracker::new(std::time::Instant::now()));
    let started = std::time::Instant::now();
    let members = (0..m.consumers.unwrap_or(3).max(1))
        .map(|i| {
            member(
                &lab.broker,
                "ordered-capacity",
                &topic,
                &format!("cap-{i}"),
                shape,
                t.clone(),
            )
        })
        .collect::<Result<Vec<_>>>()?;
    wait_until(ctx.drain_secs(), || t.distinct() >= n);
    let secs = started.elapsed().as_secs_f64();
    for c in members {
        c.shutdown()?;
    }
    Ok(crate::table::round3(t.distinct() as f64 / secs.max(1e-9)))
}

pub fn run(ctx: &Ctx<'_>, variant: &str) -> Result<Outcome> {
    let (w, m) = (ctx.w, ctx.m);
    let (orderly, pq_lock) = match variant {
        "concurrent" => (false, true),
        "orderly" => (true, true),
        "orderly-no-pq-lock" => (true, false),
        other => {
            bail!("ordered variants are concurrent, orderly, orderly-no-pq-lock, not {other:?}")
        }
    };
    let process_us = m.process_us.unwrap_or(200);
    let shape = Shape {
        orderly,
        pq_lock,
        process_us,
    };
    // Capacity first, on its own store, so the timed run starts clean.
    let drain_msgs_per_s = {
        let cap = ctx.lab(ctx.broker_config())?;
        let r = capacity(ctx, &cap, shape)?;
        cap.close()?;
        r
    };
    let lab = ctx.lab(ctx.broker_config())?;
    let topic = w.topic.clone();
    lab.broker.create_topic(&topic, w.queues)?;
    let tracker = Arc::new(Tracker::new(lab.start));
    let seq_no = Arc::new(AtomicU64::new(0));
    let rebalances = Arc::new(AtomicU64::new(0));
    let start_member = {
        let (b, t, topic, seq_no) = (
            lab.broker.clone(),
            tracker.clone(),
            topic.clone(),
            seq_no.clone(),
        );
        move || -> Result<PushConsumer> {
            let client = format!("member-{}", seq_no.fetch_add(1, Ordering::Relaxed));
            member(&b, GROUP, &topic, &client, shape, t.clone())
        }
    };
    let members: Arc<Mutex<VecDeque<PushConsumer>>> = Arc::default();
    for _ in 0..m.consumers.unwrap_or(3).max(1) {
        members.lock().unwrap().push_back(start_member()?);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let churn = {
        let (members, stop, rebalances) = (members.clone(), stop.clone(), rebalances.clone());
        let every = Duration::from_millis(m.churn_ms.unwrap_or(1_000).max(10));
        std::thread::spawn(move || -> Result<()> {
            loop {
                let deadline = std::time::Instant::now() + every;
                while std::time::Instant::now() < deadline {
                    if stop.load(Ordering::Acquire) {
                        return Ok(());
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                let old = members.lock().unwrap().pop_front();
                if let Some(old) = old {
                    old.shutdown()?;
                }
                members.lock().unwrap().push_back(start_member()?);
                rebalances.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let producer = Producer::new(lab.broker.clone(), ProducerConfig::default());
    let produced = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (b, t, pr, topic, start, members) = (
            lab.broker.clone(),
            tracker.clone(),
            produced.clone(),
            topic.clone(),
            lab.start,
            members.clone(),
        );
        Sampler::start(ctx.sample(), move || Row {
            t_ms: start.elapsed().as_millis() as u64,
            produced: pr.load(Ordering::Relaxed),
            consumed: t.consumed.load(Ordering::Relaxed),
            backlog: b.total_lag(GROUP, &topic),
            consumer_queue: members
                .lock()
                .unwrap()
                .iter()
                .map(|c| c.cached() as u64)
                .sum(),
            ..Row::default()
        })
    };
    let keys = m.keys.unwrap_or(64).max(1);
    let threads = w.producers.max(1) as u32;
    let send = {
        let (p, topic, size, produced) = (
            producer.clone(),
            topic.clone(),
            w.msg_size,
            produced.clone(),
        );
        Arc::new(move |slot: u32, seq: u64, sent_us: u64| {
            // Thread `slot` owns keys slot, slot + threads, ...: each key's
            // steps leave one thread, in order.
            let mine = (keys.saturating_sub(slot)).div_ceil(threads).max(1) as u64;
            let key = slot + threads * (seq % mine) as u32;
            let step = seq / mine;
            let r = p.send_with_selector(
                Message::new(topic.clone(), body(key, step, sent_us, size)),
                &HashKey,
                &format!("key-{key}"),
            );
            if r.is_ok() {
                produced.fetch_add(1, Ordering::Relaxed);
            }
            r.status
        })
    };
    let stats = drive(&ctx.plan(), lab.start, send);
    let produce_secs = lab.start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Release);
    churn
        .join()
        .map_err(|_| anyhow::anyhow!("churn thread panicked"))??;
    let want = stats.msgs;
    wait_until(ctx.drain_secs(), || tracker.distinct() >= want);
    let rows = sampler.finish();
    let left: Vec<PushConsumer> = members.lock().unwrap().drain(..).collect();
    for c in left {
        c.shutdown()?;
    }
    producer.shutdown();
    drop(producer);
    let produced_by = lab.finish(stats, produce_secs)?;
    let mut o = Outcome::from_tracker(Experiment::Ordered, variant, produced_by, &tracker, rows);
    o.figures.extra.insert(
        "membership_changes".into(),
        rebalances.load(Ordering::Relaxed) as f64,
    );
    o.figures
        .extra
        .insert("process_us".into(), process_us as f64);
    o.figures
        .extra
        .insert("drain_msgs_per_s".into(), drain_msgs_per_s);
    Ok(o)
}
