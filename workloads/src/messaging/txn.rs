//! Transactions: what half message + commit costs against a plain send,
//! and how long a transaction takes to resolve when its outcome is not
//! known at once.
//!
//! - plain: ordinary sync sends.
//! - txn: transactional sends; `unknown_percent` of local transactions
//!   answer UNKNOWN and are resolved by the check service (the producer
//!   answers COMMIT when checked).
//! - txn-unanswered: the same, but for `unanswered_percent` of the unknown
//!   ones the producer never answers the check: they are checked
//!   `check_max` times and discarded to TRANS_CHECK_MAX_TIME_TOPIC.
//!
//! `txn_resolution_ms` is send to resolution (the commit visible to a
//! consumer, or the discard) of the transactions that started UNKNOWN.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Result};
use mqlab_broker::txn::CHECK_MAX_TIME_TOPIC;
use mqlab_broker::LocalTransactionState;
use mqlab_broker::MessageQueue;
use mqlab_client::consumer::pull::PullConsumer;
use mqlab_client::consumer::push::PushConsumer;
use mqlab_client::consumer::{ConsumeFromWhere, ConsumeStatus, ConsumerConfig, Listener};
use mqlab_client::producer::{Producer, ProducerConfig};
use mqlab_client::transaction::{TransactionListener, TransactionProducer};
use mqlab_engine::{Message, StoredMessage};

use crate::recorder::{latency_hist, LatencySummary};

use super::drive::drive;
use super::lab::{wait_until, Ctx, Outcome};
use super::series::{Row, Sampler};
use super::spec::Experiment;
use super::tracker::{body, parse_body, Tracker};

const GROUP: &str = "txn-observer";

/// Deterministic per-message choice: true for `percent` % of (key, step).
fn chosen(seed: u64, salt: u64, key: u32, step: u64, percent: f64) -> bool {
    let mut x = seed ^ salt ^ ((key as u64) << 40) ^ step;
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    (x % 10_000) < (percent * 100.0) as u64
}

struct Outcomes {
    seed: u64,
    unknown_percent: f64,
    unanswered_percent: f64,
    answers: bool,
    checks: AtomicU64,
}

impl Outcomes {
    fn unknown(&self, b: &[u8]) -> bool {
        parse_body(b).is_some_and(|(k, s, _)| chosen(self.seed, 1, k, s, self.unknown_percent))
    }
    fn unanswered(&self, b: &[u8]) -> bool {
        !self.answers
            && parse_body(b)
                .is_some_and(|(k, s, _)| chosen(self.seed, 2, k, s, self.unanswered_percent))
    }
}

impl TransactionListener for Outcomes {
    fn execute_local(&self, msg: &Message) -> LocalTransactionState {
        if self.unknown(&msg.body) {
            LocalTransactionState::Unknown
        } else {
            LocalTransactionState::CommitMessage
        }
    }

    fn check_local(&self, msg: &StoredMessage) -> LocalTransactionState {
        self.checks.fetch_add(1, Ordering::Relaxed);
        if self.unanswered(&msg.body) {
            LocalTransactionState::Unknown
        } else {
            LocalTransactionState::CommitMessage
        }
    }
}

