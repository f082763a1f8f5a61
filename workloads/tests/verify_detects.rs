//! `verify` passes on an intact store and fails on a tampered one and on an
//! ack log naming a message the store does not have; `inspect` never
//! modifies the directory.

mod common;

use std::fs;
use std::path::Path;

fn dir_snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.display().to_string(), fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn verify_passes_then_detects_tampering_and_missing_acks() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    common::small_run(cwd, "data", "acks.csv", "r");
    let before = dir_snapshot(&cwd.join("data"));
    let out = common::mqlab_ok(
        cwd,
        &["verify", "--data-dir", "data", "--acked", "acks.csv"],
    );
    assert!(out.contains("OK"), "{out}");
    let insp = common::mqlab_ok(cwd, &["inspect", "--data-dir", "data", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&insp).unwrap();
    assert_eq!(v["abort_marker"], false);
    assert!(!v["commit_log"]["segments"].as_array().unwrap().is_empty());
    assert!(!v["queues"].as_array().unwrap().is_empty());
    let text = common::mqlab_ok(cwd, &["inspect", "--data-dir", "data"]);
    assert!(text.contains("recovery would truncate nothing"), "{text}");
    assert_eq!(
        before,
        dir_snapshot(&cwd.join("data")),
        "verify/inspect modified the store"
    );

    // An ack log naming a message that was never stored.
    let acks = fs::read_to_string(cwd.join("acks.csv")).unwrap();
    let mut lines: Vec<&str> = acks.lines().collect();
    let last: Vec<&str> = lines.last().unwrap().split(',').collect();
    let phantom = format!(
        "{},{},{},{},phantom-key",
        last[0],
        last[1],
        999_999,
        1u64 << 40
    );
    lines.push(&phantom);
    fs::write(cwd.join("missing.csv"), lines.join("\n") + "\n").unwrap();
    let o = common::mqlab(
        cwd,
        &["verify", "--data-dir", "data", "--acked", "missing.csv"],
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("1 missing"), "{stdout}");
    assert!(stdout.contains("phantom-key"), "{stdout}");

    // Flip one bit inside a record body in the middle of the first segment.
    let seg = cwd.join("data/commitlog/00000000000000000000");
    let mut bytes = fs::read(&seg).unwrap();
    bytes[5000] ^= 0x10;
    fs::write(&seg, bytes).unwrap();
    let o = common::mqlab(
        cwd,
        &["verify", "--data-dir", "data", "--acked", "acks.csv"],
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("CORRUPTION"), "{stdout}");
    assert!(stdout.contains("CRC"), "{stdout}");
    // Without an ack log too.
    let o = common::mqlab(cwd, &["verify", "--data-dir", "data", "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], false);
}

#[test]
fn verify_accepts_an_unclean_store_with_every_ack() {
    // --no-shutdown leaves the abort marker, like a killed process.
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let flags = [
        "--flush",
        "async",
        "--flush-interval-ms",
        "20",
        "--producers",
        "2",
        "--duration",
        "0.3",
        "--warmup",
        "0",
        "--no-shutdown",
    ];
    common::run_with_acks(cwd, &flags, "data", "acks.csv", "r");
    assert!(cwd.join("data/abort").exists());
    let out = common::mqlab_ok(
        cwd,
        &["verify", "--data-dir", "data", "--acked", "acks.csv"],
    );
    assert!(out.contains("UNCLEAN") && out.contains("OK"), "{out}");
    assert!(
        cwd.join("data/abort").exists(),
        "verify must not recover in place"
    );
}

fn engine_fixture(name: &str) -> std::path::PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../engine/tests/fixtures")
        .join(name);
    assert!(p.is_dir(), "engine fixture {} is missing", p.display());
    p
}

#[test]
fn verify_reads_a_store_written_by_rocketmq_store() {
    // Written by another implementation (rocketmq-store 1.0.0, 64 KiB
    // segments, no record CRC property): verified, and left untouched.
    let store = engine_fixture("rocketmq-store-1/store");
    let before = dir_snapshot(&store);
    let dir = tempfile::tempdir().unwrap();
    let out = common::mqlab_ok(
        dir.path(),
        &["verify", "--data-dir", store.to_str().unwrap()],
    );
    assert!(
        out.contains("300 by raw scan") && out.contains("OK"),
        "{out}"
    );
    let insp = common::mqlab_ok(
        dir.path(),
        &["inspect", "--data-dir", store.to_str().unwrap(), "--json"],
    );
    let v: serde_json::Value = serde_json::from_str(&insp).unwrap();
    assert_eq!(v["commit_log"]["segments"].as_array().unwrap().len(), 3);
    assert_eq!(before, dir_snapshot(&store));
}

#[test]
fn verify_classifies_the_engine_corruption_fixtures() {
    let dir = tempfile::tempdir().unwrap();
    // A flipped body bit with valid records after it: corrupt.
    let o = common::mqlab(
        dir.path(),
        &[
            "verify",
            "--data-dir",
            engine_fixture("corrupt/body-bitflip").to_str().unwrap(),
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    // The torn-tail fixture's checkpoint says its last record was flushed
    // (the generator tore a cleanly shut down store): recovery would cut
    // durable data, so verify fails and says why.
    let o = common::mqlab(
        dir.path(),
        &[
            "verify",
            "--data-dir",
            engine_fixture("corrupt/torn-tail").to_str().unwrap(),
        ],
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("below the checkpoint's flushed offset"),
        "{out}"
    );
    // The same bytes after a real crash, where the checkpoint had flushed
    // only up to the last segment: a torn tail of unflushed data, not
    // corruption.
    let copy = dir.path().join("torn-tail");
    copy_dir(&engine_fixture("corrupt/torn-tail"), &copy);
    let cp = copy.join("checkpoint");
    let mut b = fs::read(&cp).unwrap();
    for at in [72, 80] {
        b[at..at + 8].copy_from_slice(&73_728u64.to_be_bytes());
    }
    b[88..96].copy_from_slice(&0u64.to_be_bytes());
    fs::write(&cp, b).unwrap();
    let out = common::mqlab_ok(
        dir.path(),
        &["verify", "--data-dir", copy.to_str().unwrap()],
    );
    assert!(out.contains("torn tail"), "{out}");
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.path().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}
