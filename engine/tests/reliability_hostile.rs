//! Corrupt and hostile store directories, generated (issue 8).
//!
//! Base stores are real data directories written by the real backends
//! (pwrite clean shutdown, mmap and io_uring left as a process crash
//! leaves them), three segments each. A seeded generator mutates copies of
//! them: bit flips, truncation anywhere, zeroed ranges, duplicated and
//! missing segments, wrong file names and stray files, checkpoints
//! pointing past the end (or at an earlier segment boundary), huge length
//! fields in records, units and index headers, the abort marker added or
//! removed, and combinations. Every case is opened in-process on the
//! simulator (and every fifth on the real file system) in a thread with a
//! catch-all and a 30 s deadline, then read every way. The promises:
//! - never a panic (on any thread) and never a hang;
//! - a refused open says why (a non-empty error);
//! - the valid prefix is kept: every record wholly before the first
//!   damaged commit-log byte reads back exactly (all of them when the
//!   damage is outside the commit log);
//! - nothing read back differs from what was put (scan, get, consume
//!   queues, key lookups);
//! - a put acknowledged after recovery survives a restart.
//!
//! With `MQLAB_BIN=<path to mqlab>` every `MQLAB_REL_HOSTILE_CLI_EVERY`-th
//! case (default 10) is also written to a directory and run through
//! `mqlab verify --json` and `mqlab inspect --json` with a 30 s timeout:
//! exit 0 or 1 with a report, never a panic (101), a signal or a hang.
//!
//! Scale: `MQLAB_REL_HOSTILE_CASES` (CI default 40). Replay a case:
//! `MQLAB_REL_HOSTILE_SEED=<seed> cargo test -p mqlab-engine --test
//! reliability_hostile -- --nocapture`. Totals: one `RELIABILITY {json}`
//! line on stderr.

mod common;

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use common::{number_of, read_tree, same_as_put, small_message, store_thread_panics};
use mqlab_engine::io::sim::{FaultPlan, SimEnv};
use mqlab_engine::io::OpenOptions;
use mqlab_engine::{BackendKind, Env, FlushKind, PutStatus, Store, StoreConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

const SEGMENT_BYTES: u64 = 72 * 1024;
const MESSAGES: u64 = 260;
const DEADLINE: Duration = Duration::from_secs(30);

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn config(backend: BackendKind) -> StoreConfig {
    let mut cfg = common::test_config(FlushKind::Sync);
    cfg.backend = backend;
    cfg.segment_bytes = SEGMENT_BYTES;
    cfg.max_message_bytes = 2 * 1024;
    cfg
}

/// Files of a store, by path relative to its directory.
type Files = BTreeMap<PathBuf, Vec<u8>>;

#[derive(Debug, Clone, Copy)]
struct Rec {
    i: u64,
    phys: u64,
    size: u64,
}

struct Base {
    name: &'static str,
    backend: BackendKind,
    files: Files,
    records: Vec<Rec>,
    end: u64,
}

fn seg_name(base: u64) -> PathBuf {
    PathBuf::from("commitlog").join(format!("{base:020}"))
}

/// The base stores, built once per test binary on the real file system.
fn bases() -> &'static Vec<Base> {
    static BASES: OnceLock<Vec<Base>> = OnceLock::new();
    BASES.get_or_init(|| {
        let mut out = Vec::new();
        for (name, backend, clean) in [
            ("pwrite-clean", BackendKind::Pwrite, true),
            ("mmap-crash", BackendKind::Mmap, false),
            ("uring-crash", BackendKind::Uring, false),
        ] {
            if backend.env().is_err() {
                eprintln!("hostile: base {name} skipped: backend {backend} unavailable");
                continue;
            }
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path(), config(backend)).unwrap();
            let records: Vec<Rec> = (0..MESSAGES)
                .map(|i| {
                    let r = store.put(&small_message(i));
                    assert_eq!(r.status, PutStatus::PutOk);
                    let o = r.offsets.unwrap();
                    Rec {
                        i,
                        phys: o.phys_offset,
                        size: o.wrote_bytes as u64,
                    }
                })
                .collect();
            let end = store.offsets().written;
            assert!(store.wait_dispatched(end, Duration::from_secs(10)));
            if clean {
                store.shutdown().unwrap();
            } else {
                drop(store);
            }
            assert!(end > 2 * SEGMENT_BYTES, "three segments");
            out.push(Base {
                name,
                backend,
                files: read_tree(dir.path()),
                records,
                end,
            });
        }
        out
    })
}

