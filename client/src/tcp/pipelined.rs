//! Asynchronous sends over a few connections: thousands of
//! SEND_MESSAGE_V2 requests in flight from one process without a thread
//! each, as RocketMQ's `sendAsync` does over its Netty channels.
//!
//! [`PipelinedSender`] holds a few TCP connections to one broker and
//! spreads sends over them round robin. Each connection has a writer
//! thread (frames from a channel, coalesced into one write per burst) and
//! a reader thread that matches answers to requests by opaque and calls
//! each send's callback with a [`SendReply`]. The reader also expires
//! sends whose answer is late (every 10 ms): a send never answered gets
//! [`SendError::Timeout`] and its slot is freed. A connection that fails
//! (the peer closes it, a write fails, an answer does not decode) fails
//! every send pending on it with [`SendError::Connection`] and is opened
//! again by a later send (at most once a second per connection).
//!
//! Sends in flight are bounded ([`PipelinedConfig::max_in_flight`] over
//! all connections): [`PipelinedSender::send`] blocks while the bound is
//! reached, which is the back-pressure an open-loop workload sees (its
//! latency, measured from the intended send time, keeps counting).
//!
//! Every callback is called exactly once: on the reader thread of its
//! connection for an answer, a timeout or a failed connection, on the
//! caller's thread when the send fails before reaching a connection (a
//! property that does not encode, no connection). Callbacks should be
//! short and must not call [`PipelinedSender::send`] (a full sender waits
//! for the very thread the callback runs on).
//!
//! [`RoutedSender`] adds the route: it asks a name server for a topic's
//! route (GET_ROUTEINFO_BY_TOPIC, decoded by `mqlab_protocol::body::route`),
//! keeps the writable queues of every broker group's master, in the order
//! RocketMQ's producer lists them, and holds one [`PipelinedSender`] per
//! master.
//!
//! Nothing read from a socket can panic: frames are decoded by
//! `mqlab_protocol::decode_frame` (bounded, panic-free), answer headers
//! through checked field accessors, and a broken stream closes its
//! connection.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{BufWriter, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mqlab_engine::Message;
use mqlab_protocol::body::route::TopicRouteData;
use mqlab_protocol::codes::{request, response};
use mqlab_protocol::headers::SendMessageResponse;
use mqlab_protocol::{decode_frame, encode_frame, Limits, RemotingCommand};

use crate::error::{Error, Result};

/// How often a reader looks for sends past their timeout.
const SWEEP_EVERY: Duration = Duration::from_millis(10);

/// A failed connection is opened again at most this often.
const RECONNECT_EVERY: Duration = Duration::from_secs(1);

/// RocketMQ's default topic, whose route stands in for a topic that does
/// not exist yet (the broker creates it at the first send,
/// autoCreateTopicEnable).
pub const DEFAULT_TOPIC: &str = "TBW102";

/// Settings of a [`PipelinedSender`].
#[derive(Debug, Clone)]
pub struct PipelinedConfig {
    /// Producer group the sends carry.
    pub producer_group: String,
    /// TCP connections to the broker (at least 1). Default 2.
    pub connections: usize,
    /// Sends in flight over all connections (at least 1); `send` blocks
    /// while this many are unanswered. Default 4096.
    pub max_in_flight: usize,
    /// A send unanswered this long fails with [`SendError::Timeout`].
    /// Default 3 s (RocketMQ's `sendMsgTimeout`).
    pub timeout: Duration,
    /// Connecting gives up after this long. Default 3 s.
    pub connect_timeout: Duration,
    /// Queues a broker gives a topic it creates at the first send
    /// (`defaultTopicQueueNums`). Default 8.
    pub default_topic_queue_nums: i32,
}

impl Default for PipelinedConfig {
    fn default() -> Self {
        PipelinedConfig {
            producer_group: "mqlab-producer".into(),
            connections: 2,
            max_in_flight: 4096,
            timeout: Duration::from_secs(3),
            connect_timeout: Duration::from_secs(3),
            default_topic_queue_nums: 8,
        }
    }
}

