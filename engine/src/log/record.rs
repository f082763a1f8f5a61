//! CommitLog record codec, byte-compatible with RocketMQ (see FORMAT.md).
//!
//! Encoding happens in two steps so that the expensive part runs outside
//! the append lock: [`encode`] builds the record with placeholder offsets,
//! then [`finish`] patches QUEUEOFFSET, PHYSICALOFFSET and STORETIMESTAMP
//! under the lock and computes the whole-record CRC (which covers them).
//!
//! [`decode`] never panics on arbitrary bytes: every length is checked
//! against the buffer before it is used, and every failure is a
//! [`DecodeError`] saying why, so recovery can stop at the first bad record
//! and report it.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::message::{sys_flag, Message, StoredMessage, PROPERTY_CRC32};

/// Magic of a V1 record (topic length in 1 byte).
pub const MAGIC_V1: u32 = 0xdaa3_20a7;
/// Magic of a V2 record (topic length in 2 bytes).
pub const MAGIC_V2: u32 = 0xdaa3_20ab;
/// Magic of the blank record that fills a segment's end.
pub const BLANK_MAGIC: u32 = 0xcbd4_3194;
/// Size of the blank record's header (TOTALSIZE + magic).
pub const END_FILE_MIN_BLANK_LENGTH: u64 = 8;
/// Fixed part of a V1 record with IPv4 hosts.
pub const FIXED_V1_IPV4: usize = 91;
/// Bytes the `__CRC32#` property takes: name, 0x01, 10 digits, 0x02.
pub const CRC32_RESERVED_LEN: usize = PROPERTY_CRC32.len() + 1 + 10 + 1;
/// Smallest possible record (V1, IPv4, empty body/topic/properties).
pub const MIN_RECORD_LEN: u32 = FIXED_V1_IPV4 as u32;

const NAME_VALUE_SEPARATOR: u8 = 0x01;
const PROPERTY_SEPARATOR: u8 = 0x02;

// Field positions that do not depend on host address sizes.
const POS_QUEUEOFFSET: usize = 20;
const POS_PHYSICALOFFSET: usize = 28;

/// Why bytes are not a valid record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than the record needs (end of data, or a torn write).
    Short {
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// Zero TOTALSIZE and magic: the never-written tail of a segment.
    Zero,
    /// Neither a record magic nor the blank magic.
    BadMagic(u32),
    /// TOTALSIZE disagrees with the fields, or is out of range.
    BadLength(String),
    /// Body CRC mismatch.
    BodyCrc {
        /// Stored value.
        stored: u32,
        /// Computed value.
        computed: u32,
    },
    /// Whole-record CRC mismatch.
    RecordCrc {
        /// Stored value.
        stored: u32,
        /// Computed value.
        computed: u32,
    },
    /// PHYSICALOFFSET does not equal the record's position.
    WrongOffset {
        /// Stored value.
        stored: u64,
        /// Position read from.
        expected: u64,
    },
    /// Topic or properties are not valid UTF-8 / not well formed.
    BadField(&'static str),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Short { need, have } => {
                write!(f, "short record: need {need} bytes, have {have}")
            }
            DecodeError::Zero => f.write_str("zero-filled (end of data)"),
            DecodeError::BadMagic(m) => write!(f, "bad magic {m:#010x}"),
            DecodeError::BadLength(s) => write!(f, "bad length: {s}"),
            DecodeError::BodyCrc { stored, computed } => {
                write!(
                    f,
                    "body CRC mismatch: stored {stored:#x}, computed {computed:#x}"
                )
            }
            DecodeError::RecordCrc { stored, computed } => write!(
                f,
                "record CRC mismatch: stored {stored:#x}, computed {computed:#x}"
            ),
            DecodeError::WrongOffset { stored, expected } => write!(
                f,
                "physical offset field {stored} does not match position {expected}"
            ),
            DecodeError::BadField(name) => write!(f, "malformed {name}"),
        }
    }
}

/// What sits at a position of the commit log.
// Blank records are rare (one per segment); boxing the common case would
// cost an allocation per decode.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A message record.
    Message(StoredMessage),
    /// The blank record filling the rest of a segment, of this many bytes.
    Blank(u32),
}

/// RocketMQ's CRC: zlib CRC32, masked to 31 bits.
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes) & 0x7FFF_FFFF
}

fn host_len(addr: &SocketAddr) -> usize {
    match addr {
        SocketAddr::V4(_) => 8,
        SocketAddr::V6(_) => 20,
    }
}

