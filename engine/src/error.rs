//! The engine's one error type. Variants are structured so callers (and the
//! CLI's reports) can say exactly what went wrong and where.

use std::io;
use std::path::PathBuf;

/// Result alias of the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything the engine can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O call failed on a file of the store.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done ("write", "fdatasync", "open", ...).
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Another open holds the store directory's lock.
    #[error("store directory {dir} is locked by {holder}: one writer at a time (stop it, or open read-only)")]
    Locked {
        /// The store directory.
        dir: PathBuf,
        /// Who holds it ("pid N", or a read-only open).
        holder: String,
    },
    /// A previous write or fsync failed; the store refuses writes from then
    /// on (a failed fsync is never retried: the kernel may have dropped the
    /// dirty pages). Reopen the store to recover from what is durable.
    #[error("store is poisoned by an earlier I/O failure: {0}")]
    Poisoned(String),
    /// The message was rejected before anything was written.
    #[error("illegal message: {0}")]
    IllegalMessage(String),
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Bytes read from disk are not a valid record/unit/header.
    #[error("corrupt data in {path} at offset {offset}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Byte offset (physical offset for the commit log).
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A checksum did not match.
    #[error("checksum mismatch at physical offset {offset}: stored {expected:#010x}, computed {got:#010x}")]
    ChecksumMismatch {
        /// Physical offset of the record.
        offset: u64,
        /// Checksum stored in the record.
        expected: u32,
        /// Checksum computed over the bytes.
        got: u32,
    },
    /// No message at that offset (past the end, or before the first one).
    #[error("no message at physical offset {0}")]
    NotFound(u64),
    /// The store directory is locked, shut down, or otherwise unusable.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Replication: bytes offered at a physical offset other than the
    /// log's write end (a slave and its master disagree on where the log
    /// ends).
    #[error("raw append at physical offset {offered}, but the log's write end is {write_end}")]
    OffsetMismatch {
        /// Where the bytes were offered.
        offered: u64,
        /// Where the log ends.
        write_end: u64,
    },
    /// The backend is not available on this machine (io_uring missing).
    #[error("backend {backend} unavailable: {reason}")]
    BackendUnavailable {
        /// Backend name.
        backend: &'static str,
        /// Why.
        reason: String,
    },
}

impl Error {
    /// Wraps an I/O error with the operation and path.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
