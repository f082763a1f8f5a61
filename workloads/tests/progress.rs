//! `mqlab verify` and `mqlab inspect` show their phases on stderr when it
//! is a terminal, and nothing extra when it is not: the report on stdout
//! is the same either way.

mod common;

use std::path::Path;
use std::process::Command;

/// A small store left by an unclean run (`--no-shutdown`) with its ack log.
fn store(cwd: &Path) {
    let flags = [
        "--flush",
        "group",
        "--producers",
        "2",
        "--messages",
        "300",
        "--msg-size",
        "200",
        "--no-shutdown",
    ];
    common::run_with_acks(cwd, &flags, "data", "acks.csv", "out");
}

/// Runs `mqlab args` in `cwd` on a pseudo-terminal (util-linux `script`),
/// returning what the terminal showed; None when `script` is missing.
fn on_a_terminal(cwd: &Path, args: &[&str]) -> Option<String> {
    let cmd = std::iter::once(env!("CARGO_BIN_EXE_mqlab"))
        .chain(args.iter().copied())
        .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
        .collect::<Vec<_>>()
        .join(" ");
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .current_dir(cwd)
        .env("TERM", "xterm")
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "{cmd} on a terminal failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn verify_and_inspect_show_their_phases_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    store(cwd);
    let Some(shown) = on_a_terminal(
        cwd,
        &["verify", "--data-dir", "data", "--acked", "acks.csv"],
    ) else {
        eprintln!("skipped: util-linux `script` is not installed");
        return;
    };
    for phase in [
        "mqlab verify: raw scan of the commit log",
        "mqlab verify: recovery (in memory)",
        "mqlab verify: store scan",
        "mqlab verify: ack checks",
    ] {
        assert!(shown.contains(phase), "no {phase:?} in:\n{shown}");
    }
    assert!(
        shown.contains("corruption: none"),
        "the report too:\n{shown}"
    );
    let shown = on_a_terminal(cwd, &["inspect", "--data-dir", "data"]).unwrap();
    for phase in [
        "mqlab inspect: raw scan of the commit log",
        "mqlab inspect: recovery (in memory)",
    ] {
        assert!(shown.contains(phase), "no {phase:?} in:\n{shown}");
    }
}

#[test]
fn without_a_terminal_only_the_report_is_printed() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    store(cwd);
    for args in [
        &["verify", "--data-dir", "data", "--acked", "acks.csv"][..],
        &["inspect", "--data-dir", "data"][..],
    ] {
        let out = common::mqlab(cwd, args);
        assert!(out.status.success(), "{args:?}");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        for text in [&stdout, &stderr] {
            assert!(!text.contains('\u{1b}'), "escape codes: {text}");
            assert!(!text.contains("mqlab verify:"), "{text}");
            assert!(!text.contains("mqlab inspect:"), "{text}");
        }
    }
}
