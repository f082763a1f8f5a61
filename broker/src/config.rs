//! Broker and transaction settings: plain structs with `Default`, every
//! field with its default and unit, checked once at open by `sanitize`.

use crate::error::{Error, Result};

use crate::delayed::ROCKETMQ_LEVELS_MS;

/// Who holds retries until their delay level is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RetryDelay {
    /// The store's levels scheduler (`SCHEDULE_TOPIC_XXXX`, durable), as
    /// RocketMQ.
    Levels,
    /// An in-memory timer (lost in a crash).
    Memory,
}

/// Broker settings (RocketMQ's names in brackets).
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Queues of a topic created by its first send. Default 4
    /// [defaultTopicQueueNums].
    pub default_topic_queues: u32,
    /// Hold pulls that find nothing until a message arrives (long polling).
    /// Default true [longPollingEnable]; false = short polling.
    pub long_polling: bool,
    /// Short polling: how long a pull that finds nothing waits before
    /// looking once more, ms. Default 1,000 [shortPollingTimeMills].
    pub short_polling_ms: u64,
    /// Consumer offsets are written to `config/consumerOffset.json` this
    /// often, ms. Default 5,000 [flushConsumerOffsetInterval].
    pub offset_flush_interval_ms: u64,
    /// Ordered consumption: a (group, queue) lock not renewed for this long
    /// is free, ms. Default 60,000 [REBALANCE_LOCK_MAX_LIVE_TIME].
    pub lock_expiry_ms: u64,
    /// Retries wait delay level `retry_base_level + reconsume count`.
    /// Default 3 (10 s for the first retry).
    pub retry_base_level: u32,
    /// Delay levels of retries, ms. Default RocketMQ's
    /// `1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h`.
    pub delay_levels_ms: Vec<u64>,
    /// Who holds retries until due. Default the levels scheduler.
    pub retry_delay: RetryDelay,
    /// Units a pull scans at most looking for matching tags. Default 800.
    pub max_scan_units: usize,
    /// Transactions.
    pub txn: TxnConfig,
    /// Slave reads [slaveReadEnable]: a pull of data "no longer in memory"
    /// is answered with `suggestWhichBrokerId` =
    /// `which_broker_when_consume_slowly`, so the consumer's next pull of
    /// that queue goes to a slave. Default false: every answer suggests
    /// the master (0). Master or slave alike, as RocketMQ 4.x.
    pub slave_read_enable: bool,
    /// Share of the machine's memory, in percent, that pulled data may lie
    /// behind the commit log's end and still count as in memory. Default
    /// 40 [accessMessageInMemoryMaxRatio].
    pub access_message_in_memory_max_ratio: u32,
    /// The memory the ratio is taken of, bytes: None = the machine's
    /// physical memory (`MemTotal` of `/proc/meminfo`, 24 GiB when it
    /// cannot be read, as RocketMQ's `StoreUtil`). Tests set a few KiB.
    pub total_memory_bytes: Option<u64>,
    /// The broker id suggested for a slow consumer. Default 1
    /// [whichBrokerWhenConsumeSlowly, a subscription group setting in
    /// RocketMQ, one for every group here].
    pub which_broker_when_consume_slowly: u64,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            default_topic_queues: 4,
            long_polling: true,
            short_polling_ms: 1_000,
            offset_flush_interval_ms: 5_000,
            lock_expiry_ms: 60_000,
            retry_base_level: 3,
            delay_levels_ms: ROCKETMQ_LEVELS_MS.to_vec(),
            retry_delay: RetryDelay::Levels,
            max_scan_units: 800,
            txn: TxnConfig::default(),
            slave_read_enable: false,
            access_message_in_memory_max_ratio: 40,
            total_memory_bytes: None,
            which_broker_when_consume_slowly: 1,
        }
    }
}

impl BrokerConfig {
    /// Checks every value once.
    pub fn sanitize(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::Config(m.to_string()));
        if self.default_topic_queues == 0 {
            return bad("default_topic_queues must be > 0");
        }
        if self.offset_flush_interval_ms == 0 || self.short_polling_ms == 0 {
            return bad("offset_flush_interval_ms and short_polling_ms must be > 0");
        }
        if self.lock_expiry_ms == 0 || self.max_scan_units == 0 {
            return bad("lock_expiry_ms and max_scan_units must be > 0");
        }
        if self.delay_levels_ms.is_empty() {
            return bad("delay_levels_ms must name at least one level");
        }
        if self.access_message_in_memory_max_ratio > 100 {
            return bad("access_message_in_memory_max_ratio is a percentage (0..=100)");
        }
        self.txn.sanitize()
    }
}

/// Transaction settings (RocketMQ's names in brackets).
#[derive(Debug, Clone)]
pub struct TxnConfig {
    /// Run the check service thread. Default true (tests may run rounds by
    /// hand with [`crate::BrokerCore::check_transactions_once`]).
    pub check_enabled: bool,
    /// Check service period, ms. Default 30,000 [transactionCheckInterval].
    pub check_interval_ms: u64,
    /// Half messages younger than this (by born time) are not checked yet,
    /// ms. Default 6,000 [transactionTimeOut].
    pub timeout_ms: u64,
    /// Checks before a half message is discarded. Default 15
    /// [transactionCheckMax].
    pub check_max: u32,
    /// Half messages older than this are discarded unchecked, hours.
    /// Default 72 [fileReservedTime].
    pub file_reserved_hours: u64,
    /// Half messages looked at per round at most. Default 10,000.
    pub max_per_round: usize,
}

impl Default for TxnConfig {
    fn default() -> Self {
        TxnConfig {
            check_enabled: true,
            check_interval_ms: 30_000,
            timeout_ms: 6_000,
            check_max: 15,
            file_reserved_hours: 72,
            max_per_round: 10_000,
        }
    }
}

impl TxnConfig {
    /// Checks every value once.
    pub fn sanitize(&self) -> Result<()> {
        if self.check_interval_ms == 0 || self.max_per_round == 0 {
            return Err(Error::Config(
                "txn check_interval_ms and max_per_round must be > 0".into(),
            ));
        }
        Ok(())
    }
}
