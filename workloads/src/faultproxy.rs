//! A small seeded fault proxy: a TCP forwarder on loopback between a
//! client and a server (in `mqlab ha`, between a slave and its master's HA
//! port) that can pass bytes, delay them, drop connections or partition
//! the two sides, switched at any time by its owner.
//!
//! - [`Fault::Pass`]: bytes forwarded as they come.
//! - [`Fault::Delay`]: each chunk read is held `ms` before it is written.
//! - [`Fault::Drop`]: with probability `p` per chunk read, the connection
//!   (both sides) is closed instead of forwarding it.
//! - [`Fault::Partition`]: nothing is forwarded in either direction (the
//!   chunk in hand is held, nothing more is read, so TCP back-pressure
//!   stops the sender) until the mode changes; connections stay open.
//!
//! Seeded: each connection draws from a ChaCha stream of the proxy's seed
//! and the connection's number, so a run's drop decisions repeat for the
//! same chunks. Bounded: one accept thread and two per connection, at most
//! `max_conns` connections (more are closed at once).
//!
//! Two additions for `mqlab ha --partition` (controller mode, where a
//! proxy stands in front of each broker's HA port, announced with
//! `--ha-announce`, and between each broker and the controller):
//!
//! - the upstream may be unknown when the proxy starts (a broker's HA port
//!   is known only once it says so) and may change (a restarted broker):
//!   [`FaultProxy::start_lazy`], [`FaultProxy::set_upstream`]; a
//!   connection accepted while there is none waits for one (5 s at most,
//!   then it is closed);
//! - a connection may be *labelled* from the first bytes its client sends
//!   ([`FaultProxy::with_labeler`]; for HA, the controller-mode hello's
//!   broker id): a fault set for a label ([`FaultProxy::set_label`])
//!   applies to that label's connections only, so one slave can be cut
//!   from a master while the others pass. The labeler only reads a fixed
//!   prefix and may refuse it; nothing a peer sends can make the proxy
//!   panic.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// What the proxy does to the bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// Forward as they come.
    Pass,
    /// Hold each chunk this many ms.
    Delay(u64),
    /// Close the connection with this probability per chunk.
    Drop(f64),
    /// Forward nothing until the mode changes.
    Partition,
}

impl std::str::FromStr for Fault {
    type Err = String;

    /// `pass`, `delay:MS`, `drop:P` (0..=1) or `partition`.
    fn from_str(s: &str) -> std::result::Result<Fault, String> {
        let (name, arg) = s.split_once(':').unwrap_or((s, ""));
        match (name, arg) {
            ("pass", "") => Ok(Fault::Pass),
            ("partition", "") => Ok(Fault::Partition),
            ("delay", ms) => ms
                .parse()
                .map(Fault::Delay)
                .map_err(|_| format!("delay:MS needs whole ms, got {ms:?}")),
            ("drop", p) => match p.parse::<f64>() {
                Ok(p) if (0.0..=1.0).contains(&p) => Ok(Fault::Drop(p)),
                _ => Err(format!("drop:P needs 0 <= P <= 1, got {p:?}")),
            },
            _ => Err(format!(
                "unknown fault {s:?}: pass, delay:MS, drop:P or partition"
            )),
        }
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Pass => write!(f, "pass"),
            Fault::Delay(ms) => write!(f, "delay:{ms}"),
            Fault::Drop(p) => write!(f, "drop:{p}"),
            Fault::Partition => write!(f, "partition"),
        }
    }
}

/// How long a blocked read or a partition waits before looking at the
/// mode and the stop flag again.
const POLL: Duration = Duration::from_millis(20);

/// Bytes per read.
const CHUNK: usize = 16 * 1024;

/// Reads a label from a connection's first bytes (exactly the labeler's
/// prefix length), or `None`.
pub type Labeler = fn(&[u8]) -> Option<u64>;

