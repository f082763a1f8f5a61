//! Raw appends: records copied byte for byte from another commit log (a
//! slave applying what its master streams, see `Store::append_raw`).
//!
//! A chunk is checked whole before anything is written: it must start at
//! the write end, and every record in it must decode at its position (the
//! record codec's checks: magic, lengths, PHYSICALOFFSET, CRCs as the
//! store demands them) with no record straddling a segment; a blank
//! record must fill exactly the rest of its segment (it is the segment
//! roll, and the next record starts the next segment). Only whole records
//! are taken: a chunk ending inside a record (or inside a blank's padding)
//! leaves that tail to the caller, who offers it again with the rest.

use std::sync::atomic::Ordering;

use super::record::{self, CrcCheck, DecodeError, DecodedView};
use super::CommitLog;
use crate::error::{Error, Result};

/// What [`CommitLog::append_raw`] took from a chunk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RawAppend {
    /// Bytes taken from the start of the chunk (whole records and blanks).
    pub taken: usize,
    /// Message records among them.
    pub records: u64,
    /// The write end after the append.
    pub end: u64,
}

/// One queue's next offset noted from an appended record.
struct QueueNote<'a> {
    topic: &'a str,
    queue_id: u32,
    next: u64,
}

impl CommitLog {
    /// True while nothing was ever appended: no segment, write end 0.
    pub fn is_empty(&self) -> bool {
        self.written.load(Ordering::Acquire) == 0
            && self
                .segments
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .is_empty()
    }

    /// An empty log starts at `base` (a segment boundary) instead of 0: a
    /// new slave following a master whose log starts later (RocketMQ sends
    /// a slave that reports 0 its last segment). Every offset moves to
    /// `base`; the first raw append creates the segment there.
    pub fn start_at(&self, base: u64) -> Result<()> {
        let _st = self.append.lock().unwrap_or_else(|e| e.into_inner());
        self.check_poison()?;
        if !self.is_empty() {
            return Err(Error::Unavailable(format!(
                "the log cannot start at {base}: it is not empty"
            )));
        }
        if !base.is_multiple_of(self.segment_bytes) {
            return Err(Error::OffsetMismatch {
                offered: base,
                write_end: 0,
            });
        }
        // In the order readers load them: flushed <= committed <= written
        // holds throughout.
        self.written.store(base, Ordering::SeqCst);
        self.committed.store(base, Ordering::SeqCst);
        self.flushed.store(base, Ordering::SeqCst);
        self.acked.store(base, Ordering::SeqCst);
        if let Some(st) = &self.staging {
            st.reset(base);
        }
        Ok(())
    }

    /// Appends the whole records at the start of `bytes`, which must be the
    /// log's content from physical offset `pos` (= the write end). Checks
    /// every record first with `crc` and writes nothing when one fails
    /// (`Error::Corrupt` naming its offset) or when `pos` is not the write
    /// end (`Error::OffsetMismatch` naming both offsets). Returns how much
    /// was taken: a partial record at the end is left.
    pub fn append_raw(&self, pos: u64, bytes: &[u8], crc: CrcCheck) -> Result<RawAppend> {
        if self.read_only {
            return Err(Error::Unavailable("store opened read-only".into()));
        }
        let mut st = self.append.lock().unwrap_or_else(|e| e.into_inner());
        self.check_poison()?;
        let written = self.written.load(Ordering::Acquire);
        if pos != written {
            return Err(Error::OffsetMismatch {
                offered: pos,
                write_end: written,
            });
        }
        let s = self.segment_bytes;
        let corrupt = |at: u64, reason: String| Error::Corrupt {
            path: self.series.path(at - at % s),
            offset: at,
            reason,
        };
        // Check everything first.
        let mut off = 0usize;
        let mut records = 0u64;
        let mut notes: Vec<QueueNote<'_>> = Vec::new();
        let mut last_ts = None;
        while off < bytes.len() {
            let here = pos + off as u64;
            let seg_left = s - here % s;
            match record::decode_view(&bytes[off..], here, seg_left, crc) {
                Ok(DecodedView::Message(v)) => {
                    records += 1;
                    last_ts = Some(v.store_timestamp_ms);
                    notes.push(QueueNote {
                        topic: v.topic,
                        queue_id: v.queue_id,
                        next: v.queue_offset + 1,
                    });
                    off += v.total_size as usize;
                }
                Ok(DecodedView::Blank(len)) => {
                    if len as u64 != seg_left {
                        return Err(corrupt(
                            here,
                            format!(
                                "blank record of {len} bytes where {seg_left} are left in the segment"
                            ),
                        ));
                    }
                    if bytes.len() - off < len as usize {
                        break; // the rest of the padding comes later
                    }
                    off += len as usize;
                }
                Err(DecodeError::Short { .. }) => break,
                Err(DecodeError::Zero) => {
                    return Err(corrupt(
                        here,
                        "zeros where a record should start".to_string(),
                    ))
                }
                Err(e) => return Err(corrupt(here, e.to_string())),
            }
        }
        if off == 0 {
            return Ok(RawAppend {
                taken: 0,
                records: 0,
                end: written,
            });
        }
        // Then write, one segment at a time (records never straddle).
        let end = pos + off as u64;
        let mut at = pos;
        while at < end {
            let piece_end = end.min(at - at % s + s);
            let piece = &bytes[(at - pos) as usize..(piece_end - pos) as usize];
            if at.is_multiple_of(s) && self.segment_for(at).is_none() {
                self.create_segment(at)?;
            }
            if self.staging.is_some() {
                // The commit service may take staged bytes at once:
                // `written` covers them first.
                self.written.store(piece_end, Ordering::Release);
            }
            self.write_bytes(at, piece)?;
            self.written.store(piece_end, Ordering::Release);
            if self.staging.is_none() {
                self.committed.store(piece_end, Ordering::Release);
            }
            self.maybe_warm(piece_end);
            at = piece_end;
        }
        for n in notes {
            if !st.queue_table.contains_key(n.topic) {
                st.queue_table
                    .insert(n.topic.to_string(), Default::default());
            }
            let q = st
                .queue_table
                .get_mut(n.topic)
                .expect("inserted above")
                .entry(n.queue_id)
                .or_insert(0);
            *q = (*q).max(n.next);
        }
        if let Some(ts) = last_ts {
            *self.last_append.lock().unwrap_or_else(|e| e.into_inner()) = (end, ts);
        }
        drop(st);
        self.debug_check_offsets();
        Ok(RawAppend {
            taken: off,
            records,
            end,
        })
    }
}
