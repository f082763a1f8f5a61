//! fixture-gen: writes a small RocketMQ store directory with the `rocketmq-store`
//! crate (1.x, an implementation independent of mqlab) plus a manifest of every
//! message put, so mqlab's reader can be checked against foreign bytes.
//!
//! Usage: fixture-gen <fixture-dir>
//!   writes <fixture-dir>/store/ (the store root, as the crate lays it out) and
//!   <fixture-dir>/manifest.json. <fixture-dir>/store must not exist yet.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cheetah_string::CheetahString;
use dashmap::DashMap;
use rocketmq_model::common::config::TopicConfig;
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_ext_broker_inner::MessageExtBrokerInner;
use rocketmq_model::common::message::message_single::Message;
use rocketmq_model::common::message::MessageConst;
use rocketmq_runtime::{RuntimeConfig, RuntimeOwner};
use rocketmq_store::{
    BrokerReadStore, BrokerStorePort, FlushDiskType, MessageStoreConfig, PutMessageStatus, StoreFactory,
    StoreFactoryConfig, StoreRuntimeConfig, StoreTelemetry,
};
use serde_json::{json, Value};

/// Exact crate version this generator is pinned to (see Cargo.lock).
const GENERATOR: &str = "rocketmq-store 1.0.0";

const SEGMENT_BYTES: usize = 64 * 1024;
const CQ_UNITS: usize = 100;
const CQ_FILE_BYTES: usize = CQ_UNITS * 20;
const INDEX_SLOTS: u32 = 64;
const INDEX_ITEMS: u32 = 256;
const MESSAGES: usize = 300;

const TOPIC_A: &str = "FixtureTopicA";
const TOPIC_B: &str = "FixtureTopicB";
const QUEUES_A: i32 = 4;
const QUEUES_B: i32 = 2;

/// Properties are written in this fixed order (the crate's own
/// `message_properties_to_string` iterates a HashMap, which would make the
/// byte layout differ run to run).
const NAME_VALUE_SEPARATOR: char = '\u{1}';
const PROPERTY_SEPARATOR: char = '\u{2}';

struct Planned {
    index: usize,
    topic: &'static str,
    queue_id: i32,
    body: Vec<u8>,
    keys: String,
    tags: String,
    uniq_key: String,
    properties: String,
}

fn plan(i: usize) -> Planned {
    // Topic A for i % 3 in {0, 1}, topic B for i % 3 == 2: with queue = i % queues
    // every queue of both topics receives messages.
    let (topic, queues) = if i % 3 == 2 { (TOPIC_B, QUEUES_B) } else { (TOPIC_A, QUEUES_A) };
    let queue_id = (i as i32) % queues;
    // Body length 50..=600, deterministic.
    let len = 50 + (i * 37) % 551;
    let mut body = format!("fixture-msg-{i}-").into_bytes();
    let mut k = 0usize;
    while body.len() < len {
        body.push(b'a' + ((i + k) % 26) as u8);
        k += 1;
    }
    body.truncate(len);
    let keys = format!("key-{i}");
    let tags = format!("tag{}", i % 3);
    // Deterministic 32-hex-digit id shaped like a Java client's UNIQ_KEY
    // (ip 7F000001, pid 1234, client hash CAFEBABE, time 00000000, counter i).
    let uniq_key = format!("7F0000011234CAFEBABE00000000{:04X}", i);
    let mut properties = String::new();
    for (name, value) in [
        (MessageConst::PROPERTY_KEYS, keys.as_str()),
        (MessageConst::PROPERTY_TAGS, tags.as_str()),
        (MessageConst::PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX, uniq_key.as_str()),
        (MessageConst::PROPERTY_WAIT_STORE_MSG_OK, "true"),
    ] {
        properties.push_str(name);
        properties.push(NAME_VALUE_SEPARATOR);
        properties.push_str(value);
        properties.push(PROPERTY_SEPARATOR);
    }
    Planned { index: i, topic, queue_id, body, keys, tags, uniq_key, properties }
}