/// No label (not labelled yet, or the labeler refused the prefix).
const NO_LABEL: u64 = u64::MAX;

/// How long an accepted connection waits for an upstream to be set.
const UPSTREAM_WAIT: Duration = Duration::from_secs(5);

/// The controller-mode HA hello (`protocol/PROTOCOL.md`, "Controller mode
/// HA handshake"): magic "MQHA", version, the slave's broker id. A labeler
/// for [`FaultProxy::with_labeler`] with a 16-byte prefix.
pub fn ha_hello_broker_id(b: &[u8]) -> Option<u64> {
    if b.len() < 16 || b[0..4] != 0x4D51_4841u32.to_be_bytes() {
        return None;
    }
    Some(u64::from_be_bytes(b[8..16].try_into().ok()?))
}

/// Precedence of faults when a connection's label has one and the proxy
/// has another: the harsher wins.
fn rank(f: Fault) -> u8 {
    match f {
        Fault::Pass => 0,
        Fault::Delay(_) => 1,
        Fault::Drop(_) => 2,
        Fault::Partition => 3,
    }
}

struct Shared {
    fault: Mutex<Fault>,
    upstream: Mutex<Option<SocketAddr>>,
    labeler: Option<(Labeler, usize)>,
    by_label: Mutex<HashMap<u64, Fault>>,
    stop: AtomicBool,
    conns: AtomicUsize,
    accepted: AtomicU64,
    dropped: AtomicU64,
    forwarded: AtomicU64,
}

impl Shared {
    fn fault(&self) -> Fault {
        *self.fault.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The fault for a connection with this label: the proxy's, or the
    /// label's when that is harsher.
    fn fault_for(&self, label: u64) -> Fault {
        let f = self.fault();
        if label == NO_LABEL {
            return f;
        }
        match self
            .by_label
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&label)
        {
            Some(&l) if rank(l) > rank(f) => l,
            _ => f,
        }
    }

    fn upstream(&self) -> Option<SocketAddr> {
        *self.upstream.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Counters of a proxy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProxyStats {
    /// Connections accepted (refused ones included).
    pub accepted: u64,
    /// Connections closed by a drop (or refused past the bound).
    pub dropped: u64,
    /// Bytes forwarded, both directions.
    pub forwarded_bytes: u64,
}

/// A running proxy; dropping it stops it (connections closed, threads
/// joined).
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .field("fault", &self.shared.fault())
            .finish()
    }
}

impl FaultProxy {
    /// Listens on 127.0.0.1 (a free port) and forwards each connection to
    /// `upstream`; at most `max_conns` at once.
    pub fn start(upstream: SocketAddr, fault: Fault, seed: u64, max_conns: usize) -> Result<Self> {
        Self::build(Some(upstream), fault, seed, max_conns, None)
    }

    /// As [`FaultProxy::start`] with no upstream yet: connections wait
    /// (5 s at most) for [`FaultProxy::set_upstream`].
    pub fn start_lazy(fault: Fault, seed: u64, max_conns: usize) -> Result<Self> {
        Self::build(None, fault, seed, max_conns, None)
    }

    /// As [`FaultProxy::start_lazy`], each connection labelled by
    /// `labeler` from the first `prefix` bytes its client sends (read
    /// before anything is forwarded; a client that sends fewer stays
    /// unlabelled and its bytes pass on at its end).
    pub fn with_labeler(
        fault: Fault,
        seed: u64,
        max_conns: usize,
        labeler: Labeler,
        prefix: usize,
    ) -> Result<Self> {
        Self::build(None, fault, seed, max_conns, Some((labeler, prefix.max(1))))
    }

