//! The bytes of RocketMQ's classic HA protocol (`DefaultHAClient` /
//! `DefaultHAConnection`), drawn in `protocol/PROTOCOL.md`, "HA
//! replication". Plain TCP, no remoting frames, all integers big-endian:
//!
//! - slave → master, a **report**: `i64 maxPhyOffset` (8 bytes), the
//!   slave's commit-log end; on connect, after each applied chunk, and at
//!   least every heartbeat interval. A master reads them as a stream of
//!   8-byte groups and takes the newest whole one.
//! - master → slave, a **transfer**: `i64 phyOffset | i32 size | size
//!   bytes of commit log` (12-byte header); `size` 0 is a heartbeat that
//!   still names the master's next offset.
//!
//! Both decoders are bounded: an offset must be non-negative, a body at
//! most [`MAX_BODY_BYTES`]; anything else is a [`WireError`] and the
//! connection is dropped. Nothing here panics on any input.

use std::fmt;

/// Bytes of a slave's report.
pub const REPORT_BYTES: usize = 8;
/// Bytes of a transfer header.
pub const HEADER_BYTES: usize = 12;
/// Largest transfer body a slave accepts: RocketMQ's slave reads into a
/// 4 MiB buffer (`READ_MAX_BUFFER_SIZE`), so no master sends more.
pub const MAX_BODY_BYTES: usize = 4 << 20;

/// Bytes that break the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// A negative offset (as RocketMQ's i64).
    NegativeOffset(i64),
    /// A body size below 0 or above [`MAX_BODY_BYTES`].
    BadSize(i32),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::NegativeOffset(o) => write!(f, "negative offset {o}"),
            WireError::BadSize(s) => {
                write!(f, "transfer size {s} outside [0, {MAX_BODY_BYTES}]")
            }
        }
    }
}

/// A slave's report.
pub fn encode_report(offset: u64) -> [u8; REPORT_BYTES] {
    (offset as i64).to_be_bytes()
}

/// A transfer header for `size` bytes from `phys_offset`.
pub fn encode_header(phys_offset: u64, size: u32) -> [u8; HEADER_BYTES] {
    let mut b = [0u8; HEADER_BYTES];
    b[..8].copy_from_slice(&(phys_offset as i64).to_be_bytes());
    b[8..].copy_from_slice(&(size as i32).to_be_bytes());
    b
}

/// A decoded transfer header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Commit-log offset of the body's first byte (for a heartbeat: the
    /// master's next offset to send).
    pub phys_offset: u64,
    /// Body bytes.
    pub size: usize,
}

/// Decodes a transfer header (checks the bounds).
pub fn decode_header(b: &[u8; HEADER_BYTES]) -> Result<Header, WireError> {
    let mut o = [0u8; 8];
    o.copy_from_slice(&b[..8]);
    let phys = i64::from_be_bytes(o);
    let size = i32::from_be_bytes([b[8], b[9], b[10], b[11]]);
    if phys < 0 {
        return Err(WireError::NegativeOffset(phys));
    }
    if size < 0 || size as usize > MAX_BODY_BYTES {
        return Err(WireError::BadSize(size));
    }
    Ok(Header {
        phys_offset: phys as u64,
        size: size as usize,
    })
}

/// A master's reader of reports: fed whatever the socket gave, it keeps
/// at most 7 bytes of a report cut short.
#[derive(Debug, Default)]
pub struct ReportReader {
    partial: [u8; REPORT_BYTES],
    have: usize,
}

impl ReportReader {
    /// Feeds bytes; returns the newest whole report among them, if any
    /// (older ones in the same read are superseded, as RocketMQ reads
    /// them), or the first bad one.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<Option<u64>, WireError> {
        let mut newest = None;
        while !bytes.is_empty() {
            let n = (REPORT_BYTES - self.have).min(bytes.len());
            self.partial[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have == REPORT_BYTES {
                self.have = 0;
                let v = i64::from_be_bytes(self.partial);
                if v < 0 {
                    return Err(WireError::NegativeOffset(v));
                }
                newest = Some(v as u64);
            }
        }
        Ok(newest)
    }
}

