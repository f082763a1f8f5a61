//! SEND_BATCH_MESSAGE's body: the messages of a batch one after the other,
//! each as RocketMQ's `MessageDecoder.encodeMessage` writes it (drawn in
//! PROTOCOL.md, section 9):
//!
//! ```text
//! i32 totalSize | i32 magic | i32 bodyCRC | i32 flag | i32 bodyLen | body
//!   | i16 propertiesLen | properties
//! ```
//!
//! Java writes 0 for magic and bodyCRC and its broker ignores both (the
//! store computes the CRC), so [`decode`] reads them and checks nothing.
//! Every length is checked against what is left of the body before any
//! byte is taken, so hostile bytes give an error naming the message and
//! the field, never a panic or an allocation larger than the body.

/// Bytes of a batch entry besides its body and properties.
pub const ENTRY_OVERHEAD: usize = 4 + 4 + 4 + 4 + 4 + 2;

/// One message of a batch: what the producer sets, all else comes from the
/// request header.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BatchEntry {
    /// User flag.
    pub flag: i32,
    /// Payload.
    pub body: Vec<u8>,
    /// Properties as sent (`k 0x01 v 0x02`..., not parsed here).
    pub properties: Vec<u8>,
}

/// Why a batch body was refused: which message (0-based) and which field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("message {index}: {field}: {reason}")]
pub struct BatchError {
    /// The message at fault, 0-based.
    pub index: usize,
    /// Its field (`totalSize`, `bodyLen`, `propertiesLen`, ...).
    pub field: &'static str,
    /// What is wrong.
    pub reason: String,
}

fn err(index: usize, field: &'static str, reason: String) -> BatchError {
    BatchError {
        index,
        field,
        reason,
    }
}

fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Reads a batch body of at most `max_messages` messages. An empty body is
/// refused (a batch holds at least one message), as is anything left over
/// after the last whole message. Callers bound the body's size.
pub fn decode(body: &[u8], max_messages: usize) -> Result<Vec<BatchEntry>, BatchError> {
    if body.is_empty() {
        return Err(err(0, "totalSize", "the batch holds no message".into()));
    }
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < body.len() {
        let i = out.len();
        if i >= max_messages {
            return Err(err(
                i,
                "totalSize",
                format!("more than {max_messages} messages in one batch"),
            ));
        }
        let left = body.len() - at;
        if left < ENTRY_OVERHEAD {
            return Err(err(
                i,
                "totalSize",
                format!("{left} bytes left, a message takes at least {ENTRY_OVERHEAD}"),
            ));
        }
        let b = &body[at..];
        let total = i32_at(b, 0);
        // Checked against what is left first: every later length is then
        // bounded by it.
        let total = match usize::try_from(total) {
            Ok(t) if (ENTRY_OVERHEAD..=left).contains(&t) => t,
            _ => {
                return Err(err(
                    i,
                    "totalSize",
                    format!("{total} is outside {ENTRY_OVERHEAD}..={left} (the bytes left)"),
                ))
            }
        };
        let flag = i32_at(b, 12);
        let body_len = i32_at(b, 16);
        let body_len = match usize::try_from(body_len) {
            Ok(n) if n <= total - ENTRY_OVERHEAD => n,
            _ => {
                return Err(err(
                    i,
                    "bodyLen",
                    format!(
                        "{body_len} is outside 0..={} (totalSize {total})",
                        total - ENTRY_OVERHEAD
                    ),
                ))
            }
        };
        let p = 20 + body_len;
        let props_len = i16::from_be_bytes([b[p], b[p + 1]]);
        let want = total - ENTRY_OVERHEAD - body_len;
        if usize::try_from(props_len).ok() != Some(want) {
            return Err(err(
                i,
                "propertiesLen",
                format!(
                    "{props_len}, but totalSize {total} leaves {want} bytes for the properties"
                ),
            ));
        }
        out.push(BatchEntry {
            flag,
            body: b[20..p].to_vec(),
            properties: b[p + 2..total].to_vec(),
        });
        at += total;
    }
    Ok(out)
}

