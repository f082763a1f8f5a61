//! `mqlab run` rejects what the store would refuse before anything runs
//! (message sizes over the store's maximum, illegal topics, the same in a
//! spec), and a run that acknowledged nothing exits non-zero.

mod common;

use std::path::Path;
use std::process::Output;

use mqlab_engine::StoreConfig;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts `out` failed and left no results folder behind in `cwd`.
fn failed_cleanly(cwd: &Path, out: &Output) -> String {
    let err = stderr(out);
    assert!(
        !out.status.success(),
        "expected a failure:\nstdout:\n{}\nstderr:\n{err}",
        String::from_utf8_lossy(&out.stdout)
    );
    let left: Vec<_> = std::fs::read_dir(cwd)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "spec.toml")
        .collect();
    assert!(left.is_empty(), "a failed run left {left:?}\n{err}");
    err
}

const QUICK: &[&str] = &[
    "run",
    "--no-baseline",
    "--producers",
    "1",
    "--duration",
    "0.3",
    "--warmup",
    "0",
];

fn run(cwd: &Path, extra: &[&str]) -> Output {
    let args: Vec<&str> = QUICK.iter().chain(extra).copied().collect();
    common::mqlab(cwd, &args)
}

#[test]
fn message_sizes_over_the_store_maximum_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let max = StoreConfig::default().max_message_bytes;
    let over = (max + 1).to_string();
    let err = failed_cleanly(dir.path(), &run(dir.path(), &["--msg-size", &over]));
    assert!(
        err.contains("--msg-size") && err.contains(&max.to_string()),
        "{err}"
    );
    assert!(!err.contains("MESSAGE_ILLEGAL"), "{err}");

    let small = StoreConfig::small().max_message_bytes;
    let over = (small + 1).to_string();
    let err = failed_cleanly(
        dir.path(),
        &run(dir.path(), &["--small-files", "--msg-size", &over]),
    );
    assert!(err.contains(&small.to_string()), "{err}");
}

#[test]
fn illegal_topics_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    for topic in ["a/b", "with space", ""] {
        let err = failed_cleanly(dir.path(), &run(dir.path(), &["--topic", topic]));
        assert!(err.contains("topic"), "{topic:?}: {err}");
    }
}

#[test]
fn specs_are_validated_the_same_way() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.toml");
    let max = StoreConfig::default().max_message_bytes;
    for (body, word) in [
        (format!("msg_size = {}\n", max as u64 + 1), "--msg-size"),
        ("topic = \"no/slashes\"\n".to_string(), "topic"),
    ] {
        std::fs::write(&spec, body).unwrap();
        let err = failed_cleanly(
            dir.path(),
            &run(dir.path(), &["--spec", spec.to_str().unwrap()]),
        );
        assert!(err.contains(word), "{err}");
        assert!(err.contains("spec.toml"), "names the spec: {err}");
    }
}

#[test]
fn a_run_that_acknowledges_nothing_fails() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["--small-files", "--messages", "0"]);
    let err = failed_cleanly(dir.path(), &out);
    assert!(err.contains("no message was acknowledged"), "{err}");
}

#[test]
fn crash_rejects_messages_its_store_would_refuse() {
    let dir = tempfile::tempdir().unwrap();
    // `crash` runs on the small geometry of the simulated disk.
    let max = StoreConfig::small().max_message_bytes;
    let over = (max + 1).to_string();
    let out = common::mqlab(
        dir.path(),
        &[
            "crash",
            "--crashes",
            "1",
            "--max-ms",
            "60",
            "--msg-size",
            &over,
        ],
    );
    let err = failed_cleanly(dir.path(), &out);
    assert!(
        err.contains("--msg-size") && err.contains(&max.to_string()),
        "{err}"
    );
}
