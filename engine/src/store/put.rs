//! The put path: validation and append (one function, [`Inner::write`],
//! shared by both puts), then the acknowledgement, waited for on the
//! caller's thread ([`Inner::put`]) or delivered to a completion
//! ([`Inner::put_async`]), and the one function ([`AckRule::conclude`])
//! that turns the flush strategy's answer into a [`PutResult`] for both.
//! With a replica gate installed (a sync master), a put the strategy
//! acknowledged then waits for the gate, blocking or through a callback
//! as the put itself.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::{Inner, ReplicaGate};
use crate::error::Result;
use crate::flush::FlushConfig;
use crate::log::record;
use crate::log::CommitLog;
use crate::message::{AppendOffsets, Message, PutResult, PutStatus};

/// What [`crate::Store::put_async`] calls with a put's result.
pub(super) type PutCompletion = Box<dyn FnOnce(PutResult) + Send + 'static>;

/// A put appended to the log, not yet acknowledged.
#[derive(Debug, Clone, Copy)]
pub(super) struct Written {
    offsets: AppendOffsets,
    /// End offset of its record: what the flush strategy must cover.
    end: u64,
}

fn illegal(detail: String) -> PutResult {
    PutResult {
        status: PutStatus::MessageIllegal,
        offsets: None,
        detail: Some(detail),
    }
}

fn unavailable(detail: String, offsets: Option<AppendOffsets>) -> PutResult {
    PutResult {
        status: PutStatus::ServiceNotAvailable,
        offsets,
        detail: Some(detail),
    }
}

/// What a written put's result depends on besides the strategy's answer.
#[derive(Debug, Clone, Copy)]
struct AckRule {
    /// The strategy acknowledges only durable puts (sync, group).
    durable: bool,
    /// For FLUSH_DISK_TIMEOUT's detail.
    timeout_ms: u64,
}

impl AckRule {
    fn of(cfg: &FlushConfig) -> AckRule {
        AckRule {
            durable: cfg.kind.acks_durable(),
            timeout_ms: cfg.sync_flush_timeout_ms,
        }
    }

    /// The result of put `w` given the strategy's answer `ack`; marks it
    /// acknowledged on PUT_OK.
    fn conclude(self, log: &CommitLog, w: Written, ack: Result<PutStatus>) -> PutResult {
        match ack {
            Ok(PutStatus::PutOk) => {
                log.mark_acked(w.end, self.durable);
                PutResult {
                    status: PutStatus::PutOk,
                    offsets: Some(w.offsets),
                    detail: None,
                }
            }
            Ok(status) => PutResult {
                status,
                offsets: Some(w.offsets),
                detail: Some(format!(
                    "not durable within {} ms; the message stays written",
                    self.timeout_ms
                )),
            },
            Err(e) => unavailable(e.to_string(), Some(w.offsets)),
        }
    }
}

/// One put counted in `Inner::in_flight` until dropped.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn enter(count: &Arc<AtomicUsize>) -> InFlight {
        count.fetch_add(1, Ordering::AcqRel);
        InFlight(count.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Calls a caller's completion. A panic in it is caught (the panic hook
/// has reported it): it must not take down the flush thread that called
/// it, nor the other completions that thread still has to call.
fn call(done: PutCompletion, r: PutResult) {
    let _ = catch_unwind(AssertUnwindSafe(move || done(r)));
}

/// An asynchronous put between its append and its acknowledgement: what
/// the strategy's callback needs to build the result. Counted in flight
/// until its completion returned. Dropped without being completed (a
/// flush strategy that lost it), it still answers SERVICE_NOT_AVAILABLE:
/// no put is left without an answer.
struct Pending {
    done: Option<PutCompletion>,
    log: Arc<CommitLog>,
    rule: AckRule,
    written: Written,
    /// What the put waits for after its flush acknowledgement (a sync
    /// master's replication), if anything.
    gate: Option<Arc<dyn ReplicaGate>>,
    /// Dropped after `done` was called (fields drop after `Drop::drop`;
    /// moved into the gate's callback when the put waits for a slave).
    in_flight: Option<InFlight>,
}

impl Pending {
    fn complete(mut self, ack: Result<PutStatus>) {
        let r = self.rule.conclude(&self.log, self.written, ack);
        let Some(done) = self.done.take() else {
            return;
        };
        match self.gate.take() {
            Some(gate) if r.is_ok() => {
                let answer = GateAnswer {
                    done: Some(done),
                    r,
                    _in_flight: self.in_flight.take(),
                };
                gate.when_replicated(
                    self.written.end,
                    Box::new(move |status, detail| answer.give(status, detail)),
                );
            }
            _ => call(done, r),
        }
    }
}

/// A put waiting for the replica gate: answered exactly once, also when
/// the gate drops it unanswered (FLUSH_SLAVE_TIMEOUT). Counted in flight
/// until then.
struct GateAnswer {
    done: Option<PutCompletion>,
    r: PutResult,
    _in_flight: Option<InFlight>,
}

impl GateAnswer {
    fn give(mut self, status: PutStatus, detail: Option<String>) {
        if let Some(done) = self.done.take() {
            call(done, replicated(self.r.clone(), status, detail));
        }
    }
}

impl Drop for GateAnswer {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            call(
                done,
                replicated(
                    self.r.clone(),
                    PutStatus::FlushSlaveTimeout,
                    Some("the replica gate dropped the put; the message stays written".into()),
                ),
            );
        }
    }
}

