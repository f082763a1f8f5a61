//! The fuzz targets inside `cargo test`: every cargo-fuzz target body
//! (`engine/fuzz/src/targets.rs`, included here by path) runs over its
//! checked-in seeds (`engine/fuzz/seeds/<target>/`) and over seeded random
//! mutations of them (bit flips, byte runs, cuts, duplicated and zeroed
//! ranges, huge length fields).
//!
//! This is a random-bytes harness, not coverage-guided fuzzing:
//! `scripts/fuzz.sh` runs the same bodies under libFuzzer with cargo-fuzz.
//! It keeps the targets compiling and exercised in CI and catches panics
//! and hangs (an input running longer than 20 s). Scale with
//! `MQLAB_REL_FUZZ_ITERS=<inputs per target>` (CI default 150); prints one
//! `RELIABILITY {json}` line per target. A failing input is written to
//! `target/reliability-fuzz-failures/` and replays with
//! `MQLAB_REL_FUZZ_INPUT=<target>:<file> cargo test -p mqlab-engine --test
//! reliability_fuzz -- --nocapture` (or `cargo fuzz run <target> <file>`
//! with RUSTC_BOOTSTRAP=1, in engine/fuzz).
//!
//! `generate_fuzz_seeds` (ignored, run by hand) rebuilds the seeds from
//! real stores.

mod common;
#[path = "../fuzz/src/targets.rs"]
mod targets;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mqlab_engine::io::sim::SimEnv;
use mqlab_engine::{FlushKind, Message, PutStatus, Store};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const HANG: Duration = Duration::from_secs(20);

fn seeds_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target)
}

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(seeds_dir(target)) {
        let mut paths: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for p in paths {
            out.push(std::fs::read(p).unwrap());
        }
    }
    out
}

/// One random mutation of `input`.
fn mutate(rng: &mut ChaCha8Rng, input: &[u8]) -> Vec<u8> {
    let mut b = input.to_vec();
    if b.is_empty() {
        b = (0..rng.random_range(1..64)).map(|_| rng.random()).collect();
        return b;
    }
    for _ in 0..rng.random_range(1..=4) {
        let len = b.len().max(1);
        match rng.random_range(0..8u32) {
            0 | 1 => {
                let i = rng.random_range(0..len);
                if let Some(x) = b.get_mut(i) {
                    *x ^= 1 << rng.random_range(0..8);
                }
            }
            2 => {
                let i = rng.random_range(0..len);
                let n = rng.random_range(1..=16).min(b.len() - i.min(b.len()));
                let v: u8 = if rng.random_bool(0.5) { 0 } else { 0xff };
                for x in b.iter_mut().skip(i).take(n) {
                    *x = v;
                }
            }
            3 => b.truncate(rng.random_range(0..len)),
            4 => {
                // A huge length field: 4 big-endian bytes near the top.
                let i = rng.random_range(0..len);
                let v = [0x7f, 0xff, 0xff, rng.random()];
                for (k, x) in v.iter().enumerate() {
                    if let Some(y) = b.get_mut(i + k) {
                        *y = *x;
                    }
                }
            }
            5 => {
                let i = rng.random_range(0..len);
                let n = rng.random_range(1..=64).min(b.len() - i.min(b.len()));
                let chunk: Vec<u8> = b[i..i + n].to_vec();
                let at = rng.random_range(0..=b.len());
                b.splice(at..at, chunk);
            }
            6 => {
                let i = rng.random_range(0..len);
                let n = rng.random_range(1..=256).min(b.len() - i.min(b.len()));
                b[i..i + n].fill(0);
            }
            _ => {
                let at = rng.random_range(0..=b.len());
                let extra: Vec<u8> = (0..rng.random_range(1..32)).map(|_| rng.random()).collect();
                b.splice(at..at, extra);
            }
        }
    }
    b
}

#[derive(Debug, Default, serde::Serialize)]
struct Totals {
    suite: &'static str,
    target: String,
    execs: u64,
    seeds: u64,
    panics: u64,
    hangs: u64,
    failures: Vec<String>,
}

