//! `TopicRouteData`, the body of GET_ROUTEINFO_BY_TOPIC's answer.
//!
//! Written in one of two forms, as Java's name server does: standard JSON
//! for clients at V4_9_4 or later (or that ask with
//! `acceptStandardJsonOnly`), and otherwise fastjson's default form, whose
//! `brokerAddrs` map has unquoted integer keys (`{0:"127.0.0.1:10911"}`),
//! which older clients expect. Both forms are read.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::error::ProtocolError;

/// Queues of a topic on one broker group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueData {
    /// Broker group name.
    pub broker_name: String,
    /// Readable queues.
    pub read_queue_nums: i32,
    /// Writable queues.
    pub write_queue_nums: i32,
    /// PermName bits (read 4, write 2, inherit 1).
    pub perm: i32,
    /// Topic system flag.
    pub topic_sys_flag: i32,
}

/// One broker group: its addresses by broker id (0 = master).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerData {
    /// Cluster name.
    pub cluster: String,
    /// Broker group name.
    pub broker_name: String,
    /// Broker id -> "host:port".
    pub broker_addrs: BTreeMap<i64, String>,
}

/// Route of a topic.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TopicRouteData {
    /// Ordered-topic configuration, if any.
    pub order_topic_conf: Option<String>,
    /// Queues per broker group.
    pub queue_datas: Vec<QueueData>,
    /// Broker groups.
    pub broker_datas: Vec<BrokerData>,
}

impl TopicRouteData {
    /// Encodes as standard JSON (`standard`) or fastjson's legacy form.
    pub fn encode(&self, standard: bool) -> Vec<u8> {
        let queues: Vec<Value> = self
            .queue_datas
            .iter()
            .map(|q| {
                json!({
                    "brokerName": q.broker_name,
                    "perm": q.perm,
                    "readQueueNums": q.read_queue_nums,
                    "topicSysFlag": q.topic_sys_flag,
                    "writeQueueNums": q.write_queue_nums,
                })
            })
            .collect();
        let brokers: Vec<Value> = self
            .broker_datas
            .iter()
            .map(|b| {
                let addrs: Map<String, Value> = b
                    .broker_addrs
                    .iter()
                    .map(|(id, a)| (id.to_string(), Value::String(a.clone())))
                    .collect();
                // enableActingMaster: RocketMQ 5 writes it always, and
                // rocketmq-rust's client refuses a route without it.
                json!({
                    "brokerAddrs": addrs,
                    "brokerName": b.broker_name,
                    "cluster": b.cluster,
                    "enableActingMaster": false,
                })
            })
            .collect();
        let mut top = Map::new();
        top.insert("brokerDatas".into(), Value::Array(brokers));
        top.insert("filterServerTable".into(), json!({}));
        if let Some(c) = &self.order_topic_conf {
            top.insert("orderTopicConf".into(), Value::String(c.clone()));
        }
        top.insert("queueDatas".into(), Value::Array(queues));
        let text = Value::Object(top).to_string();
        if standard {
            return text.into_bytes();
        }
        unquote_integer_keys(&text).into_bytes()
    }

    /// Decodes either form.
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtocolError> {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| ProtocolError::Json("route data is not UTF-8".into()))?;
        let v: Value = serde_json::from_str(text)
            .or_else(|_| serde_json::from_str(&quote_integer_keys(text)))
            .map_err(|e| ProtocolError::Json(format!("route data: {e}")))?;
        let int = |v: &Value, k: &str| -> i32 {
            match &v[k] {
                Value::Number(n) => n.as_i64().unwrap_or(0) as i32,
                Value::String(s) => s.trim().parse().unwrap_or(0),
                _ => 0,
            }
        };
        let s = |v: &Value, k: &str| v[k].as_str().unwrap_or("").to_string();
        let mut out = TopicRouteData {
            order_topic_conf: v["orderTopicConf"].as_str().map(str::to_string),
            ..TopicRouteData::default()
        };
        for q in v["queueDatas"].as_array().into_iter().flatten() {
            out.queue_datas.push(QueueData {
                broker_name: s(q, "brokerName"),
                read_queue_nums: int(q, "readQueueNums"),
                write_queue_nums: int(q, "writeQueueNums"),
                perm: int(q, "perm"),
                topic_sys_flag: int(q, "topicSysFlag").max(int(q, "topicSynFlag")),
            });
        }
        for b in v["brokerDatas"].as_array().into_iter().flatten() {
            let mut addrs = BTreeMap::new();
            for (k, a) in b["brokerAddrs"].as_object().into_iter().flatten() {
                let id = k.trim().parse::<i64>().map_err(|_| {
                    ProtocolError::Json(format!("brokerAddrs key {k:?} is not a broker id"))
                })?;
                addrs.insert(id, a.as_str().unwrap_or("").to_string());
            }
            out.broker_datas.push(BrokerData {
                cluster: s(b, "cluster"),
                broker_name: s(b, "brokerName"),
                broker_addrs: addrs,
            });
        }
        Ok(out)
    }
}

