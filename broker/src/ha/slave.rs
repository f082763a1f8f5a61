//! The slave's side (RocketMQ's `DefaultHAClient`): one thread that
//! connects to the master's HA address (retrying with backoff: 100 ms
//! doubling to 5 s while attempts fail or connections die young), reports
//! its commit-log end, applies transfers, and reports again after each
//! applied transfer and at least every heartbeat interval.
//!
//! A transfer must start exactly where the slave's log ends plus the
//! partial record it holds (else: an offset mismatch, logged with both
//! offsets, the connection dropped), except that an empty slave takes the
//! master's first offset (RocketMQ's rule: the base of the master's last
//! segment, which the store accepts as its start). Its bytes go to `Store::append_raw`,
//! which takes whole records only; the partial record left is kept here
//! (bounded: a record never exceeds the store's message limit plus its
//! headers; more is a broken stream) until the rest arrives, and is
//! dropped with the connection (the master resends from the reported
//! offset, which never counts it). A chunk the store refuses (a record
//! that does not decode at its position) drops the connection too.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mqlab_engine::service::Signal;
use mqlab_engine::Store;

use super::controlled::{self, Controlled};
use super::epoch::consistent_point;
use super::wire::{self, Transfer, TransferReader, WireError};
use super::HaConfig;

/// Longest wait between reconnect attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A connection that lived this long resets the backoff.
const HEALTHY_AFTER: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
struct State {
    connected: AtomicBool,
    /// The last offset reported to the master.
    reported: AtomicU64,
    /// The master's next offset, from its newest transfer header.
    master_offset: AtomicU64,
    /// Connections made so far.
    connections: AtomicU64,
    /// Transfers received so far (heartbeats included).
    transfers: AtomicU64,
}

/// A slave's HA client.
pub struct Slave {
    state: Arc<State>,
    signal: Arc<Signal>,
    thread: Option<JoinHandle<()>>,
    master: SocketAddr,
}

impl std::fmt::Debug for Slave {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slave")
            .field("master", &self.master)
            .finish()
    }
}

impl Slave {
    /// Starts the client thread (`cfg.master` is set: validated).
    pub(super) fn start(
        store: Arc<Store>,
        cfg: HaConfig,
        ctl: Option<Arc<Controlled>>,
    ) -> Result<Slave, String> {
        let master = cfg.master.ok_or("a slave needs haMasterAddress")?;
        let state = Arc::new(State::default());
        let signal = Arc::new(Signal::default());
        let (st, sig) = (state.clone(), signal.clone());
        let thread = std::thread::Builder::new()
            .name("mqlab-ha-client".into())
            .spawn(move || run(&store, &cfg, master, &st, &sig, ctl.as_deref()))
            .map_err(|e| format!("HA client thread: {e}"))?;
        Ok(Slave {
            state,
            signal,
            thread: Some(thread),
            master,
        })
    }

    /// The master's HA address.
    pub fn master(&self) -> SocketAddr {
        self.master
    }

    /// True while connected to the master.
    pub fn connected(&self) -> bool {
        self.state.connected.load(Ordering::Acquire)
    }

    /// The offset last reported to the master.
    pub fn reported(&self) -> u64 {
        self.state.reported.load(Ordering::Acquire)
    }

    /// The master's next offset as its newest transfer named it.
    pub fn master_offset(&self) -> u64 {
        self.state.master_offset.load(Ordering::Acquire)
    }

    /// Connections made so far.
    pub fn connections(&self) -> u64 {
        self.state.connections.load(Ordering::Acquire)
    }

    /// Transfers received so far, heartbeats included (the first one
    /// means the master chose where this slave starts).
    pub fn transfers(&self) -> u64 {
        self.state.transfers.load(Ordering::Acquire)
    }