    fn build(
        upstream: Option<SocketAddr>,
        fault: Fault,
        seed: u64,
        max_conns: usize,
        labeler: Option<(Labeler, usize)>,
    ) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").context("bind the fault proxy")?;
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let shared = Arc::new(Shared {
            fault: Mutex::new(fault),
            upstream: Mutex::new(upstream),
            labeler,
            by_label: Mutex::new(HashMap::new()),
            stop: AtomicBool::new(false),
            conns: AtomicUsize::new(0),
            accepted: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
        });
        let sh = shared.clone();
        let accept = std::thread::Builder::new()
            .name("faultproxy-accept".into())
            .spawn(move || accept_loop(listener, sh, seed, max_conns.max(1)))
            .map_err(|e| anyhow!("spawn the fault proxy: {e}"))?;
        Ok(FaultProxy {
            addr,
            shared,
            accept: Some(accept),
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Switches the mode (every connection, at its next chunk).
    pub fn set(&self, fault: Fault) {
        *self.shared.fault.lock().unwrap_or_else(|e| e.into_inner()) = fault;
    }

    /// The mode now.
    pub fn fault(&self) -> Fault {
        self.shared.fault()
    }

    /// Where new connections go from now on (`None`: they wait for one).
    /// Open connections keep theirs.
    pub fn set_upstream(&self, upstream: Option<SocketAddr>) {
        *self
            .shared
            .upstream
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = upstream;
    }

    /// The upstream now.
    pub fn upstream(&self) -> Option<SocketAddr> {
        self.shared.upstream()
    }

    /// Sets (`Some`) or clears the fault of the connections labelled
    /// `label` (at their next chunk); the harsher of it and the proxy's
    /// own applies.
    pub fn set_label(&self, label: u64, fault: Option<Fault>) {
        let mut m = self
            .shared
            .by_label
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match fault {
            Some(f) => {
                m.insert(label, f);
            }
            None => {
                m.remove(&label);
            }
        }
    }

    /// Heals everything: the proxy's mode back to pass, every label's
    /// fault cleared.
    pub fn heal_all(&self) {
        self.set(Fault::Pass);
        self.shared
            .by_label
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Heals a partition (back to pass).
    pub fn heal(&self) {
        self.set(Fault::Pass);
    }

    /// Counters so far.
    pub fn stats(&self) -> ProxyStats {
        ProxyStats {
            accepted: self.shared.accepted.load(Ordering::Relaxed),
            dropped: self.shared.dropped.load(Ordering::Relaxed),
            forwarded_bytes: self.shared.forwarded.load(Ordering::Relaxed),
        }
    }

    /// Connections open now.
    pub fn connections(&self) -> usize {
        self.shared.conns.load(Ordering::Relaxed)
    }

    /// Stops accepting, closes every connection, joins the threads.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The upstream, waiting for one to be set (5 s at most, while running).
fn wait_upstream(sh: &Shared) -> Option<SocketAddr> {
    let t = std::time::Instant::now();
    loop {
        if let Some(u) = sh.upstream() {
            return Some(u);
        }
        if sh.stop.load(Ordering::Acquire) || t.elapsed() > UPSTREAM_WAIT {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn accept_loop(listener: TcpListener, sh: Arc<Shared>, seed: u64, max_conns: usize) {
    let mut workers: Vec<JoinHandle<()>> = Vec::new();
    let mut n = 0u64;
    while !sh.stop.load(Ordering::Acquire) {
        workers.retain(|h| !h.is_finished());
        let client = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            Err(_) => {
                std::thread::sleep(POLL);
                continue;
            }
        };
        sh.accepted.fetch_add(1, Ordering::Relaxed);
        n += 1;
        if sh.conns.load(Ordering::Acquire) >= max_conns {
            sh.dropped.fetch_add(1, Ordering::Relaxed);
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        let Some(upstream) = wait_upstream(&sh) else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        let server = match TcpStream::connect_timeout(&upstream, Duration::from_secs(2)) {
            Ok(s) => s,
            Err(_) => {
                let _ = client.shutdown(Shutdown::Both);
                continue;
            }
        };
        let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
            continue;
        };
        for s in [&client, &server] {
            let _ = s.set_nonblocking(false);
            let _ = s.set_nodelay(true);
            let _ = s.set_read_timeout(Some(POLL));
        }
        sh.conns.fetch_add(1, Ordering::AcqRel);
        let closed = Arc::new(AtomicBool::new(false));
        let ended = Arc::new(AtomicUsize::new(0));
        let label = Arc::new(AtomicU64::new(NO_LABEL));
        let seed_of = |dir: u64| seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ dir;
        for (from, to, dir) in [(client, s2, 1u64), (server, c2, 2u64)] {
            let conn = Conn {
                sh: sh.clone(),
                closed: closed.clone(),
                ended: ended.clone(),
                label: label.clone(),
                // The client's side reads the label first.
                labels: dir == 1,
            };
            let rng = ChaCha8Rng::seed_from_u64(seed_of(dir));
            match std::thread::Builder::new()
                .name("faultproxy-pipe".into())
                .spawn(move || pipe(from, to, conn, rng))
            {
                Ok(h) => workers.push(h),
                Err(_) => {
                    closed.store(true, Ordering::Release);
                    if ended.fetch_add(1, Ordering::AcqRel) == 1 {
                        sh.conns.fetch_sub(1, Ordering::AcqRel);
                    }
                }
            }
        }
    }
    for h in workers {
        let _ = h.join();
    }
}

/// One direction's share of a connection.
struct Conn {
    sh: Arc<Shared>,
    /// Set when either direction ends: both close.
    closed: Arc<AtomicBool>,
    /// Directions ended; the second counts the connection gone.
    ended: Arc<AtomicUsize>,
    /// The connection's label ([`NO_LABEL`] until read).
    label: Arc<AtomicU64>,
    /// This direction reads the label (the client's).
    labels: bool,
}

impl Conn {
    fn live(&self) -> bool {
        !self.sh.stop.load(Ordering::Acquire) && !self.closed.load(Ordering::Acquire)
    }

    fn fault(&self) -> Fault {
        self.sh.fault_for(self.label.load(Ordering::Acquire))
    }
}

/// Reads one chunk: `Some(n)`, or `None` at the end (closed, an error, or
/// the connection done). Timeouts come back as `Some(0)`.
fn read_chunk(from: &mut TcpStream, buf: &mut [u8]) -> Option<usize> {
    match from.read(buf) {
        Ok(0) => None,
        Ok(n) => Some(n),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::Interrupted
            ) =>
        {
            Some(0)
        }
        Err(_) => None,
    }
}

/// Forwards `from` to `to` under the mode until either side closes, a drop
/// closes both, or the proxy stops. The second of the pair to end counts
/// the connection gone.
fn pipe(mut from: TcpStream, mut to: TcpStream, c: Conn, mut rng: ChaCha8Rng) {
    let mut buf = vec![0u8; CHUNK];
    // The label's prefix, read before anything is forwarded.
    let mut held: Vec<u8> = Vec::new();
    if let (true, Some((labeler, prefix))) = (c.labels, c.sh.labeler) {
        while held.len() < prefix && c.live() {
            let want = (prefix - held.len()).min(CHUNK);
            match read_chunk(&mut from, &mut buf[..want]) {
                Some(n) => held.extend_from_slice(&buf[..n]),
                None => break,
            }
        }
        if held.len() >= prefix {
            if let Some(l) = labeler(&held[..prefix]) {
                c.label.store(l.min(NO_LABEL - 1), Ordering::Release);
            }
        }
    }
    'outer: while c.live() {
        let n = if !held.is_empty() {
            let n = held.len();
            buf[..n].copy_from_slice(&held);
            held.clear();
            n
        } else {
            // No reading during a partition: what is in flight stays in
            // the kernel's buffers and the sender is pushed back.
            if c.fault() == Fault::Partition {
                std::thread::sleep(POLL);
                continue;
            }
            match read_chunk(&mut from, &mut buf) {
                None => break,
                Some(0) => continue,
                Some(n) => n,
            }
        };
        loop {
            match c.fault() {
                Fault::Pass => break,
                Fault::Delay(ms) => {
                    sleep_while(Duration::from_millis(ms), || c.live());
                    break;
                }
                Fault::Drop(p) => {
                    if rng.random_bool(p.clamp(0.0, 1.0)) {
                        c.sh.dropped.fetch_add(1, Ordering::Relaxed);
                        break 'outer;
                    }
                    break;
                }
                // A partition that began with this chunk in hand holds it.
                Fault::Partition => {
                    if !c.live() {
                        break 'outer;
                    }
                    std::thread::sleep(POLL);
                }
            }
        }
        if !c.live() || to.write_all(&buf[..n]).is_err() {
            break;
        }
        c.sh.forwarded.fetch_add(n as u64, Ordering::Relaxed);
    }
    c.closed.store(true, Ordering::Release);
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
    // The second pipe of the pair to end counts the connection gone.
    if c.ended.fetch_add(1, Ordering::AcqRel) == 1 {
        c.sh.conns.fetch_sub(1, Ordering::AcqRel);
    }
}

fn sleep_while(d: Duration, mut go_on: impl FnMut() -> bool) {
    let end = std::time::Instant::now() + d;
    loop {
        let now = std::time::Instant::now();
        if now >= end || !go_on() {
            return;
        }
        std::thread::sleep((end - now).min(POLL));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// An echo server: every byte read is written back.
    fn echo() -> (SocketAddr, JoinHandle<()>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        let h = std::thread::spawn(move || {
            for s in l.incoming().take(4) {
                let Ok(mut s) = s else { return };
                std::thread::spawn(move || {
                    let mut b = [0u8; 4096];
                    while let Ok(n) = s.read(&mut b) {
                        if n == 0 || s.write_all(&b[..n]).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (a, h)
    }

    fn roundtrip(s: &mut TcpStream, data: &[u8]) -> std::io::Result<Vec<u8>> {
        s.write_all(data)?;
        let mut got = vec![0u8; data.len()];
        s.read_exact(&mut got)?;
        Ok(got)
    }

    #[test]
    fn parses_and_prints_modes() {
        for s in ["pass", "delay:5", "drop:0.25", "partition"] {
            assert_eq!(s.parse::<Fault>().unwrap().to_string(), s);
        }
        assert!("drop:2".parse::<Fault>().is_err());
        assert!("delay:x".parse::<Fault>().is_err());
        assert!("cut".parse::<Fault>().is_err());
    }

    #[test]
    fn passes_any_bytes_and_delays() {
        let (up, _h) = echo();
        let p = FaultProxy::start(up, Fault::Pass, 7, 4).unwrap();
        let mut s = TcpStream::connect(p.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 31 % 251) as u8).collect();
        assert_eq!(roundtrip(&mut s, &data).unwrap(), data);
        p.set(Fault::Delay(100));
        let t = Instant::now();
        assert_eq!(roundtrip(&mut s, b"x").unwrap(), b"x");
        assert!(
            t.elapsed() >= Duration::from_millis(190),
            "{:?}",
            t.elapsed()
        );
        assert!(p.stats().forwarded_bytes >= 200_000);
        p.stop();
    }

    #[test]
    fn partition_holds_until_healed_and_drop_closes() {
        let (up, _h) = echo();
        let p = FaultProxy::start(up, Fault::Pass, 7, 4).unwrap();
        let mut s = TcpStream::connect(p.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        assert_eq!(roundtrip(&mut s, b"a").unwrap(), b"a");
        p.set(Fault::Partition);
        std::thread::sleep(POLL * 3);
        s.write_all(b"b").unwrap();
        let mut one = [0u8; 1];
        assert!(s.read_exact(&mut one).is_err(), "forwarded in a partition");
        p.heal();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.read_exact(&mut one).unwrap();
        assert_eq!(&one, b"b");
        p.set(Fault::Drop(1.0));
        let _ = s.write_all(b"c");
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        assert!(rest.is_empty());
        assert!(p.stats().dropped >= 1);
        let t = Instant::now();
        while p.connections() > 0 {
            assert!(t.elapsed() < Duration::from_secs(5));
            std::thread::sleep(POLL);
        }
        p.stop();
    }

    #[test]
    fn refuses_past_its_bound() {
        let (up, _h) = echo();
        let p = FaultProxy::start(up, Fault::Pass, 1, 1).unwrap();
        let mut a = TcpStream::connect(p.addr()).unwrap();
        a.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(roundtrip(&mut a, b"a").unwrap(), b"a");
        let mut b = TcpStream::connect(p.addr()).unwrap();
        b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut rest = Vec::new();
        let _ = b.write_all(b"b");
        let _ = b.read_to_end(&mut rest);
        assert!(rest.is_empty());
        assert_eq!(p.stats().accepted, 2);
    }

    /// A hello as a controller-mode slave sends it.
    fn hello(id: u64) -> Vec<u8> {
        let mut h = 0x4D51_4841u32.to_be_bytes().to_vec();
        h.extend_from_slice(&1u32.to_be_bytes());
        h.extend_from_slice(&id.to_be_bytes());
        h
    }

    #[test]
    fn labels_cut_one_client_and_upstream_comes_late() {
        let (up, _h) = echo();
        let p = FaultProxy::with_labeler(Fault::Pass, 3, 4, ha_hello_broker_id, 16).unwrap();
        // Connected before the upstream is known: waits for it.
        let mut a = TcpStream::connect(p.addr()).unwrap();
        a.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        a.write_all(&hello(2)).unwrap();
        std::thread::sleep(POLL * 2);
        p.set_upstream(Some(up));
        let mut got = vec![0u8; 16];
        a.read_exact(&mut got).unwrap();
        assert_eq!(got, hello(2));
        let mut b = TcpStream::connect(p.addr()).unwrap();
        b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(roundtrip(&mut b, &hello(3)).unwrap(), hello(3));
        // Label 2 cut: a holds, b passes.
        p.set_label(2, Some(Fault::Partition));
        std::thread::sleep(POLL * 3);
        a.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        a.write_all(b"x").unwrap();
        let mut one = [0u8; 1];
        assert!(a.read_exact(&mut one).is_err(), "label 2 forwarded");
        assert_eq!(roundtrip(&mut b, b"y").unwrap(), b"y");
        // The proxy's own partition holds b too; healing all frees both.
        p.set(Fault::Partition);
        std::thread::sleep(POLL * 3);
        b.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        b.write_all(b"z").unwrap();
        assert!(b.read_exact(&mut one).is_err(), "partition forwarded");
        p.heal_all();
        for (s, want) in [(&mut a, b"x"), (&mut b, b"z")] {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.read_exact(&mut one).unwrap();
            assert_eq!(&one, want);
        }
        // A short or foreign prefix: unlabelled, passed through.
        assert_eq!(ha_hello_broker_id(b"MQHA"), None);
        assert_eq!(ha_hello_broker_id(&[0u8; 16]), None);
        assert_eq!(ha_hello_broker_id(&hello(7)), Some(7));
        p.stop();
    }

    #[test]
    fn no_upstream_closes_after_the_wait() {
        let p = FaultProxy::start_lazy(Fault::Pass, 1, 2).unwrap();
        let mut a = TcpStream::connect(p.addr()).unwrap();
        a.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let t = Instant::now();
        let mut rest = Vec::new();
        let _ = a.read_to_end(&mut rest);
        assert!(rest.is_empty());
        assert!(t.elapsed() >= UPSTREAM_WAIT - Duration::from_millis(100));
        assert_eq!(p.upstream(), None);
    }
}
