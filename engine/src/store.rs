//! The store: ties the commit log, the flush strategy, the dispatcher,
//! consume queues, index and checkpoint together, and recovers them at open.
//!
//! Threads (plain threads, no async runtime): the flush strategy's own
//! (group-commit service, flusher, committer), the dispatcher (builds
//! consume queues and the index from the commit log up to the confirm
//! offset: the flushed offset under sync/group, else the committed one), and
//! the checkpointer (flushes queues and index, then writes the checkpoint,
//! every `checkpoint_interval_ms`).
//!
//! Dropping a store without [`Store::shutdown`] stops its threads without
//! flushing anything: that is a process crash, and the next open runs
//! abnormal recovery.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::StoreConfig;
use crate::error::{Error, Result};
use crate::flush::{self, FlushStrategy, Periodic};
use crate::index::{IndexEntry, IndexService};
use crate::io::{Env, OpenOptions};
use crate::log::checkpoint::{Checkpoint, CheckpointExt, CheckpointFile};
use crate::log::record::{self, CrcCheck, Decoded};
use crate::log::scan::{self, ScanEnd};
use crate::log::{CommitLog, LogOptions, QueueTable};
use crate::message::{
    sys_flag, Message, Offsets, PutResult, PutStatus, StoredMessage, PROPERTY_UNIQ_KEY,
};
use crate::queue::{tags_code, QueueSet, Unit, UNIT_BYTES};

/// What recovery found and did at open.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RecoveryReport {
    /// True when the `abort` marker was present (no clean shutdown).
    pub abnormal: bool,
    /// Physical offset parsing started at.
    pub start_offset: u64,
    /// Physical offset of the end of valid data (the new write position).
    pub end_offset: u64,
    /// Records parsed.
    pub records_scanned: u64,
    /// Records re-dispatched into consume queues and the index.
    pub redispatched: u64,
    /// What was cut off, if anything.
    pub truncated: Vec<Truncation>,
    /// Other observations (ignored files, geometry taken from files, ...).
    pub notes: Vec<String>,
    /// Wall time of the recovery, ms.
    pub elapsed_ms: u64,
}

/// One truncation done by recovery.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Truncation {
    /// File affected.
    pub file: PathBuf,
    /// Physical (commit log) or byte (other files) offset of the cut.
    pub offset: u64,
    /// Bytes discarded after the cut (for the commit log: up to the end of
    /// the last segment, an upper bound of what was written there).
    pub bytes: u64,
    /// Why: the decode error at the cut.
    pub reason: String,
}

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
    in_flight: AtomicUsize,
    /// Why puts are refused for now (retention's disk-full guard), if they
    /// are. Unlike poisoning this is lifted again.
    write_block: Mutex<Option<String>>,
}