/// A slave's reader of transfers: a header, then its body, bounded by
/// [`MAX_BODY_BYTES`].
#[derive(Debug, Default)]
pub struct TransferReader {
    header: [u8; HEADER_BYTES],
    have_header: usize,
    current: Option<Header>,
    body: Vec<u8>,
}

/// One whole transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// Where its bytes start in the master's log.
    pub phys_offset: u64,
    /// The bytes (empty: a heartbeat).
    pub body: Vec<u8>,
}

impl TransferReader {
    /// Feeds bytes, calling `f` with every transfer completed by them, in
    /// order; stops at the first bad header or when `f` fails.
    pub fn feed<E: From<WireError>>(
        &mut self,
        mut bytes: &[u8],
        f: &mut dyn FnMut(Transfer) -> Result<(), E>,
    ) -> Result<(), E> {
        loop {
            let Some(h) = self.current else {
                if bytes.is_empty() {
                    return Ok(());
                }
                let n = (HEADER_BYTES - self.have_header).min(bytes.len());
                self.header[self.have_header..self.have_header + n].copy_from_slice(&bytes[..n]);
                self.have_header += n;
                bytes = &bytes[n..];
                if self.have_header == HEADER_BYTES {
                    self.have_header = 0;
                    let h = decode_header(&self.header)?;
                    self.current = Some(h);
                    self.body.clear();
                    self.body.reserve(h.size);
                }
                continue;
            };
            let n = (h.size - self.body.len()).min(bytes.len());
            self.body.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.body.len() < h.size {
                return Ok(());
            }
            self.current = None;
            f(Transfer {
                phys_offset: h.phys_offset,
                body: std::mem::take(&mut self.body),
            })?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_take_the_newest_whole_one() {
        let mut r = ReportReader::default();
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&encode_report(5));
        bytes.extend_from_slice(&encode_report(9));
        bytes.extend_from_slice(&encode_report(12)[..3]);
        assert_eq!(r.feed(&bytes).unwrap(), Some(9));
        assert_eq!(r.feed(&encode_report(12)[3..]).unwrap(), Some(12));
        assert_eq!(r.feed(&[]).unwrap(), None);
        assert_eq!(
            r.feed(&(-3i64).to_be_bytes()),
            Err(WireError::NegativeOffset(-3))
        );
    }

    #[test]
    fn transfers_split_anywhere_reassemble() {
        let mut stream = Vec::new();
        let bodies: Vec<Vec<u8>> = vec![vec![1; 10], vec![], vec![7; 3000]];
        let mut at = 100u64;
        for b in &bodies {
            stream.extend_from_slice(&encode_header(at, b.len() as u32));
            stream.extend_from_slice(b);
            at += b.len() as u64;
        }
        for step in [1, 5, 12, 13, 700, stream.len()] {
            let mut r = TransferReader::default();
            let mut got = Vec::new();
            for piece in stream.chunks(step) {
                r.feed::<WireError>(piece, &mut |t| {
                    got.push(t);
                    Ok(())
                })
                .unwrap();
            }
            assert_eq!(got.len(), 3, "step {step}");
            assert_eq!(got[0].phys_offset, 100);
            assert_eq!(got[2].body, bodies[2]);
            assert_eq!(got[2].phys_offset, 110);
        }
    }

    #[test]
    fn hostile_headers_are_refused() {
        let mut r = TransferReader::default();
        let mut h = encode_header(0, 0);
        h[8..].copy_from_slice(&(-1i32).to_be_bytes());
        let e = r.feed::<WireError>(&h, &mut |_| Ok(())).unwrap_err();
        assert_eq!(e, WireError::BadSize(-1));
        let mut r = TransferReader::default();
        let h = encode_header(0, (MAX_BODY_BYTES + 1) as u32);
        assert!(r.feed::<WireError>(&h, &mut |_| Ok(())).is_err());
        let mut r = TransferReader::default();
        let h = encode_header(u64::MAX, 1);
        assert!(r.feed::<WireError>(&h, &mut |_| Ok(())).is_err());
        // Random bytes never panic.
        let mut x = 0x1234_5678u64;
        for _ in 0..200 {
            let mut r = TransferReader::default();
            let bytes: Vec<u8> = (0..64)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = r.feed::<WireError>(&bytes, &mut |_| Ok(()));
        }
    }
}
