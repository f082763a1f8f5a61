//! SEND_MESSAGE (10) and SEND_MESSAGE_V2 (310): decoded completely, then
//! stored with the engine's asynchronous put, and answered from the
//! completion, when the flush strategy acknowledges (after the fdatasync
//! that covers it for `sync` and `group`, after the write for `async` and
//! `pool`). No thread waits for a flush: a few runtime threads serve
//! thousands of sends in flight, and group commit sees batches as large as
//! the clients' concurrency.
//!
//! Back-pressure as RocketMQ's: at most `max_pending` sends between
//! decoding and their answer, and a send that waited in the request queue
//! longer than [`MAX_QUEUE_WAIT`] (RocketMQ's `waitTimeMillsInSendQueue`,
//! 200 ms) is answered SYSTEM_BUSY at once; either way nothing is written
//! and the client backs off and retries.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mqlab_engine::log::record::decode_properties;
use mqlab_engine::message::{Message, PutResult, PutStatus};
use mqlab_protocol::codes::{request, response};
use mqlab_protocol::headers::{SendMessageRequest, SendMessageResponse};
use mqlab_protocol::{ExtFields, RemotingCommand};

use super::{offset_msg_id, BrokerHandler, Reply, WireStats};
use crate::broker::Delivery;

/// Longest a send may wait between arriving and being handled before it
/// is refused SYSTEM_BUSY (RocketMQ's `waitTimeMillsInSendQueue`).
pub const MAX_QUEUE_WAIT: Duration = Duration::from_millis(200);

/// The response code of a put's status, as RocketMQ's
/// `SendMessageProcessor` maps them (a sync master's slave timeouts:
/// FLUSH_SLAVE_TIMEOUT 12, SLAVE_NOT_AVAILABLE 11; the message is stored
/// and the answer still says where).
pub(super) fn code_of(status: PutStatus) -> i32 {
    match status {
        PutStatus::PutOk => response::SUCCESS,
        PutStatus::FlushDiskTimeout => response::FLUSH_DISK_TIMEOUT,
        PutStatus::FlushSlaveTimeout => response::FLUSH_SLAVE_TIMEOUT,
        PutStatus::SlaveNotAvailable => response::SLAVE_NOT_AVAILABLE,
        PutStatus::MessageIllegal => response::MESSAGE_ILLEGAL,
        PutStatus::ServiceNotAvailable => response::SERVICE_NOT_AVAILABLE,
        _ => response::SYSTEM_ERROR,
    }
}

/// The answer to a send: its code from the put's status, and where the
/// message went.
pub(super) fn answer(
    req: &RemotingCommand,
    r: &PutResult,
    queue_id: u32,
    store_host: SocketAddr,
) -> RemotingCommand {
    let mut resp = RemotingCommand::response_to(req, code_of(r.status), r.detail.clone());
    if let Some(o) = r.offsets {
        resp.ext_fields = SendMessageResponse {
            msg_id: offset_msg_id(store_host, o.phys_offset),
            queue_id: queue_id as i32,
            queue_offset: o.queue_offset as i64,
            transaction_id: None,
        }
        .to_fields();
    }
    resp
}

/// Counts a send as pending until dropped (answered or refused), and
/// times it for the latency histogram.
struct Pending {
    count: Arc<AtomicUsize>,
    stats: Arc<WireStats>,
    started: Instant,
}

impl Pending {
    fn finish(self, resp: &RemotingCommand) {
        let us = self.started.elapsed().as_micros() as u64;
        self.stats.record_send(resp.code == response::SUCCESS, us);
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
    }
}

impl BrokerHandler {
    /// Handles a send that arrived `waited` ago; `answer_with` is called
    /// exactly once with the answer, on this thread (refusals) or on the
    /// thread that completes the put.
    pub(super) fn send(
        &self,
        mut req: RemotingCommand,
        peer: SocketAddr,
        waited: Duration,
        answer_with: impl FnOnce(RemotingCommand) + Send + 'static,
    ) {
        if is_batch(&req) {
            return answer_with(self.send_batch(&req, peer));
        }
        let pending = match self.admit(&req, waited) {
            Ok(p) => p,
            Err(resp) => return answer_with(resp),
        };
        let msg = match self.decode_send(&mut req, peer) {
            Ok(m) => m,
            Err(resp) => {
                pending.finish(&resp);
                return answer_with(resp);
            }
        };
        self.store_send(req, msg, pending, answer_with);
    }