/// Runs `body` on `input` in a thread: `Err` with a message on a panic or
/// a hang.
fn run_one(body: fn(&[u8]), input: Vec<u8>) -> Result<(), (bool, String)> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("fuzz-input".into())
        .spawn(move || {
            let r = std::panic::catch_unwind(|| body(&input));
            let _ = tx.send(r.map_err(|p| {
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            }));
        })
        .unwrap();
    match rx.recv_timeout(HANG) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(msg)) => Err((false, msg)),
        Err(_) => Err((true, format!("no answer within {HANG:?}"))),
    }
}

fn harness(name: &str) {
    let (_, body) = targets::TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .copied()
        .unwrap();
    let iters = std::env::var("MQLAB_REL_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150u64);
    if let Ok(spec) = std::env::var("MQLAB_REL_FUZZ_INPUT") {
        // Replays one input: `<target>:<file>`.
        if let Some((target, file)) = spec.split_once(':') {
            if target == name {
                let r = run_one(body, std::fs::read(file).unwrap());
                assert!(r.is_ok(), "{name} {file}: {r:?}");
            }
        }
        return;
    }
    let base = seeds(name);
    assert!(
        !base.is_empty(),
        "no seeds for {name} in {:?}",
        seeds_dir(name)
    );
    let mut t = Totals {
        suite: "fuzz-harness",
        target: name.to_string(),
        seeds: base.len() as u64,
        ..Totals::default()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(0xf022 ^ name.len() as u64);
    let fail_dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/reliability-fuzz-failures")
        .join(name);
    let inputs = base
        .iter()
        .cloned()
        .chain((0..iters).map(|_| {
            let s = &base[rng.random_range(0..base.len())];
            mutate(&mut rng, s)
        }))
        .collect::<Vec<_>>();
    let started = Instant::now();
    for (k, input) in inputs.into_iter().enumerate() {
        t.execs += 1;
        if let Err((hang, msg)) = run_one(body, input.clone()) {
            if hang {
                t.hangs += 1;
            } else {
                t.panics += 1;
            }
            std::fs::create_dir_all(&fail_dir).unwrap();
            let file = fail_dir.join(format!("input-{k}"));
            std::fs::write(&file, &input).unwrap();
            t.failures
                .push(format!("{name} input {k} ({}): {msg}", file.display()));
        }
    }
    eprintln!(
        "RELIABILITY {} ({:.1}s)",
        serde_json::to_string(&t).unwrap(),
        started.elapsed().as_secs_f64()
    );
    assert!(t.failures.is_empty(), "{:#?}", t.failures);
}

#[test]
fn fuzz_record_decode() {
    harness("record_decode");
}

#[test]
fn fuzz_cq_units() {
    harness("cq_units");
}

#[test]
fn fuzz_index_file() {
    harness("index_file");
}

#[test]
fn fuzz_checkpoint() {
    harness("checkpoint");
}

#[test]
fn fuzz_open_store() {
    harness("open_store");
}

/// The store seeds are real stores: they open and hold their messages.
#[test]
fn open_store_seeds_are_real_stores() {
    for seed in seeds("open_store") {
        let (flags, files) = targets::store_files(&seed);
        let sim = common::sim_with_files(Default::default(), &files);
        let store = Store::open_with_env(
            Arc::new(sim),
            targets::store_root(),
            targets::store_config(flags),
        )
        .unwrap();
        let mut n = 0;
        store
            .scan(0, &mut |m| {
                m.unwrap();
                n += 1;
                true
            })
            .unwrap();
        assert_eq!(n, 40);
        assert_eq!(store.queues().len(), 3);
        let hits = store.query_by_key("TopicA", "key-1", 0, i64::MAX).unwrap();
        assert_eq!(hits.len(), 1);
    }
}

/// Rebuilds `engine/fuzz/seeds/` from real stores:
/// `cargo test -p mqlab-engine --test reliability_fuzz -- --ignored generate`.
#[test]
#[ignore = "writes the checked-in fuzz seeds; run by hand"]
fn generate_fuzz_seeds() {
    let mut out: BTreeMap<(&str, String), Vec<u8>> = BTreeMap::new();
    for (n, flush) in [(0u8, FlushKind::Sync), (1, FlushKind::Async)] {
        for crash in [false, true] {
            let flags = (crash as u8) | (n << 1);
            let (files, recs) = real_store(flush, crash);
            out.insert(
                (
                    "open_store",
                    format!("{}-{}", flush, if crash { "crash" } else { "clean" }),
                ),
                targets::encode_store_files(flags, &files),
            );
            let root = targets::store_root();
            let seg = &files[&root.join("commitlog/00000000000000000000")];
            for &(phys, size) in recs.iter().step_by(7) {
                let mut b = phys.to_be_bytes().to_vec();
                b.extend_from_slice(&((targets::SEGMENT_BYTES - phys) as u32).to_be_bytes());
                b.extend_from_slice(&seg[phys as usize..(phys + size as u64) as usize]);
                out.insert(("record_decode", format!("{flush}-{crash}-{phys}")), b);
            }
            for (name, bytes) in &files {
                let rel = name
                    .strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .to_string();
                if rel.starts_with("consumequeue/") {
                    let mut b = vec![(targets::CQ_UNITS - 1) as u8];
                    b.extend_from_slice(&(recs[recs.len() / 2].0).to_be_bytes());
                    b.push(0);
                    let used = bytes
                        .chunks(20)
                        .take_while(|c| c.iter().any(|&x| x != 0))
                        .count();
                    b.extend_from_slice(&bytes[..(used + 1) * 20]);
                    out.insert(
                        (
                            "cq_units",
                            format!("{flush}-{crash}-{}", rel.replace('/', "_")),
                        ),
                        b,
                    );
                }
                if rel.starts_with("index/") {
                    let mut b = vec![
                        (targets::INDEX_SLOTS - 1) as u8,
                        (targets::INDEX_ITEMS - 2) as u8,
                        1,
                    ];
                    b.extend_from_slice(&0i64.to_be_bytes());
                    b.extend_from_slice(&i64::MAX.to_be_bytes());
                    let last = bytes.iter().rposition(|&x| x != 0).unwrap_or(0);
                    b.extend_from_slice(&bytes[..last + 1]);
                    out.insert(("index_file", format!("{flush}-{crash}")), b);
                }
                if rel == "checkpoint" {
                    out.insert(
                        ("checkpoint", format!("{flush}-{crash}")),
                        bytes[..96].to_vec(),
                    );
                }
            }
        }
    }
    for ((target, name), bytes) in out {
        let dir = seeds_dir(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

/// A small real store on the simulator under the fuzz layout: 40 small
/// messages over TopicA/0, TopicA/1 and TopicB/0; shut down cleanly or
/// left as a process crash leaves it. Returns its files (index file
/// renamed to the layout's fixed name) and (phys, size) of every record.
type Files = BTreeMap<PathBuf, Vec<u8>>;

fn real_store(flush: FlushKind, crash: bool) -> (Files, Vec<(u64, u32)>) {
    let sim = SimEnv::new(7);
    let root = targets::store_root();
    let cfg =
        targets::store_config(FlushKind::ALL.iter().position(|&f| f == flush).unwrap() as u8 * 2);
    let store = Store::open_with_env(Arc::new(sim.clone()), &root, cfg).unwrap();
    let mut recs = Vec::new();
    for i in 0..40u64 {
        let (topic, q) = [("TopicA", 0), ("TopicA", 1), ("TopicB", 0)][(i % 3) as usize];
        let m = Message::new(
            topic,
            format!("body-{i}-{}", "x".repeat((i * 13 % 90) as usize)),
        )
        .with_queue(q)
        .with_keys(format!("key-{i} common"))
        .with_tags(format!("tag{}", i % 4));
        let r = store.put(&m);
        assert_eq!(r.status, PutStatus::PutOk);
        let o = r.offsets.unwrap();
        recs.push((o.phys_offset, o.wrote_bytes));
    }
    assert!(store.wait_dispatched(store.offsets().committed, Duration::from_secs(5)));
    let env = if crash {
        let e = sim.process_crash();
        drop(store);
        e
    } else {
        store.shutdown().unwrap();
        sim
    };
    let mut files = BTreeMap::new();
    for (path, bytes) in common::env_files(&env, &root) {
        let path = if path.starts_with(root.join("index")) {
            root.join("index/20250101000000000")
        } else {
            path
        };
        files.insert(path, bytes);
    }
    (files, recs)
}
