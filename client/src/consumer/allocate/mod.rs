//! Queue allocation strategies of clustering consumption: which queues of a
//! topic each consumer of a group takes. Every consumer runs the same
//! strategy on the same sorted lists, so they agree without talking.

mod averagely;
mod circle;

pub use averagely::Averagely;
pub use circle::AveragelyByCircle;

use mqlab_broker::types::MessageQueue;

/// Splits queues among the consumers of a group.
pub trait AllocateStrategy: Send + Sync {
    /// Name in results.
    fn name(&self) -> &'static str;
    /// The queues of `mqs` (sorted) that consumer `cid` of `cids` (sorted)
    /// takes. Empty when `cid` is not in `cids`.
    fn allocate(&self, cid: &str, mqs: &[MessageQueue], cids: &[String]) -> Vec<MessageQueue>;
}

/// A strategy by name (`averagely`, `circle`).
pub fn by_name(name: &str) -> Option<std::sync::Arc<dyn AllocateStrategy>> {
    match name {
        Averagely::NAME | "avg" => Some(std::sync::Arc::new(Averagely)),
        AveragelyByCircle::NAME | "avg-circle" => Some(std::sync::Arc::new(AveragelyByCircle)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qs(n: u32) -> Vec<MessageQueue> {
        (0..n).map(|q| MessageQueue::new("T", q)).collect()
    }

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("c{i}")).collect()
    }

    fn ids_of(v: &[MessageQueue]) -> Vec<u32> {
        v.iter().map(|q| q.queue_id).collect()
    }

    #[test]
    fn averagely_gives_contiguous_blocks() {
        let s = Averagely;
        // 8 queues, 3 consumers: 3, 3, 2.
        assert_eq!(ids_of(&s.allocate("c0", &qs(8), &ids(3))), vec![0, 1, 2]);
        assert_eq!(ids_of(&s.allocate("c1", &qs(8), &ids(3))), vec![3, 4, 5]);
        assert_eq!(ids_of(&s.allocate("c2", &qs(8), &ids(3))), vec![6, 7]);
        // More consumers than queues: the last ones get nothing.
        assert_eq!(
            ids_of(&s.allocate("c3", &qs(2), &ids(4))),
            Vec::<u32>::new()
        );
        assert_eq!(ids_of(&s.allocate("c1", &qs(2), &ids(4))), vec![1]);
        assert!(s.allocate("zz", &qs(4), &ids(2)).is_empty());
    }

    #[test]
    fn circle_deals_round_robin() {
        let s = AveragelyByCircle;
        assert_eq!(ids_of(&s.allocate("c0", &qs(8), &ids(3))), vec![0, 3, 6]);
        assert_eq!(ids_of(&s.allocate("c2", &qs(8), &ids(3))), vec![2, 5]);
    }

    #[test]
    fn every_queue_exactly_once() {
        for strategy in [by_name("averagely").unwrap(), by_name("circle").unwrap()] {
            for n in 1..12u32 {
                for c in 1..6usize {
                    let mut all: Vec<u32> = (0..c)
                        .flat_map(|i| ids_of(&strategy.allocate(&format!("c{i}"), &qs(n), &ids(c))))
                        .collect();
                    all.sort();
                    assert_eq!(
                        all,
                        (0..n).collect::<Vec<_>>(),
                        "{} n={n} c={c}",
                        strategy.name()
                    );
                }
            }
        }
    }
}
