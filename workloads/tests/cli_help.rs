//! Every command has a `--help` that names its options and their defaults.

mod common;

/// Every subcommand.
const SUBCOMMANDS: [&str; 12] = [
    "run",
    "matrix",
    "baseline",
    "crash",
    "verify",
    "inspect",
    "plot",
    "delay",
    "broker",
    "namesrv",
    "controller",
    "ha",
];

#[test]
fn every_command_has_help() {
    let dir = tempfile::tempdir().unwrap();
    let top = common::mqlab_ok(dir.path(), &["--help"]);
    for cmd in SUBCOMMANDS {
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
            "controller",
            &[
                "--listen",
                "--peers",
                "--id",
                "--heartbeat-timeout-ms",
                "--unclean-election",
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
        (
            "ha",
            &[
                "--quick",
                "--seed",
                "--kills",
                "--fault",
                "--failover",
                "default",
            ],
        ),
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

/// The options of a help text, each with its whole (possibly wrapped) text
/// on one line: an option starts at a line indented at most 6 columns
/// whose first non-blank character is `-` (clap's `  -h, --help` and
/// `      --flag`; the deeper `- value:` lines of possible values belong to
/// their option).
fn options(help: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut in_option = false;
    for line in help.lines() {
        let t = line.trim();
        let indent = line.len() - line.trim_start().len();
        if (1..=6).contains(&indent) && t.starts_with('-') {
            out.push(t.to_string());
            in_option = true;
        } else if !line.starts_with(' ') && !t.is_empty() {
            in_option = false;
        } else if in_option {
            let last = out.last_mut().unwrap();
            last.push(' ');
            last.push_str(t);
        }
    }
    out
}

/// The `[default: ...]` notes of one option's text.
fn defaults(option: &str) -> Vec<String> {
    let words = option.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out = Vec::new();
    let mut rest = words.as_str();
    while let Some(i) = rest.find("[default:") {
        let tail = &rest[i..];
        let end = tail.find(']').map_or(tail.len(), |e| e + 1);
        out.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

#[test]
fn no_option_names_its_default_twice() {
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for flag in ["-h", "--help"] {
        let mut helps = vec![("mqlab".to_string(), common::mqlab_ok(dir.path(), &[flag]))];
        for cmd in SUBCOMMANDS {
            helps.push((cmd.to_string(), common::mqlab_ok(dir.path(), &[cmd, flag])));
        }
        for (cmd, help) in &helps {
            let opts = options(help);
            assert!(
                !opts.is_empty(),
                "no options found in `{cmd} {flag}`:\n{help}"
            );
            for opt in opts {
                let d = defaults(&opt);
                checked += d.len();
                for (i, a) in d.iter().enumerate() {
                    assert!(
                        !d[i + 1..].contains(a),
                        "`mqlab {cmd} {flag}` names {a} twice in one option:\n{opt}"
                    );
                }
            }
        }
    }
    assert!(checked > 20, "the parser found only {checked} defaults");
}
