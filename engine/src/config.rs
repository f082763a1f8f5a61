//! Store configuration: plain structs with documented defaults, validated
//! once by [`StoreConfig::sanitize`] at open. The flush strategy's settings
//! live beside the strategies ([`crate::flush::FlushConfig`]) and are
//! re-exported here.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use crate::error::{Error, Result};
pub use crate::flush::FlushConfig;
use crate::io::BackendKind;

/// 1 GiB, RocketMQ's commit-log segment size.
pub const DEFAULT_SEGMENT_BYTES: u64 = 1 << 30;
/// RocketMQ's consume-queue file: 300,000 units of 20 bytes.
pub const DEFAULT_CQ_UNITS_PER_FILE: u64 = 300_000;
/// RocketMQ's index file hash slots.
pub const DEFAULT_INDEX_SLOTS: u32 = 5_000_000;
/// RocketMQ's index file item capacity.
pub const DEFAULT_INDEX_ITEMS: u32 = 20_000_000;
/// RocketMQ's maximum message size: 4 MiB.
pub const DEFAULT_MAX_MESSAGE_BYTES: u32 = 4 * 1024 * 1024;

/// Everything [`crate::Store::open`] needs to know.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct StoreConfig {
    /// I/O backend used by [`crate::Store::open`]. Default `pwrite`.
    pub backend: BackendKind,
    /// Commit-log segment size for new stores, bytes. Default 1 GiB. An
    /// existing store keeps the size its files have.
    pub segment_bytes: u64,
    /// Consume-queue units per file for new queues. Default 300,000.
    pub cq_units_per_file: u64,
    /// Index file hash slots for new index files. Default 5,000,000.
    pub index_slots: u32,
    /// Index file item capacity for new index files. Default 20,000,000.
    pub index_items: u32,
    /// Largest accepted body, bytes. Default 4 MiB [maxMessageSize].
    pub max_message_bytes: u32,
    /// Reserve blocks for (and pre-fault) each new segment. Default false.
    pub preallocate: bool,
    /// Write zeros over each commit-log segment before it is used, on a
    /// thread of its own (`log/warm.rs`), so the fdatasyncs that
    /// acknowledge puts do not also commit ext4 block allocations. Opening
    /// a new store then writes its first segment (`segment_bytes` of
    /// zeros) before it returns; each later one is warmed once half of the
    /// one before is written. Default false [warmMapedFileEnable].
    pub warm_segments: bool,
    /// Append the whole-record `__CRC32#` property. Default true
    /// [enabledAppendPropCRC].
    pub record_crc: bool,
    /// Verify CRCs when recovering. Default true [checkCRCOnRecover].
    pub check_crc_on_recover: bool,
    /// Verify CRCs on every read. Default true.
    pub check_crc_on_read: bool,
    /// Checkpoint and consume-queue/index flush period, ms. Default 1,000.
    pub checkpoint_interval_ms: u64,
    /// Build the index of keys. Default true.
    pub index_enabled: bool,
    /// Flush strategy.
    pub flush: FlushConfig,
    /// Address written as STOREHOST. Default 127.0.0.1:10911.
    pub store_host: SocketAddr,
    /// Never write to the directory: recovery happens in memory only
    /// (`Store::open` reads through `io::overlay::OverlayEnv`). Default
    /// false.
    pub read_only: bool,
    /// Record every file's durable prefix in `<dir>/powerloss.marks`
    /// (`io::powerloss`), so that `io::powerloss::apply` (`mqlab
    /// powerloss`) can turn a killed store into what a power loss would
    /// have left. A lab switch: the marks grow by a line per sync. Default
    /// false.
    pub power_loss_marks: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: BackendKind::Pwrite,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            cq_units_per_file: DEFAULT_CQ_UNITS_PER_FILE,
            index_slots: DEFAULT_INDEX_SLOTS,
            index_items: DEFAULT_INDEX_ITEMS,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            preallocate: false,
            warm_segments: false,
            record_crc: true,
            check_crc_on_recover: true,
            check_crc_on_read: true,
            checkpoint_interval_ms: 1_000,
            index_enabled: true,
            flush: FlushConfig::default(),
            store_host: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 10911)),
            read_only: false,
            power_loss_marks: false,
        }
    }
}

impl StoreConfig {
    /// A configuration with small files, for tests and examples: 1 MiB
    /// segments, 256 KiB messages, 1,000-unit consume-queue files,
    /// 1,000-slot indexes.
    pub fn small() -> Self {
        StoreConfig {
            segment_bytes: 1 << 20,
            max_message_bytes: 256 * 1024,
            cq_units_per_file: 1_000,
            index_slots: 1_000,
            index_items: 4_000,
            ..StoreConfig::default()
        }
    }

    /// Checks every value once; the store trusts them afterwards.
    pub fn sanitize(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.segment_bytes < 4096 {
            return bad(format!("segment_bytes {} < 4096", self.segment_bytes));
        }
        if self.max_message_bytes == 0 {
            return bad("max_message_bytes must be > 0".into());
        }
        // A record (body + overhead of up to a few KiB) must fit a segment.
        if self.max_message_bytes as u64 + 70_000 > self.segment_bytes {
            return bad(format!(
                "max_message_bytes {} does not fit segment_bytes {} with headers",
                self.max_message_bytes, self.segment_bytes
            ));
        }
        if self.cq_units_per_file == 0 {
            return bad("cq_units_per_file must be > 0".into());
        }
        if self.index_slots == 0 || self.index_items < 2 {
            return bad("index_slots must be > 0 and index_items >= 2".into());
        }
        if self.checkpoint_interval_ms == 0 {
            return bad("checkpoint_interval_ms must be > 0".into());
        }
        self.flush.sanitize()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_small_are_valid() {
        StoreConfig::default().sanitize().unwrap();
        StoreConfig::small().sanitize().unwrap();
    }

    #[test]
    fn rejects_messages_larger_than_segments() {
        let cfg = StoreConfig {
            segment_bytes: 1 << 20,
            ..StoreConfig::default()
        };
        assert!(matches!(cfg.sanitize(), Err(Error::Config(_))));
    }
}