fn build_inner(p: &Planned, born_ms: i64) -> MessageExtBrokerInner {
    let mut msg = Message::builder()
        .topic(p.topic)
        .body(Bytes::from(p.body.clone()))
        .build_unchecked();
    msg.set_keys(CheetahString::from_string(p.keys.clone()));
    msg.set_tags(CheetahString::from_string(p.tags.clone()));
    let mut props: HashMap<CheetahString, CheetahString> = HashMap::new();
    props.insert(MessageConst::PROPERTY_KEYS.into(), p.keys.clone().into());
    props.insert(MessageConst::PROPERTY_TAGS.into(), p.tags.clone().into());
    props.insert(MessageConst::PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX.into(), p.uniq_key.clone().into());
    props.insert(MessageConst::PROPERTY_WAIT_STORE_MSG_OK.into(), "true".into());
    msg.set_properties(props);

    let mut ext = MessageExt::default();
    ext.set_message_inner(msg);
    ext.set_queue_id(p.queue_id);
    ext.set_born_timestamp(born_ms);
    ext.set_born_host(SocketAddr::from(([127, 0, 0, 1], 40000)));
    ext.set_store_host(SocketAddr::from(([127, 0, 0, 1], 10911)));

    MessageExtBrokerInner {
        message_ext_inner: ext,
        properties_string: CheetahString::from_string(p.properties.clone()),
        tags_code: MessageExtBrokerInner::tags_string_to_tags_code(&p.tags),
        ..Default::default()
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 2 {
        eprintln!("usage: {} <fixture-dir>", args[0]);
        std::process::exit(2);
    }
    let out = PathBuf::from(&args[1]);
    let store_dir = out.join("store");
    if store_dir.exists() {
        eprintln!("{} already exists; remove it first", store_dir.display());
        std::process::exit(2);
    }
    std::fs::create_dir_all(&out).expect("create fixture dir");
    let store_dir = std::fs::canonicalize(&out).expect("canonicalize").join("store");

    let owner = RuntimeOwner::plan(RuntimeConfig::server_default("fixture-gen"))
        .expect("runtime config")
        .build()
        .expect("runtime");
    let ctx = owner.root_context().component("fixture-store");

    let cfg = MessageStoreConfig {
        store_path_root_dir: CheetahString::from_string(store_dir.to_string_lossy().to_string()),
        flush_disk_type: FlushDiskType::SyncFlush,
        mapped_file_size_commit_log: SEGMENT_BYTES,
        mapped_file_size_consume_queue: CQ_FILE_BYTES,
        max_hash_slot_num: INDEX_SLOTS,
        max_index_num: INDEX_ITEMS,
        ha_listen_port: 0,
        ha_listen_address: "127.0.0.1".parse().unwrap(),
        timer_wheel_enable: false,
        commit_log_micro_batch_enabled: false,
        ..Default::default()
    };
    let enabled_append_prop_crc = cfg.enabled_append_prop_crc;
    let cfg = Arc::new(cfg);

    let topics: Arc<DashMap<CheetahString, Arc<TopicConfig>>> = Arc::new(DashMap::new());
    for (t, n) in [(TOPIC_A, QUEUES_A as u32), (TOPIC_B, QUEUES_B as u32)] {
        topics.insert(CheetahString::from_static_str(t), Arc::new(TopicConfig::with_queues(t, n, n)));
    }

    let factory_cfg = StoreFactoryConfig::try_new(
        cfg.clone(),
        Arc::new(StoreRuntimeConfig::default()),
        topics,
        None,
        false,
        StoreTelemetry::noop(),
    )
    .expect("store factory config");
    let (mut store, _timer) = StoreFactory::open(factory_cfg, ctx).expect("open store").into_parts();

    let messages: Vec<Value> = owner.block_on(async {
        store.init().await.expect("init");
        assert!(store.load().await, "load");
        store.start().await.expect("start");

        let mut entries = Vec::with_capacity(MESSAGES);
        for i in 0..MESSAGES {
            let p = plan(i);
            let inner = build_inner(&p, now_ms());
            let r = store.put_message_shared(inner).await;
            assert_eq!(r.put_message_status(), PutMessageStatus::PutOk, "message {i}");
            let a = r.append_message_result().expect("append result");
            let mut e = json!({
                "index": p.index,
                "topic": p.topic,
                "queue_id": p.queue_id,
                "queue_offset": a.logics_offset,
                "phys_offset": a.wrote_offset,
                "size": a.wrote_bytes,
                "segment": format!("{:020}", (a.wrote_offset as usize / SEGMENT_BYTES) * SEGMENT_BYTES),
                "keys": p.keys,
                "tags": p.tags,
                "tags_code": MessageExtBrokerInner::tags_string_to_tags_code(&p.tags),
                "uniq_key": p.uniq_key,
                "properties": p.properties,
                "body_len": p.body.len(),
                "store_timestamp_ms": a.store_timestamp,
                "offset_msg_id": a.get_message_id().unwrap_or_default(),
            });
            match std::str::from_utf8(&p.body) {
                Ok(s) => e["body_utf8"] = json!(s),
                Err(_) => e["body_hex"] = json!(p.body.iter().map(|b| format!("{b:02x}")).collect::<String>()),
            }
            entries.push(e);
        }

        // Wait for the reput dispatcher to build every consume queue entry and
        // index item before shutting down.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let behind = store.dispatch_behind_bytes();
            let mut all = true;
            for (t, n) in [(TOPIC_A, QUEUES_A), (TOPIC_B, QUEUES_B)] {
                for q in 0..n {
                    let want = entries
                        .iter()
                        .filter(|e| e["topic"] == t && e["queue_id"] == q)
                        .count() as i64;
                    if store.get_max_offset_in_queue(&CheetahString::from_static_str(t), q) < want {
                        all = false;
                    }
                }
            }
            if behind == 0 && all {
                break;
            }
            assert!(Instant::now() < deadline, "dispatch did not catch up (behind {behind})");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Let the index service and checkpoint flush settle.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let max_phy = store.get_max_phy_offset();
        eprintln!("max phy offset {max_phy}");

        let report = store.shutdown_gracefully().await.expect("graceful shutdown");
        eprintln!("shutdown: {report:?}");
        entries
    });
    drop(store);
    let report = owner.shutdown_runtime_blocking().expect("runtime shutdown");
    eprintln!("runtime shutdown healthy: {}", report.is_healthy());

    let manifest = json!({
        "generator": GENERATOR,
        "generator_program": "scripts/fixture-gen (see README.md)",
        "store_dir": "store",
        "segment_bytes": SEGMENT_BYTES,
        "cq_file_bytes": CQ_FILE_BYTES,
        "cq_unit_bytes": 20,
        "index_slots": INDEX_SLOTS,
        "index_items": INDEX_ITEMS,
        "flush_disk_type": "SYNC_FLUSH",
        "enabled_append_prop_crc": enabled_append_prop_crc,
        "topics": [
            {"topic": TOPIC_A, "queues": QUEUES_A},
            {"topic": TOPIC_B, "queues": QUEUES_B},
        ],
        "message_count": messages.len(),
        "messages": messages,
    });
    let path = out.join("manifest.json");
    let mut text = serde_json::to_string_pretty(&manifest).unwrap();
    text.push('\n');
    std::fs::write(&path, text).expect("write manifest");
    eprintln!("wrote {} and {}", path.display(), Path::new(&store_dir).display());
}