/// A generated case: the files, the first damaged physical offset of the
/// commit log (u64::MAX when untouched), and what was done.
struct Case {
    files: Files,
    prefix: u64,
    what: Vec<String>,
}

fn mutate_once(rng: &mut ChaCha8Rng, base: &Base, c: &mut Case) {
    let segs: Vec<u64> = (0..base.end.div_ceil(SEGMENT_BYTES))
        .map(|k| k * SEGMENT_BYTES)
        .collect();
    let seg_base = |p: &Path| -> Option<u64> {
        (p.parent() == Some(Path::new("commitlog")))
            .then(|| p.file_name()?.to_str()?.parse::<u64>().ok())
            .flatten()
    };
    let pick_file = |rng: &mut ChaCha8Rng, files: &Files| -> PathBuf {
        let keys: Vec<&PathBuf> = files.keys().collect();
        if rng.random_bool(0.6) {
            let b = segs[rng.random_range(0..segs.len())];
            if files.contains_key(&seg_name(b)) {
                return seg_name(b);
            }
        }
        keys[rng.random_range(0..keys.len())].clone()
    };
    let damage = |c: &mut Case, p: &Path, at: u64| {
        if let Some(b) = seg_base(p) {
            c.prefix = c.prefix.min(b + at);
        }
    };
    match rng.random_range(0..10u32) {
        0 | 1 => {
            let p = pick_file(rng, &c.files);
            let f = c.files.get_mut(&p).unwrap();
            if f.is_empty() {
                return;
            }
            // Mostly where data is: a segment's written part.
            let hi = match seg_base(&p) {
                Some(b) => (base.end.saturating_sub(b)).min(f.len() as u64).max(1) as usize,
                None => f.len(),
            };
            let n = rng.random_range(1..=8);
            let mut first = u64::MAX;
            for _ in 0..n {
                let at = rng.random_range(0..hi.min(f.len()));
                f[at] ^= 1 << rng.random_range(0..8);
                first = first.min(at as u64);
            }
            c.what
                .push(format!("{n} bit flips in {} from {first}", p.display()));
            damage(c, &p, first);
        }
        2 => {
            let p = pick_file(rng, &c.files);
            let f = c.files.get_mut(&p).unwrap();
            let at = rng.random_range(0..=f.len());
            f.truncate(at);
            c.what.push(format!("truncate {} at {at}", p.display()));
            damage(c, &p, at as u64);
        }
        3 => {
            let p = pick_file(rng, &c.files);
            let f = c.files.get_mut(&p).unwrap();
            if f.is_empty() {
                return;
            }
            let at = rng.random_range(0..f.len());
            let n = rng.random_range(1..=4096).min(f.len() - at);
            if f[at..at + n].iter().all(|&b| b == 0) {
                return;
            }
            f[at..at + n].fill(0);
            c.what
                .push(format!("zero {} [{at}, {})", p.display(), at + n));
            damage(c, &p, at as u64);
        }
        4 => {
            // A duplicated segment: over a later one, or past the end.
            let k = rng.random_range(0..segs.len());
            let Some(bytes) = c.files.get(&seg_name(segs[k])).cloned() else {
                return;
            };
            let to = if rng.random_bool(0.5) && k + 1 < segs.len() {
                segs[rng.random_range(k + 1..segs.len())]
            } else {
                segs.len() as u64 * SEGMENT_BYTES
            };
            c.files.insert(seg_name(to), bytes);
            c.what.push(format!("segment {} copied to {to}", segs[k]));
            c.prefix = c.prefix.min(to);
        }
        5 => {
            let k = rng.random_range(0..segs.len());
            if c.files.remove(&seg_name(segs[k])).is_some() {
                c.what.push(format!("segment {} missing", segs[k]));
                c.prefix = c.prefix.min(segs[k]);
            }
        }
        6 => {
            // Wrong names: a renamed file, or a stray one.
            let p = pick_file(rng, &c.files);
            let names = [
                "0000000000000000000".to_string(),
                format!("{}.bak", p.file_name().unwrap().to_string_lossy()),
                format!("{:020}", rng.random_range(1..SEGMENT_BYTES * 3)),
                "-1".to_string(),
                format!("{:020}", u64::MAX - 5),
                "99999999999999999999".to_string(),
            ];
            let name = names[rng.random_range(0..names.len())].clone();
            let to = p.parent().unwrap_or(Path::new("")).join(&name);
            if rng.random_bool(0.5) {
                let bytes = c.files.remove(&p).unwrap();
                damage(c, &p, 0);
                c.what
                    .push(format!("{} renamed {}", p.display(), to.display()));
                c.files.insert(to.clone(), bytes);
            } else {
                let junk: Vec<u8> = (0..rng.random_range(0..5000))
                    .map(|_| rng.random())
                    .collect();
                c.what.push(format!("stray file {}", to.display()));
                c.files.insert(to.clone(), junk);
            }
            // A stray that parses as a segment base inside the log can
            // legitimately cut it there.
            if let Some(b) = seg_base(&to) {
                c.prefix = c.prefix.min(b - b % SEGMENT_BYTES);
            }
        }
        7 => {
            // The checkpoint points past the end (or at an earlier
            // segment boundary).
            let Some(cp) = c.files.get_mut(Path::new("checkpoint")) else {
                return;
            };
            if cp.len() < 96 {
                cp.resize(4096, 0);
            }
            let values = [
                base.end + 1,
                base.end + 5 * SEGMENT_BYTES,
                u64::MAX,
                1 << 62,
                SEGMENT_BYTES,
                rng.random(),
            ];
            cp[64..68].copy_from_slice(&0x4d51_4c42u32.to_be_bytes());
            cp[68..72].copy_from_slice(&1u32.to_be_bytes());
            for field in [72usize, 80, 88] {
                if rng.random_bool(0.6) {
                    let v = values[rng.random_range(0..values.len())];
                    cp[field..field + 8].copy_from_slice(&v.to_be_bytes());
                }
            }
            if rng.random_bool(0.3) {
                let v: u64 = rng.random();
                cp[32..40].copy_from_slice(&v.to_be_bytes());
            }
            c.what.push(format!("checkpoint {:x?}", &cp[64..96]));
        }
        8 => {
            // Huge length fields.
            let huge = [
                0x7fff_ffffu32,
                0xffff_ffff,
                SEGMENT_BYTES as u32,
                0x0100_0000,
            ];
            let v = huge[rng.random_range(0..huge.len())];
            match rng.random_range(0..4u32) {
                0 | 1 => {
                    let r = base.records[rng.random_range(0..base.records.len())];
                    let seg = seg_name(r.phys - r.phys % SEGMENT_BYTES);
                    let Some(f) = c.files.get_mut(&seg) else {
                        return;
                    };
                    // TOTALSIZE, BODYLEN, or the topic/properties lengths.
                    let off = (r.phys % SEGMENT_BYTES) as usize;
                    let field = [0usize, 84][rng.random_range(0..2)];
                    if off + field + 4 <= f.len() {
                        f[off + field..off + field + 4].copy_from_slice(&v.to_be_bytes());
                        c.what
                            .push(format!("record {} field +{field} = {v:#x}", r.phys));
                        c.prefix = c.prefix.min(r.phys);
                    }
                }
                2 => {
                    let cq: Vec<PathBuf> = c
                        .files
                        .keys()
                        .filter(|p| p.starts_with("consumequeue"))
                        .cloned()
                        .collect();
                    if cq.is_empty() {
                        return;
                    }
                    let p = &cq[rng.random_range(0..cq.len())];
                    let f = c.files.get_mut(p).unwrap();
                    let units = f.len() / 20;
                    if units == 0 {
                        return;
                    }
                    let u = rng.random_range(0..units);
                    f[u * 20 + 8..u * 20 + 12].copy_from_slice(&v.to_be_bytes());
                    c.what.push(format!("{} unit {u} size {v:#x}", p.display()));
                }
                _ => {
                    let ix: Vec<PathBuf> = c
                        .files
                        .keys()
                        .filter(|p| p.starts_with("index"))
                        .cloned()
                        .collect();
                    if ix.is_empty() {
                        return;
                    }
                    let p = &ix[rng.random_range(0..ix.len())];
                    let f = c.files.get_mut(p).unwrap();
                    if f.len() < 40 {
                        return;
                    }
                    let field = [32usize, 36][rng.random_range(0..2)];
                    f[field..field + 4].copy_from_slice(&v.to_be_bytes());
                    c.what
                        .push(format!("{} header +{field} = {v:#x}", p.display()));
                }
            }
        }
        _ => {
            let abort = Path::new("abort");
            if c.files.remove(abort).is_some() {
                c.what.push("abort marker removed".into());
            } else {
                c.files.insert(abort.to_path_buf(), b"12345".to_vec());
                c.what.push("abort marker added".into());
            }
        }
    }
}