    pub(super) fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.signal.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Slave {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(
    store: &Store,
    cfg: &HaConfig,
    master: SocketAddr,
    state: &State,
    signal: &Signal,
    ctl: Option<&Controlled>,
) {
    let first = Duration::from_millis(cfg.reconnect_backoff_ms.max(1));
    let mut backoff = first;
    let mut failures = 0u64;
    while !signal.stopped() {
        let started = Instant::now();
        match TcpStream::connect_timeout(&master, Duration::from_secs(1)) {
            Ok(stream) => {
                state.connections.fetch_add(1, Ordering::AcqRel);
                state.connected.store(true, Ordering::Release);
                let why = Connection::new(store, cfg, state, signal, ctl).run(stream);
                state.connected.store(false, Ordering::Release);
                if !signal.stopped() {
                    eprintln!("mqlab ha: master {master}: connection dropped: {why}");
                }
                failures = 0;
            }
            Err(e) => {
                // Say it once, then every 10th attempt.
                if failures.is_multiple_of(10) {
                    eprintln!("mqlab ha: connect to master {master}: {e}; retrying");
                }
                failures += 1;
            }
        }
        if started.elapsed() >= HEALTHY_AFTER {
            backoff = first;
        }
        if !signal.wait(backoff) {
            return;
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Why a connection ended.
type Why = String;

impl From<WireError> for Dropped {
    fn from(e: WireError) -> Dropped {
        Dropped(format!("bad transfer header: {e}"))
    }
}

/// A `String` reason that [`TransferReader::feed`] can build from a
/// [`WireError`].
struct Dropped(String);

struct Connection<'a> {
    store: &'a Store,
    cfg: &'a HaConfig,
    state: &'a State,
    signal: &'a Signal,
    ctl: Option<&'a Controlled>,
    /// The start of a record the store could not take yet.
    tail: Vec<u8>,
    max_tail: usize,
}

impl<'a> Connection<'a> {
    fn new(
        store: &'a Store,
        cfg: &'a HaConfig,
        state: &'a State,
        signal: &'a Signal,
        ctl: Option<&'a Controlled>,
    ) -> Self {
        Connection {
            store,
            cfg,
            state,
            signal,
            ctl,
            tail: Vec::new(),
            // A record is at most the message limit plus headers and
            // properties (64 KiB); a blank's padding is shorter than one
            // record. Twice that leaves room for one more transfer.
            max_tail: 2 * (store.max_message_bytes() as usize + (64 << 10))
                + cfg.transfer_batch_bytes,
        }
    }

    fn report(&self, mut stream: &TcpStream) -> Result<(), Why> {
        let end = self.store.offsets().written;
        stream
            .write_all(&wire::encode_report(end))
            .map_err(|e| format!("report: {e}"))?;
        self.state.reported.store(end, Ordering::Release);
        Ok(())
    }

    fn run(mut self, stream: TcpStream) -> Why {
        let setup = stream
            .set_nodelay(true)
            .and_then(|_| stream.set_read_timeout(Some(Duration::from_millis(100))))
            .and_then(|_| {
                stream.set_write_timeout(Some(Duration::from_millis(
                    self.cfg.housekeeping_interval_ms,
                )))
            });
        if let Err(e) = setup {
            return format!("socket setup: {e}");
        }
        if let Err(why) = self.handshake(&stream) {
            return why;
        }
        if let Err(why) = self.report(&stream) {
            return why;
        }
        let heartbeat = Duration::from_millis(self.cfg.heartbeat_interval_ms);
        let housekeeping = Duration::from_millis(self.cfg.housekeeping_interval_ms);
        let mut last_report = Instant::now();
        let mut last_read = Instant::now();
        let mut reader = TransferReader::default();
        let mut buf = vec![0u8; 64 * 1024];
        let mut reader_stream = &stream;
        loop {
            if self.signal.stopped() {
                return "stopping".into();
            }
            match reader_stream.read(&mut buf) {
                Ok(0) => return "closed by the master".into(),
                Ok(n) => {
                    last_read = Instant::now();
                    let r = reader.feed::<Dropped>(&buf[..n], &mut |t| {
                        let applied = self.apply(t).map_err(Dropped)?;
                        if applied {
                            self.report(&stream).map_err(Dropped)?;
                            last_report = Instant::now();
                        }
                        Ok(())
                    });
                    if let Err(Dropped(why)) = r {
                        return why;
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if last_read.elapsed() >= housekeeping {
                        return format!(
                            "nothing from the master for {} ms (haHousekeepingInterval)",
                            housekeeping.as_millis()
                        );
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return format!("read: {e}"),
            }
            if last_report.elapsed() >= heartbeat {
                if let Err(why) = self.report(&stream) {
                    return why;
                }
                last_report = Instant::now();
            }
        }
    }

    /// Controller mode: hello, the master's epochs, truncation back to the
    /// last offset consistent with them, the entries adopted.
    fn handshake(&self, stream: &TcpStream) -> Result<(), Why> {
        let Some(ctl) = self.ctl else {
            return Ok(());
        };
        let mut s = stream;
        s.write_all(&controlled::encode_hello(ctl.broker_id))
            .map_err(|e| format!("handshake: {e}"))?;
        let mut r = stream.try_clone().map_err(|e| format!("handshake: {e}"))?;
        let (master, master_end) =
            controlled::read_epochs(&mut r, Instant::now() + controlled::HANDSHAKE_TIMEOUT)?;
        let end = self.store.offsets().written;
        let point = {
            let epochs = ctl.epochs();
            consistent_point(epochs.entries(), end, &master, master_end)
        };
        if point < end {
            let cut = self.store.truncate_to(point).map_err(|e| {
                format!("truncate to {point}, consistent with the master's epochs: {e}")
            })?;
            for t in &cut {
                eprintln!(
                    "mqlab ha: truncated {} at offset {} ({} bytes): {}",
                    t.file.display(),
                    t.offset,
                    t.bytes,
                    t.reason
                );
            }
            ctl.count_truncation(end - point);
            eprintln!(
                "mqlab ha: broker {}: commit log cut from {end} back to {point} ({} bytes the master never had)",
                ctl.broker_id,
                end - point
            );
        }
        ctl.epochs().replace(master)?;
        Ok(())
    }

    /// Applies one transfer; true when the log grew.
    fn apply(&mut self, t: Transfer) -> Result<bool, Why> {
        let mut end = self.store.offsets().written;
        let expected = end + self.tail.len() as u64;
        // RocketMQ's rule: an empty slave takes whatever offset the master
        // starts it at (the base of the master's last segment; the store
        // refuses anything else).
        let empty = expected == 0;
        if empty && t.phys_offset > 0 && !t.body.is_empty() {
            end = t.phys_offset;
        } else if t.phys_offset != expected && !empty {
            return Err(format!(
                "offset mismatch: the master sends offset {}, the slave's log ends at {end}{}",
                t.phys_offset,
                if self.tail.is_empty() {
                    String::new()
                } else {
                    format!(" (+{} bytes of a partial record)", self.tail.len())
                }
            ));
        }
        self.state
            .master_offset
            .store(t.phys_offset + t.body.len() as u64, Ordering::Release);
        self.state.transfers.fetch_add(1, Ordering::AcqRel);
        if t.body.is_empty() {
            return Ok(false);
        }
        if self.tail.is_empty() {
            self.tail = t.body;
        } else {
            self.tail.extend_from_slice(&t.body);
        }
        let r = self
            .store
            .append_raw(end, &self.tail)
            .map_err(|e| format!("the slave's store refuses the transfer at {end}: {e}"))?;
        self.tail.drain(..r.taken);
        if self.tail.len() > self.max_tail {
            return Err(format!(
                "{} bytes at {} do not complete a record (at most {} expected)",
                self.tail.len(),
                r.end,
                self.max_tail
            ));
        }
        Ok(r.taken > 0)
    }
}
