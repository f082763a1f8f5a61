//! The broker's requests on the wire, first the producer's: SEND_MESSAGE
//! (10) and SEND_MESSAGE_V2 (310) into [`Broker::put`], HEART_BEAT and
//! UNREGISTER_CLIENT accepted (heartbeat bodies are validated). Every other
//! code is REQUEST_CODE_NOT_SUPPORTED for now (issue 13 adds pulls,
//! offsets, locks, transactions and batch sends).
//!
//! A send is decoded completely (header fields, properties) before
//! anything reaches the store: a malformed one gets MESSAGE_ILLEGAL or
//! SYSTEM_ERROR naming the field, and nothing is written. The put blocks
//! the runtime thread that serves the connection until the flush strategy
//! acknowledges it; the engine's asynchronous put (issue 13) will lift
//! that.

use std::net::SocketAddr;
use std::sync::Arc;

use mqlab_engine::log::record::decode_properties;
use mqlab_engine::message::{Message, PutStatus};
use mqlab_protocol::body::heartbeat::HeartbeatData;
use mqlab_protocol::codes::{request, response};
use mqlab_protocol::headers::{SendMessageRequest, SendMessageResponse};
use mqlab_protocol::RemotingCommand;

use super::Handler;
use crate::Broker;

/// RocketMQ's offset message id: the store host's IPv4 address and port
/// and the record's commit-log offset, 16 bytes as 32 uppercase hex
/// digits (an IPv6 host takes 16 address bytes: 28 bytes, 56 digits).
pub fn offset_msg_id(store_host: SocketAddr, phys_offset: u64) -> String {
    let mut b = Vec::with_capacity(28);
    match store_host {
        SocketAddr::V4(a) => b.extend_from_slice(&a.ip().octets()),
        SocketAddr::V6(a) => b.extend_from_slice(&a.ip().octets()),
    }
    b.extend_from_slice(&(store_host.port() as u32).to_be_bytes());
    b.extend_from_slice(&phys_offset.to_be_bytes());
    b.iter().map(|x| format!("{x:02X}")).collect()
}

/// Serves a [`Broker`] over the remoting server.
#[derive(Debug)]
pub struct BrokerHandler {
    broker: Arc<Broker>,
    store_host: SocketAddr,
}

impl BrokerHandler {
    /// A handler for `broker`, whose message ids name `store_host`.
    pub fn new(broker: Arc<Broker>, store_host: SocketAddr) -> Self {
        BrokerHandler { broker, store_host }
    }

    fn send(&self, req: &RemotingCommand, peer: SocketAddr) -> RemotingCommand {
        let v2 = req.code == request::SEND_MESSAGE_V2;
        let refuse = |code: i32, why: String| RemotingCommand::response_to(req, code, Some(why));
        let h = match SendMessageRequest::from_fields(&req.ext_fields, v2) {
            Ok(h) => h,
            Err(e) => return refuse(response::SYSTEM_ERROR, format!("send header: {e}")),
        };
        if h.batch {
            return refuse(
                response::REQUEST_CODE_NOT_SUPPORTED,
                "batch sends are not supported yet".into(),
            );
        }
        let Ok(queue_id) = u32::try_from(h.queue_id) else {
            return refuse(
                response::MESSAGE_ILLEGAL,
                format!("queueId {} is negative", h.queue_id),
            );
        };
        let properties = match decode_properties(h.properties.as_bytes()) {
            Ok(p) => p,
            Err(e) => return refuse(response::MESSAGE_ILLEGAL, format!("properties: {e}")),
        };
        let msg = Message {
            topic: h.topic.clone(),
            queue_id,
            flag: h.flag,
            sys_flag: h.sys_flag,
            body: req.body.clone(),
            properties,
            born_timestamp_ms: h.born_timestamp,
            born_host: peer,
            reconsume_times: h.reconsume_times,
            ..Message::new(h.topic.clone(), Vec::new())
        };
        let r = self.broker.put(&msg);
        let code = match r.status {
            PutStatus::PutOk => response::SUCCESS,
            PutStatus::FlushDiskTimeout => response::FLUSH_DISK_TIMEOUT,
            PutStatus::MessageIllegal => response::MESSAGE_ILLEGAL,
            PutStatus::ServiceNotAvailable => response::SERVICE_NOT_AVAILABLE,
            _ => response::SYSTEM_ERROR,
        };
        let mut resp = RemotingCommand::response_to(req, code, r.detail.clone());
        if let Some(o) = r.offsets {
            resp.ext_fields = SendMessageResponse {
                msg_id: offset_msg_id(self.store_host, o.phys_offset),
                queue_id: msg.queue_id as i32,
                queue_offset: o.queue_offset as i64,
                transaction_id: None,
            }
            .to_fields();
        }
        resp
    }
}

impl Handler for BrokerHandler {
    fn handle(&self, req: RemotingCommand, peer: SocketAddr) -> Option<RemotingCommand> {
        Some(match req.code {
            request::SEND_MESSAGE | request::SEND_MESSAGE_V2 => self.send(&req, peer),
            request::HEART_BEAT => match HeartbeatData::decode(&req.body) {
                Ok(_) => RemotingCommand::response_to(&req, response::SUCCESS, None),
                Err(e) => {
                    RemotingCommand::response_to(&req, response::SYSTEM_ERROR, Some(e.to_string()))
                }
            },
            request::UNREGISTER_CLIENT => {
                RemotingCommand::response_to(&req, response::SUCCESS, None)
            }
            code => RemotingCommand::response_to(
                &req,
                response::REQUEST_CODE_NOT_SUPPORTED,
                Some(format!(
                    "request code {code} ({}) is not supported by this broker yet",
                    request::name(code)
                )),
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_message_ids_are_rocketmqs() {
        let host: SocketAddr = "127.0.0.1:10911".parse().unwrap();
        // 7F000001 | 00002A9F | 0000000000000400
        assert_eq!(
            offset_msg_id(host, 1024),
            "7F00000100002A9F0000000000000400"
        );
    }
}
