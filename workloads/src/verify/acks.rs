//! The ack-log side of `mqlab verify`: parsing an ack log (CSV written by
//! `mqlab run --ack-log`) and checking each acknowledged message against
//! the recovered store: present at its offset, intact, reachable through
//! its consume queue and, with a key, through the index.

use std::collections::HashMap;

use anyhow::{Context, Result};
use mqlab_engine::index::key_hash;
use mqlab_engine::message::StoredMessage;
use mqlab_engine::{Error as EngineError, Store};
use serde::Serialize;

use crate::recorder::ACK_LOG_HEADER;

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
    parse_records(text, ACK_LOG_HEADER, |n, r| {
        let [topic, qid, qoff, phys, key] = r else {
            return None;
        };
        Some(AckLine {
            line: n,
            topic: topic.to_string(),
            queue_id: qid.parse().ok()?,
            queue_offset: qoff.parse().ok()?,
            phys: phys.parse().ok()?,
            key: key.to_string(),
        })
    })
}

/// The records of a CSV ack log whose first line is `header`, each
/// parsed by `parse` (line number, fields), with the rules of
/// [`parse_ack_log`].
pub(super) fn parse_records<T>(
    text: &str,
    header: &str,
    parse: impl Fn(usize, &[&str]) -> Option<T>,
) -> Result<(Vec<T>, Vec<String>)> {
    let mut out = Vec::new();
    let mut notes = Vec::new();
    let complete = text.ends_with('\n');
    let records: Vec<csv::StringRecord> = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes())
        .into_records()
        .collect::<Result<_, _>>()
        .context("ack log: not CSV")?;
    for (i, r) in records.iter().enumerate() {
        let n = r.position().map_or(i as u64 + 1, |p| p.line()) as usize;
        let fields: Vec<&str> = r.iter().collect();
        let l = fields.join(",");
        if i == 0 {
            if l.trim() != header {
                anyhow::bail!("ack log line 1: expected the header {header:?}, got {l:?}");
            }
            continue;
        }
        if l.trim().is_empty() {
            continue;
        }
        if i + 1 == records.len() && !complete {
            // Cut anywhere by a kill, even where it still parses (a phys
            // offset missing digits): never trust it.
            notes.push(format!(
                "ack log line {n} has no newline (writer killed?): skipped"
            ));
            continue;
        }
        match parse(n, &fields) {
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

const MAX_EXAMPLES: usize = 20;

/// The ack-log check's failures for the summary, so it agrees with the
/// counts: `(corruption, loss)`. A checksum failure is corruption; a
/// missing or unreachable message is loss (after a kill, `pool` may lose
/// its transient buffer by design: the caller decides what loss it
/// tolerates, the summary only never hides it).
pub(super) fn ack_findings(a: &AckCheck) -> (Vec<String>, Vec<String>) {
    let mut corrupt = Vec::new();
    let mut lost = Vec::new();
    if a.corrupt > 0 {
        corrupt.push(format!(
            "{} acknowledged messages fail their checksum",
            a.corrupt
        ));
    }
    if a.missing > 0 {
        lost.push(format!("{} acknowledged messages are missing", a.missing));
    }
    let unreachable = a.unreachable_via_queue + a.unreachable_via_index;
    if unreachable > 0 {
        lost.push(format!(
            "{unreachable} acknowledged messages cannot be reached ({} via queue, {} via index)",
            a.unreachable_via_queue, a.unreachable_via_index
        ));
    }
    (corrupt, lost)
}

/// What differs between the ack line `a` and the record `m` found at its
/// offset (topic, queue, queue offset, key); `None` when they agree.
fn mismatch(a: &AckLine, m: &StoredMessage) -> Option<String> {
    let key_ok = a.key.is_empty() || m.keys().any(|k| k == a.key);
    if m.topic == a.topic && m.queue_id == a.queue_id && m.queue_offset == a.queue_offset && key_ok
    {
        return None;
    }
    Some(format!(
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
    ))
}

pub(super) fn example(c: &mut AckCheck, s: String) {
    if c.examples.len() < MAX_EXAMPLES {
        c.examples.push(s);
    }
}

/// The ack-log check, one lookup per line (a record read, a consume-queue
/// read and an index lookup each): the reference the bulk check must
/// agree with, and its path for lines the scan did not reach.
pub fn check_each<'a>(
    store: &Store,
    acks: impl IntoIterator<Item = &'a AckLine>,
    end: u64,
    use_index: bool,
    mut c: AckCheck,
) -> AckCheck {
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
        if let Some(text) = mismatch(a, &m) {
            c.missing += 1;
            example(&mut c, text);
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

/// The ack log matched against the store's own scan (a merge join on the
/// physical offset: no read per line), then reachability checked from bulk
/// reads of each queue's units and of the index. Lines the scan never
/// reached (it stops at a bad record) go through [`check_each`].
pub struct AckJoin<'a> {
    acks: &'a [AckLine],
    /// Indexes into `acks`, by physical offset.
    order: Vec<usize>,
    next: usize,
    /// Per line: None = not seen by the scan; Some(None) = record matches;
    /// Some(Some(why)) = another record at that offset.
    seen: Vec<Option<Option<String>>>,
}

impl<'a> AckJoin<'a> {
    /// Prepares the join of `acks`.
    pub fn new(acks: &'a [AckLine]) -> Self {
        let mut order: Vec<usize> = (0..acks.len()).collect();
        order.sort_by_key(|&i| acks[i].phys);
        AckJoin {
            acks,
            order,
            next: 0,
            seen: vec![None; acks.len()],
        }
    }

    /// Feeds one record of the scan (in offset order).
    pub fn record(&mut self, m: &StoredMessage) {
        while let Some(&i) = self.order.get(self.next) {
            let a = &self.acks[i];
            if a.phys > m.phys_offset {
                break;
            }
            self.next += 1;
            if a.phys < m.phys_offset {
                continue; // no record starts there: check_each says why
            }
            self.seen[i] = Some(mismatch(a, m));
        }
    }

    /// Finishes the check.
    pub fn finish(self, store: &Store, end: u64, use_index: bool) -> Result<AckCheck> {
        let mut c = AckCheck::default();
        let mut matched = Vec::new();
        let mut unseen = Vec::new();
        for (i, s) in self.seen.into_iter().enumerate() {
            match s {
                Some(None) => matched.push(i),
                Some(Some(why)) => {
                    c.lines += 1;
                    c.missing += 1;
                    example(&mut c, why);
                }
                None => unseen.push(&self.acks[i]),
            }
        }
        // Consume queues: each queue's units read in bulk over the range
        // the acks cover.
        let mut by_queue: HashMap<(&str, u32), Vec<usize>> = HashMap::new();
        for &i in &matched {
            let a = &self.acks[i];
            by_queue
                .entry((a.topic.as_str(), a.queue_id))
                .or_default()
                .push(i);
        }
        let mut bad = vec![false; self.acks.len()];
        for ((topic, qid), mut idx) in by_queue {
            idx.sort_by_key(|&i| self.acks[i].queue_offset);
            const CHUNK_UNITS: u64 = 1 << 20;
            let mut k = 0;
            while k < idx.len() {
                let from = self.acks[idx[k]].queue_offset;
                let units = store
                    .queue_units(topic, qid, from, CHUNK_UNITS as usize)
                    .with_context(|| format!("reading consume queue {topic}/{qid}"))?;
                let first = store
                    .queue_info(topic, qid)
                    .map_or(0, |q| q.min_offset)
                    .max(from);
                while k < idx.len() && self.acks[idx[k]].queue_offset < from + CHUNK_UNITS {
                    let a = &self.acks[idx[k]];
                    let unit = a
                        .queue_offset
                        .checked_sub(first)
                        .and_then(|d| units.get(d as usize));
                    if unit.is_none_or(|u| u.phys_offset != a.phys) {
                        bad[idx[k]] = true;
                        c.unreachable_via_queue += 1;
                        let what = match unit {
                            Some(u) => format!("unit points at phys {}", u.phys_offset),
                            None => "no unit".to_string(),
                        };
                        example(
                            &mut c,
                            format!(
                                "line {}: {}/{}@{} not reachable through its consume queue: {what}",
                                a.line, a.topic, a.queue_id, a.queue_offset
                            ),
                        );
                    }
                    k += 1;
                }
            }
        }
        // Index: every reachable (hash, phys), matched against the keyed acks.
        if use_index {
            let mut wanted: HashMap<(u32, u64), bool> = HashMap::new();
            for &i in &matched {
                let a = &self.acks[i];
                if !a.key.is_empty() {
                    wanted.insert((key_hash(&format!("{}#{}", a.topic, a.key)), a.phys), false);
                }
            }
            if !wanted.is_empty() {
                store
                    .for_each_indexed(&mut |h, p| {
                        if let Some(found) = wanted.get_mut(&(h, p)) {
                            *found = true;
                        }
                    })
                    .context("walking the index")?;
                for &i in &matched {
                    let a = &self.acks[i];
                    if a.key.is_empty() {
                        continue;
                    }
                    let h = key_hash(&format!("{}#{}", a.topic, a.key));
                    if wanted.get(&(h, a.phys)) != Some(&true) {
                        bad[i] = true;
                        c.unreachable_via_index += 1;
                        example(
                            &mut c,
                            format!(
                                "line {}: key {:?} not found through the index",
                                a.line, a.key
                            ),
                        );
                    }
                }
            }
        }
        for &i in &matched {
            c.lines += 1;
            if !bad[i] {
                c.ok += 1;
            }
        }
        Ok(check_each(store, unseen, end, use_index, c))
    }
}
