//! Every I/O error the CLI prints names the operation and the path, on one
//! line ("create data dir /x/y: File exists (os error 17)").

mod common;

use std::path::Path;

use common::fails;

/// The error line: names `path` and `operation`, then the OS error.
fn assert_names(err: &str, operation: &str, path: &str, os: &str) {
    let line = err
        .lines()
        .find(|l| l.starts_with("Error:"))
        .unwrap_or_else(|| panic!("no error line in:\n{err}"));
    assert!(
        line.contains(&format!("{operation} {path}: ")),
        "error does not say `{operation} {path}`: {line}"
    );
    assert!(line.contains(os), "error lacks the OS error {os:?}: {line}");
}

fn run_with(cwd: &Path, extra: &[&str]) -> String {
    fails(cwd, &common::tiny_run("50", extra))
}

fn quick_matrix_with(cwd: &Path, extra: &[&str]) -> String {
    let quick = ["matrix", "--quick", "--no-baseline", "--no-plot"];
    let args: Vec<&str> = quick.iter().chain(extra).copied().collect();
    fails(cwd, &args)
}

#[test]
fn data_dir_that_is_a_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), "x").unwrap();
    let err = run_with(dir.path(), &["--data-dir", "f"]);
    assert_names(&err, "create data dir", "f", "File exists");
    let err = fails(
        dir.path(),
        &[
            "baseline",
            "--data-dir",
            "f",
            "--batch-sizes",
            "4096",
            "--secs-per-size",
            "0.01",
            "--buffered-secs",
            "0.01",
        ],
    );
    assert_names(&err, "create data dir", "f", "File exists");
    let err = quick_matrix_with(dir.path(), &["--data-dir", "f"]);
    assert_names(&err, "create data dir", "f", "File exists");
}

#[test]
fn paths_that_cannot_exist() {
    let dir = tempfile::tempdir().unwrap();
    // A directory that does not exist and cannot be created.
    let nowhere = "/proc/mqlab-no-such-dir";
    let err = run_with(dir.path(), &["--data-dir", nowhere]);
    assert_names(
        &err,
        "create data dir",
        nowhere,
        "No such file or directory",
    );
    let acks = format!("{nowhere}/acks.csv");
    let err = run_with(dir.path(), &["--ack-log", &acks]);
    assert_names(&err, "create ack log", &acks, "No such file or directory");
    let err = run_with(dir.path(), &["--out", nowhere]);
    assert_names(
        &err,
        "create output folder",
        nowhere,
        "No such file or directory",
    );
    let spec = format!("{nowhere}/x.toml");
    let err = run_with(dir.path(), &["--spec", &spec]);
    assert_names(&err, "read spec", &spec, "No such file or directory");
}

#[test]
fn output_folder_that_is_a_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), "x").unwrap();
    let err = run_with(dir.path(), &["--out", "f"]);
    assert_names(&err, "create output folder", "f", "File exists");
    let err = fails(dir.path(), &["crash", "--crashes", "1", "--out", "f"]);
    assert_names(&err, "create output folder", "f", "File exists");
    let err = quick_matrix_with(dir.path(), &["--out", "f"]);
    assert_names(&err, "create output folder", "f", "File exists");
}
