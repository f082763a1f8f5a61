//! Consumer group offsets kept by the broker (RocketMQ's
//! ConsumerOffsetManager): the next queue offset each group will consume,
//! per (topic, queue), persisted to `config/consumerOffset.json` every
//! flush interval and at shutdown.
//!
//! The file has RocketMQ's shape: `{"offsetTable": {"topic@group":
//! {"0": 12, ...}}}`. What was committed after the last flush is lost in
//! a crash, so consumption is at-least-once: a restarted group
//! re-consumes from the persisted offsets.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use mqlab_engine::config_file::ConfigFile;

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OffsetFile {
    offset_table: BTreeMap<String, BTreeMap<u32, u64>>,
}

/// Offsets by `topic@group` and queue id.
#[derive(Debug)]
pub struct ConsumerOffsets {
    file: ConfigFile,
    table: Mutex<BTreeMap<String, BTreeMap<u32, u64>>>,
}

fn key(group: &str, topic: &str) -> String {
    format!("{topic}@{group}")
}

impl ConsumerOffsets {
    /// Loads the table from `file` (empty when it does not exist).
    pub fn load(file: ConfigFile) -> Result<ConsumerOffsets> {
        let table = file
            .load::<OffsetFile>()?
            .map(|f| f.offset_table)
            .unwrap_or_default();
        Ok(ConsumerOffsets {
            file,
            table: Mutex::new(table),
        })
    }

    /// The committed offset of `group` on (`topic`, `queue_id`).
    pub fn query(&self, group: &str, topic: &str, queue_id: u32) -> Option<u64> {
        self.table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key(group, topic))?
            .get(&queue_id)
            .copied()
    }

    /// Sets the committed offset (in memory; persisted by [`Self::persist`]).
    pub fn commit(&self, group: &str, topic: &str, queue_id: u32, offset: u64) {
        self.table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key(group, topic))
            .or_default()
            .insert(queue_id, offset);
    }

    /// Every (topic, queue, offset) of a group.
    pub fn of_group(&self, group: &str) -> Vec<(String, u32, u64)> {
        let suffix = format!("@{group}");
        let t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        t.iter()
            .filter_map(|(k, qs)| k.strip_suffix(&suffix).map(|topic| (topic, qs)))
            .flat_map(|(topic, qs)| qs.iter().map(move |(q, o)| (topic.to_string(), *q, *o)))
            .collect()
    }

    /// Every (group, topic) with a committed offset.
    pub fn group_topics(&self) -> Vec<(String, String)> {
        let t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        t.keys()
            .filter_map(|k| k.split_once('@'))
            .map(|(topic, group)| (group.to_string(), topic.to_string()))
            .collect()
    }

    /// Writes the table to its file.
    pub fn persist(&self) -> Result<()> {
        let snapshot = OffsetFile {
            offset_table: self.table.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        };
        Ok(self.file.store(&snapshot)?)
    }
}
