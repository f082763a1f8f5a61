//! The broker's requests on the wire: SEND_MESSAGE (10) and
//! SEND_MESSAGE_V2 (310) into [`Broker::put`] (which hands delayed
//! messages, `DELAY` and `TIMER_*`, to the delay schedulers), half
//! messages (`TRAN_MSG`) into the transaction service, END_TRANSACTION;
//! SEND_BATCH_MESSAGE (320, `batch.rs`); HEART_BEAT (consumer groups
//! join), UNREGISTER_CLIENT, GET_CONSUMER_LIST_BY_GROUP; PULL_MESSAGE with
//! long polling, the records returned as stored; QUERY_CONSUMER_OFFSET,
//! UPDATE_CONSUMER_OFFSET, GET_MAX_OFFSET, GET_MIN_OFFSET; LOCK_BATCH_MQ
//! and UNLOCK_BATCH_MQ (ordered consumption); CONSUMER_SEND_MSG_BACK
//! (retries, DLQ); VIEW_MESSAGE_BY_ID; QUERY_MESSAGE and
//! SEARCH_OFFSET_BY_TIMESTAMP (`queries.rs`); UPDATE_AND_CREATE_TOPIC;
//! GET_ROUTEINFO_BY_TOPIC for the broker's own topics. Every other code is
//! REQUEST_CODE_NOT_SUPPORTED.
//!
//! The broker also sends one-way requests of its own, on the connection a
//! client's heartbeat came on: NOTIFY_CONSUMER_IDS_CHANGED to a group's
//! members when one joins (they rebalance at once), and
//! CHECK_TRANSACTION_STATE to a producer for a half message left unended.
//!
//! A send is decoded completely (header fields, properties) before
//! anything reaches the store: a malformed one gets MESSAGE_ILLEGAL or
//! SYSTEM_ERROR naming the field, and nothing is written. Plain sends to
//! existing topics are stored from the connection's reader task (no
//! blocking-pool hand-off) with the engine's asynchronous put and
//! answered from its completion; see `send.rs`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mqlab_protocol::body::heartbeat::HeartbeatData;
use mqlab_protocol::codes::{request, response};
use mqlab_protocol::headers::{pull_sys_flag, PullMessageRequest, PullMessageResponse};
use mqlab_protocol::{ExtFields, ProtocolError, RemotingCommand};

pub use super::stats::WireStats;
use super::{Conn, Handler, Reply};
use crate::types::{
    ConsumerData, HeartbeatRequest, MessageQueue, PullRequest, PullStatus, UnregisterClientRequest,
};
use crate::{Broker, ClientChannel, Subscription};

/// Most messages one pull returns.
const MAX_PULL_MSGS: i32 = 256;
/// Longest hold of a long-polling pull, ms.
const MAX_SUSPEND_MS: i64 = 30_000;

/// A client on the wire as the broker's [`ClientChannel`]: membership
/// changes and transaction check-backs are pushed on the connection the
/// client's heartbeat came on, as one-way requests (RocketMQ does the
/// same).
struct WireChannel {
    conn: Conn,
    store: Arc<mqlab_engine::Store>,
    store_host: SocketAddr,
}

impl ClientChannel for WireChannel {
    fn notify_consumer_ids_changed(&self, group: &str) {
        self.conn.push(
            RemotingCommand::request(request::NOTIFY_CONSUMER_IDS_CHANGED, 0)
                .with_field("consumerGroup", group),
        );
    }

    fn check_transaction_state(&self, req: crate::types::CheckTransactionStateRequest) {
        let m = &req.msg;
        let Ok(body) = self.store.record_bytes(m.phys_offset) else {
            return; // the half message is gone: nothing to ask
        };
        let uniq = m
            .properties
            .get(mqlab_engine::message::PROPERTY_UNIQ_KEY)
            .cloned()
            .unwrap_or_default();
        self.conn.push(
            RemotingCommand::request(request::CHECK_TRANSACTION_STATE, 0)
                .with_field("producerGroup", &req.producer_group)
                .with_field("tranStateTableOffset", m.queue_offset)
                .with_field("commitLogOffset", m.phys_offset)
                .with_field("msgId", &uniq)
                .with_field("transactionId", &uniq)
                .with_field("offsetMsgId", offset_msg_id(self.store_host, m.phys_offset))
                .with_body(body),
        );
    }
}

