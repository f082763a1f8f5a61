//! Consume queues: per (topic, queue) arrays of 20-byte units pointing into
//! the commit log, built by the dispatcher.
//!
//! Unit n sits at byte n*20 of the queue's file series
//! (`consumequeue/{topic}/{queueId}/{20-digit start byte}`), so writing a
//! unit at its queue offset is idempotent: re-dispatch after a crash
//! rewrites the same bytes. Invariant: the written units of a queue are a
//! prefix (no zero unit before the last written one), and their physical
//! offsets increase; recovery keeps it by zeroing every unit at or past a
//! commit-log cut.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::error::{Error, Result};
use crate::io::{Env, File};
use crate::series::FileSeries;

/// Bytes per unit.
pub const UNIT_BYTES: u64 = 20;

/// One decoded unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unit {
    /// Commit-log offset of the message.
    pub phys_offset: u64,
    /// Record size.
    pub size: u32,
    /// Tags hash code (delivery time for delay queues).
    pub tags_code: i64,
}

impl Unit {
    /// Encodes the 20 bytes.
    pub fn encode(&self) -> [u8; 20] {
        let mut b = [0u8; 20];
        b[..8].copy_from_slice(&self.phys_offset.to_be_bytes());
        b[8..12].copy_from_slice(&self.size.to_be_bytes());
        b[12..].copy_from_slice(&self.tags_code.to_be_bytes());
        b
    }

    /// Decodes 20 bytes; `None` for an empty (zero-size) unit.
    pub fn decode(b: &[u8]) -> Option<Unit> {
        if b.len() < 20 {
            return None;
        }
        let mut o = [0u8; 8];
        o.copy_from_slice(&b[..8]);
        let size = u32::from_be_bytes([b[8], b[9], b[10], b[11]]);
        let mut t = [0u8; 8];
        t.copy_from_slice(&b[12..20]);
        let phys_offset = u64::from_be_bytes(o);
        // RocketMQ treats size 0 (and a negative offset) as "no unit".
        if size == 0 || (phys_offset as i64) < 0 {
            return None;
        }
        Some(Unit {
            phys_offset,
            size,
            tags_code: i64::from_be_bytes(t),
        })
    }
}

/// Java's `String.hashCode`, as RocketMQ uses for tags and index keys.
pub fn java_hash(s: &str) -> i32 {
    let mut h: i32 = 0;
    for u in s.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(u as i32);
    }
    h
}

/// Tags code of a TAGS value (RocketMQ's `tagsString2tagsCode`).
pub fn tags_code(tags: Option<&str>) -> i64 {
    match tags {
        Some(t) if !t.is_empty() => java_hash(t) as i64,
        _ => 0,
    }
}

#[derive(Clone)]
struct CqFile {
    base_byte: u64,
    path: PathBuf,
    file: Arc<dyn File>,
}

/// One consume queue.
pub struct ConsumeQueue {
    series: FileSeries,
    file_bytes: u64,
    read_only: bool,
    files: RwLock<Vec<CqFile>>,
    /// One past the last unit written.
    max_offset: AtomicU64,
    /// First unit still stored.
    min_offset: AtomicU64,
    /// Files written since the last flush (by base byte).
    dirty: Mutex<Vec<u64>>,
    /// A file was shorter than the queue's file size when loaded: units
    /// may be missing anywhere, so recovery re-dispatches from this
    /// queue's last intact unit.
    damaged: AtomicBool,
}