/// Index keys buffered by a dispatch round before they are written.
const INDEX_BATCH_KEYS: usize = 16 * 1024;

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
        env.create_dir_all(&dir)
            .map_err(|e| Error::io("create dir", &dir, e))?;
        let mut report = RecoveryReport::default();
        let abort_path = dir.join("abort");
        let cp_path = dir.join("checkpoint");
        report.abnormal = env.exists(&abort_path);
        let cp = CheckpointFile::read(env.as_ref(), &cp_path)?;
        let staging = config.flush.staging_bytes(config.segment_bytes);
        let (log, beyond_gap) = CommitLog::open(
            env.clone(),
            &dir.join("commitlog"),
            LogOptions {
                segment_bytes: config.segment_bytes,
                preallocate: config.preallocate,
                read_only: false,
                store_host: config.store_host,
                record_crc: config.record_crc,
                staging_bytes: staging,
            },
            &mut report.notes,
        )?;
        for path in beyond_gap {
            env.remove_file(&path)
                .map_err(|e| Error::io("remove", &path, e))?;
            report.truncated.push(Truncation {
                file: path,
                offset: 0,
                bytes: log.segment_bytes(),
                reason: "segment after a gap in the segment sequence".into(),
            });
        }
        let log = Arc::new(log);
        let queues = QueueSet::open(
            env.clone(),
            &dir.join("consumequeue"),
            config.cq_units_per_file,
            false,
            &mut report.notes,
        )?;
        let index = if config.index_enabled {
            Some(IndexService::open(
                env.clone(),
                &dir.join("index"),
                config.index_slots,
                config.index_items,
                false,
                &mut report.notes,
            )?)
        } else {
            None
        };

        // Which CRCs to demand: all of them when our records carry the
        // record CRC, else the body CRC (stores from other writers).
        let ext = cp.and_then(|c| c.ext);
        let mode = crc_mode(&log, config.record_crc, ext);
        // Recorded in the checkpoint: future recoveries require the record
        // CRC only if every record has one.
        let records_have_crc = mode == CrcCheck::Required && config.record_crc;
        let crc = if !config.check_crc_on_recover {
            CrcCheck::Off
        } else {
            mode
        };

        let segs = log.segments();
        let s = log.segment_bytes();
        let first_base = segs.first().map(|g| g.base).unwrap_or(0);
        let log_end_bound = segs.last().map(|g| g.base + s).unwrap_or(first_base);
        let mut table = QueueTable::new();
        let mut records = 0u64;
        let note_queue = |m: &record::RecordView<'_>, table: &mut QueueTable| {
            let next = table
                .entry(m.topic.to_string())
                .or_default()
                .entry(m.queue_id)
                .or_insert(0);
            *next = (*next).max(m.queue_offset + 1);
        };
        // A clean end is trusted only after parsing its segment up to it
        // (bytes can rot after a clean shutdown, files can be cut, and a
        // checkpoint written by us can be stale under another writer).
        let clean_end = ext
            .filter(|e| !report.abnormal && e.clean_end > 0)
            .map(|e| e.clean_end)
            .filter(|&e| e >= first_base && e <= log_end_bound && is_end_of_data(&log, e));
        let verified = match clean_end {
            Some(e) if e > first_base => {
                let last = e - 1;
                let seg_start = last - last % s;
                let outcome = scan::scan(&log, seg_start, e, crc, &mut |m| {
                    note_queue(m, &mut table);
                    records += 1;
                    true
                })?;
                if outcome.end == e && outcome.reason == ScanEnd::Limit {
                    Some((e, seg_start))
                } else {
                    report.notes.push(format!(
                        "clean end offset {e} not confirmed by parsing ({:?} at {}); recovering as after a crash",
                        outcome.reason, outcome.end
                    ));
                    None
                }
            }
            Some(e) => Some((e, e)),
            None => None,
        };
        // Recover as after a crash: the abort marker, or a clean end that
        // did not hold up.
        let crashlike = report.abnormal || (clean_end.is_some() && verified.is_none());
        let (end, parse_start) = match verified {
            Some((end, _)) => (end, None),
            None => {
                let start = if segs.is_empty() {
                    first_base
                } else if crashlike {
                    let from = ext
                        .map(|e| e.dispatched.min(e.flushed))
                        .unwrap_or(first_base);
                    let from = from.clamp(first_base, segs.last().map(|g| g.base).unwrap_or(0));
                    from - from % s
                } else {
                    let n = segs.len();
                    segs[n.saturating_sub(3)].base
                };
                let outcome = scan::scan(&log, start, log_end_bound, crc, &mut |m| {
                    note_queue(m, &mut table);
                    records += 1;
                    true
                })?;
                match &outcome.reason {
                    ScanEnd::Bad(at, e) => report.truncated.push(Truncation {
                        file: log.dir().join(crate::log::file_name(at - at % s)),
                        offset: *at,
                        bytes: log_end_bound - at,
                        reason: e.to_string(),
                    }),
                    ScanEnd::EndOfData => {
                        // Zeros read as the end of data; a zeroed range in
                        // the middle would hide the records after it. Say so.
                        if let Some(at) = first_nonzero(&log, outcome.end)? {
                            report.truncated.push(Truncation {
                                file: log.dir().join(crate::log::file_name(at - at % s)),
                                offset: outcome.end,
                                bytes: log_end_bound - outcome.end,
                                reason: format!(
                                    "zeroed range at {}: data found again at {at} is discarded",
                                    outcome.end
                                ),
                            });
                        }
                    }
                    _ => {}
                }
                (outcome.end, Some(start))
            }
        };
        report.records_scanned = records;
        report.start_offset = parse_start.unwrap_or(end);
        report.end_offset = end;

        // Cut everything past the end: commit log, queues, index.
        let removed = log.truncate(end)?;
        for path in removed {
            report.truncated.push(Truncation {
                file: path,
                offset: end,
                bytes: s,
                reason: "segment past the end of valid data".into(),
            });
        }
        let mut max_cq_end = 0u64;
        // Queues with a short file may miss units anywhere: re-dispatch
        // from their last intact unit, however far back.
        let mut damaged_from: Option<u64> = None;
        for (topic, qid, cq) in queues.all() {
            let cut = cq.truncate_phys(end)?;
            if cut > 0 {
                report.truncated.push(Truncation {
                    file: dir.join("consumequeue").join(&topic).join(qid.to_string()),
                    offset: cq.max_offset() * UNIT_BYTES,
                    bytes: cut * UNIT_BYTES,
                    reason: format!("{cut} units pointed at or past the commit-log end {end}"),
                });
            }
            if crashlike {
                // A torn unit can survive the cut (its offset field never
                // reached the disk and reads low): the queue's last unit
                // must point at its own record, else it goes.
                let stale = cut_stale_tail(&log, &cq, &topic, qid, end, crc)?;
                if stale > 0 {
                    report.truncated.push(Truncation {
                        file: dir.join("consumequeue").join(&topic).join(qid.to_string()),
                        offset: cq.max_offset() * UNIT_BYTES,
                        bytes: stale * UNIT_BYTES,
                        reason: format!(
                            "{stale} units at the queue's end point at no record of it"
                        ),
                    });
                }
            }
            let last = cq.last_phys_end()?;
            max_cq_end = max_cq_end.max(last);
            if cq.is_damaged() {
                let from = last.max(first_base).min(end);
                damaged_from = Some(damaged_from.map_or(from, |d| d.min(from)));
            }
            let next = table.entry(topic).or_default().entry(qid).or_insert(0);
            *next = (*next).max(cq.max_offset());
        }
        if let Some(ix) = &index {
            for path in ix.truncate_phys(end)? {
                report.truncated.push(Truncation {
                    file: path,
                    offset: end,
                    bytes: 0,
                    reason: "index file holds only items past the commit-log end".into(),
                });
            }
        }
        log.set_recovered(end, table);
        if first_base > 0 {
            // Retention deleted the oldest segments: queue units pointing
            // below the first segment are gone with them.
            for (_, _, cq) in queues.all() {
                cq.correct_min_offset(first_base)?;
            }
        }
        let dispatch_from = match parse_start {
            Some(start) if crashlike => start,
            Some(start) => start.min(max_cq_end.clamp(first_base, end)),
            None => max_cq_end.clamp(first_base, end),
        };
        // A record boundary: the end of a queue's last unit is one.
        let dispatch_from = damaged_from.map_or(dispatch_from, |d| d.min(dispatch_from));

        let strategy = flush::start(log.clone(), &config.flush);
        let checkpoint = if config.read_only {
            None
        } else {
            Some(CheckpointFile::open(env.as_ref(), &cp_path)?)
        };
        let inner = Arc::new(Inner {
            env: env.clone(),
            dir: dir.clone(),
            cfg: config.clone(),
            log,
            queues,
            index,
            strategy,
            crc,
            records_have_crc,
            dispatched: AtomicU64::new(dispatch_from),
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
            in_flight: AtomicUsize::new(0),
            write_block: Mutex::new(None),
        });
        // Re-dispatch what the queues and index may lack, before anyone
        // reads. After a crash, unsynced queue units and index items may
        // have reached the disk in any order (holes): rewrite every unit of
        // the re-dispatched records, and rebuild the newest index file's
        // tail, rather than trusting what looks present.
        // Read-only opens too: their writes land in the in-memory overlay,
        // and without the rebuild a store killed during an earlier rebuild
        // (items below the re-dispatch start already zeroed, the header
        // still past them) would look as if those keys were lost.
        if crashlike {
            if let Some(ix) = &inner.index {
                ix.rebuild_newest_from(dispatch_from)?;
            }
        }
        report.redispatched = inner.dispatch_round_with(crashlike)?;
        if !config.read_only && crashlike {
            // Bytes a crashed process wrote may sit unsynced in the page
            // cache: make them durable before calling them flushed and
            // before the checkpoint vouches for the queues and the index.
            inner.log.sync_every_segment()?;
            inner.queues.sync_all()?;
            if let Some(ix) = &inner.index {
                ix.sync_all()?;
            }
        }
        if !config.read_only {
            // Mark the store open: until a clean shutdown removes it, the
            // next open runs abnormal recovery.
            env.open(
                &abort_path,
                OpenOptions {
                    create: true,
                    ..OpenOptions::default()
                },
            )
            .and_then(|f| f.sync_data())
            .and_then(|_| env.sync_dir(&dir))
            .map_err(|e| Error::io("create", &abort_path, e))?;
            inner.write_checkpoint(0)?;
        }
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        // The report is immutable after open; install it.
        let mut inner = inner;
        Arc::get_mut(&mut inner)
            .expect("no other reference to the store yet")
            .report = report;

        let mut threads = Vec::new();
        let d = inner.clone();
        threads.push(Periodic::spawn(
            "mqlab-dispatcher",
            Duration::from_millis(1),
            move || match d.dispatch_round() {
                Ok(_) => true,
                Err(e) => {
                    d.log.poison_with(format!("dispatcher failed: {e}"));
                    d.log.wake_blocked();
                    false
                }
            },
        ));
        if !config.read_only {
            let c = inner.clone();
            threads.push(Periodic::spawn(
                "mqlab-checkpoint",
                Duration::from_millis(config.checkpoint_interval_ms),
                move || match c.write_checkpoint(0) {
                    Ok(()) => true,
                    Err(e) => {
                        c.log.poison_with(format!("checkpoint failed: {e}"));
                        c.log.wake_blocked();
                        false
                    }
                },
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

    /// Reads the message whose record starts at `phys_offset`. Only
    /// committed bytes are visible.
    pub fn get(&self, phys_offset: u64) -> Result<StoredMessage> {
        self.inner.get(phys_offset)
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

    /// Physical offset up to which the dispatcher has built queues/index.
    pub fn dispatched_offset(&self) -> u64 {
        self.inner.dispatched.load(Ordering::Acquire)
    }

    /// Waits until the dispatcher reached `phys_offset` (or timeout, or
    /// the store is poisoned: a failed dispatcher never gets there).
    pub fn wait_dispatched(&self, phys_offset: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (m, cv) = &self.inner.dispatch_signal;
        let mut g = m.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if self.dispatched_offset() >= phys_offset {
                return true;
            }
            if self.inner.log.poisoned().is_some() {
                return false;
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
        let (m, cv) = &self.inner.dispatch_signal;
        let mut g = m.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if has() {
                return true;
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

    /// Segment size in bytes (from the files when the store existed).
    pub fn segment_bytes(&self) -> u64 {
        self.inner.log.segment_bytes()
    }

    /// Name of the I/O backend.
    pub fn backend_name(&self) -> &'static str {
        self.inner.env.name()
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

/// The first non-zero byte at or after `from` in its segment, if any.
fn first_nonzero(log: &CommitLog, from: u64) -> Result<Option<u64>> {
    let s = log.segment_bytes();
    let seg_end = from - from % s + s;
    let mut buf = vec![0u8; crate::log::scan::CHUNK_BYTES];
    let mut pos = from;
    while pos < seg_end {
        // Holes of a sparse segment read as zeros: skip them unread.
        match log.next_data_in_segment(pos)? {
            Some(at) if at < seg_end => pos = at,
            _ => break,
        }
        let n = log.read_raw(pos, &mut buf, seg_end)?;
        if n == 0 {
            break;
        }
        if let Some(i) = buf[..n].iter().position(|b| *b != 0) {
            return Ok(Some(pos + i as u64));
        }
        pos += n as u64;
    }
    Ok(None)
}

/// True when nothing but zeros (or no segment at all) follows `end`.
fn is_end_of_data(log: &CommitLog, end: u64) -> bool {
    let mut b = [0u8; 8];
    match log.read_raw(end, &mut b, u64::MAX) {
        // No segment holds `end`: only right at a boundary (the next
        // segment was never created).
        Ok(0) => end.is_multiple_of(log.segment_bytes()),
        // Zeros follow (also at a boundary: an empty next segment).
        Ok(8) => b == [0u8; 8],
        _ => false,
    }
}

/// Cuts trailing units that do not point at their own record (topic,
/// queue, queue offset, size). Returns how many were cut.
fn cut_stale_tail(
    log: &CommitLog,
    cq: &crate::queue::ConsumeQueue,
    topic: &str,
    qid: u32,
    end: u64,
    crc: CrcCheck,
) -> Result<u64> {
    let mut cut = 0;
    while cq.max_offset() > cq.min_offset() {
        let q = cq.max_offset() - 1;
        let ok = match cq.get_units(q, 1)?.first() {
            // Below the log's first byte: retention deleted the record.
            Some(u) if u.phys_offset < log.min_offset() => true,
            Some(u) => matches!(
                log.read_record(u.phys_offset, end, crc),
                Ok(Decoded::Message(m)) if m.topic == topic
                    && m.queue_id == qid
                    && m.queue_offset == q
                    && m.total_size == u.size
            ),
            None => false,
        };
        if ok {
            break;
        }
        cut += cq.cut_at(q)?;
    }
    Ok(cut)
}

/// Which CRCs the store's records carry. mqlab's own stores say so in the
/// checkpoint extension, so a torn first record cannot downgrade the
/// checks; a store from another writer is judged by its first record.
fn crc_mode(log: &CommitLog, record_crc: bool, ext: Option<CheckpointExt>) -> CrcCheck {
    if let Some(e) = ext {
        return if e.records_have_crc {
            CrcCheck::Required
        } else {
            CrcCheck::Present
        };
    }
    let Some(first) = log.segments().first().map(|s| s.base) else {
        return if record_crc {
            CrcCheck::Required
        } else {
            CrcCheck::Present
        };
    };
    match log.read_record(first, u64::MAX, CrcCheck::Required) {
        Ok(Decoded::Message(_)) => CrcCheck::Required,
        _ => match log.read_record(first, u64::MAX, CrcCheck::Present) {
            Ok(Decoded::Message(_)) => CrcCheck::Present,
            _ if record_crc => CrcCheck::Required,
            _ => CrcCheck::Present,
        },
    }
}

impl Inner {
    fn put(&self, msg: &Message) -> PutResult {
        let illegal = |detail: String| PutResult {
            status: PutStatus::MessageIllegal,
            offsets: None,
            detail: Some(detail),
        };
        let unavailable = |detail: String, offsets| PutResult {
            status: PutStatus::ServiceNotAvailable,
            offsets,
            detail: Some(detail),
        };
        if self.closed.load(Ordering::Acquire) {
            let why = if self.cfg.read_only {
                "store is read-only"
            } else {
                "store is shut down"
            };
            return unavailable(why.into(), None);
        }
        if let Some(reason) = self.log.poisoned() {
            return unavailable(format!("store refuses writes: {reason}"), None);
        }
        if let Some(reason) = &*self.write_block.lock().unwrap_or_else(|e| e.into_inner()) {
            return unavailable(format!("store refuses writes: {reason}"), None);
        }
        if let Err(e) = crate::topic::validate(&msg.topic) {
            return illegal(e);
        }
        if msg.body.len() > self.cfg.max_message_bytes as usize {
            return illegal(format!(
                "body is {} bytes, over max_message_bytes {}",
                msg.body.len(),
                self.cfg.max_message_bytes
            ));
        }
        let props = match record::encode_properties(&msg.properties) {
            Ok(p) => p,
            Err(e) => return illegal(e),
        };
        if props.len() + record::CRC32_RESERVED_LEN > i16::MAX as usize {
            return illegal(format!("properties are {} bytes, over 32 KiB", props.len()));
        }
        let store_ts = now_ms();
        let born_ts = if msg.born_timestamp_ms > 0 {
            msg.born_timestamp_ms
        } else {
            store_ts
        };
        let (offsets, end) = match self.log.append(msg, &props, born_ts, store_ts) {
            Ok(x) => x,
            Err(e) => return unavailable(e.to_string(), None),
        };
        match self.strategy.await_ack(end) {
            Ok(PutStatus::PutOk) => {
                self.log.mark_acked(end);
                PutResult {
                    status: PutStatus::PutOk,
                    offsets: Some(offsets),
                    detail: None,
                }
            }
            Ok(status) => PutResult {
                status,
                offsets: Some(offsets),
                detail: Some(format!(
                    "not durable within {} ms; the message stays written",
                    self.cfg.flush.sync_flush_timeout_ms
                )),
            },
            Err(e) => unavailable(e.to_string(), Some(offsets)),
        }
    }

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

    /// Offset consumers may see: durable data only under sync and group.
    fn confirm_offset(&self) -> u64 {
        if self.cfg.flush.kind.acks_durable() {
            self.log.flushed()
        } else {
            self.log.committed()
        }
    }

    /// Builds queue units and index items for every record between the
    /// dispatched and the confirm offset. Returns the records dispatched.
    fn dispatch_round(&self) -> Result<u64> {
        self.dispatch_round_with(false)
    }

    /// [`Self::dispatch_round`]; with `rewrite`, units the queues already
    /// claim to hold are written again (crash recovery).
    fn dispatch_round_with(&self, rewrite: bool) -> Result<u64> {
        let _g = self.dispatch_lock.lock().unwrap_or_else(|e| e.into_inner());
        let from = self.dispatched.load(Ordering::Acquire);
        let to = self.confirm_offset();
        if from >= to {
            return Ok(0);
        }
        // topic -> queue -> (first queue offset, encoded units)
        let mut runs: HashMap<String, HashMap<u32, (u64, Vec<u8>)>> = HashMap::new();
        let mut keys = Vec::new();
        let mut result = Ok(());
        let mut count = 0u64;
        let mut last_ts = None;
        let outcome = scan::scan(&self.log, from, to, CrcCheck::Off, &mut |m| {
            count += 1;
            last_ts = Some(m.store_timestamp_ms);
            let tx = m.sys_flag & sys_flag::TRANSACTION_MASK;
            if tx != sys_flag::TRANSACTION_PREPARED && tx != sys_flag::TRANSACTION_ROLLBACK {
                let unit = Unit {
                    phys_offset: m.phys_offset,
                    size: m.total_size,
                    tags_code: tags_code(m.property(crate::message::PROPERTY_TAGS)),
                };
                if !runs.contains_key(m.topic) {
                    runs.insert(m.topic.to_string(), HashMap::new());
                }
                let per_topic = runs.get_mut(m.topic).expect("inserted above");
                let run = per_topic
                    .entry(m.queue_id)
                    .or_insert_with(|| (m.queue_offset, Vec::new()));
                if run.0 + (run.1.len() as u64 / UNIT_BYTES) != m.queue_offset {
                    // Not contiguous: write what we have and start over.
                    let (q, bytes) = std::mem::replace(run, (m.queue_offset, Vec::new()));
                    if let Err(e) = self.write_units(m.topic, m.queue_id, q, &bytes, rewrite) {
                        result = Err(e);
                        return false;
                    }
                }
                run.1.extend_from_slice(&unit.encode());
            }
            if let Some(ix) = &self.index {
                let entry = |key: String| IndexEntry {
                    key,
                    phys: m.phys_offset,
                    store_ts: m.store_timestamp_ms,
                };
                keys.extend(m.keys().map(|k| entry(format!("{}#{k}", m.topic))));
                if let Some(u) = m.property(PROPERTY_UNIQ_KEY) {
                    keys.push(entry(format!("{}#{u}", m.topic)));
                }
                // Bounded memory on a large backlog.
                if keys.len() >= INDEX_BATCH_KEYS {
                    if let Err(e) = ix.put_batch(&keys) {
                        result = Err(e);
                        return false;
                    }
                    keys.clear();
                }
            }
            true
        })?;
        result?;
        if let Some(ix) = &self.index {
            ix.put_batch(&keys)?;
        }
        for (topic, queues) in runs {
            for (qid, (q, bytes)) in queues {
                self.write_units(&topic, qid, q, &bytes, rewrite)?;
            }
        }
        if let ScanEnd::Bad(at, e) = outcome.reason {
            return Err(Error::Corrupt {
                path: self.log.dir().to_path_buf(),
                offset: at,
                reason: format!("dispatcher cannot read committed data: {e}"),
            });
        }
        if let Some(ts) = last_ts {
            self.dispatched_ts.store(ts, Ordering::Release);
        }
        self.dispatched.store(outcome.end, Ordering::Release);
        let (m, cv) = &self.dispatch_signal;
        drop(m.lock().unwrap_or_else(|e| e.into_inner()));
        cv.notify_all();
        Ok(count)
    }

    /// Writes a run of units, skipping those the queue already holds unless
    /// `rewrite`.
    fn write_units(
        &self,
        topic: &str,
        qid: u32,
        first: u64,
        bytes: &[u8],
        rewrite: bool,
    ) -> Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let cq = self.queues.get_or_create(topic, qid)?;
        if rewrite {
            return cq.put_units(first, bytes);
        }
        let have = cq.max_offset();
        let n = bytes.len() as u64 / UNIT_BYTES;
        if first + n <= have {
            return Ok(());
        }
        let skip = have.saturating_sub(first);
        cq.put_units(first + skip, &bytes[(skip * UNIT_BYTES) as usize..])
    }

    /// Flushes queues and index, then records how far they are durable.
    /// `clean_end` > 0 only at a clean shutdown.
    fn write_checkpoint(&self, clean_end: u64) -> Result<()> {
        let Some(cp) = &self.checkpoint else {
            return Ok(());
        };
        // Timestamp before offset: a newer offset with an older timestamp
        // only makes RocketMQ's timestamp-based recovery start earlier.
        let logics_ts = self.dispatched_ts.load(Ordering::Acquire);
        let dispatched = self.dispatched.load(Ordering::Acquire);
        self.queues.flush()?;
        if let Some(ix) = &self.index {
            ix.flush()?;
        }
        let (physic_ts, logics_ts) = {
            let mut ts = self.checkpoint_ts.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(p) = self.log.flushed_store_timestamp() {
                ts.0 = p;
            }
            ts.1 = logics_ts;
            *ts
        };
        cp.write(&Checkpoint {
            physic_msg_timestamp: physic_ts,
            logics_msg_timestamp: logics_ts,
            index_msg_timestamp: logics_ts,
            master_flushed_offset: 0,
            confirm_phys_offset: self.log.flushed(),
            ext: Some(CheckpointExt {
                dispatched,
                flushed: self.log.flushed(),
                clean_end,
                records_have_crc: self.records_have_crc,
            }),
        })
    }
}
