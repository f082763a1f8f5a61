//! What replication adds in controller mode (RocketMQ's
//! `AutoSwitchHAService`, in mqlab's own small form):
//!
//! - a handshake before the classic stream (bytes in
//!   `protocol/PROTOCOL.md`, "Controller mode HA handshake"): the slave
//!   names its broker id ([`encode_hello`]), the master answers with its
//!   epoch entries and log end ([`encode_epochs`]); the slave truncates
//!   its log back to the last offset consistent with them
//!   ([`super::epoch::consistent_point`], `Store::truncate_to`), adopts
//!   the entries, and only then sends its first report;
//! - the in-sync set as the master sees it ([`SyncState`]): which brokers
//!   caught up when, the set the controller confirmed (and, while a change
//!   is being asked for, the union of the old and the new set), so that a
//!   SYNC_MASTER's put waits for every member of the set but itself
//!   (with at least `minInSyncReplicas` members).

use std::collections::{BTreeSet, HashMap};
use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::epoch::{EpochEntry, EpochFile, MAX_ENTRIES};

/// `MQHA`: a controller-mode slave's hello.
pub const HELLO_MAGIC: u32 = 0x4D51_4841;
/// `MQEP`: a controller-mode master's epoch entries.
pub const EPOCHS_MAGIC: u32 = 0x4D51_4550;
/// The handshake's version.
pub const VERSION: u32 = 1;
/// Bytes of a hello.
pub const HELLO_BYTES: usize = 16;
/// Bytes of the epochs header (then 12 per entry).
pub const EPOCHS_HEADER_BYTES: usize = 16;

/// A slave's hello: magic, version, broker id.
pub fn encode_hello(broker_id: u64) -> [u8; HELLO_BYTES] {
    let mut b = [0u8; HELLO_BYTES];
    b[..4].copy_from_slice(&HELLO_MAGIC.to_be_bytes());
    b[4..8].copy_from_slice(&VERSION.to_be_bytes());
    b[8..].copy_from_slice(&broker_id.to_be_bytes());
    b
}

/// The broker id in a hello.
pub fn decode_hello(b: &[u8; HELLO_BYTES]) -> Result<u64, String> {
    let magic = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let version = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
    if magic != HELLO_MAGIC {
        return Err(format!(
            "hello magic {magic:#010x}, expected {HELLO_MAGIC:#010x} (a classic slave on a controller-mode master?)"
        ));
    }
    if version != VERSION {
        return Err(format!("handshake version {version}, expected {VERSION}"));
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&b[8..]);
    Ok(u64::from_be_bytes(id))
}

/// A master's answer: magic, entry count, its log end, the entries.
pub fn encode_epochs(entries: &[EpochEntry], end: u64) -> Vec<u8> {
    let mut b = Vec::with_capacity(EPOCHS_HEADER_BYTES + 12 * entries.len());
    b.extend_from_slice(&EPOCHS_MAGIC.to_be_bytes());
    b.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    b.extend_from_slice(&end.to_be_bytes());
    for e in entries {
        b.extend_from_slice(&e.epoch.to_be_bytes());
        b.extend_from_slice(&e.start.to_be_bytes());
    }
    b
}

