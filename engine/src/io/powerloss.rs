//! Power-loss marks: a simulated power loss for a store run by a real
//! process (issue 14).
//!
//! The in-process simulator ([`super::sim`]) cannot follow a broker that
//! runs as its own process and dies by SIGKILL. [`PowerLossEnv`] wraps the
//! store's real backend and records, in a sidecar file
//! `<store>/powerloss.marks` (format: `engine/FORMAT.md`, section 10),
//! what each file has made durable: after every successful `sync_data`
//! (or `write_at_and_sync`) the end of what was written to that file
//! before the sync began, and, before a write lands below what the marks
//! already call unsynced, that write's offset. The marks are plain
//! `write(2)`s, never synced: a SIGKILL keeps the page cache, so the
//! marks of a killed process are all there, which is all the simulation
//! needs (a real power loss would of course take them too).
//!
//! [`apply`] then rewrites a killed store's files to what a power loss at
//! the moment of the kill could have left, per kind of file:
//!
//! - append-only files (`commitlog/`, `consumequeue/`, `timerlog/`): the
//!   synced prefix stays, everything from the first byte that may be
//!   unsynced on is zeroed (as in a preallocated file never written);
//! - index files (`index/`): items are appended in item order, while the
//!   header and the hash slots are rewritten in place; the items past the
//!   synced end are zeroed and the header and slots are left as last
//!   written (unsynced writes may reach the disk in any order: the slots
//!   then point at zeroed items, which recovery's rebuild of the newest
//!   index file must cope with);
//! - everything else (the checkpoint, `abort`, config JSON files and
//!   their companions, `timerwheel`, `timercheck`, an epoch file): files
//!   rewritten in place. Each sync of such a file of at most
//!   [`MAX_COPY_BYTES`] records its whole content; after a power loss a
//!   file written since its last sync gets that content back (the old
//!   version: the rewrite never reached the disk). A larger one is kept as
//!   last written and reported.
//!
//! What is not simulated: directory entries (a file created or removed
//! since the directory's last sync is kept as the process left it), and
//! torn sectors inside a synced range.
//!
//! The marks describe one run: a `PowerLossEnv` truncates the marks file
//! when it starts (whatever is on disk then counts as durable; recovery
//! syncs everything it keeps before it accepts puts). The file grows by a
//! line per sync per file; it is a lab switch, not for long runs.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::{self, Read, Seek, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use super::{Env, File, OpenOptions};

/// Name of the marks file in the store directory.
pub const MARKS_FILE: &str = "powerloss.marks";
/// What [`apply`] renames the marks file to once applied.
pub const APPLIED_FILE: &str = "powerloss.marks.applied";
/// Largest in-place file whose synced content is recorded (and restored
/// by [`apply`]).
pub const MAX_COPY_BYTES: u64 = 64 * 1024;

/// How a power loss treats a file, by its path in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileKind {
    /// Written only at its end: the synced prefix survives.
    Append,
    /// An index file: items appended, header and slots in place.
    Index,
    /// Rewritten in place: the last synced content survives.
    InPlace,
}

impl FileKind {
    /// The kind of the file at `rel` (relative to the store directory,
    /// `/`-separated).
    pub fn of(rel: &str) -> FileKind {
        let first = rel.split('/').next().unwrap_or("");
        match first {
            "commitlog" | "consumequeue" | "timerlog" if rel.contains('/') => FileKind::Append,
            "index" if rel.contains('/') => FileKind::Index,
            _ => FileKind::InPlace,
        }
    }
}

/// The append-only sidecar file.
struct Marks {
    file: Mutex<std::fs::File>,
}

impl Marks {
    fn record(&self, line: &str) -> io::Result<()> {
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        f.write_all(line.as_bytes())
    }
}

/// Per file (shared by every handle of the same path).
#[derive(Default)]
struct Track {
    /// Writes hold it shared while they run; a sync's snapshot takes it
    /// exclusively, so every write counted before the snapshot is done.
    gate: RwLock<()>,
    /// One sync at a time (snapshot to `S` line).
    sync: Mutex<()>,
    st: Mutex<State>,
}