fn put_host(buf: &mut Vec<u8>, addr: &SocketAddr) {
    match addr.ip() {
        IpAddr::V4(ip) => buf.extend_from_slice(&ip.octets()),
        IpAddr::V6(ip) => buf.extend_from_slice(&ip.octets()),
    }
    buf.extend_from_slice(&(addr.port() as i32).to_be_bytes());
}

/// Validates property keys/values and returns the encoded string.
pub fn encode_properties(props: &BTreeMap<String, String>) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for (k, v) in props {
        if k == PROPERTY_CRC32 {
            continue;
        }
        if k.is_empty() {
            return Err("empty property name".into());
        }
        for s in [k, v] {
            if s.bytes()
                .any(|b| b == NAME_VALUE_SEPARATOR || b == PROPERTY_SEPARATOR)
            {
                return Err(format!(
                    "property {k:?} contains a separator byte (0x01 or 0x02)"
                ));
            }
        }
        out.extend_from_slice(k.as_bytes());
        out.push(NAME_VALUE_SEPARATOR);
        out.extend_from_slice(v.as_bytes());
        out.push(PROPERTY_SEPARATOR);
    }
    Ok(out)
}

/// Parses `k 0x01 v 0x02 ...`; a trailing pair without 0x02 is accepted
/// (RocketMQ writers omit the last separator in some versions).
pub fn decode_properties(bytes: &[u8]) -> Result<BTreeMap<String, String>, DecodeError> {
    let mut out = BTreeMap::new();
    for pair in bytes.split(|b| *b == PROPERTY_SEPARATOR) {
        if pair.is_empty() {
            continue;
        }
        let Some(sep) = pair.iter().position(|b| *b == NAME_VALUE_SEPARATOR) else {
            return Err(DecodeError::BadField("properties"));
        };
        let k =
            std::str::from_utf8(&pair[..sep]).map_err(|_| DecodeError::BadField("properties"))?;
        let v = std::str::from_utf8(&pair[sep + 1..])
            .map_err(|_| DecodeError::BadField("properties"))?;
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// Everything about a record that [`finish`] needs to patch it.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    /// Position of STORETIMESTAMP.
    pub pos_store_timestamp: usize,
    /// True when the record ends with the `__CRC32#` property.
    pub record_crc: bool,
}

/// Encodes `msg` into `buf` (cleared first) with zero offsets and store
/// timestamp; returns where [`finish`] patches. The caller has validated
/// topic, size and properties (see `Store::put`).
pub fn encode(
    msg: &Message,
    properties: &[u8],
    born_timestamp_ms: i64,
    store_host: &SocketAddr,
    record_crc: bool,
    buf: &mut Vec<u8>,
) -> Layout {
    buf.clear();
    let topic = msg.topic.as_bytes();
    let v2 = topic.len() > 127;
    let mut flag = msg.sys_flag & !(sys_flag::BORN_HOST_V6 | sys_flag::STORE_HOST_V6);
    if msg.born_host.is_ipv6() {
        flag |= sys_flag::BORN_HOST_V6;
    }
    if store_host.is_ipv6() {
        flag |= sys_flag::STORE_HOST_V6;
    }
    let props_len = properties.len() + if record_crc { CRC32_RESERVED_LEN } else { 0 };
    let total = 4
        + 4
        + 4
        + 4
        + 4
        + 8
        + 8
        + 4
        + 8
        + host_len(&msg.born_host)
        + 8
        + host_len(store_host)
        + 4
        + 8
        + 4
        + msg.body.len()
        + if v2 { 2 } else { 1 }
        + topic.len()
        + 2
        + props_len;
    buf.reserve(total);
    buf.extend_from_slice(&(total as u32).to_be_bytes());
    buf.extend_from_slice(&(if v2 { MAGIC_V2 } else { MAGIC_V1 }).to_be_bytes());
    buf.extend_from_slice(&crc32(&msg.body).to_be_bytes());
    buf.extend_from_slice(&msg.queue_id.to_be_bytes());
    buf.extend_from_slice(&msg.flag.to_be_bytes());
    buf.extend_from_slice(&0u64.to_be_bytes()); // queue offset, patched
    buf.extend_from_slice(&0u64.to_be_bytes()); // physical offset, patched
    buf.extend_from_slice(&flag.to_be_bytes());
    buf.extend_from_slice(&born_timestamp_ms.to_be_bytes());
    put_host(buf, &msg.born_host);
    let pos_store_timestamp = buf.len();
    buf.extend_from_slice(&0i64.to_be_bytes()); // store timestamp, patched
    put_host(buf, store_host);
    buf.extend_from_slice(&msg.reconsume_times.to_be_bytes());
    buf.extend_from_slice(&msg.prepared_tx_offset.to_be_bytes());
    buf.extend_from_slice(&(msg.body.len() as u32).to_be_bytes());
    buf.extend_from_slice(&msg.body);
    if v2 {
        buf.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    } else {
        buf.push(topic.len() as u8);
    }
    buf.extend_from_slice(topic);
    buf.extend_from_slice(&(props_len as u16).to_be_bytes());
    buf.extend_from_slice(properties);
    if record_crc {
        buf.extend_from_slice(PROPERTY_CRC32.as_bytes());
        buf.push(NAME_VALUE_SEPARATOR);
        buf.extend_from_slice(b"0000000000");
        buf.push(PROPERTY_SEPARATOR);
    }
    debug_assert_eq!(buf.len(), total);
    Layout {
        pos_store_timestamp,
        record_crc,
    }
}

/// Patches the offsets and timestamp into an encoded record and computes
/// its whole-record CRC.
pub fn finish(
    buf: &mut [u8],
    layout: Layout,
    queue_offset: u64,
    phys_offset: u64,
    store_timestamp_ms: i64,
) {
    buf[POS_QUEUEOFFSET..POS_QUEUEOFFSET + 8].copy_from_slice(&queue_offset.to_be_bytes());
    buf[POS_PHYSICALOFFSET..POS_PHYSICALOFFSET + 8].copy_from_slice(&phys_offset.to_be_bytes());
    let p = layout.pos_store_timestamp;
    buf[p..p + 8].copy_from_slice(&store_timestamp_ms.to_be_bytes());
    if layout.record_crc {
        let check = buf.len() - CRC32_RESERVED_LEN;
        let crc = crc32(&buf[..check]);
        let at = buf.len() - 11;
        write_crc_digits(&mut buf[at..at + 10], crc);
    }
}

/// RocketMQ writes the CRC's decimal digits least significant first,
/// padded with '0' on the right: 123 is `3210000000`
/// (`MessageDecoder.createCrc32`).
fn write_crc_digits(out: &mut [u8], mut crc: u32) {
    for b in out.iter_mut().take(10) {
        *b = b'0' + (crc % 10) as u8;
        crc /= 10;
    }
}

/// Reads digits written by [`write_crc_digits`].
fn read_crc_digits(digits: &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for (i, d) in digits.iter().enumerate() {
        if !d.is_ascii_digit() {
            return None;
        }
        v += (d - b'0') as u64 * 10u64.pow(i as u32);
    }
    Some(v)
}

/// Encodes the 8-byte blank record for `remaining` bytes of segment tail.
pub fn blank(remaining: u32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&remaining.to_be_bytes());
    b[4..].copy_from_slice(&BLANK_MAGIC.to_be_bytes());
    b
}

