//! The master's side (RocketMQ's `DefaultHAService` and
//! `DefaultHAConnection`): an accept thread, and per slave a reader of its
//! reports and a writer of transfers.
//!
//! Per connection:
//! - the writer waits for the slave's first report, then streams from
//!   there (from the base of the master's last segment when the slave
//!   reports 0, RocketMQ's rule) up to the committed offset, in transfers
//!   of at most `transfer_batch_bytes` within one segment; idle, it sends
//!   an empty transfer every heartbeat interval. `sent` moves before the
//!   bytes go out, so a report can never be ahead of it legitimately.
//! - the reader takes the newest whole report of each read: the first one
//!   must not be past the master's end; later ones never go back nor past
//!   `sent`. Anything else is an offset mismatch: logged with both
//!   offsets, the connection dropped. A report fires every waiting put
//!   whose end it covers. Silence for the housekeeping interval drops it.
//!
//! Waiting puts (SYNC_MASTER) sit in a map ordered by (end, arrival);
//! reports fire the covered prefix, the sweeper times out the rest.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mqlab_engine::error::Error as StoreError;
use mqlab_engine::service::Signal;
use mqlab_engine::store::{ReplicaCallback, ReplicaGate};
use mqlab_engine::{PutStatus, Store};

use super::controlled::{self, Controlled};
use super::wire::{self, ReportReader};
use super::{HaConfig, MAX_SLAVE_CONNECTIONS};

/// How often waiting puts are checked for their timeout.
const SWEEP_INTERVAL: Duration = Duration::from_millis(10);

/// One slave's connection, as the master sees it.
#[derive(Debug)]
pub struct SlaveConn {
    peer: SocketAddr,
    stream: TcpStream,
    /// The slave's newest report; -1 before the first.
    ack: AtomicI64,
    /// End of what the writer has sent (or is sending).
    sent: AtomicU64,
    closed: AtomicBool,
    /// Controller mode: the broker id from its hello (0: unknown).
    broker_id: AtomicU64,
    /// A report at or past this is "caught up" (the master's committed
    /// offset at the previous report).
    catch_up_target: AtomicU64,
}

impl SlaveConn {
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    fn is_open(&self) -> bool {
        !self.closed.load(Ordering::Acquire)
    }
}

/// What one connected slave looks like from the master.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlaveInfo {
    /// Its address.
    pub peer: SocketAddr,
    /// Its newest report (None before the first).
    pub acked: Option<u64>,
    /// End of what was sent to it.
    pub sent: u64,
    /// Controller mode: its broker id (0 otherwise).
    pub broker_id: u64,
}

struct Waiter {
    deadline: Instant,
    timeout: Duration,
    done: ReplicaCallback,
}

#[derive(Default)]
struct Waiters {
    by_end: BTreeMap<(u64, u64), Waiter>,
    seq: u64,
}

struct Shared {
    store: Arc<Store>,
    cfg: HaConfig,
    signal: Signal,
    conns: Mutex<Vec<Arc<SlaveConn>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// The highest offset any slave reported.
    acked: AtomicU64,
    waiters: Mutex<Waiters>,
    /// Controller mode: handshake, in-sync set.
    ctl: Option<Arc<Controlled>>,
}

/// A master's HA service.
pub struct Master {
    shared: Arc<Shared>,
    addr: SocketAddr,
    accept: Option<JoinHandle<()>>,
    sweeper: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Master {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Master").field("addr", &self.addr).finish()
    }
}

/// The replica gate a SYNC_MASTER installs in its store.
struct Gate(Arc<Shared>);

/// What a stopped master leaves installed in its store: a put that still
/// wanted a slave's confirmation is answered FLUSH_SLAVE_TIMEOUT, never
/// PUT_OK on the local flush alone. (Removing the gate instead let a put
/// written during a role switch be acknowledged unreplicated: a deposed
/// SYNC_MASTER acknowledged messages its successor never had.) The next
/// role's service replaces it.
struct Stopped;

impl ReplicaGate for Stopped {
    fn when_replicated(&self, _end: u64, done: ReplicaCallback) {
        done(PutStatus::FlushSlaveTimeout, Some(STOPPED.into()))
    }
}

const STOPPED: &str =
    "the HA service stopped (a role switch or shutdown) before a slave confirmed the message; it stays written";

