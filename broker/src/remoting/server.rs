//! The TCP server (see the module docs of `remoting`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mqlab_protocol::codes::response;
use mqlab_protocol::{decode_frame, encode_frame, Limits, RemotingCommand};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What serves the requests. Each request is first offered to
/// [`Handler::try_inline`] on its connection's reader task; what that
/// gives back (by default everything) is called on the runtime's blocking
/// pool, one call per request, several at once (also for one connection):
/// a handler may block there (a held pull), or answer later through
/// [`Reply`] so that no thread waits (a put waiting for its flush).
pub trait Handler: Send + Sync + 'static {
    /// Answers `req` (None for one-way requests and anything that must
    /// not be answered). `conn` is the connection it came on: its peer,
    /// and a way to send the client requests of the server's own.
    fn handle(&self, req: RemotingCommand, conn: &Conn) -> Option<RemotingCommand>;

    /// Answers `req` through `reply`, now or later from any thread (an
    /// engine completion): the request counts as in flight on its
    /// connection until `reply` is used or dropped. By default calls
    /// [`Handler::handle`] and replies at once.
    fn handle_async(&self, req: RemotingCommand, conn: &Conn, reply: Reply) {
        if let Some(resp) = self.handle(req, conn) {
            reply.send(&resp);
        }
    }

    /// Handles `req` on the connection's reader task, without the
    /// blocking pool's hand-off (a thread wake-up and a context switch per
    /// request), or gives it back (`Some`) to be handled by
    /// [`Handler::handle_async`] on the blocking pool. Only for requests
    /// that never block for long: while this runs, nothing else of this
    /// connection is read, and the runtime has few worker threads (2 by
    /// default) for every connection. `reply` holds the request's
    /// in-flight slot either way. By default everything is given back.
    fn try_inline(
        &self,
        req: RemotingCommand,
        conn: &Conn,
        reply: Reply,
    ) -> Option<(RemotingCommand, Reply)> {
        let _ = conn;
        Some((req, reply))
    }
}

/// The way back for one request's answer, usable from any thread, once.
/// Holds the request's in-flight slot on its connection until it is sent
/// or dropped (dropped unanswered: the client times out, as with a
/// one-way request). Never blocks: answers queue on the connection's
/// writer, bounded by the connection's in-flight slots.
#[derive(Debug)]
pub struct Reply {
    tx: tokio::sync::mpsc::UnboundedSender<Outgoing>,
    oneway: bool,
    received: std::time::Instant,
    slot: tokio::sync::OwnedSemaphorePermit,
    queued: Arc<Queued>,
}

impl Reply {
    /// How long ago the request was decoded (its wait for a thread
    /// included).
    pub fn waited(&self) -> Duration {
        self.received.elapsed()
    }

    /// Sends `resp` (nothing for a one-way request); false when the
    /// connection is gone.
    pub fn send(self, resp: &RemotingCommand) -> bool {
        if self.oneway {
            return true;
        }
        let bytes = encode_answer(resp);
        // (An empty frame is the writer's end marker; encode_answer
        // never gives one for a real answer.)
        if bytes.is_empty() {
            return false;
        }
        // The slot goes with the answer: it is free again once the answer
        // is written, so a peer that never reads stops being read after
        // MAX_IN_FLIGHT_PER_CONNECTION answers (and past
        // MAX_QUEUED_ANSWER_BYTES of them).
        self.queued.add(bytes.len());
        let len = bytes.len();
        let sent = self
            .tx
            .send(Outgoing {
                bytes,
                push: false,
                slot: Some(self.slot),
            })
            .is_ok();
        if !sent {
            self.queued.written(len);
        }
        sent
    }
}

/// Bytes of answers queued on a connection and not yet written, and a
/// wake-up for its reader when they fall.
#[derive(Debug, Default)]
struct Queued {
    bytes: AtomicUsize,
    drained: tokio::sync::Notify,
    /// The writer stopped (the peer is gone): nothing will drain.
    closed: std::sync::atomic::AtomicBool,
}

impl Queued {
    fn add(&self, n: usize) {
        self.bytes.fetch_add(n, Ordering::AcqRel);
    }

    fn written(&self, n: usize) {
        self.bytes.fetch_sub(n, Ordering::AcqRel);
        self.drained.notify_one();
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.drained.notify_one();
    }

