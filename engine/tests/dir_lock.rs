//! One writer per store directory (issue 11, item 1): a second writable
//! open, in this process or another, is refused with the directory and the
//! holder's pid; a read-only open beside a writer works and warns; a lock
//! file left by a SIGKILLed writer does not block the next open.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mqlab_engine::config::StoreConfig;
use mqlab_engine::error::Error;
use mqlab_engine::flush::FlushKind;
use mqlab_engine::message::Message;
use mqlab_engine::store::Store;

/// One test at a time: a child process spawned by one test holds a copy of
/// every descriptor of this process (flock included) between its fork and
/// its exec, so a lock another test just released could still look held.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn cfg() -> StoreConfig {
    let mut c = StoreConfig::small();
    c.flush.kind = FlushKind::Sync;
    c
}

fn read_only() -> StoreConfig {
    StoreConfig {
        read_only: true,
        ..cfg()
    }
}

/// Runs this test binary's `child` test in another process with `mode`.
fn spawn_child(dir: &Path, mode: &str) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env("MQLAB_LOCK_CHILD_DIR", dir)
        .env("MQLAB_LOCK_CHILD_MODE", mode);
    c
}

/// The other process's side: does nothing unless started by [`child`].
#[test]
fn child() {
    let (Ok(dir), Ok(mode)) = (
        std::env::var("MQLAB_LOCK_CHILD_DIR"),
        std::env::var("MQLAB_LOCK_CHILD_MODE"),
    ) else {
        return;
    };
    match mode.as_str() {
        "write" => match Store::open(&dir, cfg()) {
            Ok(_) => println!("CHILD OPENED"),
            Err(e) => println!("CHILD REFUSED: {e}"),
        },
        "read" => match Store::open(&dir, read_only()) {
            Ok(s) => println!("CHILD OPENED warning={:?}", s.lock_warning()),
            Err(e) => println!("CHILD REFUSED: {e}"),
        },
        "hold" => {
            let store = Store::open(&dir, cfg()).unwrap();
            assert!(store
                .put(&Message::new("LockTopic", b"acked".to_vec()))
                .is_ok());
            println!("CHILD READY");
            std::thread::sleep(Duration::from_secs(60));
        }
        other => panic!("unknown mode {other}"),
    }
}

fn stdout_of(mut c: Command) -> String {
    let out = c.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn a_second_writer_in_this_process_is_refused() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let first = Store::open(dir.path(), cfg()).unwrap();
    let err = Store::open(dir.path(), cfg()).unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains(&dir.path().display().to_string()), "{text}");
    assert!(
        text.contains(&format!("pid {}", std::process::id())),
        "{text}"
    );
    first.shutdown().unwrap();
    Store::open(dir.path(), cfg()).unwrap().shutdown().unwrap();
}

#[test]
fn a_second_writer_in_another_process_is_refused_with_the_pid() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let first = Store::open(dir.path(), cfg()).unwrap();
    let out = stdout_of(spawn_child(dir.path(), "write"));
    assert!(out.contains("CHILD REFUSED"), "{out}");
    assert!(out.contains(&dir.path().display().to_string()), "{out}");
    assert!(
        out.contains(&format!("pid {}", std::process::id())),
        "{out}"
    );
    first.shutdown().unwrap();
    let out = stdout_of(spawn_child(dir.path(), "write"));
    assert!(out.contains("CHILD OPENED"), "{out}");
}

#[test]
fn a_read_only_open_beside_a_writer_works_and_warns() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let writer = Store::open(dir.path(), cfg()).unwrap();
    assert!(writer
        .put(&Message::new("LockTopic", b"x".to_vec()))
        .is_ok());
    let out = stdout_of(spawn_child(dir.path(), "read"));
    assert!(out.contains("CHILD OPENED warning=Some"), "{out}");
    assert!(out.contains("is active on"), "{out}");
    writer.shutdown().unwrap();
    // No writer: the reader holds a shared lock and no writer starts under it.
    let reader = Store::open(dir.path(), read_only()).unwrap();
    assert_eq!(reader.lock_warning(), None);
    let out = stdout_of(spawn_child(dir.path(), "write"));
    assert!(out.contains("CHILD REFUSED"), "{out}");
    assert!(out.contains("read-only open"), "{out}");
    drop(reader);
    let out = stdout_of(spawn_child(dir.path(), "write"));
    assert!(out.contains("CHILD OPENED"), "{out}");
}

#[test]
fn a_read_only_open_creates_no_lock_file() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let err = Store::open(dir.path().join("absent"), read_only()).unwrap_err();
    assert!(err.to_string().contains("absent"), "{err}");
    std::fs::create_dir(dir.path().join("empty")).unwrap();
    let _ = Store::open(dir.path().join("empty"), read_only());
    assert!(!dir.path().join("empty").join("lock").exists());
}

#[test]
fn a_lock_left_by_a_killed_writer_does_not_block() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut c = spawn_child(dir.path(), "hold");
    let mut proc = c.stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(proc.stdout.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let line = lines.next().expect("child ended before READY").unwrap();
        if line.contains("CHILD READY") {
            break;
        }
        assert!(Instant::now() < deadline, "child never became ready");
    }
    // Held by the live child.
    assert!(matches!(
        Store::open(dir.path(), cfg()),
        Err(Error::Locked { .. })
    ));
    proc.kill().unwrap(); // SIGKILL
    proc.wait().unwrap();
    assert!(dir.path().join("lock").exists());
    let store = Store::open(dir.path(), cfg()).unwrap();
    assert_eq!(store.get(0).unwrap().body, b"acked");
    store.shutdown().unwrap();
}
