//! The broker's one error type: what the broker itself refuses, with the
//! store's errors passed through whole.

/// Result alias of the broker.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything the broker can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store failed (I/O, corruption, refused writes, ...).
    #[error(transparent)]
    Store(#[from] mqlab_engine::Error),
    /// A broker or transaction setting is out of range.
    #[error("invalid broker configuration: {0}")]
    Config(String),
    /// A topic name RocketMQ would not accept.
    #[error("illegal topic {topic:?}: {reason}")]
    IllegalTopic {
        /// The name given.
        topic: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A topic asked for with no queue.
    #[error("topic {topic} needs at least 1 queue")]
    NoQueues {
        /// The topic.
        topic: String,
    },
    /// An END_TRANSACTION named an offset that holds no half message.
    #[error("physical offset {offset} holds a message of {topic}, not a half message")]
    NotHalfMessage {
        /// The offset named.
        offset: u64,
        /// The topic of the message there.
        topic: String,
    },
}

/// Checks a topic name (the store's rules, RocketMQ's).
pub(crate) fn validate_topic(topic: &str) -> Result<()> {
    mqlab_engine::topic::validate(topic).map_err(|reason| Error::IllegalTopic {
        topic: topic.to_string(),
        reason,
    })
}