/// Writes a batch body as Java's `MessageDecoder.encodeMessages` does
/// (magic and bodyCRC 0). Refused: properties over 32,767 bytes (their
/// length is an i16) and a message over 2 GiB.
pub fn encode(entries: &[BatchEntry]) -> Result<Vec<u8>, BatchError> {
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let props_len = i16::try_from(e.properties.len()).map_err(|_| {
            err(
                i,
                "propertiesLen",
                format!("{} bytes do not fit an i16", e.properties.len()),
            )
        })?;
        let total = i32::try_from(ENTRY_OVERHEAD + e.body.len() + e.properties.len())
            .map_err(|_| err(i, "totalSize", "over 2 GiB".into()))?;
        out.extend_from_slice(&total.to_be_bytes());
        out.extend_from_slice(&0i32.to_be_bytes());
        out.extend_from_slice(&0i32.to_be_bytes());
        out.extend_from_slice(&e.flag.to_be_bytes());
        out.extend_from_slice(&(e.body.len() as i32).to_be_bytes());
        out.extend_from_slice(&e.body);
        out.extend_from_slice(&props_len.to_be_bytes());
        out.extend_from_slice(&e.properties);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries() -> Vec<BatchEntry> {
        vec![
            BatchEntry {
                flag: 7,
                body: b"one".to_vec(),
                properties: b"KEYS\x01k1\x02".to_vec(),
            },
            BatchEntry::default(),
            BatchEntry {
                flag: -1,
                body: vec![0xff; 300],
                properties: Vec::new(),
            },
        ]
    }

    #[test]
    fn round_trips_as_java_writes_it() {
        let e = entries();
        let b = encode(&e).unwrap();
        // Java: totalSize 4+4+4+4+4+3+2+8 = 33, magic 0, bodyCRC 0, flag 7.
        assert_eq!(
            &b[..20],
            &[0, 0, 0, 33, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 3]
        );
        assert_eq!(decode(&b, 16).unwrap(), e);
        // magic and bodyCRC are not checked.
        let mut b2 = b.clone();
        b2[4..12].copy_from_slice(&[0xde; 8]);
        assert_eq!(decode(&b2, 16).unwrap(), e);
    }

    #[test]
    fn every_length_is_checked_and_names_the_message() {
        let b = encode(&entries()).unwrap();
        let second = 33;
        let third = second + ENTRY_OVERHEAD;
        let case = |mutate: &dyn Fn(&mut Vec<u8>)| {
            let mut x = b.clone();
            mutate(&mut x);
            decode(&x, 16).unwrap_err()
        };
        let e = case(&|x| x.truncate(x.len() - 1));
        assert_eq!((e.index, e.field), (2, "totalSize"));
        let e = case(&|x| x.truncate(third + 10));
        assert_eq!((e.index, e.field), (2, "totalSize"));
        let e = case(&|x| x[0..4].copy_from_slice(&(-5i32).to_be_bytes()));
        assert_eq!((e.index, e.field), (0, "totalSize"));
        let e = case(&|x| x[second + 16..second + 20].copy_from_slice(&(-1i32).to_be_bytes()));
        assert_eq!((e.index, e.field), (1, "bodyLen"));
        let e = case(&|x| x[16..20].copy_from_slice(&i32::MAX.to_be_bytes()));
        assert_eq!((e.index, e.field), (0, "bodyLen"));
        let e = case(&|x| x[23..25].copy_from_slice(&(-2i16).to_be_bytes()));
        assert_eq!((e.index, e.field), (0, "propertiesLen"));
        let e = case(&|x| x[23..25].copy_from_slice(&4i16.to_be_bytes()));
        assert_eq!((e.index, e.field), (0, "propertiesLen"));
        assert_eq!(decode(&[], 16).unwrap_err().field, "totalSize");
        let e = decode(&b, 2).unwrap_err();
        assert_eq!((e.index, e.field), (2, "totalSize"));
        assert!(e
            .to_string()
            .starts_with("message 2: totalSize: more than 2"));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let good = encode(&entries()).unwrap();
        for i in 0..20_000 {
            let mut b: Vec<u8> = if i % 2 == 0 {
                (0..next() % 200).map(|_| next() as u8).collect()
            } else {
                good.clone()
            };
            for _ in 0..(next() % 4) {
                if !b.is_empty() {
                    let at = (next() as usize) % b.len();
                    b[at] = next() as u8;
                }
            }
            if let Ok(v) = decode(&b, 1_000) {
                assert_eq!(encode(&v).unwrap().len(), b.len());
            }
        }
    }
}
