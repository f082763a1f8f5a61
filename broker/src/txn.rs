//! Transactional messages, RocketMQ's two-phase scheme.
//!
//! 1. The producer sends a half message: the broker rewrites it to
//!    `RMQ_SYS_TRANS_HALF_TOPIC` queue 0 (its real topic and queue kept in
//!    the properties REAL_TOPIC / REAL_QID). No consumer subscribes to that
//!    topic, so it is invisible.
//! 2. The producer runs its local transaction and ends the message: commit
//!    writes the real message (system flag COMMIT, visible) and an op
//!    record; rollback writes only the op record. Op records go to
//!    `RMQ_SYS_TRANS_OP_HALF_TOPIC` queue 0, tag `d`, body = the half
//!    message's queue offset.
//! 3. The check service, every `check_interval_ms`, walks the half queue
//!    from its progress offset: a half message with an op is done; one
//!    younger than `timeout_ms` (by born time) ends the round; one checked
//!    `check_max` times already, or older than `file_reserved_hours` (the
//!    72-hour rule), is discarded to `TRANS_CHECK_MAX_TIME_TOPIC`; any other
//!    is re-appended with TRANSACTION_CHECK_TIMES + 1 and its producer group
//!    is asked (one of its producers, round robin) to check it back: a
//!    CHECK_TRANSACTION_STATE request sent on the [`crate::ClientChannel`] the
//!    producer registered in its heartbeat, never a call into producer code
//!    the broker holds. The producer answers with END_TRANSACTION; UNKNOWN
//!    leaves it pending for the next round. A copy re-appended by a check
//!    is not checked again until it is itself a timeout old, so a producer
//!    has that long to answer (mqlab's guard against asking twice while the
//!    answer is on its way).
//!
//! Progress (half and op queue offsets) is kept as offsets of the system
//! group `CID_RMQ_SYS_TRANS` in `config/consumerOffset.json`. A commit
//! racing with a check of the same message can produce the real message
//! twice, as in RocketMQ; consumers must be idempotent.
//!
//! The service's logic works on the broker's parts lent for one call
//! (`Txn`); it names no broker type, so the broker depends on it and not
//! the other way round.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::error::{Error, Result};
use mqlab_engine::clock::Clock;
use mqlab_engine::message::{
    sys_flag, Message, PutResult, PutStatus, StoredMessage, PROPERTY_TAGS, PROPERTY_UNIQ_KEY,
};
use mqlab_engine::store::Store;

use crate::clients::ClientTable;
use crate::config::TxnConfig;
use crate::offsets::ConsumerOffsets;
use crate::topics::{queue_range, TopicTable};
use crate::types::{CheckTransactionStateRequest, LocalTransactionState, MessageQueue};

/// Topic of half messages.
pub const HALF_TOPIC: &str = "RMQ_SYS_TRANS_HALF_TOPIC";
/// Topic of op records.
pub const OP_TOPIC: &str = "RMQ_SYS_TRANS_OP_HALF_TOPIC";
/// Topic of half messages given up on.
pub const CHECK_MAX_TIME_TOPIC: &str = "TRANS_CHECK_MAX_TIME_TOPIC";
/// Group under which the check service keeps its progress.
pub const SYSTEM_GROUP: &str = "CID_RMQ_SYS_TRANS";
/// Tag of op records.
pub const REMOVE_TAG: &str = "d";
/// Property: the message is (was) a half message.
pub const PROPERTY_TRANSACTION_PREPARED: &str = "TRAN_MSG";
/// Property: producer group to check back.
pub const PROPERTY_PRODUCER_GROUP: &str = "PGROUP";
/// Property: the real topic of a half message.
pub const PROPERTY_REAL_TOPIC: &str = "REAL_TOPIC";
/// Property: the real queue of a half message.
pub const PROPERTY_REAL_QUEUE_ID: &str = "REAL_QID";
/// Property: checks done so far.
pub const PROPERTY_TRANSACTION_CHECK_TIMES: &str = "TRANSACTION_CHECK_TIMES";

/// Counters of the transaction service.
#[derive(Debug, Default)]
pub struct CheckState {
    round: Mutex<()>,
    /// Rounds run.
    pub rounds: AtomicU64,
    /// Check-backs sent to producers.
    pub checks_sent: AtomicU64,
    /// Half messages discarded to TRANS_CHECK_MAX_TIME_TOPIC.
    pub discarded: AtomicU64,
    /// Commits (real message written).
    pub committed: AtomicU64,
    /// Rollbacks.
    pub rolled_back: AtomicU64,
}

