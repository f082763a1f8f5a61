//! The contract of `io::Env` / `io::File`, run against every backend:
//! pwrite, mmap, uring (skipped with a message where the kernel lacks
//! io_uring or it is disabled), sim (the in-memory disk, no faults) and
//! overlay (reads through to a real directory, writes to memory).
//!
//! One function per rule, one `#[test]` per (backend, rule), so a failure
//! names both. Backend-specific behaviour (the uring probe, mmap remapping
//! and preallocation, sim faults, overlay read-through) stays in each
//! backend's own unit tests.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

use mqlab_engine::io::{overlay::OverlayEnv, sim::SimEnv, BackendKind, Env, File, OpenOptions};

/// A backend under test: its environment, a directory to use, and what
/// keeps that directory alive.
struct Case {
    env: Arc<dyn Env>,
    root: PathBuf,
    /// Files written here are on the real disk (another backend reads them).
    real_disk: bool,
    /// Files opened read-only refuse writes. Not the overlay's: it keeps
    /// every write in memory whatever the open mode (it exists so that a
    /// read-only store can run recovery's writes without touching disk).
    refuses_read_only_writes: bool,
    _dir: Option<tempfile::TempDir>,
}

fn real(kind: BackendKind) -> Option<Case> {
    match kind.env() {
        Ok(env) => {
            let dir = tempfile::tempdir().unwrap();
            Some(Case {
                env,
                root: dir.path().to_path_buf(),
                real_disk: true,
                refuses_read_only_writes: true,
                _dir: Some(dir),
            })
        }
        Err(e) => {
            eprintln!("skipping the {} backend: {e}", kind.name());
            None
        }
    }
}

fn case(backend: &str) -> Option<Case> {
    match backend {
        "pwrite" => real(BackendKind::Pwrite),
        "mmap" => real(BackendKind::Mmap),
        "uring" => real(BackendKind::Uring),
        "sim" => Some(Case {
            env: Arc::new(SimEnv::new(7)),
            root: PathBuf::from("/contract"),
            real_disk: false,
            refuses_read_only_writes: true,
            _dir: None,
        }),
        "overlay" => {
            let dir = tempfile::tempdir().unwrap();
            Some(Case {
                env: Arc::new(OverlayEnv::new()),
                root: dir.path().to_path_buf(),
                real_disk: false,
                refuses_read_only_writes: false,
                _dir: Some(dir),
            })
        }
        other => panic!("unknown backend {other}"),
    }
}

fn create(len: u64) -> OpenOptions {
    OpenOptions {
        create: true,
        len,
        ..OpenOptions::default()
    }
}

fn read_vec(f: &dyn File, offset: u64, n: usize) -> Vec<u8> {
    let mut buf = vec![0xAA; n];
    let got = f.read_at(offset, &mut buf).unwrap();
    buf.truncate(got);
    buf
}

fn open_in(c: &Case, name: &str, opts: OpenOptions) -> Arc<dyn File> {
    c.env.create_dir_all(&c.root).unwrap();
    c.env.open(&c.root.join(name), opts).unwrap()
}

fn roundtrip_at_offsets(c: &Case) {
    let f = open_in(c, "seg", create(8192));
    assert_eq!(f.len(), 8192);
    f.write_at(0, b"hello").unwrap();
    f.write_at(4093, b"across a page").unwrap();
    assert_eq!(read_vec(&*f, 0, 5), b"hello");
    assert_eq!(read_vec(&*f, 4093, 13), b"across a page");
    assert_eq!(read_vec(&*f, 5, 3), [0, 0, 0]);
    // An empty write succeeds. (Past the end, mmap and uring leave the
    // length alone while pwrite and sim extend the file; the store never
    // issues one, so the contract leaves it open.)
    f.write_at(100, b"").unwrap();
    assert_eq!(f.len(), 8192);
    // A large write comes back whole.
    let big: Vec<u8> = (0..(3 << 20)).map(|i| (i % 253) as u8).collect();
    f.write_at(1, &big).unwrap();
    assert_eq!(read_vec(&*f, 1, big.len()), big);
}

