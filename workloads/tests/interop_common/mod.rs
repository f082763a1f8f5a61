//! What the interop tests share: `mqlab broker` run as a user runs it (the
//! binary, on loopback ports it picks), a real client run to completion
//! with bounded time, and `mqlab verify --acked` over what the client was
//! told.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mqlab_broker::remoting::call;
use mqlab_protocol::codes::{request, response};
use mqlab_protocol::RemotingCommand;

/// A `mqlab broker` process with its embedded name server.
pub struct Broker {
    child: Child,
    /// The broker's address.
    pub addr: SocketAddr,
    /// The embedded name server's address.
    pub namesrv: SocketAddr,
    /// Its data directory.
    pub data: PathBuf,
    log: std::thread::JoinHandle<String>,
}

fn addr_after(line: &str, marker: &str) -> Option<SocketAddr> {
    let rest = line.split(marker).nth(1)?;
    rest.split([';', ' ']).next()?.parse().ok()
}

impl Broker {
    /// Starts `mqlab broker` on 127.0.0.1 (ports chosen by the system)
    /// with `flush`, data in `data`, stopping by itself after 10 minutes at
    /// the latest; creates `topic` with `queues` queues and waits until
    /// the name server routes it.
    pub fn start(data: &Path, flush: &str, topic: &str, queues: u32) -> Broker {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mqlab"))
            .args(["broker", "--data-dir"])
            .arg(data)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--namesrv-listen",
                "127.0.0.1:0",
                "--flush",
                flush,
                "--duration",
                "600",
                "--status-secs",
                "0",
                // These tests are not about back-pressure: on a loaded CI
                // machine a send may wait over RocketMQ's 200 ms for a
                // thread, and its SYSTEM_BUSY would fail a run that
                // expects no errors.
                "--wait-time-mills-in-send-queue",
                "10000",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running mqlab broker");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut addr, mut namesrv) = (None, None);
        let mut seen = String::new();
        while addr.is_none() || namesrv.is_none() {
            let Some(Ok(line)) = lines.next() else {
                let _ = child.kill();
                panic!("mqlab broker exited before it listened:\n{seen}");
            };
            seen.push_str(&line);
            seen.push('\n');
            if line.contains("namesrv") {
                namesrv = addr_after(&line, "listening on ");
            } else {
                addr = addr.or_else(|| addr_after(&line, "listening on "));
            }
        }
        // Keep draining both outputs (a full pipe would stall the broker).
        let mut err = child.stderr.take().unwrap();
        let log = std::thread::spawn(move || {
            let out = std::thread::spawn(move || {
                lines.map_while(Result::ok).collect::<Vec<_>>().join("\n")
            });
            let mut e = String::new();
            let _ = err.read_to_string(&mut e);
            format!("{seen}{}\n{e}", out.join().unwrap_or_default())
        });
        let b = Broker {
            child,
            addr: addr.unwrap(),
            namesrv: namesrv.unwrap(),
            data: data.to_path_buf(),
            log,
        };
        assert!(b.addr.ip().is_loopback() && b.namesrv.ip().is_loopback());
        let create = RemotingCommand::request(request::UPDATE_AND_CREATE_TOPIC, 1)
            .with_field("topic", topic)
            .with_field("readQueueNums", queues)
            .with_field("writeQueueNums", queues)
            .with_field("perm", 6);
        let r = call(b.addr, &create, Duration::from_secs(10)).unwrap();
        assert_eq!(r.code, response::SUCCESS, "create {topic}: {:?}", r.remark);
        let t = Instant::now();
        loop {
            let q = RemotingCommand::request(request::GET_ROUTEINFO_BY_TOPIC, 2)
                .with_field("topic", topic);
            if call(b.namesrv, &q, Duration::from_secs(5)).unwrap().code == response::SUCCESS {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(15),
                "{topic} never routed"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        b
    }

    /// SIGTERM, then waits (bounded) for a clean exit; returns what the
    /// broker printed.
    pub fn stop(mut self) -> String {
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
            if t.elapsed() > Duration::from_secs(30) {
                let _ = self.child.kill();
                panic!("mqlab broker did not stop within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let log = std::mem::replace(&mut self.log, std::thread::spawn(String::new))
            .join()
            .unwrap_or_default();
        assert!(status.success(), "mqlab broker exited {status}:\n{log}");
        log
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One acknowledged send as the client reported it.
#[derive(Debug, Clone)]
pub struct Ack {
    pub topic: String,
    pub queue_id: Option<u32>,
    pub queue_offset: u64,
    pub msg_id: String,
    pub key: String,
}

/// Writes `acks` as a client ack log and runs `mqlab verify --acked` on
/// the (stopped) broker's data: every acknowledged message must be there,
/// intact and reachable.
pub fn verify_acked(dir: &Path, data: &Path, acks: &[Ack]) {
    let mut log = String::from("topic,queue_id,queue_offset,msg_id,key\n");
    for a in acks {
        log.push_str(&format!(
            "{},{},{},{},{}\n",
            a.topic,
            a.queue_id.map(|q| q.to_string()).unwrap_or_default(),
            a.queue_offset,
            a.msg_id,
            a.key
        ));
    }
    let path = dir.join("client-acks.csv");
    std::fs::write(&path, log).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mqlab"))
        .args(["verify", "--json", "--data-dir"])
        .arg(data)
        .arg("--acked")
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "mqlab verify --acked failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["acked"]["lines"], acks.len() as u64, "{text}");
    assert_eq!(v["acked"]["ok"], acks.len() as u64, "{text}");
}

/// Runs a real client to completion, bounded by `secs` (killed and failed
/// past it), and returns its stdout; a non-zero exit fails the test with
/// both outputs. The outputs are drained while it runs, so a chatty client
/// cannot block on a full pipe.
pub fn run_client(cmd: Command, what: &str, secs: u64) -> String {
    run_client_both(cmd, what, secs).0
}

/// [`run_client`], returning stdout and stderr.
pub fn run_client_both(mut cmd: Command, what: &str, secs: u64) -> (String, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {what}: {e}"));
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} did not finish within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    assert!(status.success(), "{what} failed: {status}\n{out}\n{err}");
    (out, err)
}
