//! The topic table: queues per topic, auto-created on first send and
//! persisted to `config/topics.json`. A topic the store already holds
//! queues of is known at open even when the file lost it (a crash between
//! the first put and the file's write).

use std::collections::BTreeMap;
use std::sync::RwLock;

use crate::error::{validate_topic, Error, Result};
use mqlab_engine::config_file::ConfigFile;
use mqlab_engine::store::Store;

use crate::types::MessageQueue;

/// Queues per topic.
#[derive(Debug)]
pub(crate) struct TopicTable {
    map: RwLock<BTreeMap<String, u32>>,
    file: ConfigFile,
}

impl TopicTable {
    /// Loads `file` and registers every queue `store` already has.
    pub(crate) fn load(file: ConfigFile, store: &Store) -> Result<TopicTable> {
        let mut map: BTreeMap<String, u32> = file.load()?.unwrap_or_default();
        for q in store.queues() {
            let n = map.entry(q.topic).or_insert(0);
            *n = (*n).max(q.queue_id + 1);
        }
        Ok(TopicTable {
            map: RwLock::new(map),
            file,
        })
    }

    /// Every topic and its queue count.
    pub(crate) fn all(&self) -> BTreeMap<String, u32> {
        self.map.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Writes the table to its file.
    pub(crate) fn persist(&self) -> Result<()> {
        let t = self.map.read().unwrap_or_else(|e| e.into_inner()).clone();
        Ok(self.file.store(&t)?)
    }

    /// Creates `topic` with `queues` queues (or grows it to that many).
    pub(crate) fn create(&self, topic: &str, queues: u32) -> Result<()> {
        validate_topic(topic)?;
        if queues == 0 {
            return Err(Error::NoQueues {
                topic: topic.to_string(),
            });
        }
        let changed = {
            let mut t = self.map.write().unwrap_or_else(|e| e.into_inner());
            let n = t.entry(topic.to_string()).or_insert(0);
            let changed = *n < queues;
            *n = (*n).max(queues);
            changed
        };
        if changed {
            self.persist()?;
        }
        Ok(())
    }

    /// Queue count of a topic, if it exists.
    pub(crate) fn queues(&self, topic: &str) -> Option<u32> {
        self.map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(topic)
            .copied()
    }
}

/// (first, one past last) queue offset of a queue; (0, 0) when empty.
pub(crate) fn queue_range(store: &Store, mq: &MessageQueue) -> (u64, u64) {
    store
        .queue_info(&mq.topic, mq.queue_id)
        .map(|i| (i.min_offset, i.max_offset))
        .unwrap_or((0, 0))
}
