//! Why bytes from the wire were refused. Each variant names the field or
//! the length at fault, so the connection can be closed with a logged
//! reason.

/// A frame or header that cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The frame's length field is negative, too small to hold the
    /// header-length field, or over the configured cap.
    #[error("frame length {len} out of range (4..={max} bytes)")]
    FrameLength {
        /// The length as sent.
        len: i64,
        /// The cap in force.
        max: usize,
    },
    /// The header length does not fit in the frame.
    #[error("header length {header} does not fit a frame of {frame} bytes")]
    HeaderLength {
        /// Header length as sent.
        header: usize,
        /// Frame length (after the length field).
        frame: usize,
    },
    /// The serialize type byte is neither JSON (0) nor ROCKETMQ (1).
    #[error("unknown header serialization type {0}")]
    SerializeType(u8),
    /// A JSON header that does not parse or breaks a limit.
    #[error("bad JSON header: {0}")]
    Json(String),
    /// A ROCKETMQ binary header that is cut short or inconsistent.
    #[error("bad binary header: {0}")]
    Binary(String),
    /// A header field with a value of the wrong shape.
    #[error("header field {field}: {reason}")]
    Field {
        /// Field name.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
}