fn ok(req: &RemotingCommand) -> RemotingCommand {
    RemotingCommand::response_to(req, response::SUCCESS, None)
}

fn field_error(req: &RemotingCommand, e: ProtocolError) -> RemotingCommand {
    RemotingCommand::response_to(req, response::SYSTEM_ERROR, Some(e.to_string()))
}

/// The (topic, queueId) of a request, queueId checked.
fn queue_of(req: &RemotingCommand) -> Result<MessageQueue, ProtocolError> {
    let topic = req.ext_fields.str_req("topic")?;
    let qid = req.ext_fields.i64_req("queueId")?;
    let qid = u32::try_from(qid).map_err(|_| ProtocolError::Field {
        field: "queueId".into(),
        reason: format!("{qid} is out of range"),
    })?;
    Ok(MessageQueue::new(topic, qid))
}

/// RocketMQ's offset message id: the store host's IPv4 address and port
/// and the record's commit-log offset, 16 bytes as 32 uppercase hex
/// digits (an IPv6 host takes 16 address bytes: 28 bytes, 56 digits).
pub fn offset_msg_id(store_host: SocketAddr, phys_offset: u64) -> String {
    let mut b = Vec::with_capacity(28);
    match store_host {
        SocketAddr::V4(a) => b.extend_from_slice(&a.ip().octets()),
        SocketAddr::V6(a) => b.extend_from_slice(&a.ip().octets()),
    }
    b.extend_from_slice(&(store_host.port() as u32).to_be_bytes());
    b.extend_from_slice(&phys_offset.to_be_bytes());
    // (One allocation: this runs for every send's answer.)
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut id = String::with_capacity(2 * b.len());
    for x in b {
        id.push(HEX[usize::from(x >> 4)] as char);
        id.push(HEX[usize::from(x & 15)] as char);
    }
    id
}

/// Serves a [`Broker`] over the remoting server.
#[derive(Debug)]
pub struct BrokerHandler {
    pub(super) broker: Arc<Broker>,
    pub(super) store_host: SocketAddr,
    acl: Option<Arc<crate::acl::Acl>>,
    pub(super) pending: Arc<std::sync::atomic::AtomicUsize>,
    pub(super) max_pending: usize,
    /// A send that waited longer for a thread is answered SYSTEM_BUSY
    /// (RocketMQ's `waitTimeMillsInSendQueue`).
    pub(super) max_queue_wait: std::time::Duration,
    pub(super) stats: Arc<WireStats>,
    stopping: Arc<std::sync::atomic::AtomicBool>,
    hold: Arc<PullHold>,
}

impl BrokerHandler {
    /// A handler for `broker`, whose message ids name `store_host`.
    pub fn new(broker: Arc<Broker>, store_host: SocketAddr) -> Self {
        BrokerHandler {
            broker,
            store_host,
            acl: None,
            pending: Arc::default(),
            max_pending: 10_000,
            max_queue_wait: super::send::MAX_QUEUE_WAIT,
            stats: Arc::default(),
            stopping: Arc::default(),
            hold: Arc::default(),
        }
    }

    /// Set when the broker shuts down: held pulls return at once (within
    /// 50 ms) instead of keeping the broker alive until their timeout.
    pub fn stop_flag(&self) -> Arc<std::sync::atomic::AtomicBool> {
        self.stopping.clone()
    }

    /// The counters (shared: keep the Arc to read them while serving).
    pub fn stats(&self) -> Arc<WireStats> {
        self.stats.clone()
    }

    /// Back-pressure: at most `n` sends being stored at once; past it a
    /// send is answered SYSTEM_BUSY at once (the client backs off and
    /// retries) instead of queueing memory.
    pub fn with_max_pending_sends(mut self, n: usize) -> Self {
        self.max_pending = n;
        self
    }

    /// A send that waited longer than `wait` for a thread to store it is
    /// answered SYSTEM_BUSY `[TIMEOUT_CLEAN_QUEUE]` (RocketMQ's
    /// `waitTimeMillsInSendQueue`; default 200 ms).
    pub fn with_max_queue_wait(mut self, wait: std::time::Duration) -> Self {
        self.max_queue_wait = wait;
        self
    }