/// A send the broker answered with a stored status: SEND_OK, or one of
/// RocketMQ's not-quite-OK statuses (FLUSH_DISK_TIMEOUT,
/// FLUSH_SLAVE_TIMEOUT, SLAVE_NOT_AVAILABLE), which carry a message id and
/// offsets too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The response code (`response::SUCCESS` for SEND_OK).
    pub code: i32,
    /// The broker's offset message id.
    pub msg_id: String,
    /// Queue the message went to.
    pub queue_id: u32,
    /// Its offset in that queue.
    pub queue_offset: u64,
    /// Transaction id of a half message, if any.
    pub transaction_id: Option<String>,
}

impl Sent {
    /// True for SEND_OK.
    pub fn is_ok(&self) -> bool {
        self.code == response::SUCCESS
    }

    /// The physical offset in the message id (IPv4 offset ids: the last
    /// 16 hex digits), if it is one.
    pub fn phys_offset(&self) -> Option<u64> {
        let id = &self.msg_id;
        if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u64::from_str_radix(id.get(16..)?, 16).ok()
    }
}

/// Why a send failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The broker answered with a code that stores nothing (SYSTEM_BUSY,
    /// MESSAGE_ILLEGAL, NO_PERMISSION, ...).
    #[error("broker answered {} ({code}): {remark}", response_name(*code))]
    Refused {
        /// The response code.
        code: i32,
        /// The broker's remark.
        remark: String,
    },
    /// No answer within the timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The connection failed before the answer came (or could not be
    /// opened).
    #[error("connection: {0}")]
    Connection(String),
    /// A stored status whose header does not decode (no msgId, a negative
    /// offset).
    #[error("answer does not decode: {0}")]
    BadAnswer(String),
    /// The message cannot be encoded (a property with a separator byte).
    #[error("message: {0}")]
    Encode(String),
    /// The sender was closed.
    #[error("sender closed")]
    Closed,
}

impl SendError {
    /// A short name for counting errors by kind: the response code's name
    /// for refusals (`SYSTEM_BUSY`), else `TIMEOUT`, `CONNECTION`,
    /// `BAD_ANSWER`, `ENCODE`, `CLOSED`.
    pub fn kind(&self) -> String {
        match self {
            SendError::Refused { code, .. } => response_name(*code),
            SendError::Timeout(_) => "TIMEOUT".into(),
            SendError::Connection(_) => "CONNECTION".into(),
            SendError::BadAnswer(_) => "BAD_ANSWER".into(),
            SendError::Encode(_) => "ENCODE".into(),
            SendError::Closed => "CLOSED".into(),
        }
    }
}

/// The name of a response code as Java's `ResponseCode` spells it
/// (`CODE_<n>` for codes mqlab does not know).
pub fn response_name(code: i32) -> String {
    let name = match code {
        response::SUCCESS => "SUCCESS",
        response::SYSTEM_ERROR => "SYSTEM_ERROR",
        response::SYSTEM_BUSY => "SYSTEM_BUSY",
        response::REQUEST_CODE_NOT_SUPPORTED => "REQUEST_CODE_NOT_SUPPORTED",
        response::FLUSH_DISK_TIMEOUT => "FLUSH_DISK_TIMEOUT",
        response::SLAVE_NOT_AVAILABLE => "SLAVE_NOT_AVAILABLE",
        response::FLUSH_SLAVE_TIMEOUT => "FLUSH_SLAVE_TIMEOUT",
        response::MESSAGE_ILLEGAL => "MESSAGE_ILLEGAL",
        response::SERVICE_NOT_AVAILABLE => "SERVICE_NOT_AVAILABLE",
        response::NO_PERMISSION => "NO_PERMISSION",
        response::TOPIC_NOT_EXIST => "TOPIC_NOT_EXIST",
        _ => return format!("CODE_{code}"),
    };
    name.to_string()
}

