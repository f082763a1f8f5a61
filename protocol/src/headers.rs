//! Typed request and response headers: what each code carries in its ext
//! fields, read leniently (see [`crate::fields`]) and written as Java
//! writes them. Field names are RocketMQ's.

use std::collections::BTreeMap;

use crate::error::ProtocolError;
use crate::fields::ExtFields;

/// `MQVersion.Version.V4_9_4.ordinal()`: clients at or above it get
/// route data in standard JSON.
pub const VERSION_V4_9_4: i32 = 401;

/// SEND_MESSAGE (10) / SEND_MESSAGE_V2 (310) / SEND_BATCH_MESSAGE (320)
/// request header.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SendMessageRequest {
    /// Producer group.
    pub producer_group: String,
    /// Topic.
    pub topic: String,
    /// Template topic for auto-creation (TBW102).
    pub default_topic: String,
    /// Queues of an auto-created topic.
    pub default_topic_queue_nums: i32,
    /// Target queue.
    pub queue_id: i32,
    /// MessageSysFlag bits.
    pub sys_flag: i32,
    /// Producer's clock at send, ms.
    pub born_timestamp: i64,
    /// User flag.
    pub flag: i32,
    /// Properties as `k\x01v\x02` pairs.
    pub properties: String,
    /// Times consumed before (retries).
    pub reconsume_times: i32,
    /// Unit mode.
    pub unit_mode: bool,
    /// A batch (body holds several messages).
    pub batch: bool,
    /// Retry limit before the DLQ, if set.
    pub max_reconsume_times: Option<i32>,
    /// Target broker name (5.x), if set.
    pub broker_name: Option<String>,
}

/// V2's one-letter names, in the V1 field order.
const V2_NAMES: [(&str, &str); 14] = [
    ("a", "producerGroup"),
    ("b", "topic"),
    ("c", "defaultTopic"),
    ("d", "defaultTopicQueueNums"),
    ("e", "queueId"),
    ("f", "sysFlag"),
    ("g", "bornTimestamp"),
    ("h", "flag"),
    ("i", "properties"),
    ("j", "reconsumeTimes"),
    ("k", "unitMode"),
    ("l", "maxReconsumeTimes"),
    ("m", "batch"),
    ("n", "brokerName"),
];

impl SendMessageRequest {
    /// Reads V1 (long names) or V2 (one-letter names) fields. Required:
    /// producer group, topic, queue id (as Java's `@CFNotNull`).
    pub fn from_fields(f: &BTreeMap<String, String>, v2: bool) -> Result<Self, ProtocolError> {
        let long;
        let f = if v2 {
            long = V2_NAMES
                .iter()
                .filter_map(|(s, l)| f.get(*s).map(|v| (l.to_string(), v.clone())))
                .collect::<BTreeMap<_, _>>();
            &long
        } else {
            f
        };
        Ok(SendMessageRequest {
            producer_group: f.str_req("producerGroup")?.to_string(),
            topic: f.str_req("topic")?.to_string(),
            default_topic: f.str_opt("defaultTopic").unwrap_or("TBW102").to_string(),
            default_topic_queue_nums: f.i32_opt("defaultTopicQueueNums")?.unwrap_or(4),
            queue_id: f.i32_opt("queueId")?.ok_or_else(|| ProtocolError::Field {
                field: "queueId".into(),
                reason: "missing".into(),
            })?,
            sys_flag: f.i32_opt("sysFlag")?.unwrap_or(0),
            born_timestamp: f.i64_opt("bornTimestamp")?.unwrap_or(0),
            flag: f.i32_opt("flag")?.unwrap_or(0),
            properties: f.str_opt("properties").unwrap_or("").to_string(),
            reconsume_times: f.i32_opt("reconsumeTimes")?.unwrap_or(0),
            unit_mode: f.bool_or_false("unitMode")?,
            batch: f.bool_or_false("batch")?,
            max_reconsume_times: f.i32_opt("maxReconsumeTimes")?,
            broker_name: f.str_opt("brokerName").map(str::to_string),
        })
    }