impl ConsumeQueue {
    fn open(
        env: Arc<dyn Env>,
        dir: &Path,
        units_per_file: u64,
        read_only: bool,
        notes: &mut Vec<String>,
    ) -> Result<ConsumeQueue> {
        let series = FileSeries::new(env, dir);
        let listing = series.list()?;
        for path in &listing.ignored {
            notes.push(format!("ignored {}", path.display()));
        }
        let mut files = Vec::new();
        let mut file_bytes = units_per_file * UNIT_BYTES;
        for (i, (base, path)) in listing.files.into_iter().enumerate() {
            let base = &base;
            let file = series
                .open(*base, read_only)
                .map_err(|e| Error::io("open", &path, e))?;
            if i == 0 && file.len() >= UNIT_BYTES && file.len() % UNIT_BYTES == 0 {
                file_bytes = file.len();
            }
            if let Some(prev) = files.last() {
                let prev: &CqFile = prev;
                if prev.base_byte + file_bytes != *base {
                    notes.push(format!(
                        "consume queue gap before {}: later files ignored",
                        path.display()
                    ));
                    break;
                }
            } else if base % UNIT_BYTES != 0 {
                notes.push(format!("ignored misaligned {}", path.display()));
                break;
            }
            files.push(CqFile {
                base_byte: *base,
                path,
                file,
            });
        }
        let mut damaged = false;
        for f in &files {
            if f.file.len() < file_bytes {
                notes.push(format!(
                    "{} is {} bytes, shorter than the queue's {file_bytes}: re-dispatching it",
                    f.path.display(),
                    f.file.len()
                ));
                damaged = true;
                if !read_only {
                    // Cut the partial unit off, then extend with zeros.
                    let whole = f.file.len() - f.file.len() % UNIT_BYTES;
                    f.file
                        .set_len(whole)
                        .and_then(|_| f.file.set_len(file_bytes))
                        .map_err(|e| Error::io("extend", &f.path, e))?;
                }
            }
        }
        let cq = ConsumeQueue {
            series,
            file_bytes,
            read_only,
            files: RwLock::new(Vec::new()),
            max_offset: AtomicU64::new(0),
            min_offset: AtomicU64::new(0),
            dirty: Mutex::new(Vec::new()),
            damaged: AtomicBool::new(damaged),
        };
        let first = files.first().cloned();
        *cq.files.write().unwrap_or_else(|e| e.into_inner()) = files;
        // Units start at the first non-empty one of the first file (a queue
        // that began past unit 0 has zeros before it).
        let min = match first {
            Some(f) => f.base_byte / UNIT_BYTES + cq.leading_empty_units(&f)?,
            None => 0,
        };
        cq.min_offset.store(min, Ordering::Release);
        let max = cq.find_end(min)?;
        cq.max_offset.store(max, Ordering::Release);
        Ok(cq)
    }

    /// Empty units at the start of `f` (0 for every queue that began at
    /// unit 0 of its first file; all of them for an empty file).
    fn leading_empty_units(&self, f: &CqFile) -> Result<u64> {
        let units = (self.file_bytes / UNIT_BYTES).min(f.file.len() / UNIT_BYTES);
        let mut buf = vec![0u8; 4096 * UNIT_BYTES as usize];
        let mut at = 0u64;
        while at < units {
            let n = f
                .file
                .read_at(at * UNIT_BYTES, &mut buf)
                .map_err(|e| Error::io("read", &f.path, e))?;
            let whole = (n / UNIT_BYTES as usize).min((units - at) as usize);
            if whole == 0 {
                break;
            }
            let chunk = &buf[..whole * UNIT_BYTES as usize];
            if let Some(i) = chunk
                .chunks_exact(20)
                .position(|u| Unit::decode(u).is_some())
            {
                return Ok(at + i as u64);
            }
            at += whole as u64;
        }
        // Nothing at all: the queue is empty from the file's start.
        Ok(0)
    }