struct State {
    /// Largest end of any write.
    hi: u64,
    /// Lowest offset written since the last sync began (u64::MAX: none).
    lo_since: u64,
    /// Lowest offset the marks file calls possibly unsynced (u64::MAX:
    /// none).
    lo_recorded: u64,
    /// An in-place file's content as found has been recorded.
    copied: bool,
}

impl Default for State {
    fn default() -> Self {
        State {
            hi: 0,
            lo_since: u64::MAX,
            lo_recorded: u64::MAX,
            copied: false,
        }
    }
}

/// An [`Env`] that records the durable prefix of every file of one store
/// directory (see the module documentation).
pub struct PowerLossEnv {
    inner: Arc<dyn Env>,
    root: PathBuf,
    marks: Arc<Marks>,
    tracks: Mutex<HashMap<String, Arc<Track>>>,
}

impl PowerLossEnv {
    /// Wraps `inner` for the store in `root`, starting a new marks file
    /// there (an old one is truncated).
    pub fn new(inner: Arc<dyn Env>, root: &Path) -> io::Result<PowerLossEnv> {
        std::fs::create_dir_all(root)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(root.join(MARKS_FILE))?;
        Ok(PowerLossEnv {
            inner,
            root: root.to_path_buf(),
            marks: Arc::new(Marks {
                file: Mutex::new(file),
            }),
            tracks: Mutex::new(HashMap::new()),
        })
    }

    /// `path` relative to the store directory, `/`-separated, when it is
    /// inside it and representable in a marks line.
    fn rel(&self, path: &Path) -> Option<String> {
        let rel = path.strip_prefix(&self.root).ok()?;
        let mut parts = Vec::new();
        for c in rel.components() {
            match c {
                Component::Normal(s) => parts.push(s.to_str()?),
                _ => return None,
            }
        }
        let s = parts.join("/");
        let ok = !s.is_empty()
            && s != MARKS_FILE
            && !s.starts_with(APPLIED_FILE)
            && !s.contains(['\n', '\r']);
        ok.then_some(s)
    }

    fn track(&self, rel: &str) -> Arc<Track> {
        self.tracks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(rel.to_string())
            .or_default()
            .clone()
    }
}

impl Env for PowerLossEnv {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn open(&self, path: &Path, opts: OpenOptions) -> io::Result<Arc<dyn File>> {
        let existed = self.inner.exists(path);
        let file = self.inner.open(path, opts)?;
        if opts.read_only {
            return Ok(file);
        }
        let Some(rel) = self.rel(path) else {
            return Ok(file);
        };
        let kind = FileKind::of(&rel);
        let track = self.track(&rel);
        if kind == FileKind::Index && existed {
            // An index file from before this run: its items (where ever
            // they end) count as durable; only a file created in this run
            // has its unsynced items dropped.
            let mut st = track.st.lock().unwrap_or_else(|e| e.into_inner());
            st.hi = st.hi.max(file.len());
        }
        Ok(Arc::new(MarkedFile {
            kind,
            track,
            rel,
            inner: file,
            marks: self.marks.clone(),
        }))
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = self.inner.list_dir(path)?;
        if path == self.root {
            names.retain(|n| n != MARKS_FILE);
        }
        Ok(names)
    }

    fn is_dir(&self, path: &Path) -> bool {
        self.inner.is_dir(path)
    }

    fn exists(&self, path: &Path) -> bool {
        self.inner.exists(path)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir_all(path)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        if let Some(rel) = self.rel(path) {
            let t = self.track(&rel);
            let _g = t.gate.write().unwrap_or_else(|e| e.into_inner());
            self.inner.remove_file(path)?;
            *t.st.lock().unwrap_or_else(|e| e.into_inner()) = State::default();
            return self.marks.record(&format!("R {rel}\n"));
        }
        self.inner.remove_file(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.inner.sync_dir(path)
    }
}

struct MarkedFile {
    inner: Arc<dyn File>,
    rel: String,
    kind: FileKind,
    track: Arc<Track>,
    marks: Arc<Marks>,
}

impl MarkedFile {
    /// Before a write (or a truncation) at `offset` ending at `end`:
    /// records the offset when the marks do not already call it unsynced,
    /// and an in-place file's content the first time it is written.
    fn before_write(&self, st: &mut State, offset: u64, end: u64) -> io::Result<()> {
        if self.kind == FileKind::InPlace && !st.copied {
            self.record_copy("F")?;
            st.copied = true;
        }
        if offset < st.lo_recorded {
            self.marks.record(&format!("W {offset} {}\n", self.rel))?;
            st.lo_recorded = offset;
        }
        st.lo_since = st.lo_since.min(offset);
        st.hi = st.hi.max(end);
        Ok(())
    }