fn generate(seed: u64, base: &Base) -> Case {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut c = Case {
        files: base.files.clone(),
        prefix: u64::MAX,
        what: Vec::new(),
    };
    let n = if rng.random_bool(0.25) {
        rng.random_range(2..=3)
    } else {
        1
    };
    for _ in 0..n {
        mutate_once(&mut rng, base, &mut c);
    }
    c
}

#[derive(Debug, Default, Serialize)]
struct Totals {
    suite: &'static str,
    cases: u64,
    opened: u64,
    refused_with_error: u64,
    real_fs_opens: u64,
    panics: u64,
    hangs: u64,
    prefix_lost: u64,
    corrupt_reads: u64,
    acked_lost_after_restart: u64,
    cli_runs: u64,
    cli_panics: u64,
    cli_hangs: u64,
    cli_unclear: u64,
    by_base: BTreeMap<String, u64>,
    failures: Vec<String>,
}

/// What one case broke, if anything.
#[derive(Debug, Default)]
struct Broke {
    prefix_lost: u64,
    corrupt: u64,
    acked_lost: u64,
    refused: bool,
    problems: Vec<String>,
}

fn check_store(store: &Store, base: &Base, prefix: u64, b: &mut Broke) {
    let want = |i: u64| small_message(i);
    for r in &base.records {
        match store.get(r.phys) {
            Ok(m) => match number_of(&m) {
                Some(i) if i == r.i => {
                    if let Err(e) = same_as_put(&m, &want(i)) {
                        b.corrupt += 1;
                        b.problems.push(e);
                    }
                }
                other => {
                    b.corrupt += 1;
                    b.problems.push(format!(
                        "get({}) returned message {other:?}, not {}",
                        r.phys, r.i
                    ));
                }
            },
            Err(e) if r.phys + r.size <= prefix => {
                b.prefix_lost += 1;
                if b.problems.len() < 5 {
                    b.problems.push(format!(
                        "record {} at {} (before {prefix}) lost: {e}",
                        r.i, r.phys
                    ));
                }
            }
            Err(_) => {}
        }
    }
    let _ = store.scan(store.min_offset(), &mut |m| match m {
        Ok(m) => {
            match number_of(m).map(|i| same_as_put(m, &want(i))) {
                Some(Ok(())) => {}
                other => {
                    b.corrupt += 1;
                    b.problems
                        .push(format!("scan at {}: {other:?}", m.phys_offset));
                }
            }
            true
        }
        Err(_) => false,
    });
    let _ = store.wait_dispatched(store.offsets().committed, Duration::from_secs(5));
    for q in store.queues() {
        let mut from = q.min_offset;
        while from < q.max_offset {
            let Ok(msgs) = store.get_from_queue(&q.topic, q.queue_id, from, 64) else {
                break;
            };
            if msgs.is_empty() {
                break;
            }
            for (k, m) in msgs.iter().enumerate() {
                let ok = m.topic == q.topic
                    && m.queue_id == q.queue_id
                    && m.queue_offset == from + k as u64
                    && number_of(m).is_some_and(|i| same_as_put(m, &want(i)).is_ok());
                if !ok {
                    b.corrupt += 1;
                    b.problems.push(format!(
                        "queue {}/{}@{}: wrong message",
                        q.topic, q.queue_id, from
                    ));
                }
            }
            from += msgs.len() as u64;
        }
    }
    for r in base.records.iter().step_by(23) {
        let m = want(r.i);
        if let Ok(hits) = store.query_by_key(&m.topic, &format!("key-{}", r.i), 0, i64::MAX) {
            for h in hits {
                if number_of(&h) != Some(r.i) || same_as_put(&h, &m).is_err() {
                    b.corrupt += 1;
                    b.problems
                        .push(format!("key-{} returned another message", r.i));
                }
            }
        }
    }
}

