//! Two `mqlab broker` processes replicate (issue 14): a master and a
//! `--role SLAVE --ha-master ADDR` on loopback; what is sent to the master
//! can be pulled from the slave, the slave refuses sends, and after both
//! stop cleanly on SIGTERM their commit logs are the same files.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mqlab_protocol::codes::response;
use mqlab_protocol::RemotingCommand;

const TOPIC: &str = "HaCliTopic";

/// A running `mqlab broker`, its stderr in a file (shown on failure).
struct Broker {
    child: Child,
    addr: SocketAddr,
    ha: Option<SocketAddr>,
    stderr: PathBuf,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl Broker {
    fn start(dir: &Path, name: &str, extra: &[&str]) -> Broker {
        let stderr = dir.join(format!("{name}.stderr"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_mqlab"))
            .args(["broker", "--data-dir"])
            .arg(dir.join(name))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--namesrv-listen",
                "127.0.0.1:0",
                "--flush",
                "group",
                "--duration",
                "120",
                "--status-secs",
                "0",
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let after = |line: &str, marker: &str| -> Option<SocketAddr> {
            line.split(marker)
                .nth(1)?
                .split([';', ' '])
                .next()?
                .parse()
                .ok()
        };
        let (mut addr, mut ha, mut role_line) = (None, None, false);
        while addr.is_none() || !role_line {
            let Some(Ok(line)) = lines.next() else {
                panic!(
                    "{name} exited early: {}",
                    std::fs::read_to_string(&stderr).unwrap_or_default()
                );
            };
            if line.starts_with("mqlab broker") {
                addr = after(&line, "listening on ");
            }
            if line.contains("HA listening on ") {
                ha = after(&line, "HA listening on ");
                role_line = true;
            }
            if line.contains("replicating from master") {
                role_line = true;
            }
        }
        Broker {
            child,
            addr: addr.unwrap(),
            ha,
            stderr,
            lines,
        }
    }

    /// SIGTERM, then a clean exit within 30 s.
    fn stop(mut self) {
        let killed = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let t = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(t.elapsed() < Duration::from_secs(30), "no stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        };
        let rest: Vec<String> = self.lines.by_ref().map_while(Result::ok).collect();
        assert!(
            status.success() && rest.iter().any(|l| l.contains("shut down cleanly")),
            "{status}: {rest:?} {}",
            std::fs::read_to_string(&self.stderr).unwrap_or_default()
        );
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn send(to: SocketAddr, i: usize) -> RemotingCommand {
    common::send_keyed(to, TOPIC, i, format!("replicated message {i}")).expect("an answer")
}

fn queue_max(at: SocketAddr) -> i64 {
    common::queue_max(at, TOPIC, "HaCliGroup")
}

fn commit_log(dir: &Path) -> Vec<(std::ffi::OsString, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir.join("commitlog"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v.into_iter()
        .map(|p| {
            (
                p.file_name().unwrap().to_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_master_and_a_slave_process_replicate() {
    let dir = tempfile::tempdir().unwrap();
    let master = Broker::start(dir.path(), "master", &[]);
    let ha = master.ha.expect("the master prints its HA address");
    assert!(ha.ip().is_loopback());
    let slave = Broker::start(
        dir.path(),
        "slave",
        &["--role", "SLAVE", "--ha-master", &ha.to_string()],
    );
    let n = 200;
    for i in 0..n {
        let r = send(master.addr, i);
        assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    }
    let t = Instant::now();
    while queue_max(slave.addr) != n as i64 {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the slave never had the {n} messages (queue max {}): {}",
            queue_max(slave.addr),
            std::fs::read_to_string(&slave.stderr).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = send(slave.addr, n);
    assert_eq!(r.code, response::SERVICE_NOT_AVAILABLE, "{:?}", r.remark);
    slave.stop();
    master.stop();
    let (m, s) = (
        commit_log(&dir.path().join("master")),
        commit_log(&dir.path().join("slave")),
    );
    assert_eq!(m.len(), s.len());
    for (a, b) in m.iter().zip(&s) {
        assert!(a == b, "segment {:?} differs", a.0);
    }
}
