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
//! `max_conns` connections (more are closed at once). The proxy never
//! looks inside the bytes, so nothing a peer sends can make it panic.

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

struct Shared {
    fault: Mutex<Fault>,
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
        let listener = TcpListener::bind("127.0.0.1:0").context("bind the fault proxy")?;
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let shared = Arc::new(Shared {
            fault: Mutex::new(fault),
            stop: AtomicBool::new(false),
            conns: AtomicUsize::new(0),
            accepted: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
        });
        let sh = shared.clone();
        let accept = std::thread::Builder::new()
            .name("faultproxy-accept".into())
            .spawn(move || accept_loop(listener, upstream, sh, seed, max_conns.max(1)))
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

fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    sh: Arc<Shared>,
    seed: u64,
    max_conns: usize,
) {
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
        let seed_of = |dir: u64| seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ dir;
        for (from, to, dir) in [(client, s2, 1u64), (server, c2, 2u64)] {
            let (sh2, closed2, ended2) = (sh.clone(), closed.clone(), ended.clone());
            let rng = ChaCha8Rng::seed_from_u64(seed_of(dir));
            match std::thread::Builder::new()
                .name("faultproxy-pipe".into())
                .spawn(move || pipe(from, to, sh2, closed2, ended2, rng))
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

/// Forwards `from` to `to` under the mode until either side closes, a drop
/// closes both, or the proxy stops. The second of the pair to end counts
/// the connection gone.
fn pipe(
    mut from: TcpStream,
    mut to: TcpStream,
    sh: Arc<Shared>,
    closed: Arc<AtomicBool>,
    ended: Arc<AtomicUsize>,
    mut rng: ChaCha8Rng,
) {
    let mut buf = vec![0u8; CHUNK];
    let live = |sh: &Shared, closed: &AtomicBool| {
        !sh.stop.load(Ordering::Acquire) && !closed.load(Ordering::Acquire)
    };
    'outer: while live(&sh, &closed) {
        // No reading during a partition: what is in flight stays in the
        // kernel's buffers and the sender is pushed back.
        if sh.fault() == Fault::Partition {
            std::thread::sleep(POLL);
            continue;
        }
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(_) => break,
        };
        loop {
            match sh.fault() {
                Fault::Pass => break,
                Fault::Delay(ms) => {
                    sleep_while(Duration::from_millis(ms), || live(&sh, &closed));
                    break;
                }
                Fault::Drop(p) => {
                    if rng.random_bool(p.clamp(0.0, 1.0)) {
                        sh.dropped.fetch_add(1, Ordering::Relaxed);
                        break 'outer;
                    }
                    break;
                }
                // A partition that began with this chunk in hand holds it.
                Fault::Partition => {
                    if !live(&sh, &closed) {
                        break 'outer;
                    }
                    std::thread::sleep(POLL);
                }
            }
        }
        if !live(&sh, &closed) || to.write_all(&buf[..n]).is_err() {
            break;
        }
        sh.forwarded.fetch_add(n as u64, Ordering::Relaxed);
    }
    closed.store(true, Ordering::Release);
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
    // The second pipe of the pair to end counts the connection gone.
    if ended.fetch_add(1, Ordering::AcqRel) == 1 {
        sh.conns.fetch_sub(1, Ordering::AcqRel);
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
}
