//! Helpers shared by the CLI tests: run the `mqlab` binary, parse JSON.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// Runs `mqlab` with `args` in `cwd`, returning its output.
pub fn mqlab(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mqlab"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("running mqlab")
}

/// Like [`mqlab`], panicking with its output unless it exits 0.
pub fn mqlab_ok(cwd: &Path, args: &[&str]) -> String {
    let out = mqlab(cwd, args);
    assert!(
        out.status.success(),
        "mqlab {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Reads a JSON file.
pub fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A small group-commit run leaving its store in `data` and its ack log in
/// `acks`.
pub fn small_run(cwd: &Path, data: &str, acks: &str, out: &str) {
    mqlab_ok(
        cwd,
        &[
            "run",
            "--flush",
            "group",
            "--producers",
            "2",
            "--duration",
            "0.4",
            "--warmup",
            "0",
            "--msg-size",
            "200",
            "--small-files",
            "--no-baseline",
            "--data-dir",
            data,
            "--ack-log",
            acks,
            "--out",
            out,
        ],
    );
}
