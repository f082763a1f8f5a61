//! `mqlab verify`: is everything that was acknowledged still there, and is
//! nothing corrupt?
//!
//! The directory is never modified: the store is recovered into an
//! in-memory overlay (`StoreConfig::read_only`), and the raw scan reads the
//! segment files read-only. Checks:
//! 1. raw scan of every commit-log record with CRCs: a bad record followed
//!    by valid data, or garbage after the end of a cleanly shut down store,
//!    is corruption; garbage after the end of an unclean one is a torn
//!    write of unacknowledged data (reported, not a failure);
//! 2. the recovered store's own CRC-checked scan from its first offset;
//! 3. with `--acked`, every ack-log line: a valid record at that physical
//!    offset with that topic, queue id, queue offset and key, reachable
//!    through its consume queue and (with a key) through the index.
//!
//! Exit status 0 only when nothing acknowledged is missing and nothing is
//! corrupt.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use mqlab_engine::{Error as EngineError, RecoveryReport, Store};
use serde::Serialize;

use crate::cli::VerifyArgs;
use crate::inspect::{open_read_only, raw_scan};
use crate::recorder::ACK_LOG_HEADER;
use crate::util::thousands;

/// One line of an ack log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckLine {
    /// 1-based line number.
    pub line: usize,
    /// Topic.
    pub topic: String,
    /// Queue id.
    pub queue_id: u32,
    /// Queue offset.
    pub queue_offset: u64,
    /// Physical offset.
    pub phys: u64,
    /// Key ("" for none).
    pub key: String,
}

/// Parses an ack log. A last line without its newline is a write cut short
/// by a kill: it is skipped and reported in the notes. Any other bad line is
/// an error.
pub fn parse_ack_log(text: &str) -> Result<(Vec<AckLine>, Vec<String>)> {
    let mut out = Vec::new();
    let mut notes = Vec::new();
    let complete = text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        let n = i + 1;
        if i == 0 {
            if l.trim() != ACK_LOG_HEADER {
                anyhow::bail!("ack log line 1: expected the header {ACK_LOG_HEADER:?}, got {l:?}");
            }
            continue;
        }
        if l.trim().is_empty() {
            continue;
        }
        if i + 1 == lines.len() && !complete {
            // Cut anywhere by a kill, even where it still parses (a phys
            // offset missing digits): never trust it.
            notes.push(format!(
                "ack log line {n} has no newline (writer killed?): skipped"
            ));
            continue;
        }
        let f: Vec<&str> = l.splitn(5, ',').collect();
        let parsed = (|| -> Option<AckLine> {
            if f.len() != 5 {
                return None;
            }
            Some(AckLine {
                line: n,
                topic: f[0].to_string(),
                queue_id: f[1].parse().ok()?,
                queue_offset: f[2].parse().ok()?,
                phys: f[3].parse().ok()?,
                key: f[4].to_string(),
            })
        })();
        match parsed {
            Some(a) => out.push(a),
            None => anyhow::bail!("ack log line {n}: cannot parse {l:?}"),
        }
    }
    Ok((out, notes))
}

/// Results of checking an ack log.
#[derive(Debug, Default, Serialize)]
pub struct AckCheck {
    /// Lines checked.
    pub lines: u64,
    /// Present and reachable.
    pub ok: u64,
    /// Not there (past the end of data, or another record in its place).
    pub missing: u64,
    /// A record is there but fails its checksum.
    pub corrupt: u64,
    /// Present, but its consume-queue unit does not point at it.
    pub unreachable_via_queue: u64,
    /// Present with a key, but the index does not find it.
    pub unreachable_via_index: u64,
    /// The first few problems, one line each.
    pub examples: Vec<String>,
}

/// verify's report.
#[derive(Debug, Serialize)]
pub struct VerifyReport {
    /// Directory.
    pub data_dir: String,
    /// No abort marker.
    pub clean_shutdown: bool,
    /// What recovery did (in memory).
    pub recovery: RecoveryReport,
    /// Records found by the raw scan.
    pub raw_records: u64,
    /// End of valid data per the raw scan.
    pub raw_end_offset: u64,
    /// Records walked by the store's scan.
    pub store_scan_records: u64,
    /// Where the store's scan ended.
    pub store_scan_end: u64,
    /// Error the store's scan stopped at, if any.
    pub store_scan_error: Option<String>,
    /// Corruption found.
    pub corruption: Vec<String>,
    /// Damage a crash may explain (torn writes, out-of-order persistence).
    pub warnings: Vec<String>,
    /// Garbage after the end of an unclean store: (offset, non-zero bytes).
    pub torn_tail: Option<(u64, u64)>,
    /// Ack-log check.
    pub acked: Option<AckCheck>,
    /// Notes.
    pub notes: Vec<String>,
    /// Verdict.
    pub ok: bool,
}

