//! `mqlab inspect`: what a store directory holds, without modifying it.
//!
//! Two independent views, so that a bug in one shows against the other:
//! - a raw scan of the commit-log segment files, opened read-only with
//!   std::fs and decoded with the engine's record codec (every CRC
//!   checked), which finds the end of valid data in each segment and any
//!   corrupt record before it;
//! - the engine's own recovery, run on an in-memory overlay of the
//!   directory (`StoreConfig::read_only`), which says what recovery would
//!   truncate, and gives the offsets and queues it would start with.

use std::fs;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use mqlab_engine::log::checkpoint::Checkpoint;
use mqlab_engine::log::parse_file_name;
use mqlab_engine::log::record::{self, CrcCheck, DecodeError, Decoded};
use mqlab_engine::{QueueInfo, RecoveryReport, Store, StoreConfig};
use serde::Serialize;

use crate::summary::render_table;
use crate::util::thousands;

/// A record that decodes structurally but fails a checksum: its length is
/// trustworthy enough to step over it and keep scanning.
#[derive(Debug, Clone, Serialize)]
pub struct BadRecord {
    /// Physical offset.
    pub offset: u64,
    /// Why.
    pub reason: String,
}

/// Where and why the raw scan of a segment stopped before its end.
#[derive(Debug, Clone, Serialize)]
pub struct ScanStop {
    /// Physical offset of the first byte that is not a valid record.
    pub offset: u64,
    /// The decode error there.
    pub reason: String,
    /// Non-zero bytes found in the 4 MiB after the stop: 0 means the
    /// never-written tail of a segment, anything else a torn write or damage.
    pub nonzero_bytes_after: u64,
    /// A valid record (CRC and self-referencing PHYSICALOFFSET checked)
    /// found within the 4 MiB after the stop: data resumes there, so the
    /// stop is not the end of what was written.
    pub resumes_at: Option<u64>,
}

/// One commit-log segment as the raw scan saw it.
#[derive(Debug, Clone, Serialize)]
pub struct SegmentScan {
    /// File name.
    pub name: String,
    /// Physical offset of the first byte.
    pub base: u64,
    /// File length, bytes.
    pub file_bytes: u64,
    /// Bytes of valid records (and the end blank) from the start.
    pub valid_bytes: u64,
    /// Message records.
    pub records: u64,
    /// Ends with the blank record (the writer rolled to the next segment).
    pub ends_with_blank: bool,
    /// Store timestamps of the first and last records, ms.
    pub first_store_ms: Option<i64>,
    /// See `first_store_ms`.
    pub last_store_ms: Option<i64>,
    /// Records with a bad checksum that the scan stepped over.
    pub bad_records: Vec<BadRecord>,
    /// Why the scan stopped before the file's end, unless at the blank.
    pub stop: Option<ScanStop>,
    /// Physical offset of the last valid message record.
    pub last_record_at: Option<u64>,
}

/// The raw scan of a whole commit log.
#[derive(Debug, Clone, Serialize, Default)]
pub struct RawScan {
    /// Segments in offset order.
    pub segments: Vec<SegmentScan>,
    /// Files in commitlog/ that are not segments.
    pub ignored_files: Vec<String>,
}

const TAIL_PROBE_BYTES: u64 = 4 << 20;

impl RawScan {
    /// Message records in all segments.
    pub fn records(&self) -> u64 {
        self.segments.iter().map(|s| s.records).sum()
    }

    /// End of valid data: the physical offset after the last valid record
    /// of the last segment holding any.
    pub fn end_offset(&self) -> u64 {
        self.segments
            .iter()
            .rev()
            .find(|s| s.valid_bytes > 0)
            .map(|s| s.base + s.valid_bytes)
            .or_else(|| self.segments.first().map(|s| s.base))
            .unwrap_or(0)
    }

