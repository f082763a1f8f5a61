//! The control connection of a [`TcpBroker`](super::TcpBroker): the one
//! connection its heartbeats and unregisters go over, and so the one the
//! broker pushes its requests on (it keeps the connection a HEART_BEAT
//! came on as that client's channel).
//!
//! - A reader thread owns the connection's read side: it hands each
//!   answer to the request waiting for it (control requests go one at a
//!   time, matched by opaque) and dispatches pushed requests (flag bit 0
//!   clear) to the [`ClientChannel`]s registered with heartbeats:
//!   NOTIFY_CONSUMER_IDS_CHANGED to every registration in `consumerGroup`,
//!   CHECK_TRANSACTION_STATE (its body decoded as the half message's
//!   stored record) to one registration of `producerGroup`. Unknown codes
//!   are ignored, logged once each (a request that wants an answer gets
//!   REQUEST_CODE_NOT_SUPPORTED); bytes that do not decode close the
//!   connection. Its buffer holds at most one frame (`Limits::default()`).
//! - A heartbeat thread (started by the first heartbeat) repeats every
//!   registration's heartbeat each `heartbeat_interval` (30 s by default,
//!   as RocketMQ): that keeps the connection from the broker's idle
//!   timeout and, once the connection died, opens a new one and registers
//!   every channel on it again (within a second of the loss, then every
//!   second while the broker cannot be reached).
//! - Heartbeats and unregisters are serialized and each waits for its
//!   answer, so a repeated heartbeat can never reach the broker after the
//!   unregister that ended its registration (which would bring a departed
//!   member back).
//!
//! Everything stops when the owning `TcpBroker` drops.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mqlab_broker::types::{
    CheckTransactionStateRequest, HeartbeatRequest, UnregisterClientRequest,
};
use mqlab_broker::ClientChannel;
use mqlab_protocol::body::heartbeat::{ConsumerData, HeartbeatData, Subscription};
use mqlab_protocol::codes::{request, response};
use mqlab_protocol::{decode_frame, encode_frame, ExtFields, Limits, RemotingCommand};

use super::{decode_records, wire};
use crate::error::Result;

/// Most distinct things logged once (unknown codes, malformed pushes).
const MAX_LOGGED: usize = 64;

/// Counters of a client's control connection.
#[derive(Debug, Default)]
pub struct PushStats {
    /// Control connections opened (the first one and every reconnect).
    pub connects: AtomicU64,
    /// Heartbeats answered SUCCESS (first ones and repeats).
    pub heartbeats: AtomicU64,
    /// NOTIFY_CONSUMER_IDS_CHANGED pushes received.
    pub notifies: AtomicU64,
    /// CHECK_TRANSACTION_STATE pushes handed to a producer's channel.
    pub checks: AtomicU64,
    /// Pushes ignored: unknown codes, malformed ones, groups with no
    /// registration here.
    pub ignored: AtomicU64,
}

/// One heartbeat as the client gave it, and the channel its pushes go to.
struct Registration {
    req: HeartbeatRequest,
    channel: Arc<dyn ClientChannel>,
}