const MAX_EXAMPLES: usize = 20;

/// The flushed offset the checkpoint vouches for (mqlab's checkpoint
/// extension), if the store has one.
fn checkpoint_flushed(dir: &Path) -> Option<u64> {
    let b = std::fs::read(dir.join("checkpoint")).ok()?;
    mqlab_engine::log::checkpoint::Checkpoint::decode(&b)
        .ext
        .map(|e| e.flushed)
}

/// Which of recovery's cuts are corruption. After a clean shutdown every
/// cut is. After a crash, cuts at or past the last flushed offset are the
/// torn tail of unacknowledged (or not yet durable) writes and the queue
/// units and index items that pointed into it; a cut below the flushed
/// offset lost durable data, and a segment after a gap is never a crash's
/// doing. Without a flushed offset (a checkpoint from another writer) only
/// the gap rule and the raw scan's findings apply.
pub fn judge_truncations(r: &RecoveryReport, clean: bool, flushed: Option<u64>) -> Vec<String> {
    let mut out = Vec::new();
    if !clean {
        if let Some(f) = flushed.filter(|f| r.end_offset < *f) {
            out.push(format!(
                "recovery ends at {} below the checkpoint's flushed offset {f}: durable data would be cut",
                r.end_offset
            ));
        }
    }
    for t in &r.truncated {
        let what = format!(
            "recovery would cut {} at {} ({} bytes): {}",
            t.file.display(),
            t.offset,
            t.bytes,
            t.reason
        );
        let in_log = t
            .file
            .parent()
            .and_then(|p| p.file_name())
            .is_some_and(|n| n == "commitlog");
        if clean {
            out.push(format!("{what} (after a clean shutdown)"));
        } else if t.reason.contains("after a gap") {
            out.push(what);
        } else if in_log && flushed.is_some_and(|f| t.offset < f) {
            out.push(format!(
                "{what} (below the checkpoint's flushed offset {})",
                flushed.unwrap_or(0)
            ));
        }
    }
    out
}

/// The ack-log check's failures as corruption lines, so the summary agrees
/// with the counts.
fn ack_corruption(a: &AckCheck) -> Vec<String> {
    let mut out = Vec::new();
    if a.corrupt > 0 {
        out.push(format!(
            "{} acknowledged messages fail their checksum",
            a.corrupt
        ));
    }
    if a.missing > 0 {
        out.push(format!("{} acknowledged messages are missing", a.missing));
    }
    let unreachable = a.unreachable_via_queue + a.unreachable_via_index;
    if unreachable > 0 {
        out.push(format!(
            "{unreachable} acknowledged messages cannot be reached ({} via queue, {} via index)",
            a.unreachable_via_queue, a.unreachable_via_index
        ));
    }
    out
}

fn check_acks(store: &Store, acks: &[AckLine], end: u64, use_index: bool) -> AckCheck {
    let mut c = AckCheck::default();
    let example = |c: &mut AckCheck, s: String| {
        if c.examples.len() < MAX_EXAMPLES {
            c.examples.push(s);
        }
    };
    for a in acks {
        c.lines += 1;
        let m = match store.get(a.phys) {
            Ok(m) => m,
            Err(e @ (EngineError::ChecksumMismatch { .. } | EngineError::Corrupt { .. }))
                if a.phys < end =>
            {
                c.corrupt += 1;
                example(
                    &mut c,
                    format!("line {}: phys {} corrupt: {e}", a.line, a.phys),
                );
                continue;
            }
            Err(e) => {
                c.missing += 1;
                example(
                    &mut c,
                    format!(
                        "line {}: key {:?} at phys {} missing: {e}",
                        a.line, a.key, a.phys
                    ),
                );
                continue;
            }
        };
        let key_ok = a.key.is_empty() || m.keys().any(|k| k == a.key);
        if m.topic != a.topic
            || m.queue_id != a.queue_id
            || m.queue_offset != a.queue_offset
            || !key_ok
        {
            c.missing += 1;
            example(
                &mut c,
                format!(
                    "line {}: at phys {} expected {}/{}@{} key {:?}, found {}/{}@{} keys {:?}",
                    a.line,
                    a.phys,
                    a.topic,
                    a.queue_id,
                    a.queue_offset,
                    a.key,
                    m.topic,
                    m.queue_id,
                    m.queue_offset,
                    m.keys().collect::<Vec<_>>().join(" ")
                ),
            );
            continue;
        }
        let mut ok = true;
        match store.get_from_queue(&a.topic, a.queue_id, a.queue_offset, 1) {
            Ok(v) if v.first().is_some_and(|q| q.phys_offset == a.phys) => {}
            other => {
                ok = false;
                c.unreachable_via_queue += 1;
                let what = match other {
                    Ok(v) => match v.first() {
                        Some(q) => format!("unit points at phys {}", q.phys_offset),
                        None => "no unit".to_string(),
                    },
                    Err(e) => e.to_string(),
                };
                example(
                    &mut c,
                    format!(
                        "line {}: {}/{}@{} not reachable through its consume queue: {what}",
                        a.line, a.topic, a.queue_id, a.queue_offset
                    ),
                );
            }
        }
        if use_index && !a.key.is_empty() {
            match store.query_by_key(&a.topic, &a.key, 0, i64::MAX) {
                Ok(v) if v.iter().any(|m| m.phys_offset == a.phys) => {}
                other => {
                    ok = false;
                    c.unreachable_via_index += 1;
                    let what = match other {
                        Ok(v) => format!("{} other hits", v.len()),
                        Err(e) => e.to_string(),
                    };
                    example(
                        &mut c,
                        format!(
                            "line {}: key {:?} not found through the index ({what})",
                            a.line, a.key
                        ),
                    );
                }
            }
        }
        if ok {
            c.ok += 1;
        }
    }
    c
}

