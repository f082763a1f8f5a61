//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mqlab_engine::io::sim::{FaultPlan, SimEnv};
use mqlab_engine::io::OpenOptions;
use mqlab_engine::{BackendKind, Env, FlushKind, Message, StoreConfig};

/// Which environment a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Real(BackendKind),
    Sim,
}

/// The environment, or None (with a printed reason) when unavailable.
pub fn env_for(b: Backend, seed: u64) -> Option<Arc<dyn Env>> {
    match b {
        Backend::Sim => Some(Arc::new(SimEnv::new(seed))),
        Backend::Real(k) => match k.env() {
            Ok(e) => Some(e),
            Err(e) => {
                eprintln!("skipping: backend {k} unavailable: {e}");
                None
            }
        },
    }
}

/// Small files and fast background services, so tests roll segments and
/// see flushes within milliseconds.
pub fn test_config(flush: FlushKind) -> StoreConfig {
    let mut cfg = StoreConfig::small();
    cfg.segment_bytes = 128 * 1024;
    cfg.max_message_bytes = 32 * 1024;
    cfg.cq_units_per_file = 64;
    cfg.index_slots = 64;
    cfg.index_items = 256;
    cfg.checkpoint_interval_ms = 20;
    cfg.flush.kind = flush;
    cfg.flush.flush_interval_ms = 5;
    cfg.flush.flush_least_pages = 1;
    cfg.flush.flush_thorough_interval_ms = 50;
    cfg.flush.commit_interval_ms = 3;
    cfg.flush.pool_buffers = 4;
    cfg
}

/// Deterministic message number `i`: topic, queue, key and a body whose
/// size varies from 1 to ~3 KiB.
pub fn message(i: u64) -> Message {
    let topic = if i.is_multiple_of(3) {
        "TopicB"
    } else {
        "TopicA"
    };
    let size = 1 + (i * 7919 % 3000) as usize;
    let body: Vec<u8> = (0..size).map(|j| (i as usize * 31 + j) as u8).collect();
    Message::new(topic, body)
        .with_queue((i % 4) as u32)
        .with_keys(format!("key-{i} common"))
        .with_tags(format!("tag{}", i % 5))
}

/// Message number encoded in a key "key-N".
pub fn number_of(m: &mqlab_engine::StoredMessage) -> Option<u64> {
    m.keys().find_map(|k| k.strip_prefix("key-")?.parse().ok())
}

/// Message `i` of [`message`] with its body cut to 1..=1000 bytes, so that
/// checked-in fixtures stay small. Same topic, queue, keys and tags.
pub fn small_message(i: u64) -> Message {
    let mut m = message(i);
    // x % 1000 <= x % 3000, so this is a prefix of message(i)'s body.
    m.body.truncate(1 + (i * 7919 % 1000) as usize);
    m
}

/// Ok when `got` is exactly `want` as put: topic, queue, body, and every
/// user property (the store adds none besides the record CRC, which it
/// strips).
pub fn same_as_put(
    got: &mqlab_engine::StoredMessage,
    want: &Message,
) -> std::result::Result<(), String> {
    let diff = if got.topic != want.topic {
        format!("topic {:?} != {:?}", got.topic, want.topic)
    } else if got.queue_id != want.queue_id {
        format!("queue {} != {}", got.queue_id, want.queue_id)
    } else if got.body != want.body {
        format!("body of {} bytes differs", got.body.len())
    } else if got.properties != want.properties {
        format!("properties {:?} != {:?}", got.properties, want.properties)
    } else {
        return Ok(());
    };
    Err(format!("message at {}: {diff}", got.phys_offset))
}

/// Counts panics on the store's own threads (named `mqlab-*`: dispatcher,
/// checkpointer, flushers), which `catch_unwind` around a call cannot see.
/// The hook is installed once per test binary and still prints through
/// the default hook. Test threads are not counted, so one failing test
/// does not fail the others.
pub fn store_thread_panics() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Once;
    static PANICS: AtomicUsize = AtomicUsize::new(0);
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current()
                .name()
                .is_some_and(|n| n.starts_with("mqlab-"))
            {
                PANICS.fetch_add(1, Ordering::SeqCst);
            }
            default(info);
        }));
    });
    PANICS.load(Ordering::SeqCst)
}

/// Every file under `root` (recursively, real file system), by path
/// relative to `root`, with its bytes.
pub fn read_tree(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).unwrap().to_path_buf();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Copies the directory tree `src` into `dst` (created).
pub fn copy_tree(src: &Path, dst: &Path) {
    for (rel, bytes) in read_tree(src) {
        let to = dst.join(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::write(to, bytes).unwrap();
    }
}

/// Every file under `root` of an [`Env`] (the simulator, typically), by
/// full path, with its bytes.
pub fn env_files(env: &dyn Env, root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for name in env.list_dir(&dir).unwrap() {
            let path = dir.join(name);
            if env.is_dir(&path) {
                dirs.push(path);
                continue;
            }
            let f = env.open(&path, OpenOptions::read_only()).unwrap();
            let mut bytes = vec![0u8; f.len() as usize];
            let n = f.read_at(0, &mut bytes).unwrap();
            bytes.truncate(n);
            out.insert(path, bytes);
        }
    }
    out
}

/// A fresh simulated disk with `plan`, holding `files` as durable bytes
/// (as [`env_files`] returned them). Loading the files goes through the
/// disk's own writes and syncs, so it counts towards the plan's write,
/// sync and capacity faults: use it with read faults or none.
pub fn sim_with_files(plan: FaultPlan, files: &BTreeMap<PathBuf, Vec<u8>>) -> SimEnv {
    let sim = SimEnv::with_faults(plan);
    for (path, bytes) in files {
        sim.create_dir_all(path.parent().unwrap()).unwrap();
        let f = sim
            .open(
                path,
                OpenOptions {
                    create: true,
                    ..OpenOptions::default()
                },
            )
            .unwrap();
        if !bytes.is_empty() {
            f.write_at(0, bytes).unwrap();
        }
        f.sync_data().unwrap();
    }
    sim
}

/// Opens the store dumped in `fixtures/reliability/<image>/image` on a
/// simulated disk with `flush` and returns every message (number, offset)
/// whose key the index no longer finds.
pub fn keys_missing_after_replaying_image(
    image: &str,
    flush: mqlab_engine::FlushKind,
) -> Vec<(u64, u64)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/reliability")
        .join(image)
        .join("image");
    let root = PathBuf::from("/sim/reliability");
    let files: BTreeMap<PathBuf, Vec<u8>> = read_tree(&dir)
        .into_iter()
        .map(|(rel, b)| (root.join(rel), b))
        .collect();
    let sim = sim_with_files(FaultPlan::default(), &files);
    let store =
        mqlab_engine::Store::open_with_env(Arc::new(sim), &root, test_config(flush)).unwrap();
    let end = store.recovery_report().end_offset;
    assert!(store.wait_dispatched(end, std::time::Duration::from_secs(10)));
    let mut missing = Vec::new();
    store
        .scan(store.min_offset(), &mut |m| {
            let m = m.unwrap();
            let i = number_of(m).unwrap();
            let hits = store
                .query_by_key(&m.topic, &format!("key-{i}"), 0, i64::MAX)
                .unwrap();
            if !hits.iter().any(|h| h.phys_offset == m.phys_offset) {
                missing.push((i, m.phys_offset));
            }
            true
        })
        .unwrap();
    missing
}
