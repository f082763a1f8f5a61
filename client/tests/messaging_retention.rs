//! Retention: expired commit-log segments deleted at the delete hour or
//! when space runs short, forced deletion at 85 %, writes refused at 90 %
//! with a clear status and accepted again once space is freed; consume
//! queues follow the commit log's new first offset, consumers below it are
//! moved up, and the store reopens on what is left.
//!
//! Local only: no client is involved (the store and broker are driven
//! directly), so there is nothing to run over TCP.

mod messaging_support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use messaging_support::*;
use mqlab_broker::{Broker, MessageQueue, PullRequest, PullStatus};
use mqlab_engine::clock::{self, ManualClock};
use mqlab_engine::retention::{DiskUsage, QuotaUsage, Retention, RetentionConfig};
use mqlab_engine::{Message, PutStatus, Store};

/// A disk usage a test sets by hand (per mille).
struct Dial(Arc<AtomicU64>);

impl DiskUsage for Dial {
    fn name(&self) -> &'static str {
        "dial"
    }
    fn used_ratio(&self, _: &Store) -> std::io::Result<f64> {
        Ok(self.0.load(Ordering::SeqCst) as f64 / 1000.0)
    }
}

fn fill(lab: &Lab, n: usize) {
    for i in 0..n {
        let r = lab
            .broker
            .put(&Message::new("Big", vec![i as u8; 2000]).with_queue((i % 2) as u32));
        assert!(r.is_ok(), "{r:?}");
    }
    let end = lab.store.offsets().written;
    wait_for(5, "flushed and dispatched", || {
        lab.store.offsets().flushed >= end && lab.store.dispatched_offset() >= end
    });
}

/// A clock at 04:00 UTC today-ish, after the store's wall-clock writes.
fn clock_at_hour(h: i64, days_later: i64) -> Arc<ManualClock> {
    let now = clock::wall_ms();
    let day = now - now.rem_euclid(86_400_000);
    ManualClock::at(day + (days_later * 24 + h) * 3_600_000)
}

#[test]
fn expired_segments_go_at_the_delete_hour() {
    let lab = Lab::new(Transport::Local);
    fill(&lab, 400);
    let segs = lab.store.segment_bases().len();
    assert!(segs >= 5, "{segs} segments");
    // Two days later at 03:00: expired? no (72 h). Four days later at
    // 03:00: expired but not the delete hour. At 04:00: deleted.
    let cfg = RetentionConfig::default();
    let usage = || {
        Box::new(QuotaUsage {
            capacity_bytes: 1 << 40,
        })
    };
    let once = |h, days| {
        Retention::new(
            lab.store.clone(),
            cfg.clone(),
            clock_at_hour(h, days),
            usage(),
        )
        .unwrap()
        .run_once()
        .unwrap()
    };
    assert_eq!(once(4, 2).segments_removed, 0, "not expired yet");
    assert_eq!(once(3, 4).reason, "", "not the delete hour");
    let run = once(4, 4);
    assert_eq!(run.reason, "time");
    assert_eq!(run.segments_removed, segs - 1, "all but the active segment");
    let min = lab.store.min_offset();
    assert_eq!(lab.store.segment_bases(), vec![min]);
    // Queues moved past the deleted messages.
    for q in 0..2 {
        let mq = MessageQueue::new("Big", q);
        let (qmin, qmax) = lab.broker.queue_range(&mq);
        assert!(qmin > 0 && qmin <= qmax);
        let first = lab.store.get_from_queue("Big", q, qmin, 1).unwrap();
        assert!(first[0].phys_offset >= min);
        // A consumer below the first offset is moved up.
        let r = lab
            .broker
            .pull(
                &PullRequest {
                    mq: mq.clone(),
                    offset: 0,
                    max_msgs: 8,
                    filter: None,
                    suspend_ms: 0,
                },
                None,
            )
            .unwrap();
        assert_eq!((r.status, r.next_offset), (PullStatus::OffsetIllegal, qmin));
    }
    // The store reopens on what is left and keeps appending.
    let dir = lab.dir;
    lab.broker.shutdown().unwrap();
    drop(lab.broker);
    Arc::try_unwrap(lab.store).unwrap().shutdown().unwrap();
    let store = Arc::new(Store::open(dir.path(), store_config()).unwrap());
    assert_eq!(store.min_offset(), min);
    let info = store.queue_info("Big", 0).unwrap();
    assert!(info.min_offset > 0, "{info:?}");
    assert!(store.put(&Message::new("Big", "after")).is_ok());
    let broker = Broker::open(store.clone(), broker_config(), clock::system()).unwrap();
    broker.shutdown().unwrap();
    drop(broker);
    Arc::try_unwrap(store).unwrap().shutdown().unwrap();
}

