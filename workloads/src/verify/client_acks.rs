//! Ack logs written from what a wire client was told: clients written by
//! others (the C++ client, the Node client) learn a message id and a queue
//! offset from a send, not always the queue id and never the physical
//! offset. Such a log has the header [`CLIENT_ACK_LOG_HEADER`]:
//!
//! ```text
//! topic,queue_id,queue_offset,msg_id,key
//! InteropTopic,,17,7F0000010A8C18B4AAC2...,key-17
//! ```
//!
//! `queue_id` may be empty. `msg_id` is what the client was given: the
//! message's unique id (`UNIQ_KEY`, which the C++ client reports) or the
//! broker's offset message id (16 bytes: IPv4 address, port, physical
//! offset, as 32 hex digits). Each line is resolved to the record it names
//! before the ordinary ack check runs on it:
//! 1. through the index, by `msg_id` as a unique id: the record of `topic`
//!    whose `UNIQ_KEY` is `msg_id` and whose queue offset (and queue id,
//!    when given) is the logged one;
//! 2. otherwise, `msg_id` read as an offset message id: the record at its
//!    physical offset, which must then match the line like any ack line.
//!
//! A line that resolves to nothing is an acknowledged message the store
//! does not have: counted as missing, never skipped.

use anyhow::Result;
use mqlab_engine::message::PROPERTY_UNIQ_KEY;
use mqlab_engine::Store;

use super::acks::AckLine;

/// First line of a client ack log.
pub const CLIENT_ACK_LOG_HEADER: &str = "topic,queue_id,queue_offset,msg_id,key";

/// One line of a client ack log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAck {
    /// 1-based line number.
    pub line: usize,
    /// Topic.
    pub topic: String,
    /// Queue id, when the client reported it.
    pub queue_id: Option<u32>,
    /// Queue offset.
    pub queue_offset: u64,
    /// The id the client was given.
    pub msg_id: String,
    /// Key ("" for none).
    pub key: String,
}

/// Whether `first_line` is a client ack log's header.
pub fn is_client_log(first_line: &str) -> bool {
    first_line.trim() == CLIENT_ACK_LOG_HEADER
}

/// Parses one record of a client ack log (`fields` without the header).
pub fn parse_line(line: usize, fields: &[&str]) -> Option<ClientAck> {
    let [topic, qid, qoff, id, key] = fields else {
        return None;
    };
    if topic.is_empty() || id.is_empty() {
        return None;
    }
    Some(ClientAck {
        line,
        topic: topic.to_string(),
        queue_id: if qid.is_empty() {
            None
        } else {
            Some(qid.parse().ok()?)
        },
        queue_offset: qoff.parse().ok()?,
        msg_id: id.to_string(),
        key: key.to_string(),
    })
}

/// The physical offset in an IPv4 offset message id (32 hex digits: 4
/// address bytes, 4 port bytes, 8 offset bytes); None for anything else.
pub fn phys_of_offset_msg_id(id: &str) -> Option<u64> {
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(&id[16..], 16).ok()
}

/// Resolves `acks` against `store`: the ack lines to check, and one
/// message per line that names no record.
pub fn resolve(store: &Store, acks: &[ClientAck]) -> Result<(Vec<AckLine>, Vec<String>)> {
    let mut out = Vec::with_capacity(acks.len());
    let mut unresolved = Vec::new();
    for a in acks {
        let by_uniq = store
            .query_by_key(&a.topic, &a.msg_id, 0, i64::MAX)?
            .into_iter()
            .find(|m| {
                m.properties.get(PROPERTY_UNIQ_KEY) == Some(&a.msg_id)
                    && m.queue_offset == a.queue_offset
                    && a.queue_id.is_none_or(|q| q == m.queue_id)
            });
        let resolved = match by_uniq {
            Some(m) => Some((m.queue_id, m.phys_offset)),
            // The line must still match the record there: the ack check
            // compares topic, queue offset, queue id and key.
            None => phys_of_offset_msg_id(&a.msg_id).map(|phys| {
                let qid = a
                    .queue_id
                    .or_else(|| store.get(phys).ok().map(|m| m.queue_id))
                    .unwrap_or(0);
                (qid, phys)
            }),
        };
        match resolved {
            Some((queue_id, phys)) => out.push(AckLine {
                line: a.line,
                topic: a.topic.clone(),
                queue_id,
                queue_offset: a.queue_offset,
                phys,
                key: a.key.clone(),
            }),
            None => unresolved.push(format!(
                "line {}: message id {} ({}@{}, key {:?}) is not in the store",
                a.line, a.msg_id, a.topic, a.queue_offset, a.key
            )),
        }
    }
    Ok((out, unresolved))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_message_ids_give_their_physical_offset() {
        assert_eq!(
            phys_of_offset_msg_id("7F00000100002A9F0000000000000400"),
            Some(1024)
        );
        assert_eq!(
            phys_of_offset_msg_id("7F00000100002A9F00000000000004"),
            None
        );
        assert_eq!(
            phys_of_offset_msg_id("7F00000100002A9F000000000000040G"),
            None
        );
    }

    #[test]
    fn lines_parse_with_or_without_a_queue_id() {
        let a = parse_line(2, &["T", "", "5", "ABC", "k"]).unwrap();
        assert_eq!(a.queue_id, None);
        assert_eq!(a.queue_offset, 5);
        let b = parse_line(3, &["T", "2", "5", "ABC", ""]).unwrap();
        assert_eq!(b.queue_id, Some(2));
        assert!(parse_line(4, &["T", "x", "5", "ABC", ""]).is_none());
        assert!(parse_line(4, &["T", "", "5", "", ""]).is_none());
        assert!(parse_line(4, &["T", "", "5", "ABC"]).is_none());
    }
}
