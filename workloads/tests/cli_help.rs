//! Every command has a `--help` that names its options and their defaults.

mod common;

#[test]
fn every_command_has_help() {
    let dir = tempfile::tempdir().unwrap();
    let top = common::mqlab_ok(dir.path(), &["--help"]);
    for cmd in [
        "run", "matrix", "baseline", "crash", "verify", "inspect", "plot",
    ] {
        assert!(top.contains(cmd), "top-level help lacks {cmd}:\n{top}");
    }
    let expect: &[(&str, &[&str])] = &[
        (
            "run",
            &[
                "--spec",
                "--flush",
                "--backend",
                "--producers",
                "--inflight",
                "--msg-size",
                "--rate",
                "--duration",
                "--messages",
                "--warmup",
                "--queues",
                "--data-dir",
                "--out",
                "--ack-log",
                "--keys",
                "default",
            ],
        ),
        (
            "matrix",
            &[
                "--quick",
                "--flush",
                "--backend",
                "--intervals",
                "--out",
                "default",
            ],
        ),
        ("baseline", &["--data-dir", "--batch-sizes", "default"]),
        (
            "crash",
            &[
                "--crashes",
                "--seed",
                "--flush",
                "--mode",
                "--torn",
                "default",
            ],
        ),
        ("verify", &["--data-dir", "--acked", "--json"]),
        ("inspect", &["--data-dir", "--json"]),
        ("plot", &["--out", "IN"]),
    ];
    for (cmd, words) in expect {
        let help = common::mqlab_ok(dir.path(), &[cmd, "--help"]);
        for w in *words {
            assert!(help.contains(w), "`mqlab {cmd} --help` lacks {w}:\n{help}");
        }
    }
}

#[test]
fn bad_options_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let out = common::mqlab(dir.path(), &["run", "--flush", "sometimes"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("sync, group, async or pool"));
}
