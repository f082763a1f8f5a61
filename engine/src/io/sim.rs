//! `sim` backend: an in-memory disk that keeps written and durable bytes
//! apart, crashes on demand and injects faults from a seed.
//!
//! This is how mqlab proves its loss window: a workload runs against a
//! [`SimEnv`], [`SimEnv::crash`] freezes the disk at a random instant and
//! hands back a new disk holding only what had been made durable (optionally
//! plus a seeded, torn prefix of the writes in flight, as a real disk may
//! persist some of them), and recovery runs on that.
//!
//! Model, per file: `data` is what a reader of the page cache sees;
//! `durable` is what survives power loss; `pending` is the ordered list of
//! writes (and length changes) since the last `sync_data`. File creation and
//! removal are durable at once (the store syncs directories after either, so
//! this only hides bugs in directory syncs, which are out of scope).
//!
//! How much of the unsynced state a power loss keeps is a [`TornMode`]:
//! nothing, a prefix of the writes in order with the next one cut at a byte
//! (the default of `crash(true, _)`), or page- or sector-granular writeback
//! in any order, where each 4 KiB page (512-byte sector) independently holds
//! one of the states it had since the last sync. How a `write_at` reaches
//! the disk is a [`WritePattern`]: one piece (pwrite), several iovec-like
//! pieces (vectored writes), or one piece per 4 KiB page (an mmap copy),
//! which decides the intermediate states a torn crash can expose.
//! [`SimEnv::freeze_after_ops`] stops the disk at an exact mutating
//! operation, so a crash can land on every I/O point of a workload or of a
//! recovery.
//!
//! Faults (a [`FaultPlan`]) are counted per disk: the Nth write or the Nth
//! sync fails with EIO, writes fail with ENOSPC once a byte budget is spent,
//! and reads flip one bit with a seeded probability. Everything random draws
//! from one ChaCha8 stream seeded by the plan, so a single-threaded run
//! replays exactly from its seed.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{Env, File, OpenOptions};

/// Name in results and charts.
pub const NAME: &str = "sim";

/// Which faults to inject, all drawn from `seed`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultPlan {
    /// Seed of every random choice the disk makes.
    pub seed: u64,
    /// The Nth `write_at` on this disk (1-based) fails with EIO, and so does
    /// every later one: a disk that failed a write is not trusted again.
    pub write_eio_at: Option<u64>,
    /// The Nth `sync_data` (1-based) fails with EIO; later syncs also fail.
    pub sync_eio_at: Option<u64>,
    /// Total bytes `write_at` may write before every write fails with ENOSPC.
    pub capacity_bytes: Option<u64>,
    /// Probability, in parts per million, that a `read_at` returns its
    /// buffer with one bit flipped.
    pub read_bitflip_ppm: u32,
    /// How each `write_at` is split into pending pieces. Kept by
    /// [`SimEnv::crash_with`] for the disk it returns. Default: `Single`.
    pub write_pattern: WritePattern,
}

/// How a backend hands one `write_at` to the disk: the pieces a crash can
/// tear apart or persist out of order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum WritePattern {
    /// One pending write per call (pwrite, one io_uring write).
    #[default]
    Single,
    /// Split at seeded points into up to 4 pieces, each copied into the
    /// page cache on its own (pwritev, io_uring with several iovecs), so a
    /// page can hold the first pieces of a write without the last ones.
    Vectored,
    /// Split at 4 KiB page boundaries: an mmap copy dirties pages one by
    /// one, and writeback takes them one by one.
    MmapPages,
}

impl WritePattern {
    /// Every pattern.
    pub const ALL: [WritePattern; 3] = [
        WritePattern::Single,
        WritePattern::Vectored,
        WritePattern::MmapPages,
    ];

    /// Name in reports.
    pub fn name(self) -> &'static str {
        match self {
            WritePattern::Single => "single",
            WritePattern::Vectored => "vectored",
            WritePattern::MmapPages => "mmap-pages",
        }
    }
}