fn write_past_end_grows(c: &Case) {
    let f = open_in(c, "f", create(0));
    assert!(f.is_empty());
    assert_eq!(read_vec(&*f, 0, 10), b"");
    f.write_at(10, b"abc").unwrap();
    assert_eq!(f.len(), 13);
    assert_eq!(read_vec(&*f, 0, 100), b"\0\0\0\0\0\0\0\0\0\0abc");
    f.write_at(100_000, b"far").unwrap();
    assert_eq!(f.len(), 100_003);
    assert_eq!(read_vec(&*f, 10, 3), b"abc");
    assert_eq!(read_vec(&*f, 100_000, 3), b"far");
}

fn read_past_end_is_short(c: &Case) {
    let f = open_in(c, "f", create(16));
    f.write_at(10, b"123456").unwrap();
    assert_eq!(read_vec(&*f, 10, 100), b"123456");
    assert_eq!(read_vec(&*f, 16, 4), b"");
    assert_eq!(read_vec(&*f, 1 << 40, 4), b"");
}

fn shrink_then_grow_reads_zeros(c: &Case) {
    let f = open_in(c, "f", create(8192));
    f.write_at(0, &[7u8; 8192]).unwrap();
    f.set_len(100).unwrap();
    assert_eq!(f.len(), 100);
    assert_eq!(read_vec(&*f, 0, 8192), vec![7u8; 100]);
    f.set_len(8192).unwrap();
    let mut want = vec![0u8; 8192];
    want[..100].fill(7);
    assert_eq!(read_vec(&*f, 0, 8192), want);
    f.set_len(0).unwrap();
    assert_eq!(read_vec(&*f, 0, 8), b"");
    f.set_len(4096).unwrap();
    assert_eq!(read_vec(&*f, 0, 4096), vec![0u8; 4096]);
}

fn sync_data_ok(c: &Case) {
    let empty = open_in(c, "empty", create(0));
    empty.sync_data().unwrap();
    let f = open_in(c, "f", create(4096));
    f.write_at(1, b"x").unwrap();
    f.sync_data().unwrap();
    f.set_len(10_000).unwrap();
    f.sync_data().unwrap();
    f.sync_data().unwrap();
    assert_eq!(read_vec(&*f, 1, 1), b"x");
}

fn write_and_sync(c: &Case) {
    let f = open_in(c, "f", create(4096));
    f.write_at_and_sync(100, b"linked write").unwrap();
    assert_eq!(read_vec(&*f, 100, 12), b"linked write");
    // Past the end: the length follows.
    f.write_at_and_sync(4090, b"0123456789").unwrap();
    assert_eq!(f.len(), 4100);
    assert_eq!(read_vec(&*f, 4090, 10), b"0123456789");
}

fn read_only_rejects_writes(c: &Case) {
    let path = c.root.join("f");
    open_in(c, "f", create(64)).write_at(0, b"data").unwrap();
    let ro = OpenOptions::read_only();
    let f = c.env.open(&path, ro).unwrap();
    assert_eq!(read_vec(&*f, 0, 4), b"data");
    if c.refuses_read_only_writes {
        assert!(f.write_at(0, b"nope").is_err());
        assert!(f.set_len(0).is_err());
        assert!(f.write_at_and_sync(0, b"x").is_err());
        assert_eq!(f.len(), 64);
        assert_eq!(read_vec(&*f, 0, 4), b"data");
    }
    // A read-only open never creates the file.
    assert!(c.env.open(&c.root.join("missing"), ro).is_err());
    assert!(!c.env.exists(&c.root.join("missing")));
}

fn reopen_sees_data(c: &Case) {
    let path = c.root.join("f");
    {
        let f = open_in(c, "f", create(4096));
        f.write_at(123, b"persisted").unwrap();
        f.sync_data().unwrap();
    }
    let f = c.env.open(&path, OpenOptions::default()).unwrap();
    assert_eq!(f.len(), 4096);
    assert_eq!(read_vec(&*f, 123, 9), b"persisted");
    if c.real_disk {
        // Every real backend writes the same file: pwrite reads it.
        let p = BackendKind::Pwrite
            .env()
            .unwrap()
            .open(&path, OpenOptions::default())
            .unwrap();
        assert_eq!(read_vec(&*p, 123, 9), b"persisted");
    }
}

