//! Opening the commit log: which files are segments, the segment size
//! (taken from the files of an existing log, not the configuration), and
//! where the contiguous run of segments ends. Recovery then finds the end
//! of valid data inside them (`store/recovery.rs`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, RwLock};

use super::staging::Staging;
use super::{AppendState, CommitLog, Segment, MAX_SEGMENT_BASE};
use crate::error::{Error, Result};
use crate::io::{Env, File};
use crate::series::FileSeries;

/// What [`CommitLog::open`] needs.
pub struct LogOptions {
    /// Segment size for a new log (an existing log keeps its own).
    pub segment_bytes: u64,
    /// Preallocate new segments.
    pub preallocate: bool,
    /// Open files read-only.
    pub read_only: bool,
    /// STOREHOST written into records.
    pub store_host: std::net::SocketAddr,
    /// Append the whole-record CRC property.
    pub record_crc: bool,
    /// Transient pool capacity in bytes, when the pool strategy is used.
    pub staging_bytes: Option<usize>,
}

/// The segment size of an existing log: the spacing of the first two names
/// (names are authoritative: a short first file is damage, not geometry),
/// unless the first file's length divides that spacing (a missing segment
/// right after the first); with one file, its length; else `configured`.
fn segment_geometry(
    files: &[(u64, PathBuf, Arc<dyn File>)],
    configured: u64,
    notes: &mut Vec<String>,
) -> u64 {
    let Some((b0, p0, f0)) = files.first() else {
        return configured;
    };
    let len0 = f0.len();
    let size = match files.get(1) {
        Some((b1, _, _)) => {
            let spacing = b1 - b0;
            if len0 >= 4096 && spacing % len0 == 0 {
                len0
            } else {
                spacing
            }
        }
        None if len0 >= 4096 => len0,
        None => configured,
    };
    let size = if size < 4096 { configured } else { size };
    if size != configured {
        notes.push(format!(
            "segment size {size} taken from the files in {} (configured {configured})",
            p0.parent().unwrap_or(p0).display()
        ));
    }
    size
}

impl CommitLog {
    /// Opens the segments in `dir`. Geometry comes from the files: the
    /// segment size is the first file's length. Returns notes on anything
    /// odd (ignored files, gaps) for the recovery report. Segments after a
    /// gap are not opened; `removed_after_gap` lists them for recovery to
    /// delete.
    pub fn open(
        env: Arc<dyn Env>,
        dir: &Path,
        opts: LogOptions,
        notes: &mut Vec<String>,
    ) -> Result<(CommitLog, Vec<PathBuf>)> {
        let series = FileSeries::new(env, dir);
        if !opts.read_only {
            series.create_dir()?;
        }
        let listing = series.list()?;
        for path in &listing.ignored {
            notes.push(format!(
                "ignored {}: not a 20-digit segment name",
                path.display()
            ));
        }
        let mut bases = listing.files;
        // Offsets are signed 64-bit in RocketMQ, and base + size must not
        // overflow: names past 2^62 are not segments of a real store.
        bases.retain(|(b, p)| {
            let ok = *b <= MAX_SEGMENT_BASE;
            if !ok {
                notes.push(format!("ignored {}: offset beyond 2^62", p.display()));
            }
            ok
        });
        let mut files = Vec::with_capacity(bases.len());
        for (base, path) in bases {
            let file = series
                .open(base, opts.read_only)
                .map_err(|e| Error::io("open", &path, e))?;
            files.push((base, path, file));
        }
        let segment_bytes = segment_geometry(&files, opts.segment_bytes, notes);
        let mut segments: Vec<Arc<Segment>> = Vec::new();
        let mut beyond_gap = Vec::new();
        for (base, path, file) in files {
            let (base, path) = (&base, &path);
            if base % segment_bytes != 0 {
                notes.push(format!(
                    "ignored {}: not a multiple of the segment size {segment_bytes}",
                    path.display()
                ));
                continue;
            }
            if !beyond_gap.is_empty() {
                beyond_gap.push(path.clone());
                continue;
            }
            let expected = segments
                .last()
                .map_or(*base, |prev| prev.base + segment_bytes);
            if *base != expected {
                notes.push(format!(
                    "gap before {}: expected a segment at {expected}; it and later segments are discarded",
                    path.display()
                ));
                beyond_gap.push(path.clone());
                continue;
            }
            if file.len() != segment_bytes {
                notes.push(format!(
                    "{} is {} bytes, segment size is {segment_bytes}",
                    path.display(),
                    file.len()
                ));
                if !opts.read_only && file.len() < segment_bytes {
                    file.set_len(segment_bytes)
                        .map_err(|e| Error::io("extend", path, e))?;
                }
            }
            segments.push(Arc::new(Segment {
                base: *base,
                path: path.clone(),
                file,
            }));
        }
        let staging = opts.staging_bytes.map(Staging::new);
        Ok((
            CommitLog {
                series,
                segment_bytes,
                preallocate: opts.preallocate,
                read_only: opts.read_only,
                store_host: opts.store_host,
                record_crc: opts.record_crc,
                segments: RwLock::new(segments),
                append: Mutex::new(AppendState {
                    queue_table: HashMap::new(),
                }),
                written: AtomicU64::new(0),
                committed: AtomicU64::new(0),
                flushed: AtomicU64::new(0),
                acked: AtomicU64::new(0),
                flush_lock: Mutex::new(()),
                poisoned: AtomicBool::new(false),
                poison_reason: Mutex::new(None),
                staging,
                last_append: Mutex::new((0, 0)),
                warmer: std::sync::OnceLock::new(),
                warm_at: AtomicU64::new(u64::MAX),
            },
            beyond_gap,
        ))
    }
}