/// What a power loss keeps of the writes it catches in flight (written
/// since the file's last `sync_data`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum TornMode {
    /// Only durable bytes survive (`crash(false, _)`).
    #[default]
    None,
    /// A seeded prefix of each file's pending operations survives in
    /// order, the next write cut at a random byte (`crash(true, _)`).
    Prefix,
    /// Page-cache writeback in any order: every 4 KiB page the pending
    /// operations touched independently holds one of the states it had
    /// since the last sync (its durable bytes, or its bytes after one of
    /// the operations that touched it). The file length is the length
    /// after a seeded prefix of the operations, as file-system metadata is
    /// journaled apart from data.
    Pages,
    /// A disk without power-loss protection: as `Pages` with 512-byte
    /// sectors, so the writeback of one page can itself be torn.
    Sectors,
}

impl TornMode {
    /// Every mode.
    pub const ALL: [TornMode; 4] = [
        TornMode::None,
        TornMode::Prefix,
        TornMode::Pages,
        TornMode::Sectors,
    ];

    /// Name in reports.
    pub fn name(self) -> &'static str {
        match self {
            TornMode::None => "none",
            TornMode::Prefix => "prefix",
            TornMode::Pages => "pages",
            TornMode::Sectors => "sectors",
        }
    }

    /// Granule of the out-of-order modes.
    fn granule(self) -> Option<usize> {
        match self {
            TornMode::Pages => Some(4096),
            TornMode::Sectors => Some(512),
            TornMode::None | TornMode::Prefix => None,
        }
    }
}

#[derive(Debug)]
enum Pending {
    Write(u64, Vec<u8>),
    SetLen(u64),
}

#[derive(Debug, Default)]
struct FileState {
    data: Vec<u8>,
    durable: Vec<u8>,
    pending: Vec<Pending>,
}

impl FileState {
    fn apply(buf: &mut Vec<u8>, op: &Pending, limit: Option<usize>) {
        match op {
            Pending::Write(off, bytes) => {
                let n = limit.unwrap_or(bytes.len()).min(bytes.len());
                let off = *off as usize;
                if buf.len() < off + n {
                    buf.resize(off + n, 0);
                }
                buf[off..off + n].copy_from_slice(&bytes[..n]);
            }
            Pending::SetLen(len) => buf.resize(*len as usize, 0),
        }
    }

    /// The crash image of an out-of-order mode with `granule`-byte units
    /// (see [`TornMode::Pages`]).
    fn granular_image(&self, granule: usize, rng: &mut ChaCha8Rng) -> Vec<u8> {
        let g = granule;
        // Granules each operation touches, and the states every granule
        // had: 0 is the durable state, i + 1 the state after operation i.
        let mut touched: Vec<(usize, usize)> = Vec::with_capacity(self.pending.len());
        let mut states: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        let mut lens = Vec::with_capacity(self.pending.len() + 1);
        let mut len = self.durable.len();
        lens.push(len);
        for (i, op) in self.pending.iter().enumerate() {
            let (lo, hi) = match op {
                Pending::Write(off, bytes) => {
                    let off = *off as usize;
                    len = len.max(off + bytes.len());
                    (off, off + bytes.len())
                }
                Pending::SetLen(new) => {
                    let new = *new as usize;
                    let r = (len.min(new), len.max(new));
                    len = new;
                    r
                }
            };
            lens.push(len);
            let range = if hi > lo {
                (lo / g, (hi - 1) / g + 1)
            } else {
                (0, 0)
            };
            for k in range.0..range.1 {
                states.entry(k).or_insert_with(|| vec![0]).push(i + 1);
            }
            touched.push(range);
        }
        let target: BTreeMap<usize, usize> = states
            .into_iter()
            .map(|(k, s)| (k, s[rng.random_range(0..s.len())]))
            .collect();
        let final_len = lens[rng.random_range(0..lens.len())];
        let mut out = self.durable.clone();
        let mut cache = self.durable.clone();
        let put_granule = |out: &mut Vec<u8>, src: &[u8], k: usize| {
            let (lo, hi) = (k * g, (k + 1) * g);
            if out.len() < hi {
                out.resize(hi, 0);
            }
            for (pos, b) in out[lo..hi].iter_mut().enumerate() {
                *b = src.get(lo + pos).copied().unwrap_or(0);
            }
        };
        for (i, op) in self.pending.iter().enumerate() {
            FileState::apply(&mut cache, op, None);
            let (a, b) = touched[i];
            for k in a..b {
                if target.get(&k) == Some(&(i + 1)) {
                    put_granule(&mut out, &cache, k);
                }
            }
        }
        out.resize(final_len, 0);
        out
    }
}