    /// Finds one past the last written unit: binary search for the first
    /// empty unit at or after `min` (units are a prefix from `min`).
    fn find_end(&self, min: u64) -> Result<u64> {
        let files = self.files.read().unwrap_or_else(|e| e.into_inner());
        let Some(last) = files.last() else {
            return Ok(min);
        };
        let units = self.file_bytes / UNIT_BYTES;
        let first_unit = last.base_byte / UNIT_BYTES;
        let (mut lo, mut hi) = (
            min.saturating_sub(first_unit),
            units.min(last.file.len() / UNIT_BYTES),
        );
        if lo > hi {
            return Ok(min);
        }
        let mut b = [0u8; 20];
        while lo < hi {
            let mid = (lo + hi) / 2;
            let n = last
                .file
                .read_at(mid * UNIT_BYTES, &mut b)
                .map_err(|e| Error::io("read", &last.path, e))?;
            if n == 20 && Unit::decode(&b).is_some() {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(first_unit + lo)
    }

    /// True when a file was short at load (see the field).
    pub fn is_damaged(&self) -> bool {
        self.damaged.load(Ordering::Acquire)
    }

    /// One past the last unit.
    pub fn max_offset(&self) -> u64 {
        self.max_offset.load(Ordering::Acquire)
    }

    /// First stored unit.
    pub fn min_offset(&self) -> u64 {
        self.min_offset.load(Ordering::Acquire)
    }

    fn file_for(&self, byte: u64, create: bool) -> Result<Option<CqFile>> {
        {
            let files = self.files.read().unwrap_or_else(|e| e.into_inner());
            if let Some(f) = files
                .iter()
                .find(|f| byte >= f.base_byte && byte < f.base_byte + self.file_bytes)
            {
                return Ok(Some(f.clone()));
            }
        }
        if !create || self.read_only {
            return Ok(None);
        }
        let base = byte - byte % self.file_bytes;
        self.series.create_dir()?;
        let path = self.series.path(base);
        let file = self
            .series
            .create(base, self.file_bytes, false)
            .map_err(|e| Error::io("create", &path, e))?;
        let f = CqFile {
            base_byte: base,
            path,
            file,
        };
        let mut files = self.files.write().unwrap_or_else(|e| e.into_inner());
        files.push(f.clone());
        files.sort_by_key(|f| f.base_byte);
        Ok(Some(f))
    }

    /// Writes consecutive units starting at `queue_offset`.
    pub fn put_units(&self, queue_offset: u64, bytes: &[u8]) -> Result<()> {
        if queue_offset > 0
            && self.max_offset() == 0
            && self.min_offset() == 0
            && self
                .files
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .is_empty()
        {
            // A queue whose first unit is not unit 0 (its earlier messages
            // were never here: a slave that started at a master's later
            // segment) starts there.
            self.min_offset.store(queue_offset, Ordering::Release);
        }
        let mut byte = queue_offset * UNIT_BYTES;
        let mut off = 0usize;
        while off < bytes.len() {
            let CqFile {
                base_byte: base,
                path,
                file,
            } = self
                .file_for(byte, true)?
                .ok_or_else(|| Error::Unavailable("consume queue is read-only".into()))?;
            let room = (base + self.file_bytes - byte) as usize;
            let n = room.min(bytes.len() - off);
            file.write_at(byte - base, &bytes[off..off + n])
                .map_err(|e| Error::io("write", &path, e))?;
            {
                let mut d = self.dirty.lock().unwrap_or_else(|e| e.into_inner());
                if !d.contains(&base) {
                    d.push(base);
                }
            }
            byte += n as u64;
            off += n;
        }
        let end = queue_offset + bytes.len() as u64 / UNIT_BYTES;
        self.max_offset.fetch_max(end, Ordering::AcqRel);
        Ok(())
    }

    /// Reads up to `max` units starting at `queue_offset` (clamped to the
    /// stored range).
    pub fn get_units(&self, queue_offset: u64, max: usize) -> Result<Vec<Unit>> {
        let start = queue_offset.max(self.min_offset());
        let end = self.max_offset().min(start.saturating_add(max as u64));
        let mut out = Vec::with_capacity((end.saturating_sub(start)) as usize);
        let mut q = start;
        while q < end {
            let byte = q * UNIT_BYTES;
            let Some(CqFile {
                base_byte: base,
                path,
                file,
            }) = self.file_for(byte, false)?
            else {
                break;
            };
            let n_units = ((base + self.file_bytes - byte) / UNIT_BYTES).min(end - q);
            let mut buf = vec![0u8; (n_units * UNIT_BYTES) as usize];
            let n = file
                .read_at(byte - base, &mut buf)
                .map_err(|e| Error::io("read", &path, e))?;
            for chunk in buf[..n - n % 20].chunks_exact(20) {
                match Unit::decode(chunk) {
                    Some(u) => out.push(u),
                    None => return Ok(out),
                }
            }
            q += n_units;
        }
        Ok(out)
    }

    /// Physical end (offset + size) of the last unit, 0 when empty.
    pub fn last_phys_end(&self) -> Result<u64> {
        let max = self.max_offset();
        if max == 0 || max <= self.min_offset() {
            return Ok(0);
        }
        Ok(self
            .get_units(max - 1, 1)?
            .first()
            .map(|u| u.phys_offset + u.size as u64)
            .unwrap_or(0))
    }

    /// Zeroes the units from queue offset `at` to the end; returns how many.
    pub fn cut_at(&self, at: u64) -> Result<u64> {
        let max = self.max_offset();
        if at >= max {
            return Ok(0);
        }
        let zeros = vec![0u8; ((max - at) * UNIT_BYTES) as usize];
        self.put_units(at, &zeros)?;
        self.max_offset.store(at, Ordering::Release);
        self.flush()?;
        Ok(max - at)
    }

    /// Zeroes every unit whose physical offset is at or past `phys_end`.
    /// Returns how many units were removed.
    pub fn truncate_phys(&self, phys_end: u64) -> Result<u64> {
        let min = self.min_offset();
        let max = self.max_offset();
        // Binary search for the first unit at or past the cut.
        let (mut lo, mut hi) = (min, max);
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.get_units(mid, 1)?.first() {
                Some(u) if u.phys_offset < phys_end => lo = mid + 1,
                _ => hi = mid,
            }
        }
        self.cut_at(lo)
    }

    /// Retention: moves the queue's first offset to its first unit whose
    /// message is still in the commit log (physical offset at or past
    /// `min_phys`) and deletes the files holding only units before it (never
    /// the last file). Returns the paths removed.
    pub fn correct_min_offset(&self, min_phys: u64) -> Result<Vec<PathBuf>> {
        let (mut lo, mut hi) = (self.min_offset(), self.max_offset());
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.get_units(mid, 1)?.first() {
                Some(u) if u.phys_offset < min_phys => lo = mid + 1,
                _ => hi = mid,
            }
        }
        self.min_offset.fetch_max(lo, Ordering::AcqRel);
        let first_byte = self.min_offset() * UNIT_BYTES;
        let mut removed = Vec::new();
        let mut files = self.files.write().unwrap_or_else(|e| e.into_inner());
        while files.len() > 1 && files[0].base_byte + self.file_bytes <= first_byte {
            let f = files.remove(0);
            self.series
                .remove(f.base_byte)
                .map_err(|e| Error::io("remove", &f.path, e))?;
            removed.push(f.path);
        }
        Ok(removed)
    }