/// A bounds-checked big-endian reader.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() - self.pos < n {
            return Err(DecodeError::BadLength(format!(
                "field at byte {} runs past TOTALSIZE {}",
                self.pos,
                self.buf.len()
            )));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(self.u32()? as i32)
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
    fn host(&mut self, v6: bool) -> Result<SocketAddr, DecodeError> {
        let ip: IpAddr = if v6 {
            let mut a = [0u8; 16];
            a.copy_from_slice(self.take(16)?);
            IpAddr::V6(Ipv6Addr::from(a))
        } else {
            let b = self.take(4)?;
            IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
        };
        let port = self.i32()?;
        Ok(SocketAddr::new(ip, port as u16))
    }
}

/// Reads the TOTALSIZE and magic at the start of `buf`, to size the read
/// of a whole record. Returns `(total_size, magic)`.
pub fn peek_header(buf: &[u8]) -> Result<(u32, u32), DecodeError> {
    if buf.len() < 8 {
        return Err(DecodeError::Short {
            need: 8,
            have: buf.len(),
        });
    }
    let total = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let magic = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
    if total == 0 && magic == 0 {
        return Err(DecodeError::Zero);
    }
    match magic {
        MAGIC_V1 | MAGIC_V2 | BLANK_MAGIC => Ok((total, magic)),
        other => Err(DecodeError::BadMagic(other)),
    }
}

/// Which checksums [`decode`] verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrcCheck {
    /// None (fast scans of trusted data).
    Off,
    /// The body CRC, and the record CRC when the record carries one
    /// (stores written by other implementations may not).
    Present,
    /// Both, and a record without the `__CRC32#` property is rejected: a
    /// bit flip in the property's name must not switch the check off.
    Required,
}

