//! The ROCKETMQ binary header (serialize type 1), every length checked
//! against what is left.

use crate::command::{LanguageCode, RemotingCommand, SerializeType};
use crate::error::ProtocolError;
use crate::header_json::MAX_EXT_FIELDS;

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], ProtocolError> {
        if self.b.len() - self.at < n {
            return Err(ProtocolError::Binary(format!(
                "{what}: needs {n} bytes at {}, {} left",
                self.at,
                self.b.len() - self.at
            )));
        }
        let s = &self.b[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }
    fn i16(&mut self, what: &str) -> Result<i16, ProtocolError> {
        let s = self.take(2, what)?;
        Ok(i16::from_be_bytes([s[0], s[1]]))
    }
    fn i32(&mut self, what: &str) -> Result<i32, ProtocolError> {
        let s = self.take(4, what)?;
        Ok(i32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn len(&mut self, v: i64, what: &str) -> Result<usize, ProtocolError> {
        if v < 0 || v as u64 > (self.b.len() - self.at) as u64 {
            return Err(ProtocolError::Binary(format!(
                "{what} length {v} at {} exceeds the {} bytes left",
                self.at,
                self.b.len() - self.at
            )));
        }
        Ok(v as usize)
    }
    fn text(&mut self, n: usize, what: &str) -> Result<String, ProtocolError> {
        let s = self.take(n, what)?;
        String::from_utf8(s.to_vec())
            .map_err(|_| ProtocolError::Binary(format!("{what} is not UTF-8")))
    }
}

/// Decodes a binary header into `cmd` (body untouched).
pub fn decode(bytes: &[u8], cmd: &mut RemotingCommand) -> Result<(), ProtocolError> {
    let mut r = Reader { b: bytes, at: 0 };
    cmd.code = r.i16("code")? as i32;
    cmd.language = LanguageCode(r.take(1, "language")?[0]);
    cmd.version = r.i16("version")? as i32;
    cmd.opaque = r.i32("opaque")?;
    cmd.flag = r.i32("flag")?;
    let n = r.i32("remark length")? as i64;
    let n = r.len(n, "remark")?;
    cmd.remark = if n == 0 {
        None
    } else {
        Some(r.text(n, "remark")?)
    };
    let n = r.i32("ext fields length")? as i64;
    let n = r.len(n, "ext fields")?;
    let ext = r.take(n, "ext fields")?;
    if r.at != bytes.len() {
        return Err(ProtocolError::Binary(format!(
            "{} bytes after the ext fields",
            bytes.len() - r.at
        )));
    }
    cmd.ext_fields.clear();
    let mut e = Reader { b: ext, at: 0 };
    while e.at < ext.len() {
        if cmd.ext_fields.len() >= MAX_EXT_FIELDS {
            return Err(ProtocolError::Binary(format!(
                "more than {MAX_EXT_FIELDS} ext fields"
            )));
        }
        let k = e.i16("key length")? as i64;
        let k = e.len(k, "key")?;
        let key = e.text(k, "key")?;
        let v = e.i32("value length")? as i64;
        let v = e.len(v, "value")?;
        let value = e.text(v, "value")?;
        cmd.ext_fields.insert(key, value);
    }
    cmd.serialize_type = SerializeType::RocketMq;
    Ok(())
}

/// Encodes `cmd`'s header in the binary layout. Keys longer than 32,767
/// bytes cannot be written (the key length is an i16): they are refused.
pub fn encode(cmd: &RemotingCommand) -> Result<Vec<u8>, ProtocolError> {
    let mut ext = Vec::new();
    for (k, v) in &cmd.ext_fields {
        let kl = i16::try_from(k.len()).map_err(|_| ProtocolError::Field {
            field: k.chars().take(64).collect(),
            reason: "key over 32,767 bytes".into(),
        })?;
        ext.extend_from_slice(&kl.to_be_bytes());
        ext.extend_from_slice(k.as_bytes());
        ext.extend_from_slice(&(v.len() as i32).to_be_bytes());
        ext.extend_from_slice(v.as_bytes());
    }
    let remark = cmd.remark.as_deref().unwrap_or("");
    let code = i16::try_from(cmd.code).map_err(|_| ProtocolError::Field {
        field: "code".into(),
        reason: format!("{} does not fit 16 bits", cmd.code),
    })?;
    let version = i16::try_from(cmd.version).unwrap_or(i16::MAX);
    let mut b = Vec::with_capacity(21 + remark.len() + ext.len());
    b.extend_from_slice(&code.to_be_bytes());
    b.push(cmd.language.0);
    b.extend_from_slice(&version.to_be_bytes());
    b.extend_from_slice(&cmd.opaque.to_be_bytes());
    b.extend_from_slice(&cmd.flag.to_be_bytes());
    b.extend_from_slice(&(remark.len() as i32).to_be_bytes());
    b.extend_from_slice(remark.as_bytes());
    b.extend_from_slice(&(ext.len() as i32).to_be_bytes());
    b.extend_from_slice(&ext);
    Ok(b)
}