    /// Syncs the files written since the last flush.
    pub fn flush(&self) -> Result<()> {
        let dirty: Vec<u64> =
            std::mem::take(&mut *self.dirty.lock().unwrap_or_else(|e| e.into_inner()));
        for base in dirty {
            if let Some(f) = self.file_for(base, false)? {
                f.file
                    .sync_data()
                    .map_err(|e| Error::io("fdatasync", &f.path, e))?;
            }
        }
        Ok(())
    }
}

/// Every consume queue of the store, by topic and queue id.
pub struct QueueSet {
    env: Arc<dyn Env>,
    root: PathBuf,
    units_per_file: u64,
    read_only: bool,
    queues: RwLock<HashMap<String, HashMap<u32, Arc<ConsumeQueue>>>>,
}

impl QueueSet {
    /// Loads every queue under `root` (`consumequeue/`).
    pub fn open(
        env: Arc<dyn Env>,
        root: &Path,
        units_per_file: u64,
        read_only: bool,
        notes: &mut Vec<String>,
    ) -> Result<QueueSet> {
        let set = QueueSet {
            env: env.clone(),
            root: root.to_path_buf(),
            units_per_file,
            read_only,
            queues: RwLock::new(HashMap::new()),
        };
        let topics = env.list_dir(root).map_err(|e| Error::io("list", root, e))?;
        let mut map: HashMap<String, HashMap<u32, Arc<ConsumeQueue>>> = HashMap::new();
        for topic in topics {
            let tdir = root.join(&topic);
            if crate::topic::validate(&topic).is_err() || !env.is_dir(&tdir) {
                notes.push(format!(
                    "ignored {}: not a valid topic directory",
                    tdir.display()
                ));
                continue;
            }
            for qname in env
                .list_dir(&tdir)
                .map_err(|e| Error::io("list", &tdir, e))?
            {
                let qdir = tdir.join(&qname);
                // Only the canonical spelling: "00" or "+0" must not
                // shadow queue 0.
                let Some(qid) = qname.parse::<u32>().ok().filter(|q| q.to_string() == qname) else {
                    notes.push(format!("ignored {}: not a queue id", qdir.display()));
                    continue;
                };
                let cq = ConsumeQueue::open(env.clone(), &qdir, units_per_file, read_only, notes)?;
                map.entry(topic.clone())
                    .or_default()
                    .insert(qid, Arc::new(cq));
            }
        }
        *set.queues.write().unwrap_or_else(|e| e.into_inner()) = map;
        Ok(set)
    }

