//! Lookups on the wire: QUERY_MESSAGE (12), messages of a topic by key
//! from the store's index, and SEARCH_OFFSET_BY_TIMESTAMP (29), a queue
//! offset by store time.
//!
//! QUERY_MESSAGE answers as RocketMQ's `QueryMessageProcessor`: the body is
//! the records as stored, one after the other (as a pull's), oldest first
//! (RocketMQ sorts the offsets the index gave), at most `maxNum` capped at
//! 64 (`maxMsgsNumBatch`; a unique-key query takes 32,
//! `defaultQueryMaxNum`), with `indexLastUpdateTimestamp` and
//! `indexLastUpdatePhyoffset` from the newest index file; none found is
//! QUERY_NOT_FOUND (22) with the same header. Unlike RocketMQ the broker
//! drops hash collisions itself (each candidate is decoded and its key
//! compared), so a client finds no stranger to filter out.

use mqlab_engine::error::Error as StoreError;
use mqlab_protocol::codes::response;
use mqlab_protocol::headers::{
    BoundaryType, QueryMessageRequest, QueryMessageResponse, SearchOffsetRequest,
    SearchOffsetResponse,
};
use mqlab_protocol::RemotingCommand;

use crate::{Broker, MessageQueue};

/// Most messages one QUERY_MESSAGE returns (RocketMQ's `maxMsgsNumBatch`).
const MAX_QUERY_MSGS: i32 = 64;
/// What a unique-key query returns at most (`defaultQueryMaxNum`).
const UNIQUE_QUERY_MSGS: i32 = 32;

fn refuse(req: &RemotingCommand, code: i32, why: String) -> RemotingCommand {
    RemotingCommand::response_to(req, code, Some(why))
}

/// QUERY_MESSAGE (12).
pub(super) fn query_message(broker: &Broker, req: &RemotingCommand) -> RemotingCommand {
    let h = match QueryMessageRequest::from_fields(&req.ext_fields) {
        Ok(h) => h,
        Err(e) => return refuse(req, response::SYSTEM_ERROR, e.to_string()),
    };
    let store = broker.store();
    let (ts, phys) = store.index_last_update();
    let header = QueryMessageResponse {
        index_last_update_timestamp: ts,
        index_last_update_phyoffset: phys as i64,
    }
    .to_fields();
    let max = if h.unique_key {
        UNIQUE_QUERY_MSGS
    } else {
        h.max_num.min(MAX_QUERY_MSGS)
    };
    let mut found = if max > 0 {
        match store.query_by_key(&h.topic, &h.key, h.begin_timestamp, h.end_timestamp) {
            Ok(f) => f,
            Err(e) => return refuse(req, response::SYSTEM_ERROR, e.to_string()),
        }
    } else {
        Vec::new()
    };
    // The newest `max`, then oldest first.
    found.sort_by_key(|m| std::cmp::Reverse(m.phys_offset));
    found.truncate(max.max(0) as usize);
    found.sort_by_key(|m| m.phys_offset);
    let mut body = Vec::new();
    for m in &found {
        match store.record_bytes(m.phys_offset) {
            Ok(b) => body.extend_from_slice(&b),
            // Deleted by retention since the index gave it.
            Err(StoreError::NotFound(_)) => {}
            Err(e) => {
                return refuse(
                    req,
                    response::SYSTEM_ERROR,
                    format!("reading the record at {}: {e}", m.phys_offset),
                )
            }
        }
    }
    let mut resp = if body.is_empty() {
        // RocketMQ's text; no key or topic in it (the C++ client logs
        // remarks through a printf-style format).
        refuse(
            req,
            response::QUERY_NOT_FOUND,
            "can not find message, maybe time range not correct".into(),
        )
    } else {
        RemotingCommand::response_to(req, response::SUCCESS, None).with_body(body)
    };
    resp.ext_fields = header;
    resp
}

/// SEARCH_OFFSET_BY_TIMESTAMP (29).
pub(super) fn search_offset(broker: &Broker, req: &RemotingCommand) -> RemotingCommand {
    let h = match SearchOffsetRequest::from_fields(&req.ext_fields) {
        Ok(h) => h,
        Err(e) => return refuse(req, response::SYSTEM_ERROR, e.to_string()),
    };
    let Ok(queue_id) = u32::try_from(h.queue_id) else {
        return refuse(
            req,
            response::SYSTEM_ERROR,
            format!("queueId {} is negative", h.queue_id),
        );
    };
    let mq = MessageQueue::new(h.topic, queue_id);
    let upper = h.boundary_type == BoundaryType::Upper;
    match broker.search_offset_by_time(&mq, h.timestamp, upper) {
        Ok(o) => {
            let mut resp = RemotingCommand::response_to(req, response::SUCCESS, None);
            resp.ext_fields = SearchOffsetResponse { offset: o as i64 }.to_fields();
            resp
        }
        Err(e) => refuse(req, response::SYSTEM_ERROR, e.to_string()),
    }
}
