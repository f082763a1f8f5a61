//! REGISTER_BROKER's body: the broker's topic table
//! (`TopicConfigSerializeWrapper`), written as Java writes it and read
//! leniently (numbers or strings, missing fields defaulted).

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::error::ProtocolError;

/// One topic as a broker announces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfig {
    /// Topic name.
    pub topic_name: String,
    /// Readable queues.
    pub read_queue_nums: i32,
    /// Writable queues.
    pub write_queue_nums: i32,
    /// PermName bits (read 4, write 2, inherit 1).
    pub perm: i32,
    /// Topic system flag.
    pub topic_sys_flag: i32,
    /// Ordered topic.
    pub order: bool,
}

impl TopicConfig {
    /// A readable and writable topic (perm 6) with `queues` read and write
    /// queues.
    pub fn new(name: &str, queues: i32) -> Self {
        TopicConfig {
            topic_name: name.to_string(),
            read_queue_nums: queues,
            write_queue_nums: queues,
            perm: 6,
            topic_sys_flag: 0,
            order: false,
        }
    }
}

/// The body: every topic of the broker and the table's version.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TopicConfigWrapper {
    /// Topic name -> config.
    pub topics: BTreeMap<String, TopicConfig>,
    /// Data version: (timestamp ms, counter).
    pub data_version: (i64, i64),
}

fn int(v: &Value) -> i64 {
    match v {
        Value::Number(n) => n.as_i64().unwrap_or(0),
        Value::String(s) => s.trim().parse().unwrap_or(0),
        _ => 0,
    }
}

impl TopicConfigWrapper {
    /// Encodes as Java does.
    pub fn encode(&self) -> Vec<u8> {
        let table: Map<String, Value> = self
            .topics
            .iter()
            .map(|(name, t)| {
                (
                    name.clone(),
                    json!({
                        "order": t.order,
                        "perm": t.perm,
                        "readQueueNums": t.read_queue_nums,
                        "topicFilterType": "SINGLE_TAG",
                        "topicName": t.topic_name,
                        "topicSysFlag": t.topic_sys_flag,
                        "writeQueueNums": t.write_queue_nums,
                    }),
                )
            })
            .collect();
        json!({
            "dataVersion": {"counter": self.data_version.1, "timestamp": self.data_version.0},
            "topicConfigTable": table,
        })
        .to_string()
        .into_bytes()
    }

    /// Decodes a body; a topic entry without a name takes its key.
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtocolError> {
        let v: Value = serde_json::from_slice(bytes)
            .map_err(|e| ProtocolError::Json(format!("topic config table: {e}")))?;
        let Some(table) = v.get("topicConfigTable") else {
            return Err(ProtocolError::Json(
                "topic config table: no topicConfigTable".into(),
            ));
        };
        let mut out = TopicConfigWrapper {
            data_version: (
                int(&v["dataVersion"]["timestamp"]),
                int(&v["dataVersion"]["counter"]),
            ),
            ..TopicConfigWrapper::default()
        };
        for (name, t) in table.as_object().into_iter().flatten() {
            let topic_name = t["topicName"].as_str().unwrap_or(name).to_string();
            out.topics.insert(
                name.clone(),
                TopicConfig {
                    topic_name,
                    read_queue_nums: int(&t["readQueueNums"]) as i32,
                    write_queue_nums: int(&t["writeQueueNums"]) as i32,
                    perm: int(&t["perm"]) as i32,
                    topic_sys_flag: int(&t["topicSysFlag"]) as i32,
                    order: matches!(&t["order"], Value::Bool(true))
                        || t["order"].as_str() == Some("true"),
                },
            );
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_reads_java_shapes() {
        let mut w = TopicConfigWrapper {
            data_version: (1_733_000_000_000, 3),
            ..TopicConfigWrapper::default()
        };
        w.topics.insert("T".into(), TopicConfig::new("T", 8));
        assert_eq!(TopicConfigWrapper::decode(&w.encode()).unwrap(), w);
        let java = br#"{"topicConfigTable":{"TBW102":{"topicName":"TBW102","readQueueNums":"8","writeQueueNums":8,"perm":7,"topicFilterType":"SINGLE_TAG","topicSysFlag":0,"order":false}},"dataVersion":{"timestamp":1,"counter":2,"stateVersion":0}}"#;
        let d = TopicConfigWrapper::decode(java).unwrap();
        assert_eq!(d.topics["TBW102"].read_queue_nums, 8);
        assert_eq!(d.topics["TBW102"].perm, 7);
        assert_eq!(d.data_version, (1, 2));
        assert!(TopicConfigWrapper::decode(b"{}").is_err());
        assert!(TopicConfigWrapper::decode(b"nope").is_err());
    }
}
