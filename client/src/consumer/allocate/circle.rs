//! AllocateMessageQueueAveragelyByCircle: queues dealt to consumers like
//! cards, so consumer i takes queues i, i + c, i + 2c, ...

use super::AllocateStrategy;
use mqlab_broker::types::MessageQueue;

/// Round-robin dealing of queues.
#[derive(Debug, Default, Clone, Copy)]
pub struct AveragelyByCircle;

impl AveragelyByCircle {
    /// Name in results.
    pub const NAME: &'static str = "circle";
}

impl AllocateStrategy for AveragelyByCircle {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn allocate(&self, cid: &str, mqs: &[MessageQueue], cids: &[String]) -> Vec<MessageQueue> {
        let Some(index) = cids.iter().position(|c| c == cid) else {
            return Vec::new();
        };
        mqs.iter()
            .skip(index)
            .step_by(cids.len())
            .cloned()
            .collect()
    }
}