/// A record decoded in place: fixed fields copied, variable ones borrowed
/// from the read buffer. Scans (recovery, dispatch, verify) use this and
/// never allocate per record; [`RecordView::to_owned`] builds a
/// [`StoredMessage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// TOTALSIZE.
    pub total_size: u32,
    /// Magic (V1 or V2).
    pub magic: u32,
    /// Stored body CRC.
    pub body_crc: u32,
    /// Queue id.
    pub queue_id: u32,
    /// User flag.
    pub flag: i32,
    /// Queue offset.
    pub queue_offset: u64,
    /// Physical offset.
    pub phys_offset: u64,
    /// System flag.
    pub sys_flag: i32,
    /// Born timestamp, ms.
    pub born_timestamp_ms: i64,
    /// Born host.
    pub born_host: SocketAddr,
    /// Store timestamp, ms.
    pub store_timestamp_ms: i64,
    /// Store host.
    pub store_host: SocketAddr,
    /// Reconsume count.
    pub reconsume_times: i32,
    /// Prepared transaction offset.
    pub prepared_tx_offset: i64,
    /// Body bytes.
    pub body: &'a [u8],
    /// Topic.
    pub topic: &'a str,
    /// Encoded user properties (without the record CRC property).
    pub properties: &'a [u8],
}

impl<'a> RecordView<'a> {
    /// The value of one property, without building a map.
    pub fn property(&self, name: &str) -> Option<&'a str> {
        let props: &'a [u8] = self.properties;
        props
            .split(|b| *b == PROPERTY_SEPARATOR)
            .find_map(|pair| {
                let sep = pair.iter().position(|b| *b == NAME_VALUE_SEPARATOR)?;
                (&pair[..sep] == name.as_bytes()).then(|| &pair[sep + 1..])
            })
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The KEYS property split on spaces.
    pub fn keys(&self) -> impl Iterator<Item = &'a str> {
        self.property(crate::message::PROPERTY_KEYS)
            .unwrap_or("")
            .split(' ')
            .filter(|k| !k.is_empty())
    }

    /// Physical offset just past this record.
    pub fn next_phys_offset(&self) -> u64 {
        self.phys_offset + self.total_size as u64
    }

    /// The owned message.
    pub fn to_owned(&self) -> Result<StoredMessage, DecodeError> {
        Ok(StoredMessage {
            total_size: self.total_size,
            magic: self.magic,
            body_crc: self.body_crc,
            queue_id: self.queue_id,
            flag: self.flag,
            queue_offset: self.queue_offset,
            phys_offset: self.phys_offset,
            sys_flag: self.sys_flag,
            born_timestamp_ms: self.born_timestamp_ms,
            born_host: self.born_host,
            store_timestamp_ms: self.store_timestamp_ms,
            store_host: self.store_host,
            reconsume_times: self.reconsume_times,
            prepared_tx_offset: self.prepared_tx_offset,
            body: self.body.to_vec(),
            topic: self.topic.to_string(),
            properties: decode_properties(self.properties)?,
        })
    }
}

/// What sits at a position, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodedView<'a> {
    /// A message record.
    Message(RecordView<'a>),
    /// A blank record of this many bytes.
    Blank(u32),
}

/// Decodes the record at the start of `buf` into an owned message; see
/// [`decode_view`].
pub fn decode(
    buf: &[u8],
    phys_offset: u64,
    max_size: u64,
    crc: CrcCheck,
) -> Result<Decoded, DecodeError> {
    match decode_view(buf, phys_offset, max_size, crc)? {
        DecodedView::Message(v) => Ok(Decoded::Message(v.to_owned()?)),
        DecodedView::Blank(n) => Ok(Decoded::Blank(n)),
    }
}

