//! [`BrokerApi`] over TCP: mqlab's client talking RocketMQ's remoting
//! protocol to a broker (mqlab's, or any that answers route queries for
//! its own topics).
//!
//! Connections: requests go one at a time over pooled connections, as many
//! as callers in flight, so a held pull never delays a send (one idle for
//! a minute is closed, before the broker's 120 s idle timeout would). Heartbeats and
//! unregisters go over one more, the control connection, which is where
//! the broker pushes its own requests (it sends a client its requests on
//! the connection its HEART_BEAT came on). A reader thread dispatches them
//! (module `control`):
//! - NOTIFY_CONSUMER_IDS_CHANGED reaches the consumers' channels, so a
//!   group rebalances as soon as a member joins or leaves, as in-process;
//! - CHECK_TRANSACTION_STATE (its body the half message's stored record)
//!   reaches the transactional producer's channel, which answers with
//!   END_TRANSACTION (`fromTransactionCheck`) like any other request;
//! - heartbeats repeat every `heartbeat_interval` (30 s, as RocketMQ's
//!   client; [`TcpBroker::with_heartbeat_interval`]), which keeps the
//!   control connection open and re-opens it (re-registering every channel)
//!   after it died: pushes sent while it was down are lost, as on
//!   RocketMQ (a consumer's rebalance timer and the broker's next check
//!   round cover them).
//!
//! A pull's `cancel` flag is watched while the broker holds the pull: once
//! set, the call returns within 50 ms (an error; the connection is closed
//! rather than pooled, since its answer is still to come), and a pull
//! cancelled before it is sent is sent without holding.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mqlab_broker::types::{
    ConsumerSendMsgBackRequest, EndTransactionRequest, HeartbeatRequest, LockBatchRequest,
    MessageQueue, PullRequest, PullResult, PullStatus, QueryConsumerOffsetRequest,
    UnregisterClientRequest, UpdateConsumerOffsetRequest,
};
use mqlab_broker::ClientChannel;
use mqlab_engine::clock::{self, Clock};
use mqlab_engine::io::pwrite::PwriteEnv;
use mqlab_engine::log::record::{self, CrcCheck, Decoded};
use mqlab_engine::message::{AppendOffsets, PutStatus, StoredMessage};
use mqlab_engine::{Message, PutResult};
use mqlab_protocol::body::route::TopicRouteData;
use mqlab_protocol::codes::{request, response};
use mqlab_protocol::headers::{
    pull_sys_flag, PullMessageRequest, PullMessageResponse, SendMessageResponse,
};
use mqlab_protocol::{decode_frame, encode_frame, ExtFields, Limits, RemotingCommand};

use crate::api::{BrokerApi, LocalFiles};
use crate::error::{Error, Result};

mod control;
mod encode;
pub mod pipelined;
pub mod routed;

use control::Control;
pub use control::PushStats;

/// RocketMQ's client heartbeat period.
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(30);

/// A pooled connection idle this long is closed rather than reused: the
/// broker closes connections silent for 120 s, and a request written to
/// one it already closed would fail.
const POOL_IDLE: Duration = Duration::from_secs(60);

/// A broker reached over TCP. Dropping it closes its connections and ends
/// its threads.
pub struct TcpBroker {
    addr: SocketAddr,
    group: String,
    /// Idle connections, with when each was last used.
    pool: Mutex<Vec<(TcpStream, Instant)>>,
    opaque: AtomicI32,
    files: PathBuf,
    clock: Arc<dyn Clock>,
    control: Arc<Control>,
}

impl Drop for TcpBroker {
    fn drop(&mut self) {
        self.control.close();
    }
}

impl std::fmt::Debug for TcpBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpBroker")
            .field("addr", &self.addr)
            .finish()
    }
}

fn wire(e: impl std::fmt::Display) -> Error {
    Error::Wire(e.to_string())
}

impl TcpBroker {
    /// A client of the broker at `addr`; sends carry `producer_group`;
    /// a broadcasting consumer's offsets go under `local_dir`.
    pub fn new(addr: SocketAddr, producer_group: &str, local_dir: PathBuf) -> Self {
        TcpBroker {
            addr,
            group: producer_group.to_string(),
            pool: Mutex::new(Vec::new()),
            opaque: AtomicI32::new(1),
            files: local_dir,
            clock: clock::system(),
            control: Arc::new(Control::new(addr, HEARTBEAT_INTERVAL)),
        }
    }

