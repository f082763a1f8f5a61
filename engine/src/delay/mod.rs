//! The delay scheduler axis: messages that must reach their topic later.
//!
//! Both schedulers keep delayed messages where RocketMQ keeps them, in the
//! commit log under a system topic, and deliver a due message by putting a
//! copy, with its real topic and queue restored, through [`Store::put`].
//! They are built on the public store API only: put, get, consume-queue
//! units, the key index and the commit-log scan.
//!
//! - [`levels`]: RocketMQ 4.x. Fixed delay levels; a message is rewritten to
//!   `SCHEDULE_TOPIC_XXXX`, queue = level - 1, and each level's queue is a
//!   FIFO whose head is delivered when due. Progress is an offset per level,
//!   persisted now and then, so a crash re-delivers (duplicates), never
//!   loses.
//! - [`wheel`]: RocketMQ 5.x timer messages, and better. Any delivery time up
//!   to a maximum, a persistent time wheel (`timerwheel`) over an append-only
//!   timer log (`timerlog/`), a double-buffered checkpoint, rolling of delays
//!   beyond the window, cancel, batch delivery, and no duplicates after a
//!   crash (deliveries since the checkpoint are found in the commit log).
//!
//! Invariants both keep:
//! - A due message is never delivered before its due time by the
//!   scheduler's [`Clock`] (tests drive a [`ManualClock`]).
//! - Progress only covers deliveries whose puts the store acknowledged, so
//!   it is exactly as durable as the store's flush strategy makes any put:
//!   with sync or group commit a power loss loses no timer; with async
//!   flush a power loss can lose what lies in the store's loss window
//!   (timers and deliveries alike), a process crash nothing.
//!
//! The on-disk formats are in `FORMAT.md`, section "Delay".

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::config_file::ConfigFile;
use crate::error::{Error, Result};
use crate::io::Env;
use crate::message::{Message, PutResult, PutStatus, StoredMessage};

pub mod levels;
pub mod timerlog;
pub mod wheel;

pub use crate::clock::{Clock, ManualClock, SystemClock};
pub use levels::{LevelMode, LevelsConfig, LevelsScheduler};
pub use wheel::{WheelConfig, WheelScheduler};

/// System topic of level-delayed messages (RocketMQ's name).
pub const SCHEDULE_TOPIC: &str = "SCHEDULE_TOPIC_XXXX";
/// System topic of timer messages (RocketMQ 5.x's name).
pub const TIMER_TOPIC: &str = "rmq_sys_wheel_timer";
/// Queue of [`TIMER_TOPIC`] holding timers.
pub const TIMER_QUEUE: u32 = 0;
/// Queue of [`TIMER_TOPIC`] holding cancel records.
pub const TIMER_CANCEL_QUEUE: u32 = 1;

/// Original topic of a delayed message.
pub const PROPERTY_REAL_TOPIC: &str = "REAL_TOPIC";
/// Original queue id of a delayed message, decimal.
pub const PROPERTY_REAL_QID: &str = "REAL_QID";
/// Delay level, 1-based (RocketMQ's `DELAY`).
pub const PROPERTY_DELAY: &str = "DELAY";
/// Due time, ms since the epoch by the scheduler's clock. RocketMQ 5.x's
/// timer request property; mqlab also writes it on level-delayed messages
/// (RocketMQ 4.x derives it from the store time instead) and keeps it on
/// the delivered copy, so lateness can be measured from the real topic.
pub const PROPERTY_TIMER_DELIVER_MS: &str = "TIMER_DELIVER_MS";
/// Time the scheduler delivered the message, ms by its clock (RocketMQ 5.x
/// sets it on dequeue).
pub const PROPERTY_TIMER_OUT_MS: &str = "TIMER_OUT_MS";
/// RocketMQ 5.x: unique key of the timer a delete record cancels.
pub const PROPERTY_TIMER_DEL_UNIQKEY: &str = "TIMER_DEL_UNIQKEY";
/// mqlab: commit-log offset of the timer record a delivered copy came from
/// (wheel only). Recovery looks for it to avoid delivering twice.
pub const PROPERTY_TIMER_SOURCE_OFFSET: &str = "TIMER_SOURCE_OFFSET";
/// mqlab: commit-log offset of the timer record a cancel record cancels.
pub const PROPERTY_TIMER_CANCEL_OFFSET: &str = "TIMER_CANCEL_OFFSET";

/// RocketMQ's default levels, `messageDelayLevel`.
pub const DEFAULT_LEVELS: &str = "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h";

/// The default levels in ms.
pub fn default_levels_ms() -> Vec<u64> {
    parse_levels(DEFAULT_LEVELS).expect("default levels parse")
}

