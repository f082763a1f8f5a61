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
//!    through its consume queue and (with a key) through the index. An ack
//!    log written from what a wire client was told (message id and queue
//!    offset, see `client_acks`) is first resolved to those records.
//!
//! Exit status 0 only when nothing acknowledged is missing and nothing is
//! corrupt.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use mqlab_engine::RecoveryReport;
use serde::Serialize;

mod acks;
mod client_acks;

use crate::inspect::{open_read_only, raw_scan_with, Phases};
use crate::util::thousands;
use acks::ack_findings;
pub use acks::{check_each, parse_ack_log, AckCheck, AckJoin, AckLine};
pub use client_acks::{ClientAck, CLIENT_ACK_LOG_HEADER};

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
    /// Acknowledged messages missing or unreachable (with `--acked`).
    pub lost: Vec<String>,
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
    /// Where the time went.
    pub timings: Timings,
}

/// Wall time of verify's phases, ms (the raw scan and the store's scan
/// each read the whole commit log; recovery includes re-dispatch).
#[derive(Debug, Default, Serialize)]
pub struct Timings {
    /// Raw CRC scan of every segment file.
    pub raw_scan_ms: u64,
    /// Read-only recovery (in memory).
    pub recovery_ms: u64,
    /// Waiting for re-dispatch and the store's scan (joined with the ack
    /// log).
    pub store_scan_ms: u64,
    /// Queue and index reachability of the acknowledged messages.
    pub acks_ms: u64,
    /// Everything.
    pub total_ms: u64,
}

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
        let what = format!("recovery would cut {}", cut(t));
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

