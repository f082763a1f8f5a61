//! The controllers' consensus: tikv's `raft` crate (raft-rs), driven by
//! one thread per controller as its docs prescribe (tick, step, propose,
//! then handle each `Ready`: send messages, persist entries and hard
//! state, apply committed entries, advance). Entries are JSON
//! [`Command`]s applied to the [`ReplicaState`] in log order.
//!
//! Peers are static (ids 1..=n, the `--peers` list in order; no membership
//! changes). Messages between controllers go as one-way remoting frames
//! (request code [`codes::CONTROLLER_RAFT_MESSAGE`], body the message's
//! protobuf encoding) on the controllers' own remoting port, one lazily
//! (re)connected socket per peer fed by a bounded queue; a message that
//! cannot go is dropped (Raft resends what matters).
//!
//! Storage is raft-rs's `MemStorage`, backed by a file when the
//! controller has a data directory ([`super::wal`]: every entry and hard
//! state synced before the messages that depend on them go out, replayed
//! at start, the state machine rebuilt from the committed entries).
//! Without one the log lives in memory only: a restarted controller comes
//! back empty and learns everything from the others' log (3 controllers
//! survive the loss of one); a lone controller that restarts forgets every
//! group. The log is never compacted: commands are rare (registrations,
//! elections, set changes; heartbeats are not replicated).

use std::collections::HashMap;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender, TrySendError};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mqlab_protocol::{encode_frame, RemotingCommand, FLAG_ONEWAY};
use protobuf::Message as _;
use raft::prelude::{ConfState, Entry, EntryType, Message};
use raft::storage::MemStorage;
use raft::{Config, RawNode, StateRole};

use super::codes;
use super::state::{Command, Outcome, ReplicaState};
use super::wal::Wal;

/// What the driver thread takes.
pub(super) enum Input {
    /// A message from a peer.
    Raft(Box<Message>),
    /// A command to replicate; `done` gets the outcome once applied here.
    Propose {
        cmd: Command,
        done: Sender<Result<Outcome, String>>,
    },
}

/// What the driver shares with the handler.
#[derive(Debug, Default)]
pub(super) struct Shared {
    pub state: RwLock<ReplicaState>,
    pub leader_id: AtomicU64,
    pub is_leader: AtomicBool,
    pub term: AtomicU64,
    /// Entries applied so far.
    pub applied: AtomicU64,
}

/// A running Raft member.
pub(super) struct RaftNode {
    pub shared: Arc<Shared>,
    tx: Sender<Input>,
    stop: Arc<AtomicBool>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
    transport: Arc<Transport>,
}

/// Raft timing: one tick; an election after 10 ticks of silence, leader
/// heartbeats every 2.
pub(super) const TICK: Duration = Duration::from_millis(100);