    /// Waits until at most `max` bytes are queued, or the writer stopped.
    async fn below(&self, max: usize) {
        let done =
            || self.bytes.load(Ordering::Acquire) <= max || self.closed.load(Ordering::Acquire);
        while !done() {
            let wake = self.drained.notified();
            if done() {
                break;
            }
            wake.await;
        }
    }
}

/// A frame queued for a connection's writer.
#[derive(Debug)]
struct Outgoing {
    bytes: Vec<u8>,
    /// A push of the server's own (counted against [`MAX_QUEUED_PUSHES`]).
    push: bool,
    /// An answer's in-flight slot, freed once it is written.
    slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// Most pushes queued on one connection; more are dropped (the client
/// asks again or rebalances on its timer).
const MAX_QUEUED_PUSHES: usize = 256;

/// One client connection, as handlers see it: who it is, and a bounded
/// way to push requests to it (one-way: NOTIFY_CONSUMER_IDS_CHANGED,
/// CHECK_TRANSACTION_STATE). Cheap to clone; pushes to a closed or
/// backed-up connection are dropped (the client asks again or rebalances
/// on its timer).
#[derive(Debug, Clone)]
pub struct Conn {
    peer: SocketAddr,
    tx: tokio::sync::mpsc::UnboundedSender<Outgoing>,
    queued_pushes: Arc<AtomicUsize>,
    opaque: Arc<std::sync::atomic::AtomicI32>,
}

impl Conn {
    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Sends `cmd` to the client as a one-way request (a fresh opaque is
    /// set); false when it could not be queued.
    pub fn push(&self, mut cmd: RemotingCommand) -> bool {
        cmd.opaque = self.opaque.fetch_add(1, Ordering::Relaxed);
        cmd.flag |= mqlab_protocol::FLAG_ONEWAY;
        let Ok(bytes) = encode_frame(&cmd) else {
            return false;
        };
        if self.queued_pushes.fetch_add(1, Ordering::AcqRel) >= MAX_QUEUED_PUSHES {
            self.queued_pushes.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        let sent = self
            .tx
            .send(Outgoing {
                bytes,
                push: true,
                slot: None,
            })
            .is_ok();
        if !sent {
            self.queued_pushes.fetch_sub(1, Ordering::AcqRel);
        }
        sent
    }

    /// Whether the connection is gone.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// Server limits and address.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where to listen. Default 127.0.0.1:9876.
    pub listen: SocketAddr,
    /// Frame cap. Default 16 MiB.
    pub limits: Limits,
    /// Most open connections; more are closed at once. Default 10,000.
    pub max_connections: usize,
    /// A connection silent this long is closed, ms. Default 120,000.
    pub idle_timeout_ms: u64,
    /// Worker threads of the runtime. Default 2.
    pub worker_threads: usize,
    /// Most bytes of frames still arriving, over every connection: a
    /// connection whose incomplete frame would take the total past it is
    /// closed (a frame may be 16 MiB, so many slow senders could
    /// otherwise hold 16 MiB each until their idle timeout). Default
    /// 512 MiB.
    pub max_partial_frame_bytes: usize,
    /// Most threads of the runtime's blocking pool, where requests not
    /// handled inline run (tokio's default: 512).
    pub blocking_threads: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9876)),
            limits: Limits::default(),
            max_connections: 10_000,
            idle_timeout_ms: 120_000,
            worker_threads: 2,
            max_partial_frame_bytes: 512 << 20,
            blocking_threads: 512,
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    connections: AtomicUsize,
    /// Bytes of incomplete frames held, over every connection.
    partial_bytes: AtomicUsize,
    requests: AtomicU64,
    bad_frames: AtomicU64,
}

/// A running server; [`RemotingServer::shutdown`] (or drop) stops it.
pub struct RemotingServer {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    runtime: Option<tokio::runtime::Runtime>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for RemotingServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemotingServer")
            .field("addr", &self.addr)
            .finish()
    }
}

impl RemotingServer {
    /// Binds and starts serving with `handler`.
    pub fn start(cfg: ServerConfig, handler: Arc<dyn Handler>) -> std::io::Result<Self> {
        let listener = Self::bind(cfg.listen)?;
        Self::start_on(listener, cfg, handler)
    }

