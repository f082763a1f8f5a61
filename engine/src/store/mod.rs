//! The store: ties the commit log, the flush strategy, the dispatcher,
//! consume queues, index and checkpoint together. This file is the public
//! API; the rest is one file per job:
//!
//! - `put.rs`: the put path (validation and append shared by the blocking
//!   and the asynchronous put, and their acknowledgement).
//! - `recovery.rs`: what `open` does before the store accepts puts.
//! - `dispatch.rs`: the dispatcher thread (builds consume queues and the
//!   index from the commit log up to the confirm offset: the flushed offset
//!   under sync/group, else the committed one).
//! - `checkpointer.rs`: the checkpointer thread (flushes queues and index,
//!   then writes the checkpoint, every `checkpoint_interval_ms`).
//!
//! Threads (plain threads, no async runtime, see [`crate::service`]): the
//! flush strategy's own (group-commit service, flusher, committer), the
//! dispatcher and the checkpointer.
//!
//! Dropping a store without [`Store::shutdown`] stops its threads without
//! flushing anything: that is a process crash, and the next open runs
//! abnormal recovery.

mod checkpointer;
mod dispatch;
mod put;
mod recovery;
mod replica;
mod truncate;

pub use recovery::{RecoveryReport, Truncation};
pub use replica::{ReplicaCallback, ReplicaGate};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::clock::Clock;
use crate::config::StoreConfig;
use crate::error::{Error, Result};
use crate::flush::{self, FlushStrategy};
use crate::index::IndexService;
use crate::io::Env;
use crate::log::checkpoint::CheckpointFile;
use crate::log::record::{CrcCheck, Decoded};
use crate::log::scan::{self, ScanEnd};
use crate::log::CommitLog;
use crate::message::{Message, Offsets, PutResult, StoredMessage, PROPERTY_UNIQ_KEY};
use crate::queue::{QueueSet, Unit, UNIT_BYTES};
use crate::service::Periodic;

/// One queue of a topic, with its offsets.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct QueueInfo {
    /// Topic.
    pub topic: String,
    /// Queue id.
    pub queue_id: u32,
    /// First queue offset still stored.
    pub min_offset: u64,
    /// One past the last dispatched queue offset.
    pub max_offset: u64,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

struct Inner {
    env: Arc<dyn Env>,
    dir: PathBuf,
    cfg: StoreConfig,
    log: Arc<CommitLog>,
    queues: QueueSet,
    index: Option<IndexService>,
    strategy: Box<dyn FlushStrategy>,
    crc: CrcCheck,
    records_have_crc: bool,
    dispatched: AtomicU64,
    /// Store timestamp of the last record dispatched.
    dispatched_ts: AtomicI64,
    /// RocketMQ timestamps last written to the checkpoint.
    checkpoint_ts: Mutex<(i64, i64)>,
    dispatch_lock: Mutex<()>,
    dispatch_signal: (Mutex<()>, Condvar),
    checkpoint: Option<CheckpointFile>,
    report: RecoveryReport,
    closed: AtomicBool,
    /// Puts between their start and their result: blocking puts until
    /// they return, asynchronous ones until their completion returned.
    in_flight: Arc<AtomicUsize>,
    /// Why puts are refused for now (retention's disk-full guard), if they
    /// are. Unlike poisoning this is lifted again.
    write_block: Mutex<Option<String>>,
    /// A slave's store: puts refused, dispatch only up to the flushed
    /// offset (see [`Store::set_slave_mode`]).
    slave_mode: AtomicBool,
    /// What puts wait for after their flush acknowledgement (a sync
    /// master; see [`Store::set_replica_gate`]).
    replica_gate: RwLock<Option<Arc<dyn ReplicaGate>>>,
    /// Where store timestamps come from, once installed (else the wall
    /// clock): see [`Store::use_clock`].
    clock: OnceLock<Arc<dyn Clock>>,
}

impl Inner {
    /// Store timestamp for a record appended now: the installed clock's
    /// time ([`Store::use_clock`]), else the wall clock's.
    fn store_now_ms(&self) -> i64 {
        self.clock.get().map_or_else(now_ms, |c| c.now_ms())
    }
}

/// A RocketMQ-compatible message store.
pub struct Store {
    inner: Arc<Inner>,
    threads: Vec<Periodic>,
    /// Why a read-only open could not take the shared lock (a writer is
    /// active), if so.
    lock_warning: Option<String>,
    /// The directory lock (dropped last: after the threads stopped).
    _lock: Option<crate::lock::DirLock>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.inner.dir)
            .field("backend", &self.inner.env.name())
            .field("flush", &self.inner.strategy.name())
            .finish()
    }
}