impl RaftNode {
    /// Starts member `id` of `peers` (ids 1..=peers.len()), its log in
    /// `dir` if given.
    pub fn start(id: u64, peers: &[SocketAddr], dir: Option<&Path>) -> Result<RaftNode, String> {
        let voters: Vec<u64> = (1..=peers.len() as u64).collect();
        if !voters.contains(&id) {
            return Err(format!(
                "controller id {id} is not in 1..={} (the peers list)",
                peers.len()
            ));
        }
        let cfg = Config {
            id,
            election_tick: 10,
            heartbeat_tick: 2,
            check_quorum: true,
            pre_vote: true,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            ..Config::default()
        };
        cfg.validate().map_err(|e| format!("raft config: {e}"))?;
        let storage = MemStorage::new_with_conf_state(ConfState::from((voters, vec![])));
        let mut restored = false;
        let wal = match dir {
            None => None,
            Some(d) => {
                let (wal, r) = Wal::open(d)?;
                if r.cut > 0 {
                    eprintln!(
                        "mqlab controller {id}: {} bytes of a torn raft log record cut",
                        r.cut
                    );
                }
                for batch in &r.entries {
                    restored = true;
                    storage
                        .wl()
                        .append(batch)
                        .map_err(|e| format!("replay the raft log: {e}"))?;
                }
                if let Some(hs) = r.hard_state {
                    let last = raft::Storage::last_index(&storage).unwrap_or(0);
                    let mut hs = hs;
                    // Never committed past the log kept.
                    hs.commit = hs.commit.min(last);
                    storage.wl().set_hardstate(hs);
                }
                Some(wal)
            }
        };
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let mut node = RawNode::new(&cfg, storage, &logger).map_err(|e| format!("raft: {e}"))?;
        if peers.len() == 1 && !restored {
            // Alone: no need to wait for an election timeout.
            let _ = node.campaign();
        }
        let shared = Arc::new(Shared::default());
        let transport = Arc::new(Transport::new(id, peers));
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let mut driver = Driver {
            node,
            shared: shared.clone(),
            transport: transport.clone(),
            pending: HashMap::new(),
            seq: 0,
            wal,
            failed: false,
        };
        let st = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("mqlab-raft-{id}"))
            .spawn(move || driver.run(&rx, &st))
            .map_err(|e| format!("raft thread: {e}"))?;
        Ok(RaftNode {
            shared,
            tx,
            stop,
            thread: std::sync::Mutex::new(Some(thread)),
            transport,
        })
    }

    /// Hands a peer's message to the driver.
    pub fn step(&self, msg: Message) {
        let _ = self.tx.send(Input::Raft(Box::new(msg)));
    }

    /// Replicates `cmd` and waits (up to `timeout`) until it is applied
    /// here. Err: not the leader, or no quorum in time.
    pub fn propose(&self, cmd: Command, timeout: Duration) -> Result<Outcome, String> {
        let (done, rx) = mpsc::channel();
        self.tx
            .send(Input::Propose { cmd, done })
            .map_err(|_| "the controller is stopping".to_string())?;
        match rx.recv_timeout(timeout) {
            Ok(r) => r,
            Err(_) => Err(format!(
                "not committed within {} ms (no quorum?)",
                timeout.as_millis()
            )),
        }
    }

    /// Stops the driver and the peer senders.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::Release);
        let t = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = t {
            let _ = t.join();
        }
        self.transport.shutdown();
    }
}

impl Drop for RaftNode {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct Driver {
    node: RawNode<MemStorage>,
    shared: Arc<Shared>,
    transport: Arc<Transport>,
    /// Proposals made here, by sequence number, until applied.
    pending: HashMap<u64, Sender<Result<Outcome, String>>>,
    seq: u64,
    /// The log file, if the controller has a data directory.
    wal: Option<Wal>,
    /// The log file failed: the member stops (it cannot promise what it
    /// did not persist).
    failed: bool,
}

impl Driver {
    fn run(&mut self, rx: &Receiver<Input>, stop: &AtomicBool) {
        let mut next_tick = Instant::now() + TICK;
        while !stop.load(Ordering::Acquire) && !self.failed {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(input) => self.take(input),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            // Whatever else queued up, before the next Ready.
            while let Ok(input) = rx.try_recv() {
                self.take(input);
            }
            if Instant::now() >= next_tick {
                self.node.tick();
                next_tick += TICK;
                if next_tick < Instant::now() {
                    next_tick = Instant::now() + TICK;
                }
            }
            self.on_ready();
            self.publish();
        }
    }