impl ReplicaGate for Gate {
    fn when_replicated(&self, end: u64, done: ReplicaCallback) {
        let timeout = Duration::from_millis(self.0.cfg.slave_timeout_ms);
        self.0.when_replicated(end, timeout, done);
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, String> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(|e| format!("{name} thread: {e}"))
}

impl Master {
    /// Serves slaves on `listener`.
    pub(super) fn start(
        store: Arc<Store>,
        cfg: HaConfig,
        listener: TcpListener,
        ctl: Option<Arc<Controlled>>,
    ) -> Result<Master, String> {
        let addr = listener
            .local_addr()
            .map_err(|e| format!("HA listener: {e}"))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("HA listener: {e}"))?;
        let shared = Arc::new(Shared {
            store,
            cfg,
            signal: Signal::default(),
            conns: Mutex::new(Vec::new()),
            threads: Mutex::new(Vec::new()),
            acked: AtomicU64::new(0),
            waiters: Mutex::new(Waiters::default()),
            ctl,
        });
        let s = shared.clone();
        let accept = spawn("mqlab-ha-accept", move || s.accept_loop(listener))?;
        let s = shared.clone();
        let sweeper = spawn("mqlab-ha-sweeper", move || {
            while s.signal.wait(SWEEP_INTERVAL) {
                s.sweep(Instant::now());
            }
        })?;
        Ok(Master {
            shared,
            addr,
            accept: Some(accept),
            sweeper: Some(sweeper),
        })
    }

    /// Where slaves connect.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The gate a SYNC_MASTER installs in its store.
    pub(super) fn gate(&self) -> Arc<dyn ReplicaGate> {
        Arc::new(Gate(self.shared.clone()))
    }

    /// See [`super::HaService::when_replicated`].
    pub fn when_replicated(&self, end: u64, timeout: Duration, done: ReplicaCallback) {
        self.shared.when_replicated(end, timeout, done)
    }

    /// The highest offset any slave reported (0 before any report).
    pub fn slave_acked(&self) -> u64 {
        self.shared.acked.load(Ordering::Acquire)
    }

    /// The connected slaves.
    pub fn slaves(&self) -> Vec<SlaveInfo> {
        self.shared
            .live()
            .iter()
            .map(|c| SlaveInfo {
                peer: c.peer,
                acked: u64::try_from(c.ack.load(Ordering::Acquire)).ok(),
                sent: c.sent.load(Ordering::Acquire),
                broker_id: c.broker_id.load(Ordering::Acquire),
            })
            .collect()
    }

    /// Controller mode: answers the waiting puts the in-sync set now
    /// covers (after the set changed).
    pub fn resync(&self) {
        self.shared.fire_upto(self.shared.confirmed());
    }

    /// Puts waiting for a slave.
    pub fn waiting(&self) -> usize {
        self.shared.lock_waiters().by_end.len()
    }