    /// Repeats heartbeats this often instead of every 30 s (also how soon
    /// a lost control connection is noticed when no push is due). Set
    /// before the first heartbeat.
    pub fn with_heartbeat_interval(mut self, every: Duration) -> Self {
        self.control = Arc::new(Control::new(self.addr, every));
        self
    }

    /// The clock this client stamps born times and measures lock expiry
    /// with instead of the system clock: a test serving a broker on a
    /// manual clock shares that clock with its clients, as in-process.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Counters of the control connection (connects, heartbeats, pushes).
    pub fn push_stats(&self) -> &PushStats {
        self.control.stats()
    }

    /// One request and its answer (waiting up to `timeout`).
    pub fn call(&self, req: RemotingCommand, timeout: Duration) -> Result<RemotingCommand> {
        self.call_cancellable(req, timeout, None)
    }

    /// [`TcpBroker::call`], giving up (and closing the connection) within
    /// 50 ms of `cancel` being set.
    fn call_cancellable(
        &self,
        mut req: RemotingCommand,
        timeout: Duration,
        cancel: Option<&AtomicBool>,
    ) -> Result<RemotingCommand> {
        req.opaque = self.opaque.fetch_add(1, Ordering::Relaxed) & i32::MAX;
        let pooled = {
            let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
            pool.retain(|(_, used)| used.elapsed() < POOL_IDLE);
            pool.pop().map(|(c, _)| c)
        };
        let mut conn = match pooled {
            Some(c) => c,
            None => {
                let c = TcpStream::connect_timeout(&self.addr, Duration::from_secs(3))
                    .map_err(|e| wire(format!("connect {}: {e}", self.addr)))?;
                let _ = c.set_nodelay(true);
                c
            }
        };
        let deadline = Instant::now() + timeout;
        let slice = if cancel.is_some() {
            timeout.min(Duration::from_millis(50))
        } else {
            timeout
        };
        conn.set_read_timeout(Some(slice.max(Duration::from_millis(1))))
            .map_err(wire)?;
        let bytes = encode_frame(&req).map_err(wire)?;
        conn.write_all(&bytes)
            .map_err(|e| wire(format!("write to {}: {e}", self.addr)))?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 64 * 1024];
        loop {
            if let Some((cmd, used)) = decode_frame(&buf, &Limits::default()).map_err(wire)? {
                buf.drain(..used);
                if cmd.is_response() && cmd.opaque == req.opaque {
                    if buf.is_empty() {
                        self.pool
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push((conn, Instant::now()));
                    }
                    return Ok(cmd);
                }
                continue;
            }
            let n = match conn.read(&mut chunk) {
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                    ) =>
                {
                    if cancel.is_some_and(|c| c.load(Ordering::Acquire)) {
                        return Err(wire("cancelled while waiting for the answer"));
                    }
                    if Instant::now() >= deadline {
                        return Err(wire(format!(
                            "read from {}: no answer within {timeout:?}",
                            self.addr
                        )));
                    }
                    continue;
                }
                Err(e) => return Err(wire(format!("read from {}: {e}", self.addr))),
            };
            if n == 0 {
                return Err(wire(format!("{} closed the connection", self.addr)));
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// PULL_MESSAGE for `group`, with the broker id the answer suggests
    /// for the next pull of the queue (`suggestWhichBrokerId`, 0 = the
    /// master; a negative one is taken as 0).
    pub fn pull_suggesting(
        &self,
        req: &PullRequest,
        group: &str,
        cancel: Option<&AtomicBool>,
    ) -> Result<(PullResult, u64)> {
        // Cancelled already: one look without holding, as in-process.
        let suspend_ms = if cancel.is_some_and(|c| c.load(Ordering::Acquire)) {
            0
        } else {
            req.suspend_ms
        };
        let h = PullMessageRequest {
            consumer_group: group.into(),
            topic: req.mq.topic.clone(),
            queue_id: req.mq.queue_id as i32,
            queue_offset: req.offset as i64,
            max_msg_nums: req.max_msgs.min(i32::MAX as usize) as i32,
            sys_flag: pull_sys_flag::SUSPEND
                | if req.filter.is_some() {
                    pull_sys_flag::SUBSCRIPTION
                } else {
                    0
                },
            commit_offset: 0,
            suspend_timeout_millis: suspend_ms as i64,
            subscription: req.filter.as_ref().map(|f| f.expression.clone()),
            sub_version: 0,
            expression_type: Some("TAG".into()),
        };
        let mut cmd = RemotingCommand::request(request::PULL_MESSAGE, 0);
        cmd.ext_fields = h.to_fields();
        let r = self.call_cancellable(
            cmd,
            Duration::from_millis(suspend_ms) + Duration::from_secs(10),
            cancel,
        )?;
        let status = match r.code {
            response::SUCCESS => PullStatus::Found,
            response::PULL_NOT_FOUND => PullStatus::NoNewMsg,
            response::PULL_RETRY_IMMEDIATELY => PullStatus::NoMatchedMsg,
            response::PULL_OFFSET_MOVED => PullStatus::OffsetIllegal,
            code => {
                return Err(wire(format!(
                    "pull: code {code}: {}",
                    r.remark.unwrap_or_default()
                )))
            }
        };
        let p = PullMessageResponse::from_fields(&r.ext_fields).map_err(wire)?;
        let msgs = decode_records(&r.body)?;
        let r = PullResult {
            status,
            next_offset: p.next_begin_offset.max(0) as u64,
            min_offset: p.min_offset.max(0) as u64,
            max_offset: p.max_offset.max(0) as u64,
            msgs,
        };
        Ok((r, p.suggest_which_broker_id.max(0) as u64))
    }

    /// UPDATE_CONSUMER_OFFSET, the broker's refusal an error.
    pub fn commit_offset(&self, group: &str, mq: &MessageQueue, offset: u64) -> Result<()> {
        let r = self.quick(
            self.offset_req(request::UPDATE_CONSUMER_OFFSET, group, mq)
                .with_field("commitOffset", offset),
        )?;
        if r.code == response::SUCCESS {
            Ok(())
        } else {
            Err(wire(format!(
                "commit offset on {}: code {} {}",
                self.addr,
                r.code,
                r.remark.unwrap_or_default()
            )))
        }
    }

    /// QUERY_CONSUMER_OFFSET: None when the group has no offset there
    /// (QUERY_NOT_FOUND), an error when the broker cannot be asked.
    pub fn fetch_offset(&self, group: &str, mq: &MessageQueue) -> Result<Option<u64>> {
        let r = self.quick(self.offset_req(request::QUERY_CONSUMER_OFFSET, group, mq))?;
        if r.code != response::SUCCESS {
            return Ok(None);
        }
        Ok(r.ext_fields
            .i64_opt("offset")
            .ok()
            .flatten()
            .map(|o| o.max(0) as u64))
    }

    /// The address this client talks to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn quick(&self, req: RemotingCommand) -> Result<RemotingCommand> {
        self.call(req, Duration::from_secs(10))
    }