#[derive(Debug)]
struct Disk {
    /// Ops take it shared; a crash takes it exclusive, so a crash is atomic
    /// with respect to every write and sync.
    gate: RwLock<()>,
    files: Mutex<BTreeMap<PathBuf, Arc<Mutex<FileState>>>>,
    dirs: Mutex<BTreeSet<PathBuf>>,
    plan: FaultPlan,
    rng: Mutex<ChaCha8Rng>,
    writes: AtomicU64,
    syncs: AtomicU64,
    bytes_written: AtomicU64,
    failed_write: AtomicBool,
    failed_sync: AtomicBool,
    /// Mutating operations (`write_at`, `sync_data`, `set_len`) seen.
    mutations: AtomicU64,
    /// Freeze when `mutations` reaches this value (0: never).
    freeze_at: AtomicU64,
}

/// An in-memory, crashable, fault-injecting disk.
#[derive(Debug, Clone)]
pub struct SimEnv {
    disk: Arc<Disk>,
    /// Cleared when this handle's "machine" crashed: every later op fails.
    alive: Arc<AtomicBool>,
}

/// Counters of what a disk has seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    /// `write_at` calls.
    pub writes: u64,
    /// `sync_data` calls.
    pub syncs: u64,
    /// Bytes passed to `write_at`.
    pub bytes_written: u64,
}

fn dead() -> io::Error {
    io::Error::other("simulated machine crashed: the disk is gone")
}

fn eio(what: &str) -> io::Error {
    io::Error::from_raw_os_error(libc::EIO).with_context_msg(what)
}

trait WithContext {
    fn with_context_msg(self, what: &str) -> io::Error;
}

impl WithContext for io::Error {
    fn with_context_msg(self, what: &str) -> io::Error {
        io::Error::new(self.kind(), format!("{what}: {self}"))
    }
}

impl SimEnv {
    /// An empty disk without faults.
    pub fn new(seed: u64) -> Self {
        Self::with_faults(FaultPlan {
            seed,
            ..FaultPlan::default()
        })
    }

    /// An empty disk with the given faults.
    pub fn with_faults(plan: FaultPlan) -> Self {
        Self::build(BTreeMap::new(), BTreeSet::new(), plan)
    }