    /// A send handled on its connection's reader task
    /// ([`super::Handler::try_inline`]), or given back (`Some`) for the
    /// blocking pool. Taken inline only when nothing on its way can wait
    /// for long: a plain send (no batch), whose header and properties
    /// decode, to a topic that exists (creating one persists the topic
    /// config: blocking pool), neither a half message (the transaction
    /// service waits for its own put) nor delayed (a scheduler's put
    /// waits for its flush), and, under `pool` or batched `group`, with
    /// the staging area at most half full (below). A malformed send is
    /// given back too: it is refused there exactly as before. The caller
    /// has checked the ACL.
    ///
    /// What then runs on this thread is `Store::put_async`'s append and
    /// the strategy's registration, which can wait only for:
    /// - the commit log's append lock, held by other appenders for their
    ///   own append (a record copy, or a pwrite into the page cache; a
    ///   segment roll creates and preallocates a file): short, and a
    ///   pwrite into the page cache is accepted (the kernel's dirty-page
    ///   throttling may slow it under write-back pressure, as for any
    ///   appender);
    /// - room in the staging area (`pool`, batched `group`): an append
    ///   waits while the area is full, i.e. until the committer (`pool`)
    ///   or the group service's next write (`group`) drains it, which a
    ///   hung disk could delay without bound. Hence the staged-bytes check
    ///   here: with more than half the area staged the send goes to the
    ///   blocking pool, so an inline append would wait only if the area
    ///   went from half full to full between the check and the append;
    /// - the strategy's short-held state locks (group commit's waiter
    ///   list, the sync completer's queue: unbounded, never waited on;
    ///   neither is held across an fdatasync) and the replica gate's
    ///   waiter list (a sync master: registration only).
    ///
    /// The store's refusals (slave mode, a demoted master's write block,
    /// shut down, poisoned) come from the same `put_async` and are
    /// answered as on the blocking pool. Under `async` and `pool` the
    /// completion, hence the answer's encoding, runs here too.
    pub(super) fn send_inline(
        &self,
        mut req: RemotingCommand,
        peer: SocketAddr,
        reply: Reply,
    ) -> Option<(RemotingCommand, Reply)> {
        if is_batch(&req) {
            return Some((req, reply));
        }
        let mut msg = match self.parse_send(&req, peer, false) {
            Ok(Some(m)) => m,
            _ => return Some((req, reply)),
        };
        if is_half(&msg)
            || !matches!(self.broker.delivery_of(&msg), Ok(Delivery::Now))
            || !self.staging_has_room(req.body.len())
        {
            return Some((req, reply));
        }
        self.stats.inline_sends.fetch_add(1, Ordering::Relaxed);
        let pending = match self.admit(&req, reply.waited()) {
            Ok(p) => p,
            Err(resp) => {
                reply.send(&resp);
                return None;
            }
        };
        msg.body = std::mem::take(&mut req.body);
        self.store_send(req, msg, pending, move |resp| {
            reply.send(&resp);
        });
        None
    }

    /// Whether a send of `body` bytes may append inline: true without a
    /// staging area (`sync`, `async`, unbatched `group`), else when at
    /// most half the area (`Store::staging`) is staged with it.
    fn staging_has_room(&self, body: usize) -> bool {
        match self.broker.store().staging() {
            None => true,
            Some((staged, capacity)) => staged.saturating_add(body as u64) <= capacity as u64 / 2,
        }
    }

    /// Counts a send as pending, or refuses it SYSTEM_BUSY (counted,
    /// finished) past `max_pending` sends or after waiting longer than
    /// `max_queue_wait` for a thread.
    fn admit(&self, req: &RemotingCommand, waited: Duration) -> Result<Pending, RemotingCommand> {
        let now = self.pending.fetch_add(1, Ordering::AcqRel);
        let pending = Pending {
            count: self.pending.clone(),
            stats: self.stats.clone(),
            started: Instant::now() - waited,
        };
        let busy = if now >= self.max_pending {
            Some(format!(
                "broker busy: {now} sends are being stored (at most {}); retry later",
                self.max_pending
            ))
        } else if waited > self.max_queue_wait {
            Some(format!(
                "[TIMEOUT_CLEAN_QUEUE] broker busy: the send waited {} ms in the queue (at most {} ms); retry later",
                waited.as_millis(),
                self.max_queue_wait.as_millis()
            ))
        } else {
            None
        };
        match busy {
            Some(why) => {
                let resp = RemotingCommand::response_to(req, response::SYSTEM_BUSY, Some(why));
                pending.finish(&resp);
                Err(resp)
            }
            None => Ok(pending),
        }
    }

    /// Stores a decoded send and answers from the put's completion.
    fn store_send(
        &self,
        req: RemotingCommand,
        msg: Message,
        pending: Pending,
        answer_with: impl FnOnce(RemotingCommand) + Send + 'static,
    ) {
        let half = is_half(&msg);
        let store_host = self.store_host;
        let queue_id = msg.queue_id;
        let done = move |r: PutResult| {
            let resp = answer(&req, &r, queue_id, store_host);
            pending.finish(&resp);
            answer_with(resp);
        };
        if half {
            // Half messages go through the transaction service, which
            // waits for its own put (this thread is a blocking-pool one).
            done(self.broker.prepare_transaction(&msg));
        } else {
            self.broker.put_async(&msg, done);
        }
    }

