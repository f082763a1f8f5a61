//! Failover across processes (issue 14 part 2): `mqlab controller` and two
//! `mqlab broker --controller ADDR` processes on loopback; the first
//! broker is elected master, the second follows it and joins the in-sync
//! set; the master is SIGKILLed; the controller elects the slave, which
//! then takes sends and holds every message the old master acknowledged.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mqlab_protocol::codes::response;
use mqlab_protocol::RemotingCommand;

const TOPIC: &str = "FailoverCliTopic";

/// A running `mqlab` process, its stderr in a file (shown on failure).
struct Proc {
    child: Child,
    addr: SocketAddr,
    stderr: PathBuf,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

fn after(line: &str, marker: &str) -> Option<SocketAddr> {
    line.split(marker)
        .nth(1)?
        .split([';', ' '])
        .next()?
        .parse()
        .ok()
}

impl Proc {
    fn start(dir: &Path, name: &str, args: &[&str], until: &str) -> Proc {
        let stderr = dir.join(format!("{name}.stderr"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_mqlab"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut addr = None;
        loop {
            let Some(Ok(line)) = lines.next() else {
                panic!(
                    "{name} exited early: {}",
                    std::fs::read_to_string(&stderr).unwrap_or_default()
                );
            };
            if addr.is_none() {
                addr = after(&line, "listening on ");
            }
            if line.contains(until) {
                break;
            }
        }
        Proc {
            child,
            addr: addr.expect("an address printed"),
            stderr,
            lines,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// SIGTERM, then a clean exit within 30 s; the rest of stdout.
    fn stop(mut self) -> Vec<String> {
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
        assert!(status.success(), "{status}: {rest:?} {}", self.stderr());
        rest
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn send(to: SocketAddr, i: usize) -> Option<RemotingCommand> {
    common::send_keyed(to, TOPIC, i, format!("failover message {i}"))
}

fn queue_max(at: SocketAddr) -> i64 {
    common::queue_max(at, TOPIC, "FailoverCliGroup")
}

fn broker(dir: &Path, name: &str, id: &str, controller: SocketAddr, until: &str) -> Proc {
    let data = dir.join(name);
    let data = data.to_str().unwrap();
    let ctl = controller.to_string();
    Proc::start(
        dir,
        name,
        &[
            "broker",
            "--data-dir",
            data,
            "--listen",
            "127.0.0.1:0",
            "--namesrv-listen",
            "127.0.0.1:0",
            "--ha-listen",
            "127.0.0.1:0",
            "--flush",
            "group",
            "--role",
            "SYNC_MASTER",
            "--controller",
            &ctl,
            "--broker-id",
            id,
            "--controller-heartbeat-timeout-ms",
            "1500",
            "--ha-max-time-slave-not-catchup-ms",
            "5000",
            "--duration",
            "120",
            "--status-secs",
            "0",
        ],
        until,
    )
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool, why: impl Fn() -> String) {
    let t = Instant::now();
    while !f() {
        assert!(
            t.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}: {}",
            why()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A controller and two controller-mode brokers on loopback: the first
/// elected master at epoch 1, the second its slave, both in the in-sync
/// set.
fn group(dir: &Path) -> (Proc, Proc, Proc) {
    let c = Proc::start(
        dir,
        "controller",
        &[
            "controller",
            "--listen",
            "127.0.0.1:0",
            "--heartbeat-timeout-ms",
            "1500",
            "--duration",
            "120",
        ],
        "mqlab controller 1 listening on",
    );
    let master = broker(dir, "a", "1", c.addr, "controller mode");
    wait_for(
        "the first broker elected",
        10,
        || master.stderr().contains("now master at epoch 1"),
        || master.stderr(),
    );
    let slave = broker(dir, "b", "2", c.addr, "controller mode");
    wait_for(
        "the second broker following",
        10,
        || slave.stderr().contains("now slave of broker 1"),
        || slave.stderr(),
    );
    wait_for(
        "the slave in the in-sync set",
        20,
        || master.stderr().contains("-> {1, 2}"),
        || master.stderr(),
    );
    (c, master, slave)
}

#[test]
fn a_sigkilled_master_is_replaced_by_its_slave() {
    let dir = tempfile::tempdir().unwrap();
    let (c, mut master, slave) = group(dir.path());
    let n = 100;
    for i in 0..n {
        let r = send(master.addr, i).expect("an answer");
        assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    }
    // SIGKILL: no shutdown of any kind.
    master.child.kill().unwrap();
    master.child.wait().unwrap();
    let killed = Instant::now();
    wait_for(
        "the slave to take sends",
        20,
        || send(slave.addr, n).is_some_and(|r| r.code == response::SUCCESS),
        || slave.stderr(),
    );
    eprintln!("failover took {} ms", killed.elapsed().as_millis());
    assert!(
        slave.stderr().contains("now master at epoch 2"),
        "{}",
        slave.stderr()
    );
    // Every acknowledged message, and the new one.
    wait_for(
        "all messages on the new master",
        10,
        || queue_max(slave.addr) == n as i64 + 1,
        || format!("queue max {}", queue_max(slave.addr)),
    );
    slave.stop();
    let rest = c.stop();
    assert!(rest.iter().any(|l| l.contains("shut down")), "{rest:?}");
}

fn signal(p: &Proc, sig: &str) {
    let s = Command::new("kill")
        .args([sig, &p.child.id().to_string()])
        .status()
        .unwrap();
    assert!(s.success(), "kill {sig}");
}

/// Regression (issue 14, `results/ha/failover`: on the loaded machine a
/// group once lost its master to a controller that itself had stalled,
/// and was then left with a one-member in-sync set). The controller is
/// stopped (SIGSTOP) for three heartbeat timeouts while its brokers go on
/// heartbeating into its sockets; when it runs again it must not take
/// that silence for dead brokers: the master keeps its epoch.
#[test]
fn a_stalled_controller_does_not_depose_a_live_master() {
    let dir = tempfile::tempdir().unwrap();
    let (c, master, slave) = group(dir.path());
    signal(&c, "-STOP");
    std::thread::sleep(Duration::from_millis(4_500));
    signal(&c, "-CONT");
    // Three scanner periods and a broker heartbeat round after it runs.
    std::thread::sleep(Duration::from_millis(3_000));
    let r = send(master.addr, 0).expect("an answer");
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    for (who, p) in [("master", &master), ("slave", &slave)] {
        assert!(
            !p.stderr().contains("at epoch 2"),
            "the {who} saw a new epoch after the controller's stall: {}",
            p.stderr()
        );
    }
    assert!(
        c.stderr().contains("stalled for"),
        "the controller did not notice its stall: {}",
        c.stderr()
    );
    slave.stop();
    master.stop();
    c.stop();
}
