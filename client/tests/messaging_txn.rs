//! Transactions: half messages invisible; commit visible exactly once;
//! rollback never visible; UNKNOWN checked back until answered; never
//! answered: checked 15 times then discarded to TRANS_CHECK_MAX_TIME_TOPIC;
//! the 72-hour rule. Time is a ManualClock: hours pass in microseconds.

mod messaging_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use messaging_support::*;
use mqlab_broker::txn::{CHECK_MAX_TIME_TOPIC, HALF_TOPIC, PROPERTY_TRANSACTION_CHECK_TIMES};
use mqlab_broker::LocalTransactionState as S;
use mqlab_broker::MessageQueue;
use mqlab_client::consumer::pull::PullConsumer;
use mqlab_client::producer::ProducerConfig;
use mqlab_client::transaction::{TransactionListener, TransactionProducer};
use mqlab_engine::clock::ManualClock;
use mqlab_engine::message::StoredMessage;
use mqlab_engine::Message;

/// Local outcome by body; check answers by body too, counting checks.
struct Bank {
    check_answer: Mutex<S>,
    checks: AtomicUsize,
}

impl TransactionListener for Bank {
    fn execute_local(&self, msg: &Message) -> S {
        match &msg.body[..] {
            b"commit" => S::CommitMessage,
            b"rollback" => S::RollbackMessage,
            _ => S::Unknown,
        }
    }
    fn check_local(&self, _msg: &StoredMessage) -> S {
        self.checks.fetch_add(1, Ordering::SeqCst);
        *self.check_answer.lock().unwrap()
    }
}

/// Everything of `topic` a consumer can see, read by a new group each time
/// (so no committed offset hides what an earlier look returned).
fn visible(lab: &Lab, topic: &str) -> Vec<String> {
    static READS: AtomicUsize = AtomicUsize::new(0);
    let group = format!("reader{}", READS.fetch_add(1, Ordering::SeqCst));
    let pc = PullConsumer::assign(
        lab.api(),
        consumer_config(&group, "r"),
        &lab.broker.queues_of(topic),
        "*",
    )
    .unwrap();
    let mut out = Vec::new();
    loop {
        let got = pc.poll(100, Duration::from_millis(30));
        if got.is_empty() {
            break;
        }
        out.extend(
            got.iter()
                .map(|m| String::from_utf8_lossy(&m.body).into_owned()),
        );
    }
    out.sort();
    out
}

fn setup(t: Transport, answer: S) -> (Lab, Arc<ManualClock>, Arc<Bank>, Arc<TransactionProducer>) {
    let clock = ManualClock::new();
    let lab = Lab::manual(t, broker_config(), clock.clone());
    lab.broker.create_topic("Pay", 2).unwrap();
    let bank = Arc::new(Bank {
        check_answer: Mutex::new(answer),
        checks: AtomicUsize::new(0),
    });
    let tp = TransactionProducer::start(
        lab.api(),
        ProducerConfig {
            group: "bank".into(),
            ..ProducerConfig::default()
        },
        bank.clone(),
    );
    (lab, clock, bank, tp)
}

/// Waits until everything put so far is dispatched (the half queue too).
fn settle(lab: &Lab) {
    let end = lab.store.offsets().written;
    wait_for(5, "dispatch", || lab.store.dispatched_offset() >= end);
}

fn wait_checks(bank: &Bank, n: usize) {
    wait_for(5, "check-backs answered", || {
        bank.checks.load(Ordering::SeqCst) >= n
    });
    // The answer (an end) follows the count; let it land.
    std::thread::sleep(Duration::from_millis(20));
}

fn commit_visible_rollback_never(t: Transport) {
    let (lab, _clock, _bank, tp) = setup(t, S::Unknown);
    let c = tp.send_in_transaction(Message::new("Pay", "commit"));
    assert!(c.send.is_ok());
    assert_eq!(c.state, S::CommitMessage);
    let r = tp.send_in_transaction(Message::new("Pay", "rollback"));
    assert_eq!(r.state, S::RollbackMessage);
    let u = tp.send_in_transaction(Message::new("Pay", "unknown"));
    assert_eq!(u.state, S::Unknown);
    wait_for(5, "commit dispatched", || {
        visible(&lab, "Pay") == vec!["commit"]
    });
    // Half messages sit in the half topic only.
    assert_eq!(
        lab.broker.queue_range(&MessageQueue::new(HALF_TOPIC, 0)).1,
        3
    );
    assert_eq!(lab.broker.pending_transactions(), 1, "only the unknown one");
    let round = lab.broker.check_transactions_once().unwrap();
    assert_eq!(round.checked, 0, "younger than the 6 s timeout: {round:?}");
    tp.shutdown();
    drop(tp);
    lab.shutdown();
}

both!(commit_visible_rollback_never);

fn unknown_is_checked_until_answered(t: Transport) {
    let (lab, clock, bank, tp) = setup(t, S::Unknown);
    tp.send_in_transaction(Message::new("Pay", "later"));
    settle(&lab);
    clock.advance(7_000);
    for round in 1..=3 {
        settle(&lab);
        let r = lab.broker.check_transactions_once().unwrap();
        assert_eq!(r.checked, 1, "round {round}: {r:?}");
        wait_checks(&bank, round);
        clock.advance(30_000);
    }
    assert!(visible(&lab, "Pay").is_empty(), "UNKNOWN keeps it pending");
    *bank.check_answer.lock().unwrap() = S::CommitMessage;
    settle(&lab);
    lab.broker.check_transactions_once().unwrap();
    wait_checks(&bank, 4);
    wait_for(5, "committed by check", || {
        visible(&lab, "Pay") == vec!["later"]
    });
    let r = lab.broker.check_transactions_once().unwrap();
    assert_eq!((r.checked, r.discarded), (0, 0), "resolved: {r:?}");
    assert_eq!(lab.broker.pending_transactions(), 0);
    tp.shutdown();
    drop(tp);
    lab.shutdown();
}