    /// A `C` (content a sync makes durable) or `F` (content found before
    /// the first write, durable by assumption) line with the file's whole
    /// content (in-place files up to [`MAX_COPY_BYTES`]); nothing for
    /// larger ones.
    fn record_copy(&self, tag: &str) -> io::Result<()> {
        let len = self.inner.len();
        if len > MAX_COPY_BYTES {
            return Ok(());
        }
        let mut buf = vec![0u8; len as usize];
        let n = self.inner.read_at(0, &mut buf)?;
        buf.truncate(n);
        let used = buf.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        let mut line = String::with_capacity(used * 2 + self.rel.len() + 32);
        let _ = write!(line, "{tag} {len} ");
        if used == 0 {
            line.push('-');
        }
        for b in &buf[..used] {
            let _ = write!(line, "{b:02x}");
        }
        let _ = writeln!(line, " {}", self.rel);
        self.marks.record(&line)
    }

    /// A sync's snapshot: every write counted so far is done; returns the
    /// end written before the sync.
    fn snapshot(&self) -> io::Result<u64> {
        let _g = self.track.gate.write().unwrap_or_else(|e| e.into_inner());
        let mut st = self.track.st.lock().unwrap_or_else(|e| e.into_inner());
        if self.kind == FileKind::InPlace {
            // The content this sync makes durable (no write runs now),
            // counted by `apply` once the `S` line follows.
            self.record_copy("C")?;
            st.copied = true;
        }
        st.lo_since = u64::MAX;
        Ok(st.hi)
    }

    /// After a successful sync of everything written up to `end`.
    fn synced(&self, end: u64) -> io::Result<()> {
        let mut st = self.track.st.lock().unwrap_or_else(|e| e.into_inner());
        // Writes begun since the snapshot may be unsynced; for files
        // written at their end, so is anything past `end`.
        let from = match self.kind {
            FileKind::InPlace => st.lo_since,
            _ => st.lo_since.min(end),
        };
        st.lo_recorded = from;
        let from = if from == u64::MAX {
            "-".to_string()
        } else {
            from.to_string()
        };
        self.marks.record(&format!("S {end} {from} {}\n", self.rel))
    }
}

impl File for MarkedFile {
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        let _g = self.track.gate.read().unwrap_or_else(|e| e.into_inner());
        {
            let mut st = self.track.st.lock().unwrap_or_else(|e| e.into_inner());
            self.before_write(&mut st, offset, offset + buf.len() as u64)?;
        }
        self.inner.write_at(offset, buf)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read_at(offset, buf)
    }

    fn sync_data(&self) -> io::Result<()> {
        let _s = self.track.sync.lock().unwrap_or_else(|e| e.into_inner());
        let end = self.snapshot()?;
        self.inner.sync_data()?;
        self.synced(end)
    }

    fn write_at_and_sync(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        // Exclusive: no other write of this file runs between the
        // snapshot (which counts this write) and the chained sync.
        let _s = self.track.sync.lock().unwrap_or_else(|e| e.into_inner());
        let _g = self.track.gate.write().unwrap_or_else(|e| e.into_inner());
        let end = {
            let mut st = self.track.st.lock().unwrap_or_else(|e| e.into_inner());
            self.before_write(&mut st, offset, offset + buf.len() as u64)?;
            st.lo_since = u64::MAX;
            st.hi
        };
        self.inner.write_at_and_sync(offset, buf)?;
        if self.kind == FileKind::InPlace {
            self.record_copy("C")?;
        }
        self.synced(end)
    }

    fn next_data(&self, offset: u64) -> io::Result<Option<u64>> {
        self.inner.next_data(offset)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let _g = self.track.gate.read().unwrap_or_else(|e| e.into_inner());
        {
            let mut st = self.track.st.lock().unwrap_or_else(|e| e.into_inner());
            let cur = self.inner.len();
            if len != cur {
                self.before_write(&mut st, len.min(cur), len.max(cur))?;
            }
        }
        self.inner.set_len(len)
    }

