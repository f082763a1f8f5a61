//! ACL as RocketMQ's ACL 1.0 (`plain_acl.yml`), configured in TOML:
//! accounts with an access key and a secret key; every request carries
//! `AccessKey` and `Signature` ext fields, the signature being
//! Base64(HMAC-SHA1(secret key, the values of every other ext field in
//! key order, then the body)); per-topic and per-group PUB/SUB
//! permissions with defaults; admin requests (topic creation) for admin
//! accounts only. A refused request gets NO_PERMISSION with the reason and
//! touches nothing.
//!
//! ```toml
//! [[accounts]]
//! accessKey = "rocketmq2"
//! secretKey = "12345678"
//! admin = false
//! defaultTopicPerm = "DENY"
//! defaultGroupPerm = "SUB"
//! topicPerms = ["TopicA=PUB|SUB", "TopicB=PUB"]
//! groupPerms = ["GroupA=SUB"]
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use mqlab_protocol::body::heartbeat::HeartbeatData;
use mqlab_protocol::codes::request;
use mqlab_protocol::RemotingCommand;
use sha1::Sha1;

/// What an account may do with a topic or a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Perm {
    /// Send (PUB).
    pub publish: bool,
    /// Consume (SUB).
    pub subscribe: bool,
}

impl Perm {
    /// Parses "DENY", "PUB", "SUB", "PUB|SUB" (any case, either order).
    pub fn parse(s: &str) -> Result<Perm, String> {
        let mut p = Perm {
            publish: false,
            subscribe: false,
        };
        for part in s.split('|').map(|x| x.trim().to_ascii_uppercase()) {
            match part.as_str() {
                "PUB" => p.publish = true,
                "SUB" => p.subscribe = true,
                "DENY" => {}
                other => {
                    return Err(format!(
                        "unknown permission {other:?} (DENY, PUB, SUB, PUB|SUB)"
                    ))
                }
            }
        }
        Ok(p)
    }
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AccountFile {
    access_key: String,
    secret_key: String,
    #[serde(default)]
    admin: bool,
    #[serde(default = "deny")]
    default_topic_perm: String,
    #[serde(default = "deny")]
    default_group_perm: String,
    #[serde(default)]
    topic_perms: Vec<String>,
    #[serde(default)]
    group_perms: Vec<String>,
}

fn deny() -> String {
    "DENY".into()
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AclFile {
    accounts: Vec<AccountFile>,
}

/// One account.
#[derive(Debug, Clone)]
pub struct Account {
    /// Secret key (signs requests).
    pub secret_key: String,
    /// May send admin requests.
    pub admin: bool,
    /// Topics not listed.
    pub default_topic: Perm,
    /// Groups not listed.
    pub default_group: Perm,
    /// Per-topic permissions.
    pub topics: BTreeMap<String, Perm>,
    /// Per-group permissions.
    pub groups: BTreeMap<String, Perm>,
}

/// The accounts, by access key.
#[derive(Debug, Clone, Default)]
pub struct Acl {
    accounts: BTreeMap<String, Account>,
}

/// Base64(HMAC-SHA1(`secret`, values of `fields` but Signature in key
/// order, then `body`)): the signature a client sends.
pub fn sign(fields: &BTreeMap<String, String>, body: &[u8], secret: &str) -> String {
    let mut mac =
        Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    for (k, v) in fields {
        if k != "Signature" {
            mac.update(v.as_bytes());
        }
    }
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn perms(list: &[String], what: &str) -> Result<BTreeMap<String, Perm>, String> {
    list.iter()
        .map(|e| {
            let (name, p) = e
                .split_once('=')
                .ok_or_else(|| format!("{what} entry {e:?}: expected NAME=PERM"))?;
            Ok((
                name.trim().to_string(),
                Perm::parse(p).map_err(|x| format!("{what} entry {e:?}: {x}"))?,
            ))
        })
        .collect()
}

impl Acl {
    /// Reads an ACL file (TOML, see the module docs).
    pub fn load(path: &Path) -> Result<Acl, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("read ACL file {}: {e}", path.display()))?;
        Acl::parse(&text).map_err(|e| format!("ACL file {}: {e}", path.display()))
    }

    /// Parses ACL TOML.
    pub fn parse(text: &str) -> Result<Acl, String> {
        let f: AclFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut acl = Acl::default();
        for a in f.accounts {
            if a.access_key.is_empty() || a.secret_key.len() < 6 {
                return Err(format!(
                    "account {:?}: accessKey must not be empty and secretKey must have at least 6 characters",
                    a.access_key
                ));
            }
            let account = Account {
                secret_key: a.secret_key,
                admin: a.admin,
                default_topic: Perm::parse(&a.default_topic_perm)?,
                default_group: Perm::parse(&a.default_group_perm)?,
                topics: perms(&a.topic_perms, "topicPerms")?,
                groups: perms(&a.group_perms, "groupPerms")?,
            };
            if acl.accounts.insert(a.access_key.clone(), account).is_some() {
                return Err(format!("accessKey {:?} appears twice", a.access_key));
            }
        }
        Ok(acl)
    }

    /// Whether `req` may run: a known access key, a matching signature, and
    /// the permission its code needs.
    pub fn check(&self, req: &RemotingCommand) -> Result<(), String> {
        let f = &req.ext_fields;
        let key = f.get("AccessKey").map(String::as_str).unwrap_or("");
        if key.is_empty() {
            return Err("no AccessKey: this broker requires signed requests".into());
        }
        let account = self
            .accounts
            .get(key)
            .ok_or_else(|| format!("unknown AccessKey {key:?}"))?;
        let given = f.get("Signature").map(String::as_str).unwrap_or("");
        let want = sign(f, &req.body, &account.secret_key);
        // Compare in time independent of where they differ.
        let same = given.len() == want.len()
            && given
                .bytes()
                .zip(want.bytes())
                .fold(0u8, |d, (a, b)| d | (a ^ b))
                == 0;
        if !same {
            return Err(format!("signature of {key:?} does not match the request"));
        }
        // Every field that can name the request's topic (or group) must be
        // permitted, not just the first found: handlers read different
        // ones (a V2 send "b", a V1 send "topic", a batch whichever it
        // has, a send-back "group"), and a signed request naming a
        // permitted topic in one field and another topic in the next must
        // not reach the other.
        let topics = names(f, &["topic", "b"]);
        let groups = names(f, &["consumerGroup", "group", "producerGroup", "a"]);
        let topic_perm = |t: &str| {
            account
                .topics
                .get(t)
                .copied()
                .unwrap_or(account.default_topic)
        };
        let group_perm = |g: &str| {
            account
                .groups
                .get(g)
                .copied()
                .unwrap_or(account.default_group)
        };
        let need = |ok: bool, what: String| if ok { Ok(()) } else { Err(what) };
        let publish = |ts: &[&str]| {
            ts.iter().try_for_each(|t| {
                need(
                    topic_perm(t).publish,
                    format!("{key:?} may not publish to topic {t:?}"),
                )
            })
        };
        let subscribe = |ts: &[&str]| {
            ts.iter().try_for_each(|t| {
                need(
                    topic_perm(t).subscribe,
                    format!("{key:?} may not subscribe to topic {t:?}"),
                )
            })
        };
        let consume_as = |gs: &[&str]| {
            gs.iter().try_for_each(|g| {
                need(
                    group_perm(g).subscribe,
                    format!("{key:?} may not consume as group {g:?}"),
                )
            })
        };
        match req.code {
            request::SEND_MESSAGE | request::SEND_MESSAGE_V2 | request::SEND_BATCH_MESSAGE => {
                publish(&topics)
            }
            request::PULL_MESSAGE => {
                subscribe(&topics)?;
                consume_as(&groups)
            }
            request::QUERY_MESSAGE => subscribe(&topics),
            request::QUERY_CONSUMER_OFFSET
            | request::UPDATE_CONSUMER_OFFSET
            | request::CONSUMER_SEND_MSG_BACK
            | request::LOCK_BATCH_MQ
            | request::UNLOCK_BATCH_MQ
            | request::GET_CONSUMER_LIST_BY_GROUP => consume_as(&groups),
            request::UNREGISTER_CLIENT => consume_as(&names(f, &["consumerGroup"])),
            // As RocketMQ: a consumer group joins only with SUB on the
            // group and on every topic it subscribes to.
            request::HEART_BEAT => match HeartbeatData::decode(&req.body) {
                Ok(h) => h.consumers.iter().try_for_each(|c| {
                    consume_as(&[c.group_name.as_str()])?;
                    let ts: Vec<&str> = c
                        .subscriptions
                        .iter()
                        .map(|s| s.topic.as_str())
                        .filter(|t| !t.starts_with("%RETRY%"))
                        .collect();
                    subscribe(&ts)
                }),
                // The handler refuses it.
                Err(_) => Ok(()),
            },
            code if ADMIN_CODES.contains(&code) => {
                need(account.admin, format!("{key:?} is not an admin account"))
            }
            _ => Ok(()),
        }
    }
}

/// Requests only admin accounts may send: RocketMQ's
/// `Permission.ADMIN_CODE` (UPDATE_AND_CREATE_TOPIC 17,
/// UPDATE_BROKER_CONFIG 25, DELETE_TOPIC_IN_BROKER 215,
/// UPDATE_AND_CREATE_SUBSCRIPTIONGROUP 200, DELETE_SUBSCRIPTIONGROUP 207;
/// 5.x adds the ACL updates UPDATE_AND_CREATE_ACL_CONFIG 50,
/// DELETE_ACL_CONFIG 51, GET_BROKER_CLUSTER_ACL_INFO 52), and a broker's
/// REGISTER_BROKER 103 and UNREGISTER_BROKER 104. mqlab serves only the
/// first; the others are refused NO_PERMISSION to a non-admin before
/// they are found unsupported.
pub const ADMIN_CODES: [i32; 10] = [
    request::UPDATE_AND_CREATE_TOPIC,
    25,
    215,
    200,
    207,
    50,
    51,
    52,
    request::REGISTER_BROKER,
    request::UNREGISTER_BROKER,
];

/// The values of those of `keys` the fields have.
fn names<'a>(f: &'a BTreeMap<String, String>, keys: &[&str]) -> Vec<&'a str> {
    let v: Vec<&str> = keys
        .iter()
        .filter_map(|k| f.get(*k))
        .map(String::as_str)
        .collect();
    if v.is_empty() {
        // None given: judged as the empty name (the defaults decide).
        vec![""]
    } else {
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_follow_rocketmq_acl_1() {
        // Values in key order (AccessKey, b, e), Signature skipped, then
        // the body: HMAC-SHA1 over "rocketmq2Topic0" + "hi".
        let mut f = BTreeMap::new();
        f.insert("AccessKey".to_string(), "rocketmq2".to_string());
        f.insert("e".to_string(), "0".to_string());
        f.insert("b".to_string(), "Topic".to_string());
        f.insert("Signature".to_string(), "ignored".to_string());
        let s = sign(&f, b"hi", "12345678");
        // Known answer (Python's hmac over the same bytes).
        assert_eq!(s, "/0k6X3L1wP8RpSx9srEAdwdk73Y=");
        assert_eq!(s.len(), 28);
    }

    #[test]
    fn config_errors_name_the_entry() {
        let e = Acl::parse(
            "[[accounts]]\naccessKey=\"a\"\nsecretKey=\"12345678\"\ntopicPerms=[\"T=WRITE\"]\n",
        )
        .unwrap_err();
        assert!(e.contains("T=WRITE"), "{e}");
        let e = Acl::parse("[[accounts]]\naccessKey=\"a\"\nsecretKey=\"1\"\n").unwrap_err();
        assert!(e.contains("secretKey"), "{e}");
        assert!(
            Acl::parse("[[accounts]]\naccessKey=\"a\"\nsecretKey=\"12345678\"\nbogus=1\n").is_err()
        );
    }
}