    /// The queue, if it exists.
    pub fn get(&self, topic: &str, queue_id: u32) -> Option<Arc<ConsumeQueue>> {
        self.queues
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(topic)?
            .get(&queue_id)
            .cloned()
    }

    /// The queue, created when missing. The topic must be validated.
    pub fn get_or_create(&self, topic: &str, queue_id: u32) -> Result<Arc<ConsumeQueue>> {
        if let Some(q) = self.get(topic, queue_id) {
            return Ok(q);
        }
        let mut map = self.queues.write().unwrap_or_else(|e| e.into_inner());
        let per = map.entry(topic.to_string()).or_default();
        if let Some(q) = per.get(&queue_id) {
            return Ok(q.clone());
        }
        let dir = self.root.join(topic).join(queue_id.to_string());
        let cq = Arc::new(ConsumeQueue {
            series: FileSeries::new(self.env.clone(), dir),
            file_bytes: self.units_per_file * UNIT_BYTES,
            read_only: self.read_only,
            files: RwLock::new(Vec::new()),
            max_offset: AtomicU64::new(0),
            min_offset: AtomicU64::new(0),
            dirty: Mutex::new(Vec::new()),
            damaged: AtomicBool::new(false),
        });
        per.insert(queue_id, cq.clone());
        Ok(cq)
    }

    /// Every queue.
    pub fn all(&self) -> Vec<(String, u32, Arc<ConsumeQueue>)> {
        let map = self.queues.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<_> = map
            .iter()
            .flat_map(|(t, qs)| qs.iter().map(move |(q, cq)| (t.clone(), *q, cq.clone())))
            .collect();
        out.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        out
    }

    /// Syncs every file of every queue (recovery: units written before a
    /// process crash may sit unsynced in the page cache).
    pub fn sync_all(&self) -> Result<()> {
        for (_, _, q) in self.all() {
            let files = q.files.read().unwrap_or_else(|e| e.into_inner()).clone();
            for f in files {
                f.file
                    .sync_data()
                    .map_err(|e| Error::io("fdatasync", &f.path, e))?;
            }
        }
        Ok(())
    }

    /// Syncs every queue's dirty files.
    pub fn flush(&self) -> Result<()> {
        for (_, _, q) in self.all() {
            q.flush()?;
        }
        Ok(())
    }
}