both!(unknown_is_checked_until_answered);

fn never_answered_is_discarded_after_15_checks(t: Transport) {
    let (lab, clock, bank, tp) = setup(t, S::Unknown);
    tp.send_in_transaction(Message::new("Pay", "ghost"));
    settle(&lab);
    clock.advance(7_000);
    let mut discarded = 0;
    let mut asked = 0;
    for _ in 0..20 {
        settle(&lab);
        let r = lab.broker.check_transactions_once().unwrap();
        discarded += r.discarded;
        asked += r.checked as usize;
        wait_checks(&bank, asked);
        clock.advance(30_000);
    }
    assert_eq!(bank.checks.load(Ordering::SeqCst), 15);
    assert_eq!(discarded, 1);
    wait_for(5, "discard dispatched", || {
        lab.broker
            .queue_range(&MessageQueue::new(CHECK_MAX_TIME_TOPIC, 0))
            .1
            == 1
    });
    let d = lab
        .store
        .get_from_queue(CHECK_MAX_TIME_TOPIC, 0, 0, 1)
        .unwrap();
    assert_eq!(d[0].body, b"ghost");
    assert_eq!(d[0].properties[PROPERTY_TRANSACTION_CHECK_TIMES], "15");
    assert!(visible(&lab, "Pay").is_empty());
    assert_eq!(lab.broker.pending_transactions(), 0);
    tp.shutdown();
    drop(tp);
    lab.shutdown();
}

both!(never_answered_is_discarded_after_15_checks);

/// Each check round re-appends its half messages and moves the half
/// queue's progress past the originals; a reader of `pending` at any moment
/// must still count every undecided transaction once (it read 0 for a
/// moment when the progress moved before the copies' queue units existed).
fn pending_holds_steady_while_rounds_recheck(t: Transport) {
    let (lab, clock, bank, tp) = setup(t, S::Unknown);
    for i in 0..3 {
        tp.send_in_transaction(Message::new("Pay", format!("open-{i}")));
    }
    settle(&lab);
    assert_eq!(lab.broker.pending_transactions(), 3);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let broker = lab.broker.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (mut reads, mut wrong) = (0u64, Vec::new());
            while !stop.load(Ordering::Acquire) {
                let n = broker.pending_transactions();
                reads += 1;
                if n != 3 && wrong.len() < 10 {
                    wrong.push(n);
                }
            }
            (reads, wrong)
        })
    };
    clock.advance(7_000);
    for round in 1..=10 {
        let r = lab.broker.check_transactions_once().unwrap();
        assert_eq!(r.checked, 3, "round {round}: {r:?}");
        wait_checks(&bank, 3 * round);
        clock.advance(30_000);
    }
    stop.store(true, Ordering::Release);
    let (reads, wrong) = reader.join().unwrap();
    assert!(reads > 0);
    assert!(
        wrong.is_empty(),
        "pending read other than 3 in {reads} reads: {wrong:?}"
    );
    assert_eq!(lab.broker.pending_transactions(), 3);
    tp.shutdown();
    drop(tp);
    lab.shutdown();
}

both!(pending_holds_steady_while_rounds_recheck);

fn seventy_two_hour_rule_discards_unchecked(t: Transport) {
    let (lab, clock, bank, tp) = setup(t, S::CommitMessage);
    tp.send_in_transaction(Message::new("Pay", "ancient"));
    settle(&lab);
    clock.advance(73 * 3_600_000);
    let r = lab.broker.check_transactions_once().unwrap();
    assert_eq!((r.checked, r.discarded), (0, 1), "{r:?}");
    assert_eq!(bank.checks.load(Ordering::SeqCst), 0);
    tp.shutdown();
    drop(tp);
    lab.shutdown();
}

both!(seventy_two_hour_rule_discards_unchecked);

fn check_service_thread_resolves_without_help(t: Transport) {
    // The check thread on a 10 ms period and a 20 ms timeout, wall clock.
    let mut cfg = broker_config();
    cfg.txn.check_enabled = true;
    cfg.txn.check_interval_ms = 10;
    cfg.txn.timeout_ms = 20;
    let lab = Lab::with(t, cfg);
    let bank = Arc::new(Bank {
        check_answer: Mutex::new(S::CommitMessage),
        checks: AtomicUsize::new(0),
    });
    let tp = TransactionProducer::start(
        lab.api(),
        ProducerConfig {
            group: "bank2".into(),
            ..ProducerConfig::default()
        },
        bank.clone(),
    );
    for i in 0..10 {
        tp.send_in_transaction(Message::new("Pay2", format!("u{i}")));
    }
    wait_for(10, "all 10 committed by checks", || {
        let mut v = visible(&lab, "Pay2");
        v.dedup();
        v.len() == 10
    });
    assert!(bank.checks.load(Ordering::SeqCst) >= 10);
    tp.shutdown();
    drop(tp);
    lab.shutdown();
}

both!(check_service_thread_resolves_without_help);
