//! Frames: `i32 total length | i32 (type << 24 | header length) | header |
//! body`, big-endian; the total counts everything after itself.

use crate::command::{RemotingCommand, SerializeType};
use crate::error::ProtocolError;
use crate::{header_binary, header_json};

/// Caps on what a peer may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest frame accepted, bytes after the length field. Default
    /// 16 MiB (Java's `NettyDecoder`).
    pub max_frame_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_bytes: 16 << 20,
        }
    }
}

/// Decodes one frame from the front of `buf`: `Ok(None)` when more bytes
/// are needed, else the command and how many bytes it used. An error means
/// the stream cannot be trusted any more: close the connection. The length
/// is checked before anything is buffered for it, so a peer cannot make
/// us wait for (or allocate) more than `limits.max_frame_bytes`.
pub fn decode_frame(
    buf: &[u8],
    limits: &Limits,
) -> Result<Option<(RemotingCommand, usize)>, ProtocolError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let total = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as i64;
    if total < 4 || total as u64 > limits.max_frame_bytes as u64 {
        return Err(ProtocolError::FrameLength {
            len: total,
            max: limits.max_frame_bytes,
        });
    }
    let total = total as usize;
    if buf.len() - 4 < total {
        return Ok(None);
    }
    let frame = &buf[4..4 + total];
    let ht = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
    let ser = (ht >> 24) as u8;
    let hlen = (ht & 0x00ff_ffff) as usize;
    if hlen > total - 4 {
        return Err(ProtocolError::HeaderLength {
            header: hlen,
            frame: total,
        });
    }
    let header = &frame[4..4 + hlen];
    let mut cmd = RemotingCommand::default();
    match ser {
        0 => header_json::decode(header, &mut cmd)?,
        1 => header_binary::decode(header, &mut cmd)?,
        other => return Err(ProtocolError::SerializeType(other)),
    }
    cmd.body = frame[4 + hlen..].to_vec();
    Ok(Some((cmd, 4 + total)))
}

/// Encodes `cmd` in its `serialize_type`.
pub fn encode_frame(cmd: &RemotingCommand) -> Result<Vec<u8>, ProtocolError> {
    let header = match cmd.serialize_type {
        SerializeType::Json => header_json::encode(cmd),
        SerializeType::RocketMq => header_binary::encode(cmd)?,
    };
    if header.len() > 0x00ff_ffff {
        return Err(ProtocolError::HeaderLength {
            header: header.len(),
            frame: 0,
        });
    }
    let total = 4 + header.len() + cmd.body.len();
    let total_i32 = i32::try_from(total).map_err(|_| ProtocolError::FrameLength {
        len: total as i64,
        max: i32::MAX as usize,
    })?;
    let mut out = Vec::with_capacity(4 + total);
    out.extend_from_slice(&total_i32.to_be_bytes());
    let ht = ((cmd.serialize_type.code() as u32) << 24) | header.len() as u32;
    out.extend_from_slice(&ht.to_be_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&cmd.body);
    debug_assert_eq!(out.len(), 4 + total);
    Ok(out)
}