    fn build(
        files: BTreeMap<PathBuf, Arc<Mutex<FileState>>>,
        dirs: BTreeSet<PathBuf>,
        plan: FaultPlan,
    ) -> Self {
        SimEnv {
            disk: Arc::new(Disk {
                gate: RwLock::new(()),
                files: Mutex::new(files),
                dirs: Mutex::new(dirs),
                rng: Mutex::new(ChaCha8Rng::seed_from_u64(plan.seed)),
                plan,
                writes: AtomicU64::new(0),
                syncs: AtomicU64::new(0),
                bytes_written: AtomicU64::new(0),
                failed_write: AtomicBool::new(false),
                failed_sync: AtomicBool::new(false),
                mutations: AtomicU64::new(0),
                freeze_at: AtomicU64::new(0),
            }),
            alive: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Power loss. Atomically stops this disk (every later operation through
    /// this env or its open files fails) and returns a fresh disk holding
    /// each file's durable bytes. With `torn`, a seeded prefix of each file's
    /// pending writes also survives, the last of them cut at a random byte.
    /// The new disk has no faults planned; its seed is `seed`.
    pub fn crash(&self, torn: bool, seed: u64) -> SimEnv {
        self.crash_with(
            if torn {
                TornMode::Prefix
            } else {
                TornMode::None
            },
            seed,
        )
    }

    /// Power loss keeping what `mode` says of the unsynced writes (see
    /// [`TornMode`]); `crash(torn, seed)` is `Prefix` or `None`. The new
    /// disk keeps this disk's [`WritePattern`] and has no faults planned.
    pub fn crash_with(&self, mode: TornMode, seed: u64) -> SimEnv {
        let _gate = self.disk.gate.write().unwrap_or_else(|e| e.into_inner());
        self.alive.store(false, Ordering::SeqCst);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let files = self.disk.files.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = BTreeMap::new();
        for (path, state) in files.iter() {
            let st = state.lock().unwrap_or_else(|e| e.into_inner());
            let mut image = st.durable.clone();
            if let (Some(g), false) = (mode.granule(), st.pending.is_empty()) {
                image = st.granular_image(g, &mut rng);
            } else if mode == TornMode::Prefix && !st.pending.is_empty() {
                let keep = rng.random_range(0..=st.pending.len());
                for op in &st.pending[..keep] {
                    FileState::apply(&mut image, op, None);
                }
                if keep < st.pending.len() {
                    if let Pending::Write(_, bytes) = &st.pending[keep] {
                        let cut = rng.random_range(0..=bytes.len());
                        FileState::apply(&mut image, &st.pending[keep], Some(cut));
                    }
                }
            }
            out.insert(
                path.clone(),
                Arc::new(Mutex::new(FileState {
                    data: image.clone(),
                    durable: image,
                    pending: Vec::new(),
                })),
            );
        }
        let dirs = self
            .disk
            .dirs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        SimEnv::build(
            out,
            dirs,
            FaultPlan {
                seed,
                write_pattern: self.disk.plan.write_pattern,
                ..FaultPlan::default()
            },
        )
    }

    /// Freezes the disk (as [`SimEnv::crash_with`] would, but leaving the
    /// image to take) when it has seen `ops` more mutating operations
    /// (`write_at`, `sync_data`, `set_len`, counted over every handle):
    /// that operation and every later one through this handle fails, so a
    /// crash taken afterwards lands exactly there. `None` cancels.
    pub fn freeze_after_ops(&self, ops: Option<u64>) {
        let at = ops.map_or(0, |n| self.disk.mutations.load(Ordering::SeqCst) + n.max(1));
        self.disk.freeze_at.store(at, Ordering::SeqCst);
    }

    /// False once this handle crashed or froze.
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    /// Mutating operations (`write_at`, `sync_data`, `set_len`) the disk
    /// has seen, over every handle.
    pub fn mutations(&self) -> u64 {
        self.disk.mutations.load(Ordering::SeqCst)
    }

    /// Counts one mutating operation; freezes this handle when it is the
    /// planned one.
    fn mutate(&self) -> io::Result<()> {
        let n = self.disk.mutations.fetch_add(1, Ordering::SeqCst) + 1;
        if self.disk.freeze_at.load(Ordering::SeqCst) == n {
            self.alive.store(false, Ordering::SeqCst);
        }
        self.check_alive()
    }

    /// Process crash: the page cache survives. This handle stops working
    /// (as the killed process's threads would), and the returned handle sees
    /// the same disk, written but not yet durable bytes included.
    pub fn process_crash(&self) -> SimEnv {
        let _gate = self.disk.gate.write().unwrap_or_else(|e| e.into_inner());
        self.alive.store(false, Ordering::SeqCst);
        SimEnv {
            disk: self.disk.clone(),
            alive: Arc::new(AtomicBool::new(true)),
        }
    }

    /// What the disk has seen so far.
    pub fn stats(&self) -> SimStats {
        SimStats {
            writes: self.disk.writes.load(Ordering::Relaxed),
            syncs: self.disk.syncs.load(Ordering::Relaxed),
            bytes_written: self.disk.bytes_written.load(Ordering::Relaxed),
        }
    }

    /// Bytes written but not yet durable, over all files.
    pub fn pending_bytes(&self) -> u64 {
        let files = self.disk.files.lock().unwrap_or_else(|e| e.into_inner());
        files
            .values()
            .map(|f| {
                let st = f.lock().unwrap_or_else(|e| e.into_inner());
                st.pending
                    .iter()
                    .map(|p| match p {
                        Pending::Write(_, b) => b.len() as u64,
                        Pending::SetLen(_) => 0,
                    })
                    .sum::<u64>()
            })
            .sum()
    }

    fn check_alive(&self) -> io::Result<()> {
        if self.alive.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(dead())
        }
    }

    fn lookup(&self, path: &Path) -> Option<Arc<Mutex<FileState>>> {
        let files = self.disk.files.lock().unwrap_or_else(|e| e.into_inner());
        files.get(path).cloned()
    }
}

struct SimFile {
    env: SimEnv,
    state: Arc<Mutex<FileState>>,
    read_only: bool,
}

impl SimFile {
    /// Where the pieces of a `len`-byte write at `offset` end, per the
    /// disk's [`WritePattern`] (the last is always `len`).
    fn piece_ends(&self, offset: u64, len: usize) -> Vec<usize> {
        match self.env.disk.plan.write_pattern {
            WritePattern::Single => vec![len],
            WritePattern::Vectored => {
                if len < 2 {
                    return vec![len];
                }
                let mut rng = self.env.disk.rng.lock().unwrap_or_else(|e| e.into_inner());
                let pieces = rng.random_range(1..=4usize.min(len));
                let mut ends: Vec<usize> = (1..pieces).map(|_| rng.random_range(1..len)).collect();
                ends.push(len);
                ends.sort_unstable();
                ends.dedup();
                ends
            }
            WritePattern::MmapPages => {
                const PAGE: u64 = 4096;
                let mut ends = Vec::new();
                let mut pos = offset;
                let end = offset + len as u64;
                while pos < end {
                    let next = (pos / PAGE + 1) * PAGE;
                    pos = next.min(end);
                    ends.push((pos - offset) as usize);
                }
                if ends.is_empty() {
                    ends.push(len);
                }
                ends
            }
        }
    }
}

impl File for SimFile {
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        let _gate = self.env.disk.gate.read().unwrap_or_else(|e| e.into_inner());
        self.env.check_alive()?;
        if !self.read_only {
            self.env.mutate()?;
        }
        if self.read_only {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "file opened read-only",
            ));
        }
        let disk = &self.env.disk;
        let n = disk.writes.fetch_add(1, Ordering::Relaxed) + 1;
        if disk.failed_write.load(Ordering::Relaxed)
            || disk.plan.write_eio_at.is_some_and(|at| n >= at)
        {
            disk.failed_write.store(true, Ordering::Relaxed);
            return Err(eio("simulated write failure"));
        }
        let total = disk
            .bytes_written
            .fetch_add(buf.len() as u64, Ordering::Relaxed)
            + buf.len() as u64;
        if disk.plan.capacity_bytes.is_some_and(|cap| total > cap) {
            disk.bytes_written
                .fetch_sub(buf.len() as u64, Ordering::Relaxed);
            return Err(
                io::Error::from_raw_os_error(libc::ENOSPC).with_context_msg("simulated full disk")
            );
        }
        let cuts = self.piece_ends(offset, buf.len());
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut from = 0;
        for to in cuts {
            let op = Pending::Write(offset + from as u64, buf[from..to].to_vec());
            FileState::apply(&mut st.data, &op, None);
            st.pending.push(op);
            from = to;
        }
        Ok(())
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let _gate = self.env.disk.gate.read().unwrap_or_else(|e| e.into_inner());
        self.env.check_alive()?;
        let n = {
            let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let len = st.data.len() as u64;
            if offset >= len {
                return Ok(0);
            }
            let n = ((len - offset) as usize).min(buf.len());
            buf[..n].copy_from_slice(&st.data[offset as usize..offset as usize + n]);
            n
        };
        let ppm = self.env.disk.plan.read_bitflip_ppm;
        if ppm > 0 && n > 0 {
            let mut rng = self.env.disk.rng.lock().unwrap_or_else(|e| e.into_inner());
            if rng.random_range(0..1_000_000u32) < ppm {
                let bit = rng.random_range(0..n * 8);
                buf[bit / 8] ^= 1 << (bit % 8);
            }
        }
        Ok(n)
    }

    fn sync_data(&self) -> io::Result<()> {
        let _gate = self.env.disk.gate.read().unwrap_or_else(|e| e.into_inner());
        self.env.check_alive()?;
        self.env.mutate()?;
        let disk = &self.env.disk;
        let n = disk.syncs.fetch_add(1, Ordering::Relaxed) + 1;
        if disk.failed_sync.load(Ordering::Relaxed)
            || disk.plan.sync_eio_at.is_some_and(|at| n >= at)
        {
            disk.failed_sync.store(true, Ordering::Relaxed);
            // Like Linux after a writeback error: the dirty pages are gone
            // from the durable image's point of view; nothing becomes durable.
            return Err(eio("simulated fsync failure"));
        }
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.durable = st.data.clone();
        st.pending.clear();
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let _gate = self.env.disk.gate.read().unwrap_or_else(|e| e.into_inner());
        self.env.check_alive()?;
        if !self.read_only {
            self.env.mutate()?;
        }
        if self.read_only {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "file opened read-only",
            ));
        }
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let op = Pending::SetLen(len);
        FileState::apply(&mut st.data, &op, None);
        st.pending.push(op);
        Ok(())
    }

    fn len(&self) -> u64 {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .data
            .len() as u64
    }
}

