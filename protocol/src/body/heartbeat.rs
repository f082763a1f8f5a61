//! `HeartbeatData`, the body of HEART_BEAT: the client id, its producer
//! groups and its consumer groups with their subscriptions. Enums arrive as
//! names (Java) or ordinals (the C++ client); missing fields take defaults.

use serde_json::{json, Value};

use crate::error::ProtocolError;
use crate::fields::enum_value;

/// `ConsumeType` names, by ordinal.
pub const CONSUME_TYPES: [&str; 2] = ["CONSUME_ACTIVELY", "CONSUME_PASSIVELY"];
/// `MessageModel` names, by ordinal.
pub const MESSAGE_MODELS: [&str; 2] = ["BROADCASTING", "CLUSTERING"];
/// `ConsumeFromWhere` names, by ordinal.
pub const CONSUME_FROM: [&str; 8] = [
    "CONSUME_FROM_LAST_OFFSET",
    "CONSUME_FROM_LAST_OFFSET_AND_FROM_MIN_WHEN_BOOT_FIRST",
    "CONSUME_FROM_MIN_OFFSET",
    "CONSUME_FROM_MAX_OFFSET",
    "CONSUME_FROM_FIRST_OFFSET",
    "CONSUME_FROM_TIMESTAMP",
    "CONSUME_FROM_LAST_OFFSET_AND_FROM_MIN_WHEN_BOOT_FIRST_V2",
    "CONSUME_FROM_FIRST_OFFSET_AND_FROM_MIN_WHEN_BOOT_FIRST",
];

/// One subscription of a consumer group.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subscription {
    /// Topic.
    pub topic: String,
    /// Expression ("*", "TagA || TagB", or SQL92).
    pub sub_string: String,
    /// Tags of a TAG expression.
    pub tags: Vec<String>,
    /// Their hash codes.
    pub codes: Vec<i32>,
    /// Subscription version.
    pub sub_version: i64,
    /// "TAG" or "SQL92".
    pub expression_type: String,
}

/// A consumer group as a client runs it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConsumerData {
    /// Group name.
    pub group_name: String,
    /// Ordinal in [`CONSUME_TYPES`] (0 pull, 1 push).
    pub consume_type: usize,
    /// Ordinal in [`MESSAGE_MODELS`] (0 broadcasting, 1 clustering).
    pub message_model: usize,
    /// Ordinal in [`CONSUME_FROM`].
    pub consume_from_where: usize,
    /// Subscriptions.
    pub subscriptions: Vec<Subscription>,
    /// Unit mode.
    pub unit_mode: bool,
}

/// A heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeartbeatData {
    /// The client's id (`ip@instance`).
    pub client_id: String,
    /// Producer groups.
    pub producer_groups: Vec<String>,
    /// Consumer groups.
    pub consumers: Vec<ConsumerData>,
}