    fn len(&self) -> u64 {
        self.inner.len()
    }
}

// ---------------------------------------------------------------------
// Applying a power loss.

/// What [`apply`] did to one file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FileLoss {
    /// Path relative to the store directory.
    pub file: String,
    /// How a power loss treats it.
    pub kind: FileKind,
    /// First byte that may have been unsynced (the cut), when any.
    pub unsynced_from: Option<u64>,
    /// Bytes that were not zero and were zeroed (append-only and index
    /// files), or the bytes of an in-place file that differed from its
    /// restored content (counted as the larger length when they differ).
    pub bytes_dropped: u64,
    /// What was done: "zeroed from N", "restored the synced copy", "kept
    /// (...)", "untouched".
    pub action: String,
}

/// What [`apply`] did to a store directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PowerLossReport {
    /// Marks lines read.
    pub marks: u64,
    /// Lines that did not parse (a torn last line, or damage), ignored.
    pub bad_lines: u64,
    /// Every file named by the marks that still exists, in name order.
    pub files: Vec<FileLoss>,
    /// Files whose bytes changed.
    pub files_changed: u64,
    /// Sum of `bytes_dropped`.
    pub bytes_dropped: u64,
}

/// One file's marks, replayed.
#[derive(Debug, Default)]
struct Replayed {
    /// End of the last sync.
    end: Option<u64>,
    /// Possibly unsynced from here on.
    from: Option<u64>,
    /// The last durable content (len, bytes without trailing zeros).
    copy: Option<(u64, Vec<u8>)>,
    /// A `C` line's content, durable once an `S` line follows.
    pending: Option<(u64, Vec<u8>)>,
}

