//! `mqlab run` (plain and messaging) fails clearly: a messaging run that
//! acknowledged nothing exits non-zero and removes its folder, and every
//! output file or folder it cannot write is named in the error with the
//! operation.

mod common;

use std::fs;
use std::path::Path;

use common::{error_line, names};

/// The shipped broadcast spec, copied into `cwd`.
fn broadcast_spec(cwd: &Path) -> String {
    let specs = Path::new(env!("CARGO_MANIFEST_DIR")).join("specs");
    fs::copy(specs.join("broadcast.toml"), cwd.join("broadcast.toml")).unwrap();
    "broadcast.toml".to_string()
}

/// The error line of a failing `mqlab run --spec spec` of `secs` seconds
/// into `out`.
fn messaging_run_error(cwd: &Path, spec: &str, secs: &str, out: &str) -> String {
    let args = [
        "run",
        "--spec",
        spec,
        "--duration",
        secs,
        "--small-files",
        "--out",
        out,
    ];
    error_line(cwd, &args)
}

#[test]
fn a_messaging_run_that_acknowledges_nothing_fails() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let spec = broadcast_spec(cwd);
    // Producers that stop before their first send: nothing acknowledged.
    let line = messaging_run_error(cwd, &spec, "0.000000001", "o");
    assert!(
        line.contains("no message was acknowledged") && line.contains("no put completed"),
        "{line}"
    );
    assert!(line.contains("clustering"), "names the variant: {line}");
    // The folder the run created is gone again.
    assert_eq!(names(cwd), ["broadcast.toml"]);
}

#[test]
fn messaging_output_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let spec = broadcast_spec(cwd);
    for file in ["messaging.csv", "e2e_latency.hgrm"] {
        let out = format!("o-{file}");
        // A directory where the file goes.
        fs::create_dir_all(cwd.join(&out).join("clustering").join(file)).unwrap();
        let line = messaging_run_error(cwd, &spec, "0.2", &out);
        let path = format!("{out}/clustering/{file}");
        assert!(line.contains(&format!("write {path}: ")), "{line}");
        assert!(line.contains("Is a directory"), "{line}");
    }
}

#[test]
fn run_output_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    fs::create_dir_all(cwd.join("o/timeseries.csv")).unwrap();
    let line = error_line(cwd, &common::tiny_run("50", &["--out", "o"]));
    assert!(line.contains("write o/timeseries.csv: "), "{line}");
    assert!(line.contains("Is a directory"), "{line}");
}

#[test]
fn ack_log_folder_errors_name_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    fs::write(cwd.join("f"), "x").unwrap();
    let line = error_line(cwd, &common::tiny_run("50", &["--ack-log", "f/acks.csv"]));
    assert!(
        line.contains("create the folder of the ack log f: "),
        "{line}"
    );
    assert!(line.contains("File exists"), "{line}");
}