    fn take(&mut self, input: Input) {
        match input {
            Input::Raft(m) => {
                // Messages for another id or a stale term are refused by
                // raft itself; nothing to do about them.
                let _ = self.node.step(*m);
            }
            Input::Propose { cmd, done } => {
                if self.node.raft.state != StateRole::Leader {
                    let _ = done.send(Err(not_leader()));
                    return;
                }
                let data = match serde_json::to_vec(&cmd) {
                    Ok(d) => d,
                    Err(e) => {
                        let _ = done.send(Err(format!("encode: {e}")));
                        return;
                    }
                };
                self.seq += 1;
                let mut ctx = self.node.raft.id.to_be_bytes().to_vec();
                ctx.extend_from_slice(&self.seq.to_be_bytes());
                match self.node.propose(ctx, data) {
                    Ok(()) => {
                        self.pending.insert(self.seq, done);
                    }
                    Err(e) => {
                        let _ = done.send(Err(format!("proposal dropped: {e}")));
                    }
                }
            }
        }
    }

    fn publish(&mut self) {
        let r = &self.node.raft;
        let leader = r.state == StateRole::Leader;
        self.shared.leader_id.store(r.leader_id, Ordering::Release);
        self.shared.term.store(r.term, Ordering::Release);
        let was = self.shared.is_leader.swap(leader, Ordering::AcqRel);
        if was && !leader {
            // Lost leadership: what was proposed here may never commit.
            for (_, done) in self.pending.drain() {
                let _ = done.send(Err(not_leader()));
            }
        }
    }

    fn on_ready(&mut self) {
        if !self.node.has_ready() {
            return;
        }
        let store = self.node.raft.raft_log.store.clone();
        let mut ready = self.node.ready();
        if !ready.messages().is_empty() {
            self.transport.send_all(ready.take_messages());
        }
        if !ready.snapshot().is_empty() {
            // Never produced (no compaction), handled for completeness.
            if let Err(e) = store.wl().apply_snapshot(ready.snapshot().clone()) {
                eprintln!("mqlab controller: raft snapshot: {e}");
            }
        }
        let committed = ready.take_committed_entries();
        self.apply(committed);
        if let Err(e) = store.wl().append(ready.entries()) {
            eprintln!("mqlab controller: raft append: {e}");
            return;
        }
        if let Some(hs) = ready.hs() {
            store.wl().set_hardstate(hs.clone());
        }
        if let Some(w) = &mut self.wal {
            if let Err(e) = w.persist(ready.entries(), ready.hs()) {
                eprintln!("mqlab controller: the raft log cannot be written, stopping: {e}");
                self.failed = true;
                return;
            }
        }
        if !ready.persisted_messages().is_empty() {
            self.transport.send_all(ready.take_persisted_messages());
        }
        let mut light = self.node.advance(ready);
        if let Some(commit) = light.commit_index() {
            store.wl().mut_hard_state().set_commit(commit);
            if let Some(w) = &mut self.wal {
                let hs = store.wl().hard_state().clone();
                if let Err(e) = w.persist(&[], Some(&hs)) {
                    eprintln!("mqlab controller: the raft log cannot be written, stopping: {e}");
                    self.failed = true;
                    return;
                }
            }
        }
        self.transport.send_all(light.take_messages());
        let committed = light.take_committed_entries();
        self.apply(committed);
        self.node.advance_apply();
    }

