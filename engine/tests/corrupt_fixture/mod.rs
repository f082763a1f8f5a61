//! The corrupt fixtures' shared vocabulary: the store they are cut from
//! and the `case.json` each holds. Used by `corruption.rs` (which reads the
//! checked-in fixtures) and by their generator,
//! `scripts/corrupt-fixtures.rs` (`scripts/gen-corrupt-fixtures.sh`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use mqlab_engine::{FlushKind, PutStatus, Store, StoreConfig};
use serde::{Deserialize, Serialize};

use crate::common::{small_message, test_config};

/// Segment size of fixtures and hostile stores: about the smallest that
/// `StoreConfig::sanitize` accepts (2 KiB messages need 72,048 bytes), so
/// that ~150 small messages span two segments and the fixtures stay small.
pub const SEGMENT_BYTES: u64 = 72 * 1024;
pub const FIXTURE_MESSAGES: u64 = 150;
/// Bytes before the body of a record with IPv4 hosts (FORMAT.md).
pub const BODY_POS: u64 = 88;

pub fn small_config() -> StoreConfig {
    let mut cfg = test_config(FlushKind::Sync);
    cfg.segment_bytes = SEGMENT_BYTES;
    cfg.max_message_bytes = 2 * 1024;
    cfg
}

/// One record of the clean store, as its put reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rec {
    /// Message number: the record holds `small_message(i)`.
    pub i: u64,
    pub phys: u64,
    pub size: u32,
    pub topic: String,
    pub queue_id: u32,
    pub queue_offset: u64,
}

pub fn put_recorded(store: &Store, i: u64) -> Rec {
    let m = small_message(i);
    let r = store.put(&m);
    assert_eq!(r.status, PutStatus::PutOk, "put {i}: {:?}", r.detail);
    let o = r.offsets.expect("offsets on PUT_OK");
    Rec {
        i,
        phys: o.phys_offset,
        size: o.wrote_bytes,
        topic: m.topic,
        queue_id: m.queue_id,
        queue_offset: o.queue_offset,
    }
}

/// What the generator did to the clean store.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Mutation {
    /// File, relative to the store directory.
    pub file: String,
    /// Byte offset in that file.
    pub offset: u64,
    /// Bytes affected (1 for a bit flip).
    pub len: u64,
    /// "zero", "flip bit N", "truncate".
    pub action: String,
}

/// A commit-log cut recovery must report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cut {
    /// Segment file, relative to the store directory.
    pub file: String,
    /// Physical offset of the cut.
    pub offset: u64,
    /// Part of the decode error the report must quote.
    pub reason_contains: String,
}

/// What recovery must find.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Expect {
    pub abnormal: bool,
    /// The recovered end of the commit log.
    pub end_offset: u64,
    /// `records[..intact]` survive intact; the others are gone.
    pub intact: usize,
    /// The commit-log truncation the report must name, if any (zeros read
    /// as end of data, so a zeroed tail is not one).
    pub commitlog_cut: Option<Cut>,
    /// Whether the report must list consume-queue units cut because they
    /// pointed past the new end.
    pub queue_units_cut: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Case {
    pub case: String,
    pub description: String,
    pub segment_bytes: u64,
    pub mutation: Mutation,
    pub expect: Expect,
    /// Every record of the clean store, in log order.
    pub records: Vec<Rec>,
}

pub fn fixtures_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/corrupt")
}

pub fn seg_file(phys: u64) -> String {
    format!("commitlog/{:020}", phys - phys % SEGMENT_BYTES)
}
