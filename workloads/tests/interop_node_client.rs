//! The Node client (npm `ali-ons` 3.12, pure JavaScript) against `mqlab
//! broker` (the binary, with its embedded name server) on loopback: a
//! push consumer joins, a producer sends 200 messages with keys and tags
//! (SEND_OK each), the consumer receives every one with the id the
//! producer was told, its key, tag and body, and after the broker's
//! shutdown `mqlab verify --acked` finds every acknowledged message.
//!
//! Needs the client: `.ci/run` installs it with npm into a folder it
//! creates and sets `MQLAB_INTEROP_NODE_MODULES` to its node_modules;
//! without the variable this test says so and does nothing.

mod interop_common;

use std::collections::BTreeMap;
use std::process::Command;

use interop_common::{run_client, verify_acked, Ack, Broker};

#[test]
fn ali_ons_round_trips_every_message_and_verify_finds_every_ack() {
    let Ok(modules) = std::env::var("MQLAB_INTEROP_NODE_MODULES") else {
        eprintln!("skipped: MQLAB_INTEROP_NODE_MODULES is not set (.ci/run installs npm ali-ons 3.12 and sets it)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), "group", "InteropTopic", 4);
    let n = 200;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/ali-ons-send-consume.js"
    );
    let mut cmd = Command::new("node");
    cmd.arg(script)
        .arg(broker.namesrv.to_string())
        .arg(n.to_string())
        .env("NODE_PATH", &modules);
    let out = run_client(cmd, "the Node client", 180);
    let mut acks = Vec::new();
    let mut ids = BTreeMap::new();
    for l in out.lines().filter_map(|l| l.strip_prefix("sent ")) {
        let f: Vec<&str> = l.split(' ').collect();
        assert_eq!(f.len(), 5, "{l}");
        assert_eq!(f[1], "SEND_OK", "{l}");
        let i: usize = f[0].parse().unwrap();
        ids.insert(i, f[2].to_string());
        acks.push(Ack {
            topic: "InteropTopic".into(),
            queue_id: Some(f[3].parse().unwrap()),
            queue_offset: f[4].parse().unwrap(),
            msg_id: f[2].to_string(),
            key: format!("node-key-{i}"),
        });
    }
    assert_eq!(acks.len(), n, "{out}");
    let got: BTreeMap<&str, &str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("got "))
        .filter_map(|l| l.split_once(' '))
        .collect();
    for (i, id) in &ids {
        let tag = if i % 2 == 1 { "TagB" } else { "TagA" };
        let want = format!("node-key-{i} {tag} node-body-{i}");
        assert_eq!(
            got.get(id.as_str()).copied(),
            Some(want.as_str()),
            "message {i} (id {id}); got {} of {n}",
            got.len()
        );
    }
    broker.stop();
    verify_acked(dir.path(), &dir.path().join("data"), &acks);
}