/// Opens the case on `env` at `dir`, checks it, puts one message, restarts
/// and checks the put survived.
fn exercise(env: Arc<dyn Env>, dir: &Path, cfg: &StoreConfig, base: &Base, c: &Case) -> Broke {
    let mut b = Broke::default();
    let store = match Store::open_with_env(env.clone(), dir, cfg.clone()) {
        Ok(s) => s,
        Err(e) => {
            b.refused = true;
            if e.to_string().trim().is_empty() {
                b.problems.push("open refused with an empty error".into());
            }
            return b;
        }
    };
    check_store(&store, base, c.prefix, &mut b);
    let probe = small_message(1_000_000);
    let r = store.put(&probe);
    let acked = (r.status == PutStatus::PutOk).then(|| r.offsets.unwrap().phys_offset);
    let shut = store.shutdown();
    if let Some(phys) = acked {
        if let Err(e) = shut {
            b.problems.push(format!("shutdown after an acked put: {e}"));
        }
        match Store::open_with_env(env, dir, cfg.clone()) {
            Ok(s) => match s.get(phys) {
                Ok(m) if same_as_put(&m, &probe).is_ok() => {}
                other => {
                    b.acked_lost += 1;
                    b.problems.push(format!(
                        "acked put at {phys} after restart: {:?}",
                        other.err()
                    ));
                }
            },
            Err(e) => {
                b.acked_lost += 1;
                b.problems.push(format!("reopen after an acked put: {e}"));
            }
        }
    }
    b
}

