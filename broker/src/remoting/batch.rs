//! SEND_BATCH_MESSAGE (320): several messages for one queue in one
//! request. The header is SEND_MESSAGE_V2's (one-letter fields, as Java's
//! client sends it; long names are read too) with `batch` true; the body is
//! the messages as `MessageDecoder.encodeMessages` writes them
//! ([`mqlab_protocol::body::batch`]).
//!
//! Everything is checked before anything is stored: the header, the whole
//! body (every length against the bytes left), each message's properties,
//! body size and topic, exactly as [`Store::put`](mqlab_engine::Store::put)
//! would check them; one bad message refuses the batch with
//! MESSAGE_ILLEGAL naming its index and field, and nothing is written.
//!
//! Each message gets the header's topic, queue, sysFlag, born time and
//! reconsume count, its own flag and properties, and the header's
//! properties merged in, as RocketMQ 4.8 to 5.3.3 merge them
//! (`MessageExtBatchEncoder`/`MessageExtEncoder.encode(MessageExtBatch)`)
//! with two differences: on a name both carry, the message's own value is
//! kept (RocketMQ appends the batch's after it, so the batch's won), and
//! the batch's `UNIQ_KEY` is never copied. In RocketMQ the batch's
//! `UNIQ_KEY` gave every message of the batch the same id (issue 9416),
//! fixed after 5.3.3 by no longer merging at all.
//!
//! Refused as RocketMQ refuses them: a retry topic, a transaction type in
//! sysFlag, a `DELAY` in the header. mqlab also refuses a message whose
//! own properties would delay it (`DELAY`, `TIMER_*`) or make it a half
//! message (`TRAN_MSG`): Java's client never batches those, and RocketMQ's
//! broker would store them undelayed. A negative queueId is refused
//! (RocketMQ picks a random queue), as mqlab's single send does.
//!
//! The messages are stored with one put each, in order, after the
//! batch's back-pressure slots are taken (a batch counts as its message
//! count against `max_pending`). They are consecutive in the queue unless
//! another send to the same queue lands between two of them: the store has
//! no batch append yet (RocketMQ appends a batch at once under its put
//! lock), and under sync or group flush each put waits for its own
//! flush, which is also why a batch holds at most
//! [`MAX_BATCH_MESSAGES`]. A put that fails stops the batch: the answer
//! names the message and how many were stored before it (those stay).
//!
//! The answer is RocketMQ's: `msgId` the messages' offset message ids
//! joined by commas, `queueOffset` the first message's, `transactionId`
//! the header's `UNIQ_KEY` if it has one. A batch counts as one send in
//! [`WireStats`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use mqlab_engine::log::record::{decode_properties, encode_properties, CRC32_RESERVED_LEN};
use mqlab_engine::message::{sys_flag, Message, PutStatus, PROPERTY_UNIQ_KEY};
use mqlab_protocol::body::batch;
use mqlab_protocol::codes::response;
use mqlab_protocol::headers::{SendMessageRequest, SendMessageResponse};
use mqlab_protocol::RemotingCommand;

use super::{offset_msg_id, WireStats};
use crate::broker::Delivery;
use crate::error::validate_topic;
use crate::txn::PROPERTY_TRANSACTION_PREPARED;
use crate::types::{PROPERTY_DELAY, RETRY_PREFIX};
use crate::Broker;

/// Most messages in one batch (mqlab's limit; RocketMQ bounds a batch by
/// its size only, `maxMessageSize`, which mqlab applies too).
pub const MAX_BATCH_MESSAGES: usize = 1024;

/// What a batch send needs of its handler.
pub(super) struct SendCtx<'a> {
    pub broker: &'a Broker,
    /// Address the message ids name.
    pub store_host: SocketAddr,
    /// Sends being stored now, and the most allowed.
    pub pending: &'a AtomicUsize,
    pub max_pending: usize,
    pub stats: &'a WireStats,
}

/// A refusal: response code and why.
type Refusal = (i32, String);

