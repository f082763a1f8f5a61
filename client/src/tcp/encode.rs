//! A message as the SEND_MESSAGE_V2 request RocketMQ's producer sends:
//! what [`super::TcpBroker`] and the pipelined sender
//! ([`super::pipelined`]) both put on the wire.

use mqlab_engine::log::record;
use mqlab_engine::Message;
use mqlab_protocol::codes::request;
use mqlab_protocol::headers::SendMessageRequest;
use mqlab_protocol::RemotingCommand;

/// The SEND_MESSAGE_V2 request of `msg` (opaque 0: the caller numbers
/// it) from `producer_group`; an unknown topic is auto-created by the
/// broker with `default_topic_queue_nums` queues. Fails when a property
/// cannot be encoded (a separator byte in a name or value, an empty name).
pub(crate) fn send_message_v2(
    msg: &Message,
    producer_group: &str,
    default_topic_queue_nums: i32,
) -> Result<RemotingCommand, String> {
    let props = record::encode_properties(&msg.properties)?;
    let header = SendMessageRequest {
        producer_group: producer_group.to_string(),
        topic: msg.topic.clone(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums,
        queue_id: msg.queue_id as i32,
        sys_flag: msg.sys_flag,
        born_timestamp: msg.born_timestamp_ms,
        flag: msg.flag,
        properties: String::from_utf8_lossy(&props).into_owned(),
        reconsume_times: msg.reconsume_times,
        unit_mode: false,
        batch: false,
        max_reconsume_times: None,
        broker_name: None,
    };
    let mut req = RemotingCommand::request(request::SEND_MESSAGE_V2, 0).with_body(msg.body.clone());
    req.ext_fields = header.to_fields(true);
    Ok(req)
}