#[test]
fn disk_full_refuses_writes_until_space_is_freed() {
    let lab = Lab::new(Transport::Local);
    fill(&lab, 200);
    let dial = Arc::new(AtomicU64::new(500));
    let clock = clock_at_hour(12, 0);
    let r = Retention::new(
        lab.store.clone(),
        RetentionConfig::default(),
        clock,
        Box::new(Dial(dial.clone())),
    )
    .unwrap();
    let segs = lab.store.segment_bases().len();
    // 50 %, noon, nothing expired: nothing to do.
    assert_eq!(r.run_once().unwrap().reason, "");
    // 80 %: over 75 %, but nothing is expired.
    dial.store(800, Ordering::SeqCst);
    let run = r.run_once().unwrap();
    assert_eq!((run.reason.as_str(), run.segments_removed), ("space", 0));
    // 95 %: writes refused, with the reason; deletion forced.
    dial.store(950, Ordering::SeqCst);
    let run = r.run_once().unwrap();
    assert!(run.disk_full);
    assert_eq!(run.reason, "forced");
    assert!(run.segments_removed > 0 && run.segments_removed < segs);
    let put = lab.broker.put(&Message::new("Big", "x"));
    assert_eq!(put.status, PutStatus::ServiceNotAvailable);
    let detail = put.detail.unwrap();
    assert!(detail.contains("disk full"), "{detail}");
    // Space freed: accepted again.
    dial.store(600, Ordering::SeqCst);
    assert!(!r.run_once().unwrap().disk_full);
    assert!(lab.broker.put(&Message::new("Big", "y")).is_ok());
    drop(r);
    lab.shutdown();
}

#[test]
fn quota_usage_counts_segments() {
    let lab = Lab::new(Transport::Local);
    fill(&lab, 100);
    let segs = lab.store.segment_bases().len() as u64;
    let q = QuotaUsage {
        capacity_bytes: segs * lab.store.segment_bytes() * 2,
    };
    assert!((q.used_ratio(&lab.store).unwrap() - 0.5).abs() < 1e-9);
    lab.shutdown();
}

#[test]
fn deletion_keeps_the_active_segment_and_survives_a_crash() {
    let lab = Lab::new(Transport::Local);
    fill(&lab, 300);
    let bases = lab.store.segment_bases();
    let removed = lab.store.delete_segments_before(u64::MAX).unwrap();
    assert!(!removed.is_empty());
    assert_eq!(lab.store.segment_bases(), vec![*bases.last().unwrap()]);
    let min = lab.store.min_offset();
    assert!(matches!(
        lab.store.get(bases[0]),
        Err(mqlab_engine::Error::NotFound(_))
    ));
    // Queue reads clamp to what is left.
    let first = lab.store.get_from_queue("Big", 0, 0, 1).unwrap();
    assert!(first[0].phys_offset >= min);
    // More writes, then a crash (no shutdown): recovery starts from the
    // first remaining segment and keeps everything acknowledged.
    for i in 0..50 {
        assert!(lab
            .broker
            .put(&Message::new("Big", vec![i as u8; 100]))
            .is_ok());
    }
    let end = lab.store.offsets().written;
    wait_for(5, "flushed", || lab.store.offsets().flushed >= end);
    let lab = lab.crash_and_reopen(broker_config());
    assert!(lab.store.recovery_report().abnormal);
    assert_eq!(lab.store.min_offset(), min);
    assert_eq!(lab.store.offsets().written, end);
    let (qmin, qmax) = lab.broker.queue_range(&MessageQueue::new("Big", 0));
    let msgs = lab.store.get_from_queue("Big", 0, qmin, 1_000).unwrap();
    assert_eq!(msgs.len() as u64, qmax - qmin);
    assert!(msgs.iter().all(|m| m.phys_offset >= min));
    lab.shutdown();
}
