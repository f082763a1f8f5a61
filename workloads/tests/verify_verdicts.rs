//! `verify` and `inspect` fail when they should (issue 11, items 2 and 3):
//! a directory that is not a store, a missing one, recovery cutting data
//! below the last flushed offset, and an ack-log failure that the summary
//! must not contradict.

mod common;

use std::fs;
use std::path::Path;

fn run(cwd: &Path, args: &[&str]) -> (Option<i32>, String) {
    let o = common::mqlab(cwd, args);
    (
        o.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

#[test]
fn not_a_store_fails_and_names_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    fs::create_dir(cwd.join("empty")).unwrap();
    fs::write(cwd.join("plain-file"), b"x").unwrap();
    for target in ["empty", "plain-file", "does-not-exist"] {
        for cmd in ["verify", "inspect"] {
            let (code, out) = run(cwd, &[cmd, "--data-dir", target]);
            assert_ne!(code, Some(0), "{cmd} {target}: {out}");
            assert!(out.contains(target), "{cmd} {target}: {out}");
            assert!(!out.contains("OK\n"), "{cmd} {target}: {out}");
            assert!(!out.contains("shutdown: clean"), "{cmd} {target}: {out}");
        }
    }
    // Nothing was created in the empty directory.
    assert_eq!(fs::read_dir(cwd.join("empty")).unwrap().count(), 0);
}

#[test]
fn inspect_exits_non_zero_when_recovery_fails() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    common::small_run(cwd, "data", "acks.csv", "r");
    let (code, out) = run(cwd, &["inspect", "--data-dir", "data"]);
    assert_eq!(code, Some(0), "{out}");
    // An index directory that is a file: recovery cannot list it.
    fs::remove_dir_all(cwd.join("data/index")).unwrap();
    fs::write(cwd.join("data/index"), b"not a directory").unwrap();
    let (code, out) = run(cwd, &["inspect", "--data-dir", "data"]);
    assert!(out.contains("recovery FAILED"), "{out}");
    assert_ne!(code, Some(0), "{out}");
}

#[test]
fn a_cut_below_the_flushed_offset_fails_verify() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    common::small_run(cwd, "data", "acks.csv", "r");
    let ok = common::mqlab_ok(cwd, &["verify", "--data-dir", "data"]);
    assert!(ok.contains("OK"), "{ok}");
    // Damage the last record of a cleanly shut down store (flushed up to
    // its end), then pretend the process crashed: the raw scan sees a torn
    // last record, recovery would cut durable data.
    let mut segs: Vec<_> = fs::read_dir(cwd.join("data/commitlog"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segs.sort();
    let seg = segs.pop().expect("a segment");
    let mut bytes = fs::read(&seg).unwrap();
    let last = bytes.iter().rposition(|b| *b != 0).unwrap();
    for b in &mut bytes[last - 40..=last] {
        *b = 0;
    }
    fs::write(&seg, bytes).unwrap();
    fs::write(cwd.join("data/abort"), b"").unwrap();
    let (code, out) = run(cwd, &["verify", "--data-dir", "data"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("flushed offset"), "{out}");
    assert!(!out.contains("corruption: none"), "{out}");
    // With the ack log the lost message is counted, and the summary says so.
    let (code, out) = run(
        cwd,
        &["verify", "--data-dir", "data", "--acked", "acks.csv"],
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("1 missing") || out.contains("1 corrupt"),
        "{out}"
    );
    assert!(out.contains("LOSS:"), "{out}");
    assert!(
        out.contains("acknowledged messages are missing") || out.contains("fail their checksum"),
        "{out}"
    );
    assert!(out.contains("FAILED"), "{out}");
}
