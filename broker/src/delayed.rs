//! How the broker sends a message that must arrive later (retries to
//! `%RETRY%{group}` with delay level 3 + reconsume count).
//!
//! One trait, [`DelayedSend`], so the broker does not care who keeps the
//! message until it is due:
//! - [`SchedulerDelay`]: the store's delay service (`mqlab_engine::delay`, the
//!   levels scheduler by default: `SCHEDULE_TOPIC_XXXX`, durable, what
//!   RocketMQ does);
//! - [`TimerDelay`]: in memory, put when due by the broker's clock. Lost in
//!   a crash; kept for experiments that want retries without the delay
//!   service's own cost.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mqlab_engine::clock::Clock;
use mqlab_engine::delay::{DelayScheduler, DeliverAt};
use mqlab_engine::message::{Message, PutResult, PutStatus};
use mqlab_engine::service::Periodic;
use mqlab_engine::store::Store;

/// RocketMQ's delay levels: `1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m
/// 20m 30m 1h 2h` (level 1 = 1 s, level 3 = 10 s), in ms.
pub const ROCKETMQ_LEVELS_MS: [u64; 18] = [
    1_000, 5_000, 10_000, 30_000, 60_000, 120_000, 180_000, 240_000, 300_000, 360_000, 420_000,
    480_000, 540_000, 600_000, 1_200_000, 1_800_000, 3_600_000, 7_200_000,
];

/// Sends a message so that it reaches its topic and queue after a delay.
pub trait DelayedSend: Send + Sync {
    /// Name in results.
    fn name(&self) -> &'static str;
    /// Accepts `msg` (already addressed to its final topic and queue) for
    /// delivery after delay `level` (1-based; levels past the last use the
    /// last). PUT_OK means accepted, not yet delivered.
    fn send_delayed(&self, msg: Message, level: u32) -> PutResult;
}

/// In-memory delayed delivery on the broker's clock.
pub struct TimerDelay {
    state: Arc<TimerState>,
    thread: Mutex<Option<Periodic>>,
}

/// Sequence counter and messages by (due ms, sequence).
type Pending = (u64, BTreeMap<(i64, u64), Message>);

struct TimerState {
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    levels_ms: Vec<u64>,
    pending: Mutex<Pending>,
}

impl TimerDelay {
    /// Delivers due messages every `tick_ms` (RocketMQ re-checks each level
    /// every 100 ms). `levels_ms[i]` is the delay of level i + 1.
    pub fn start(
        store: Arc<Store>,
        clock: Arc<dyn Clock>,
        levels_ms: Vec<u64>,
        tick_ms: u64,
    ) -> TimerDelay {
        let state = Arc::new(TimerState {
            store,
            clock,
            levels_ms,
            pending: Mutex::new((0, BTreeMap::new())),
        });
        let s = state.clone();
        let thread = Periodic::spawn(
            "mqlab-timer-delay",
            Duration::from_millis(tick_ms.max(1)),
            move || {
                s.deliver_due();
                true
            },
        );
        TimerDelay {
            state,
            thread: Mutex::new(Some(thread)),
        }
    }

    /// Messages waiting.
    pub fn pending(&self) -> usize {
        self.state
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .len()
    }

    /// Delivers every message due now (the thread does this every tick).
    pub fn deliver_due(&self) -> usize {
        self.state.deliver_due()
    }

    /// Stops the delivery thread; pending messages are dropped.
    pub fn stop(&self) {
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            t.stop();
        }
    }
}

impl Drop for TimerDelay {
    fn drop(&mut self) {
        self.stop();
    }
}

impl TimerState {
    fn deliver_due(&self) -> usize {
        let now = self.clock.now_ms();
        let due: Vec<Message> = {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            let later = p.1.split_off(&(now + 1, 0));
            std::mem::replace(&mut p.1, later).into_values().collect()
        };
        let n = due.len();
        for msg in due {
            // A failed delivery (store refusing writes) is retried next tick.
            let r = self.store.put(&msg);
            if r.status == PutStatus::ServiceNotAvailable && r.offsets.is_none() {
                let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                p.0 += 1;
                let seq = p.0;
                p.1.insert((now, seq), msg);
            }
        }
        n
    }
}

impl DelayedSend for TimerDelay {
    fn name(&self) -> &'static str {
        "timer-memory"
    }

    fn send_delayed(&self, msg: Message, level: u32) -> PutResult {
        let s = &self.state;
        let idx = (level.max(1) as usize - 1).min(s.levels_ms.len().saturating_sub(1));
        let delay = s.levels_ms.get(idx).copied().unwrap_or(0);
        let due = s.clock.now_ms() + delay as i64;
        let mut p = s.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.0 += 1;
        let seq = p.0;
        p.1.insert((due, seq), msg);
        PutResult {
            status: PutStatus::PutOk,
            offsets: None,
            detail: Some(format!("held in memory until {due} ms (level {level})")),
        }
    }
}

/// Retries through the store's delay service.
pub struct SchedulerDelay {
    scheduler: Arc<dyn DelayScheduler>,
}

impl SchedulerDelay {
    /// Sends through `scheduler`.
    pub fn new(scheduler: Arc<dyn DelayScheduler>) -> SchedulerDelay {
        SchedulerDelay { scheduler }
    }
}

impl DelayedSend for SchedulerDelay {
    fn name(&self) -> &'static str {
        self.scheduler.name()
    }

    fn send_delayed(&self, msg: Message, level: u32) -> PutResult {
        match self.scheduler.schedule(msg, DeliverAt::Level(level)) {
            Ok(h) => PutResult {
                status: PutStatus::PutOk,
                offsets: None,
                detail: Some(format!(
                    "scheduled at physical offset {}, due at {} ms",
                    h.phys_offset, h.deliver_ms
                )),
            },
            Err(mqlab_engine::Error::IllegalMessage(d)) => PutResult {
                status: PutStatus::MessageIllegal,
                offsets: None,
                detail: Some(d),
            },
            Err(e) => PutResult {
                status: PutStatus::ServiceNotAvailable,
                offsets: None,
                detail: Some(e.to_string()),
            },
        }
    }
}