    /// Requires every request to be signed by an account of `acl`.
    pub fn with_acl(mut self, acl: Arc<crate::acl::Acl>) -> Self {
        self.acl = Some(acl);
        self
    }
}

impl BrokerHandler {
    fn heartbeat(&self, req: &RemotingCommand, conn: &Conn) -> RemotingCommand {
        let h = match HeartbeatData::decode(&req.body) {
            Ok(h) => h,
            Err(e) => return field_error(req, e),
        };
        let hb = HeartbeatRequest {
            client_id: h.client_id.clone(),
            producer_groups: h.producer_groups.clone(),
            consumers: h
                .consumers
                .iter()
                .map(|c| ConsumerData {
                    group: c.group_name.clone(),
                    subscriptions: c
                        .subscriptions
                        .iter()
                        .map(|s| Subscription::new(s.topic.clone(), &s.sub_string))
                        .collect(),
                })
                .collect(),
        };
        // A consumer group's retry topic exists from its first heartbeat
        // (RocketMQ creates it there too), so routes list it.
        for c in &hb.consumers {
            let retry = format!("%RETRY%{}", c.group);
            if self.broker.topic_queues(&retry).is_none() {
                if let Err(e) = self.broker.create_topic(&retry, 1) {
                    return RemotingCommand::response_to(
                        req,
                        response::SYSTEM_ERROR,
                        Some(e.to_string()),
                    );
                }
            }
        }
        let channel = Arc::new(WireChannel {
            conn: conn.clone(),
            store: self.broker.store().clone(),
            store_host: self.store_host,
        });
        match self.broker.heartbeat(&hb, channel) {
            Ok(()) => ok(req),
            Err(e) => {
                RemotingCommand::response_to(req, response::SYSTEM_ERROR, Some(e.to_string()))
            }
        }
    }

    fn unregister(&self, req: &RemotingCommand) -> RemotingCommand {
        let f = &req.ext_fields;
        self.broker.unregister_client(&UnregisterClientRequest {
            client_id: f.str_opt("clientID").unwrap_or("").to_string(),
            producer_group: f.str_opt("producerGroup").map(str::to_string),
            consumer_group: f.str_opt("consumerGroup").map(str::to_string),
        });
        ok(req)
    }

    fn consumer_list(&self, req: &RemotingCommand) -> RemotingCommand {
        match req.ext_fields.str_req("consumerGroup") {
            Ok(g) => {
                let ids = self.broker.consumer_ids(g);
                let body = serde_json::json!({ "consumerIdList": ids }).to_string();
                ok(req).with_body(body.into_bytes())
            }
            Err(e) => field_error(req, e),
        }
    }

    fn offsets(&self, req: &RemotingCommand) -> RemotingCommand {
        let mq = match queue_of(req) {
            Ok(mq) => mq,
            Err(e) => return field_error(req, e),
        };
        let group = req.ext_fields.str_opt("consumerGroup").unwrap_or("");
        match req.code {
            request::GET_MAX_OFFSET | request::GET_MIN_OFFSET => {
                let (min, max) = self.broker.queue_range(&mq);
                let v = if req.code == request::GET_MAX_OFFSET {
                    max
                } else {
                    min
                };
                ok(req).with_field("offset", v)
            }
            request::QUERY_CONSUMER_OFFSET => match self.broker.query_offset(group, &mq) {
                Some(v) => ok(req).with_field("offset", v),
                // No topic in the text: the C++ client logs remarks through
                // a printf-style format, and retry topics contain '%'.
                None => RemotingCommand::response_to(
                    req,
                    response::QUERY_NOT_FOUND,
                    Some("no committed offset of this group on this queue".into()),
                ),
            },
            _ => match req.ext_fields.i64_req("commitOffset") {
                Ok(v) if v >= 0 => {
                    self.broker.commit_offset(group, &mq, v as u64);
                    ok(req)
                }
                Ok(v) => RemotingCommand::response_to(
                    req,
                    response::SYSTEM_ERROR,
                    Some(format!("commitOffset {v} is negative")),
                ),
                Err(e) => field_error(req, e),
            },
        }
    }