    fn route(&self, topic: &str, create: bool) -> Result<Vec<MessageQueue>> {
        let r = self.quick(
            RemotingCommand::request(request::GET_ROUTEINFO_BY_TOPIC, 0)
                .with_field("topic", topic)
                .with_field("autoCreate", create),
        )?;
        if r.code != response::SUCCESS {
            return Err(wire(format!(
                "route of {topic}: code {} {}",
                r.code,
                r.remark.unwrap_or_default()
            )));
        }
        let route = TopicRouteData::decode(&r.body).map_err(wire)?;
        let n = route
            .queue_datas
            .first()
            .map_or(0, |q| q.write_queue_nums.max(0) as u32);
        Ok((0..n).map(|q| MessageQueue::new(topic, q)).collect())
    }

    fn put_result(r: Result<RemotingCommand>) -> PutResult {
        let fail = |detail: String| PutResult {
            status: PutStatus::ServiceNotAvailable,
            offsets: None,
            detail: Some(detail),
        };
        let r = match r {
            Ok(r) => r,
            Err(e) => return fail(e.to_string()),
        };
        let status = match r.code {
            response::SUCCESS => PutStatus::PutOk,
            response::FLUSH_DISK_TIMEOUT => PutStatus::FlushDiskTimeout,
            // A sync master's: stored, not (yet) on a slave.
            response::FLUSH_SLAVE_TIMEOUT => PutStatus::FlushSlaveTimeout,
            response::SLAVE_NOT_AVAILABLE => PutStatus::SlaveNotAvailable,
            response::MESSAGE_ILLEGAL => PutStatus::MessageIllegal,
            code => return fail(format!("code {code}: {}", r.remark.unwrap_or_default())),
        };
        let offsets = SendMessageResponse::from_fields(&r.ext_fields)
            .ok()
            .and_then(|h| {
                let phys =
                    u64::from_str_radix(h.msg_id.get(h.msg_id.len().saturating_sub(16)..)?, 16)
                        .ok()?;
                Some(AppendOffsets {
                    phys_offset: phys,
                    wrote_bytes: 0,
                    queue_offset: h.queue_offset.max(0) as u64,
                    store_timestamp_ms: 0,
                })
            });
        PutResult {
            status,
            offsets,
            detail: r.remark,
        }
    }