/// Reads exactly `buf.len()` bytes before `deadline` (the stream has a
/// short read timeout set).
pub fn read_exact_by(s: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> Result<(), String> {
    let mut got = 0;
    while got < buf.len() {
        if Instant::now() >= deadline {
            return Err(format!("handshake: {got} of {} bytes in time", buf.len()));
        }
        match s.read(&mut buf[got..]) {
            Ok(0) => return Err("handshake: connection closed".into()),
            Ok(n) => got += n,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(format!("handshake: {e}")),
        }
    }
    Ok(())
}

/// Reads a master's answer: (entries, master end). Bounded: at most
/// [`MAX_ENTRIES`] entries, in order.
pub fn read_epochs(s: &mut TcpStream, deadline: Instant) -> Result<(Vec<EpochEntry>, u64), String> {
    let mut h = [0u8; EPOCHS_HEADER_BYTES];
    read_exact_by(s, &mut h, deadline)?;
    let magic = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
    if magic != EPOCHS_MAGIC {
        return Err(format!(
            "epochs magic {magic:#010x}, expected {EPOCHS_MAGIC:#010x} (a classic master?)"
        ));
    }
    let count = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
    if count > MAX_ENTRIES {
        return Err(format!("{count} epoch entries (at most {MAX_ENTRIES})"));
    }
    let mut end = [0u8; 8];
    end.copy_from_slice(&h[8..]);
    let end = u64::from_be_bytes(end);
    let mut body = vec![0u8; 12 * count];
    read_exact_by(s, &mut body, deadline)?;
    let entries: Vec<EpochEntry> = body
        .chunks_exact(12)
        .map(|c| EpochEntry {
            epoch: u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
            start: u64::from_be_bytes([c[4], c[5], c[6], c[7], c[8], c[9], c[10], c[11]]),
        })
        .collect();
    super::epoch::validate(&entries)?;
    Ok((entries, end))
}

/// The in-sync set as a controller-mode master keeps it.
#[derive(Debug)]
pub struct SyncState {
    me: u64,
    min_in_sync: usize,
    inner: Mutex<SyncInner>,
}

#[derive(Debug, Default)]
struct SyncInner {
    set: BTreeSet<u64>,
    epoch: u32,
    /// While a change is asked for: the old set and the new one.
    pending: Option<BTreeSet<u64>>,
    caught_up: HashMap<u64, Instant>,
}

impl SyncState {
    /// `me` alone, until the controller's set is known.
    pub fn new(me: u64, min_in_sync: usize) -> SyncState {
        SyncState {
            me,
            min_in_sync: min_in_sync.max(1),
            inner: Mutex::new(SyncInner {
                set: BTreeSet::from([me]),
                ..SyncInner::default()
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SyncInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// This broker's id.
    pub fn me(&self) -> u64 {
        self.me
    }

    /// The controller's set and its epoch.
    pub fn confirmed(&self) -> (BTreeSet<u64>, u32) {
        let g = self.lock();
        (g.set.clone(), g.epoch)
    }

    /// Takes the controller's set (members get a fresh catch-up time: a
    /// new master gives its set one `haMaxTimeSlaveNotCatchup` to connect).
    pub fn confirm(&self, set: BTreeSet<u64>, epoch: u32) {
        let mut g = self.lock();
        let now = Instant::now();
        for id in &set {
            if !g.set.contains(id) {
                g.caught_up.entry(*id).or_insert(now);
            }
        }
        g.set = set;
        g.epoch = epoch;
        g.pending = None;
    }

    /// A change is being asked for: until [`SyncState::confirm`] (or
    /// [`SyncState::abandon`]) puts wait for the members of both sets.
    pub fn propose(&self, new: BTreeSet<u64>) {
        self.lock().pending = Some(new);
    }

    /// The change was refused.
    pub fn abandon(&self) {
        self.lock().pending = None;
    }

    /// Whose acknowledgement a put needs (every member but this broker);
    /// Err when the set is smaller than `minInSyncReplicas`.
    pub fn needed(&self) -> Result<Vec<u64>, String> {
        let g = self.lock();
        if g.set.len() < self.min_in_sync {
            return Err(format!(
                "the in-sync set {:?} has fewer than minInSyncReplicas {} members",
                g.set, self.min_in_sync
            ));
        }
        let mut all: BTreeSet<u64> = g.set.clone();
        if let Some(p) = &g.pending {
            all.extend(p.iter().copied());
        }
        all.remove(&self.me);
        Ok(all.into_iter().collect())
    }

    /// Broker `id` has everything the master had at its previous report.
    pub fn caught_up(&self, id: u64, at: Instant) {
        self.lock().caught_up.insert(id, at);
    }

    /// When broker `id` last caught up.
    pub fn last_caught_up(&self, id: u64) -> Option<Instant> {
        self.lock().caught_up.get(&id).copied()
    }
}

/// A controller-mode node's replication context, shared by its HA service
/// (whichever side runs) and the role switcher.
#[derive(Debug)]
pub struct Controlled {
    /// This broker's id.
    pub broker_id: u64,
    /// Its epoch file.
    pub epochs: Mutex<EpochFile>,
    /// The in-sync set (meaningful while master).
    pub sync: SyncState,
    truncations: AtomicU64,
    truncated_bytes: AtomicU64,
}

impl Controlled {
    /// A context for broker `broker_id` with `epochs`.
    pub fn new(broker_id: u64, epochs: EpochFile, min_in_sync: usize) -> Controlled {
        Controlled {
            broker_id,
            epochs: Mutex::new(epochs),
            sync: SyncState::new(broker_id, min_in_sync),
            truncations: AtomicU64::new(0),
            truncated_bytes: AtomicU64::new(0),
        }
    }

    /// The epoch file, locked.
    pub fn epochs(&self) -> std::sync::MutexGuard<'_, EpochFile> {
        self.epochs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Truncations done when meeting a master (each one a cut of the
    /// commit log).
    pub fn truncations(&self) -> u64 {
        self.truncations.load(Ordering::Acquire)
    }

    /// Commit-log bytes cut by them.
    pub fn truncated_bytes(&self) -> u64 {
        self.truncated_bytes.load(Ordering::Acquire)
    }

    pub(super) fn count_truncation(&self, bytes: u64) {
        self.truncations.fetch_add(1, Ordering::AcqRel);
        self.truncated_bytes.fetch_add(bytes, Ordering::AcqRel);
    }
}

/// How long a handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_and_epochs_round_trip() {
        assert_eq!(decode_hello(&encode_hello(7)).unwrap(), 7);
        let mut bad = encode_hello(7);
        bad[0] = 0;
        assert!(decode_hello(&bad).unwrap_err().contains("magic"));
        let entries = vec![
            EpochEntry { epoch: 1, start: 0 },
            EpochEntry {
                epoch: 4,
                start: 1 << 33,
            },
        ];
        let bytes = encode_epochs(&entries, 99);
        assert_eq!(bytes.len(), EPOCHS_HEADER_BYTES + 24);
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut s, _) = l.accept().unwrap();
        std::io::Write::write_all(&mut s, &bytes).unwrap();
        c.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let got = read_epochs(&mut c, Instant::now() + Duration::from_secs(2)).unwrap();
        assert_eq!(got, (entries, 99));
        // Out of order, or too many: refused.
        let bad = encode_epochs(
            &[
                EpochEntry { epoch: 2, start: 0 },
                EpochEntry { epoch: 1, start: 5 },
            ],
            9,
        );
        std::io::Write::write_all(&mut s, &bad).unwrap();
        assert!(read_epochs(&mut c, Instant::now() + Duration::from_secs(2)).is_err());
    }

    #[test]
    fn puts_wait_for_every_member_but_me() {
        let s = SyncState::new(1, 1);
        assert_eq!(s.needed().unwrap(), Vec::<u64>::new());
        s.confirm([1, 2].into(), 2);
        assert_eq!(s.needed().unwrap(), vec![2]);
        s.propose([1, 2, 3].into());
        assert_eq!(s.needed().unwrap(), vec![2, 3]);
        s.abandon();
        s.propose([1].into());
        assert_eq!(
            s.needed().unwrap(),
            vec![2],
            "a shrink waits for its confirmation"
        );
        s.confirm([1].into(), 3);
        assert_eq!(s.needed().unwrap(), Vec::<u64>::new());
        let two = SyncState::new(1, 2);
        assert!(two.needed().unwrap_err().contains("minInSyncReplicas"));
    }
}
