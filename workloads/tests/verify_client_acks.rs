//! `mqlab verify --acked` with an ack log written from what a wire client
//! was told (message id and queue offset, the queue id sometimes unknown):
//! every line must resolve to its record, and a line naming no record is
//! a missing acknowledged message, never skipped.

mod common;

use std::fmt::Write as _;
use std::path::Path;

use mqlab_engine::message::PROPERTY_UNIQ_KEY;
use mqlab_engine::{Message, Store, StoreConfig};

/// A store with `n` messages over 2 queues, each with a unique id and a
/// key; returns (queue id, queue offset, phys, unique id, key) of each.
fn store_with_uniq_ids(dir: &Path, n: usize) -> Vec<(u32, u64, u64, String, String)> {
    let store = Store::open(dir, StoreConfig::small()).unwrap();
    let mut out = Vec::new();
    for i in 0..n {
        let uniq = format!("{:032X}", 0x00C0_FFEE_0000_u64 + i as u64);
        let key = format!("key-{i}");
        let mut m = Message::new("ClientTopic", format!("body-{i}"))
            .with_property(PROPERTY_UNIQ_KEY, uniq.clone())
            .with_property("KEYS", key.clone());
        m.queue_id = (i % 2) as u32;
        let r = store.put(&m);
        let o = r.offsets.expect("stored");
        out.push((m.queue_id, o.queue_offset, o.phys_offset, uniq, key));
    }
    store.shutdown().unwrap();
    out
}

fn client_log(lines: &[String]) -> String {
    let mut s = String::from("topic,queue_id,queue_offset,msg_id,key\n");
    for l in lines {
        writeln!(s, "{l}").unwrap();
    }
    s
}

/// The broker's offset message id for `phys` (127.0.0.1:10911).
fn offset_id(phys: u64) -> String {
    format!("7F00000100002A9F{phys:016X}")
}

#[test]
fn client_acks_resolve_by_unique_id_or_offset_id() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let msgs = store_with_uniq_ids(&cwd.join("data"), 40);
    let lines: Vec<String> = msgs
        .iter()
        .enumerate()
        .map(|(i, (q, off, phys, uniq, key))| match i % 3 {
            // The C++ client: unique id and queue offset, no queue id.
            0 => format!("ClientTopic,,{off},{uniq},{key}"),
            1 => format!("ClientTopic,{q},{off},{uniq},{key}"),
            // A client that reports the broker's offset message id.
            _ => format!("ClientTopic,{q},{off},{},{key}", offset_id(*phys)),
        })
        .collect();
    std::fs::write(cwd.join("acks.csv"), client_log(&lines)).unwrap();
    let out = common::mqlab_ok(
        cwd,
        &[
            "verify",
            "--data-dir",
            "data",
            "--acked",
            "acks.csv",
            "--json",
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], true, "{out}");
    assert_eq!(v["acked"]["lines"], 40, "{out}");
    assert_eq!(v["acked"]["ok"], 40, "{out}");
}

#[test]
fn a_client_ack_naming_no_record_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let msgs = store_with_uniq_ids(&cwd.join("data"), 10);
    let (q, off, _, uniq, key) = &msgs[3];
    let cases = [
        // An id the store never saw.
        format!("ClientTopic,,{off},{:032X},{key}", 0xBADu64),
        // The right id at the wrong queue offset.
        format!("ClientTopic,,{},{uniq},{key}", off + 100),
        // The right id on the other queue.
        format!("ClientTopic,{},{off},{uniq},{key}", 1 - q),
        // An offset id pointing at another message.
        format!("ClientTopic,{q},{off},{},{key}", offset_id(msgs[4].2)),
        // An offset id past the end of the log.
        format!("ClientTopic,{q},{off},{},{key}", offset_id(1 << 40)),
    ];
    for case in cases {
        std::fs::write(
            cwd.join("acks.csv"),
            client_log(std::slice::from_ref(&case)),
        )
        .unwrap();
        let o = common::mqlab(
            cwd,
            &[
                "verify",
                "--data-dir",
                "data",
                "--acked",
                "acks.csv",
                "--json",
            ],
        );
        let out = String::from_utf8_lossy(&o.stdout);
        assert_ne!(o.status.code(), Some(0), "{case}: {out}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["acked"]["lines"], 1, "{case}: {out}");
        assert_eq!(v["acked"]["ok"], 0, "{case}: {out}");
        assert!(!v["lost"].as_array().unwrap().is_empty(), "{case}: {out}");
    }
}
