//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::sync::Arc;

use mqlab_engine::io::sim::SimEnv;
use mqlab_engine::{BackendKind, Env, FlushKind, Message, StoreConfig};

/// Which environment a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Real(BackendKind),
    Sim,
}

/// The environment, or None (with a printed reason) when unavailable.
pub fn env_for(b: Backend, seed: u64) -> Option<Arc<dyn Env>> {
    match b {
        Backend::Sim => Some(Arc::new(SimEnv::new(seed))),
        Backend::Real(k) => match k.env() {
            Ok(e) => Some(e),
            Err(e) => {
                eprintln!("skipping: backend {k} unavailable: {e}");
                None
            }
        },
    }
}

/// Small files and fast background services, so tests roll segments and
/// see flushes within milliseconds.
pub fn test_config(flush: FlushKind) -> StoreConfig {
    let mut cfg = StoreConfig::small();
    cfg.segment_bytes = 128 * 1024;
    cfg.max_message_bytes = 32 * 1024;
    cfg.cq_units_per_file = 64;
    cfg.index_slots = 64;
    cfg.index_items = 256;
    cfg.checkpoint_interval_ms = 20;
    cfg.flush.kind = flush;
    cfg.flush.flush_interval_ms = 5;
    cfg.flush.flush_least_pages = 1;
    cfg.flush.flush_thorough_interval_ms = 50;
    cfg.flush.commit_interval_ms = 3;
    cfg.flush.pool_buffers = 4;
    cfg
}

/// Deterministic message number `i`: topic, queue, key and a body whose
/// size varies from 1 to ~3 KiB.
pub fn message(i: u64) -> Message {
    let topic = if i % 3 == 0 { "TopicB" } else { "TopicA" };
    let size = 1 + (i * 7919 % 3000) as usize;
    let body: Vec<u8> = (0..size).map(|j| (i as usize * 31 + j) as u8).collect();
    Message::new(topic, body)
        .with_queue((i % 4) as u32)
        .with_keys(format!("key-{i} common"))
        .with_tags(format!("tag{}", i % 5))
}

/// Message number encoded in a key "key-N".
pub fn number_of(m: &mqlab_engine::StoredMessage) -> Option<u64> {
    m.keys().find_map(|k| k.strip_prefix("key-")?.parse().ok())
}