    /// What the raw scan found wrong: `(corruption, warnings)`.
    /// Corruption is damage no crash explains: a record failing its
    /// checksum with valid data after it, or (after a clean shutdown) any
    /// bytes that do not decode before the end of data. After an unclean
    /// shutdown, a bad last record or undecodable bytes followed by valid
    /// records are only warnings: a torn write, or pages persisted out of
    /// order before a power loss; the ack log (`verify --acked`) decides.
    pub fn findings(&self, clean_shutdown: bool) -> (Vec<String>, Vec<String>) {
        let mut bad = Vec::new();
        let mut warn = Vec::new();
        let last_with_data = self
            .segments
            .iter()
            .rposition(|s| s.valid_bytes > 0 || s.stop.is_some());
        for (i, s) in self.segments.iter().enumerate() {
            let is_last = last_with_data == Some(i);
            for b in &s.bad_records {
                let msg = format!("{}: record at {}: {}", s.name, b.offset, b.reason);
                let trailing = is_last
                    && s.last_record_at.is_none_or(|r| r < b.offset)
                    && s.stop.as_ref().is_none_or(|st| st.resumes_at.is_none());
                if trailing && !clean_shutdown {
                    warn.push(format!(
                        "{msg} (the last record of an unclean store: a torn write)"
                    ));
                } else {
                    bad.push(msg);
                }
            }
            let Some(stop) = &s.stop else { continue };
            let later_data = last_with_data.is_some_and(|l| l > i);
            let msg = if later_data {
                Some(format!(
                    "{}: valid data ends at {} ({}) but later segments hold records",
                    s.name, stop.offset, stop.reason
                ))
            } else if let Some(at) = stop.resumes_at {
                Some(format!(
                    "{}: bytes at {} do not decode ({}) but valid records resume at {at}",
                    s.name, stop.offset, stop.reason
                ))
            } else if stop.nonzero_bytes_after > 0 && clean_shutdown {
                Some(format!(
                    "{}: {} non-zero bytes after the end at {} ({}) in a cleanly shut down store",
                    s.name, stop.nonzero_bytes_after, stop.offset, stop.reason
                ))
            } else {
                None
            };
            match msg {
                Some(m) if clean_shutdown => bad.push(m),
                Some(m) => warn.push(format!(
                    "{m} (corruption, or pages persisted out of order before a power loss: \
                     check with --acked)"
                )),
                None => {}
            }
        }
        (bad, warn)
    }

    /// Garbage after the end of the last segment (a torn write after a
    /// crash): `(offset, bytes)` when present.
    pub fn torn_tail(&self) -> Option<(u64, u64)> {
        let s = self
            .segments
            .iter()
            .rev()
            .find(|s| s.stop.is_some() || s.valid_bytes > 0)?;
        let stop = s.stop.as_ref()?;
        (stop.nonzero_bytes_after > 0).then_some((stop.offset, stop.nonzero_bytes_after))
    }
}

fn count_nonzero(f: &fs::File, from: u64, file_len: u64) -> Result<u64> {
    let end = file_len.min(from + TAIL_PROBE_BYTES);
    let mut n = 0u64;
    let mut pos = from;
    let mut buf = vec![0u8; 256 * 1024];
    while pos < end {
        let want = ((end - pos) as usize).min(buf.len());
        let got = f.read_at(&mut buf[..want], pos)?;
        if got == 0 {
            break;
        }
        n += buf[..got].iter().filter(|&&b| b != 0).count() as u64;
        pos += got as u64;
    }
    Ok(n)
}

/// Looks for a valid record in the 4 MiB after `from`: a position whose
/// magic is a record magic and whose record decodes with its checksums and
/// a PHYSICALOFFSET equal to its position (garbage essentially never does).
fn find_resume(f: &fs::File, base: u64, from: u64, file_len: u64) -> Result<Option<u64>> {
    let end = file_len.min(from + TAIL_PROBE_BYTES);
    if end <= from + 8 {
        return Ok(None);
    }
    let mut buf = vec![0u8; (end - from) as usize];
    let n = f.read_at(&mut buf, from)?;
    buf.truncate(n);
    for p in 1..buf.len().saturating_sub(8) {
        let magic = u32::from_be_bytes([buf[p + 4], buf[p + 5], buf[p + 6], buf[p + 7]]);
        if magic != record::MAGIC_V1 && magic != record::MAGIC_V2 {
            continue;
        }
        let at = from + p as u64;
        let left = file_len - at;
        if let Ok(Decoded::Message(_)) =
            record::decode(&buf[p..], base + at, left, CrcCheck::Present)
        {
            return Ok(Some(base + at));
        }
    }
    Ok(None)
}

