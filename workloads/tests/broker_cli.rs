//! `mqlab broker` and `mqlab namesrv` as a user runs them: the broker
//! prints where it listens, stores what a client sends over TCP, and on
//! SIGTERM shuts down cleanly (no abort marker; `mqlab verify` passes);
//! the name server runs for its duration and stops by itself.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mqlab_broker::remoting::call;
use mqlab_protocol::codes::{request, response};
use mqlab_protocol::RemotingCommand;

fn addr_after(line: &str, marker: &str) -> Option<SocketAddr> {
    let rest = line.split(marker).nth(1)?;
    rest.split([';', ' ']).next()?.parse().ok()
}

#[test]
fn broker_serves_then_shuts_down_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut child = Command::new(env!("CARGO_BIN_EXE_mqlab"))
        .args(["broker", "--data-dir"])
        .arg(&data)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--namesrv-listen",
            "127.0.0.1:0",
            "--flush",
            "group",
            "--duration",
            "60",
            "--status-secs",
            "1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut broker, mut ns) = (None, None);
    while broker.is_none() || ns.is_none() {
        let line = lines.next().expect("broker exited early").unwrap();
        broker = broker.or_else(|| addr_after(&line, "listening on "));
        if line.contains("namesrv") {
            ns = addr_after(&line, "listening on ");
        }
    }
    let (broker, ns) = (broker.unwrap(), ns.unwrap());
    assert!(broker.ip().is_loopback() && ns.ip().is_loopback());
    let send = RemotingCommand::request(request::SEND_MESSAGE_V2, 1)
        .with_field("a", "PG")
        .with_field("b", "CliTopic")
        .with_field("e", 0)
        .with_field("i", "KEYS\u{1}cli-key\u{2}")
        .with_body(b"over the wire".to_vec());
    let r = call(broker, &send, Duration::from_secs(10)).unwrap();
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    // The name server learns the new topic from the broker.
    let t = Instant::now();
    loop {
        let q = RemotingCommand::request(request::GET_ROUTEINFO_BY_TOPIC, 2)
            .with_field("topic", "CliTopic");
        if call(ns, &q, Duration::from_secs(5)).unwrap().code == response::SUCCESS {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(15), "topic never routed");
        std::thread::sleep(Duration::from_millis(100));
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "broker did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(status.success(), "{status}: {rest:?}");
    assert!(
        rest.iter().any(|l| l.contains("shut down cleanly")),
        "{rest:?}"
    );
    assert!(!data.join("abort").exists());
    let out = common::mqlab_ok(
        dir.path(),
        &["verify", "--data-dir", data.to_str().unwrap()],
    );
    assert!(out.contains("OK"), "{out}");
}

#[test]
fn namesrv_runs_for_its_duration() {
    let dir = tempfile::tempdir().unwrap();
    let out = common::mqlab_ok(
        dir.path(),
        &["namesrv", "--listen", "127.0.0.1:0", "--duration", "0.5"],
    );
    assert!(out.contains("listening on 127.0.0.1:"), "{out}");
    assert!(out.contains("shut down"), "{out}");
}
