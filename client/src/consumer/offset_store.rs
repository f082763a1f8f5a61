//! Where a consumer keeps its offsets: one trait, two implementations.
//! Clustering groups share theirs through the broker
//! ([`RemoteOffsetStore`]: `config/consumerOffset.json`); a broadcasting
//! consumer keeps its own in a local file ([`LocalFileOffsetStore`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::error::Result;
use mqlab_broker::types::{MessageQueue, QueryConsumerOffsetRequest, UpdateConsumerOffsetRequest};
use mqlab_engine::config_file::ConfigFile;

use crate::api::BrokerApi;

/// A consumer's offsets.
pub trait OffsetStore: Send + Sync {
    /// Name in results.
    fn name(&self) -> &'static str;
    /// The committed offset of a queue.
    fn read(&self, mq: &MessageQueue) -> Option<u64>;
    /// Sets it; with `increase_only`, never moves it back.
    fn update(&self, mq: &MessageQueue, offset: u64, increase_only: bool);
    /// Makes every offset durable where this store keeps them.
    fn persist_all(&self) -> Result<()>;
}

/// Offsets kept by the broker for the whole group.
pub struct RemoteOffsetStore {
    broker: Arc<dyn BrokerApi>,
    group: String,
    /// Serializes read-compare-write of `update`.
    lock: Mutex<()>,
}

impl RemoteOffsetStore {
    /// The offsets of `group` at `broker`.
    pub fn new(broker: Arc<dyn BrokerApi>, group: &str) -> RemoteOffsetStore {
        RemoteOffsetStore {
            broker,
            group: group.to_string(),
            lock: Mutex::new(()),
        }
    }
}

impl OffsetStore for RemoteOffsetStore {
    fn name(&self) -> &'static str {
        "remote"
    }

    fn read(&self, mq: &MessageQueue) -> Option<u64> {
        self.broker
            .query_consumer_offset(&QueryConsumerOffsetRequest {
                group: self.group.clone(),
                mq: mq.clone(),
            })
    }

    fn update(&self, mq: &MessageQueue, offset: u64, increase_only: bool) {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        if increase_only && self.read(mq).is_some_and(|o| o >= offset) {
            return;
        }
        self.broker
            .update_consumer_offset(&UpdateConsumerOffsetRequest {
                group: self.group.clone(),
                mq: mq.clone(),
                offset,
            });
    }

    fn persist_all(&self) -> Result<()> {
        // The broker's flusher writes the file; nothing is cached here.
        Ok(())
    }
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct LocalFile {
    /// "topic:queue" -> offset.
    offset_table: BTreeMap<String, u64>,
}

/// A broadcasting consumer's own offsets, in
/// `<dir>/<client_id>/<group>/offsets.json`.
pub struct LocalFileOffsetStore {
    file: ConfigFile,
    table: Mutex<BTreeMap<MessageQueue, u64>>,
}

impl LocalFileOffsetStore {
    /// Loads the offsets of `client_id` in `group` (none when the file does
    /// not exist), through the client's local files (in-process: the
    /// store's env).
    pub fn load(
        broker: &dyn BrokerApi,
        dir: Option<&Path>,
        client_id: &str,
        group: &str,
    ) -> Result<LocalFileOffsetStore> {
        let local = broker.local_files();
        let root = dir.map(Path::to_path_buf).unwrap_or(local.dir);
        let file = ConfigFile::new(
            local.env,
            root.join(client_id).join(group).join("offsets.json"),
        );
        let mut table = BTreeMap::new();
        if let Some(f) = file.load::<LocalFile>()? {
            for (k, v) in f.offset_table {
                if let Some((t, q)) = k.rsplit_once(':') {
                    if let Ok(q) = q.parse() {
                        table.insert(MessageQueue::new(t, q), v);
                    }
                }
            }
        }
        Ok(LocalFileOffsetStore {
            file,
            table: Mutex::new(table),
        })
    }
}

impl OffsetStore for LocalFileOffsetStore {
    fn name(&self) -> &'static str {
        "local-file"
    }

    fn read(&self, mq: &MessageQueue) -> Option<u64> {
        self.table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(mq)
            .copied()
    }

    fn update(&self, mq: &MessageQueue, offset: u64, increase_only: bool) {
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let e = t.entry(mq.clone()).or_insert(offset);
        if !increase_only || offset > *e {
            *e = offset;
        }
    }

    fn persist_all(&self) -> Result<()> {
        let f = LocalFile {
            offset_table: self
                .table
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|(mq, o)| (format!("{}:{}", mq.topic, mq.queue_id), *o))
                .collect(),
        };
        Ok(self.file.store(&f)?)
    }
}