fn on_sim(base: &Base, c: &Case) -> Broke {
    let root = PathBuf::from("/hostile/store");
    let sim = SimEnv::with_faults(FaultPlan::default());
    for (rel, bytes) in &c.files {
        let path = root.join(rel);
        sim.create_dir_all(path.parent().unwrap()).unwrap();
        let f = sim
            .open(
                &path,
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
    let mut cfg = config(BackendKind::Pwrite);
    cfg.backend = base.backend;
    exercise(Arc::new(sim), &root, &cfg, base, c)
}

fn write_case(dir: &Path, files: &Files) {
    for (rel, bytes) in files {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
    std::fs::create_dir_all(dir.join("commitlog")).unwrap();
}

fn on_real_fs(base: &Base, c: &Case) -> Broke {
    let tmp = tempfile::tempdir().unwrap();
    write_case(tmp.path(), &c.files);
    let cfg = config(base.backend);
    let env = base.backend.env().unwrap();
    exercise(env, tmp.path(), &cfg, base, c)
}

/// Runs `f` in a thread; None on a hang.
fn with_deadline<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<std::thread::Result<T>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(catch_unwind(AssertUnwindSafe(f)));
    });
    rx.recv_timeout(DEADLINE).ok()
}

/// Runs `mqlab <args>` with a deadline: Ok(()) for a report (exit 0 or
/// 1 with output), Err((hang, panic, what)) otherwise.
fn run_cli(bin: &str, args: &[&str]) -> Result<(), (bool, bool, String)> {
    let mut child = Command::new(bin)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| (false, false, format!("spawn {bin}: {e}")))?;
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            let (stdout, stderr) = (
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
            );
            use std::os::unix::process::ExitStatusExt;
            return match (status.code(), status.signal()) {
                (Some(0), _) | (Some(1), _)
                    if !stdout.trim().is_empty() || stderr.contains("Error") =>
                {
                    Ok(())
                }
                (Some(101), _) => Err((false, true, format!("panicked: {stderr}"))),
                (_, Some(sig)) => Err((false, true, format!("killed by signal {sig}"))),
                (code, _) => Err((
                    false,
                    false,
                    format!("exit {code:?} without a report: {stderr}"),
                )),
            };
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            return Err((true, false, format!("no answer within {DEADLINE:?}")));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn case(seed: u64, t: &mut Totals, cli: Option<(&str, u64)>, verbose: bool) {
    let all = bases();
    let idx = (seed % all.len() as u64) as usize;
    let base = &all[idx];
    let c = Arc::new(generate(seed, base));
    if verbose {
        eprintln!(
            "seed {seed} on {}: {:?}, prefix {}",
            base.name, c.what, c.prefix
        );
    }
    t.cases += 1;
    *t.by_base.entry(base.name.to_string()).or_default() += 1;
    let label = format!("seed {seed} on {}: {}", base.name, c.what.join("; "));
    let mut results = Vec::new();
    let panics_before = store_thread_panics();
    let cc = c.clone();
    results.push(("sim", with_deadline(move || on_sim(&bases()[idx], &cc))));
    if seed.is_multiple_of(5) {
        t.real_fs_opens += 1;
        let cc = c.clone();
        results.push((
            "real fs",
            with_deadline(move || on_real_fs(&bases()[idx], &cc)),
        ));
    }
    let thread_panics = store_thread_panics() - panics_before;
    if thread_panics > 0 {
        t.panics += thread_panics as u64;
        t.failures.push(format!("{label}: a store thread panicked"));
    }
    for (where_, r) in results {
        match r {
            None => {
                t.hangs += 1;
                t.failures.push(format!("{label} ({where_}): hang"));
            }
            Some(Err(_)) => {
                t.panics += 1;
                t.failures.push(format!("{label} ({where_}): panicked"));
            }
            Some(Ok(b)) => {
                if where_ == "sim" {
                    if b.refused {
                        t.refused_with_error += 1;
                    } else {
                        t.opened += 1;
                    }
                }
                t.prefix_lost += b.prefix_lost;
                t.corrupt_reads += b.corrupt;
                t.acked_lost_after_restart += b.acked_lost;
                if !b.problems.is_empty() {
                    t.failures
                        .push(format!("{label} ({where_}): {}", b.problems.join(" | ")));
                }
            }
        }
    }
    if let Some((bin, every)) = cli {
        if every > 0 && seed.is_multiple_of(every) {
            let tmp = tempfile::tempdir().unwrap();
            write_case(tmp.path(), &c.files);
            let d = tmp.path().to_str().unwrap();
            for args in [
                vec!["verify", "--data-dir", d, "--json"],
                vec!["inspect", "--data-dir", d, "--json"],
            ] {
                t.cli_runs += 1;
                if let Err((hang, panic, what)) = run_cli(bin, &args) {
                    if hang {
                        t.cli_hangs += 1;
                    } else if panic {
                        t.cli_panics += 1;
                    } else {
                        t.cli_unclear += 1;
                    }
                    t.failures
                        .push(format!("{label}: mqlab {}: {what}", args[0]));
                }
            }
        }
    }
}