/// Parses a RocketMQ level list (`"1s 5s 1m 2h"`, units ms, s, m, h, d)
/// into ms.
pub fn parse_levels(s: &str) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    for tok in s.split_whitespace() {
        let (num, unit) = tok
            .find(|c: char| !c.is_ascii_digit())
            .map(|i| tok.split_at(i))
            .ok_or_else(|| Error::Config(format!("delay level {tok:?} has no unit")))?;
        let n: u64 = num
            .parse()
            .map_err(|_| Error::Config(format!("delay level {tok:?} is not a number")))?;
        let ms = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(Error::Config(format!("delay level {tok:?}: unknown unit"))),
        };
        out.push(n * ms);
    }
    if out.is_empty() {
        return Err(Error::Config("no delay levels".into()));
    }
    Ok(out)
}

/// When a delayed message is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliverAt {
    /// A delay level, 1-based (RocketMQ's `DELAY` property).
    Level(u32),
    /// After this many ms from now (the scheduler's clock).
    AfterMs(u64),
    /// At this time, ms since the epoch (the scheduler's clock).
    AtMs(i64),
}

/// What [`DelayScheduler::schedule`] stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerHandle {
    /// Commit-log offset of the delayed record.
    pub phys_offset: u64,
    /// Queue offset in the system topic's queue.
    pub queue_offset: u64,
    /// Due time, ms by the scheduler's clock.
    pub deliver_ms: i64,
}

/// Counters of a scheduler, cheap to read at any time.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DelayStats {
    /// Messages accepted by `schedule` since open.
    pub scheduled: u64,
    /// Messages delivered to their real topic since open.
    pub delivered: u64,
    /// Timers dropped because they were cancelled.
    pub cancelled: u64,
    /// Timers re-filed because they were beyond the wheel's window.
    pub rolled: u64,
    /// Deliveries skipped after recovery because the commit log showed
    /// them done before the crash.
    pub dedup_skipped: u64,
    /// Timers dropped because their record could not be read or delivered
    /// (lost by the store, or an illegal real topic).
    pub dropped: u64,
    /// Timers known to the scheduler and not yet delivered (levels: units
    /// behind the level offsets; wheel: indexed and ready timers).
    pub pending: u64,
    /// Memory the scheduler holds for its timers, bytes (estimate from its
    /// own structures).
    pub ram_bytes: u64,
    /// Bytes of the scheduler's own files (timer log and wheel, or the
    /// level queues' consume-queue units), excluding the commit log.
    pub index_bytes: u64,
    /// Time spent recovering at open, ms.
    pub recovery_ms: u64,
}

/// A delay scheduler: accepts delayed messages and delivers them when due.
pub trait DelayScheduler: Send + Sync {
    /// Name in results and chart legends.
    fn name(&self) -> &'static str;
    /// Stores `msg` to be delivered to its topic and queue at `at`.
    fn schedule(&self, msg: Message, at: DeliverAt) -> Result<TimerHandle>;
    /// Cancels a pending timer. `Ok(true)` when the cancel was recorded
    /// before the timer's slot came due. The levels scheduler has no cancel
    /// (RocketMQ 4.x has none) and returns an error.
    fn cancel(&self, handle: &TimerHandle) -> Result<bool>;
    /// Cancels every pending timer whose KEYS or UNIQ_KEY is `key` (found
    /// through the store's index). Returns how many cancels were recorded.
    fn cancel_by_key(&self, key: &str) -> Result<usize>;
    /// One synchronous round at the clock's current time: take in what was
    /// scheduled, deliver everything due. Returns the messages delivered.
    /// Tests drive the scheduler with this and a [`ManualClock`]; with
    /// background threads running it is still safe, just redundant.
    fn tick(&self) -> Result<u64>;
    /// Persists progress now (offsets, or the wheel checkpoint).
    fn persist(&self) -> Result<()>;
    /// Counters.
    fn stats(&self) -> DelayStats;
    /// Stops the threads and persists progress. Dropping a scheduler without
    /// this is a crash: threads stop and nothing more is persisted.
    fn shutdown(self: Box<Self>) -> Result<()>;
}

/// Which scheduler, as the CLI names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SchedulerKind {
    /// Levels, one thread per level (RocketMQ 4.9.3+).
    Levels,
    /// Levels, one thread for all levels (RocketMQ up to 4.9.2).
    LevelsSingleThread,
    /// The persistent time wheel.
    Wheel,
}

impl SchedulerKind {
    /// All kinds.
    pub const ALL: [SchedulerKind; 3] = [
        SchedulerKind::Wheel,
        SchedulerKind::Levels,
        SchedulerKind::LevelsSingleThread,
    ];