/// What a send's callback is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendReply {
    /// The answer, or why there is none.
    pub result: std::result::Result<Sent, SendError>,
    /// From the send being handed to a connection (a slot taken) to the
    /// answer (or the failure).
    pub latency: Duration,
}

type Callback = Box<dyn FnOnce(SendReply) + Send>;

/// One send waiting for its answer.
struct Pending {
    cb: Callback,
    started: Instant,
    queue_id: u32,
}

/// The sends pending on one connection, and their deadlines in send
/// order (one timeout for all, so deadlines only grow).
#[derive(Default)]
struct Table {
    map: HashMap<i32, Pending>,
    deadlines: VecDeque<(Instant, i32)>,
    /// Set once the connection failed: nothing is added any more.
    failed: Option<String>,
}

/// The in-flight bound: a counting semaphore.
#[derive(Default)]
struct Gate {
    state: Mutex<GateState>,
    cond: Condvar,
}

#[derive(Default)]
struct GateState {
    in_flight: usize,
    closed: bool,
}

impl Gate {
    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a slot, waiting while `max` are taken; false once closed.
    fn acquire(&self, max: usize) -> bool {
        let mut s = self.lock();
        while s.in_flight >= max && !s.closed {
            s = self.cond.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        if s.closed {
            return false;
        }
        s.in_flight += 1;
        true
    }

    fn release(&self) {
        let mut s = self.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
        drop(s);
        self.cond.notify_all();
    }

    fn close(&self) {
        self.lock().closed = true;
        self.cond.notify_all();
    }

    fn in_flight(&self) -> usize {
        self.lock().in_flight
    }

    /// Waits until nothing is in flight or `timeout` passes.
    fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut s = self.lock();
        while s.in_flight > 0 {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            s = self
                .cond
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
}

/// One connection: its socket, the channel to its writer, its pending
/// sends.
struct Conn {
    stream: TcpStream,
    tx: Mutex<Option<Sender<Vec<u8>>>>,
    table: Mutex<Table>,
    gate: Arc<Gate>,
    timeout: Duration,
}

impl Conn {
    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_failed(&self) -> bool {
        self.table().failed.is_some()
    }

    /// Marks the connection failed and closes it: the writer ends, the
    /// reader wakes up and fails every pending send.
    fn fail(&self, why: String) {
        {
            let mut t = self.table();
            if t.failed.is_none() {
                t.failed = Some(why);
            }
        }
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    /// Registers a send and queues its frame; gives the callback back when
    /// the connection has failed.
    fn submit(
        &self,
        opaque: i32,
        frame: Vec<u8>,
        pending: Pending,
    ) -> std::result::Result<(), (Pending, String)> {
        {
            let mut t = self.table();
            if let Some(why) = &t.failed {
                return Err((pending, why.clone()));
            }
            t.deadlines
                .push_back((pending.started + self.timeout, opaque));
            t.map.insert(opaque, pending);
        }
        let sent = match &*self.tx.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(tx) => tx.send(frame).is_ok(),
            None => false,
        };
        if !sent {
            // The connection failed meanwhile: its reader fails every
            // pending send, this one included (or has, and then it is
            // still in the table, and is taken back here).
            let back = self.table().map.remove(&opaque);
            if let Some(p) = back {
                return Err((p, "connection closed".into()));
            }
        }
        Ok(())
    }

    /// Takes a pending send out, frees its slot and calls its callback.
    fn complete(
        &self,
        opaque: i32,
        result: impl FnOnce(u32) -> std::result::Result<Sent, SendError>,
    ) {
        let p = self.table().map.remove(&opaque);
        if let Some(p) = p {
            let r = result(p.queue_id);
            self.finish(p, r);
        }
    }

    fn finish(&self, p: Pending, result: std::result::Result<Sent, SendError>) {
        self.gate.release();
        (p.cb)(SendReply {
            result,
            latency: p.started.elapsed(),
        });
    }

    /// Fails the sends past their deadline.
    fn sweep(&self, now: Instant) {
        let mut late = Vec::new();
        {
            let mut t = self.table();
            while let Some(&(deadline, opaque)) = t.deadlines.front() {
                if deadline > now {
                    break;
                }
                t.deadlines.pop_front();
                if let Some(p) = t.map.remove(&opaque) {
                    late.push(p);
                }
            }
            if t.map.is_empty() {
                t.deadlines.clear();
            }
        }
        for p in late {
            self.finish(p, Err(SendError::Timeout(self.timeout)));
        }
    }

    /// Fails every pending send (the connection is gone).
    fn drain(&self) {
        let (all, why) = {
            let mut t = self.table();
            t.deadlines.clear();
            let why = t.failed.clone().unwrap_or_else(|| "closed".into());
            (std::mem::take(&mut t.map), why)
        };
        for (_, p) in all {
            self.finish(p, Err(SendError::Connection(why.clone())));
        }
    }
}

/// The result of an answer to a send.
fn answer(cmd: &RemotingCommand, queue_id: u32) -> std::result::Result<Sent, SendError> {
    match cmd.code {
        response::SUCCESS
        | response::FLUSH_DISK_TIMEOUT
        | response::FLUSH_SLAVE_TIMEOUT
        | response::SLAVE_NOT_AVAILABLE => {
            let h = SendMessageResponse::from_fields(&cmd.ext_fields)
                .map_err(|e| SendError::BadAnswer(e.to_string()))?;
            let queue_offset = u64::try_from(h.queue_offset).map_err(|_| {
                SendError::BadAnswer(format!("queueOffset {} is negative", h.queue_offset))
            })?;
            let queue_id = if cmd.ext_fields.contains_key("queueId") {
                u32::try_from(h.queue_id).map_err(|_| {
                    SendError::BadAnswer(format!("queueId {} is negative", h.queue_id))
                })?
            } else {
                queue_id
            };
            Ok(Sent {
                code: cmd.code,
                msg_id: h.msg_id,
                queue_id,
                queue_offset,
                transaction_id: h.transaction_id,
            })
        }
        code => Err(SendError::Refused {
            code,
            remark: cmd.remark.clone().unwrap_or_default(),
        }),
    }
}

fn reader(conn: Arc<Conn>, mut stream: TcpStream, peer: SocketAddr) {
    let limits = Limits::default();
    let mut buf: Vec<u8> = Vec::with_capacity(256 * 1024);
    let mut chunk = vec![0u8; 256 * 1024];
    let mut next_sweep = Instant::now() + SWEEP_EVERY;
    let _ = stream.set_read_timeout(Some(SWEEP_EVERY));
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => {
                conn.fail(format!("{peer} closed the connection"));
                break;
            }
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                let mut at = 0;
                let mut broken = None;
                loop {
                    match decode_frame(&buf[at..], &limits) {
                        Ok(Some((cmd, used))) => {
                            at += used;
                            // Requests from the broker (pushes) are not for
                            // a sender: ignored.
                            if cmd.is_response() {
                                conn.complete(cmd.opaque, |q| answer(&cmd, q));
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            broken = Some(e);
                            break;
                        }
                    }
                }
                buf.drain(..at);
                if let Some(e) = broken {
                    conn.fail(format!("undecodable bytes from {peer}: {e}"));
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => {
                conn.fail(format!("read from {peer}: {e}"));
                break;
            }
        }
        let now = Instant::now();
        if now >= next_sweep {
            conn.sweep(now);
            next_sweep = now + SWEEP_EVERY;
        }
        if conn.is_failed() {
            break;
        }
    }
    conn.drain();
}

fn writer(conn: Arc<Conn>, rx: Receiver<Vec<u8>>, stream: TcpStream, peer: SocketAddr) {
    let mut out = BufWriter::with_capacity(256 * 1024, stream);
    while let Ok(frame) = rx.recv() {
        let mut r = out.write_all(&frame);
        // Everything queued meanwhile goes out in the same write.
        while r.is_ok() {
            match rx.try_recv() {
                Ok(f) => r = out.write_all(&f),
                Err(_) => break,
            }
        }
        if let Err(e) = r.and_then(|_| out.flush()) {
            conn.fail(format!("write to {peer}: {e}"));
            return;
        }
    }
}

fn connect(addr: SocketAddr, cfg: &PipelinedConfig, gate: &Arc<Gate>) -> Result<Arc<Conn>> {
    let wire = |e: std::io::Error| Error::Wire(format!("connect {addr}: {e}"));
    let stream = TcpStream::connect_timeout(&addr, cfg.connect_timeout).map_err(wire)?;
    let _ = stream.set_nodelay(true);
    let (tx, rx) = mpsc::channel();
    let conn = Arc::new(Conn {
        stream: stream.try_clone().map_err(wire)?,
        tx: Mutex::new(Some(tx)),
        table: Mutex::new(Table::default()),
        gate: gate.clone(),
        timeout: cfg.timeout,
    });
    let (r, w) = (stream.try_clone().map_err(wire)?, stream);
    let c = conn.clone();
    std::thread::Builder::new()
        .name("mqlab-pipe-reader".into())
        .spawn(move || reader(c, r, addr))
        .map_err(|e| Error::Wire(format!("spawn a reader: {e}")))?;
    let c = conn.clone();
    std::thread::Builder::new()
        .name("mqlab-pipe-writer".into())
        .spawn(move || writer(c, rx, w, addr))
        .map_err(|e| {
            conn.fail("no writer".into());
            Error::Wire(format!("spawn a writer: {e}"))
        })?;
    Ok(conn)
}

struct Slot {
    conn: Arc<Conn>,
    last_attempt: Instant,
}

/// Sends to one broker over a few connections, many in flight on each.
/// Dropping it closes the connections (pending sends fail with
/// [`SendError::Connection`]) and ends its threads.
pub struct PipelinedSender {
    addr: SocketAddr,
    cfg: PipelinedConfig,
    slots: Vec<Mutex<Slot>>,
    next: AtomicUsize,
    opaque: AtomicI32,
    gate: Arc<Gate>,
    closed: AtomicBool,
}

impl std::fmt::Debug for PipelinedSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelinedSender")
            .field("addr", &self.addr)
            .field("connections", &self.slots.len())
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

impl PipelinedSender {
    /// Opens `cfg.connections` connections to the broker at `addr`.
    pub fn connect(addr: SocketAddr, cfg: PipelinedConfig) -> Result<PipelinedSender> {
        if cfg.connections == 0 || cfg.max_in_flight == 0 {
            return Err(Error::Config(
                "connections and max_in_flight must be at least 1".into(),
            ));
        }
        if cfg.timeout.is_zero() {
            return Err(Error::Config("the send timeout must be > 0".into()));
        }
        let gate = Arc::new(Gate::default());
        let mut slots = Vec::with_capacity(cfg.connections);
        for _ in 0..cfg.connections {
            let conn = match connect(addr, &cfg, &gate) {
                Ok(c) => c,
                Err(e) => {
                    for s in &slots {
                        let s: &Mutex<Slot> = s;
                        s.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .conn
                            .fail("closed".into());
                    }
                    return Err(e);
                }
            };
            slots.push(Mutex::new(Slot {
                conn,
                last_attempt: Instant::now(),
            }));
        }
        Ok(PipelinedSender {
            addr,
            cfg,
            slots,
            next: AtomicUsize::new(0),
            opaque: AtomicI32::new(1),
            gate,
            closed: AtomicBool::new(false),
        })
    }

    /// The broker's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The settings.
    pub fn config(&self) -> &PipelinedConfig {
        &self.cfg
    }

    /// Sends unanswered now.
    pub fn in_flight(&self) -> usize {
        self.gate.in_flight()
    }

    /// Waits until every send was answered (or failed), up to `timeout`;
    /// false if some are still in flight.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        self.gate.wait_idle(timeout)
    }

    /// A live connection, round robin; a failed one is opened again (at
    /// most once a second per connection).
    fn pick(&self) -> std::result::Result<Arc<Conn>, String> {
        let n = self.slots.len();
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        let mut why = String::from("no connection");
        for i in 0..n {
            let mut slot = self.slots[(first + i) % n]
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if !slot.conn.is_failed() {
                return Ok(slot.conn.clone());
            }
            if slot.last_attempt.elapsed() < RECONNECT_EVERY {
                why = slot.conn.table().failed.clone().unwrap_or(why);
                continue;
            }
            slot.last_attempt = Instant::now();
            match connect(self.addr, &self.cfg, &self.gate) {
                Ok(c) => {
                    slot.conn = c.clone();
                    return Ok(c);
                }
                Err(e) => why = e.to_string(),
            }
        }
        Err(why)
    }

    /// Sends `msg` (to its `queue_id`) and calls `cb` with the answer,
    /// exactly once. Waits while `max_in_flight` sends are unanswered.
    pub fn send(&self, msg: &Message, cb: impl FnOnce(SendReply) + Send + 'static) {
        let started = Instant::now();
        let fail = |cb: Box<dyn FnOnce(SendReply) + Send>, e: SendError| {
            cb(SendReply {
                result: Err(e),
                latency: started.elapsed(),
            })
        };
        let cb: Callback = Box::new(cb);
        if self.closed.load(Ordering::Acquire) {
            return fail(cb, SendError::Closed);
        }
        let mut req = match super::encode::send_message_v2(
            msg,
            &self.cfg.producer_group,
            self.cfg.default_topic_queue_nums,
        ) {
            Ok(r) => r,
            Err(e) => return fail(cb, SendError::Encode(e)),
        };
        let opaque = self.opaque.fetch_add(1, Ordering::Relaxed) & i32::MAX;
        req.opaque = opaque;
        let frame = match encode_frame(&req) {
            Ok(f) => f,
            Err(e) => return fail(cb, SendError::Encode(e.to_string())),
        };
        if !self.gate.acquire(self.cfg.max_in_flight) {
            return fail(cb, SendError::Closed);
        }
        // Timed from here: waiting for a slot is the caller's (an open-loop
        // caller measures from its intended send time).
        let started = Instant::now();
        let pending = Pending {
            cb,
            started,
            queue_id: msg.queue_id,
        };
        let conn = match self.pick() {
            Ok(c) => c,
            Err(why) => {
                self.gate.release();
                return fail(pending.cb, SendError::Connection(why));
            }
        };
        if let Err((p, why)) = conn.submit(opaque, frame, pending) {
            self.gate.release();
            fail(p.cb, SendError::Connection(why));
        }
    }

    /// Closes every connection: pending sends fail, later ones get
    /// [`SendError::Closed`].
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.gate.close();
        for s in &self.slots {
            s.lock()
                .unwrap_or_else(|e| e.into_inner())
                .conn
                .fail("sender closed".into());
        }
    }
}