/// Verifies `dir` (and the ack log, if given).
pub fn verify(dir: &Path, acked: Option<&Path>, use_index: bool) -> Result<VerifyReport> {
    crate::inspect::require_store(dir)?;
    let clean_shutdown = !dir.join("abort").exists();
    let raw = raw_scan(dir)?;
    let (mut corruption, mut warnings) = raw.findings(clean_shutdown);
    let mut notes = Vec::new();
    let flushed = checkpoint_flushed(dir);
    let store = open_read_only(dir)?;
    if let Some(w) = store.lock_warning() {
        warnings.push(w.to_string());
    }
    let recovery = store.recovery_report().clone();
    corruption.extend(judge_truncations(&recovery, clean_shutdown, flushed));
    if !store.wait_dispatched(recovery.end_offset, Duration::from_secs(60)) {
        corruption.push(format!(
            "consume queues and index not rebuilt: the dispatcher stopped at {} of {}{}",
            store.dispatched_offset(),
            recovery.end_offset,
            store
                .poisoned()
                .map(|p| format!(" ({p})"))
                .unwrap_or_default()
        ));
    } else if let Some(p) = store.poisoned() {
        corruption.push(format!("the recovered store failed: {p}"));
    }
    let mut records = 0u64;
    let mut scan_error = None;
    let scan_end = store
        .scan(store.min_offset(), &mut |r| match r {
            Ok(_) => {
                records += 1;
                true
            }
            Err(e) => {
                scan_error = Some(e.to_string());
                false
            }
        })
        .context("scanning the recovered store")?;
    if let Some(e) = &scan_error {
        corruption.push(format!("store scan stopped at a bad record: {e}"));
    }
    let raw_end = raw.end_offset();
    let torn_tail = if clean_shutdown {
        None
    } else {
        raw.torn_tail()
    };
    if recovery.end_offset < raw_end && raw.segments.iter().all(|s| s.bad_records.is_empty()) {
        corruption.push(format!(
            "recovery ends at {} but valid records continue to {raw_end}",
            recovery.end_offset
        ));
    }
    let acked = match acked {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the ack log {}", path.display()))?;
            let (lines, n) = parse_ack_log(&text)?;
            notes.extend(n);
            Some(check_acks(&store, &lines, recovery.end_offset, use_index))
        }
        None => None,
    };
    drop(store);
    if let Some(a) = &acked {
        corruption.extend(ack_corruption(a));
    }
    let acks_ok = acked.as_ref().is_none_or(|a| {
        a.missing == 0
            && a.corrupt == 0
            && a.unreachable_via_queue == 0
            && a.unreachable_via_index == 0
    });
    let ok = corruption.is_empty() && acks_ok;
    Ok(VerifyReport {
        data_dir: dir.display().to_string(),
        clean_shutdown,
        recovery,
        raw_records: raw.records(),
        raw_end_offset: raw_end,
        store_scan_records: records,
        store_scan_end: scan_end,
        store_scan_error: scan_error,
        corruption,
        warnings,
        torn_tail,
        acked,
        notes,
        ok,
    })
}

