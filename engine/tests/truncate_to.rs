//! `Store::truncate_to` (issue 14 part 2: a follower meeting a new master
//! cuts what that master never had): under every flush strategy, a store
//! in slave mode cut at a seeded record boundary ends exactly there (log,
//! queues, queue offsets, the index's answers), goes on from there when
//! written again (the same records land at the same offsets), and reopens
//! with nothing left for recovery to cut. Refused outside slave mode.

mod common;

use std::time::Duration;

use common::{message, test_config};
use mqlab_engine::{Error, FlushKind, Store};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const N: u64 = 240;

fn queue_counts(upto: u64) -> std::collections::BTreeMap<(String, u32), u64> {
    let mut m = std::collections::BTreeMap::new();
    for i in 0..upto {
        let msg = message(i);
        *m.entry((msg.topic.clone(), msg.queue_id)).or_insert(0) += 1;
    }
    m
}

#[test]
fn a_slave_store_cut_goes_on_from_the_cut() {
    for (n, flush) in [FlushKind::Group, FlushKind::Async, FlushKind::Pool]
        .into_iter()
        .enumerate()
    {
        let seed = 0x7c_0000 + n as u64;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let dir = tempfile::tempdir().unwrap();
        let cfg = test_config(flush);
        let store = Store::open(dir.path(), cfg.clone()).unwrap();
        let mut phys = Vec::new();
        for i in 0..N {
            let r = store.put(&message(i));
            assert!(r.is_ok(), "seed {seed:#x}: put {i}: {r:?}");
            phys.push(r.offsets.unwrap().phys_offset);
        }
        let end = store.offsets().written;
        assert!(end > 3 * cfg.segment_bytes, "several segments");
        match store.truncate_to(phys[10]) {
            Err(Error::Unavailable(why)) => assert!(why.contains("slave"), "{why}"),
            other => panic!("seed {seed:#x}: a master's store was cut: {other:?}"),
        }
        store.set_slave_mode(true);
        let k = rng.random_range(1..N - 1);
        let cut = phys[k as usize];
        let report = store.truncate_to(cut).unwrap();
        assert_eq!(report[0].offset, cut, "seed {seed:#x}");
        assert_eq!(report[0].bytes, end - cut, "seed {seed:#x}");
        assert_eq!(store.offsets().written, cut, "seed {seed:#x}");
        assert!(store.dispatched_offset() <= cut, "seed {seed:#x}");
        assert!(
            store.truncate_to(cut).unwrap().is_empty(),
            "nothing left to cut"
        );
        assert!(store.get(phys[k as usize - 1]).is_ok(), "seed {seed:#x}");
        assert!(
            store.get(cut).is_err(),
            "seed {seed:#x}: the cut record is gone"
        );
        for ((topic, q), count) in queue_counts(k) {
            let info = store.queue_info(&topic, q).unwrap();
            assert_eq!(
                info.max_offset, count,
                "seed {seed:#x}: {topic}:{q} after a cut at {k}"
            );
        }
        // Written again from the cut: the same records land where they were.
        store.set_slave_mode(false);
        for i in k..N {
            let r = store.put(&message(i));
            assert!(r.is_ok(), "seed {seed:#x}: put {i} again: {r:?}");
            let o = r.offsets.unwrap();
            assert_eq!(
                o.phys_offset, phys[i as usize],
                "seed {seed:#x}: record {i}"
            );
        }
        assert_eq!(store.offsets().written, end, "seed {seed:#x}");
        assert!(store.wait_dispatched(end, Duration::from_secs(10)));
        for ((topic, q), count) in queue_counts(N) {
            let info = store.queue_info(&topic, q).unwrap();
            assert_eq!(info.max_offset, count, "seed {seed:#x}: {topic}:{q}");
        }
        store.shutdown().unwrap();
        let again = Store::open(dir.path(), cfg).unwrap();
        assert!(
            again.recovery_report().truncated.is_empty(),
            "seed {seed:#x}: {:?}",
            again.recovery_report().truncated
        );
        assert_eq!(again.offsets().written, end);
        let mut seen = 0u64;
        again
            .scan(0, &mut |m| {
                let m = m.expect("a valid record");
                assert_eq!(m.phys_offset, phys[seen as usize]);
                seen += 1;
                true
            })
            .unwrap();
        assert_eq!(seen, N, "seed {seed:#x}");
        again.shutdown().unwrap();
    }
}