impl Drop for PipelinedSender {
    fn drop(&mut self) {
        self.close();
    }
}

/// A writable queue of a topic: which broker group's master holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteQueue {
    /// Broker group.
    pub broker_name: String,
    /// Its master's address.
    pub broker_addr: SocketAddr,
    /// Queue id on that broker.
    pub queue_id: u32,
}

/// Parses `host:port` (a name is resolved; the first address is taken).
pub fn resolve_addr(s: &str) -> Result<SocketAddr> {
    s.to_socket_addrs()
        .map_err(|e| Error::Wire(format!("address {s:?}: {e}")))?
        .next()
        .ok_or_else(|| Error::Wire(format!("address {s:?} resolves to nothing")))
}

/// Asks the name server at `namesrv` for `topic`'s route: None when it
/// knows no such topic (TOPIC_NOT_EXIST).
pub fn lookup_route(
    namesrv: SocketAddr,
    topic: &str,
    timeout: Duration,
) -> Result<Option<TopicRouteData>> {
    let req = RemotingCommand::request(request::GET_ROUTEINFO_BY_TOPIC, 1)
        .with_field("topic", topic)
        .with_field("acceptStandardJsonOnly", true);
    let r = mqlab_broker::remoting::call(namesrv, &req, timeout)
        .map_err(|e| Error::Wire(format!("route of {topic} from {namesrv}: {e}")))?;
    match r.code {
        response::SUCCESS => TopicRouteData::decode(&r.body)
            .map(Some)
            .map_err(|e| Error::Wire(format!("route of {topic}: {e}"))),
        response::TOPIC_NOT_EXIST => Ok(None),
        code => Err(Error::Wire(format!(
            "route of {topic} from {namesrv}: {} ({code}) {}",
            response_name(code),
            r.remark.unwrap_or_default()
        ))),
    }
}