impl Store {
    /// Opens (creating or recovering) the store in `dir` with the backend
    /// named in `config.backend`. With `config.read_only`, the directory is
    /// read through an in-memory overlay and never modified.
    ///
    /// A writable open takes the directory's exclusive lock
    /// ([`crate::lock`]) and fails with [`Error::Locked`] while another
    /// open holds it; a read-only open takes a shared lock when it can and
    /// otherwise opens anyway, with [`Store::lock_warning`] set.
    pub fn open(dir: impl AsRef<Path>, config: StoreConfig) -> Result<Store> {
        let dir = dir.as_ref();
        let (lock, lock_warning) = if config.read_only {
            if !dir.is_dir() {
                return Err(Error::io(
                    "open store directory",
                    dir,
                    std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        if dir.exists() {
                            "not a directory"
                        } else {
                            "no such directory"
                        },
                    ),
                ));
            }
            match crate::lock::lock_shared(dir)? {
                crate::lock::SharedLock::Held(l) => (Some(l), None),
                crate::lock::SharedLock::WriterActive(holder) => (
                    None,
                    Some(format!(
                        "a writer ({holder}) is active on {}: what is read may change while it runs",
                        dir.display()
                    )),
                ),
                crate::lock::SharedLock::NoLockFile => (None, None),
            }
        } else {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io("create store directory", dir, e))?;
            (Some(crate::lock::lock_exclusive(dir)?), None)
        };
        let env: Arc<dyn Env> = if config.read_only {
            Arc::new(crate::io::overlay::OverlayEnv::new())
        } else {
            config
                .backend
                .env()
                .map_err(|e| Error::BackendUnavailable {
                    backend: config.backend.name(),
                    reason: e.to_string(),
                })?
        };
        let env: Arc<dyn Env> = if config.power_loss_marks && !config.read_only {
            Arc::new(
                crate::io::powerloss::PowerLossEnv::new(env, dir)
                    .map_err(|e| Error::io("start power-loss marks", dir, e))?,
            )
        } else {
            env
        };
        let mut store = Self::open_with_env(env, dir, config)?;
        store._lock = lock;
        store.lock_warning = lock_warning;
        Ok(store)
    }

    /// Set when a read-only open found a writer active on the directory.
    pub fn lock_warning(&self) -> Option<&str> {
        self.lock_warning.as_deref()
    }

    /// Opens the store on an explicit environment (the simulator, or an
    /// overlay for read-only inspection).
    pub fn open_with_env(
        env: Arc<dyn Env>,
        dir: impl AsRef<Path>,
        config: StoreConfig,
    ) -> Result<Store> {
        config.sanitize()?;
        let started = Instant::now();
        let dir = dir.as_ref().to_path_buf();
        let r = recovery::recover(&env, &dir, &config)?;
        let strategy = flush::start(r.log.clone(), &config.flush);
        let checkpoint = if config.read_only {
            None
        } else {
            Some(CheckpointFile::open(env.as_ref(), &dir.join("checkpoint"))?)
        };
        let cp = r.checkpoint;
        let inner = Arc::new(Inner {
            env: env.clone(),
            dir: dir.clone(),
            cfg: config.clone(),
            log: r.log,
            queues: r.queues,
            index: r.index,
            strategy,
            crc: r.crc,
            records_have_crc: r.records_have_crc,
            dispatched: AtomicU64::new(r.dispatch_from),
            dispatched_ts: AtomicI64::new(cp.map(|c| c.logics_msg_timestamp).unwrap_or(0)),
            checkpoint_ts: Mutex::new(
                cp.map(|c| (c.physic_msg_timestamp, c.logics_msg_timestamp))
                    .unwrap_or((0, 0)),
            ),
            dispatch_lock: Mutex::new(()),
            dispatch_signal: (Mutex::new(()), Condvar::new()),
            checkpoint,
            report: RecoveryReport::default(),
            closed: AtomicBool::new(config.read_only),
            in_flight: Arc::new(AtomicUsize::new(0)),
            write_block: Mutex::new(None),
            slave_mode: AtomicBool::new(false),
            replica_gate: RwLock::new(None),
            clock: OnceLock::new(),
        });
        let mut report = r.report;
        recovery::complete(&inner, r.crashlike, r.dispatch_from, &mut report)?;
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        // The report is immutable after open; install it.
        let mut inner = inner;
        Arc::get_mut(&mut inner)
            .expect("no other reference to the store yet")
            .report = report;

        if config.warm_segments && !config.read_only {
            inner.log.start_warming();
        }
        let mut threads = vec![dispatch::spawn(inner.clone())];
        if !config.read_only {
            threads.push(checkpointer::spawn(
                inner.clone(),
                config.checkpoint_interval_ms,
            ));
        }
        Ok(Store {
            inner,
            threads,
            lock_warning: None,
            _lock: None,
        })
    }

    /// Appends a message and waits as the flush strategy requires.
    ///
    /// MESSAGE_ILLEGAL: bad topic (RocketMQ's pattern; nothing that could
    /// leave the data directory), body over `max_message_bytes`, properties
    /// containing separators or over 32 KiB. SERVICE_NOT_AVAILABLE: the
    /// store is shut down, read-only, or poisoned by an I/O error (the
    /// detail says which); if the record was already written, `offsets`
    /// says where. FLUSH_DISK_TIMEOUT: written, not durable in time.
    pub fn put(&self, msg: &Message) -> PutResult {
        let inner = &*self.inner;
        inner.in_flight.fetch_add(1, Ordering::AcqRel);
        let r = inner.put(msg);
        inner.in_flight.fetch_sub(1, Ordering::AcqRel);
        r
    }

    /// Appends a message without waiting for its acknowledgement: `done`
    /// gets the result [`Store::put`] would have returned, exactly once.
    ///
    /// Validation and the append run on the calling thread, as in `put`
    /// (the append may wait for room in a full `pool` or batched-group
    /// staging area, as `put`'s does); a refusal (MESSAGE_ILLEGAL,
    /// SERVICE_NOT_AVAILABLE) calls `done` on the calling thread before
    /// this returns. Otherwise `done` is called when the flush strategy
    /// acknowledges the put: under `sync` by the sync completer thread
    /// after the put's own fdatasync, under `group` by the group-commit
    /// service after the fdatasync covering it (FLUSH_DISK_TIMEOUT once
    /// `sync_flush_timeout_ms` passed, checked between flushes, so a hung
    /// fdatasync delays it), under `async` and `pool` on the calling
    /// thread right after the write. PUT_OK under sync and group means
    /// durable (`offsets().flushed` is past the record when `done` runs),
    /// and `acked` has moved, as for `put`. A poisoned log gives
    /// SERVICE_NOT_AVAILABLE with the reason; stopping the store calls
    /// every completion still pending (SERVICE_NOT_AVAILABLE "store is
    /// shutting down" unless already durable).
    ///
    /// `done` runs on the strategy's thread: keep it short (hand the result
    /// off), as the next fdatasync waits for it, and do not put from it
    /// (under `group` the put would wait for the very thread running
    /// `done`); a panic in it is caught.
    /// Nothing bounds the puts in flight (group commit's
    /// `group_max_waiters` applies to blocking puts only, `sync` queues
    /// without limit): the caller bounds them. Each counts as in flight
    /// until `done` returned, so [`Store::shutdown`] waits for it.
    pub fn put_async(&self, msg: &Message, done: impl FnOnce(PutResult) + Send + 'static) {
        self.inner.put_async(msg, Box::new(done));
    }

    /// Reads the message whose record starts at `phys_offset`. Only
    /// committed bytes are visible.
    pub fn get(&self, phys_offset: u64) -> Result<StoredMessage> {
        self.inner.get(phys_offset)
    }

    /// The bytes of the record at `phys_offset` exactly as stored (what a
    /// pull answer carries on the wire). The record is decoded and its
    /// checksums verified first, so only a whole, valid, committed record
    /// is ever returned.
    pub fn record_bytes(&self, phys_offset: u64) -> Result<Vec<u8>> {
        let m = self.inner.get(phys_offset)?;
        let mut buf = vec![0u8; m.total_size as usize];
        let log = &self.inner.log;
        let n = log.read_raw(phys_offset, &mut buf, log.committed())?;
        if n != buf.len() {
            return Err(Error::NotFound(phys_offset));
        }
        Ok(buf)
    }

    /// Up to `max` messages of a queue starting at `queue_offset` (clamped
    /// to the first stored unit). Empty when the queue does not exist or has
    /// nothing there yet.
    pub fn get_from_queue(
        &self,
        topic: &str,
        queue_id: u32,
        queue_offset: u64,
        max: usize,
    ) -> Result<Vec<StoredMessage>> {
        crate::topic::validate(topic).map_err(Error::IllegalMessage)?;
        let Some(cq) = self.inner.queues.get(topic, queue_id) else {
            return Ok(Vec::new());
        };
        let first = queue_offset.max(cq.min_offset());
        let mut out = Vec::new();
        for (k, unit) in cq.get_units(queue_offset, max)?.into_iter().enumerate() {
            let m = self.inner.get(unit.phys_offset)?;
            let want = first + k as u64;
            // A damaged or stale unit must not serve another queue's message.
            if m.topic != topic || m.queue_id != queue_id || m.queue_offset != want {
                return Err(Error::Corrupt {
                    path: self
                        .inner
                        .dir
                        .join("consumequeue")
                        .join(topic)
                        .join(queue_id.to_string()),
                    offset: want * UNIT_BYTES,
                    reason: format!(
                        "unit {want} points at physical offset {} holding {}:{} offset {}",
                        unit.phys_offset, m.topic, m.queue_id, m.queue_offset
                    ),
                });
            }
            out.push(m);
        }
        Ok(out)
    }

    /// Consume-queue units (offset, size, tags code) of a queue.
    pub fn queue_units(
        &self,
        topic: &str,
        queue_id: u32,
        queue_offset: u64,
        max: usize,
    ) -> Result<Vec<Unit>> {
        match self.inner.queues.get(topic, queue_id) {
            Some(cq) => cq.get_units(queue_offset, max),
            None => Ok(Vec::new()),
        }
    }

    /// Messages of `topic` with key `key` (a KEYS entry or the UNIQ_KEY)
    /// stored in `[begin_ms, end_ms]`, newest first, at most 64. Every
    /// candidate from the index is decoded and compared, so hash collisions
    /// and stale items never leak through.
    pub fn query_by_key(
        &self,
        topic: &str,
        key: &str,
        begin_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<StoredMessage>> {
        let Some(ix) = &self.inner.index else {
            return Ok(Vec::new());
        };
        let mut out: Vec<StoredMessage> = Vec::new();
        for phys in ix.query(&format!("{topic}#{key}"), begin_ms, end_ms)? {
            let Ok(m) = self.inner.get(phys) else {
                continue;
            };
            let key_matches = m.keys().any(|k| k == key)
                || m.properties.get(PROPERTY_UNIQ_KEY).map(String::as_str) == Some(key);
            if m.topic == topic
                && key_matches
                && (begin_ms..=end_ms).contains(&m.store_timestamp_ms)
                && !out.iter().any(|o| o.phys_offset == m.phys_offset)
            {
                out.push(m);
            }
        }
        Ok(out)
    }

    /// Every `(key hash, phys)` that [`Store::query_by_key`] can reach in
    /// the index (hash: [`crate::index::key_hash`] of `topic#key`), from
    /// bulk reads: for checking many keys at once (`mqlab verify`).
    pub fn for_each_indexed(&self, f: &mut dyn FnMut(u32, u64)) -> Result<()> {
        match &self.inner.index {
            Some(ix) => ix.for_each_reachable(f),
            None => Ok(()),
        }
    }

    /// The four offsets, read with atomics (cheap; call as often as needed).
    pub fn offsets(&self) -> Offsets {
        self.inner.log.offsets()
    }

    /// Takes the store timestamps of records appended from now on from
    /// `clock` instead of the wall clock, so that a broker on an injected
    /// clock (a test's `ManualClock`) compares its own times with store
    /// times of one clock: the transaction check's "asked less than a
    /// timeout ago" reads a half message's store time. Only the first call
    /// installs a clock; it returns whether this one did.
    pub fn use_clock(&self, clock: Arc<dyn Clock>) -> bool {
        self.inner.clock.set(clock).is_ok()
    }

    /// Physical offset up to which the dispatcher has built queues/index.
    pub fn dispatched_offset(&self) -> u64 {
        self.inner.dispatched.load(Ordering::Acquire)
    }

    /// Waits until the dispatcher reached `phys_offset` (or timeout, or
    /// the store is poisoned: a failed dispatcher never gets there).
    pub fn wait_dispatched(&self, phys_offset: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        self.wait_signal(deadline, || {
            if self.dispatched_offset() >= phys_offset {
                Some(true)
            } else if self.inner.log.poisoned().is_some() {
                Some(false)
            } else {
                None
            }
        })
    }

    /// Long-polling hook: waits until the consume queue of (`topic`,
    /// `queue_id`) holds a unit at `queue_offset` (its max offset is past
    /// it), or `timeout` passes. Returns whether it does. The dispatcher
    /// signals after every round, so a waiter wakes within one round (about
    /// 1 ms) of the unit being built.
    pub fn wait_queue_offset(
        &self,
        topic: &str,
        queue_id: u32,
        queue_offset: u64,
        timeout: Duration,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        let has = || {
            self.inner
                .queues
                .get(topic, queue_id)
                .is_some_and(|cq| cq.max_offset() > queue_offset)
        };
        self.wait_signal(deadline, || has().then_some(true))
    }

    /// Waits on the dispatcher's signal (woken after every round, and
    /// every 10 ms at the latest) until `done` has an answer or `deadline`
    /// passes (false).
    fn wait_signal(&self, deadline: Instant, done: impl Fn() -> Option<bool>) -> bool {
        let (m, cv) = &self.inner.dispatch_signal;
        let mut g = m.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(answer) = done() {
                return answer;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            g = cv
                .wait_timeout(g, (deadline - now).min(Duration::from_millis(10)))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Refuses (`Some(reason)`) or accepts again (`None`) every put, with
    /// SERVICE_NOT_AVAILABLE and the reason in the detail. Retention uses it
    /// when the disk is over its full ratio; unlike an I/O failure this is
    /// lifted once space is freed.
    pub fn set_write_block(&self, reason: Option<String>) {
        *self
            .inner
            .write_block
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = reason;
    }

    /// The reason puts are refused by [`Store::set_write_block`], if any.
    pub fn write_block(&self) -> Option<String> {
        self.inner
            .write_block
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Base offsets of the commit-log segments, oldest first.
    pub fn segment_bases(&self) -> Vec<u64> {
        self.inner.log.segments().iter().map(|g| g.base).collect()
    }

    /// Retention: deletes the commit-log segments that end at or before
    /// `offset` (never past what is durable and dispatched, never the
    /// active segment), then moves every consume queue's first offset past
    /// the units that pointed into them and deletes the queue files holding
    /// only such units. Returns the files removed.
    pub fn delete_segments_before(&self, offset: u64) -> Result<Vec<PathBuf>> {
        let limit = offset.min(self.dispatched_offset());
        let mut removed = self.inner.log.delete_segments_before(limit)?;
        if !removed.is_empty() {
            let min = self.inner.log.min_offset();
            for (_, _, cq) in self.inner.queues.all() {
                removed.extend(cq.correct_min_offset(min)?);
            }
        }
        Ok(removed)
    }

    /// The environment every file of the store goes through (for files kept
    /// beside the store, such as `config/consumerOffset.json`, so that the
    /// simulator sees them too).
    pub fn env(&self) -> Arc<dyn Env> {
        self.inner.env.clone()
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// One queue with its offsets, if it exists.
    pub fn queue_info(&self, topic: &str, queue_id: u32) -> Option<QueueInfo> {
        let cq = self.inner.queues.get(topic, queue_id)?;
        Some(QueueInfo {
            topic: topic.to_string(),
            queue_id,
            min_offset: cq.min_offset(),
            max_offset: cq.max_offset(),
        })
    }

    /// Every (topic, queue) with its offsets.
    pub fn queues(&self) -> Vec<QueueInfo> {
        self.inner
            .queues
            .all()
            .into_iter()
            .map(|(topic, queue_id, cq)| QueueInfo {
                topic,
                queue_id,
                min_offset: cq.min_offset(),
                max_offset: cq.max_offset(),
            })
            .collect()
    }

    /// What recovery did at open.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.inner.report
    }

    /// Physical offset of the first stored byte.
    pub fn min_offset(&self) -> u64 {
        self.inner.log.min_offset()
    }

    /// Commit-log segments written with zeros whole before use since
    /// open (`StoreConfig::warm_segments`); None when warming is off.
    pub fn segments_warmed(&self) -> Option<u64> {
        self.inner.log.warmer().map(|w| w.warmed())
    }

    /// Segment size in bytes (from the files when the store existed).
    pub fn segment_bytes(&self) -> u64 {
        self.inner.log.segment_bytes()
    }

    /// Largest body a put accepts, bytes (`StoreConfig::max_message_bytes`),
    /// for callers that must check a whole batch before putting any of it.
    pub fn max_message_bytes(&self) -> u32 {
        self.inner.cfg.max_message_bytes
    }

    /// RocketMQ's `indexLastUpdateTimestamp` and `indexLastUpdatePhyoffset`
    /// (QUERY_MESSAGE's answer): store time and commit-log offset of the
    /// newest indexed message, from the newest index file's header; (0, 0)
    /// with no index.
    pub fn index_last_update(&self) -> (i64, u64) {
        self.inner
            .index
            .as_ref()
            .and_then(|ix| ix.files().last().map(|f| f.header()))
            .map_or((0, 0), |h| (h.end_timestamp, h.end_phys_offset))
    }

    /// Name of the I/O backend.
    pub fn backend_name(&self) -> &'static str {
        self.inner.env.name()
    }

    /// Bytes written and not yet committed to the segment files, and the
    /// capacity of the staging area they sit in (`pool`, batched `group`;
    /// an append waits while it is full), or None without one.
    pub fn staging(&self) -> Option<(u64, usize)> {
        let log = &self.inner.log;
        let cap = log.staging_capacity()?;
        let o = log.offsets();
        Some((o.written.saturating_sub(o.committed), cap))
    }

    /// Name of the flush strategy.
    pub fn flush_name(&self) -> &'static str {
        self.inner.strategy.name()
    }

    /// The reason the store refuses writes, if it does.
    pub fn poisoned(&self) -> Option<String> {
        self.inner.log.poisoned()
    }

    /// Walks every record from `from` to the committed end, CRC-checked,
    /// calling `f` with each message, or with the error at the first record
    /// that does not decode (then stops); `f` returns false to stop early.
    /// Returns the offset where the walk ended.
    pub fn scan(
        &self,
        from: u64,
        f: &mut dyn FnMut(std::result::Result<&StoredMessage, Error>) -> bool,
    ) -> Result<u64> {
        let log = &self.inner.log;
        let limit = log.committed();
        let outcome = scan::scan(
            log,
            from,
            limit,
            self.inner.crc,
            &mut |v| match v.to_owned() {
                Ok(m) => f(Ok(&m)),
                Err(e) => f(Err(Error::Corrupt {
                    path: log.dir().to_path_buf(),
                    offset: v.phys_offset,
                    reason: e.to_string(),
                })),
            },
        )?;
        if let ScanEnd::Bad(at, e) = outcome.reason {
            f(Err(Error::Corrupt {
                path: log
                    .dir()
                    .join(crate::log::file_name(at - at % log.segment_bytes())),
                offset: at,
                reason: e.to_string(),
            }));
        }
        Ok(outcome.end)
    }

    /// Clean shutdown: wait for puts in flight, make everything durable,
    /// finish dispatching, checkpoint with the clean end, remove `abort`.
    /// On error the `abort` marker stays, so the next open recovers.
    pub fn shutdown(mut self) -> Result<()> {
        let inner = self.inner.clone();
        inner.closed.store(true, Ordering::Release);
        let deadline = Instant::now() + Duration::from_secs(10);
        while inner.in_flight.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        inner.strategy.stop();
        for t in self.threads.drain(..) {
            t.stop();
        }
        if inner.cfg.read_only {
            return Ok(());
        }
        if let Some(reason) = inner.log.poisoned() {
            return Err(Error::Poisoned(reason));
        }
        let end = inner.log.sync_all()?;
        inner.dispatch_round()?;
        inner.write_checkpoint(end)?;
        let abort = inner.dir.join("abort");
        inner
            .env
            .remove_file(&abort)
            .and_then(|_| inner.env.sync_dir(&inner.dir))
            .map_err(|e| Error::io("remove", &abort, e))?;
        Ok(())
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // A crash, unless shutdown already ran: stop threads, flush nothing.
        self.inner.closed.store(true, Ordering::Release);
        self.inner.log.poison_with("store dropped".into());
        self.inner.log.wake_blocked();
        self.inner.strategy.stop();
        for t in self.threads.drain(..) {
            t.stop();
        }
    }
}

impl Inner {
    fn get(&self, phys: u64) -> Result<StoredMessage> {
        match self
            .log
            .read_record(phys, self.log.committed(), self.read_crc())?
        {
            Decoded::Message(m) => Ok(m),
            Decoded::Blank(_) => Err(Error::NotFound(phys)),
        }
    }

    fn read_crc(&self) -> CrcCheck {
        if self.cfg.check_crc_on_read {
            if self.crc == CrcCheck::Off {
                CrcCheck::Present
            } else {
                self.crc
            }
        } else {
            CrcCheck::Off
        }
    }
}