impl Env for SimEnv {
    fn name(&self) -> &'static str {
        NAME
    }

    fn open(&self, path: &Path, opts: OpenOptions) -> io::Result<Arc<dyn File>> {
        let _gate = self.disk.gate.read().unwrap_or_else(|e| e.into_inner());
        self.check_alive()?;
        let state = match self.lookup(path) {
            Some(s) => s,
            None if opts.create && !opts.read_only => {
                let s = Arc::new(Mutex::new(FileState::default()));
                self.disk
                    .files
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(path.to_path_buf(), s.clone());
                s
            }
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{}: no such file", path.display()),
                ))
            }
        };
        if opts.len > 0 && !opts.read_only {
            let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
            if (st.data.len() as u64) < opts.len {
                // Creating a fixed-size file is durable at once, like the
                // creation itself (see the module comment).
                st.data.resize(opts.len as usize, 0);
                if st.durable.len() < st.data.len() {
                    st.durable.resize(opts.len as usize, 0);
                }
            }
        }
        Ok(Arc::new(SimFile {
            env: self.clone(),
            state,
            read_only: opts.read_only,
        }))
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        self.check_alive()?;
        let mut names = BTreeSet::new();
        {
            let files = self.disk.files.lock().unwrap_or_else(|e| e.into_inner());
            for p in files.keys() {
                if p.parent() == Some(path) {
                    if let Some(n) = p.file_name().and_then(|n| n.to_str()) {
                        names.insert(n.to_string());
                    }
                }
            }
            let dirs = self.disk.dirs.lock().unwrap_or_else(|e| e.into_inner());
            for d in dirs.iter() {
                if d.parent() == Some(path) {
                    if let Some(n) = d.file_name().and_then(|n| n.to_str()) {
                        names.insert(n.to_string());
                    }
                }
            }
        }
        Ok(names.into_iter().collect())
    }

    fn is_dir(&self, path: &Path) -> bool {
        let known = {
            let dirs = self.disk.dirs.lock().unwrap_or_else(|e| e.into_inner());
            dirs.contains(path)
        };
        known
    }

    fn exists(&self, path: &Path) -> bool {
        if self.is_dir(path) {
            return true;
        }
        let files = self.disk.files.lock().unwrap_or_else(|e| e.into_inner());
        files.contains_key(path)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.check_alive()?;
        let mut dirs = self.disk.dirs.lock().unwrap_or_else(|e| e.into_inner());
        let mut p = Some(path);
        while let Some(d) = p {
            if d.as_os_str().is_empty() {
                break;
            }
            dirs.insert(d.to_path_buf());
            p = d.parent();
        }
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let _gate = self.disk.gate.read().unwrap_or_else(|e| e.into_inner());
        self.check_alive()?;
        let existed = self
            .disk
            .files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(path)
            .is_some();
        if existed {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{}: no such file", path.display()),
            ))
        }
    }

    fn sync_dir(&self, _path: &Path) -> io::Result<()> {
        self.check_alive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_of(sim: &SimEnv, path: &str) -> Vec<u8> {
        let f = sim
            .open(Path::new(path), OpenOptions::default())
            .expect("file exists");
        let mut buf = vec![0u8; f.len() as usize];
        let n = f.read_at(0, &mut buf).unwrap();
        buf.truncate(n);
        buf
    }

    /// Every granule of a crash image holds one state it really had.
    #[test]
    fn granular_images_hold_real_states_per_granule() {
        for mode in [TornMode::Pages, TornMode::Sectors] {
            for pattern in WritePattern::ALL {
                for seed in 0..50u64 {
                    let sim = SimEnv::with_faults(FaultPlan {
                        seed,
                        write_pattern: pattern,
                        ..FaultPlan::default()
                    });
                    let f = sim
                        .open(
                            Path::new("/f"),
                            OpenOptions {
                                create: true,
                                ..OpenOptions::default()
                            },
                        )
                        .unwrap();
                    f.write_at(0, &[1u8; 10_000]).unwrap();
                    f.sync_data().unwrap();
                    // Three generations over the same bytes, unsynced.
                    let mut states = vec![vec![1u8; 10_000]];
                    for gen in 2..5u8 {
                        f.write_at(100, &[gen; 9_000]).unwrap();
                        let mut s = states.last().unwrap().clone();
                        s[100..9_100].fill(gen);
                        states.push(s);
                    }
                    let after = sim.crash_with(mode, seed);
                    let image = file_of(&after, "/f");
                    assert_eq!(image.len(), 10_000);
                    let g = mode.granule().unwrap();
                    for (k, chunk) in image.chunks(g).enumerate() {
                        let lo = k * g;
                        let real = states.iter().any(|s| &s[lo..lo + chunk.len()] == chunk);
                        // Vectored pieces add intermediate states within a
                        // granule: each byte is then from some generation.
                        let bytewise = chunk.iter().all(|b| (1..5).contains(b));
                        assert!(
                            real || (pattern == WritePattern::Vectored && bytewise),
                            "{mode:?} {pattern:?} seed {seed}: granule {k} never existed"
                        );
                    }
                }
            }
        }
    }

    /// A crash can land on an exact mutating operation.
    #[test]
    fn freeze_stops_at_the_planned_operation() {
        let sim = SimEnv::new(1);
        let f = sim
            .open(
                Path::new("/f"),
                OpenOptions {
                    create: true,
                    ..OpenOptions::default()
                },
            )
            .unwrap();
        sim.freeze_after_ops(Some(3));
        f.write_at(0, b"a").unwrap();
        f.sync_data().unwrap();
        assert!(f.write_at(1, b"b").is_err());
        assert!(!sim.is_alive());
        let after = sim.crash_with(TornMode::Prefix, 7);
        assert_eq!(file_of(&after, "/f"), b"a");
        let cont = sim.process_crash();
        assert!(cont.is_alive());
    }

    /// `crash(torn, seed)` still draws as it always did.
    #[test]
    fn prefix_mode_is_crash_torn() {
        for seed in 0..20 {
            let build = || {
                let sim = SimEnv::new(seed);
                let f = sim
                    .open(
                        Path::new("/f"),
                        OpenOptions {
                            create: true,
                            ..OpenOptions::default()
                        },
                    )
                    .unwrap();
                for i in 0..5u8 {
                    f.write_at(i as u64 * 7, &[i + 1; 9]).unwrap();
                }
                sim
            };
            let a = file_of(&build().crash(true, seed), "/f");
            let b = file_of(&build().crash_with(TornMode::Prefix, seed), "/f");
            assert_eq!(a, b);
        }
    }
}