    /// Stops every thread, closes every connection, removes the gate and
    /// answers the waiting puts FLUSH_SLAVE_TIMEOUT.
    pub(super) fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let s = &self.shared;
        s.signal.stop();
        s.store.set_replica_gate(Some(Arc::new(Stopped)));
        for c in s.conns.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            c.close();
        }
        for h in [self.accept.take(), self.sweeper.take()]
            .into_iter()
            .flatten()
        {
            let _ = h.join();
        }
        let threads = std::mem::take(&mut *s.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for h in threads {
            let _ = h.join();
        }
        s.fail_waiting();
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Shared {
    fn lock_waiters(&self) -> std::sync::MutexGuard<'_, Waiters> {
        self.waiters.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn live(&self) -> Vec<Arc<SlaveConn>> {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.retain(|c| c.is_open());
        conns.clone()
    }

    fn accept_loop(self: Arc<Self>, listener: TcpListener) {
        while !self.signal.stopped() {
            match listener.accept() {
                Ok((stream, peer)) => {
                    if let Err(e) = self.clone().serve(stream, peer) {
                        eprintln!("mqlab ha: slave {peer}: {e}");
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.signal.wait(Duration::from_millis(20));
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    eprintln!("mqlab ha: accept: {e}");
                    self.signal.wait(Duration::from_millis(100));
                }
            }
        }
    }

    fn serve(self: Arc<Self>, stream: TcpStream, peer: SocketAddr) -> Result<(), String> {
        if self.live().len() >= MAX_SLAVE_CONNECTIONS {
            return Err(format!(
                "refused: {MAX_SLAVE_CONNECTIONS} slaves are connected already"
            ));
        }
        let setup = |s: &TcpStream| -> std::io::Result<()> {
            s.set_nonblocking(false)?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(Duration::from_millis(200)))?;
            s.set_write_timeout(Some(Duration::from_millis(
                self.cfg.housekeeping_interval_ms,
            )))
        };
        setup(&stream).map_err(|e| e.to_string())?;
        let conn = Arc::new(SlaveConn {
            peer,
            stream: stream.try_clone().map_err(|e| e.to_string())?,
            ack: AtomicI64::new(-1),
            sent: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            broker_id: AtomicU64::new(0),
            catch_up_target: AtomicU64::new(self.store.offsets().committed),
        });
        self.conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(conn.clone());
        let (s, c, r) = (self.clone(), conn.clone(), stream);
        let reader = spawn("mqlab-ha-read", move || {
            let mut r = r;
            let why = match s.handshake(&c, &mut r) {
                Ok(()) => s.read_loop(&c, r),
                Err(why) => why,
            };
            c.close();
            if !s.signal.stopped() {
                eprintln!("mqlab ha: slave {}: connection dropped: {why}", c.peer);
            }
        })?;
        let (s, c) = (self.clone(), conn.clone());
        let writer = spawn("mqlab-ha-write", move || {
            if let Err(why) = s.write_loop(&c) {
                if !s.signal.stopped() && c.is_open() {
                    eprintln!("mqlab ha: slave {}: connection dropped: {why}", c.peer);
                }
            }
            c.close();
        })?;
        let mut threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
        threads.retain(|h| !h.is_finished());
        threads.push(reader);
        threads.push(writer);
        Ok(())
    }

    /// Controller mode: reads the slave's hello, answers with this
    /// master's epoch entries and log end. Nothing to do otherwise.
    fn handshake(&self, conn: &SlaveConn, r: &mut TcpStream) -> Result<(), String> {
        let Some(ctl) = &self.ctl else {
            return Ok(());
        };
        let mut hello = [0u8; controlled::HELLO_BYTES];
        controlled::read_exact_by(
            r,
            &mut hello,
            Instant::now() + controlled::HANDSHAKE_TIMEOUT,
        )?;
        let id = controlled::decode_hello(&hello)?;
        conn.broker_id.store(id, Ordering::Release);
        let answer = {
            let epochs = ctl.epochs();
            controlled::encode_epochs(epochs.entries(), self.store.offsets().committed)
        };
        (&conn.stream)
            .write_all(&answer)
            .map_err(|e| format!("handshake: {e}"))
    }

    /// What the slaves confirmed: classic, the best report; controller
    /// mode, the lowest report among the in-sync set's other members
    /// (everything when it has none; 0 when one is not connected).
    fn confirmed(&self) -> u64 {
        let Some(ctl) = &self.ctl else {
            return self.acked.load(Ordering::Acquire);
        };
        let Ok(needed) = ctl.sync.needed() else {
            return 0;
        };
        let live = self.live();
        needed
            .iter()
            .map(|id| {
                live.iter()
                    .filter(|c| c.broker_id.load(Ordering::Acquire) == *id)
                    .filter_map(|c| u64::try_from(c.ack.load(Ordering::Acquire)).ok())
                    .max()
                    .unwrap_or(0)
            })
            .min()
            .unwrap_or(u64::MAX)
    }

    /// Reads reports until the connection ends; returns why it did.
    fn read_loop(&self, conn: &SlaveConn, mut stream: TcpStream) -> String {
        let mut reports = ReportReader::default();
        let mut buf = [0u8; 256];
        let mut last_read = Instant::now();
        let housekeeping = Duration::from_millis(self.cfg.housekeeping_interval_ms);
        loop {
            if self.signal.stopped() {
                return "stopping".into();
            }
            if !conn.is_open() {
                return "closed by the writer".into();
            }
            match stream.read(&mut buf) {
                Ok(0) => return "closed by the slave".into(),
                Ok(n) => {
                    last_read = Instant::now();
                    match reports.feed(&buf[..n]) {
                        Ok(Some(offset)) => {
                            if let Err(why) = self.on_report(conn, offset) {
                                return why;
                            }
                        }
                        Ok(None) => {}
                        Err(e) => return format!("bad report: {e}"),
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if last_read.elapsed() >= housekeeping {
                        return format!(
                            "no report for {} ms (haHousekeepingInterval)",
                            housekeeping.as_millis()
                        );
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return format!("read: {e}"),
            }
        }
    }

    /// A slave reported `offset`: checks it, records it, fires the puts it
    /// covers. `Err`: an offset mismatch, the connection goes.
    fn on_report(&self, conn: &SlaveConn, offset: u64) -> Result<(), String> {
        let prev = conn.ack.load(Ordering::Acquire);
        if prev < 0 {
            let end = self.store.offsets().committed;
            if offset > end {
                return Err(format!(
                    "offset mismatch: the slave reports {offset}, past the master's end {end}"
                ));
            }
            conn.sent.store(offset, Ordering::Release);
        } else {
            let sent = conn.sent.load(Ordering::Acquire);
            if offset < prev as u64 || offset > sent {
                return Err(format!(
                    "offset mismatch: the slave reports {offset} after {prev}, with {sent} sent"
                ));
            }
        }
        conn.ack.store(offset as i64, Ordering::Release);
        let acked = self.acked.fetch_max(offset, Ordering::AcqRel).max(offset);
        if let Some(ctl) = &self.ctl {
            let id = conn.broker_id.load(Ordering::Acquire);
            let committed = self.store.offsets().committed;
            if offset >= conn.catch_up_target.swap(committed, Ordering::AcqRel) && id != 0 {
                ctl.sync.caught_up(id, Instant::now());
            }
        }
        self.fire_upto(if self.ctl.is_some() {
            self.confirmed()
        } else {
            acked
        });
        if prev < 0 {
            // The writer waits for the first report.
            self.signal.notify();
        }
        Ok(())
    }

    /// Streams the log to one slave until the connection ends.
    fn write_loop(&self, conn: &SlaveConn) -> Result<(), String> {
        let first = loop {
            if !conn.is_open() {
                return Ok(());
            }
            if let Ok(a) = u64::try_from(conn.ack.load(Ordering::Acquire)) {
                break a;
            }
            if !self.signal.wait(Duration::from_millis(10)) {
                return Ok(());
            }
        };
        let seg = self.store.segment_bytes();
        let mut next = if first == 0 {
            // RocketMQ: a slave with nothing starts at the master's last
            // segment.
            let end = self.store.offsets().committed;
            end - end % seg
        } else {
            first
        };
        // The first report set `sent` to `first`; only the writer moves
        // it from here on.
        conn.sent.store(next, Ordering::Release);
        let heartbeat = Duration::from_millis(self.cfg.heartbeat_interval_ms);
        let mut last_write: Option<Instant> = None;
        let batch = self.cfg.transfer_batch_bytes;
        let mut frame = vec![0u8; wire::HEADER_BYTES + batch];
        let mut stream = &conn.stream;
        loop {
            if !conn.is_open() || self.signal.stopped() {
                return Ok(());
            }
            let committed = self.store.offsets().committed;
            if next < committed {
                let want = batch.min((committed - next) as usize);
                let body = &mut frame[wire::HEADER_BYTES..wire::HEADER_BYTES + want];
                let n = match self.store.read_log(next, body) {
                    Ok(n) => n,
                    Err(StoreError::NotFound(_)) => {
                        return Err(format!(
                            "the slave needs offset {next}, but the master's log starts at {}",
                            self.store.min_offset()
                        ))
                    }
                    Err(e) => return Err(format!("read the log at {next}: {e}")),
                };
                if n > 0 {
                    frame[..wire::HEADER_BYTES]
                        .copy_from_slice(&wire::encode_header(next, n as u32));
                    conn.sent.store(next + n as u64, Ordering::Release);
                    stream
                        .write_all(&frame[..wire::HEADER_BYTES + n])
                        .map_err(|e| format!("write: {e}"))?;
                    next += n as u64;
                    last_write = Some(Instant::now());
                    continue;
                }
            }
            if last_write.is_none_or(|t| t.elapsed() >= heartbeat) {
                stream
                    .write_all(&wire::encode_header(next, 0))
                    .map_err(|e| format!("write: {e}"))?;
                last_write = Some(Instant::now());
            }
            // New data shows up in `committed`; a waiting put also wakes
            // the writers at once.
            self.signal.wait(Duration::from_millis(1));
        }
    }

    /// Answers every waiting put FLUSH_SLAVE_TIMEOUT (the service stopped).
    fn fail_waiting(&self) {
        let all = std::mem::take(&mut self.lock_waiters().by_end);
        for (_, w) in all {
            (w.done)(PutStatus::FlushSlaveTimeout, Some(STOPPED.into()));
        }
    }

    fn when_replicated(&self, end: u64, timeout: Duration, done: ReplicaCallback) {
        // A put that took this gate before the service stopped (an
        // asynchronous put keeps the gate of its write).
        if self.signal.stopped() {
            return done(PutStatus::FlushSlaveTimeout, Some(STOPPED.into()));
        }
        if self.ctl.is_some() {
            if let Err(why) = self.members_ok() {
                return done(PutStatus::SlaveNotAvailable, Some(why));
            }
            if self.confirmed() >= end {
                return done(PutStatus::PutOk, None);
            }
        } else {
            if self.acked.load(Ordering::Acquire) >= end {
                return done(PutStatus::PutOk, None);
            }
            if let Err(why) = self.slave_ok(end) {
                return done(PutStatus::SlaveNotAvailable, Some(why));
            }
        }
        {
            let mut w = self.lock_waiters();
            w.seq += 1;
            let key = (end, w.seq);
            w.by_end.insert(
                key,
                Waiter {
                    deadline: Instant::now() + timeout,
                    timeout,
                    done,
                },
            );
        }
        self.signal.notify();
        // Stopped between the check above and the insert: nobody else
        // will answer it.
        if self.signal.stopped() {
            self.fail_waiting();
            return;
        }
        // A report may have come between the check and the insert.
        self.fire_upto(if self.ctl.is_some() {
            self.confirmed()
        } else {
            self.acked.load(Ordering::Acquire)
        });
    }

    /// Controller mode: the in-sync set is large enough and each of its
    /// other members is connected and has reported.
    fn members_ok(&self) -> Result<(), String> {
        let Some(ctl) = &self.ctl else {
            return Ok(());
        };
        let needed = ctl.sync.needed()?;
        let live = self.live();
        for id in needed {
            let ok = live.iter().any(|c| {
                c.broker_id.load(Ordering::Acquire) == id && c.ack.load(Ordering::Acquire) >= 0
            });
            if !ok {
                return Err(format!("in-sync replica {id} is not connected"));
            }
        }
        Ok(())
    }

    /// RocketMQ's `isSlaveOK`: a connected slave that has reported and is
    /// less than `slave_fallbehind_max` behind `end`.
    fn slave_ok(&self, end: u64) -> Result<(), String> {
        let best = self
            .live()
            .iter()
            .filter_map(|c| u64::try_from(c.ack.load(Ordering::Acquire)).ok())
            .max();
        match best {
            None => Err("no slave is connected".into()),
            Some(a) if end.saturating_sub(a) >= self.cfg.slave_fallbehind_max => Err(format!(
                "the best slave is at {a}, {} bytes behind (haSlaveFallbehindMax {})",
                end - a,
                self.cfg.slave_fallbehind_max
            )),
            Some(_) => Ok(()),
        }
    }

    /// Answers PUT_OK every waiting put ending at or before `acked`.
    fn fire_upto(&self, acked: u64) {
        let ready = {
            let mut w = self.lock_waiters();
            if w.by_end.first_key_value().is_none_or(|(k, _)| k.0 > acked) {
                return;
            }
            let rest = w.by_end.split_off(&(acked.saturating_add(1), 0));
            std::mem::replace(&mut w.by_end, rest)
        };
        for (_, w) in ready {
            (w.done)(PutStatus::PutOk, None);
        }
    }

    /// Answers FLUSH_SLAVE_TIMEOUT every waiting put whose deadline passed.
    fn sweep(&self, now: Instant) {
        let expired: Vec<((u64, u64), Waiter)> = {
            let mut w = self.lock_waiters();
            let keys: Vec<(u64, u64)> = w
                .by_end
                .iter()
                .filter(|(_, v)| v.deadline <= now)
                .map(|(k, _)| *k)
                .collect();
            keys.into_iter()
                .filter_map(|k| w.by_end.remove(&k).map(|v| (k, v)))
                .collect()
        };
        let acked = self.acked.load(Ordering::Acquire);
        for ((end, _), w) in expired {
            (w.done)(
                PutStatus::FlushSlaveTimeout,
                Some(format!(
                    "no slave reported offset {end} within {} ms (slaveTimeout; best report {acked}); the message stays written",
                    w.timeout.as_millis()
                )),
            );
        }
    }
}
