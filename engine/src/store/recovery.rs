//! Recovery at open: finds the end of valid data in the commit log (the
//! clean end from the checkpoint when parsing confirms it, else a scan from
//! the checkpoint's dispatched/flushed offsets after a crash), cuts
//! everything past it (log, consume queues, index), and re-dispatches what
//! the queues and index may lack before anyone reads.
//!
//! Invariants established before the store accepts puts:
//! - `written == committed == flushed == acked == end` (the log's
//!   `set_recovered`), and no queue unit or index item points at or past
//!   `end`.
//! - After a crash every byte called flushed is synced (a crashed process
//!   may have left unsynced pages behind), and the `abort` marker exists
//!   until a clean shutdown removes it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::Inner;
use crate::config::StoreConfig;
use crate::error::{Error, Result};
use crate::index::IndexService;
use crate::io::{Env, OpenOptions};
use crate::log::checkpoint::{Checkpoint, CheckpointExt, CheckpointFile};
use crate::log::record::{self, CrcCheck, Decoded};
use crate::log::scan::{self, ScanEnd};
use crate::log::{CommitLog, LogOptions, QueueTable};
use crate::queue::{QueueSet, UNIT_BYTES};

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

/// What [`recover`] hands to the store it opens.
pub(super) struct Recovered {
    pub(super) log: Arc<CommitLog>,
    pub(super) queues: QueueSet,
    pub(super) index: Option<IndexService>,
    /// The checkpoint as found at open.
    pub(super) checkpoint: Option<Checkpoint>,
    /// CRC checks demanded of this store's records.
    pub(super) crc: CrcCheck,
    /// Recorded in the checkpoint: every record carries the record CRC.
    pub(super) records_have_crc: bool,
    /// Recovered as after a crash (abort marker, or a clean end that did
    /// not hold up).
    pub(super) crashlike: bool,
    /// Where the dispatcher starts (a record boundary).
    pub(super) dispatch_from: u64,
    pub(super) report: RecoveryReport,
}

/// Opens the log, queues and index in `dir` and recovers them up to the
/// end of valid data.
pub(super) fn recover(env: &Arc<dyn Env>, dir: &Path, config: &StoreConfig) -> Result<Recovered> {
    let env = env.clone();
    let dir = dir.to_path_buf();
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
                    reason: format!("{stale} units at the queue's end point at no record of it"),
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

    Ok(Recovered {
        log,
        queues,
        index,
        checkpoint: cp,
        crc,
        records_have_crc,
        crashlike,
        dispatch_from,
        report,
    })
}

/// The second half of recovery, once the store's state exists: rebuilds
/// the index tail and re-dispatches, syncs what a crashed process left,
/// marks the store open (`abort`) and writes the first checkpoint.
pub(super) fn complete(
    inner: &Inner,
    crashlike: bool,
    dispatch_from: u64,
    report: &mut RecoveryReport,
) -> Result<()> {
    let config = &inner.cfg;
    let env = &inner.env;
    let dir = &inner.dir;
    let abort_path = dir.join("abort");
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
        .and_then(|_| env.sync_dir(dir))
        .map_err(|e| Error::io("create", &abort_path, e))?;
        inner.write_checkpoint(0)?;
    }
    Ok(())
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