/// Decodes the record at the start of `buf`, read from physical offset
/// `phys_offset`, without copying. `max_size` bounds TOTALSIZE (the
/// segment's remaining bytes). `crc` says which checksums to verify.
/// Properties are checked for well-formedness here, so that a view that
/// decodes also converts with [`RecordView::to_owned`].
pub fn decode_view(
    buf: &[u8],
    phys_offset: u64,
    max_size: u64,
    crc: CrcCheck,
) -> Result<DecodedView<'_>, DecodeError> {
    let (total, magic) = peek_header(buf)?;
    if magic == BLANK_MAGIC {
        if total < 8 || total as u64 > max_size {
            return Err(DecodeError::BadLength(format!(
                "blank record of {total} bytes with {max_size} left in segment"
            )));
        }
        return Ok(DecodedView::Blank(total));
    }
    if total < MIN_RECORD_LEN || total as u64 > max_size {
        return Err(DecodeError::BadLength(format!(
            "TOTALSIZE {total} outside [{MIN_RECORD_LEN}, {max_size}]"
        )));
    }
    let total_usize = total as usize;
    if buf.len() < total_usize {
        return Err(DecodeError::Short {
            need: total_usize,
            have: buf.len(),
        });
    }
    let rec = &buf[..total_usize];
    let mut c = Cursor { buf: rec, pos: 8 };
    let body_crc = c.u32()?;
    let queue_id = c.u32()?;
    let flag = c.i32()?;
    let queue_offset = c.u64()?;
    let stored_phys = c.u64()?;
    let sysflag = c.i32()?;
    let born_timestamp_ms = c.u64()? as i64;
    let born_host = c.host(sysflag & sys_flag::BORN_HOST_V6 != 0)?;
    let store_timestamp_ms = c.u64()? as i64;
    let store_host = c.host(sysflag & sys_flag::STORE_HOST_V6 != 0)?;
    let reconsume_times = c.i32()?;
    let prepared_tx_offset = c.u64()? as i64;
    let body_len = c.u32()? as usize;
    let body = c.take(body_len)?;
    let topic_len = if magic == MAGIC_V2 {
        c.u16()? as usize
    } else {
        c.u8()? as usize
    };
    let topic = c.take(topic_len)?;
    let props_len = c.u16()? as usize;
    let props = c.take(props_len)?;
    if c.pos != total_usize {
        return Err(DecodeError::BadLength(format!(
            "fields end at byte {} but TOTALSIZE is {total}",
            c.pos
        )));
    }
    if stored_phys != phys_offset {
        return Err(DecodeError::WrongOffset {
            stored: stored_phys,
            expected: phys_offset,
        });
    }
    let has_record_crc = props_len >= CRC32_RESERVED_LEN && {
        let tail = &rec[total_usize - CRC32_RESERVED_LEN..];
        tail.starts_with(PROPERTY_CRC32.as_bytes())
            && tail[PROPERTY_CRC32.len()] == NAME_VALUE_SEPARATOR
            && tail[CRC32_RESERVED_LEN - 1] == PROPERTY_SEPARATOR
    };
    // A `__CRC32#` anywhere but in its exact place is damage, whatever the
    // mode (a torn record can leave a piece of it in the properties).
    if crc != CrcCheck::Off
        && !has_record_crc
        && props
            .windows(PROPERTY_CRC32.len())
            .any(|w| w == PROPERTY_CRC32.as_bytes())
    {
        return Err(DecodeError::BadField("misplaced record CRC property"));
    }
    if crc == CrcCheck::Required && !has_record_crc {
        return Err(DecodeError::BadField("record CRC property (required)"));
    }
    if crc != CrcCheck::Off {
        let computed = crc32(body);
        if computed != body_crc {
            return Err(DecodeError::BodyCrc {
                stored: body_crc,
                computed,
            });
        }
        if has_record_crc {
            let digits = &rec[total_usize - 11..total_usize - 1];
            let stored =
                read_crc_digits(digits).ok_or(DecodeError::BadField("record CRC property"))?;
            let computed = crc32(&rec[..total_usize - CRC32_RESERVED_LEN]);
            if stored != computed as u64 {
                return Err(DecodeError::RecordCrc {
                    stored: stored.min(u32::MAX as u64) as u32,
                    computed,
                });
            }
        }
    }
    let props_user = if has_record_crc {
        &props[..props_len - CRC32_RESERVED_LEN]
    } else {
        props
    };
    let topic = std::str::from_utf8(topic).map_err(|_| DecodeError::BadField("topic"))?;
    check_properties(props_user)?;
    Ok(DecodedView::Message(RecordView {
        total_size: total,
        magic,
        body_crc,
        queue_id,
        flag,
        queue_offset,
        phys_offset,
        sys_flag: sysflag,
        born_timestamp_ms,
        born_host,
        store_timestamp_ms,
        store_host,
        reconsume_times,
        prepared_tx_offset,
        body,
        topic,
        properties: props_user,
    }))
}