    /// Writes the fields, V1 or V2 names.
    pub fn to_fields(&self, v2: bool) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        let mut put = |k: &str, v: String| {
            let k = if v2 {
                V2_NAMES.iter().find(|(_, l)| *l == k).map_or(k, |(s, _)| s)
            } else {
                k
            };
            m.insert(k.to_string(), v);
        };
        put("producerGroup", self.producer_group.clone());
        put("topic", self.topic.clone());
        put("defaultTopic", self.default_topic.clone());
        put(
            "defaultTopicQueueNums",
            self.default_topic_queue_nums.to_string(),
        );
        put("queueId", self.queue_id.to_string());
        put("sysFlag", self.sys_flag.to_string());
        put("bornTimestamp", self.born_timestamp.to_string());
        put("flag", self.flag.to_string());
        put("properties", self.properties.clone());
        put("reconsumeTimes", self.reconsume_times.to_string());
        put("unitMode", self.unit_mode.to_string());
        put("batch", self.batch.to_string());
        if let Some(n) = self.max_reconsume_times {
            put("maxReconsumeTimes", n.to_string());
        }
        if let Some(b) = &self.broker_name {
            put("brokerName", b.clone());
        }
        m
    }
}

/// SEND_MESSAGE response header.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SendMessageResponse {
    /// Offset message id (section "message ids" of PROTOCOL.md).
    pub msg_id: String,
    /// Queue the message went to.
    pub queue_id: i32,
    /// Its offset in that queue.
    pub queue_offset: i64,
    /// Transaction id of a half message, if any.
    pub transaction_id: Option<String>,
}

impl SendMessageResponse {
    /// Reads the fields.
    pub fn from_fields(f: &BTreeMap<String, String>) -> Result<Self, ProtocolError> {
        Ok(SendMessageResponse {
            msg_id: f.str_req("msgId")?.to_string(),
            queue_id: f.i32_opt("queueId")?.unwrap_or(0),
            queue_offset: f.i64_opt("queueOffset")?.unwrap_or(0),
            transaction_id: f.str_opt("transactionId").map(str::to_string),
        })
    }

    /// Writes the fields.
    pub fn to_fields(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        m.insert("msgId".into(), self.msg_id.clone());
        m.insert("queueId".into(), self.queue_id.to_string());
        m.insert("queueOffset".into(), self.queue_offset.to_string());
        if let Some(t) = &self.transaction_id {
            m.insert("transactionId".into(), t.clone());
        }
        m
    }
}

/// PullSysFlag bits.
pub mod pull_sys_flag {
    /// The request carries the consumer's committed offset.
    pub const COMMIT_OFFSET: i32 = 1;
    /// Long polling: hold the request until messages arrive.
    pub const SUSPEND: i32 = 1 << 1;
    /// The request carries its subscription expression.
    pub const SUBSCRIPTION: i32 = 1 << 2;
    /// Class filter (not supported).
    pub const CLASS_FILTER: i32 = 1 << 3;
    /// Lite pull consumer.
    pub const LITE_PULL: i32 = 1 << 4;
}

/// PULL_MESSAGE (11) request header.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PullMessageRequest {
    /// Consumer group.
    pub consumer_group: String,
    /// Topic.
    pub topic: String,
    /// Queue.
    pub queue_id: i32,
    /// First queue offset wanted.
    pub queue_offset: i64,
    /// Most messages to return.
    pub max_msg_nums: i32,
    /// [`pull_sys_flag`] bits.
    pub sys_flag: i32,
    /// Committed offset to record (with COMMIT_OFFSET).
    pub commit_offset: i64,
    /// Longest hold for long polling, ms.
    pub suspend_timeout_millis: i64,
    /// Subscription expression (with SUBSCRIPTION).
    pub subscription: Option<String>,
    /// Subscription version.
    pub sub_version: i64,
    /// "TAG" or "SQL92".
    pub expression_type: Option<String>,
}

impl PullMessageRequest {
    /// Reads the fields; group, topic, queue id, offset, max count, sys
    /// flag, commit offset, suspend timeout and sub version are required.
    pub fn from_fields(f: &BTreeMap<String, String>) -> Result<Self, ProtocolError> {
        Ok(PullMessageRequest {
            consumer_group: f.str_req("consumerGroup")?.to_string(),
            topic: f.str_req("topic")?.to_string(),
            queue_id: req_i32(f, "queueId")?,
            queue_offset: f.i64_req("queueOffset")?,
            max_msg_nums: req_i32(f, "maxMsgNums")?,
            sys_flag: req_i32(f, "sysFlag")?,
            commit_offset: f.i64_opt("commitOffset")?.unwrap_or(0),
            suspend_timeout_millis: f.i64_opt("suspendTimeoutMillis")?.unwrap_or(0),
            subscription: f.str_opt("subscription").map(str::to_string),
            sub_version: f.i64_opt("subVersion")?.unwrap_or(0),
            expression_type: f.str_opt("expressionType").map(str::to_string),
        })
    }