/// Verifies `dir` (and the ack log, if given), showing its phases in
/// `phases`.
pub fn verify_with(
    dir: &Path,
    acked: Option<&Path>,
    use_index: bool,
    phases: &Phases,
) -> Result<VerifyReport> {
    crate::inspect::require_store(dir)?;
    let started = Instant::now();
    let mut phase = Instant::now();
    let mut timings = Timings::default();
    let mut lap = |t: &mut u64| {
        *t = phase.elapsed().as_millis() as u64;
        phase = Instant::now();
    };
    let clean_shutdown = !dir.join("abort").exists();
    let raw = raw_scan_with(dir, phases)?;
    lap(&mut timings.raw_scan_ms);
    phases.phase("recovery (in memory)");
    let (mut corruption, mut warnings) = raw.findings(clean_shutdown);
    let mut notes = Vec::new();
    let flushed = checkpoint_flushed(dir);
    let store = open_read_only(dir)?;
    if let Some(w) = store.lock_warning() {
        warnings.push(w.to_string());
    }
    let recovery = store.recovery_report().clone();
    corruption.extend(judge_truncations(&recovery, clean_shutdown, flushed));
    lap(&mut timings.recovery_ms);
    phases.phase("rebuilding consume queues and index");
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
    let mut unresolved = Vec::new();
    let acks = match acked {
        Some(path) => {
            phases.phase("reading the ack log");
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the ack log {}", path.display()))?;
            let (lines, n) = if client_acks::is_client_log(text.lines().next().unwrap_or("")) {
                let (client, n) = acks::parse_records(
                    &text,
                    client_acks::CLIENT_ACK_LOG_HEADER,
                    client_acks::parse_line,
                )?;
                phases.phase("resolving the clients' message ids");
                let (lines, u) = client_acks::resolve(&store, &client)
                    .with_context(|| format!("resolving the ack log {}", path.display()))?;
                unresolved = u;
                (lines, n)
            } else {
                parse_ack_log(&text)?
            };
            notes.extend(n);
            Some(lines)
        }
        None => None,
    };
    phases.phase("store scan, CRC of every record");
    let mut join = acks.as_deref().map(AckJoin::new);
    let mut records = 0u64;
    let mut scan_error = None;
    let scan_end = store
        .scan(store.min_offset(), &mut |r| match r {
            Ok(m) => {
                records += 1;
                if let Some(j) = &mut join {
                    j.record(m);
                }
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
    lap(&mut timings.store_scan_ms);
    let acked = match join {
        Some(j) => Some({
            phases.phase("ack checks via queues and index");
            let mut c = j.finish(&store, recovery.end_offset, use_index)?;
            // Lines naming no record at all: missing, like any other.
            c.lines += unresolved.len() as u64;
            c.missing += unresolved.len() as u64;
            for u in unresolved {
                acks::example(&mut c, u);
            }
            c
        }),
        None => None,
    };
    lap(&mut timings.acks_ms);
    timings.total_ms = started.elapsed().as_millis() as u64;
    drop(store);
    let mut lost = Vec::new();
    if let Some(a) = &acked {
        let (c, l) = ack_findings(a);
        corruption.extend(c);
        lost = l;
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
        lost,
        warnings,
        torn_tail,
        acked,
        notes,
        ok,
        timings,
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
        let _ = writeln!(o, "  would truncate {}", cut(t));
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
    if !r.lost.is_empty() {
        let _ = writeln!(o, "LOSS:");
        for l in &r.lost {
            let _ = writeln!(o, "  {l}");
        }
    }
    if r.corruption.is_empty() {
        let _ = writeln!(o, "corruption: none");
    } else {
        let _ = writeln!(o, "CORRUPTION:");
        for c in &r.corruption {
            let _ = writeln!(o, "  {c}");
        }
    }
    let t = &r.timings;
    let _ = writeln!(
        o,
        "time: {} ms (raw scan {}, recovery {}, store scan {}, ack checks {})",
        t.total_ms, t.raw_scan_ms, t.recovery_ms, t.store_scan_ms, t.acks_ms
    );
    let _ = writeln!(o, "{}", if r.ok { "OK" } else { "FAILED" });
    o
}

/// `mqlab verify`: exits 1 when something is missing or corrupt.
pub fn cmd_verify(data_dir: &Path, acked: Option<&Path>, json: bool, no_index: bool) -> Result<()> {
    let phases = Phases::new("verify");
    let r = verify_with(data_dir, acked, !no_index, &phases);
    drop(phases);
    let r = r?;
    if json {
        crate::util::print_out(&format!("{}\n", serde_json::to_string_pretty(&r)?));
    } else {
        crate::util::print_out(&render(&r));
    }
    if !r.ok {
        std::process::exit(1);
    }
    Ok(())
}

/// A cut recovery would make: "<file> at <offset> (<n> bytes): <reason>".
fn cut(t: &mqlab_engine::Truncation) -> String {
    format!(
        "{} at {} ({} bytes): {}",
        t.file.display(),
        t.offset,
        t.bytes,
        t.reason
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recorder::ACK_LOG_HEADER;
    use mqlab_engine::Store;

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
        let (c, l) = ack_findings(&a);
        assert_eq!(c.len(), 1);
        assert!(c[0].contains("426"));
        assert!(l.is_empty());
        let (c, l) = ack_findings(&AckCheck {
            missing: 3,
            unreachable_via_index: 1,
            ..AckCheck::default()
        });
        assert!(c.is_empty());
        assert_eq!(l.len(), 2);
        assert_eq!(ack_findings(&AckCheck::default()), (vec![], vec![]));
    }

    #[test]
    fn the_bulk_check_agrees_with_one_lookup_per_line() {
        use mqlab_engine::message::Message;
        use mqlab_engine::StoreConfig;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreConfig::small()).unwrap();
        let mut acks = Vec::new();
        for i in 0..3_000u32 {
            let topic = if i % 3 == 0 { "TA" } else { "TB" };
            let msg = Message::new(topic, vec![7u8; 100])
                .with_queue(i % 4)
                .with_keys(format!("k{i}"));
            let r = store.put(&msg);
            let o = r.offsets.expect("stored");
            acks.push(AckLine {
                line: i as usize + 2,
                topic: topic.into(),
                queue_id: i % 4,
                queue_offset: o.queue_offset,
                phys: o.phys_offset,
                key: format!("k{i}"),
            });
        }
        store.shutdown().unwrap();
        // Lines that must fail: no record there, wrong key, wrong queue
        // offset, past the end.
        let mut bad = acks[10].clone();
        bad.phys += 1;
        acks.push(bad);
        let mut bad = acks[20].clone();
        bad.key = "other".into();
        acks.push(bad);
        let mut bad = acks[30].clone();
        bad.queue_offset += 1;
        acks.push(bad);
        let mut bad = acks[40].clone();
        bad.phys = 1 << 40;
        acks.push(bad);
        let ro = open_read_only(dir.path()).unwrap();
        let end = ro.recovery_report().end_offset;
        assert!(ro.wait_dispatched(end, Duration::from_secs(10)));
        let mut join = AckJoin::new(&acks);
        ro.scan(ro.min_offset(), &mut |r| {
            join.record(r.unwrap());
            true
        })
        .unwrap();
        let bulk = join.finish(&ro, end, true).unwrap();
        let each = check_each(&ro, &acks, end, true, AckCheck::default());
        let counts = |c: &AckCheck| {
            (
                c.lines,
                c.ok,
                c.missing,
                c.corrupt,
                c.unreachable_via_queue,
                c.unreachable_via_index,
            )
        };
        assert_eq!(counts(&bulk), counts(&each));
        assert_eq!(bulk.lines, 3_004);
        assert_eq!(bulk.ok, 3_000);
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
