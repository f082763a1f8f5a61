//! Retry: a consumer fails a share of deliveries (RECONSUME_LATER); failed
//! messages travel through %RETRY%{group} with delay level 3 + reconsume
//! count (the levels scheduler) and reach %DLQ%{group} after
//! `max_reconsume` reconsumes. Variant `fail-N` fails N % of deliveries,
//! each delivery decided by a seeded hash of (message, attempt).
//!
//! Figures: retry traffic (`retry_messages`), DLQ arrivals, end-to-end
//! latency of all and of retried messages.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use mqlab_broker::{dlq_topic, MessageQueue};
use mqlab_client::consumer::push::PushConsumer;
use mqlab_client::consumer::{ConsumeFromWhere, ConsumeStatus, ConsumerConfig, Listener};
use mqlab_client::producer::{Producer, ProducerConfig};
use mqlab_engine::StoredMessage;

use super::drive::{drive, plain_send};
use super::lab::{wait_until, Ctx, Outcome};
use super::series::{Row, Sampler};
use super::spec::Experiment;
use super::tracker::{parse_body, Tracker};

const GROUP: &str = "retry";

fn fails(seed: u64, key: u32, step: u64, attempt: i32, percent: f64) -> bool {
    let mut x = seed ^ ((key as u64) << 40) ^ step ^ ((attempt as u64) << 56);
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    (x % 10_000) < (percent * 100.0) as u64
}

pub fn run(ctx: &Ctx<'_>, variant: &str) -> Result<Outcome> {
    let (w, m) = (ctx.w, ctx.m);
    let percent = match m.fail_percent {
        Some(p) => p,
        None => match variant.strip_prefix("fail-").map(str::parse::<f64>) {
            Some(Ok(p)) => p,
            _ => bail!("retry variants are named fail-<percent>, not {variant:?}"),
        },
    };
    let mut bcfg = ctx.broker_config();
    bcfg.delay_levels_ms = match &m.retry_levels {
        Some(l) => mqlab_engine::delay::parse_levels(l).context("retry_levels")?,
        None => mqlab_engine::delay::default_levels_ms()
            .into_iter()
            .map(|ms| (ms / 100).max(1))
            .collect(),
    };
    let lab = ctx.lab(bcfg)?;
    let topic = w.topic.clone();
    lab.broker.create_topic(&topic, w.queues)?;
    let tracker = Arc::new(Tracker::new(lab.start));
    let failed = Arc::new(AtomicU64::new(0));
    let seed = m.seed.unwrap_or(1);
    let mut cfg = ConsumerConfig::new(GROUP);
    cfg.from_where = ConsumeFromWhere::FirstOffset;
    cfg.consume_threads = 8;
    cfg.max_reconsume_times = m.max_reconsume.unwrap_or(16);
    let consumer = {
        let (t, f) = (tracker.clone(), failed.clone());
        PushConsumer::start(
            lab.broker.clone(),
            cfg,
            &[(&topic, "*")],
            Listener::concurrently(move |msgs: &[StoredMessage], _| {
                let msg = &msgs[0];
                t.delivery();
                let Some((k, s, _)) = parse_body(&msg.body) else {
                    return ConsumeStatus::ConsumeSuccess;
                };
                if fails(seed, k, s, msg.reconsume_times, percent) {
                    f.fetch_add(1, Ordering::Relaxed);
                    return ConsumeStatus::ReconsumeLater;
                }
                t.success(&msg.body, msg.reconsume_times > 0);
                ConsumeStatus::ConsumeSuccess
            }),
        )?
    };
    let producer = Producer::new(lab.broker.clone(), ProducerConfig::default());
    let produced = Arc::new(AtomicU64::new(0));
    let dlq = MessageQueue::new(dlq_topic(GROUP), 0);
    let sampler = {
        let (b, t, pr, topic, start, dlq) = (
            lab.broker.clone(),
            tracker.clone(),
            produced.clone(),
            topic.clone(),
            lab.start,
            dlq.clone(),
        );
        Sampler::start(ctx.sample(), move || Row {
            t_ms: start.elapsed().as_millis() as u64,
            produced: pr.load(Ordering::Relaxed),
            consumed: t.consumed.load(Ordering::Relaxed),
            backlog: b.total_lag(GROUP, &topic),
            consumer_queue: 0,
            retried: b.stats.retried.load(Ordering::Relaxed),
            dlq: b.queue_range(&dlq).1,
        })
    };
    let send = plain_send(&producer, &topic, w.msg_size, &produced);
    let stats = drive(&ctx.plan(), lab.start, send);
    let produce_secs = lab.start.elapsed().as_secs_f64();
    let want = stats.msgs;
    wait_until(ctx.drain_secs(), || {
        tracker.distinct() + lab.broker.queue_range(&dlq).1 >= want
    });
    let rows = sampler.finish();
    consumer.shutdown()?;
    producer.shutdown();
    drop(producer);
    let produced_by = lab.finish(stats, produce_secs)?;
    let mut o = Outcome::from_tracker(Experiment::Retry, variant, produced_by, &tracker, rows);
    o.figures.extra.insert("fail_percent".into(), percent);
    o.figures.extra.insert(
        "failed_deliveries".into(),
        failed.load(Ordering::Relaxed) as f64,
    );
    Ok(o)
}