/// Reads a file through a large buffer: the raw scan decodes records from
/// memory instead of two reads per record.
struct Chunked<'a> {
    f: &'a fs::File,
    file_bytes: u64,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    start: u64,
    /// Valid bytes in `buf`.
    len: usize,
}

impl<'a> Chunked<'a> {
    const BYTES: usize = 4 << 20;

    fn new(f: &'a fs::File, file_bytes: u64) -> Self {
        Chunked {
            f,
            file_bytes,
            buf: Vec::new(),
            start: 0,
            len: 0,
        }
    }

    /// Up to `n` bytes at `pos` (fewer only at the end of the file).
    fn get(&mut self, pos: u64, n: usize) -> std::io::Result<&[u8]> {
        let inside = pos >= self.start && pos + n as u64 <= self.start + self.len as u64;
        if !inside {
            let want = n
                .max(Self::BYTES)
                .min((self.file_bytes - pos.min(self.file_bytes)) as usize);
            self.buf.resize(want.max(n), 0);
            let mut done = 0;
            while done < want {
                match self
                    .f
                    .read_at(&mut self.buf[done..want], pos + done as u64)?
                {
                    0 => break,
                    k => done += k,
                }
            }
            self.start = pos;
            self.len = done;
        }
        let at = (pos - self.start) as usize;
        let end = (at + n).min(self.len);
        Ok(&self.buf[at..end])
    }
}

fn scan_segment(path: &Path, name: &str, base: u64) -> Result<SegmentScan> {
    let f = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let file_bytes = f.metadata()?.len();
    let mut s = SegmentScan {
        name: name.to_string(),
        base,
        file_bytes,
        valid_bytes: 0,
        records: 0,
        ends_with_blank: false,
        first_store_ms: None,
        last_store_ms: None,
        bad_records: Vec::new(),
        stop: None,
        last_record_at: None,
    };
    let mut pos = 0u64;
    let mut chunk = Chunked::new(&f, file_bytes);
    while pos < file_bytes {
        let left = file_bytes - pos;
        let header = record::peek_header(chunk.get(pos, left.min(8) as usize)?);
        let total = match header {
            Ok((total, _)) => total as u64,
            Err(e) => {
                let reason = e.to_string();
                let nonzero = if matches!(e, DecodeError::Zero) {
                    count_nonzero(&f, pos, file_bytes)?
                } else {
                    count_nonzero(&f, pos, file_bytes)?.max(1)
                };
                let resumes_at = if matches!(e, DecodeError::Zero) {
                    None
                } else {
                    find_resume(&f, base, pos, file_bytes)?
                };
                s.stop = Some(ScanStop {
                    offset: base + pos,
                    reason,
                    nonzero_bytes_after: nonzero,
                    resumes_at,
                });
                break;
            }
        };
        let want = total.min(left) as usize;
        match record::decode(chunk.get(pos, want)?, base + pos, left, CrcCheck::Present) {
            Ok(Decoded::Blank(_)) => {
                s.ends_with_blank = true;
                s.valid_bytes = file_bytes;
                break;
            }
            Ok(Decoded::Message(m)) => {
                s.records += 1;
                s.last_record_at = Some(base + pos);
                s.first_store_ms.get_or_insert(m.store_timestamp_ms);
                s.last_store_ms = Some(m.store_timestamp_ms);
                pos += total;
                s.valid_bytes = pos;
            }
            Err(e @ (DecodeError::BodyCrc { .. } | DecodeError::RecordCrc { .. })) => {
                // The length is consistent with the fields: step over it.
                s.bad_records.push(BadRecord {
                    offset: base + pos,
                    reason: e.to_string(),
                });
                pos += total;
                s.valid_bytes = pos;
            }
            Err(e) => {
                s.stop = Some(ScanStop {
                    offset: base + pos,
                    reason: e.to_string(),
                    nonzero_bytes_after: count_nonzero(&f, pos, file_bytes)?.max(1),
                    resumes_at: find_resume(&f, base, pos, file_bytes)?,
                });
                break;
            }
        }
    }
    Ok(s)
}

