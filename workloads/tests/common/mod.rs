//! Helpers shared by the CLI tests: run the `mqlab` binary, read its
//! errors and outputs, name results folders as it does.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

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

/// Runs `mqlab args` in `cwd`, expects a failure and returns stderr.
pub fn fails(cwd: &Path, args: &[&str]) -> String {
    let out = mqlab(cwd, args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "mqlab {args:?} should fail:\nstdout:\n{}\nstderr:\n{err}",
        String::from_utf8_lossy(&out.stdout)
    );
    err
}

/// Like [`fails`], returning the `Error:` line of stderr.
pub fn error_line(cwd: &Path, args: &[&str]) -> String {
    let err = fails(cwd, args);
    err.lines()
        .find(|l| l.starts_with("Error:"))
        .unwrap_or_else(|| panic!("no error line in:\n{err}"))
        .to_string()
}

/// `mqlab run` of `messages` messages from one producer on the small
/// geometry without a device baseline, then `extra`.
pub fn tiny_run<'a>(messages: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let base = [
        "run",
        "--no-baseline",
        "--small-files",
        "--producers",
        "1",
        "--messages",
        messages,
    ];
    base.iter().chain(extra).copied().collect()
}

/// `mqlab run` with `flags` on the small geometry without a device
/// baseline, leaving its store in `data`, its ack log in `acks` and its
/// results in `out`; panics unless it succeeds.
pub fn run_with_acks(cwd: &Path, flags: &[&str], data: &str, acks: &str, out: &str) {
    let tail = [
        "--small-files",
        "--no-baseline",
        "--data-dir",
        data,
        "--ack-log",
        acks,
        "--out",
        out,
    ];
    let args: Vec<&str> = std::iter::once("run")
        .chain(flags.iter().copied())
        .chain(tail)
        .collect();
    mqlab_ok(cwd, &args);
}

/// Names in `dir`, sorted; empty when it does not exist.
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `YYYYmmdd-HHMMSS` (UTC) of a Unix second, as folder names use it.
pub fn stamp(secs: u64) -> String {
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Reads a JSON file.
pub fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A small group-commit run leaving its store in `data` and its ack log in
/// `acks`.
pub fn small_run(cwd: &Path, data: &str, acks: &str, out: &str) {
    let flags = [
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
    ];
    run_with_acks(cwd, &flags, data, acks, out);
}

/// Runs `cmd` (its stdout to `log`, stderr as `stderr`) for at most
/// `limit`; past it the process is killed and the test fails with `what`,
/// `seed` and the log. Returns the exit status and what it printed.
pub fn run_logged(
    mut cmd: Command,
    log: &Path,
    stderr: std::process::Stdio,
    limit: std::time::Duration,
    what: &str,
    seed: u64,
) -> (std::process::ExitStatus, String) {
    let mut child = cmd
        .stdout(std::fs::File::create(log).unwrap())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let t = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what} took over {} s (seed {seed}):\n{}",
                limit.as_secs(),
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    (status, std::fs::read_to_string(log).unwrap_or_default())
}

/// A SEND_MESSAGE_V2 of `body` with key `k{i}` to queue 0 of `topic` on
/// the broker at `to` (opaque `i`); None when no answer came in 10 s.
pub fn send_keyed(
    to: std::net::SocketAddr,
    topic: &str,
    i: usize,
    body: String,
) -> Option<mqlab_protocol::RemotingCommand> {
    use mqlab_protocol::codes::request;
    let req = mqlab_protocol::RemotingCommand::request(request::SEND_MESSAGE_V2, i as i32)
        .with_field("a", "PG")
        .with_field("b", topic)
        .with_field("d", 1)
        .with_field("e", 0)
        .with_field("i", format!("KEYS\u{1}k{i}\u{2}"))
        .with_body(body.into_bytes());
    mqlab_broker::remoting::call(to, &req, std::time::Duration::from_secs(10)).ok()
}

/// The max offset of queue 0 of `topic` on the broker at `at`, from a
/// pull as consumer group `group`; -1 without an answer.
pub fn queue_max(at: std::net::SocketAddr, topic: &str, group: &str) -> i64 {
    use mqlab_protocol::codes::request;
    let req = mqlab_protocol::RemotingCommand::request(request::PULL_MESSAGE, 1)
        .with_field("consumerGroup", group)
        .with_field("topic", topic)
        .with_field("queueId", 0)
        .with_field("queueOffset", 0)
        .with_field("maxMsgNums", 32)
        .with_field("sysFlag", 0)
        .with_field("commitOffset", 0)
        .with_field("suspendTimeoutMillis", 0)
        .with_field("subVersion", 0);
    mqlab_broker::remoting::call(at, &req, std::time::Duration::from_secs(10))
        .ok()
        .and_then(|r| r.ext_fields.get("maxOffset").and_then(|v| v.parse().ok()))
        .unwrap_or(-1)
}