/// What one check round did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CheckRound {
    /// Half messages already ended (op found).
    pub done: u64,
    /// Checked back (re-appended and asked).
    pub checked: u64,
    /// Discarded (check max or 72-hour rule).
    pub discarded: u64,
    /// Half-queue progress offset after the round.
    pub half_offset: u64,
}

fn prop<'a>(m: &'a StoredMessage, k: &str) -> Option<&'a str> {
    m.properties.get(k).map(String::as_str)
}

/// The transaction service at work: the parts of the broker it reads and
/// writes, lent for one call (the broker owns them; see
/// `BrokerCore::txn`).
pub(crate) struct Txn<'a> {
    pub(crate) store: &'a Store,
    pub(crate) cfg: &'a TxnConfig,
    pub(crate) clock: &'a dyn Clock,
    pub(crate) topics: &'a TopicTable,
    pub(crate) offsets: &'a ConsumerOffsets,
    pub(crate) clients: &'a ClientTable,
    pub(crate) state: &'a CheckState,
}

impl Txn<'_> {
    fn create_topic(&self, topic: &str, queues: u32) -> Result<()> {
        self.topics.create(topic, queues)
    }

    fn queue_range(&self, mq: &MessageQueue) -> (u64, u64) {
        queue_range(self.store, mq)
    }

    fn query_offset(&self, group: &str, mq: &MessageQueue) -> Option<u64> {
        self.offsets.query(group, &mq.topic, mq.queue_id)
    }

    fn commit_offset(&self, group: &str, mq: &MessageQueue, offset: u64) {
        self.offsets.commit(group, &mq.topic, mq.queue_id, offset);
    }

    /// Stores `msg` (addressed to its real topic and queue) as a half
    /// message.
    pub(crate) fn prepare(&self, msg: &Message) -> PutResult {
        let mut half = msg.clone();
        half.properties
            .insert(PROPERTY_REAL_TOPIC.into(), msg.topic.clone());
        half.properties
            .insert(PROPERTY_REAL_QUEUE_ID.into(), msg.queue_id.to_string());
        half.properties
            .insert(PROPERTY_TRANSACTION_PREPARED.into(), "true".into());
        half.topic = HALF_TOPIC.into();
        half.queue_id = 0;
        // Dispatched into the half topic's queue (that is how the check
        // service finds it): not the PREPARED type, which the dispatcher
        // skips.
        half.sys_flag =
            (msg.sys_flag & !sys_flag::TRANSACTION_MASK) | sys_flag::TRANSACTION_NOT_TYPE;
        if let Err(e) = self.create_topic(HALF_TOPIC, 1) {
            return PutResult {
                status: PutStatus::MessageIllegal,
                offsets: None,
                detail: Some(e.to_string()),
            };
        }
        self.store.put(&half)
    }

    fn put_op(&self, half: &StoredMessage) -> PutResult {
        let op = Message::new(OP_TOPIC, half.queue_offset.to_string().into_bytes())
            .with_tags(REMOVE_TAG);
        if let Err(e) = self.create_topic(OP_TOPIC, 1) {
            return PutResult {
                status: PutStatus::MessageIllegal,
                offsets: None,
                detail: Some(e.to_string()),
            };
        }
        self.store.put(&op)
    }

    /// Ends the half message at `half_phys`: commit writes the real message
    /// then the op record, rollback only the op record, UNKNOWN nothing.
    /// Returns the put of the real message (commit) or of the op record.
    pub(crate) fn end(
        &self,
        half_phys: u64,
        state: LocalTransactionState,
    ) -> Result<Option<PutResult>> {
        if state == LocalTransactionState::Unknown {
            return Ok(None);
        }
        let half = self.store.get(half_phys)?;
        if half.topic != HALF_TOPIC {
            return Err(Error::NotHalfMessage {
                offset: half_phys,
                topic: half.topic,
            });
        }
        if state == LocalTransactionState::RollbackMessage {
            let r = self.put_op(&half);
            if r.status.is_stored() {
                self.state.rolled_back.fetch_add(1, Ordering::Relaxed);
            }
            return Ok(Some(r));
        }
        let mut real = Message::new(
            prop(&half, PROPERTY_REAL_TOPIC).unwrap_or_default(),
            half.body.clone(),
        );
        real.queue_id = prop(&half, PROPERTY_REAL_QUEUE_ID)
            .and_then(|q| q.parse().ok())
            .unwrap_or(0);
        real.flag = half.flag;
        real.born_timestamp_ms = half.born_timestamp_ms;
        real.born_host = half.born_host;
        real.prepared_tx_offset = half_phys as i64;
        real.sys_flag =
            (half.sys_flag & !sys_flag::TRANSACTION_MASK) | sys_flag::TRANSACTION_COMMIT;
        real.properties = half.properties.clone();
        for k in [
            PROPERTY_REAL_TOPIC,
            PROPERTY_REAL_QUEUE_ID,
            PROPERTY_TRANSACTION_PREPARED,
        ] {
            real.properties.remove(k);
        }
        let r = self.store.put(&real);
        // Stored counts, also unconfirmed by a sync master's slave: the op
        // must follow, or a check would commit it again.
        if r.status.is_stored() {
            self.state.committed.fetch_add(1, Ordering::Relaxed);
            let op = self.put_op(&half);
            if !op.status.is_stored() {
                // The real message is visible; without the op the check
                // service will ask again and may commit it twice.
                return Ok(Some(op));
            }
        }
        Ok(Some(r))
    }

    fn discard(&self, half: &StoredMessage, check_times: u32) -> PutResult {
        let mut m = Message::new(CHECK_MAX_TIME_TOPIC, half.body.clone());
        m.properties = half.properties.clone();
        m.properties.insert(
            PROPERTY_TRANSACTION_CHECK_TIMES.into(),
            check_times.to_string(),
        );
        m.born_timestamp_ms = half.born_timestamp_ms;
        m.born_host = half.born_host;
        if let Err(e) = self.create_topic(CHECK_MAX_TIME_TOPIC, 1) {
            return PutResult {
                status: PutStatus::MessageIllegal,
                offsets: None,
                detail: Some(e.to_string()),
            };
        }
        self.store.put(&m)
    }

    /// Sends CHECK_TRANSACTION_STATE to one producer of `group` (round
    /// robin); false when the group has none.
    fn ask_producer(&self, group: &str, msg: StoredMessage) -> bool {
        match self.clients.pick_producer(group) {
            Some(ch) => {
                ch.check_transaction_state(CheckTransactionStateRequest {
                    producer_group: group.to_string(),
                    msg,
                });
                true
            }
            None => false,
        }
    }

    /// One round of the check service (see the module doc).
    pub(crate) fn check_once(&self) -> Result<CheckRound> {
        let _round = self.state.round.lock().unwrap_or_else(|e| e.into_inner());
        self.state.rounds.fetch_add(1, Ordering::Relaxed);
        let cfg = self.cfg;
        let half_mq = MessageQueue::new(HALF_TOPIC, 0);
        let op_mq = MessageQueue::new(OP_TOPIC, 0);
        let (half_min, half_max) = self.queue_range(&half_mq);
        let mut half_off = self
            .query_offset(SYSTEM_GROUP, &half_mq)
            .unwrap_or(half_min)
            .max(half_min);
        let mut round = CheckRound {
            half_offset: half_off,
            ..CheckRound::default()
        };
        if half_off >= half_max {
            return Ok(round);
        }
        // Op records from the op progress offset: which half offsets ended.
        let (op_min, op_max) = self.queue_range(&op_mq);
        let op_start = self
            .query_offset(SYSTEM_GROUP, &op_mq)
            .unwrap_or(op_min)
            .max(op_min);
        let mut ops: Vec<u64> = Vec::new();
        let mut at = op_start;
        while at < op_max {
            let batch = self.store.get_from_queue(OP_TOPIC, 0, at, 256)?;
            if batch.is_empty() {
                break;
            }
            at += batch.len() as u64;
            for m in batch {
                let r = std::str::from_utf8(&m.body)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(u64::MAX);
                ops.push(r);
            }
        }
        let ended: BTreeSet<u64> = ops.iter().copied().collect();
        let now = self.clock.now_ms();
        let reserved_ms = cfg.file_reserved_hours.saturating_mul(3_600_000) as i64;
        let mut looked = 0usize;
        // Queue offset of the newest re-appended copy, if any.
        let mut last_copy: Option<u64> = None;
        while half_off < half_max && looked < cfg.max_per_round {
            looked += 1;
            if ended.contains(&half_off) {
                round.done += 1;
                half_off += 1;
                continue;
            }
            let Some(half) = self
                .store
                .get_from_queue(HALF_TOPIC, 0, half_off, 1)?
                .into_iter()
                .next()
            else {
                // Deleted by retention.
                half_off += 1;
                continue;
            };
            if half.queue_offset != half_off {
                // The queue's first units are gone; jump to what exists.
                half_off = half.queue_offset;
                continue;
            }
            let checks: u32 = prop(&half, PROPERTY_TRANSACTION_CHECK_TIMES)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            let age = now - half.born_timestamp_ms;
            if checks >= cfg.check_max || age > reserved_ms {
                if !self.discard(&half, checks).status.is_stored() {
                    break;
                }
                self.state.discarded.fetch_add(1, Ordering::Relaxed);
                round.discarded += 1;
                half_off += 1;
                continue;
            }
            if age < cfg.timeout_ms as i64 {
                // Younger than the timeout: its end may still come, and
                // everything after it is younger still.
                break;
            }
            if checks > 0 && now - half.store_timestamp_ms < cfg.timeout_ms as i64 {
                // Checked back less than a timeout ago: give the producer
                // that long to answer before asking again (asking again
                // while an answer is on its way commits twice). Later
                // copies were appended later still.
                break;
            }
            // Re-append with one more check, then ask about the copy.
            let mut again = Message::new(HALF_TOPIC, half.body.clone());
            again.flag = half.flag;
            again.sys_flag = half.sys_flag;
            again.born_timestamp_ms = half.born_timestamp_ms;
            again.born_host = half.born_host;
            again.properties = half.properties.clone();
            again.properties.insert(
                PROPERTY_TRANSACTION_CHECK_TIMES.into(),
                (checks + 1).to_string(),
            );
            let r = self.store.put(&again);
            let Some(o) = r.offsets.filter(|_| r.status.is_stored()) else {
                break;
            };
            half_off += 1;
            round.checked += 1;
            last_copy = Some(o.queue_offset);
            let copy = self.store.get(o.phys_offset)?;
            let group = prop(&copy, PROPERTY_PRODUCER_GROUP)
                .unwrap_or_default()
                .to_string();
            if self.ask_producer(&group, copy) {
                self.state.checks_sent.fetch_add(1, Ordering::Relaxed);
            }
        }
        // The copies reach the half queue when the dispatcher builds their
        // units (asynchronously, after the flush under sync and group).
        // Passing their originals before that would hide them from
        // `pending` for a moment, so wait for them (bounded: a stalled
        // dispatcher only makes `pending` undercount until it catches up).
        if let Some(q) = last_copy {
            self.store
                .wait_queue_offset(HALF_TOPIC, 0, q, Duration::from_secs(5));
        }
        // Op progress: past the longest prefix of ops for half offsets
        // already passed.
        let consumed_ops = ops.iter().take_while(|&&r| r < half_off).count() as u64;
        self.commit_offset(SYSTEM_GROUP, &op_mq, op_start + consumed_ops);
        self.commit_offset(SYSTEM_GROUP, &half_mq, half_off);
        round.half_offset = half_off;
        Ok(round)
    }

    /// Half messages not ended, discarded or passed yet (pending).
    pub(crate) fn pending(&self) -> u64 {
        // Not while a round re-appends copies and moves the half progress:
        // the queue's end read before the move and its start after would
        // miss the copies.
        let _round = self.state.round.lock().unwrap_or_else(|e| e.into_inner());
        let half_mq = MessageQueue::new(HALF_TOPIC, 0);
        let (min, max) = self.queue_range(&half_mq);
        let from = self
            .query_offset(SYSTEM_GROUP, &half_mq)
            .unwrap_or(min)
            .max(min);
        let mut ended = BTreeSet::new();
        let op_mq = MessageQueue::new(OP_TOPIC, 0);
        let (op_min, op_max) = self.queue_range(&op_mq);
        let mut at = self
            .query_offset(SYSTEM_GROUP, &op_mq)
            .unwrap_or(op_min)
            .max(op_min);
        while at < op_max {
            let Ok(batch) = self.store.get_from_queue(OP_TOPIC, 0, at, 256) else {
                break;
            };
            if batch.is_empty() {
                break;
            }
            at += batch.len() as u64;
            for m in batch {
                if let Some(r) = std::str::from_utf8(&m.body)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                {
                    ended.insert(r);
                }
            }
        }
        // Re-appended copies of one message count once: by UNIQ_KEY.
        let mut open: BTreeMap<String, bool> = BTreeMap::new();
        let mut q = from;
        while q < max {
            let Ok(batch) = self.store.get_from_queue(HALF_TOPIC, 0, q, 256) else {
                break;
            };
            if batch.is_empty() {
                break;
            }
            for m in batch {
                let id = prop(&m, PROPERTY_UNIQ_KEY)
                    .map(str::to_string)
                    .unwrap_or_else(|| m.queue_offset.to_string());
                let is_open = !ended.contains(&m.queue_offset);
                let e = open.entry(id).or_insert(true);
                // The newest copy decides.
                *e = is_open;
                q = m.queue_offset + 1;
            }
        }
        open.values().filter(|&&o| o).count() as u64
    }
}

/// Tags of op records, for filters that want to skip them.
pub fn is_op_record(m: &StoredMessage) -> bool {
    m.topic == OP_TOPIC && m.properties.get(PROPERTY_TAGS).map(String::as_str) == Some(REMOVE_TAG)
}