    fn pull(&self, req: &RemotingCommand) -> RemotingCommand {
        match self.decode_pull(req) {
            Ok(pr) => pull_answer(&self.broker, &self.stats, &self.stopping, req, &pr),
            Err(resp) => resp,
        }
    }

    /// The broker's request of a PULL_MESSAGE, every field checked (and
    /// the committed offset it carries recorded); or the refusal.
    fn decode_pull(&self, req: &RemotingCommand) -> Result<PullRequest, RemotingCommand> {
        let h =
            PullMessageRequest::from_fields(&req.ext_fields).map_err(|e| field_error(req, e))?;
        let (Ok(queue_id), Ok(offset)) = (u32::try_from(h.queue_id), u64::try_from(h.queue_offset))
        else {
            return Err(RemotingCommand::response_to(
                req,
                response::SYSTEM_ERROR,
                Some(format!(
                    "queueId {} and queueOffset {} must not be negative",
                    h.queue_id, h.queue_offset
                )),
            ));
        };
        let mq = MessageQueue::new(h.topic.clone(), queue_id);
        if h.sys_flag & pull_sys_flag::COMMIT_OFFSET != 0 && h.commit_offset >= 0 {
            self.broker
                .commit_offset(&h.consumer_group, &mq, h.commit_offset as u64);
        }
        let filter = match (
            &h.subscription,
            h.sys_flag & pull_sys_flag::SUBSCRIPTION != 0,
        ) {
            (Some(s), true) => Some(Arc::new(Subscription::new(h.topic.clone(), s))),
            _ => None,
        };
        let suspend_ms = if h.sys_flag & pull_sys_flag::SUSPEND != 0 {
            h.suspend_timeout_millis.clamp(0, MAX_SUSPEND_MS) as u64
        } else {
            0
        };
        Ok(PullRequest {
            mq,
            offset,
            max_msgs: h.max_msg_nums.clamp(1, MAX_PULL_MSGS) as usize,
            filter,
            suspend_ms,
        })
    }

    /// A long-polling pull (`handle_async`): answered at once when there
    /// is something to answer, else held by the [`PullHold`] (no thread
    /// waits) until a message reaches its queue or its hold ends.
    fn pull_async(&self, req: RemotingCommand, reply: Reply) {
        let mut pr = match self.decode_pull(&req) {
            Ok(pr) => pr,
            Err(resp) => {
                reply.send(&resp);
                return;
            }
        };
        let hold = Duration::from_millis(pr.suspend_ms);
        pr.suspend_ms = 0;
        let resp = pull_answer(&self.broker, &self.stats, &self.stopping, &req, &pr);
        let stopping = self.stopping.load(std::sync::atomic::Ordering::Acquire);
        if resp.code != response::PULL_NOT_FOUND
            || hold.is_zero()
            || !self.broker.config().long_polling
            || stopping
        {
            reply.send(&resp);
            return;
        }
        self.broker
            .stats
            .held_pulls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.hold.add(
            HeldPull {
                req,
                pr,
                reply,
                deadline: Instant::now() + hold,
            },
            || PullHoldCtx {
                broker: self.broker.clone(),
                stats: self.stats.clone(),
                stopping: self.stopping.clone(),
            },
        );
    }
}

/// The answer to a pull (`pr.suspend_ms` 0: at once; else the broker
/// holds this thread until a message comes or the hold ends).
fn pull_answer(
    broker: &Broker,
    stats: &WireStats,
    stopping: &std::sync::atomic::AtomicBool,
    req: &RemotingCommand,
    pr: &PullRequest,
) -> RemotingCommand {
    let r = match broker.pull(pr, Some(stopping)) {
        Ok(r) => r,
        Err(e) => {
            return RemotingCommand::response_to(req, response::SYSTEM_ERROR, Some(e.to_string()))
        }
    };
    let code = match r.status {
        PullStatus::Found => response::SUCCESS,
        PullStatus::NoNewMsg => response::PULL_NOT_FOUND,
        PullStatus::NoMatchedMsg => response::PULL_RETRY_IMMEDIATELY,
        PullStatus::OffsetIllegal => response::PULL_OFFSET_MOVED,
    };
    stats
        .pulled
        .fetch_add(r.msgs.len() as u64, std::sync::atomic::Ordering::Relaxed);
    let mut body = Vec::new();
    for m in &r.msgs {
        match broker.store().record_bytes(m.phys_offset) {
            Ok(b) => body.extend_from_slice(&b),
            Err(e) => {
                return RemotingCommand::response_to(
                    req,
                    response::SYSTEM_ERROR,
                    Some(format!("reading the record at {}: {e}", m.phys_offset)),
                )
            }
        }
    }
    let mut resp = RemotingCommand::response_to(req, code, None).with_body(body);
    resp.ext_fields = PullMessageResponse {
        suggest_which_broker_id: broker.suggest_broker_id(&r) as i64,
        next_begin_offset: r.next_offset as i64,
        min_offset: r.min_offset as i64,
        max_offset: r.max_offset as i64,
    }
    .to_fields();
    resp
}