fn illegal(why: String) -> Refusal {
    (response::MESSAGE_ILLEGAL, why)
}

/// SEND_BATCH_MESSAGE (320).
pub(super) fn send_batch(
    cx: &SendCtx<'_>,
    req: &RemotingCommand,
    peer: SocketAddr,
) -> RemotingCommand {
    let started = Instant::now();
    let r = match decode(cx.broker, req, peer) {
        Err((code, why)) => RemotingCommand::response_to(req, code, Some(why)),
        Ok((h, msgs)) => {
            let n = msgs.len();
            let now = cx.pending.fetch_add(n, Ordering::AcqRel);
            let r = if now >= cx.max_pending {
                RemotingCommand::response_to(
                    req,
                    response::SYSTEM_BUSY,
                    Some(format!(
                        "broker busy: {now} sends are being stored (at most {}); retry later",
                        cx.max_pending
                    )),
                )
            } else {
                store(cx, req, &h, &msgs)
            };
            cx.pending.fetch_sub(n, Ordering::AcqRel);
            r
        }
    };
    cx.stats.record_send(
        r.code == response::SUCCESS,
        started.elapsed().as_micros() as u64,
    );
    r
}

/// The header and the messages to store, everything checked; the topic is
/// created (as a single send creates it) only once all of it passed.
fn decode(
    broker: &Broker,
    req: &RemotingCommand,
    peer: SocketAddr,
) -> Result<(SendMessageRequest, Vec<Message>), Refusal> {
    let f = &req.ext_fields;
    let v2 = f.contains_key("b") || !f.contains_key("topic");
    let h = SendMessageRequest::from_fields(f, v2)
        .map_err(|e| (response::SYSTEM_ERROR, format!("send header: {e}")))?;
    validate_topic(&h.topic).map_err(|e| illegal(e.to_string()))?;
    if h.topic.starts_with(RETRY_PREFIX) {
        // No topic in the text: the C++ client logs remarks through a
        // printf-style format, and retry topics contain '%'.
        return Err(illegal("a batch cannot be sent to a retry topic".into()));
    }
    if h.sys_flag & sys_flag::TRANSACTION_MASK != sys_flag::TRANSACTION_NOT_TYPE {
        return Err(illegal(format!(
            "sysFlag {}: a batch cannot be a transaction",
            h.sys_flag
        )));
    }
    let queue_id = u32::try_from(h.queue_id)
        .map_err(|_| illegal(format!("queueId {} is negative", h.queue_id)))?;
    let header_props = decode_properties(h.properties.as_bytes())
        .map_err(|e| illegal(format!("properties: {e}")))?;
    if header_props
        .get(PROPERTY_DELAY)
        .is_some_and(|v| v.trim().parse::<i64>().map_or(true, |l| l > 0))
    {
        return Err(illegal(format!(
            "properties: {PROPERTY_DELAY}: a batch cannot be delayed"
        )));
    }
    let store = broker.store();
    let max_body = store.max_message_bytes() as usize;
    if req.body.len() > max_body {
        return Err(illegal(format!(
            "the batch is {} bytes, over max_message_bytes {max_body}",
            req.body.len()
        )));
    }
    let entries =
        batch::decode(&req.body, MAX_BATCH_MESSAGES).map_err(|e| illegal(e.to_string()))?;
    let mut msgs = Vec::with_capacity(entries.len());
    for (i, e) in entries.into_iter().enumerate() {
        let bad = |field: &str, why: String| illegal(format!("message {i}: {field}: {why}"));
        let mut props =
            decode_properties(&e.properties).map_err(|err| bad("properties", err.to_string()))?;
        for (k, v) in &header_props {
            // The batch's own id stays the batch's (it answers as the
            // transactionId): shared, it would give every message one id.
            if k != PROPERTY_UNIQ_KEY {
                props.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        // What the store would refuse, checked now so that no put of the
        // batch is refused after others were stored.
        let encoded = encode_properties(&props).map_err(|err| bad("properties", err))?;
        if encoded.len() + CRC32_RESERVED_LEN > i16::MAX as usize {
            return Err(bad(
                "properties",
                format!("{} bytes, over 32 KiB", encoded.len()),
            ));
        }
        if e.body.len() > max_body {
            return Err(bad(
                "body",
                format!("{} bytes, over max_message_bytes {max_body}", e.body.len()),
            ));
        }
        if props
            .get(PROPERTY_TRANSACTION_PREPARED)
            .is_some_and(|v| v == "true")
        {
            return Err(bad(
                PROPERTY_TRANSACTION_PREPARED,
                "a batch cannot hold half messages".into(),
            ));
        }
        let msg = Message {
            topic: h.topic.clone(),
            queue_id,
            flag: e.flag,
            sys_flag: h.sys_flag,
            body: e.body,
            properties: props,
            born_timestamp_ms: h.born_timestamp,
            born_host: peer,
            reconsume_times: h.reconsume_times,
            ..Message::new("", Vec::new())
        };
        match broker.delivery_of(&msg) {
            Ok(Delivery::Now) => {}
            Ok(_) => {
                return Err(bad(
                    "properties",
                    "a delayed message (DELAY, TIMER_*) cannot be batched".into(),
                ))
            }
            Err(why) => return Err(illegal(format!("message {i}: {why}"))),
        }
        msgs.push(msg);
    }
    // autoCreateTopicEnable, as for a single send.
    let queues = match broker.topic_queues(&h.topic) {
        Some(n) => n,
        None => {
            let n = h.default_topic_queue_nums.clamp(1, 1024) as u32;
            broker
                .create_topic(&h.topic, n)
                .map_err(|e| illegal(e.to_string()))?;
            n
        }
    };
    if queue_id >= queues {
        return Err(illegal(format!(
            "queueId {queue_id} is past the topic's {queues} queues"
        )));
    }
    Ok((h, msgs))
}

/// Puts the messages in order and answers.
fn store(
    cx: &SendCtx<'_>,
    req: &RemotingCommand,
    h: &SendMessageRequest,
    msgs: &[Message],
) -> RemotingCommand {
    let mut ids = Vec::with_capacity(msgs.len());
    let mut first_offset = None;
    let mut late = None;
    for (i, m) in msgs.iter().enumerate() {
        let r = cx.broker.put(m);
        match (r.status, r.offsets) {
            (status, Some(o)) if status.is_stored() => {
                ids.push(offset_msg_id(cx.store_host, o.phys_offset));
                first_offset.get_or_insert(o.queue_offset);
                if status != PutStatus::PutOk {
                    late = Some((super::send::code_of(status), r.detail));
                }
            }
            (status, _) => {
                let code = match status {
                    PutStatus::MessageIllegal => response::MESSAGE_ILLEGAL,
                    PutStatus::ServiceNotAvailable => response::SERVICE_NOT_AVAILABLE,
                    _ => response::SYSTEM_ERROR,
                };
                return RemotingCommand::response_to(
                    req,
                    code,
                    Some(format!(
                        "message {i}: {}; the {i} before it are stored",
                        r.detail.unwrap_or_else(|| status.as_str().to_string())
                    )),
                );
            }
        }
    }
    // Written, one at least not durable (or, on a sync master, not on a
    // slave) in time: the whole batch answers as the last such message.
    let (code, remark) = late.unwrap_or((response::SUCCESS, None));
    let mut resp = RemotingCommand::response_to(req, code, remark);
    let transaction_id = decode_properties(h.properties.as_bytes())
        .ok()
        .and_then(|p| p.get(PROPERTY_UNIQ_KEY).cloned());
    resp.ext_fields = SendMessageResponse {
        msg_id: ids.join(","),
        queue_id: h.queue_id,
        queue_offset: first_offset.unwrap_or(0) as i64,
        transaction_id,
    }
    .to_fields();
    resp
}