    /// Binds `addr` (before the handler exists: a broker must know its
    /// bound port, its store host, before it opens its store).
    pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
        let l = std::net::TcpListener::bind(addr)
            .map_err(|e| std::io::Error::new(e.kind(), format!("listen on {addr}: {e}")))?;
        l.set_nonblocking(true)?;
        Ok(l)
    }

    /// Starts serving `handler` on a listener from [`RemotingServer::bind`]
    /// (`cfg.listen` is then only a name in messages).
    pub fn start_on(
        listener: std::net::TcpListener,
        cfg: ServerConfig,
        handler: Arc<dyn Handler>,
    ) -> std::io::Result<Self> {
        listener.set_nonblocking(true)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cfg.worker_threads.max(1))
            .max_blocking_threads(cfg.blocking_threads.max(1))
            .thread_name("mqlab-remoting")
            .enable_io()
            .enable_time()
            .build()?;
        let listener = {
            let _guard = runtime.enter();
            TcpListener::from_std(listener)?
        };
        let addr = listener.local_addr()?;
        let (stop, stopped) = watch::channel(false);
        let counters = Arc::new(Counters::default());
        runtime.spawn(accept_loop(
            listener,
            cfg,
            handler,
            stopped,
            counters.clone(),
        ));
        Ok(RemotingServer {
            addr,
            stop,
            runtime: Some(runtime),
            counters,
        })
    }

    /// The bound address (the port is chosen when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Open connections now.
    pub fn connections(&self) -> usize {
        self.counters.connections.load(Ordering::Relaxed)
    }

    /// Requests decoded so far.
    pub fn requests(&self) -> u64 {
        self.counters.requests.load(Ordering::Relaxed)
    }

    /// Connections closed for a frame that did not decode.
    pub fn bad_frames(&self) -> u64 {
        self.counters.bad_frames.load(Ordering::Relaxed)
    }

    /// Stops accepting, closes every connection, and waits (bounded).
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        let _ = self.stop.send(true);
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

impl Drop for RemotingServer {
    fn drop(&mut self) {
        self.stop_now();
    }
}

