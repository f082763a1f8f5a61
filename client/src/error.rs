//! The client's one error type: what the broker answered, what the client
//! refuses itself, and its own files' failures.

/// Result alias of the client.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a client can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The broker refused or failed the request.
    #[error(transparent)]
    Broker(#[from] mqlab_broker::Error),
    /// The client's own files (a broadcasting consumer's offsets) failed.
    #[error("client files: {0}")]
    Local(#[from] mqlab_engine::Error),
    /// The connection to a broker failed, or it answered something that
    /// does not decode.
    #[error("wire: {0}")]
    Wire(String),
    /// A consumer or producer setting is out of range.
    #[error("invalid client configuration: {0}")]
    Config(String),
}
