//! Messages as producers hand them in, and as the store returns them.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

/// Property holding space-separated business keys (indexed as `topic#key`).
pub const PROPERTY_KEYS: &str = "KEYS";
/// Property holding the message tag (hashed into the consume queue).
pub const PROPERTY_TAGS: &str = "TAGS";
/// Property holding the client-generated unique id (indexed).
pub const PROPERTY_UNIQ_KEY: &str = "UNIQ_KEY";
/// Whole-record CRC property (RocketMQ's `enabledAppendPropCRC`).
pub const PROPERTY_CRC32: &str = "__CRC32#";

/// Transaction type bits of the system flag (bits 2-3).
pub mod sys_flag {
    /// Body is compressed.
    pub const COMPRESSED: i32 = 0x1;
    /// Tags hold several values.
    pub const MULTI_TAGS: i32 = 0x2;
    /// Mask of the transaction type.
    pub const TRANSACTION_MASK: i32 = 0xC;
    /// Not a transactional message.
    pub const TRANSACTION_NOT_TYPE: i32 = 0;
    /// Half (prepared) message.
    pub const TRANSACTION_PREPARED: i32 = 0x4;
    /// Commit record.
    pub const TRANSACTION_COMMIT: i32 = 0x8;
    /// Rollback record.
    pub const TRANSACTION_ROLLBACK: i32 = 0xC;
    /// Born host is IPv6.
    pub const BORN_HOST_V6: i32 = 0x10;
    /// Store host is IPv6.
    pub const STORE_HOST_V6: i32 = 0x20;
}

/// A message to put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Topic; validated against RocketMQ's pattern `^[%|a-zA-Z0-9_-]+$`.
    pub topic: String,
    /// Queue within the topic.
    pub queue_id: u32,
    /// User flag, stored as is.
    pub flag: i32,
    /// System flag (see [`sys_flag`]); host bits are set by the encoder.
    pub sys_flag: i32,
    /// Payload.
    pub body: Vec<u8>,
    /// User and system properties (KEYS, TAGS, ...). Keys and values must
    /// not contain the separators 0x01 and 0x02.
    pub properties: BTreeMap<String, String>,
    /// Creation time at the producer, ms since the epoch; 0 = now.
    pub born_timestamp_ms: i64,
    /// Producer address.
    pub born_host: SocketAddr,
    /// How many times this message was consumed and sent back.
    pub reconsume_times: i32,
    /// Commit-log offset of the prepared message (transactions).
    pub prepared_tx_offset: i64,
}

impl Message {
    /// A message with a body and defaults for everything else.
    pub fn new(topic: impl Into<String>, body: impl Into<Vec<u8>>) -> Self {
        Message {
            topic: topic.into(),
            queue_id: 0,
            flag: 0,
            sys_flag: 0,
            body: body.into(),
            properties: BTreeMap::new(),
            born_timestamp_ms: 0,
            born_host: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)),
            reconsume_times: 0,
            prepared_tx_offset: 0,
        }
    }

    /// Sets the queue id.
    pub fn with_queue(mut self, queue_id: u32) -> Self {
        self.queue_id = queue_id;
        self
    }

    /// Sets the KEYS property (space-separated keys).
    pub fn with_keys(mut self, keys: impl Into<String>) -> Self {
        self.properties
            .insert(PROPERTY_KEYS.to_string(), keys.into());
        self
    }

    /// Sets the TAGS property.
    pub fn with_tags(mut self, tags: impl Into<String>) -> Self {
        self.properties
            .insert(PROPERTY_TAGS.to_string(), tags.into());
        self
    }

    /// Sets any property.
    pub fn with_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(key.into(), value.into());
        self
    }

    /// The KEYS property split on spaces.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.properties
            .get(PROPERTY_KEYS)
            .map(|s| s.as_str())
            .unwrap_or("")
            .split(' ')
            .filter(|k| !k.is_empty())
    }
}

/// A message as read back from the commit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Record length in bytes (TOTALSIZE).
    pub total_size: u32,
    /// Magic code found (V1 or V2).
    pub magic: u32,
    /// Body CRC as stored.
    pub body_crc: u32,
    /// Queue id.
    pub queue_id: u32,
    /// User flag.
    pub flag: i32,
    /// Index of the message in its consume queue.
    pub queue_offset: u64,
    /// Byte offset of the record in the commit log.
    pub phys_offset: u64,
    /// System flag.
    pub sys_flag: i32,
    /// Producer time, ms.
    pub born_timestamp_ms: i64,
    /// Producer address.
    pub born_host: SocketAddr,
    /// Store time, ms.
    pub store_timestamp_ms: i64,
    /// Store address.
    pub store_host: SocketAddr,
    /// Reconsume count.
    pub reconsume_times: i32,
    /// Prepared transaction offset.
    pub prepared_tx_offset: i64,
    /// Payload.
    pub body: Vec<u8>,
    /// Topic.
    pub topic: String,
    /// Properties, without the record CRC property.
    pub properties: BTreeMap<String, String>,
}