    /// SEND_BATCH_MESSAGE, or a send whose header says `batch` (RocketMQ
    /// handles both as a batch), answered on this thread (`batch.rs`).
    pub(super) fn send_batch(&self, req: &RemotingCommand, peer: SocketAddr) -> RemotingCommand {
        super::batch::send_batch(
            &super::batch::SendCtx {
                broker: &self.broker,
                store_host: self.store_host,
                pending: &self.pending,
                max_pending: self.max_pending,
                stats: &self.stats,
            },
            req,
            peer,
        )
    }

    /// A send answered on this thread (for callers of `Handler::handle`).
    pub(super) fn send_blocking(&self, req: RemotingCommand, peer: SocketAddr) -> RemotingCommand {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let fallback = RemotingCommand::response_to(
            &req,
            response::SYSTEM_ERROR,
            Some("the send was dropped unanswered".into()),
        );
        self.send(req, peer, Duration::ZERO, move |resp| {
            let _ = tx.send(resp);
        });
        rx.recv().unwrap_or(fallback)
    }

    /// The message a send carries, every field checked, its topic created
    /// if unknown (autoCreateTopicEnable); or the refusal naming the
    /// field. The body is taken out of `req`.
    fn decode_send(
        &self,
        req: &mut RemotingCommand,
        peer: SocketAddr,
    ) -> Result<Message, RemotingCommand> {
        let mut msg = self.parse_send(req, peer, true)?.ok_or_else(|| {
            RemotingCommand::response_to(
                req,
                response::SYSTEM_ERROR,
                Some("the topic was not created".into()),
            )
        })?;
        msg.body = std::mem::take(&mut req.body);
        Ok(msg)
    }

    /// The message a send carries without its body, every field checked;
    /// an unknown topic is created when `create` (autoCreateTopicEnable),
    /// else `None`. Or the refusal naming the field.
    fn parse_send(
        &self,
        req: &RemotingCommand,
        peer: SocketAddr,
        create: bool,
    ) -> Result<Option<Message>, RemotingCommand> {
        let v2 = req.code == request::SEND_MESSAGE_V2;
        let refuse = |req: &RemotingCommand, code: i32, why: String| {
            RemotingCommand::response_to(req, code, Some(why))
        };
        let h = SendMessageRequest::from_fields(&req.ext_fields, v2)
            .map_err(|e| refuse(req, response::SYSTEM_ERROR, format!("send header: {e}")))?;
        debug_assert!(!h.batch, "batches are answered by send_batch");
        let queue_id = u32::try_from(h.queue_id).map_err(|_| {
            refuse(
                req,
                response::MESSAGE_ILLEGAL,
                format!("queueId {} is negative", h.queue_id),
            )
        })?;
        let properties = decode_properties(h.properties.as_bytes())
            .map_err(|e| refuse(req, response::MESSAGE_ILLEGAL, format!("properties: {e}")))?;
        // autoCreateTopicEnable: an unknown topic is created with the
        // queue count the producer proposes (defaultTopicQueueNums).
        let queues = match self.broker.topic_queues(&h.topic) {
            Some(n) => n,
            None if !create => return Ok(None),
            None => {
                let n = h.default_topic_queue_nums.clamp(1, 1024) as u32;
                self.broker
                    .create_topic(&h.topic, n)
                    .map_err(|e| refuse(req, response::MESSAGE_ILLEGAL, e.to_string()))?;
                n
            }
        };
        if queue_id >= queues {
            return Err(refuse(
                req,
                response::MESSAGE_ILLEGAL,
                format!("queueId {queue_id} is past the topic's {queues} queues"),
            ));
        }
        Ok(Some(Message {
            queue_id,
            flag: h.flag,
            sys_flag: h.sys_flag,
            properties,
            born_timestamp_ms: h.born_timestamp,
            born_host: peer,
            reconsume_times: h.reconsume_times,
            ..Message::new(h.topic, Vec::new())
        }))
    }
}

/// Whether a send's header says `batch` (`m` in V2): a batch body
/// whatever the code says.
fn is_batch(req: &RemotingCommand) -> bool {
    let field = if req.code == request::SEND_MESSAGE_V2 {
        "m"
    } else {
        "batch"
    };
    req.ext_fields.bool_or_false(field).unwrap_or(false)
}

/// A transaction's half message (`TRAN_MSG=true`).
fn is_half(msg: &Message) -> bool {
    msg.properties
        .get(crate::txn::PROPERTY_TRANSACTION_PREPARED)
        .is_some_and(|v| v == "true")
}