/// A pull waiting for a message (long polling).
struct HeldPull {
    req: RemotingCommand,
    /// Its request, `suspend_ms` 0.
    pr: PullRequest,
    reply: Reply,
    deadline: Instant,
}

/// What the hold's thread answers with.
struct PullHoldCtx {
    broker: Arc<Broker>,
    stats: Arc<WireStats>,
    stopping: Arc<std::sync::atomic::AtomicBool>,
}

/// Long polling without a thread per held pull (RocketMQ's
/// `PullRequestHoldService`). Held pulls used to wait inside the broker
/// on the server's blocking pool, one thread each; past the pool's 512
/// threads every other request, sends included, queued behind them (a
/// soak with 1,000 long-polling consumers had every send refused
/// `[TIMEOUT_CLEAN_QUEUE]`). One thread, started at the first hold, wakes
/// when the dispatcher builds anything new (or every 20 ms, for the
/// holds that end), and answers the pulls whose queue has a message at
/// their offset, whose hold ended, or all of them when the broker stops.
#[derive(Default)]
struct PullHold {
    held: Mutex<Vec<HeldPull>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Set when the handler is dropped: the thread answers what it holds
    /// and ends.
    closed: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for PullHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PullHold")
            .field("held", &self.held.lock().map(|h| h.len()).unwrap_or(0))
            .finish()
    }
}

impl PullHold {
    fn add(self: &Arc<Self>, h: HeldPull, ctx: impl FnOnce() -> PullHoldCtx) {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).push(h);
        let mut t = self.thread.lock().unwrap_or_else(|e| e.into_inner());
        if t.is_none() {
            let (hold, ctx) = (self.clone(), ctx());
            *t = std::thread::Builder::new()
                .name("mqlab-pull-hold".into())
                .spawn(move || hold.run(ctx))
                .ok();
        }
    }

    fn run(&self, ctx: PullHoldCtx) {
        use std::sync::atomic::Ordering;
        let store = ctx.broker.store().clone();
        let mut seen = store.dispatched_offset();
        loop {
            let stop = ctx.stopping.load(Ordering::Acquire) || self.closed.load(Ordering::Acquire);
            if !stop {
                store.wait_dispatched(seen + 1, Duration::from_millis(20));
            }
            seen = store.dispatched_offset();
            let now = Instant::now();
            let ready: Vec<HeldPull> = {
                let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
                // Each queue's end looked up once, however many pulls
                // wait on it.
                let mut ends: std::collections::HashMap<MessageQueue, u64> =
                    std::collections::HashMap::new();
                let (ready, wait) = std::mem::take(&mut *held).into_iter().partition(|h| {
                    stop || now >= h.deadline || {
                        let end = match ends.get(&h.pr.mq) {
                            Some(e) => *e,
                            None => {
                                let e = ctx.broker.queue_range(&h.pr.mq).1;
                                ends.insert(h.pr.mq.clone(), e);
                                e
                            }
                        };
                        end > h.pr.offset
                    }
                });
                *held = wait;
                ready
            };
            for h in ready {
                let resp = pull_answer(&ctx.broker, &ctx.stats, &ctx.stopping, &h.req, &h.pr);
                h.reply.send(&resp);
            }
            if stop {
                // (A pull arriving now is answered at once: stopping.)
                let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
                if held.is_empty() {
                    return;
                }
            }
        }
    }
}