/// Human-readable report.
pub fn render(r: &VerifyReport) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "verify {} ({} shutdown)",
        r.data_dir,
        if r.clean_shutdown { "clean" } else { "UNCLEAN" }
    );
    let _ = writeln!(
        o,
        "records: {} by raw scan (valid data ends at {}), {} by the recovered store's scan (ends at {})",
        thousands(r.raw_records as f64),
        r.raw_end_offset,
        thousands(r.store_scan_records as f64),
        r.store_scan_end
    );
    let _ = writeln!(
        o,
        "recovery ({}): end {}, {} truncation(s)",
        if r.recovery.abnormal {
            "abnormal"
        } else {
            "normal"
        },
        r.recovery.end_offset,
        r.recovery.truncated.len()
    );
    for t in &r.recovery.truncated {
        let _ = writeln!(
            o,
            "  would truncate {} at {} ({} bytes): {}",
            t.file.display(),
            t.offset,
            t.bytes,
            t.reason
        );
    }
    if let Some((at, n)) = r.torn_tail {
        let _ = writeln!(
            o,
            "torn tail: {n} non-zero bytes after the end at {at} (an unacknowledged write cut by the crash; recovery drops it)"
        );
    }
    for n in &r.notes {
        let _ = writeln!(o, "note: {n}");
    }
    for w in &r.warnings {
        let _ = writeln!(o, "warning: {w}");
    }
    if let Some(a) = &r.acked {
        let _ = writeln!(
            o,
            "acked: {} lines: {} ok, {} missing, {} corrupt, {} unreachable via queue, {} unreachable via index",
            thousands(a.lines as f64),
            thousands(a.ok as f64),
            a.missing,
            a.corrupt,
            a.unreachable_via_queue,
            a.unreachable_via_index
        );
        for e in &a.examples {
            let _ = writeln!(o, "  {e}");
        }
    }
    if r.corruption.is_empty() {
        let _ = writeln!(o, "corruption: none");
    } else {
        let _ = writeln!(o, "CORRUPTION or LOSS:");
        for c in &r.corruption {
            let _ = writeln!(o, "  {c}");
        }
    }
    let _ = writeln!(o, "{}", if r.ok { "OK" } else { "FAILED" });
    o
}

/// `mqlab verify`: exits 1 when something is missing or corrupt.
pub fn cmd_verify(args: VerifyArgs) -> Result<()> {
    let r = verify(&args.data_dir, args.acked.as_deref(), !args.no_index)?;
    if args.json {
        crate::util::print_out(&format!("{}\n", serde_json::to_string_pretty(&r)?));
    } else {
        crate::util::print_out(&render(&r));
    }
    if !r.ok {
        std::process::exit(1);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(abnormal: bool, end: u64, cuts: &[(&str, u64, &str)]) -> RecoveryReport {
        RecoveryReport {
            abnormal,
            end_offset: end,
            truncated: cuts
                .iter()
                .map(|(f, off, why)| mqlab_engine::store::Truncation {
                    file: f.into(),
                    offset: *off,
                    bytes: 1,
                    reason: why.to_string(),
                })
                .collect(),
            ..RecoveryReport::default()
        }
    }

    #[test]
    fn only_a_torn_tail_past_the_flushed_offset_is_tolerated() {
        let seg = "/s/commitlog/00000000000000000000";
        let cq = "/s/consumequeue/T/0";
        let torn = report(
            true,
            5_000,
            &[(seg, 5_000, "bad CRC"), (cq, 200, "units past end")],
        );
        assert!(judge_truncations(&torn, false, Some(4_000)).is_empty());
        // The same cuts below the flushed offset lose durable data.
        let deep = report(true, 3_000, &[(seg, 3_000, "bad CRC")]);
        let found = judge_truncations(&deep, false, Some(4_000));
        assert_eq!(found.len(), 2, "{found:?}");
        // Any cut after a clean shutdown, and a gap always.
        assert_eq!(judge_truncations(&torn, true, Some(4_000)).len(), 2);
        let gap = report(
            true,
            9_000,
            &[(seg, 0, "segment after a gap in the segment sequence")],
        );
        assert_eq!(judge_truncations(&gap, false, None).len(), 1);
        assert!(judge_truncations(&report(false, 9, &[]), true, Some(9)).is_empty());
    }

    #[test]
    fn acked_failures_reach_the_summary() {
        let a = AckCheck {
            lines: 1_000,
            ok: 574,
            corrupt: 426,
            ..AckCheck::default()
        };
        let c = ack_corruption(&a);
        assert_eq!(c.len(), 1);
        assert!(c[0].contains("426"));
        assert!(ack_corruption(&AckCheck::default()).is_empty());
    }

    #[test]
    fn ack_log_parsing() {
        let text = format!("{ACK_LOG_HEADER}\nt,1,2,300,k0-1\nt,0,0,0,\nt,1,3");
        let (lines, notes) = parse_ack_log(&text).unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].phys, 300);
        assert_eq!(lines[0].key, "k0-1");
        assert_eq!(lines[1].key, "");
        assert_eq!(notes.len(), 1);
        assert!(parse_ack_log("nope\n").is_err());
        assert!(parse_ack_log(&format!("{ACK_LOG_HEADER}\nx,y\nt,0,0,0,\n")).is_err());
    }
}