fn parse_hex(s: &str) -> Option<Vec<u8>> {
    if s == "-" {
        return Some(Vec::new());
    }
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A store-relative path from a marks line, refused when it could leave
/// the directory.
fn safe_rel(s: &str) -> Option<&str> {
    let p = Path::new(s);
    let ok = !s.is_empty()
        && p.components().all(|c| matches!(c, Component::Normal(_)))
        && s != MARKS_FILE;
    ok.then_some(s)
}

/// Replays the marks text: per file, the sync state at the end.
fn replay(text: &[u8], report: &mut PowerLossReport) -> BTreeMap<String, Replayed> {
    let mut files: BTreeMap<String, Replayed> = BTreeMap::new();
    let mut lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
    // The piece after the last newline is torn (or empty).
    if let Some(last) = lines.pop() {
        if !last.is_empty() {
            report.bad_lines += 1;
        }
    }
    for raw in lines {
        report.marks += 1;
        let Ok(line) = std::str::from_utf8(raw) else {
            report.bad_lines += 1;
            continue;
        };
        let mut it = line.splitn(2, ' ');
        let tag = it.next().unwrap_or("");
        let rest = it.next().unwrap_or("");
        let ok = match tag {
            "W" => rest.split_once(' ').and_then(|(off, path)| {
                let off: u64 = off.parse().ok()?;
                let f = files.entry(safe_rel(path)?.to_string()).or_default();
                f.from = Some(f.from.map_or(off, |x| x.min(off)));
                Some(())
            }),
            "S" => {
                let mut p = rest.splitn(3, ' ');
                (|| {
                    let end: u64 = p.next()?.parse().ok()?;
                    let from = match p.next()? {
                        "-" => None,
                        n => Some(n.parse::<u64>().ok()?),
                    };
                    let f = files.entry(safe_rel(p.next()?)?.to_string()).or_default();
                    f.end = Some(end);
                    f.from = from;
                    if let Some(c) = f.pending.take() {
                        f.copy = Some(c);
                    }
                    Some(())
                })()
            }
            "C" | "F" => {
                let mut p = rest.splitn(3, ' ');
                (|| {
                    let len: u64 = p.next()?.parse().ok()?;
                    let bytes = parse_hex(p.next()?)?;
                    if bytes.len() as u64 > len || len > MAX_COPY_BYTES {
                        return None;
                    }
                    let f = files.entry(safe_rel(p.next()?)?.to_string()).or_default();
                    if tag == "F" {
                        f.copy = Some((len, bytes));
                    } else {
                        f.pending = Some((len, bytes));
                    }
                    Some(())
                })()
            }
            "R" => safe_rel(rest).map(|path| {
                files.insert(path.to_string(), Replayed::default());
            }),
            _ => None,
        };
        if ok.is_none() {
            report.bad_lines += 1;
        }
    }
    files
}

/// Zeroes every non-zero byte of `[from, len)`; returns how many there
/// were. Holes of a sparse file are skipped unread.
fn zero_from(f: &mut std::fs::File, from: u64, len: u64) -> io::Result<u64> {
    const CHUNK: u64 = 1 << 20;
    let mut dropped = 0u64;
    let mut pos = from;
    let mut buf = vec![0u8; CHUNK as usize];
    let zeros = vec![0u8; CHUNK as usize];
    while pos < len {
        pos = match super::fsutil::seek_data(f, pos, len)? {
            Some(p) => p,
            None => break,
        };
        let n = (len - pos).min(CHUNK - pos % CHUNK) as usize;
        f.seek(io::SeekFrom::Start(pos))?;
        f.read_exact(&mut buf[..n])?;
        let nz = buf[..n].iter().filter(|&&b| b != 0).count() as u64;
        if nz > 0 {
            f.seek(io::SeekFrom::Start(pos))?;
            f.write_all(&zeros[..n])?;
            dropped += nz;
        }
        pos += n as u64;
    }
    Ok(dropped)
}

fn apply_one(dir: &Path, rel: &str, r: &Replayed) -> io::Result<Option<FileLoss>> {
    let path = dir.join(rel);
    let mut f = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if !f.metadata()?.is_file() {
        return Ok(None);
    }
    let len = f.metadata()?.len();
    let kind = FileKind::of(rel);
    let mut loss = FileLoss {
        file: rel.to_string(),
        kind,
        unsynced_from: r.from,
        bytes_dropped: 0,
        action: "untouched (synced)".into(),
    };
    match kind {
        FileKind::Append | FileKind::Index => {
            // An index file's header and slots are written in place below
            // its items: only the items past the synced end are dropped.
            // Without a sync in this run, what an index file held before
            // counts as durable and its unsynced items are left to
            // recovery's rebuild (items past the re-dispatch start).
            let cut = match kind {
                FileKind::Append => r.from,
                _ => r.from.and(r.end),
            };
            if let Some(cut) = cut.filter(|&c| c < len) {
                loss.bytes_dropped = zero_from(&mut f, cut, len)?;
                loss.action = format!("zeroed from {cut}");
                if kind == FileKind::Index {
                    loss.action
                        .push_str(" (items; header and slots as last written)");
                }
            }
        }
        FileKind::InPlace => {
            if r.from.is_some() {
                match &r.copy {
                    Some((clen, bytes)) => {
                        let mut now = Vec::new();
                        f.seek(io::SeekFrom::Start(0))?;
                        Read::by_ref(&mut f)
                            .take(MAX_COPY_BYTES + 1)
                            .read_to_end(&mut now)?;
                        let mut want = bytes.clone();
                        want.resize(*clen as usize, 0);
                        let differ =
                            now.len() != want.len() || now.iter().zip(&want).any(|(a, b)| a != b);
                        if differ {
                            f.set_len(0)?;
                            f.seek(io::SeekFrom::Start(0))?;
                            f.write_all(&want)?;
                            f.set_len(*clen)?;
                            loss.bytes_dropped =
                                now.iter().zip(&want).filter(|(a, b)| a != b).count() as u64
                                    + now.len().abs_diff(want.len()) as u64;
                            loss.action = "restored the synced copy".into();
                        } else {
                            loss.action = "unsynced rewrite equal to the synced copy".into();
                        }
                    }
                    None => {
                        loss.action = format!(
                            "kept as last written (unsynced since {}, no synced copy: over {MAX_COPY_BYTES} bytes)",
                            r.from.unwrap_or(0)
                        );
                    }
                }
            }
        }
    }
    Ok(Some(loss))
}

/// Rewrites the files of the store in `dir` (not running: killed) to what
/// a power loss at the moment it stopped could have left, per its marks
/// file (see the module documentation), then renames the marks file to
/// [`APPLIED_FILE`] so a second call does nothing. Fails when there is no
/// marks file (the store did not run with power-loss marks).
pub fn apply(dir: &Path) -> io::Result<PowerLossReport> {
    let marks = dir.join(MARKS_FILE);
    let text = match std::fs::read(&marks) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound && dir.join(APPLIED_FILE).exists() => {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{} has no {MARKS_FILE} but a {APPLIED_FILE}: the power loss was applied already",
                    dir.display()
                ),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{} has no {MARKS_FILE}: run the store with power-loss marks \
                     (StoreConfig::power_loss_marks, mqlab broker --power-loss-marks)",
                    dir.display()
                ),
            ))
        }
        Err(e) => return Err(e),
    };
    let mut report = PowerLossReport::default();
    let files = replay(&text, &mut report);
    for (rel, r) in &files {
        if let Some(loss) = apply_one(dir, rel, r)? {
            if loss.bytes_dropped > 0 {
                report.files_changed += 1;
                report.bytes_dropped += loss.bytes_dropped;
            }
            report.files.push(loss);
        }
    }
    std::fs::rename(&marks, dir.join(APPLIED_FILE))?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert_eq!(
            FileKind::of("commitlog/00000000000000000000"),
            FileKind::Append
        );
        assert_eq!(
            FileKind::of("consumequeue/T/0/00000000000000000000"),
            FileKind::Append
        );
        assert_eq!(FileKind::of("index/20250101120000123"), FileKind::Index);
        assert_eq!(FileKind::of("checkpoint"), FileKind::InPlace);
        assert_eq!(FileKind::of("config/topics.json"), FileKind::InPlace);
        assert_eq!(FileKind::of("commitlog"), FileKind::InPlace);
    }

    #[test]
    fn replay_ignores_garbage_and_unsafe_paths() {
        let text = b"W 5 commitlog/0\nS 10 10 commitlog/0\nW 3 ../x\nC 4 zz checkpoint\n\xff\xfe\nQ 1 a\nW 7 commitlog/0\nS 1";
        let mut rep = PowerLossReport::default();
        let f = replay(text, &mut rep);
        assert_eq!(rep.marks, 7);
        assert_eq!(rep.bad_lines, 5);
        let c = &f["commitlog/0"];
        assert_eq!((c.end, c.from), (Some(10), Some(7)));
        assert_eq!(f.len(), 1);
    }

    #[test]
    fn wrapped_writes_leave_marks_and_apply_drops_unsynced() {
        let dir = tempfile::tempdir().unwrap();
        let env = PowerLossEnv::new(Arc::new(super::super::pwrite::PwriteEnv::new()), dir.path())
            .unwrap();
        let seg = dir.path().join("commitlog/00000000000000000000");
        env.create_dir_all(seg.parent().unwrap()).unwrap();
        let opts = OpenOptions {
            create: true,
            len: 8192,
            ..OpenOptions::default()
        };
        let f = env.open(&seg, opts).unwrap();
        f.write_at(0, &[1u8; 100]).unwrap();
        f.sync_data().unwrap();
        f.write_at(100, &[2u8; 50]).unwrap();
        let cp = env.open(&dir.path().join("checkpoint"), opts).unwrap();
        cp.write_at(0, b"old").unwrap();
        cp.sync_data().unwrap();
        cp.write_at(0, b"new").unwrap();
        drop((f, cp, env));
        let rep = apply(dir.path()).unwrap();
        assert_eq!(rep.bad_lines, 0);
        let seg_bytes = std::fs::read(&seg).unwrap();
        assert!(seg_bytes[..100].iter().all(|&b| b == 1));
        assert!(seg_bytes[100..].iter().all(|&b| b == 0));
        let cpb = std::fs::read(dir.path().join("checkpoint")).unwrap();
        assert_eq!(&cpb[..3], b"old");
        assert_eq!(cpb.len(), 8192);
        let s = rep
            .files
            .iter()
            .find(|l| l.file.starts_with("commitlog"))
            .unwrap();
        assert_eq!((s.unsynced_from, s.bytes_dropped), (Some(100), 50));
        // Applied once: the marks are gone.
        assert!(apply(dir.path()).is_err());
    }
}