    /// Writes the fields.
    pub fn to_fields(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        m.insert("consumerGroup".into(), self.consumer_group.clone());
        m.insert("topic".into(), self.topic.clone());
        m.insert("queueId".into(), self.queue_id.to_string());
        m.insert("queueOffset".into(), self.queue_offset.to_string());
        m.insert("maxMsgNums".into(), self.max_msg_nums.to_string());
        m.insert("sysFlag".into(), self.sys_flag.to_string());
        m.insert("commitOffset".into(), self.commit_offset.to_string());
        m.insert(
            "suspendTimeoutMillis".into(),
            self.suspend_timeout_millis.to_string(),
        );
        if let Some(s) = &self.subscription {
            m.insert("subscription".into(), s.clone());
        }
        m.insert("subVersion".into(), self.sub_version.to_string());
        if let Some(e) = &self.expression_type {
            m.insert("expressionType".into(), e.clone());
        }
        m
    }
}

/// PULL_MESSAGE response header.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PullMessageResponse {
    /// Which broker (0 master, 1.. slaves) the consumer should pull from
    /// next.
    pub suggest_which_broker_id: i64,
    /// Queue offset to ask for next.
    pub next_begin_offset: i64,
    /// Queue's min offset.
    pub min_offset: i64,
    /// Queue's max offset.
    pub max_offset: i64,
}

impl PullMessageResponse {
    /// Reads the fields.
    pub fn from_fields(f: &BTreeMap<String, String>) -> Result<Self, ProtocolError> {
        Ok(PullMessageResponse {
            suggest_which_broker_id: f.i64_opt("suggestWhichBrokerId")?.unwrap_or(0),
            next_begin_offset: f.i64_req("nextBeginOffset")?,
            min_offset: f.i64_req("minOffset")?,
            max_offset: f.i64_req("maxOffset")?,
        })
    }

    /// Writes the fields.
    pub fn to_fields(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        m.insert(
            "suggestWhichBrokerId".into(),
            self.suggest_which_broker_id.to_string(),
        );
        m.insert("nextBeginOffset".into(), self.next_begin_offset.to_string());
        m.insert("minOffset".into(), self.min_offset.to_string());
        m.insert("maxOffset".into(), self.max_offset.to_string());
        m
    }
}

/// Ext field that turns a QUERY_MESSAGE into a unique-key query
/// (`MixAll.UNIQUE_MSG_QUERY_FLAG`): the broker then returns up to its
/// default of 32 messages whatever `maxNum` says.
pub const UNIQUE_KEY_QUERY: &str = "_UNIQUE_KEY_QUERY";

/// QUERY_MESSAGE (12) request header: messages of a topic by key, from the
/// index.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueryMessageRequest {
    /// Topic.
    pub topic: String,
    /// A KEYS entry or a UNIQ_KEY.
    pub key: String,
    /// Most messages wanted (the broker caps it at 64).
    pub max_num: i32,
    /// Store time range, ms, inclusive.
    pub begin_timestamp: i64,
    /// End of the store time range, ms, inclusive.
    pub end_timestamp: i64,
    /// [`UNIQUE_KEY_QUERY`] was "true".
    pub unique_key: bool,
}

impl QueryMessageRequest {
    /// Reads the fields; all five are required (Java's `@CFNotNull`).
    pub fn from_fields(f: &BTreeMap<String, String>) -> Result<Self, ProtocolError> {
        Ok(QueryMessageRequest {
            topic: f.str_req("topic")?.to_string(),
            key: f.str_req("key")?.to_string(),
            max_num: req_i32(f, "maxNum")?,
            begin_timestamp: f.i64_req("beginTimestamp")?,
            end_timestamp: f.i64_req("endTimestamp")?,
            // Java compares the text with "true" (only "true" is true).
            unique_key: f.str_opt(UNIQUE_KEY_QUERY) == Some("true"),
        })
    }

