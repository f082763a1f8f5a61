//! `mqlab run --target rocketmq://HOST:PORT` against `mqlab broker` (the
//! binary, its embedded name server) on loopback: a short rate-limited run
//! with consumers acknowledges messages without errors, prints RocketMQ's
//! benchmark status lines, writes an in-process run's outputs plus
//! end-to-end latency, backlog and charts, and its client ack log passes
//! `mqlab verify --acked` on the broker's data after a SIGTERM shutdown,
//! as does a run to a topic the broker creates at its first send.
//! And the options that only make sense on one side are refused on the
//! other.

mod common;
mod interop_common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use interop_common::{run_client, Broker};
use mqlab_protocol::body::route::{BrokerData, QueueData, TopicRouteData};
use mqlab_protocol::codes::{request, response};
use mqlab_protocol::{decode_frame, encode_frame, Limits, RemotingCommand};

/// Serves `answer` to every request on every connection to a loopback
/// port (a fake name server or broker).
fn serve(
    answer: impl Fn(&RemotingCommand) -> RemotingCommand + Send + Sync + 'static,
) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let answer = Arc::new(answer);
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let answer = answer.clone();
            std::thread::spawn(move || {
                let mut s: TcpStream = s;
                let (mut buf, mut chunk) = (Vec::new(), vec![0u8; 65536]);
                loop {
                    let n = match s.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    buf.extend_from_slice(&chunk[..n]);
                    let mut out = Vec::new();
                    while let Ok(Some((req, used))) = decode_frame(&buf, &Limits::default()) {
                        buf.drain(..used);
                        out.extend(encode_frame(&answer(&req)).unwrap());
                    }
                    if s.write_all(&out).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn a_target_run_drives_the_broker_and_verify_finds_every_ack() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), "group", "TargetTopic", 4);
    let out = dir.path().join("run");
    let acks = dir.path().join("acks.csv");
    let target = format!("rocketmq://{}", broker.namesrv);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mqlab"));
    cmd.current_dir(dir.path())
        .args(["run", "--target", &target, "--topic", "TargetTopic"])
        .args(["--producers", "2", "--inflight", "500", "--msg-size", "256"])
        .args(["--rate", "2000", "--duration", "2", "--warmup", "0.5"])
        .args(["--status-secs", "0.5", "--out"])
        .arg(&out)
        .arg("--ack-log")
        .arg(&acks);
    let stdout = run_client(cmd, "mqlab run --target", 120);
    // RocketMQ's benchmark lines: periodic, then the closing one.
    let status: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("Current Time: ") && l.contains("| Send TPS: "))
        .collect();
    assert!(status.len() >= 3, "{stdout}");
    for l in &status {
        for part in [
            "| Max RT(ms): ",
            "| Average RT(ms): ",
            "| Send Failed: 0 | Response Failed: 0 |",
            "| RT p50(ms): ",
            "| RT p99(ms): ",
        ] {
            assert!(l.contains(part), "{part:?} not in {l}");
        }
    }
    assert!(
        stdout.lines().any(|l| l.contains("| Consume TPS: ")),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("[Complete] Send Total: ")),
        "{stdout}"
    );
    let s = common::json(&out.join("summary.json"));
    assert_eq!(s["label"], target.as_str());
    let acked = s["messages_acked"].as_u64().unwrap();
    // 2,000 msgs/s for 2 s after the warmup.
    assert!((3000..=5000).contains(&acked), "{acked} acked");
    assert_eq!(s["errors"], serde_json::json!({}), "{s}");
    assert!(s["throughput_msgs_per_s"].as_f64().unwrap() > 1000.0, "{s}");
    assert!(s["ack_latency_us"]["count"].as_u64().unwrap() == acked);
    assert!(
        s["intended_latency_us"]["p50"].as_u64().unwrap()
            >= s["ack_latency_us"]["min"].as_u64().unwrap()
    );
    assert_eq!(s["config"]["workload"]["queues"], 4);
    // The consumers read every acknowledged message of the run.
    let produced = s["produced"].as_u64().unwrap();
    assert!(produced >= acked);
    assert_eq!(s["consumed"], produced, "{s}");
    assert!(s["e2e_latency_us"]["count"].as_u64().unwrap() > 0, "{s}");
    for f in [
        "summary.json",
        "timeseries.csv",
        "ack_latency.hgrm",
        "intended_latency.hgrm",
        "e2e_latency.hgrm",
        "messaging.csv",
        "command.txt",
        "timeseries.svg",
        "latency_spectrum.png",
        "backlog.svg",
        "e2e_latency.svg",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let log = std::fs::read_to_string(&acks).unwrap();
    let mut lines = log.lines();
    assert_eq!(lines.next(), Some("topic,queue_id,queue_offset,msg_id,key"));
    assert_eq!(lines.count() as u64, produced);
    // A topic nobody created: sent through TBW102's route, created by the
    // broker at the first send with --queues queues; a message count
    // instead of a duration, no consumers.
    let fresh_acks = dir.path().join("fresh-acks.csv");
    let fresh = dir.path().join("fresh");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mqlab"));
    cmd.current_dir(dir.path())
        .args([
            "run",
            "--target",
            &target,
            "--topic",
            "FreshTopic",
            "--queues",
            "3",
        ])
        .args([
            "--messages",
            "500",
            "--inflight",
            "50",
            "--consume",
            "false",
        ])
        .arg("--out")
        .arg(&fresh)
        .arg("--ack-log")
        .arg(&fresh_acks);
    run_client(cmd, "mqlab run --target (new topic)", 120);
    let s = common::json(&fresh.join("summary.json"));
    assert_eq!(s["messages_acked"], 500, "{s}");
    assert_eq!(s["config"]["workload"]["queues"], 3, "{s}");
    broker.stop();
    for (log, n) in [(&acks, produced), (&fresh_acks, 500)] {
        let v = Command::new(env!("CARGO_BIN_EXE_mqlab"))
            .args(["verify", "--json", "--data-dir"])
            .arg(dir.path().join("data"))
            .arg("--acked")
            .arg(log)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&v.stdout);
        assert!(
            v.status.success(),
            "verify --acked failed:\n{text}\n{}",
            String::from_utf8_lossy(&v.stderr)
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["acked"]["lines"], n, "{text}");
        assert_eq!(v["acked"]["ok"], n, "{text}");
    }
}