    fn offset_req(&self, code: i32, group: &str, mq: &MessageQueue) -> RemotingCommand {
        RemotingCommand::request(code, 0)
            .with_field("consumerGroup", group)
            .with_field("topic", &mq.topic)
            .with_field("queueId", mq.queue_id)
    }

    fn lock_body(req: &LockBatchRequest) -> Vec<u8> {
        let set: Vec<_> = req
            .mqs
            .iter()
            .map(|mq| serde_json::json!({"topic": mq.topic, "brokerName": "broker", "queueId": mq.queue_id}))
            .collect();
        serde_json::json!({"consumerGroup": req.group, "clientId": req.client_id, "mqSet": set})
            .to_string()
            .into_bytes()
    }
}

impl BrokerApi for TcpBroker {
    fn send_message(&self, msg: &Message) -> PutResult {
        let req = match encode::send_message_v2(msg, &self.group, 8) {
            Ok(r) => r,
            Err(e) => {
                return PutResult {
                    status: PutStatus::MessageIllegal,
                    offsets: None,
                    detail: Some(e),
                }
            }
        };
        Self::put_result(self.call(req, Duration::from_secs(30)))
    }

    fn get_route_info(&self, topic: &str) -> Result<Vec<MessageQueue>> {
        self.route(topic, true)
    }

    fn get_topic_queues(&self, topic: &str) -> Vec<MessageQueue> {
        self.route(topic, false).unwrap_or_default()
    }

    fn create_topic(&self, topic: &str, queues: u32) -> Result<()> {
        let r = self.quick(
            RemotingCommand::request(request::UPDATE_AND_CREATE_TOPIC, 0)
                .with_field("topic", topic)
                .with_field("readQueueNums", queues)
                .with_field("writeQueueNums", queues),
        )?;
        if r.code == response::SUCCESS {
            Ok(())
        } else {
            Err(wire(format!(
                "create {topic}: {}",
                r.remark.unwrap_or_default()
            )))
        }
    }

    fn get_offset_range(&self, mq: &MessageQueue) -> (u64, u64) {
        let get = |code| {
            self.quick(self.offset_req(code, "", mq))
                .ok()
                .and_then(|r| r.ext_fields.i64_opt("offset").ok().flatten())
                .unwrap_or(0)
                .max(0) as u64
        };
        (get(request::GET_MIN_OFFSET), get(request::GET_MAX_OFFSET))
    }

    fn pull_message(&self, req: &PullRequest, cancel: Option<&AtomicBool>) -> Result<PullResult> {
        self.pull_suggesting(req, "mqlab-client", cancel)
            .map(|(r, _)| r)
    }

    fn query_consumer_offset(&self, req: &QueryConsumerOffsetRequest) -> Option<u64> {
        let r = self
            .quick(self.offset_req(request::QUERY_CONSUMER_OFFSET, &req.group, &req.mq))
            .ok()?;
        if r.code != response::SUCCESS {
            return None;
        }
        r.ext_fields
            .i64_opt("offset")
            .ok()
            .flatten()
            .map(|o| o.max(0) as u64)
    }

    fn update_consumer_offset(&self, req: &UpdateConsumerOffsetRequest) {
        let _ = self.quick(
            self.offset_req(request::UPDATE_CONSUMER_OFFSET, &req.group, &req.mq)
                .with_field("commitOffset", req.offset),
        );
    }