/// One writer appends past the end and publishes its position (syncing now
/// and then); readers check every published record meanwhile.
fn concurrent_readers_with_writer(c: &Case) {
    const RECORD: usize = 64;
    const RECORDS: u64 = 500;
    let f = open_in(c, "f", create(0));
    let published = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let record = |i: u64| [(i % 251) as u8; RECORD];
    thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                let mut buf = [0u8; RECORD];
                let mut checked = 0u64;
                loop {
                    let finished = done.load(Ordering::Acquire);
                    let n = published.load(Ordering::Acquire);
                    for i in (0..n).rev().take(8) {
                        let got = f.read_at(i * RECORD as u64, &mut buf).unwrap();
                        assert_eq!(got, RECORD);
                        assert_eq!(buf, record(i), "record {i}");
                        checked += 1;
                    }
                    if finished {
                        break;
                    }
                }
                assert!(checked > 0);
            });
        }
        for i in 0..RECORDS {
            f.write_at(i * RECORD as u64, &record(i)).unwrap();
            published.store(i + 1, Ordering::Release);
            if i % 100 == 99 {
                f.sync_data().unwrap();
            }
        }
        done.store(true, Ordering::Release);
    });
    assert_eq!(f.len(), RECORDS * RECORD as u64);
}

fn env_directory_ops(c: &Case) {
    let env = &c.env;
    let sub = c.root.join("a/b");
    assert!(env.list_dir(&sub).unwrap().is_empty());
    env.create_dir_all(&sub).unwrap();
    assert!(env.is_dir(&sub));
    env.open(&sub.join("2"), create(1)).unwrap();
    env.open(&sub.join("1"), create(0)).unwrap();
    let mut names = env.list_dir(&sub).unwrap();
    names.sort();
    assert_eq!(names, ["1", "2"]);
    env.sync_dir(&sub).unwrap();
    env.remove_file(&sub.join("1")).unwrap();
    assert!(!env.exists(&sub.join("1")));
    assert_eq!(env.list_dir(&sub).unwrap(), ["2"]);
}

fn next_data_never_skips_data(c: &Case) {
    let f = open_in(c, "sparse", create(1 << 20));
    f.write_at(700_000, b"data").unwrap();
    // Backends may report holes or not; data is never skipped.
    match f.next_data(0).unwrap() {
        Some(at) => assert!(at <= 700_000, "next_data skipped data: {at}"),
        None => panic!("next_data found nothing before written data"),
    }
    assert!(f
        .next_data(700_000)
        .unwrap()
        .is_some_and(|at| at <= 700_000));
}

fn name_is_set(c: &Case) {
    assert!(!c.env.name().is_empty());
}

fn run(backend: &str, rule: fn(&Case)) {
    if let Some(c) = case(backend) {
        rule(&c);
    }
}

macro_rules! contract {
    ($($rule:ident),* $(,)?) => {
        mod pwrite { $( #[test] fn $rule() { super::run("pwrite", super::$rule) } )* }
        mod mmap { $( #[test] fn $rule() { super::run("mmap", super::$rule) } )* }
        mod uring { $( #[test] fn $rule() { super::run("uring", super::$rule) } )* }
        mod sim { $( #[test] fn $rule() { super::run("sim", super::$rule) } )* }
        mod overlay { $( #[test] fn $rule() { super::run("overlay", super::$rule) } )* }
    };
}

contract!(
    roundtrip_at_offsets,
    write_past_end_grows,
    read_past_end_is_short,
    shrink_then_grow_reads_zeros,
    sync_data_ok,
    write_and_sync,
    read_only_rejects_writes,
    reopen_sees_data,
    concurrent_readers_with_writer,
    env_directory_ops,
    next_data_never_skips_data,
    name_is_set,
);