async fn accept_loop(
    listener: TcpListener,
    cfg: ServerConfig,
    handler: Arc<dyn Handler>,
    mut stopped: watch::Receiver<bool>,
    counters: Arc<Counters>,
) {
    loop {
        let (sock, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    eprintln!("mqlab remoting: accept on {}: {e}", cfg.listen);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped.changed() => return,
        };
        if counters.connections.load(Ordering::Relaxed) >= cfg.max_connections {
            eprintln!(
                "mqlab remoting: {peer} refused: {} connections open (max {})",
                cfg.max_connections, cfg.max_connections
            );
            drop(sock);
            continue;
        }
        counters.connections.fetch_add(1, Ordering::Relaxed);
        let (handler, counters, stopped, cfg) = (
            handler.clone(),
            counters.clone(),
            stopped.clone(),
            cfg.clone(),
        );
        tokio::spawn(async move {
            if let Err(why) = serve(sock, peer, &cfg, handler, stopped, &counters).await {
                eprintln!("mqlab remoting: closed {peer}: {why}");
            }
            counters.connections.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// One connection's share of [`Counters::partial_bytes`]: the bytes of
/// the incomplete frame it holds; given back when it ends.
struct PartialFrame<'a> {
    counters: &'a Counters,
    max: usize,
    held: usize,
}

impl PartialFrame<'_> {
    /// Now `now` bytes are held. Growing past the server's budget is
    /// refused (nothing counted): the caller closes the connection.
    fn hold(&mut self, now: usize) -> Result<(), String> {
        if now > self.held {
            let more = now - self.held;
            let total = self
                .counters
                .partial_bytes
                .fetch_add(more, Ordering::AcqRel)
                + more;
            if total > self.max {
                self.counters
                    .partial_bytes
                    .fetch_sub(more, Ordering::AcqRel);
                return Err(format!(
                    "an incomplete frame of {now} bytes would take the frames still arriving \
                     past {} bytes over all connections (max_partial_frame_bytes)",
                    self.max
                ));
            }
        } else {
            self.counters
                .partial_bytes
                .fetch_sub(self.held - now, Ordering::AcqRel);
        }
        self.held = now;
        Ok(())
    }
}

impl Drop for PartialFrame<'_> {
    fn drop(&mut self) {
        self.counters
            .partial_bytes
            .fetch_sub(self.held, Ordering::AcqRel);
    }
}

/// Most requests of one connection being handled or answered and not yet
/// written at once; past it the connection is not read until an answer
/// is written (back-pressure on the peer, also on one that never reads
/// its answers).
const MAX_IN_FLIGHT_PER_CONNECTION: usize = 1024;

/// Most bytes of answers queued on one connection and not yet written;
/// past it the connection is not read until some are written.
const MAX_QUEUED_ANSWER_BYTES: usize = 8 << 20;

/// Bytes a connection reads at once (at least).
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// A connection with nothing buffered frees its read buffer after this
/// long without a byte.
const RELEASE_IDLE_BUFFER_AFTER: Duration = Duration::from_secs(1);

/// Longest a closing connection waits for its in-flight answers.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// One connection. Requests the handler takes inline
/// ([`Handler::try_inline`]: sends that never wait) are handled here, on
/// the reader task; the rest run on the runtime's blocking pool, so a put
/// waiting for its flush or a held pull never stalls other requests, on
/// this connection or another. Answers go out as they finish, matched by
/// opaque (RocketMQ clients expect that), through one writer.
async fn serve(
    sock: TcpStream,
    peer: SocketAddr,
    cfg: &ServerConfig,
    handler: Arc<dyn Handler>,
    mut stopped: watch::Receiver<bool>,
    counters: &Counters,
) -> Result<(), String> {
    let _ = sock.set_nodelay(true);
    let (rd, mut wr) = sock.into_split();
    // Unbounded, yet bounded: answers by the in-flight slots (held until
    // written) and MAX_QUEUED_ANSWER_BYTES, pushes by `queued_pushes`. A
    // completion on an engine thread never blocks here.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Outgoing>();
    let queued_pushes = Arc::new(AtomicUsize::new(0));
    let writer_pushes = queued_pushes.clone();
    let queued = Arc::new(Queued::default());
    let writer_queued = queued.clone();
    let writer = tokio::spawn(async move {
        while let Some(out) = rx.recv().await {
            if out.bytes.is_empty() {
                break; // the connection is done
            }
            if out.push {
                writer_pushes.fetch_sub(1, Ordering::AcqRel);
            }
            let written = wr.write_all(&out.bytes).await;
            if out.slot.is_some() {
                writer_queued.written(out.bytes.len());
            }
            if let Err(e) = written {
                // Wakes the reader: it finds the peer gone and closes.
                writer_queued.close();
                return Err(format!("write: {e}"));
            }
        }
        Ok(())
    });
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT_PER_CONNECTION));
    let conn = Conn {
        peer,
        tx: tx.clone(),
        queued_pushes,
        opaque: Arc::new(std::sync::atomic::AtomicI32::new(1 << 30)),
    };
    let idle = Duration::from_millis(cfg.idle_timeout_ms.max(1));
    // What was read and not yet decoded. A busy connection keeps it; one
    // idle for `RELEASE_IDLE_BUFFER_AFTER` with nothing buffered frees it,
    // so thousands of idle connections, or one that once sent a 4 MiB
    // message, do not each hold a read buffer (issue 16's soak: the heap
    // grew with the connection count and the largest frames).
    let mut buf: Vec<u8> = Vec::new();
    let mut partial = PartialFrame {
        counters,
        max: cfg.max_partial_frame_bytes,
        held: 0,
    };
    let result = loop {
        // Start every complete frame already buffered.
        let mut bad = None;
        loop {
            // A peer that does not read its answers is not read either,
            // and is dropped once it has read none for the idle timeout.
            if tokio::time::timeout(idle, queued.below(MAX_QUEUED_ANSWER_BYTES))
                .await
                .is_err()
            {
                bad = Some(format!(
                    "read none of its answers for {} ms",
                    idle.as_millis()
                ));
                break;
            }
            match decode_frame(&buf, &cfg.limits) {
                Ok(Some((req, used))) => {
                    buf.drain(..used);
                    counters.requests.fetch_add(1, Ordering::Relaxed);
                    if req.is_response() {
                        continue; // answers to our own requests: none sent yet
                    }
                    let slot = match tokio::time::timeout(idle, slots.clone().acquire_owned()).await
                    {
                        Ok(Ok(slot)) => slot,
                        Ok(Err(_)) => break,
                        Err(_) => {
                            bad = Some(format!(
                                    "{MAX_IN_FLIGHT_PER_CONNECTION} requests unanswered or unread for {} ms",
                                    idle.as_millis()
                                ));
                            break;
                        }
                    };
                    let reply = Reply {
                        tx: tx.clone(),
                        oneway: req.is_oneway(),
                        received: std::time::Instant::now(),
                        slot,
                        queued: queued.clone(),
                    };
                    // A panic inline loses that request only (its slot
                    // comes back with the dropped reply), as one on the
                    // blocking pool does; the connection goes on.
                    let inline = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        handler.try_inline(req, &conn, reply)
                    }));
                    if let Ok(Some((req, reply))) = inline {
                        let (handler, conn) = (handler.clone(), conn.clone());
                        tokio::task::spawn_blocking(move || {
                            handler.handle_async(req, &conn, reply);
                        });
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    counters.bad_frames.fetch_add(1, Ordering::Relaxed);
                    bad = Some(format!("bad frame: {e}"));
                    break;
                }
            }
        }
        if let Some(why) = bad {
            break Err(why);
        }
        // What is left is the start of a frame still arriving.
        if let Err(why) = partial.hold(buf.len()) {
            break Err(why);
        }
        let waiting = std::time::Instant::now();
        let ready = tokio::select! {
            r = tokio::time::timeout(RELEASE_IDLE_BUFFER_AFTER.min(idle), rd.readable()) => r,
            _ = stopped.changed() => break Ok(()),
        };
        let ready = match ready {
            Ok(r) => r,
            Err(_) => {
                if buf.is_empty() {
                    buf = Vec::new();
                }
                let rest = idle.saturating_sub(waiting.elapsed());
                tokio::select! {
                    r = tokio::time::timeout(rest, rd.readable()) => match r {
                        Err(_) => break Err(format!("idle for {} ms", idle.as_millis())),
                        Ok(r) => r,
                    },
                    _ = stopped.changed() => break Ok(()),
                }
            }
        };
        if let Err(e) = ready {
            break Err(format!("read: {e}"));
        }
        buf.reserve(READ_CHUNK_BYTES);
        match rd.try_read_buf(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => break Err(format!("read: {e}")),
        }
    };
    if result.is_err() {
        // A bad or dead peer: drop what is still to be written.
        writer.abort();
        return result;
    }
    // The peer finished sending (or the server stops): answer what is in
    // flight, then close. Clones of `conn` kept for pushes (a consumer's
    // channel) must not keep the connection open: once every slot is
    // back, an empty frame tells the writer to finish.
    let all = MAX_IN_FLIGHT_PER_CONNECTION as u32;
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, slots.acquire_many(all)).await;
    let _ = tx.send(Outgoing {
        bytes: Vec::new(),
        push: false,
        slot: None,
    });
    drop(tx);
    drop(conn);
    match writer.await {
        Ok(Err(e)) => Err(e),
        _ => Ok(()),
    }
}