/// Most queues of one broker group a client takes from a route (the rest
/// are ignored): a route's numbers come off a socket, and each queue is an
/// entry in memory.
pub const MAX_QUEUES_PER_GROUP: u32 = 1024;

/// The writable queues of a route, as RocketMQ's producer lists them
/// (`topicRouteData2TopicPublishInfo`): broker groups by name, each
/// group's writable queues on its master (broker id 0), at most
/// `max_per_broker` (and [`MAX_QUEUES_PER_GROUP`]) per group; groups
/// without a reachable master or write permission are left out.
pub fn write_queues(route: &TopicRouteData, max_per_broker: Option<u32>) -> Vec<RouteQueue> {
    const PERM_WRITE: i32 = 2;
    let mut qds: Vec<_> = route.queue_datas.iter().collect();
    qds.sort_by(|a, b| a.broker_name.cmp(&b.broker_name));
    let mut out = Vec::new();
    for q in qds {
        if q.perm & PERM_WRITE == 0 {
            continue;
        }
        let Some(addr) = route
            .broker_datas
            .iter()
            .find(|b| b.broker_name == q.broker_name)
            .and_then(|b| b.broker_addrs.get(&0))
            .and_then(|a| resolve_addr(a).ok())
        else {
            continue;
        };
        let n = (q.write_queue_nums.max(0) as u32)
            .min(max_per_broker.unwrap_or(u32::MAX))
            .min(MAX_QUEUES_PER_GROUP);
        out.extend((0..n).map(|queue_id| RouteQueue {
            broker_name: q.broker_name.clone(),
            broker_addr: addr,
            queue_id,
        }));
    }
    out
}