/// Phase progress of `verify` and `inspect` on stderr: a spinner naming
/// the phase and the time spent in it, drawn only when stderr is a
/// terminal (indicatif hides it otherwise: pipes and captured output see
/// nothing), cleared when dropped. Stdout is never touched.
pub struct Phases {
    pb: ProgressBar,
}

impl Phases {
    /// Progress of command `cmd` ("verify", "inspect") on stderr.
    pub fn new(cmd: &str) -> Phases {
        Phases::with_target(cmd, ProgressDrawTarget::stderr())
    }

    fn with_target(cmd: &str, target: ProgressDrawTarget) -> Phases {
        let pb = ProgressBar::with_draw_target(None, target);
        let style = ProgressStyle::with_template("{spinner} mqlab {prefix}: {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        pb.set_style(style);
        pb.set_prefix(cmd.to_string());
        pb.set_message("starting");
        if !pb.is_hidden() {
            pb.enable_steady_tick(Duration::from_millis(100));
        }
        Phases { pb }
    }

    /// Enters a phase ("raw scan of the commit log", ...).
    pub fn phase(&self, what: impl Into<String>) {
        self.pb.reset_elapsed();
        self.pb.set_message(what.into());
    }

    /// Updates the current phase's text without resetting its clock.
    pub fn detail(&self, what: impl Into<String>) {
        self.pb.set_message(what.into());
    }

    /// Prints a line on stderr without garbling the spinner.
    pub fn eprintln(&self, line: &str) {
        self.pb.suspend(|| eprintln!("{line}"));
    }
}

impl Drop for Phases {
    fn drop(&mut self) {
        self.pb.finish_and_clear();
    }
}

/// Scans `<dir>/commitlog/` read-only, showing which segment it reads in
/// `phases`.
pub fn raw_scan_with(dir: &Path, phases: &Phases) -> Result<RawScan> {
    let cl = dir.join("commitlog");
    let mut out = RawScan::default();
    let mut names: Vec<(u64, String)> = Vec::new();
    if cl.is_dir() {
        for e in fs::read_dir(&cl).with_context(|| format!("listing {}", cl.display()))? {
            let name = e?.file_name().to_string_lossy().into_owned();
            match parse_file_name(&name) {
                Some(base) => names.push((base, name)),
                None => out.ignored_files.push(name),
            }
        }
    }
    names.sort();
    let n = names.len();
    phases.phase(format!("raw scan of the commit log, {n} segments"));
    for (i, (base, name)) in names.into_iter().enumerate() {
        phases.detail(format!(
            "raw scan of the commit log, segment {} of {n}",
            i + 1
        ));
        out.segments
            .push(scan_segment(&cl.join(&name), &name, base)?);
    }
    Ok(out)
}

/// Fails unless `dir` looks like a store: a directory with a `commitlog`
/// directory in it (an empty commit log is a store with no messages yet).
pub fn require_store(dir: &Path) -> Result<()> {
    match fs::metadata(dir) {
        Err(e) => {
            Err(anyhow::Error::new(e).context(format!("reading store directory {}", dir.display())))
        }
        Ok(m) if !m.is_dir() => anyhow::bail!(
            "{} is not a directory (expected a store directory)",
            dir.display()
        ),
        Ok(_) if !dir.join("commitlog").is_dir() => anyhow::bail!(
            "{} is not a store: it has no commitlog directory ({} is missing)",
            dir.display(),
            dir.join("commitlog").display()
        ),
        Ok(_) => Ok(()),
    }
}

/// Opens the store read-only (recovery in memory, the directory untouched).
pub fn open_read_only(dir: &Path) -> Result<Store> {
    require_store(dir)?;
    let cfg = StoreConfig {
        read_only: true,
        ..StoreConfig::default()
    };
    Store::open(dir, cfg).with_context(|| format!("recovering {} (in memory)", dir.display()))
}

/// A file under the store and its size.
#[derive(Debug, Clone, Serialize)]
pub struct FileInfo {
    /// Path relative to the store.
    pub path: String,
    /// Bytes.
    pub bytes: u64,
}

/// Everything inspect reports.
#[derive(Debug, Serialize)]
pub struct Inspection {
    /// The directory.
    pub data_dir: String,
    /// `abort` marker present: the last run did not shut down cleanly.
    pub abort_marker: bool,
    /// The checkpoint file's fields.
    pub checkpoint: Option<Checkpoint>,
    /// Raw scan of the commit log.
    pub commit_log: RawScan,
    /// Consume-queue files.
    pub consume_queue_files: Vec<FileInfo>,
    /// Index files.
    pub index_files: Vec<FileInfo>,
    /// Offsets after recovery.
    pub offsets: Option<crate::recorder::OffsetsJson>,
    /// Queues after recovery.
    pub queues: Vec<QueueInfo>,
    /// What recovery did (in memory), including what it would truncate.
    pub recovery: Option<RecoveryReport>,
    /// Why recovery failed, if it did.
    pub recovery_error: Option<String>,
    /// Damage the raw scan found that no crash explains.
    pub corruption: Vec<String>,
    /// Damage a crash may explain (see `RawScan::findings`).
    pub warnings: Vec<String>,
}

fn walk_files(root: &Path, sub: &str) -> Vec<FileInfo> {
    let mut out = Vec::new();
    let mut stack = vec![root.join(sub)];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(md) = e.metadata() {
                out.push(FileInfo {
                    path: p
                        .strip_prefix(root)
                        .unwrap_or(&p)
                        .to_string_lossy()
                        .into_owned(),
                    bytes: md.len(),
                });
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

fn read_checkpoint(dir: &Path) -> Option<Checkpoint> {
    let mut f = fs::File::open(dir.join("checkpoint")).ok()?;
    let mut b = Vec::new();
    f.read_to_end(&mut b).ok()?;
    Some(Checkpoint::decode(&b))
}

/// Builds the inspection of `dir`, showing its phases in `phases`.
pub fn inspect_with(dir: &Path, phases: &Phases) -> Result<Inspection> {
    require_store(dir)?;
    let abort_marker = dir.join("abort").exists();
    let commit_log = raw_scan_with(dir, phases)?;
    let (corruption, warnings) = commit_log.findings(!abort_marker);
    phases.phase("recovery (in memory)");
    let (offsets, queues, recovery, recovery_error) = match open_read_only(dir) {
        Ok(store) => {
            if let Some(w) = store.lock_warning() {
                phases.eprintln(&format!("warning: {w}"));
            }
            let r = (
                Some(store.offsets().into()),
                store.queues(),
                Some(store.recovery_report().clone()),
                None,
            );
            drop(store);
            r
        }
        Err(e) => (None, Vec::new(), None, Some(format!("{e:#}"))),
    };
    Ok(Inspection {
        data_dir: dir.display().to_string(),
        abort_marker,
        checkpoint: read_checkpoint(dir),
        commit_log,
        consume_queue_files: walk_files(dir, "consumequeue"),
        index_files: walk_files(dir, "index"),
        offsets,
        queues,
        recovery,
        recovery_error,
        corruption,
        warnings,
    })
}

fn ms_to_utc(ms: i64) -> String {
    if ms <= 0 {
        return "-".into();
    }
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:03}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms.rem_euclid(1000)
    )
}

fn civil(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Human-readable text of an inspection.
pub fn render(i: &Inspection) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(o, "store {}", i.data_dir);
    let _ = writeln!(
        o,
        "shutdown: {}",
        if i.abort_marker {
            "UNCLEAN (abort marker present: next open runs abnormal recovery)"
        } else {
            "clean"
        }
    );
    if let Some(c) = &i.checkpoint {
        let _ = writeln!(
            o,
            "checkpoint: physic {} | logics {} | index {}",
            ms_to_utc(c.physic_msg_timestamp),
            ms_to_utc(c.logics_msg_timestamp),
            ms_to_utc(c.index_msg_timestamp)
        );
        if let Some(e) = c.ext {
            let _ = writeln!(
                o,
                "            dispatched {} | flushed {} | clean end {}",
                e.dispatched, e.flushed, e.clean_end
            );
        }
    } else {
        let _ = writeln!(o, "checkpoint: none");
    }
    let mut rows = vec![vec![
        "segment".to_string(),
        "file bytes".into(),
        "valid bytes".into(),
        "records".into(),
        "first store time".into(),
        "last store time".into(),
        "ends".into(),
    ]];
    for s in &i.commit_log.segments {
        let ends = if s.ends_with_blank {
            "blank (rolled)".to_string()
        } else {
            match &s.stop {
                Some(st) if st.nonzero_bytes_after == 0 => "zeros".into(),
                Some(st) => format!("{} at {}", st.reason, st.offset),
                None => "file end".into(),
            }
        };
        rows.push(vec![
            s.name.clone(),
            thousands(s.file_bytes as f64),
            thousands(s.valid_bytes as f64),
            thousands(s.records as f64),
            s.first_store_ms.map_or("-".into(), ms_to_utc),
            s.last_store_ms.map_or("-".into(), ms_to_utc),
            ends,
        ]);
    }
    let _ = writeln!(
        o,
        "\ncommit log: {} segments, {} records, valid data ends at {}",
        i.commit_log.segments.len(),
        thousands(i.commit_log.records() as f64),
        i.commit_log.end_offset()
    );
    o.push_str(&render_table(&rows));
    if !i.commit_log.ignored_files.is_empty() {
        let _ = writeln!(o, "ignored in commitlog/: {:?}", i.commit_log.ignored_files);
    }
    if let Some(off) = &i.offsets {
        let _ = writeln!(
            o,
            "\noffsets after recovery: written {} committed {} flushed {}",
            off.written, off.committed, off.flushed
        );
    }
    if !i.queues.is_empty() {
        let mut rows = vec![vec![
            "topic".to_string(),
            "queue".into(),
            "min offset".into(),
            "max offset".into(),
        ]];
        for q in &i.queues {
            rows.push(vec![
                q.topic.clone(),
                q.queue_id.to_string(),
                q.min_offset.to_string(),
                q.max_offset.to_string(),
            ]);
        }
        let _ = writeln!(o, "\nqueues:");
        o.push_str(&render_table(&rows));
    }
    let cq_bytes: u64 = i.consume_queue_files.iter().map(|f| f.bytes).sum();
    let _ = writeln!(
        o,
        "\nconsume-queue files: {} ({} bytes); index files: {}",
        i.consume_queue_files.len(),
        thousands(cq_bytes as f64),
        i.index_files
            .iter()
            .map(|f| f.path.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    match (&i.recovery, &i.recovery_error) {
        (Some(r), _) => {
            let _ = writeln!(
                o,
                "\nrecovery ({}): parsed from {} to {}, {} records scanned, {} re-dispatched, {} ms",
                if r.abnormal { "abnormal" } else { "normal" },
                r.start_offset,
                r.end_offset,
                r.records_scanned,
                r.redispatched,
                r.elapsed_ms
            );
            if r.truncated.is_empty() {
                let _ = writeln!(o, "recovery would truncate nothing");
            }
            for t in &r.truncated {
                let _ = writeln!(
                    o,
                    "recovery would truncate {} at {} ({} bytes): {}",
                    t.file.display(),
                    t.offset,
                    t.bytes,
                    t.reason
                );
            }
            for n in &r.notes {
                let _ = writeln!(o, "note: {n}");
            }
        }
        (None, Some(e)) => {
            let _ = writeln!(o, "\nrecovery FAILED: {e}");
        }
        _ => {}
    }
    for w in &i.warnings {
        let _ = writeln!(o, "warning: {w}");
    }
    if i.corruption.is_empty() {
        let _ = writeln!(o, "\nraw scan: no corruption");
    } else {
        let _ = writeln!(o, "\nraw scan found CORRUPTION:");
        for c in &i.corruption {
            let _ = writeln!(o, "  {c}");
        }
    }
    o
}

/// `mqlab inspect`: exits 1 when recovery (in memory) failed, after
/// printing what it could read.
pub fn cmd_inspect(dir: &Path, json: bool) -> Result<()> {
    let phases = Phases::new("inspect");
    let i = inspect_with(dir, &phases);
    drop(phases);
    let i = i?;
    if json {
        crate::util::print_out(&format!("{}\n", serde_json::to_string_pretty(&i)?));
    } else {
        crate::util::print_out(&render(&i));
    }
    if let Some(e) = &i.recovery_error {
        anyhow::bail!("recovery of {} failed: {e}", dir.display());
    }
    Ok(())
}