/// `"brokerAddrs":{"0":"a"}` -> `"brokerAddrs":{0:"a"}` (fastjson's form).
fn unquote_integer_keys(text: &str) -> String {
    rewrite_addr_keys(text, |k| k.to_string())
}

/// The reverse, so serde_json can read the legacy form.
fn quote_integer_keys(text: &str) -> String {
    rewrite_addr_keys(text, |k| format!("\"{k}\""))
}

/// Rewrites each key of every `brokerAddrs` object with `f(digits)`.
fn rewrite_addr_keys(text: &str, f: impl Fn(&str) -> String) -> String {
    const KEY: &str = "\"brokerAddrs\":{";
    let mut out = String::with_capacity(text.len() + 16);
    let mut rest = text;
    while let Some(i) = rest.find(KEY) {
        out.push_str(&rest[..i + KEY.len()]);
        rest = &rest[i + KEY.len()..];
        // Keys are digits (maybe quoted, maybe negative), values strings
        // without braces: rewrite until the closing brace.
        let end = rest.find('}').unwrap_or(rest.len());
        let inner = &rest[..end];
        let mut first = true;
        for pair in split_pairs(inner) {
            if !first {
                out.push(',');
            }
            first = false;
            match pair.split_once(':') {
                Some((k, v)) => {
                    out.push_str(&f(k.trim().trim_matches('"')));
                    out.push(':');
                    out.push_str(v);
                }
                None => out.push_str(pair),
            }
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Splits `k:"v",k:"v"` at commas outside strings.
fn split_pairs(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut in_str, mut esc) = (0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if esc => esc = false,
            '\\' if in_str => esc = true,
            '"' => in_str = !in_str,
            ',' if !in_str => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < s.len() {
        out.push(&s[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> TopicRouteData {
        TopicRouteData {
            order_topic_conf: None,
            queue_datas: vec![QueueData {
                broker_name: "broker-a".into(),
                read_queue_nums: 4,
                write_queue_nums: 4,
                perm: 6,
                topic_sys_flag: 0,
            }],
            broker_datas: vec![BrokerData {
                cluster: "DefaultCluster".into(),
                broker_name: "broker-a".into(),
                broker_addrs: [(0, "127.0.0.1:10911".into()), (1, "127.0.0.1:10921".into())]
                    .into_iter()
                    .collect(),
            }],
        }
    }

    #[test]
    fn both_forms_round_trip() {
        let r = sample();
        let std = String::from_utf8(r.encode(true)).unwrap();
        assert!(
            std.contains(r#""brokerAddrs":{"0":"127.0.0.1:10911","1":"127.0.0.1:10921"}"#),
            "{std}"
        );
        let legacy = String::from_utf8(r.encode(false)).unwrap();
        // Each broker entry names enableActingMaster (RocketMQ 5 does;
        // rocketmq-rust's client fails without it).
        for form in [&std, &legacy] {
            assert!(form.contains(r#""enableActingMaster":false"#), "{form}");
        }
        assert!(
            legacy.contains(r#""brokerAddrs":{0:"127.0.0.1:10911",1:"127.0.0.1:10921"}"#),
            "{legacy}"
        );
        assert!(serde_json::from_str::<Value>(&legacy).is_err());
        assert_eq!(TopicRouteData::decode(std.as_bytes()).unwrap(), r);
        assert_eq!(TopicRouteData::decode(legacy.as_bytes()).unwrap(), r);
    }

    #[test]
    fn hostile_route_bodies_are_errors() {
        assert!(TopicRouteData::decode(b"\xff").is_err());
        assert!(
            TopicRouteData::decode(b"{\"brokerDatas\":[{\"brokerAddrs\":{x:\"a\"}}]}").is_err()
        );
        assert!(TopicRouteData::decode(b"[").is_err());
        // Shapes it does not know are empty, not a panic.
        assert_eq!(
            TopicRouteData::decode(b"{\"queueDatas\":7}").unwrap(),
            TopicRouteData::default()
        );
    }
}