#[test]
fn options_of_one_side_are_refused_on_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let e = common::error_line(cwd, &["run", "--connections", "4"]);
    assert!(
        e.contains("--connections only applies to a run with --target"),
        "{e}"
    );
    for (flag, value) in [
        ("--flush", Some("sync")),
        ("--small-files", None),
        ("--data-dir", Some("d")),
    ] {
        let mut args = vec!["run", "--target", "rocketmq://127.0.0.1:9", flag];
        args.extend(value);
        let e = common::error_line(cwd, &args);
        assert!(e.contains(flag) && e.contains("in-process store"), "{e}");
    }
    let e = common::error_line(cwd, &["run", "--target", "127.0.0.1:9876"]);
    assert!(e.contains("rocketmq://HOST:PORT"), "{e}");
    // Thousands in flight are fine on the wire (not a thread each), but
    // not in-process.
    let e = common::fails(cwd, &["run", "--inflight", "2000", "--no-baseline"]);
    assert!(e.contains("at most 1024 sender threads"), "{e:?}");
    // Nothing listens there: a connection error, not a hang.
    let e = common::error_line(
        cwd,
        &[
            "run",
            "--target",
            "rocketmq://127.0.0.1:9",
            "--inflight",
            "2000",
            "--out",
            "o",
        ],
    );
    assert!(e.contains("127.0.0.1:9"), "{e}");
    assert!(!cwd.join("o").exists(), "a failed run left its folder");
}

#[test]
fn run_help_documents_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let help = common::mqlab_ok(dir.path(), &["run", "--help"]);
    for s in [
        "--target <URL>",
        "rocketmq://HOST:PORT",
        "--connections",
        "--send-timeout-ms",
        "--status-secs",
        "--consume",
    ] {
        assert!(help.contains(s), "{s} not in:\n{help}");
    }
}

#[test]
fn errors_are_counted_by_response_code() {
    // A broker that answers every other send SYSTEM_BUSY, and a name
    // server that routes the topic there.
    let n = AtomicU64::new(0);
    let broker = serve(move |req| {
        assert_eq!(req.code, request::SEND_MESSAGE_V2);
        let i = n.fetch_add(1, Ordering::Relaxed);
        if i % 2 == 1 {
            return RemotingCommand::response_to(
                req,
                response::SYSTEM_BUSY,
                Some("[TIMEOUT_CLEAN_QUEUE] busy".into()),
            );
        }
        RemotingCommand::response_to(req, response::SUCCESS, None)
            .with_field("msgId", format!("7F00000100002A9F{:016X}", i * 100))
            // SEND_MESSAGE_V2's short field names: "e" is the queue id.
            .with_field("queueId", req.ext_fields["e"].clone())
            .with_field("queueOffset", i / 2)
    });
    let route = TopicRouteData {
        order_topic_conf: None,
        queue_datas: vec![QueueData {
            broker_name: "fake".into(),
            read_queue_nums: 2,
            write_queue_nums: 2,
            perm: 6,
            topic_sys_flag: 0,
        }],
        broker_datas: vec![BrokerData {
            cluster: "c".into(),
            broker_name: "fake".into(),
            broker_addrs: BTreeMap::from([(0, broker.to_string())]),
        }],
    };
    let namesrv = serve(move |req| {
        assert_eq!(req.code, request::GET_ROUTEINFO_BY_TOPIC);
        RemotingCommand::response_to(req, response::SUCCESS, None).with_body(route.encode(true))
    });
    let dir = tempfile::tempdir().unwrap();
    let target = format!("rocketmq://{namesrv}");
    let out = common::mqlab_ok(
        dir.path(),
        &[
            "run",
            "--target",
            &target,
            "--messages",
            "200",
            "--producers",
            "1",
            "--inflight",
            "1",
            "--consume",
            "false",
            "--status-secs",
            "0",
            "--out",
            "o",
        ],
    );
    assert!(
        out.contains("| Send Failed: 100 | Response Failed: 0 |"),
        "{out}"
    );
    let s = common::json(&dir.path().join("o/summary.json"));
    assert_eq!(s["messages_acked"], 100);
    assert_eq!(s["errors"], serde_json::json!({"SYSTEM_BUSY": 100}));
    assert_eq!(s["config"]["workload"]["queues"], 2);
    assert!(s.get("e2e_latency_us").is_none(), "{s}");
    let ts = std::fs::read_to_string(dir.path().join("o/timeseries.csv")).unwrap();
    let errors: u64 = ts
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(9).unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(errors, 100, "{ts}");
}
