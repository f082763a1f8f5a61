//! Helpers shared by the messaging tests: a store with small files and fast
//! services, a broker with every interval in milliseconds, and waiting.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use mqlab_broker::{Broker, BrokerConfig};
use mqlab_client::consumer::{ConsumeFromWhere, ConsumerConfig};
use mqlab_engine::clock::{self, Clock};
use mqlab_engine::{FlushKind, Store, StoreConfig};

/// Small segments, fast flusher and checkpoint.
pub fn store_config() -> StoreConfig {
    let mut cfg = StoreConfig::small();
    cfg.segment_bytes = 128 * 1024;
    cfg.max_message_bytes = 8 * 1024;
    cfg.cq_units_per_file = 64;
    cfg.index_slots = 64;
    cfg.index_items = 256;
    cfg.checkpoint_interval_ms = 20;
    cfg.flush.kind = FlushKind::Async;
    cfg.flush.flush_interval_ms = 5;
    cfg.flush.flush_least_pages = 1;
    cfg.flush.flush_thorough_interval_ms = 20;
    cfg
}

/// Every broker interval in milliseconds; the check service off (tests
/// run rounds by hand); 1 ms retry delays.
pub fn broker_config() -> BrokerConfig {
    let mut cfg = BrokerConfig {
        offset_flush_interval_ms: 20,
        short_polling_ms: 20,
        delay_levels_ms: vec![1; 18],
        ..BrokerConfig::default()
    };
    cfg.txn.check_enabled = false;
    cfg
}

/// A store and a broker in a fresh temporary directory.
pub struct Lab {
    pub dir: tempfile::TempDir,
    pub store: Arc<Store>,
    pub broker: Arc<Broker>,
}

impl Lab {
    pub fn new() -> Lab {
        Self::with(broker_config(), clock::system())
    }

    pub fn with(cfg: BrokerConfig, clock: Arc<dyn Clock>) -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path(), store_config()).unwrap());
        let broker = Broker::open(store.clone(), cfg, clock).unwrap();
        Lab { dir, store, broker }
    }

    /// Crash: broker and store dropped without shutdown; reopened on the
    /// same directory.
    pub fn crash_and_reopen(self, cfg: BrokerConfig, clock: Arc<dyn Clock>) -> Lab {
        let Lab { dir, store, broker } = self;
        drop(broker);
        // The directory lock admits one store at a time: wait (bounded)
        // until consumer threads have let go of the old one.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while Arc::strong_count(&store) > 1 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        drop(store);
        let store = Arc::new(Store::open(dir.path(), store_config()).unwrap());
        let broker = Broker::open(store.clone(), cfg, clock).unwrap();
        Lab { dir, store, broker }
    }

    /// Clean shutdown of broker and store. Producers and consumers must be
    /// gone (their threads release the broker within moments).
    pub fn shutdown(self) {
        self.broker.shutdown().unwrap();
        let mut broker = Some(self.broker);
        let mut store = self.store;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(b) = broker.take() {
                if let Err(b) = Arc::try_unwrap(b) {
                    broker = Some(b);
                }
            }
            if broker.is_none() {
                match Arc::try_unwrap(store) {
                    Ok(s) => return s.shutdown().unwrap(),
                    Err(s) => store = s,
                }
            }
            assert!(
                Instant::now() < deadline,
                "broker or store still shared at shutdown"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// A consumer config with every interval in milliseconds, starting at the
/// first offset.
pub fn consumer_config(group: &str, client: &str) -> ConsumerConfig {
    let mut c = ConsumerConfig::new(group);
    c.client_id = client.to_string();
    c.from_where = ConsumeFromWhere::FirstOffset;
    c.consume_threads = 4;
    c.pull_suspend_ms = 200;
    c.pull_error_delay_ms = 20;
    c.rebalance_interval_ms = 50;
    c.lock_renew_interval_ms = 50;
    c.client_lock_expiry_ms = 30_000;
    c.suspend_current_queue_ms = 5;
    c.send_back_retry_ms = 20;
    c.persist_interval_ms = 20;
    c
}

/// Waits until `f` holds, at most `secs` seconds; panics with `what`.
pub fn wait_for(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The seed of a test: MQLAB_SEED or a fixed default, printed.
pub fn seed(default: u64) -> u64 {
    let s = std::env::var("MQLAB_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    eprintln!("seed {s} (replay with MQLAB_SEED={s})");
    s
}

/// Queues of `topic` a push consumer owns (its group's retry queue aside).
pub fn owned(c: &mqlab_client::consumer::push::PushConsumer, topic: &str) -> usize {
    c.assignment().iter().filter(|q| q.topic == topic).count()
}