fn enum_of(v: &Value, key: &str, names: &[&str], default: usize) -> Result<usize, ProtocolError> {
    match &v[key] {
        Value::Null => Ok(default),
        Value::Number(n) => enum_value(key, &n.to_string(), names),
        Value::String(s) => enum_value(key, s, names),
        other => enum_value(key, &other.to_string(), names),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn int(v: &Value) -> i64 {
    match v {
        Value::Number(n) => n.as_i64().unwrap_or(0),
        Value::String(s) => s.trim().parse().unwrap_or(0),
        _ => 0,
    }
}

impl HeartbeatData {
    /// Decodes a heartbeat body.
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtocolError> {
        let v: Value = serde_json::from_slice(bytes)
            .map_err(|e| ProtocolError::Json(format!("heartbeat: {e}")))?;
        if !v.is_object() {
            return Err(ProtocolError::Json("heartbeat is not an object".into()));
        }
        let mut out = HeartbeatData {
            client_id: text(&v["clientID"]),
            ..HeartbeatData::default()
        };
        for p in v["producerDataSet"].as_array().into_iter().flatten() {
            out.producer_groups.push(text(&p["groupName"]));
        }
        for c in v["consumerDataSet"].as_array().into_iter().flatten() {
            let mut cd = ConsumerData {
                group_name: text(&c["groupName"]),
                consume_type: enum_of(c, "consumeType", &CONSUME_TYPES, 1)?,
                message_model: enum_of(c, "messageModel", &MESSAGE_MODELS, 1)?,
                consume_from_where: enum_of(c, "consumeFromWhere", &CONSUME_FROM, 0)?,
                unit_mode: matches!(&c["unitMode"], Value::Bool(true))
                    || text(&c["unitMode"]) == "true",
                subscriptions: Vec::new(),
            };
            for s in c["subscriptionDataSet"].as_array().into_iter().flatten() {
                cd.subscriptions.push(Subscription {
                    topic: text(&s["topic"]),
                    sub_string: text(&s["subString"]),
                    tags: s["tagsSet"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(text)
                        .collect(),
                    codes: s["codeSet"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|c| int(c) as i32)
                        .collect(),
                    sub_version: int(&s["subVersion"]),
                    expression_type: match text(&s["expressionType"]) {
                        t if t.is_empty() => "TAG".into(),
                        t => t,
                    },
                });
            }
            out.consumers.push(cd);
        }
        Ok(out)
    }

    /// Encodes as Java does (enum names).
    pub fn encode(&self) -> Vec<u8> {
        let consumers: Vec<Value> = self
            .consumers
            .iter()
            .map(|c| {
                let subs: Vec<Value> = c
                    .subscriptions
                    .iter()
                    .map(|s| {
                        json!({
                            "classFilterMode": false,
                            "codeSet": s.codes,
                            "expressionType": s.expression_type,
                            "subString": s.sub_string,
                            "subVersion": s.sub_version,
                            "tagsSet": s.tags,
                            "topic": s.topic,
                        })
                    })
                    .collect();
                json!({
                    "consumeFromWhere": CONSUME_FROM.get(c.consume_from_where).copied().unwrap_or(CONSUME_FROM[0]),
                    "consumeType": CONSUME_TYPES.get(c.consume_type).copied().unwrap_or(CONSUME_TYPES[1]),
                    "groupName": c.group_name,
                    "messageModel": MESSAGE_MODELS.get(c.message_model).copied().unwrap_or(MESSAGE_MODELS[1]),
                    "subscriptionDataSet": subs,
                    "unitMode": c.unit_mode,
                })
            })
            .collect();
        let producers: Vec<Value> = self
            .producer_groups
            .iter()
            .map(|g| json!({"groupName": g}))
            .collect();
        json!({
            "clientID": self.client_id,
            "consumerDataSet": consumers,
            "producerDataSet": producers,
        })
        .to_string()
        .into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cpp_client_heartbeat_with_ordinals() {
        // Shape of librocketmq's heartbeat: ordinals, subVersion as a string.
        let body = br#"{"clientID":"127.0.0.1@1234","consumerDataSet":[{"consumeFromWhere":4,"consumeType":1,"groupName":"cg","messageModel":1,"subscriptionDataSet":[{"codeSet":[],"expressionType":"TAG","subString":"*","subVersion":"1733000000000","tagsSet":[],"topic":"T"}],"unitMode":false}],"producerDataSet":[{"groupName":"CLIENT_INNER_PRODUCER"}]}"#;
        let h = HeartbeatData::decode(body).unwrap();
        assert_eq!(h.client_id, "127.0.0.1@1234");
        let c = &h.consumers[0];
        assert_eq!(
            (c.consume_type, c.message_model, c.consume_from_where),
            (1, 1, 4)
        );
        assert_eq!(c.subscriptions[0].sub_version, 1_733_000_000_000);
        assert_eq!(HeartbeatData::decode(&h.encode()).unwrap(), h);
        let named = String::from_utf8(h.encode()).unwrap();
        assert!(
            named.contains(r#""consumeType":"CONSUME_PASSIVELY""#),
            "{named}"
        );
    }

    #[test]
    fn bad_enums_name_the_field() {
        let e = HeartbeatData::decode(br#"{"consumerDataSet":[{"messageModel":9}]}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("messageModel"), "{e}");
        assert!(HeartbeatData::decode(b"[]").is_err());
        assert_eq!(
            HeartbeatData::decode(b"{}").unwrap(),
            HeartbeatData::default()
        );
    }
}