/// Well-formedness of an encoded property string, without allocating.
fn check_properties(bytes: &[u8]) -> Result<(), DecodeError> {
    for pair in bytes.split(|b| *b == PROPERTY_SEPARATOR) {
        if pair.is_empty() {
            continue;
        }
        if !pair.contains(&NAME_VALUE_SEPARATOR) || std::str::from_utf8(pair).is_err() {
            return Err(DecodeError::BadField("properties"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddrV4;

    fn host() -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 10911))
    }

    #[test]
    fn fixed_part_is_91_bytes() {
        let msg = Message::new("", Vec::new());
        let mut buf = Vec::new();
        encode(&msg, &[], 0, &host(), false, &mut buf);
        assert_eq!(buf.len(), FIXED_V1_IPV4);
    }

    #[test]
    fn roundtrip_with_crc() {
        let msg = Message::new("TopicA", b"hello".to_vec())
            .with_keys("k1 k2")
            .with_tags("tagA")
            .with_queue(3);
        let props = encode_properties(&msg.properties).unwrap();
        let mut buf = Vec::new();
        let layout = encode(&msg, &props, 1234, &host(), true, &mut buf);
        finish(&mut buf, layout, 7, 4096, 5678);
        let Decoded::Message(m) = decode(&buf, 4096, 1 << 20, CrcCheck::Required).unwrap() else {
            panic!("expected a message");
        };
        assert_eq!(m.topic, "TopicA");
        assert_eq!(m.body, b"hello");
        assert_eq!(m.queue_id, 3);
        assert_eq!(m.queue_offset, 7);
        assert_eq!(m.phys_offset, 4096);
        assert_eq!(m.store_timestamp_ms, 5678);
        assert_eq!(m.born_timestamp_ms, 1234);
        assert_eq!(m.properties, msg.properties);
        assert_eq!(m.keys().collect::<Vec<_>>(), vec!["k1", "k2"]);
        assert_eq!(m.store_host, host());
    }

    #[test]
    fn every_single_bit_flip_is_detected_or_harmless() {
        let msg = Message::new("T", vec![0xab; 40]).with_keys("key");
        let props = encode_properties(&msg.properties).unwrap();
        let mut buf = Vec::new();
        let layout = encode(&msg, &props, 1, &host(), true, &mut buf);
        finish(&mut buf, layout, 0, 0, 2);
        for bit in 0..buf.len() * 8 {
            let mut b = buf.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            // Any flip is either rejected or, if it hit nothing the CRCs
            // cover (impossible with the record CRC on), decodes.
            assert!(
                decode(&b, 0, 1 << 20, CrcCheck::Required).is_err(),
                "bit {bit} undetected"
            );
        }
    }

    #[test]
    fn v2_for_long_topics_and_ipv6() {
        let mut msg = Message::new("t".repeat(200), b"x".to_vec());
        msg.born_host = "[::1]:9876".parse().unwrap();
        let mut buf = Vec::new();
        let store: SocketAddr = "[fe80::1]:10911".parse().unwrap();
        let layout = encode(&msg, &[], 0, &store, true, &mut buf);
        finish(&mut buf, layout, 0, 0, 0);
        let Decoded::Message(m) = decode(&buf, 0, 1 << 20, CrcCheck::Required).unwrap() else {
            panic!("expected a message");
        };
        assert_eq!(m.magic, MAGIC_V2);
        assert_eq!(m.topic.len(), 200);
        assert_eq!(m.born_host, msg.born_host);
        assert_eq!(m.store_host, store);
    }

    #[test]
    fn blank_and_zero() {
        let b = blank(100);
        assert_eq!(
            decode(&b, 0, 100, CrcCheck::Required).unwrap(),
            Decoded::Blank(100)
        );
        assert!(matches!(
            decode(&b, 0, 50, CrcCheck::Required),
            Err(DecodeError::BadLength(_))
        ));
        assert_eq!(
            decode(&[0u8; 16], 0, 100, CrcCheck::Required),
            Err(DecodeError::Zero)
        );
    }

    #[test]
    fn crc_digits_are_least_significant_first() {
        let mut d = [0u8; 10];
        write_crc_digits(&mut d, 123);
        assert_eq!(&d, b"3210000000");
        assert_eq!(read_crc_digits(&d), Some(123));
        write_crc_digits(&mut d, 0x7FFF_FFFF);
        assert_eq!(read_crc_digits(&d), Some(0x7FFF_FFFF));
    }

    #[test]
    fn crc_matches_zlib_masked() {
        // zlib crc32("123456789") = 0xCBF43926; masked to 31 bits.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926 & 0x7FFF_FFFF);
    }
}
