//! The TCP server (see the module docs of `remoting`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mqlab_protocol::codes::response;
use mqlab_protocol::{decode_frame, encode_frame, Limits, RemotingCommand};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What serves the requests. Called on the runtime's worker threads: a
/// handler that blocks for long must hand the work to its own threads.
pub trait Handler: Send + Sync + 'static {
    /// Answers `req` (None for one-way requests and anything that must
    /// not be answered).
    fn handle(&self, req: RemotingCommand, peer: SocketAddr) -> Option<RemotingCommand>;
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
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9876)),
            limits: Limits::default(),
            max_connections: 10_000,
            idle_timeout_ms: 120_000,
            worker_threads: 2,
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    connections: AtomicUsize,
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
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cfg.worker_threads.max(1))
            .thread_name("mqlab-remoting")
            .enable_io()
            .enable_time()
            .build()?;
        let listener = runtime
            .block_on(TcpListener::bind(cfg.listen))
            .map_err(|e| std::io::Error::new(e.kind(), format!("listen on {}: {e}", cfg.listen)))?;
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

/// One connection: frames in, answers out, in order.
async fn serve(
    mut sock: TcpStream,
    peer: SocketAddr,
    cfg: &ServerConfig,
    handler: Arc<dyn Handler>,
    mut stopped: watch::Receiver<bool>,
    counters: &Counters,
) -> Result<(), String> {
    let _ = sock.set_nodelay(true);
    let idle = Duration::from_millis(cfg.idle_timeout_ms.max(1));
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        // Answer every complete frame already buffered.
        loop {
            match decode_frame(&buf, &cfg.limits) {
                Ok(Some((req, used))) => {
                    buf.drain(..used);
                    counters.requests.fetch_add(1, Ordering::Relaxed);
                    let oneway = req.is_oneway();
                    let answer = if req.is_response() {
                        None // answers to our own requests: none sent yet
                    } else {
                        handler.handle(req, peer)
                    };
                    if let (Some(resp), false) = (answer, oneway) {
                        let bytes = encode_frame(&resp).unwrap_or_else(|e| {
                            let mut r = RemotingCommand::response_to(
                                &resp,
                                response::SYSTEM_ERROR,
                                Some(format!("cannot encode the answer: {e}")),
                            );
                            r.ext_fields.clear();
                            encode_frame(&r).unwrap_or_default()
                        });
                        sock.write_all(&bytes)
                            .await
                            .map_err(|e| format!("write: {e}"))?;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    counters.bad_frames.fetch_add(1, Ordering::Relaxed);
                    return Err(format!("bad frame: {e}"));
                }
            }
        }
        let n = tokio::select! {
            r = tokio::time::timeout(idle, sock.read(&mut chunk)) => match r {
                Err(_) => return Err(format!("idle for {} ms", idle.as_millis())),
                Ok(Err(e)) => return Err(format!("read: {e}")),
                Ok(Ok(0)) => return Ok(()),
                Ok(Ok(n)) => n,
            },
            _ = stopped.changed() => return Ok(()),
        };
        buf.extend_from_slice(&chunk[..n]);
    }
}
