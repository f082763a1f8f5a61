//! Broadcast: the same consumers in clustering mode (each message once to
//! the group) and in broadcasting mode (each message to every consumer):
//! what the fan-out costs in delivery rate and latency.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{bail, Result};
use mqlab_client::consumer::push::PushConsumer;
use mqlab_client::consumer::{
    ConsumeFromWhere, ConsumeStatus, ConsumerConfig, Listener, MessageModel,
};
use mqlab_client::producer::{Producer, ProducerConfig};
use mqlab_engine::StoredMessage;

use super::drive::{drive, plain_send};
use super::lab::{wait_until, Ctx, Outcome};
use super::series::{Row, Sampler};
use super::spec::Experiment;
use super::tracker::Tracker;

const GROUP: &str = "fanout";

pub fn run(ctx: &Ctx<'_>, variant: &str) -> Result<Outcome> {
    let (w, m) = (ctx.w, ctx.m);
    let model = match variant {
        "clustering" => MessageModel::Clustering,
        "broadcasting" => MessageModel::Broadcasting,
        other => bail!("broadcast variants are clustering and broadcasting, not {other:?}"),
    };
    let lab = ctx.lab(ctx.broker_config())?;
    let topic = w.topic.clone();
    lab.broker.create_topic(&topic, w.queues)?;
    let n = m.consumers.unwrap_or(3).max(1);
    // One tracker per consumer (broadcasting: each must see everything).
    let trackers: Vec<Arc<Tracker>> = (0..n).map(|_| Arc::new(Tracker::new(lab.start))).collect();
    // All deliveries, for the group-wide e2e figures.
    let all = Arc::new(Tracker::new(lab.start));
    let mut consumers = Vec::new();
    for (i, t) in trackers.iter().enumerate() {
        let mut cfg = ConsumerConfig::new(GROUP);
        cfg.client_id = format!("fan-{i}");
        cfg.model = model;
        cfg.from_where = ConsumeFromWhere::FirstOffset;
        cfg.consume_threads = 4;
        let (t, a) = (t.clone(), all.clone());
        consumers.push(PushConsumer::start(
            lab.broker.clone(),
            cfg,
            &[(&topic, "*")],
            Listener::concurrently(move |msgs: &[StoredMessage], _| {
                for msg in msgs {
                    t.delivery();
                    t.success(&msg.body, false);
                    a.delivery();
                    // Group-wide: a second consumer's copy counts as a
                    // duplicate here; per-consumer trackers judge fan-out.
                    a.success(&msg.body, false);
                }
                ConsumeStatus::ConsumeSuccess
            }),
        )?);
    }
    let producer = Producer::new(lab.broker.clone(), ProducerConfig::default());
    let produced = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (t, pr, start) = (all.clone(), produced.clone(), lab.start);
        Sampler::start(ctx.sample(), move || {
            let p = pr.load(Ordering::Relaxed);
            let c = t.consumed.load(Ordering::Relaxed);
            Row {
                t_ms: start.elapsed().as_millis() as u64,
                produced: p,
                consumed: c,
                backlog: (p * if model == MessageModel::Broadcasting {
                    n as u64
                } else {
                    1
                })
                .saturating_sub(c),
                ..Row::default()
            }
        })
    };
    let send = plain_send(&producer, &topic, w.msg_size, &produced);
    let stats = drive(&ctx.plan(), lab.start, send);
    let produce_secs = lab.start.elapsed().as_secs_f64();
    let want = stats.msgs;
    wait_until(ctx.drain_secs(), || match model {
        MessageModel::Broadcasting => trackers.iter().all(|t| t.distinct() >= want),
        MessageModel::Clustering => all.distinct() >= want,
    });
    let rows = sampler.finish();
    for c in consumers {
        c.shutdown()?;
    }
    producer.shutdown();
    drop(producer);
    let produced_by = lab.finish(stats, produce_secs)?;
    let per_consumer_dups: u64 = trackers
        .iter()
        .map(|t| t.duplicates.load(Ordering::Relaxed))
        .sum();
    let mut o = Outcome::from_tracker(Experiment::Broadcast, variant, produced_by, &all, rows);
    // Duplicates: deliveries a consumer had already seen (fan-out copies
    // to other consumers are the point of broadcasting, not duplicates).
    o.figures.duplicates = per_consumer_dups;
    let fanout = o.figures.consumed as f64 / o.figures.produced.max(1) as f64;
    o.figures.extra.insert("consumers".into(), n as f64);
    o.figures
        .extra
        .insert("deliveries_per_message".into(), fanout);
    Ok(o)
}