    /// Writes the fields.
    pub fn to_fields(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        m.insert("topic".into(), self.topic.clone());
        m.insert("key".into(), self.key.clone());
        m.insert("maxNum".into(), self.max_num.to_string());
        m.insert("beginTimestamp".into(), self.begin_timestamp.to_string());
        m.insert("endTimestamp".into(), self.end_timestamp.to_string());
        if self.unique_key {
            m.insert(UNIQUE_KEY_QUERY.into(), "true".into());
        }
        m
    }
}

/// QUERY_MESSAGE response header (on SUCCESS and on QUERY_NOT_FOUND).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueryMessageResponse {
    /// Store time of the newest indexed message, ms.
    pub index_last_update_timestamp: i64,
    /// Commit-log offset of the newest indexed message.
    pub index_last_update_phyoffset: i64,
}

impl QueryMessageResponse {
    /// Reads the fields (both required).
    pub fn from_fields(f: &BTreeMap<String, String>) -> Result<Self, ProtocolError> {
        Ok(QueryMessageResponse {
            index_last_update_timestamp: f.i64_req("indexLastUpdateTimestamp")?,
            index_last_update_phyoffset: f.i64_req("indexLastUpdatePhyoffset")?,
        })
    }

    /// Writes the fields.
    pub fn to_fields(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        m.insert(
            "indexLastUpdateTimestamp".into(),
            self.index_last_update_timestamp.to_string(),
        );
        m.insert(
            "indexLastUpdatePhyoffset".into(),
            self.index_last_update_phyoffset.to_string(),
        );
        m
    }
}

/// Which end of a run of equal store times SEARCH_OFFSET_BY_TIMESTAMP
/// answers (`BoundaryType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BoundaryType {
    /// The first offset stored at or after the time (the default).
    #[default]
    Lower,
    /// The last offset stored at or before the time.
    Upper,
}

impl BoundaryType {
    /// Java's `BoundaryType.getType`: "upper" in any case is UPPER,
    /// anything else (absent included) LOWER.
    pub fn parse(v: Option<&str>) -> BoundaryType {
        match v {
            Some(s) if s.trim().eq_ignore_ascii_case("upper") => BoundaryType::Upper,
            _ => BoundaryType::Lower,
        }
    }

    /// The name Java's client writes.
    pub fn as_str(self) -> &'static str {
        match self {
            BoundaryType::Lower => "LOWER",
            BoundaryType::Upper => "UPPER",
        }
    }
}

/// SEARCH_OFFSET_BY_TIMESTAMP (29) request header.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SearchOffsetRequest {
    /// Topic.
    pub topic: String,
    /// Queue.
    pub queue_id: i32,
    /// Store time looked for, ms.
    pub timestamp: i64,
    /// Which boundary.
    pub boundary_type: BoundaryType,
}

impl SearchOffsetRequest {
    /// Reads the fields; topic, queue id and timestamp are required.
    pub fn from_fields(f: &BTreeMap<String, String>) -> Result<Self, ProtocolError> {
        Ok(SearchOffsetRequest {
            topic: f.str_req("topic")?.to_string(),
            queue_id: req_i32(f, "queueId")?,
            timestamp: f.i64_req("timestamp")?,
            boundary_type: BoundaryType::parse(f.str_opt("boundaryType")),
        })
    }

    /// Writes the fields.
    pub fn to_fields(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        m.insert("topic".into(), self.topic.clone());
        m.insert("queueId".into(), self.queue_id.to_string());
        m.insert("timestamp".into(), self.timestamp.to_string());
        m.insert("boundaryType".into(), self.boundary_type.as_str().into());
        m
    }
}

/// SEARCH_OFFSET_BY_TIMESTAMP response header.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SearchOffsetResponse {
    /// The queue offset found.
    pub offset: i64,
}

impl SearchOffsetResponse {
    /// Reads the field.
    pub fn from_fields(f: &BTreeMap<String, String>) -> Result<Self, ProtocolError> {
        Ok(SearchOffsetResponse {
            offset: f.i64_req("offset")?,
        })
    }

    /// Writes the field.
    pub fn to_fields(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        m.insert("offset".into(), self.offset.to_string());
        m
    }
}