/// A flush-acknowledged put's result once the replica gate decided.
fn replicated(mut r: PutResult, status: PutStatus, detail: Option<String>) -> PutResult {
    if status != PutStatus::PutOk {
        r.status = status;
        r.detail = Some(
            detail.unwrap_or_else(|| format!("{}; the message stays written", status.as_str())),
        );
    }
    r
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            call(
                done,
                unavailable(
                    "the flush strategy dropped the put's acknowledgement".into(),
                    Some(self.written.offsets),
                ),
            );
        }
    }
}

impl Inner {
    /// Validates `msg` and appends it (on the caller's thread; the append
    /// may wait for room in a staging area, see `log/staging.rs`). `Err`:
    /// the final result (MESSAGE_ILLEGAL, SERVICE_NOT_AVAILABLE), nothing
    /// left to acknowledge.
    fn write(&self, msg: &Message) -> std::result::Result<Written, PutResult> {
        if self.closed.load(Ordering::Acquire) {
            let why = if self.cfg.read_only {
                "store is read-only"
            } else {
                "store is shut down"
            };
            return Err(unavailable(why.into(), None));
        }
        if let Some(reason) = self.log.poisoned() {
            return Err(unavailable(format!("store refuses writes: {reason}"), None));
        }
        if self.slave_mode.load(Ordering::Acquire) {
            return Err(unavailable(
                "message store is in slave mode: puts are forbidden (send to the master)".into(),
                None,
            ));
        }
        if let Some(reason) = &*self.write_block.lock().unwrap_or_else(|e| e.into_inner()) {
            return Err(unavailable(format!("store refuses writes: {reason}"), None));
        }
        if let Err(e) = crate::topic::validate(&msg.topic) {
            return Err(illegal(e));
        }
        if msg.body.len() > self.cfg.max_message_bytes as usize {
            return Err(illegal(format!(
                "body is {} bytes, over max_message_bytes {}",
                msg.body.len(),
                self.cfg.max_message_bytes
            )));
        }
        let props = record::encode_properties(&msg.properties).map_err(illegal)?;
        if props.len() + record::CRC32_RESERVED_LEN > i16::MAX as usize {
            return Err(illegal(format!(
                "properties are {} bytes, over 32 KiB",
                props.len()
            )));
        }
        let store_ts = self.store_now_ms();
        let born_ts = if msg.born_timestamp_ms > 0 {
            msg.born_timestamp_ms
        } else {
            store_ts
        };
        match self.log.append(msg, &props, born_ts, store_ts) {
            Ok((offsets, end)) => Ok(Written { offsets, end }),
            Err(e) => Err(unavailable(e.to_string(), None)),
        }
    }

    /// Blocking put: writes, then waits for the strategy's acknowledgement
    /// on this thread (group commit's parked waiter, sync's own fdatasync).
    pub(super) fn put(&self, msg: &Message) -> PutResult {
        let w = match self.write(msg) {
            Ok(w) => w,
            Err(r) => return r,
        };
        let ack = self.strategy.await_ack(w.end);
        let r = AckRule::of(&self.cfg.flush).conclude(&self.log, w, ack);
        match self.replica_gate() {
            Some(gate) if r.is_ok() => {
                let (tx, rx) = std::sync::mpsc::sync_channel(1);
                gate.when_replicated(
                    w.end,
                    Box::new(move |status, detail| {
                        let _ = tx.send((status, detail));
                    }),
                );
                let (status, detail) = rx.recv().unwrap_or((
                    PutStatus::FlushSlaveTimeout,
                    Some("the replica gate dropped the put".into()),
                ));
                replicated(r, status, detail)
            }
            _ => r,
        }
    }

    /// Asynchronous put: writes on this thread, then hands `done` to the
    /// strategy (see [`crate::Store::put_async`]). The put counts in
    /// `in_flight` until `done` returned.
    pub(super) fn put_async(&self, msg: &Message, done: PutCompletion) {
        let in_flight = InFlight::enter(&self.in_flight);
        let written = match self.write(msg) {
            Ok(w) => w,
            Err(r) => {
                call(done, r);
                return;
            }
        };
        let pending = Pending {
            done: Some(done),
            log: self.log.clone(),
            rule: AckRule::of(&self.cfg.flush),
            written,
            gate: self.replica_gate(),
            in_flight: Some(in_flight),
        };
        self.strategy
            .ack_async(written.end, Box::new(move |ack| pending.complete(ack)));
    }
}