/// Sends to a topic's queues on every broker group that serves it, one
/// [`PipelinedSender`] per master, the route learned from a name server.
#[derive(Debug)]
pub struct RoutedSender {
    topic: String,
    queues: Vec<RouteQueue>,
    /// Index into `senders` of each queue.
    sender_of: Vec<usize>,
    senders: Vec<PipelinedSender>,
    /// True when the route was the default topic's (the topic is created
    /// at the first send).
    auto_create: bool,
}

impl RoutedSender {
    /// Looks `topic` up at `namesrv` and connects to its masters. A topic
    /// the name server does not know is sent where the default topic
    /// (TBW102) is routed, with `cfg.default_topic_queue_nums` queues per
    /// broker, which a broker with autoCreateTopicEnable creates at the
    /// first send; without that route, an error says to create the topic.
    /// `cfg.max_in_flight` bounds each broker's sender.
    pub fn connect(namesrv: SocketAddr, topic: &str, cfg: PipelinedConfig) -> Result<RoutedSender> {
        let (queues, auto_create) = match lookup_route(namesrv, topic, cfg.connect_timeout)? {
            Some(r) => (write_queues(&r, None), false),
            None => match lookup_route(namesrv, DEFAULT_TOPIC, cfg.connect_timeout)? {
                Some(r) => (
                    write_queues(&r, Some(cfg.default_topic_queue_nums.max(1) as u32)),
                    true,
                ),
                None => {
                    return Err(Error::Wire(format!(
                        "the name server at {namesrv} has no route of topic {topic} (nor of \
                         {DEFAULT_TOPIC}, to create it at the first send): create the topic \
                         first (mqadmin updateTopic, or UPDATE_AND_CREATE_TOPIC on its broker)"
                    )))
                }
            },
        };
        if queues.is_empty() {
            return Err(Error::Wire(format!(
                "topic {topic}: no writable queue on a master in the route from {namesrv}"
            )));
        }
        let mut addrs: BTreeMap<SocketAddr, usize> = BTreeMap::new();
        let mut senders = Vec::new();
        let mut sender_of = Vec::with_capacity(queues.len());
        for q in &queues {
            let i = match addrs.get(&q.broker_addr) {
                Some(&i) => i,
                None => {
                    senders.push(PipelinedSender::connect(q.broker_addr, cfg.clone())?);
                    addrs.insert(q.broker_addr, senders.len() - 1);
                    senders.len() - 1
                }
            };
            sender_of.push(i);
        }
        Ok(RoutedSender {
            topic: topic.to_string(),
            queues,
            sender_of,
            senders,
            auto_create,
        })
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The writable queues, in RocketMQ's order.
    pub fn queues(&self) -> &[RouteQueue] {
        &self.queues
    }

    /// True when the topic had no route and is sent where the default
    /// topic is routed (created by the broker at the first send).
    pub fn auto_create(&self) -> bool {
        self.auto_create
    }

    /// The per-broker senders.
    pub fn senders(&self) -> &[PipelinedSender] {
        &self.senders
    }

    /// Sends `msg` to queue `index` of [`RoutedSender::queues`] (modulo
    /// their number), setting its topic and queue id; `cb` is called once
    /// with the answer. Waits while that broker's sender is full.
    pub fn send(
        &self,
        msg: &mut Message,
        index: usize,
        cb: impl FnOnce(SendReply) + Send + 'static,
    ) {
        let i = index % self.queues.len();
        msg.queue_id = self.queues[i].queue_id;
        if msg.topic != self.topic {
            msg.topic = self.topic.clone();
        }
        self.senders[self.sender_of[i]].send(msg, cb);
    }

    /// Sends in flight over every broker.
    pub fn in_flight(&self) -> usize {
        self.senders.iter().map(|s| s.in_flight()).sum()
    }

    /// Waits until nothing is in flight, up to `timeout` in all.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        self.senders
            .iter()
            .all(|s| s.wait_idle(deadline.saturating_duration_since(Instant::now())))
    }