pub fn run(ctx: &Ctx<'_>, variant: &str) -> Result<Outcome> {
    let (w, m) = (ctx.w, ctx.m);
    let (txn, answers_all) = match variant {
        "plain" => (false, true),
        "txn" => (true, true),
        "txn-unanswered" => (true, false),
        other => bail!("transactions variants are plain, txn, txn-unanswered, not {other:?}"),
    };
    let mut bcfg = ctx.broker_config();
    bcfg.txn.check_interval_ms = m.check_interval_ms.unwrap_or(500).max(1);
    bcfg.txn.timeout_ms = m.txn_timeout_ms.unwrap_or(300);
    bcfg.txn.check_max = m.check_max.unwrap_or(5);
    let lab = ctx.lab(bcfg)?;
    let topic = w.topic.clone();
    lab.broker.create_topic(&topic, w.queues)?;
    let tracker = Arc::new(Tracker::new(lab.start));
    let outcomes = Arc::new(Outcomes {
        seed: m.seed.unwrap_or(1),
        unknown_percent: if txn {
            m.unknown_percent.unwrap_or(10.0)
        } else {
            0.0
        },
        unanswered_percent: m.unanswered_percent.unwrap_or(50.0),
        answers: answers_all,
        checks: AtomicU64::new(0),
    });
    let resolution = Arc::new(Mutex::new(latency_hist()));
    let mut cfg = ConsumerConfig::new(GROUP);
    cfg.from_where = ConsumeFromWhere::FirstOffset;
    cfg.consume_threads = 4;
    let observer = {
        let (t, o, res) = (tracker.clone(), outcomes.clone(), resolution.clone());
        PushConsumer::start(
            lab.broker.clone(),
            cfg,
            &[(&topic, "*")],
            Listener::concurrently(move |msgs: &[StoredMessage], _| {
                for msg in msgs {
                    t.delivery();
                    t.success(&msg.body, false);
                    if o.unknown(&msg.body) {
                        if let Some((_, _, sent)) = parse_body(&msg.body) {
                            let ms = t.now_us().saturating_sub(sent) / 1000;
                            res.lock().unwrap().saturating_record(ms.max(1));
                        }
                    }
                }
                ConsumeStatus::ConsumeSuccess
            }),
        )?
    };
    // Discards, watched from their topic.
    let discarded = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    lab.broker.create_topic(CHECK_MAX_TIME_TOPIC, 1)?;
    let watcher = {
        let mut wcfg = ConsumerConfig::new("txn-discard-watcher");
        wcfg.from_where = ConsumeFromWhere::FirstOffset;
        let pc = PullConsumer::assign(
            lab.broker.clone(),
            wcfg,
            &[MessageQueue::new(CHECK_MAX_TIME_TOPIC, 0)],
            "*",
        )?;
        let (t, res, d, s) = (
            tracker.clone(),
            resolution.clone(),
            discarded.clone(),
            stop.clone(),
        );
        std::thread::spawn(move || {
            while !s.load(Ordering::Acquire) {
                for msg in pc.poll(64, Duration::from_millis(50)) {
                    if let Some((_, _, sent)) = parse_body(&msg.body) {
                        let ms = t.now_us().saturating_sub(sent) / 1000;
                        res.lock().unwrap().saturating_record(ms.max(1));
                    }
                    d.fetch_add(1, Ordering::Relaxed);
                }
            }
            let _ = pc.shutdown();
        })
    };
    let produced = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (b, t, pr, topic, start) = (
            lab.broker.clone(),
            tracker.clone(),
            produced.clone(),
            topic.clone(),
            lab.start,
        );
        Sampler::start(ctx.sample(), move || Row {
            t_ms: start.elapsed().as_millis() as u64,
            produced: pr.load(Ordering::Relaxed),
            consumed: t.consumed.load(Ordering::Relaxed),
            backlog: b.total_lag(GROUP, &topic) + b.pending_transactions(),
            ..Row::default()
        })
    };
    let pcfg = ProducerConfig {
        group: "txn-producers".into(),
        ..ProducerConfig::default()
    };
    let size = w.msg_size;
    let (send, tp, plain): (super::drive::SendFn, _, _) = if txn {
        let tp = TransactionProducer::start(lab.broker.clone(), pcfg, outcomes.clone());
        let (tp2, topic, produced) = (tp.clone(), topic.clone(), produced.clone());
        (
            Arc::new(move |slot, seq, sent_us| {
                let r = tp2.send_in_transaction(Message::new(
                    topic.clone(),
                    body(slot, seq, sent_us, size),
                ));
                if r.send.is_ok() {
                    produced.fetch_add(1, Ordering::Relaxed);
                }
                r.send.status
            }),
            Some(tp),
            None,
        )
    } else {
        let p = Producer::new(lab.broker.clone(), pcfg);
        let (p2, topic, produced) = (p.clone(), topic.clone(), produced.clone());
        (
            Arc::new(move |slot, seq, sent_us| {
                let r = p2.send(Message::new(topic.clone(), body(slot, seq, sent_us, size)));
                if r.is_ok() {
                    produced.fetch_add(1, Ordering::Relaxed);
                }
                r.status
            }),
            None,
            Some(p),
        )
    };
    let stats = drive(&ctx.plan(), lab.start, send);
    let produce_secs = lab.start.elapsed().as_secs_f64();
    let want = stats.msgs;
    wait_until(ctx.drain_secs(), || {
        tracker.distinct() + discarded.load(Ordering::Relaxed) >= want
    });
    let rows = sampler.finish();
    stop.store(true, Ordering::Release);
    let _ = watcher.join();
    observer.shutdown()?;
    if let Some(tp) = tp {
        tp.shutdown();
    }
    if let Some(p) = plain {
        p.shutdown();
    }
    let stats_txn = lab.broker.txn_stats();
    let (checks_sent, discards) = (
        stats_txn.checks_sent.load(Ordering::Relaxed),
        stats_txn.discarded.load(Ordering::Relaxed),
    );
    let produced_by = lab.finish(stats, produce_secs)?;
    let mut o = Outcome::from_tracker(
        Experiment::Transactions,
        variant,
        produced_by,
        &tracker,
        rows,
    );
    let res = resolution.lock().unwrap().clone();
    if txn {
        o.figures.txn_resolution_ms = Some(LatencySummary::of(&res));
    }
    let e = &mut o.figures.extra;
    e.insert("checks_sent".into(), checks_sent as f64);
    e.insert("discarded".into(), discards as f64);
    e.insert(
        "check_answers".into(),
        outcomes.checks.load(Ordering::Relaxed) as f64,
    );
    Ok(o)
}