impl StoredMessage {
    /// The KEYS property split on spaces.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.properties
            .get(PROPERTY_KEYS)
            .map(|s| s.as_str())
            .unwrap_or("")
            .split(' ')
            .filter(|k| !k.is_empty())
    }

    /// The TAGS property.
    pub fn tags(&self) -> Option<&str> {
        self.properties.get(PROPERTY_TAGS).map(|s| s.as_str())
    }

    /// Physical offset just past this record.
    pub fn next_phys_offset(&self) -> u64 {
        self.phys_offset + self.total_size as u64
    }

    /// Transaction type bits.
    pub fn transaction_type(&self) -> i32 {
        self.sys_flag & sys_flag::TRANSACTION_MASK
    }
}

/// Outcome of a put, as RocketMQ names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum PutStatus {
    /// Written and, per the flush strategy, acknowledged.
    PutOk,
    /// Written, but not made durable within the sync flush timeout. The
    /// message stays in the log.
    FlushDiskTimeout,
    /// Rejected before writing (bad topic, too large, bad property).
    MessageIllegal,
    /// The store refuses writes (poisoned by an I/O error, shut down,
    /// read-only, or disk full).
    ServiceNotAvailable,
    /// SYNC_MASTER: written (and acknowledged by the flush strategy), but
    /// no slave reported having it within the slave timeout. The message
    /// stays in the log.
    FlushSlaveTimeout,
    /// SYNC_MASTER: written, but no slave is in a state to confirm it (none
    /// connected, or too far behind). The message stays in the log.
    SlaveNotAvailable,
}

impl PutStatus {
    /// True when the message is in the log: PUT_OK, and the statuses that
    /// leave it written (FLUSH_DISK_TIMEOUT, FLUSH_SLAVE_TIMEOUT,
    /// SLAVE_NOT_AVAILABLE). Whoever would put it again on anything else
    /// must not on these: it would be stored twice.
    pub fn is_stored(self) -> bool {
        matches!(
            self,
            PutStatus::PutOk
                | PutStatus::FlushDiskTimeout
                | PutStatus::FlushSlaveTimeout
                | PutStatus::SlaveNotAvailable
        )
    }

    /// RocketMQ's name.
    pub fn as_str(self) -> &'static str {
        match self {
            PutStatus::PutOk => "PUT_OK",
            PutStatus::FlushDiskTimeout => "FLUSH_DISK_TIMEOUT",
            PutStatus::MessageIllegal => "MESSAGE_ILLEGAL",
            PutStatus::ServiceNotAvailable => "SERVICE_NOT_AVAILABLE",
            PutStatus::FlushSlaveTimeout => "FLUSH_SLAVE_TIMEOUT",
            PutStatus::SlaveNotAvailable => "SLAVE_NOT_AVAILABLE",
        }
    }
}

/// Where a put landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOffsets {
    /// Physical offset of the record.
    pub phys_offset: u64,
    /// Record length in bytes.
    pub wrote_bytes: u32,
    /// Index in its consume queue.
    pub queue_offset: u64,
    /// Store timestamp written into the record.
    pub store_timestamp_ms: i64,
}

/// Result of [`crate::Store::put`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutResult {
    /// RocketMQ status.
    pub status: PutStatus,
    /// Present whenever the message was appended (PUT_OK,
    /// FLUSH_DISK_TIMEOUT, FLUSH_SLAVE_TIMEOUT, SLAVE_NOT_AVAILABLE).
    pub offsets: Option<AppendOffsets>,
    /// Why, when the status is not PUT_OK.
    pub detail: Option<String>,
}

impl PutResult {
    /// True for PUT_OK.
    pub fn is_ok(&self) -> bool {
        self.status == PutStatus::PutOk
    }
}

/// The four offsets (ARCHITECTURE.md, "Offsets and the loss window"),
/// read with atomics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Offsets {
    /// End of what has been appended (buffer or mapping).
    pub written: u64,
    /// End of what has been handed to the kernel (survives a process crash).
    pub committed: u64,
    /// End of what is durable (survives power loss).
    pub flushed: u64,
    /// Highest end offset of a put that returned PUT_OK.
    pub acked: u64,
}