    fn apply(&mut self, entries: Vec<Entry>) {
        for e in entries {
            self.shared.applied.fetch_add(1, Ordering::AcqRel);
            if e.get_entry_type() != EntryType::EntryNormal || e.data.is_empty() {
                // A new leader's empty entry; no configuration changes.
                continue;
            }
            let outcome = match serde_json::from_slice::<Command>(&e.data) {
                Ok(cmd) => {
                    let o = self
                        .shared
                        .state
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .apply(&cmd);
                    if o.master_changed {
                        if let Some(g) = &o.group {
                            eprintln!(
                                "mqlab controller {}: group {}: master {} at epoch {} (sync state set {:?})",
                                self.node.raft.id,
                                cmd.group(),
                                g.master
                                    .and_then(|m| g.replicas.get(&m).map(|r| format!("{m} ({})", r.addr)))
                                    .unwrap_or_else(|| "none".into()),
                                g.master_epoch,
                                g.sync_state_set
                            );
                        }
                    }
                    Ok(o)
                }
                Err(err) => Err(format!("undecodable entry {}: {err}", e.index)),
            };
            let ctx = &e.context;
            if ctx.len() == 16 && ctx[..8] == self.node.raft.id.to_be_bytes() {
                let seq = u64::from_be_bytes(ctx[8..].try_into().unwrap_or_default());
                if let Some(done) = self.pending.remove(&seq) {
                    let _ = done.send(outcome);
                }
            }
        }
    }
}

fn not_leader() -> String {
    "not the controller leader".into()
}

/// Sends Raft messages to the peers, one thread and socket each.
struct Transport {
    peers: HashMap<u64, SyncSender<Message>>,
    threads: std::sync::Mutex<Vec<JoinHandle<()>>>,
    stop: Arc<AtomicBool>,
}

/// Messages queued per peer before new ones are dropped.
const PEER_QUEUE: usize = 4096;

impl Transport {
    fn new(me: u64, addrs: &[SocketAddr]) -> Transport {
        let stop = Arc::new(AtomicBool::new(false));
        let mut peers = HashMap::new();
        let mut threads = Vec::new();
        for (i, addr) in addrs.iter().enumerate() {
            let id = i as u64 + 1;
            if id == me {
                continue;
            }
            let (tx, rx) = mpsc::sync_channel::<Message>(PEER_QUEUE);
            let (addr, stop) = (*addr, stop.clone());
            if let Ok(t) = std::thread::Builder::new()
                .name(format!("mqlab-raft-peer-{id}"))
                .spawn(move || peer_loop(me, addr, &rx, &stop))
            {
                threads.push(t);
                peers.insert(id, tx);
            }
        }
        Transport {
            peers,
            threads: std::sync::Mutex::new(threads),
            stop,
        }
    }

    fn send_all(&self, msgs: Vec<Message>) {
        for m in msgs {
            if let Some(tx) = self.peers.get(&m.to) {
                match tx.try_send(m) {
                    Ok(()) | Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {}
                }
            }
        }
    }

    fn shutdown(&self) {
        self.stop.store(true, Ordering::Release);
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}

/// The frame carrying one Raft message from `from`.
pub(super) fn raft_frame(from: u64, msg: &Message) -> Option<Vec<u8>> {
    let body = msg.write_to_bytes().ok()?;
    let mut cmd = RemotingCommand::request(codes::CONTROLLER_RAFT_MESSAGE, 0)
        .with_field("from", from)
        .with_body(body);
    cmd.flag |= FLAG_ONEWAY;
    encode_frame(&cmd).ok()
}

/// Decodes a Raft message's body.
pub(super) fn decode_message(body: &[u8]) -> Result<Message, String> {
    Message::parse_from_bytes(body).map_err(|e| format!("raft message: {e}"))
}

fn peer_loop(me: u64, addr: SocketAddr, rx: &Receiver<Message>, stop: &AtomicBool) {
    let mut conn: Option<TcpStream> = None;
    let mut last_fail: Option<Instant> = None;
    while !stop.load(Ordering::Acquire) {
        let msg = match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(m) => m,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        if conn.is_none() {
            // A peer that just refused is not asked again for 200 ms:
            // its messages are dropped meanwhile.
            if last_fail.is_some_and(|t| t.elapsed() < Duration::from_millis(200)) {
                continue;
            }
            match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    let _ = s.set_write_timeout(Some(Duration::from_millis(500)));
                    conn = Some(s);
                }
                Err(_) => {
                    last_fail = Some(Instant::now());
                    continue;
                }
            }
        }
        let Some(frame) = raft_frame(me, &msg) else {
            continue;
        };
        if let Some(s) = conn.as_mut() {
            if s.write_all(&frame).is_err() {
                conn = None;
                last_fail = Some(Instant::now());
            }
        }
    }
}
