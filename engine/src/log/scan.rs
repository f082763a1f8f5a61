//! Sequential reading of the commit log in large chunks, shared by
//! recovery, the dispatcher and `verify`.
//!
//! The scanner reads up to [`CHUNK_BYTES`] at a time, decodes every record
//! in the chunk, and re-reads from a record's start when it crosses the
//! chunk's end. It stops at `limit`, at the end of the last segment, or at
//! the first record that does not decode, and says which.

use super::record::{self, CrcCheck, DecodeError, DecodedView, RecordView};
use super::CommitLog;
use crate::error::Result;

/// Bytes read per I/O call.
pub const CHUNK_BYTES: usize = 1 << 20;

/// Why a scan stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanEnd {
    /// Reached the requested limit.
    Limit,
    /// Found zeros where the next record would be: the end of written data.
    EndOfData,
    /// Ran out of segments.
    NoMoreSegments,
    /// The callback asked to stop.
    Stopped,
    /// A record failed to decode at this offset.
    Bad(u64, DecodeError),
}

/// Result of a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanOutcome {
    /// Physical offset just after the last good record (or blank).
    pub end: u64,
    /// Why it stopped.
    pub reason: ScanEnd,
    /// Message records visited.
    pub records: u64,
}

/// Walks records from `from` (a record boundary) up to `limit`, calling `f`
/// with each message (borrowed from the read buffer: no allocation per
/// record); `f` returns false to stop.
pub fn scan(
    log: &CommitLog,
    from: u64,
    limit: u64,
    crc: CrcCheck,
    f: &mut dyn FnMut(&RecordView<'_>) -> bool,
) -> Result<ScanOutcome> {
    let s = log.segment_bytes();
    let mut pos = from;
    let mut records = 0u64;
    let mut buf = vec![0u8; CHUNK_BYTES.min(s as usize)];
    'outer: loop {
        if pos >= limit {
            return Ok(ScanOutcome {
                end: pos,
                reason: ScanEnd::Limit,
                records,
            });
        }
        let n = log.read_raw(pos, &mut buf, limit)?;
        if n == 0 {
            return Ok(ScanOutcome {
                end: pos,
                reason: ScanEnd::NoMoreSegments,
                records,
            });
        }
        let chunk = &buf[..n];
        let chunk_start = pos;
        let mut off = 0usize;
        while off < n {
            let here = chunk_start + off as u64;
            let seg_left = s - here % s;
            match record::decode_view(&chunk[off..], here, seg_left, crc) {
                Ok(DecodedView::Message(m)) => {
                    records += 1;
                    off += m.total_size as usize;
                    pos = here + m.total_size as u64;
                    if !f(&m) {
                        return Ok(ScanOutcome {
                            end: pos,
                            reason: ScanEnd::Stopped,
                            records,
                        });
                    }
                }
                Ok(DecodedView::Blank(len)) => {
                    pos = here + len as u64;
                    continue 'outer;
                }
                Err(DecodeError::Short { need, .. }) => {
                    // Crosses the chunk: re-read from here, unless the
                    // record cannot be complete below the limit or within
                    // the segment (a torn record).
                    let avail = (limit.min(here + seg_left) - here) as usize;
                    if off == 0 || need > avail {
                        if need > buf.len() && need <= avail {
                            buf.resize(need, 0);
                            pos = here;
                            continue 'outer;
                        }
                        let reason = if need > avail && limit < here + seg_left {
                            // Not yet fully committed: a normal end.
                            ScanEnd::Limit
                        } else {
                            ScanEnd::Bad(
                                here,
                                DecodeError::Short {
                                    need,
                                    have: n - off,
                                },
                            )
                        };
                        return Ok(ScanOutcome {
                            end: here,
                            reason,
                            records,
                        });
                    }
                    pos = here;
                    continue 'outer;
                }
                Err(DecodeError::Zero) => {
                    return Ok(ScanOutcome {
                        end: here,
                        reason: ScanEnd::EndOfData,
                        records,
                    })
                }
                Err(e) => {
                    return Ok(ScanOutcome {
                        end: here,
                        reason: ScanEnd::Bad(here, e),
                        records,
                    })
                }
            }
        }
        pos = chunk_start + off as u64;
    }
}