    /// Closes every connection.
    pub fn close(&self) {
        for s in &self.senders {
            s.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_decode_or_are_errors() {
        let ok = RemotingCommand {
            code: response::SUCCESS,
            ..RemotingCommand::default()
        }
        .with_field("msgId", "7F00000100002A9F0000000000000400")
        .with_field("queueId", 3)
        .with_field("queueOffset", 17);
        let s = answer(&ok, 0).unwrap();
        assert_eq!((s.queue_id, s.queue_offset), (3, 17));
        assert_eq!(s.phys_offset(), Some(1024));
        assert!(s.is_ok());
        let no_id = RemotingCommand {
            code: response::SUCCESS,
            ..RemotingCommand::default()
        };
        assert!(matches!(answer(&no_id, 0), Err(SendError::BadAnswer(_))));
        let neg = ok.clone().with_field("queueOffset", -1);
        assert!(matches!(answer(&neg, 0), Err(SendError::BadAnswer(_))));
        let junk = ok.clone().with_field("queueOffset", "x");
        assert!(matches!(answer(&junk, 0), Err(SendError::BadAnswer(_))));
        let busy = RemotingCommand {
            code: response::SYSTEM_BUSY,
            remark: Some("[TIMEOUT_CLEAN_QUEUE]".into()),
            ..RemotingCommand::default()
        };
        let e = answer(&busy, 0).unwrap_err();
        assert_eq!(e.kind(), "SYSTEM_BUSY");
        assert!(e.to_string().contains("TIMEOUT_CLEAN_QUEUE"), "{e}");
        assert_eq!(response_name(999), "CODE_999");
        let flush = RemotingCommand {
            code: response::FLUSH_DISK_TIMEOUT,
            ..ok
        };
        assert!(!answer(&flush, 0).unwrap().is_ok());
    }
}
