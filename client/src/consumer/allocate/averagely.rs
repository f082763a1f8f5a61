//! AllocateMessageQueueAveragely: with n queues and c consumers, the first
//! n % c consumers take n / c + 1 contiguous queues, the rest n / c.

use super::AllocateStrategy;
use mqlab_broker::types::MessageQueue;

/// RocketMQ's default strategy.
#[derive(Debug, Default, Clone, Copy)]
pub struct Averagely;

impl Averagely {
    /// Name in results.
    pub const NAME: &'static str = "averagely";
}

impl AllocateStrategy for Averagely {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn allocate(&self, cid: &str, mqs: &[MessageQueue], cids: &[String]) -> Vec<MessageQueue> {
        let Some(index) = cids.iter().position(|c| c == cid) else {
            return Vec::new();
        };
        let (n, c) = (mqs.len(), cids.len());
        if n == 0 {
            return Vec::new();
        }
        let m = n % c;
        let average = if n <= c {
            1
        } else if m > 0 && index < m {
            n / c + 1
        } else {
            n / c
        };
        let start = if m > 0 && index < m {
            index * average
        } else {
            index * average + m
        };
        let range = average.min(n.saturating_sub(start));
        (0..range).map(|i| mqs[(start + i) % n].clone()).collect()
    }
}