impl Drop for BrokerHandler {
    fn drop(&mut self) {
        self.hold
            .closed
            .store(true, std::sync::atomic::Ordering::Release);
        let t = self.hold.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = t {
            let _ = t.join();
        }
    }
}

/// `{"topic","brokerName","queueId"}` entries of a lock body, with each
/// entry's broker name (echoed in the answer: clients compare whole
/// entries).
fn mq_set(v: &serde_json::Value) -> Result<Vec<(MessageQueue, String)>, String> {
    let mut out = Vec::new();
    for e in v.as_array().into_iter().flatten() {
        let topic = e["topic"].as_str().ok_or("mqSet entry without topic")?;
        let qid = match &e["queueId"] {
            serde_json::Value::Number(n) => n.as_u64(),
            serde_json::Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
        .and_then(|q| u32::try_from(q).ok())
        .ok_or("mqSet entry without a valid queueId")?;
        let broker_name = e["brokerName"].as_str().unwrap_or("").to_string();
        out.push((MessageQueue::new(topic, qid), broker_name));
    }
    Ok(out)
}

fn mq_json(mq: &MessageQueue, broker_name: &str) -> serde_json::Value {
    serde_json::json!({"brokerName": broker_name, "queueId": mq.queue_id, "topic": mq.topic})
}

impl BrokerHandler {
    fn locks(&self, req: &RemotingCommand) -> RemotingCommand {
        let parsed = serde_json::from_slice::<serde_json::Value>(&req.body)
            .map_err(|e| format!("lock body: {e}"))
            .and_then(|v| {
                let group = v["consumerGroup"]
                    .as_str()
                    .ok_or("lock body: no consumerGroup")?
                    .to_string();
                let client = v["clientId"]
                    .as_str()
                    .ok_or("lock body: no clientId")?
                    .to_string();
                Ok((group, client, mq_set(&v["mqSet"])?))
            });
        let (group, client, entries) = match parsed {
            Ok(p) => p,
            Err(why) => {
                return RemotingCommand::response_to(req, response::SYSTEM_ERROR, Some(why))
            }
        };
        let mqs: Vec<MessageQueue> = entries.iter().map(|(mq, _)| mq.clone()).collect();
        if req.code == request::UNLOCK_BATCH_MQ {
            self.broker.unlock_batch(&group, &client, &mqs);
            return ok(req);
        }
        let held = self.broker.lock_batch(&group, &client, &mqs);
        let set: Vec<_> = entries
            .iter()
            .filter(|(mq, _)| held.contains(mq))
            .map(|(mq, name)| mq_json(mq, name))
            .collect();
        ok(req).with_body(
            serde_json::json!({ "lockOKMQSet": set })
                .to_string()
                .into_bytes(),
        )
    }

    fn send_back(&self, req: &RemotingCommand) -> RemotingCommand {
        let f = &req.ext_fields;
        let parsed = (|| -> Result<_, ProtocolError> {
            Ok((
                f.i64_req("offset")?,
                f.str_req("group")?.to_string(),
                f.i32_opt("maxReconsumeTimes")?,
            ))
        })();
        let (offset, group, max) = match parsed {
            Ok(p) => p,
            Err(e) => return field_error(req, e),
        };
        let msg = match u64::try_from(offset).map(|o| self.broker.store().get(o)) {
            Ok(Ok(m)) => m,
            _ => {
                return RemotingCommand::response_to(
                    req,
                    response::SYSTEM_ERROR,
                    Some(format!("no message at commit-log offset {offset}")),
                )
            }
        };
        let max = max.map_or(16, |m| m.clamp(0, 64) as u32);
        let r = self.broker.send_back(&group, &msg, max);
        if r.is_ok() {
            ok(req)
        } else {
            RemotingCommand::response_to(req, response::SYSTEM_ERROR, r.detail)
        }
    }

    fn view(&self, req: &RemotingCommand) -> RemotingCommand {
        match req.ext_fields.i64_req("offset").map(u64::try_from) {
            Ok(Ok(o)) => match self.broker.store().record_bytes(o) {
                Ok(b) => ok(req).with_body(b),
                Err(e) => {
                    RemotingCommand::response_to(req, response::SYSTEM_ERROR, Some(e.to_string()))
                }
            },
            Ok(Err(_)) => RemotingCommand::response_to(
                req,
                response::SYSTEM_ERROR,
                Some("offset is negative".into()),
            ),
            Err(e) => field_error(req, e),
        }
    }

    fn create_topic(&self, req: &RemotingCommand) -> RemotingCommand {
        let f = &req.ext_fields;
        let parsed = (|| -> Result<_, ProtocolError> {
            Ok((
                f.str_req("topic")?.to_string(),
                f.i32_opt("writeQueueNums")?.unwrap_or(8),
            ))
        })();
        match parsed {
            Ok((topic, queues)) if (1..=1024).contains(&queues) => {
                match self.broker.create_topic(&topic, queues as u32) {
                    Ok(()) => ok(req),
                    Err(e) => RemotingCommand::response_to(
                        req,
                        response::SYSTEM_ERROR,
                        Some(e.to_string()),
                    ),
                }
            }
            Ok((_, q)) => RemotingCommand::response_to(
                req,
                response::SYSTEM_ERROR,
                Some(format!("writeQueueNums {q} is outside 1..=1024")),
            ),
            Err(e) => field_error(req, e),
        }
    }
}

impl BrokerHandler {
    /// A broker answers route queries for its own topics as a name server
    /// would (one broker group, this broker as master), so a client can
    /// work with a broker address alone. The topic is created unless the
    /// request says `autoCreate=false`.
    fn own_route(&self, req: &RemotingCommand) -> RemotingCommand {
        let topic = match req.ext_fields.str_req("topic") {
            Ok(t) => t.to_string(),
            Err(e) => return field_error(req, e),
        };
        let create = req.ext_fields.get("autoCreate").map(String::as_str) != Some("false");
        let queues = match (self.broker.topic_queues(&topic), create) {
            (Some(n), _) => n,
            (None, true) => match self.broker.route(&topic) {
                Ok(q) => q.len() as u32,
                Err(e) => {
                    return RemotingCommand::response_to(
                        req,
                        response::SYSTEM_ERROR,
                        Some(e.to_string()),
                    )
                }
            },
            (None, false) => {
                return RemotingCommand::response_to(
                    req,
                    response::TOPIC_NOT_EXIST,
                    Some("no such topic".into()),
                )
            }
        };
        let route = mqlab_protocol::body::route::TopicRouteData {
            order_topic_conf: None,
            queue_datas: vec![mqlab_protocol::body::route::QueueData {
                broker_name: "broker".into(),
                read_queue_nums: queues as i32,
                write_queue_nums: queues as i32,
                perm: 6,
                topic_sys_flag: 0,
            }],
            broker_datas: vec![mqlab_protocol::body::route::BrokerData {
                cluster: "DefaultCluster".into(),
                broker_name: "broker".into(),
                broker_addrs: [(0, self.store_host.to_string())].into_iter().collect(),
            }],
        };
        ok(req).with_body(route.encode(true))
    }
}

impl BrokerHandler {
    /// END_TRANSACTION: commitOrRollback 8 commits, 12 rolls back, 0
    /// leaves it unknown (checked again later).
    fn end_transaction(&self, req: &RemotingCommand) -> RemotingCommand {
        let f = &req.ext_fields;
        let parsed = (|| -> Result<_, ProtocolError> {
            Ok((
                f.str_req("producerGroup")?.to_string(),
                f.i64_req("commitLogOffset")?,
                f.i64_req("commitOrRollback")?,
                f.bool_or_false("fromTransactionCheck")?,
            ))
        })();
        let (group, offset, kind, from_check) = match parsed {
            Ok(p) => p,
            Err(e) => return field_error(req, e),
        };
        let state = match kind {
            8 => crate::types::LocalTransactionState::CommitMessage,
            12 => crate::types::LocalTransactionState::RollbackMessage,
            0 => crate::types::LocalTransactionState::Unknown,
            other => {
                return RemotingCommand::response_to(
                    req,
                    response::SYSTEM_ERROR,
                    Some(format!("commitOrRollback {other}: expected 8, 12 or 0")),
                )
            }
        };
        let Ok(offset) = u64::try_from(offset) else {
            return RemotingCommand::response_to(
                req,
                response::SYSTEM_ERROR,
                Some("commitLogOffset is negative".into()),
            );
        };
        let end = crate::types::EndTransactionRequest {
            producer_group: group,
            commit_log_offset: offset,
            state,
            from_transaction_check: from_check,
        };
        match self.broker.end_transaction(&end) {
            Ok(_) => ok(req),
            Err(e) => {
                RemotingCommand::response_to(req, response::SYSTEM_ERROR, Some(e.to_string()))
            }
        }
    }
}

impl Handler for BrokerHandler {
    /// Plain sends to existing topics that the ACL (if any) accepts are
    /// stored from the connection's task (`send.rs`: `send_inline` says
    /// which and what that may wait for); everything else is given back
    /// for the blocking pool.
    fn try_inline(
        &self,
        req: RemotingCommand,
        conn: &Conn,
        reply: Reply,
    ) -> Option<(RemotingCommand, Reply)> {
        if !matches!(req.code, request::SEND_MESSAGE | request::SEND_MESSAGE_V2)
            || self
                .acl
                .as_ref()
                .is_some_and(|acl| acl.check(&req).is_err())
        {
            return Some((req, reply));
        }
        self.send_inline(req, conn.peer(), reply)
    }

    /// Sends are answered from the put's completion (`send.rs`); every
    /// other request as [`Handler::handle`] answers it.
    fn handle_async(&self, req: RemotingCommand, conn: &Conn, reply: Reply) {
        let is_send = matches!(req.code, request::SEND_MESSAGE | request::SEND_MESSAGE_V2);
        let signed = self.acl.as_ref().is_none_or(|acl| acl.check(&req).is_ok());
        if is_send && signed {
            let waited = reply.waited();
            self.send(req, conn.peer(), waited, move |resp| {
                reply.send(&resp);
            });
        } else if req.code == request::PULL_MESSAGE && signed {
            self.pull_async(req, reply);
        } else if let Some(resp) = self.handle(req, conn) {
            reply.send(&resp);
        }
    }

    fn handle(&self, req: RemotingCommand, conn: &Conn) -> Option<RemotingCommand> {
        let peer = conn.peer();
        if let Some(acl) = &self.acl {
            if let Err(why) = acl.check(&req) {
                return Some(RemotingCommand::response_to(
                    &req,
                    response::NO_PERMISSION,
                    Some(why),
                ));
            }
        }
        Some(match req.code {
            request::SEND_MESSAGE | request::SEND_MESSAGE_V2 => self.send_blocking(req, peer),
            request::SEND_BATCH_MESSAGE => self.send_batch(&req, peer),
            request::QUERY_MESSAGE => super::queries::query_message(&self.broker, &req),
            request::SEARCH_OFFSET_BY_TIMESTAMP => {
                super::queries::search_offset(&self.broker, &req)
            }
            request::HEART_BEAT => self.heartbeat(&req, conn),
            request::END_TRANSACTION => self.end_transaction(&req),
            request::UNREGISTER_CLIENT => self.unregister(&req),
            request::GET_CONSUMER_LIST_BY_GROUP => self.consumer_list(&req),
            request::PULL_MESSAGE => self.pull(&req),
            request::QUERY_CONSUMER_OFFSET
            | request::UPDATE_CONSUMER_OFFSET
            | request::GET_MAX_OFFSET
            | request::GET_MIN_OFFSET => self.offsets(&req),
            request::LOCK_BATCH_MQ | request::UNLOCK_BATCH_MQ => self.locks(&req),
            request::CONSUMER_SEND_MSG_BACK => self.send_back(&req),
            request::VIEW_MESSAGE_BY_ID => self.view(&req),
            request::UPDATE_AND_CREATE_TOPIC => self.create_topic(&req),
            request::GET_ROUTEINFO_BY_TOPIC => self.own_route(&req),
            code => RemotingCommand::response_to(
                &req,
                response::REQUEST_CODE_NOT_SUPPORTED,
                Some(format!(
                    "request code {code} ({}) is not supported by this broker yet",
                    request::name(code)
                )),
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_message_ids_are_rocketmqs() {
        let host: SocketAddr = "127.0.0.1:10911".parse().unwrap();
        // 7F000001 | 00002A9F | 0000000000000400
        assert_eq!(
            offset_msg_id(host, 1024),
            "7F00000100002A9F0000000000000400"
        );
    }
}