/// The frame of an answer; one that cannot be encoded becomes a
/// SYSTEM_ERROR saying why.
fn encode_answer(resp: &RemotingCommand) -> Vec<u8> {
    encode_frame(resp).unwrap_or_else(|e| {
        let mut r = RemotingCommand::response_to(
            resp,
            response::SYSTEM_ERROR,
            Some(format!("cannot encode the answer: {e}")),
        );
        r.ext_fields.clear();
        encode_frame(&r).unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::sync::atomic::AtomicBool;

    /// Code 1 waits (at most 5 s) until a code 2 has been answered.
    struct Gate(AtomicBool);

    impl Handler for Gate {
        fn handle(&self, req: RemotingCommand, _conn: &Conn) -> Option<RemotingCommand> {
            if req.code == 1 {
                let t = std::time::Instant::now();
                while !self.0.load(Ordering::Acquire) && t.elapsed() < Duration::from_secs(5) {
                    std::thread::sleep(Duration::from_millis(1));
                }
            } else {
                self.0.store(true, Ordering::Release);
            }
            Some(RemotingCommand::response_to(&req, response::SUCCESS, None))
        }
    }

    #[test]
    fn a_blocked_request_does_not_hold_up_the_next_on_its_connection() {
        let server = RemotingServer::start(
            ServerConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                ..ServerConfig::default()
            },
            Arc::new(Gate(AtomicBool::new(false))),
        )
        .unwrap();
        let mut s = std::net::TcpStream::connect(server.local_addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        for (code, opaque) in [(1, 100), (2, 200)] {
            s.write_all(&encode_frame(&RemotingCommand::request(code, opaque)).unwrap())
                .unwrap();
        }
        let mut buf = Vec::new();
        let mut order = Vec::new();
        let mut chunk = [0u8; 1024];
        while order.len() < 2 {
            while let Some((cmd, used)) = decode_frame(&buf, &Limits::default()).unwrap() {
                buf.drain(..used);
                order.push(cmd.opaque);
            }
            if order.len() < 2 {
                let n = s.read(&mut chunk).unwrap();
                assert!(n > 0);
                buf.extend_from_slice(&chunk[..n]);
            }
        }
        // The second request was answered while the first still waited.
        assert_eq!(order, vec![200, 100]);
        server.shutdown();
    }

    /// Answers every request later, from a thread of its own (as an
    /// engine completion does), and keeps each connection's `Conn`.
    struct Later(std::sync::Mutex<Vec<Conn>>);

    impl Handler for Later {
        fn handle(&self, _req: RemotingCommand, _conn: &Conn) -> Option<RemotingCommand> {
            unreachable!("handle_async is overridden")
        }
        fn handle_async(&self, req: RemotingCommand, conn: &Conn, reply: Reply) {
            self.0.lock().unwrap().push(conn.clone());
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                reply.send(&RemotingCommand::response_to(&req, response::SUCCESS, None));
            });
        }
    }

    #[test]
    fn answers_sent_later_from_other_threads_all_arrive_and_the_connection_then_closes() {
        let server = RemotingServer::start(
            ServerConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                ..ServerConfig::default()
            },
            Arc::new(Later(std::sync::Mutex::new(Vec::new()))),
        )
        .unwrap();
        let mut s = std::net::TcpStream::connect(server.local_addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let n = 300;
        let mut frames = Vec::new();
        for opaque in 0..n {
            frames.extend(encode_frame(&RemotingCommand::request(7, opaque)).unwrap());
        }
        s.write_all(&frames).unwrap();
        // The client is done sending; the server must still answer all.
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).unwrap(); // ends: the server closed
        let mut seen = std::collections::BTreeSet::new();
        let mut rest = &buf[..];
        while let Some((cmd, used)) = decode_frame(rest, &Limits::default()).unwrap() {
            assert!(cmd.is_response());
            seen.insert(cmd.opaque);
            rest = &rest[used..];
        }
        assert!(rest.is_empty(), "{} stray bytes", rest.len());
        assert_eq!(seen, (0..n).collect());
        server.shutdown();
    }

    /// Code 3 panics inline, code 4 is answered inline, the rest on the
    /// blocking pool.
    struct Inline;

    impl Handler for Inline {
        fn handle(&self, req: RemotingCommand, _conn: &Conn) -> Option<RemotingCommand> {
            Some(RemotingCommand::response_to(
                &req,
                response::SUCCESS,
                Some("pool".into()),
            ))
        }
        fn try_inline(
            &self,
            req: RemotingCommand,
            _conn: &Conn,
            reply: Reply,
        ) -> Option<(RemotingCommand, Reply)> {
            match req.code {
                3 => panic!("inline handler fails (expected in this test)"),
                4 => {
                    reply.send(&RemotingCommand::response_to(
                        &req,
                        response::SUCCESS,
                        Some("inline".into()),
                    ));
                    None
                }
                _ => Some((req, reply)),
            }
        }
    }

    #[test]
    fn requests_taken_inline_are_answered_and_a_panic_there_loses_only_its_request() {
        let server = RemotingServer::start(
            ServerConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                ..ServerConfig::default()
            },
            Arc::new(Inline),
        )
        .unwrap();
        let mut s = std::net::TcpStream::connect(server.local_addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        for (code, opaque) in [(4, 1), (3, 2), (5, 3), (4, 4)] {
            s.write_all(&encode_frame(&RemotingCommand::request(code, opaque)).unwrap())
                .unwrap();
        }
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).unwrap();
        let mut got = std::collections::BTreeMap::new();
        let mut rest = &buf[..];
        while let Some((cmd, used)) = decode_frame(rest, &Limits::default()).unwrap() {
            got.insert(cmd.opaque, cmd.remark.unwrap_or_default());
            rest = &rest[used..];
        }
        let want: std::collections::BTreeMap<i32, String> =
            [(1, "inline"), (3, "pool"), (4, "inline")]
                .into_iter()
                .map(|(o, r)| (o, r.to_string()))
                .collect();
        assert_eq!(got, want);
        server.shutdown();
    }
}