    fn heartbeat(&self, req: &HeartbeatRequest, channel: Arc<dyn ClientChannel>) -> Result<()> {
        self.control.heartbeat(req, channel)
    }

    fn unregister_client(&self, req: &UnregisterClientRequest) {
        self.control.unregister(req)
    }

    fn get_consumer_list(&self, group: &str) -> Vec<String> {
        self.quick(
            RemotingCommand::request(request::GET_CONSUMER_LIST_BY_GROUP, 0)
                .with_field("consumerGroup", group),
        )
        .ok()
        .and_then(|r| serde_json::from_slice::<serde_json::Value>(&r.body).ok())
        .and_then(|v| {
            v["consumerIdList"].as_array().map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
        })
        .unwrap_or_default()
    }

    fn lock_batch_mq(&self, req: &LockBatchRequest) -> BTreeSet<MessageQueue> {
        let r = self.quick(
            RemotingCommand::request(request::LOCK_BATCH_MQ, 0).with_body(Self::lock_body(req)),
        );
        r.ok()
            .and_then(|r| serde_json::from_slice::<serde_json::Value>(&r.body).ok())
            .map(|v| {
                v["lockOKMQSet"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|e| {
                        Some(MessageQueue::new(
                            e["topic"].as_str()?,
                            e["queueId"].as_u64()? as u32,
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn unlock_batch_mq(&self, req: &LockBatchRequest) {
        let _ = self.quick(
            RemotingCommand::request(request::UNLOCK_BATCH_MQ, 0).with_body(Self::lock_body(req)),
        );
    }

    fn end_transaction(&self, req: &EndTransactionRequest) -> Result<Option<PutResult>> {
        use mqlab_broker::types::LocalTransactionState as S;
        let kind = match req.state {
            S::CommitMessage => 8,
            S::RollbackMessage => 12,
            S::Unknown => 0,
        };
        // Sent as a request, not one-way, so a failure is seen.
        let r = self.quick(
            RemotingCommand::request(request::END_TRANSACTION, 0)
                .with_field("producerGroup", &req.producer_group)
                .with_field("commitLogOffset", req.commit_log_offset)
                .with_field("commitOrRollback", kind)
                .with_field("fromTransactionCheck", req.from_transaction_check),
        )?;
        if r.code == response::SUCCESS {
            Ok(None)
        } else {
            Err(wire(format!(
                "end transaction: {}",
                r.remark.unwrap_or_default()
            )))
        }
    }

    fn consumer_send_msg_back(&self, req: &ConsumerSendMsgBackRequest) -> PutResult {
        let cmd = RemotingCommand::request(request::CONSUMER_SEND_MSG_BACK, 0)
            .with_field("offset", req.msg.phys_offset)
            .with_field("group", &req.group)
            .with_field("delayLevel", 0)
            .with_field("originTopic", &req.msg.topic)
            .with_field("maxReconsumeTimes", req.max_reconsume_times);
        Self::put_result(self.quick(cmd))
    }

    fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    fn local_files(&self) -> LocalFiles {
        LocalFiles {
            env: Arc::new(PwriteEnv::new()),
            dir: self.files.clone(),
        }
    }
}

/// The messages of a body of stored records (a pull's answer, a check's
/// half message), each checked against its CRCs and its own offset; blank
/// records skipped.
fn decode_records(body: &[u8]) -> Result<Vec<StoredMessage>> {
    let mut msgs = Vec::new();
    let mut at = 0usize;
    while at < body.len() {
        let rec = &body[at..];
        let size = match rec.get(..4) {
            Some(b) => u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize,
            None => return Err(wire(format!("records: {} stray bytes at {at}", rec.len()))),
        };
        if size < 8 || size > rec.len() {
            return Err(wire(format!(
                "records: record of {size} bytes at {at} does not fit"
            )));
        }
        let rec = &rec[..size];
        let phys = rec
            .get(28..36)
            .map_or(0, |b| u64::from_be_bytes(b.try_into().expect("8 bytes")));
        match record::decode(rec, phys, size as u64, CrcCheck::Present) {
            Ok(Decoded::Message(m)) => msgs.push(m),
            Ok(Decoded::Blank(_)) => {}
            Err(e) => return Err(wire(format!("records: record at {phys}: {e}"))),
        }
        at += size;
    }
    Ok(msgs)
}