fn replay_hint(seed: u64) -> String {
    format!("MQLAB_REL_HOSTILE_SEED={seed} cargo test -p mqlab-engine --test reliability_hostile -- --nocapture")
}

#[test]
fn hostile_directories() {
    let bin = std::env::var("MQLAB_BIN").ok();
    let every = env_u64("MQLAB_REL_HOSTILE_CLI_EVERY").unwrap_or(10);
    let cli = bin.as_deref().map(|b| (b, every));
    if cli.is_none() {
        eprintln!("hostile: MQLAB_BIN not set: mqlab verify/inspect runs skipped");
    }
    let mut t = Totals {
        suite: "hostile",
        ..Totals::default()
    };
    if let Some(seed) = env_u64("MQLAB_REL_HOSTILE_SEED") {
        case(seed, &mut t, cli, true);
    } else {
        let n = env_u64("MQLAB_REL_HOSTILE_CASES").unwrap_or(40);
        let first = env_u64("MQLAB_REL_HOSTILE_BASE").unwrap_or(0);
        for seed in first..first + n {
            let before = t.failures.len();
            case(seed, &mut t, cli, false);
            if t.failures.len() > before {
                t.failures.push(format!("  replay: {}", replay_hint(seed)));
            }
        }
    }
    eprintln!("RELIABILITY {}", serde_json::to_string(&t).unwrap());
    assert!(t.failures.is_empty(), "{:#?}", t.failures);
}