/// The open connection.
struct Link {
    /// Write side; the reader answers unknown requests through it too.
    writer: Arc<Mutex<TcpStream>>,
    /// Cleared by the reader when the connection ends.
    alive: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Joins `h` unless it is the calling thread (the last handle of a broker
/// may drop on its own reader thread, through a channel).
fn join(h: JoinHandle<()>) {
    if h.thread().id() != std::thread::current().id() {
        let _ = h.join();
    }
}

/// The control side of one `TcpBroker`.
pub(super) struct Control {
    addr: SocketAddr,
    interval: Duration,
    timeout: Duration,
    opaque: AtomicI32,
    /// What heartbeats announce, and whom pushes go to.
    regs: Mutex<Vec<Registration>>,
    /// The connection; held for a whole control request (they go one at a
    /// time).
    link: Mutex<Option<Link>>,
    /// A clone of the open socket, to shut it down without `link`.
    socket: Mutex<Option<TcpStream>>,
    /// The control request waiting for its answer.
    waiting: Mutex<Option<(i32, SyncSender<RemotingCommand>)>>,
    stop: AtomicBool,
    /// Set (and signalled) when the connection is lost, so the heartbeat
    /// thread re-opens it soon.
    lost: (Mutex<bool>, Condvar),
    beats: Mutex<Option<JoinHandle<()>>>,
    logged: Mutex<BTreeSet<String>>,
    stats: PushStats,
}

impl Control {
    pub(super) fn new(addr: SocketAddr, interval: Duration) -> Control {
        Control {
            addr,
            interval: interval.max(Duration::from_millis(1)),
            timeout: Duration::from_secs(10),
            opaque: AtomicI32::new(1),
            regs: Mutex::new(Vec::new()),
            link: Mutex::new(None),
            socket: Mutex::new(None),
            waiting: Mutex::new(None),
            stop: AtomicBool::new(false),
            lost: (Mutex::new(false), Condvar::new()),
            beats: Mutex::new(None),
            logged: Mutex::new(BTreeSet::new()),
            stats: PushStats::default(),
        }
    }

    pub(super) fn stats(&self) -> &PushStats {
        &self.stats
    }

    /// Registers (or replaces) a heartbeat and its channel, and sends it.
    /// Kept on a wire failure (the heartbeat thread sends it again), dropped
    /// when the broker refuses it.
    pub(super) fn heartbeat(
        self: &Arc<Self>,
        req: &HeartbeatRequest,
        channel: Arc<dyn ClientChannel>,
    ) -> Result<()> {
        let mut link = lock(&self.link);
        {
            let mut regs = lock(&self.regs);
            regs.retain(|r| !same_registration(&r.req, req));
            regs.push(Registration {
                req: req.clone(),
                channel,
            });
        }
        self.start_beats();
        self.ensure_open(&mut link, Some(req))?;
        match self.send_heartbeat(&mut link, req)? {
            Ok(()) => Ok(()),
            Err(refused) => {
                lock(&self.regs).retain(|r| !same_registration(&r.req, req));
                Err(wire(refused))
            }
        }
    }

    /// Ends a client's registrations in the groups named (UNREGISTER_CLIENT
    /// is sent whether or not any was registered here).
    pub(super) fn unregister(self: &Arc<Self>, req: &UnregisterClientRequest) {
        let mut link = lock(&self.link);
        lock(&self.regs).retain_mut(|r| {
            if r.req.client_id != req.client_id {
                return true;
            }
            if let Some(g) = &req.producer_group {
                r.req.producer_groups.retain(|p| p != g);
            }
            if let Some(g) = &req.consumer_group {
                r.req.consumers.retain(|c| &c.group != g);
            }
            !r.req.producer_groups.is_empty() || !r.req.consumers.is_empty()
        });
        let mut cmd = RemotingCommand::request(request::UNREGISTER_CLIENT, 0)
            .with_field("clientID", &req.client_id);
        if let Some(g) = &req.producer_group {
            cmd = cmd.with_field("producerGroup", g);
        }
        if let Some(g) = &req.consumer_group {
            cmd = cmd.with_field("consumerGroup", g);
        }
        if self.ensure_open(&mut link, None).is_ok() {
            let _ = self.request(&mut link, cmd);
        }
    }

    /// Stops the threads and closes the connection.
    pub(super) fn close(&self) {
        self.stop.store(true, Ordering::Release);
        if let Some(s) = lock(&self.socket).take() {
            let _ = s.shutdown(Shutdown::Both);
        }
        {
            let _g = lock(&self.lost.0);
            self.lost.1.notify_all();
        }
        if let Some(h) = lock(&self.beats).take() {
            join(h);
        }
        let link = lock(&self.link).take();
        if let Some(mut l) = link {
            let _ = lock(&l.writer).shutdown(Shutdown::Both);
            if let Some(h) = l.reader.take() {
                join(h);
            }
        }
        // Channels hold consumers' and producers' handles: let them go.
        lock(&self.regs).clear();
    }

    fn start_beats(self: &Arc<Self>) {
        let mut beats = lock(&self.beats);
        if beats.is_some() || self.stop.load(Ordering::Acquire) {
            return;
        }
        let me = self.clone();
        *beats = std::thread::Builder::new()
            .name("mqlab-tcp-heartbeat".into())
            .spawn(move || me.beat_loop())
            .ok();
    }

    fn beat_loop(self: &Arc<Self>) {
        let retry = self.interval.min(Duration::from_secs(1));
        let mut next = Instant::now() + self.interval;
        loop {
            {
                let mut lost = lock(&self.lost.0);
                loop {
                    if self.stop.load(Ordering::Acquire) {
                        return;
                    }
                    if *lost {
                        *lost = false;
                        next = next.min(Instant::now() + retry);
                    }
                    let now = Instant::now();
                    if now >= next {
                        break;
                    }
                    lost = self
                        .lost
                        .1
                        .wait_timeout(lost, next - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
            next = Instant::now()
                + if self.beat_all() {
                    self.interval
                } else {
                    retry
                };
        }
    }

    /// Sends every registration's heartbeat (opening the connection if it
    /// is down); false when the broker could not be reached.
    fn beat_all(self: &Arc<Self>) -> bool {
        let mut link = lock(&self.link);
        if self.stop.load(Ordering::Acquire) {
            return true;
        }
        let all: Vec<HeartbeatRequest> = lock(&self.regs).iter().map(|r| r.req.clone()).collect();
        if all.is_empty() {
            return true;
        }
        match self.ensure_open(&mut link, None) {
            Ok(true) => true, // a fresh connection: all sent already
            Ok(false) => all
                .iter()
                .all(|hb| self.send_heartbeat(&mut link, hb).is_ok()),
            Err(_) => false,
        }
    }

    fn is_up(link: &Option<Link>) -> bool {
        link.as_ref()
            .is_some_and(|l| l.alive.load(Ordering::Acquire))
    }

    /// Opens the connection if it is down and registers every channel on
    /// it (but `skip`, about to be sent by the caller); true when it was
    /// opened now.
    fn ensure_open(
        self: &Arc<Self>,
        link: &mut Option<Link>,
        skip: Option<&HeartbeatRequest>,
    ) -> Result<bool> {
        if Self::is_up(link) {
            return Ok(false);
        }
        if self.stop.load(Ordering::Acquire) {
            return Err(wire("client closed"));
        }
        if let Some(mut old) = link.take() {
            let _ = lock(&old.writer).shutdown(Shutdown::Both);
            if let Some(h) = old.reader.take() {
                join(h);
            }
        }
        let s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(3))
            .map_err(|e| wire(format!("connect {}: {e}", self.addr)))?;
        let _ = s.set_nodelay(true);
        s.set_write_timeout(Some(self.timeout)).map_err(wire)?;
        let (r, w2) = (s.try_clone().map_err(wire)?, s.try_clone().map_err(wire)?);
        let writer = Arc::new(Mutex::new(s));
        let alive = Arc::new(AtomicBool::new(true));
        let reader = {
            let (me, writer, alive) = (self.clone(), writer.clone(), alive.clone());
            std::thread::Builder::new()
                .name("mqlab-tcp-push".into())
                .spawn(move || me.read_loop(r, &writer, &alive))
                .map_err(wire)?
        };
        *lock(&self.socket) = Some(w2);
        *link = Some(Link {
            writer,
            alive,
            reader: Some(reader),
        });
        self.stats.connects.fetch_add(1, Ordering::Relaxed);
        // The broker's channels of earlier registrations point at the dead
        // connection: register them again on this one.
        let all: Vec<HeartbeatRequest> = lock(&self.regs)
            .iter()
            .filter(|r| skip.is_none_or(|s| !same_registration(&r.req, s)))
            .map(|r| r.req.clone())
            .collect();
        for hb in &all {
            // A refusal is the broker's answer to that registration alone.
            let _refused = self.send_heartbeat(link, hb)?;
        }
        Ok(true)
    }

    /// Sends one heartbeat: Err when the broker could not be reached,
    /// Ok(Err) when it refused the heartbeat.
    fn send_heartbeat(
        &self,
        link: &mut Option<Link>,
        req: &HeartbeatRequest,
    ) -> Result<std::result::Result<(), String>> {
        let r = self.request(link, heartbeat_command(req))?;
        if r.code == response::SUCCESS {
            self.stats.heartbeats.fetch_add(1, Ordering::Relaxed);
            Ok(Ok(()))
        } else {
            Ok(Err(format!(
                "heartbeat refused: code {} {}",
                r.code,
                r.remark.unwrap_or_default()
            )))
        }
    }

    /// One control request and its answer, on the open connection. A
    /// failure closes the connection (the next request opens a new one).
    fn request(
        &self,
        link: &mut Option<Link>,
        mut cmd: RemotingCommand,
    ) -> Result<RemotingCommand> {
        let Some(l) = link.as_ref().filter(|l| l.alive.load(Ordering::Acquire)) else {
            return Err(wire(format!("control connection to {} is down", self.addr)));
        };
        cmd.opaque = self.opaque.fetch_add(1, Ordering::Relaxed) & i32::MAX;
        let bytes = encode_frame(&cmd).map_err(wire)?;
        let (tx, rx) = sync_channel(1);
        *lock(&self.waiting) = Some((cmd.opaque, tx));
        let failed = |why: String| {
            lock(&self.waiting).take();
            let _ = lock(&l.writer).shutdown(Shutdown::Both);
            l.alive.store(false, Ordering::Release);
            wire(why)
        };
        // The reader clears `alive` before it drops the waiting slot: one
        // of the two sees the other.
        if !l.alive.load(Ordering::SeqCst) {
            return Err(failed(format!(
                "{} closed the control connection",
                self.addr
            )));
        }
        if let Err(e) = lock(&l.writer).write_all(&bytes) {
            return Err(failed(format!("write to {}: {e}", self.addr)));
        }
        match rx.recv_timeout(self.timeout) {
            Ok(r) => Ok(r),
            Err(RecvTimeoutError::Timeout) => Err(failed(format!(
                "{} did not answer within {:?}",
                self.addr, self.timeout
            ))),
            Err(RecvTimeoutError::Disconnected) => Err(failed(format!(
                "{} closed the control connection",
                self.addr
            ))),
        }
    }
    /// Reads the connection until it ends: answers to the waiting request,
    /// pushes to the channels.
    fn read_loop(&self, mut s: TcpStream, writer: &Mutex<TcpStream>, alive: &AtomicBool) {
        let limits = Limits::default();
        let mut buf: Vec<u8> = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        'conn: loop {
            loop {
                match decode_frame(&buf, &limits) {
                    Ok(Some((cmd, used))) => {
                        buf.drain(..used);
                        self.on_frame(cmd, writer);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        self.ignore("bad frame", || {
                            format!("closing the control connection: bad frame: {e}")
                        });
                        break 'conn;
                    }
                }
            }
            match s.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        alive.store(false, Ordering::SeqCst);
        let _ = s.shutdown(Shutdown::Both);
        lock(&self.waiting).take();
        if !self.stop.load(Ordering::Acquire) {
            *lock(&self.lost.0) = true;
            self.lost.1.notify_all();
        }
    }

    fn on_frame(&self, cmd: RemotingCommand, writer: &Mutex<TcpStream>) {
        if cmd.is_response() {
            let mut w = lock(&self.waiting);
            if w.as_ref().is_some_and(|(o, _)| *o == cmd.opaque) {
                if let Some((_, tx)) = w.take() {
                    let _ = tx.try_send(cmd);
                }
            }
            // Else a late answer to a request that gave up: dropped.
            return;
        }
        match cmd.code {
            request::NOTIFY_CONSUMER_IDS_CHANGED => {
                self.stats.notifies.fetch_add(1, Ordering::Relaxed);
                let Some(group) = cmd.ext_fields.str_opt("consumerGroup") else {
                    self.ignore("notify without group", || {
                        "NOTIFY_CONSUMER_IDS_CHANGED without consumerGroup".into()
                    });
                    return;
                };
                let to: Vec<Arc<dyn ClientChannel>> = lock(&self.regs)
                    .iter()
                    .filter(|r| r.req.consumers.iter().any(|c| c.group == group))
                    .map(|r| r.channel.clone())
                    .collect();
                if to.is_empty() {
                    self.stats.ignored.fetch_add(1, Ordering::Relaxed);
                }
                for ch in to {
                    ch.notify_consumer_ids_changed(group);
                }
            }
            request::CHECK_TRANSACTION_STATE => match check_request(&cmd) {
                Ok(req) => {
                    let to = lock(&self.regs)
                        .iter()
                        .find(|r| r.req.producer_groups.contains(&req.producer_group))
                        .map(|r| r.channel.clone());
                    match to {
                        Some(ch) => {
                            self.stats.checks.fetch_add(1, Ordering::Relaxed);
                            ch.check_transaction_state(req);
                        }
                        None => {
                            self.stats.ignored.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                Err(e) => self.ignore("bad check", || {
                    format!("ignoring a malformed CHECK_TRANSACTION_STATE: {e}")
                }),
            },
            code => {
                self.ignore(&format!("code {code}"), || {
                    format!("ignoring pushed request code {code}")
                });
                if !cmd.is_oneway() {
                    let r = RemotingCommand::response_to(
                        &cmd,
                        response::REQUEST_CODE_NOT_SUPPORTED,
                        Some(format!("mqlab client: request code {code} not supported")),
                    );
                    if let Ok(bytes) = encode_frame(&r) {
                        let _ = lock(writer).write_all(&bytes);
                    }
                }
            }
        }
    }

    /// Counts an ignored push; logs it the first time `key` is seen.
    fn ignore(&self, key: &str, what: impl FnOnce() -> String) {
        self.stats.ignored.fetch_add(1, Ordering::Relaxed);
        let mut logged = lock(&self.logged);
        if logged.len() < MAX_LOGGED && logged.insert(key.to_string()) {
            eprintln!("mqlab client: {} (from {}; logged once)", what(), self.addr);
        }
    }
}

/// True when `a` and `b` register the same client in the same groups.
fn same_registration(a: &HeartbeatRequest, b: &HeartbeatRequest) -> bool {
    let groups = |h: &HeartbeatRequest| {
        let mut p = h.producer_groups.clone();
        p.sort();
        let mut c: Vec<&str> = h.consumers.iter().map(|c| c.group.as_str()).collect();
        c.sort();
        (p, c.into_iter().map(str::to_string).collect::<Vec<_>>())
    };
    a.client_id == b.client_id && groups(a) == groups(b)
}

/// HEART_BEAT with `req` as its body.
pub(super) fn heartbeat_command(req: &HeartbeatRequest) -> RemotingCommand {
    let body = HeartbeatData {
        client_id: req.client_id.clone(),
        producer_groups: req.producer_groups.clone(),
        consumers: req
            .consumers
            .iter()
            .map(|c| ConsumerData {
                group_name: c.group.clone(),
                consume_type: 1,
                message_model: 1,
                consume_from_where: 0,
                subscriptions: c
                    .subscriptions
                    .iter()
                    .map(|s| Subscription {
                        topic: s.topic.clone(),
                        sub_string: s.expression.clone(),
                        expression_type: "TAG".into(),
                        ..Subscription::default()
                    })
                    .collect(),
                unit_mode: false,
            })
            .collect(),
    };
    RemotingCommand::request(request::HEART_BEAT, 0).with_body(body.encode())
}

/// The request a CHECK_TRANSACTION_STATE push carries: the producer group,
/// and the half message decoded from the body (its stored record), named
/// by `commitLogOffset`.
pub(super) fn check_request(cmd: &RemotingCommand) -> Result<CheckTransactionStateRequest, String> {
    let f = &cmd.ext_fields;
    let group = f.str_req("producerGroup").map_err(|e| e.to_string())?;
    let offset = f.i64_req("commitLogOffset").map_err(|e| e.to_string())?;
    let offset =
        u64::try_from(offset).map_err(|_| format!("commitLogOffset {offset} is negative"))?;
    let mut msgs = decode_records(&cmd.body).map_err(|e| e.to_string())?;
    if msgs.len() != 1 {
        return Err(format!("body holds {} messages, not one", msgs.len()));
    }
    let msg = msgs.pop().expect("one message");
    if msg.phys_offset != offset {
        return Err(format!(
            "body is the record at {}, not at commitLogOffset {offset}",
            msg.phys_offset
        ));
    }
    Ok(CheckTransactionStateRequest {
        producer_group: group.to_string(),
        msg,
    })
}
