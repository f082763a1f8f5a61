//! The in-process [`BrokerApi`]: a [`Broker`] in the same process, each
//! request a direct call on it. `Arc<Broker>` coerces to
//! `Arc<dyn BrokerApi>`, so producers and consumers take a broker as they
//! will take a connection.

use std::collections::BTreeSet;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use mqlab_broker::txn::PROPERTY_TRANSACTION_PREPARED;
use mqlab_broker::types::{
    ConsumerSendMsgBackRequest, EndTransactionRequest, HeartbeatRequest, LockBatchRequest,
    MessageQueue, PullRequest, PullResult, QueryConsumerOffsetRequest, UnregisterClientRequest,
    UpdateConsumerOffsetRequest,
};
use mqlab_broker::{Broker, BrokerCore, ClientChannel};
use mqlab_engine::clock::Clock;
use mqlab_engine::{Message, PutResult};

use crate::api::{BrokerApi, LocalFiles};
use crate::error::Result;

impl BrokerApi for Broker {
    fn send_message(&self, msg: &Message) -> PutResult {
        let half = msg
            .properties
            .get(PROPERTY_TRANSACTION_PREPARED)
            .is_some_and(|v| v == "true");
        if half {
            BrokerCore::prepare_transaction(self, msg)
        } else {
            BrokerCore::put(self, msg)
        }
    }

    fn get_route_info(&self, topic: &str) -> Result<Vec<MessageQueue>> {
        Ok(BrokerCore::route(self, topic)?)
    }

    fn get_topic_queues(&self, topic: &str) -> Vec<MessageQueue> {
        BrokerCore::queues_of(self, topic)
    }

    fn create_topic(&self, topic: &str, queues: u32) -> Result<()> {
        Ok(BrokerCore::create_topic(self, topic, queues)?)
    }

    fn get_offset_range(&self, mq: &MessageQueue) -> (u64, u64) {
        BrokerCore::queue_range(self, mq)
    }

    fn pull_message(&self, req: &PullRequest, cancel: Option<&AtomicBool>) -> Result<PullResult> {
        Ok(BrokerCore::pull(self, req, cancel)?)
    }

    fn query_consumer_offset(&self, req: &QueryConsumerOffsetRequest) -> Option<u64> {
        BrokerCore::query_offset(self, &req.group, &req.mq)
    }

    fn update_consumer_offset(&self, req: &UpdateConsumerOffsetRequest) {
        BrokerCore::commit_offset(self, &req.group, &req.mq, req.offset)
    }

    fn heartbeat(&self, req: &HeartbeatRequest, channel: Arc<dyn ClientChannel>) -> Result<()> {
        Ok(BrokerCore::heartbeat(self, req, channel)?)
    }

    fn unregister_client(&self, req: &UnregisterClientRequest) {
        BrokerCore::unregister_client(self, req)
    }

    fn get_consumer_list(&self, group: &str) -> Vec<String> {
        BrokerCore::consumer_ids(self, group)
    }

    fn lock_batch_mq(&self, req: &LockBatchRequest) -> BTreeSet<MessageQueue> {
        BrokerCore::lock_batch(self, &req.group, &req.client_id, &req.mqs)
    }

    fn unlock_batch_mq(&self, req: &LockBatchRequest) {
        BrokerCore::unlock_batch(self, &req.group, &req.client_id, &req.mqs)
    }

    fn end_transaction(&self, req: &EndTransactionRequest) -> Result<Option<PutResult>> {
        Ok(BrokerCore::end_transaction(self, req)?)
    }

    fn consumer_send_msg_back(&self, req: &ConsumerSendMsgBackRequest) -> PutResult {
        BrokerCore::send_back(self, &req.group, &req.msg, req.max_reconsume_times)
    }

    fn clock(&self) -> Arc<dyn Clock> {
        BrokerCore::clock(self).clone()
    }

    fn local_files(&self) -> LocalFiles {
        let store = BrokerCore::store(self);
        LocalFiles {
            env: store.env(),
            dir: store.dir().join("clients"),
        }
    }
}