    /// Name in results.
    pub fn name(self) -> &'static str {
        match self {
            SchedulerKind::Levels => levels::NAME_PER_LEVEL,
            SchedulerKind::LevelsSingleThread => levels::NAME_SINGLE_THREAD,
            SchedulerKind::Wheel => wheel::NAME,
        }
    }
}

impl std::fmt::Display for SchedulerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for SchedulerKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "levels" | "levels-per-level" => Ok(SchedulerKind::Levels),
            "levels-single-thread" => Ok(SchedulerKind::LevelsSingleThread),
            "wheel" => Ok(SchedulerKind::Wheel),
            other => Err(format!(
                "unknown scheduler {other:?}: expected levels, levels-single-thread or wheel"
            )),
        }
    }
}

/// Moves `msg` to a system topic: the real topic and queue go into
/// properties, the due time into [`PROPERTY_TIMER_DELIVER_MS`].
pub(crate) fn to_system_topic(
    mut msg: Message,
    topic: &str,
    queue_id: u32,
    deliver_ms: i64,
) -> Result<Message> {
    crate::topic::validate(&msg.topic).map_err(Error::IllegalMessage)?;
    let real_topic = std::mem::replace(&mut msg.topic, topic.to_string());
    let real_qid = std::mem::replace(&mut msg.queue_id, queue_id);
    msg.properties
        .insert(PROPERTY_REAL_TOPIC.to_string(), real_topic);
    msg.properties
        .insert(PROPERTY_REAL_QID.to_string(), real_qid.to_string());
    msg.properties.insert(
        PROPERTY_TIMER_DELIVER_MS.to_string(),
        deliver_ms.to_string(),
    );
    if msg.born_timestamp_ms == 0 {
        // Keep the producer's time: the delivered copy is born when the
        // producer sent it, not when the scheduler re-puts it.
        msg.born_timestamp_ms = crate::clock::wall_ms();
    }
    Ok(msg)
}

/// The message to deliver for a stored delayed record: real topic and queue
/// restored, the system properties other than the due time removed.
pub(crate) fn to_real_topic(m: StoredMessage) -> Result<Message> {
    let mut props = m.properties;
    let topic = props.remove(PROPERTY_REAL_TOPIC).ok_or_else(|| {
        Error::IllegalMessage(format!(
            "delayed record at {} has no {PROPERTY_REAL_TOPIC}",
            m.phys_offset
        ))
    })?;
    let queue_id = props
        .remove(PROPERTY_REAL_QID)
        .and_then(|q| q.parse().ok())
        .unwrap_or(0);
    props.remove(PROPERTY_DELAY);
    Ok(Message {
        topic,
        queue_id,
        flag: m.flag,
        sys_flag: m.sys_flag,
        body: m.body,
        properties: props,
        born_timestamp_ms: m.born_timestamp_ms,
        born_host: m.born_host,
        reconsume_times: m.reconsume_times,
        prepared_tx_offset: m.prepared_tx_offset,
    })
}

/// The due time a delayed record carries, if any.
pub(crate) fn deliver_ms_of(props: &BTreeMap<String, String>) -> Option<i64> {
    props.get(PROPERTY_TIMER_DELIVER_MS)?.parse().ok()
}

/// How a delivery put ended.
pub(crate) enum PutOutcome {
    /// In the log (PUT_OK, or FLUSH_DISK_TIMEOUT: written, only late).
    Stored,
    /// Can never succeed (illegal message): drop the timer.
    Rejected(String),
    /// The store refuses writes for now: keep the timer, retry later.
    Retry(String),
}

pub(crate) fn put_outcome(r: &PutResult) -> PutOutcome {
    match r.status {
        // Written (a sync master's slave timeouts too): never again.
        s if s.is_stored() => PutOutcome::Stored,
        PutStatus::MessageIllegal => PutOutcome::Rejected(r.detail.clone().unwrap_or_default()),
        _ => PutOutcome::Retry(
            r.detail
                .clone()
                .unwrap_or_else(|| r.status.as_str().to_string()),
        ),
    }
}

/// The delay levels' progress file: `<path>`, written after its companion
/// `<path>.bak` (see [`crate::config_file`]).
pub(crate) fn progress_file(env: Arc<dyn Env>, path: &Path) -> ConfigFile {
    ConfigFile::with_companion(env, path, ".bak")
}

/// A counter that only goes up, for the stats.
#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    pub(crate) fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_levels_are_rocketmqs() {
        let l = default_levels_ms();
        assert_eq!(l.len(), 18);
        assert_eq!(l[0], 1_000);
        assert_eq!(l[2], 10_000);
        assert_eq!(l[4], 60_000);
        assert_eq!(l[17], 7_200_000);
        assert!(parse_levels("5x").is_err());
        assert!(parse_levels("").is_err());
        assert_eq!(parse_levels("10ms 2d").unwrap(), vec![10, 172_800_000]);
    }
}