fn req_i32(f: &BTreeMap<String, String>, key: &str) -> Result<i32, ProtocolError> {
    f.i32_opt(key)?.ok_or_else(|| ProtocolError::Field {
        field: key.into(),
        reason: "missing".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_v1_and_v2_carry_the_same_request() {
        let r = SendMessageRequest {
            producer_group: "pg".into(),
            topic: "T".into(),
            default_topic: "TBW102".into(),
            default_topic_queue_nums: 4,
            queue_id: 3,
            sys_flag: 0,
            born_timestamp: 1_733_000_000_000,
            flag: 0,
            properties: "KEYS\u{1}k\u{2}".into(),
            reconsume_times: 0,
            unit_mode: false,
            batch: false,
            max_reconsume_times: Some(16),
            broker_name: None,
        };
        for v2 in [false, true] {
            let f = r.to_fields(v2);
            assert_eq!(f.contains_key("a"), v2);
            assert_eq!(SendMessageRequest::from_fields(&f, v2).unwrap(), r);
        }
        let mut f = r.to_fields(true);
        f.remove("e");
        let e = SendMessageRequest::from_fields(&f, true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("queueId"), "{e}");
    }

    #[test]
    fn query_and_search_headers_round_trip_and_require_their_fields() {
        let q = QueryMessageRequest {
            topic: "T".into(),
            key: "k1".into(),
            max_num: 32,
            begin_timestamp: 0,
            end_timestamp: i64::MAX,
            unique_key: true,
        };
        assert_eq!(QueryMessageRequest::from_fields(&q.to_fields()).unwrap(), q);
        let mut f = q.to_fields();
        f.insert(UNIQUE_KEY_QUERY.into(), "1".into());
        assert!(!QueryMessageRequest::from_fields(&f).unwrap().unique_key);
        f.remove("endTimestamp");
        let e = QueryMessageRequest::from_fields(&f)
            .unwrap_err()
            .to_string();
        assert!(e.contains("endTimestamp"), "{e}");
        let r = QueryMessageResponse {
            index_last_update_timestamp: 1_733_000_000_000,
            index_last_update_phyoffset: 4096,
        };
        assert_eq!(
            QueryMessageResponse::from_fields(&r.to_fields()).unwrap(),
            r
        );

        let s = SearchOffsetRequest {
            topic: "T".into(),
            queue_id: 2,
            timestamp: 1_733_000_000_000,
            boundary_type: BoundaryType::Upper,
        };
        assert_eq!(SearchOffsetRequest::from_fields(&s.to_fields()).unwrap(), s);
        let mut f = s.to_fields();
        for (v, want) in [
            ("upper", BoundaryType::Upper),
            ("lower", BoundaryType::Lower),
            ("x", BoundaryType::Lower),
        ] {
            f.insert("boundaryType".into(), v.into());
            assert_eq!(
                SearchOffsetRequest::from_fields(&f).unwrap().boundary_type,
                want
            );
        }
        f.remove("boundaryType");
        assert_eq!(
            SearchOffsetRequest::from_fields(&f).unwrap().boundary_type,
            BoundaryType::Lower
        );
        f.remove("queueId");
        assert!(SearchOffsetRequest::from_fields(&f).is_err());
        let r = SearchOffsetResponse { offset: 7 };
        assert_eq!(
            SearchOffsetResponse::from_fields(&r.to_fields()).unwrap(),
            r
        );
    }

    #[test]
    fn pull_round_trips_and_requires_its_offsets() {
        let p = PullMessageRequest {
            consumer_group: "g".into(),
            topic: "T".into(),
            queue_id: 1,
            queue_offset: 10,
            max_msg_nums: 32,
            sys_flag: pull_sys_flag::SUSPEND | pull_sys_flag::SUBSCRIPTION,
            commit_offset: 0,
            suspend_timeout_millis: 15_000,
            subscription: Some("*".into()),
            sub_version: 1,
            expression_type: Some("TAG".into()),
        };
        assert_eq!(PullMessageRequest::from_fields(&p.to_fields()).unwrap(), p);
        let mut f = p.to_fields();
        f.insert("maxMsgNums".into(), "2147483648".into());
        assert!(PullMessageRequest::from_fields(&f).is_err());
        let resp = PullMessageResponse {
            suggest_which_broker_id: 1,
            next_begin_offset: 42,
            min_offset: 0,
            max_offset: 42,
        };
        assert_eq!(
            PullMessageResponse::from_fields(&resp.to_fields()).unwrap(),
            resp
        );
    }
}
