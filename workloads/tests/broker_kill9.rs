//! `mqlab broker` killed with SIGKILL under wire load (issue 16): the
//! broker runs as a process (`mqlab broker --flush F`, see
//! `interop_common`), mqlab's TCP client (`PipelinedSender`, sends
//! pipelined over two connections) produces to it and writes every
//! acknowledged send (SEND_OK) to a client ack log as it arrives, the
//! broker is killed at a seeded random moment, `mqlab verify --acked`
//! checks every acknowledgement so far against the data directory, and the
//! broker restarts on the same directory for the next cycle.
//!
//! sync and group acknowledge after the fsync that covers a message: none
//! may be lost. async and pool are reported: a process kill keeps what was
//! written to the kernel (async acknowledges after the write), pool can
//! lose what its transient buffer had not committed.
//!
//! With the C++ client installed (`MQLAB_INTEROP_PYTHON`, as `.ci/run`
//! sets it: PyPI `rocketmq` 0.4.4, which bundles librocketmq), a C++
//! producer process sends beside mqlab's client in every cycle (one
//! synchronous send at a time), and each SEND_OK it prints goes to the same
//! ack log; without it the test says so and runs mqlab's client alone.
//!
//! CI runs 3 cycles of sync, group and async. Full run (scripts/
//! reliability.sh): `MQLAB_BROKER_KILL9_CYCLES=<per strategy>`,
//! `MQLAB_BROKER_KILL9_FLUSH=sync,group,async,pool`,
//! `MQLAB_BROKER_KILL9_WORKERS=2` (strategies at once),
//! `MQLAB_BROKER_KILL9_SEED=<n>` replays (the seed is printed). Prints one
//! `BROKER_KILL9 {json}` line per strategy.

mod interop_common;

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use interop_common::Broker;
use mqlab_client::tcp::pipelined::{PipelinedConfig, PipelinedSender};
use mqlab_engine::Message;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const TOPIC: &str = "Kill9Topic";

/// The C++ producer: sends until killed (or an error), one line per
/// answer: `sent KEY STATUS MSG_ID QUEUE_OFFSET` (the binding names
/// SEND_OK `OK`; the id is the message's unique id, which `verify` finds).
const CPP_PRODUCER: &str = r#"
import sys
from rocketmq.client import Producer, Message
ns, topic, prefix, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
p = Producer('Kill9CppPG')
p.set_namesrv_addr(ns)
p.start()
for i in range(n):
    key = '%s-%d' % (prefix, i)
    m = Message(topic)
    m.set_keys(key)
    m.set_body('cpp-' + key)
    try:
        r = p.send_sync(m)
    except Exception as e:
        print('error %s' % e, flush=True)
        break
    print('sent %s %s %s %d' % (key, r.status.name, r.msg_id, r.offset), flush=True)
"#;

/// A C++ producer process on `namesrv`, its SEND_OKs appended to
/// `ack_log` (queue id left empty: the C++ send result has none) and
/// counted in `acked`. Returns the process and the thread reading it.
fn cpp_producer(
    python: &str,
    dir: &Path,
    namesrv: std::net::SocketAddr,
    prefix: &str,
    ack_log: Arc<Mutex<std::fs::File>>,
    acked: Arc<AtomicU64>,
    own: Arc<AtomicU64>,
) -> (std::process::Child, std::thread::JoinHandle<u64>) {
    use std::io::BufRead;
    let script = dir.join("cpp_producer.py");
    std::fs::write(&script, CPP_PRODUCER).unwrap();
    let mut child = Command::new(python)
        .arg(&script)
        .arg(namesrv.to_string())
        .arg(TOPIC)
        .arg(prefix)
        .arg(MAX_PER_CYCLE.to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the C++ client's python");
    let out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut n = 0;
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if let ["sent", key, "OK", msg_id, offset] = f[..] {
                writeln!(ack_log.lock().unwrap(), "{TOPIC},,{offset},{msg_id},{key}").unwrap();
                acked.fetch_add(1, Ordering::AcqRel);
                own.fetch_add(1, Ordering::AcqRel);
                n += 1;
            }
        }
        n
    });
    (child, reader)
}
const QUEUES: u32 = 4;
/// Most messages one cycle sends (bounds the disk a long run uses).
const MAX_PER_CYCLE: u64 = 40_000;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What `mqlab verify --acked` found.
#[derive(Debug, Default, Clone, Copy)]
struct Verdict {
    lines: u64,
    ok: u64,
}

fn verify(data: &Path, acks: &Path) -> Result<Verdict, String> {
    let out = Command::new(env!("CARGO_BIN_EXE_mqlab"))
        .args(["verify", "--json", "--data-dir"])
        .arg(data)
        .arg("--acked")
        .arg(acks)
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        format!(
            "verify printed no JSON ({e}):\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    let n = |k: &str| v["acked"][k].as_u64().unwrap_or(0);
    let corrupt = v["ok"] == false && n("lines") == n("ok");
    if corrupt {
        // Every ack is there, but the store itself is not sound.
        return Err(format!("verify failed beyond the acks:\n{text}"));
    }
    Ok(Verdict {
        lines: n("lines"),
        ok: n("ok"),
    })
}

#[derive(Debug, Default, Clone, serde::Serialize)]
struct Report {
    flush: String,
    seed: u64,
    cycles: u64,
    cycles_with_acks: u64,
    acked: u64,
    acked_lost: u64,
    max_lost_one_kill: u64,
    send_failures: u64,
    /// SEND_OKs of the C++ producer (in `acked` too).
    cpp_acked: u64,
    elapsed_s: f64,
    failures: Vec<String>,
}

/// One strategy: `cycles` start-load-kill-verify cycles on one directory
/// (with a C++ producer beside mqlab's client when `python` is given).
fn lineage(flush: &str, cycles: u64, seed: u64, python: Option<&str>) -> Report {
    let started = Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let ack_path = dir.path().join("client-acks.csv");
    let ack_log = Arc::new(Mutex::new(std::fs::File::create(&ack_path).unwrap()));
    writeln!(
        ack_log.lock().unwrap(),
        "topic,queue_id,queue_offset,msg_id,key"
    )
    .unwrap();
    let mut r = Report {
        flush: flush.into(),
        seed,
        ..Report::default()
    };
    let acked = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut lost_before = 0;
    for cycle in 0..cycles {
        let broker = Broker::start(&data, flush, TOPIC, QUEUES);
        let sender = Arc::new(
            PipelinedSender::connect(
                broker.addr,
                PipelinedConfig {
                    producer_group: "Kill9PG".into(),
                    connections: 2,
                    max_in_flight: 256,
                    default_topic_queue_nums: QUEUES as i32,
                    ..PipelinedConfig::default()
                },
            )
            .unwrap(),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let acked_before = acked.load(Ordering::Acquire);
        let body_len = rng.random_range(16..2048);
        let producer = {
            let (sender, stop, ack_log, acked, failed) = (
                sender.clone(),
                stop.clone(),
                ack_log.clone(),
                acked.clone(),
                failed.clone(),
            );
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Acquire) && i < MAX_PER_CYCLE {
                    let key = format!("k{seed}-{cycle}-{i}");
                    let mut m = Message::new(TOPIC, vec![b'k'; body_len]).with_keys(key.clone());
                    m.queue_id = (i % QUEUES as u64) as u32;
                    let (ack_log, acked, failed) = (ack_log.clone(), acked.clone(), failed.clone());
                    sender.send(&m, move |reply| match reply.result {
                        Ok(s) if s.is_ok() => {
                            // Written before the next answer is read: an
                            // ack the client saw is in the log.
                            let line = format!(
                                "{TOPIC},{},{},{},{key}\n",
                                s.queue_id, s.queue_offset, s.msg_id
                            );
                            ack_log.lock().unwrap().write_all(line.as_bytes()).unwrap();
                            acked.fetch_add(1, Ordering::AcqRel);
                        }
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    });
                    i += 1;
                }
            })
        };
        let cpp_acks = Arc::new(AtomicU64::new(0));
        let cpp = python.map(|py| {
            cpp_producer(
                py,
                dir.path(),
                broker.namesrv,
                &format!("c{seed}-{cycle}"),
                ack_log.clone(),
                acked.clone(),
                cpp_acks.clone(),
            )
        });
        // The C++ client takes a moment to start (route, connections):
        // the kill's moment counts from its first acknowledged send (10 s
        // at most).
        if cpp.is_some() {
            let t = Instant::now();
            while cpp_acks.load(Ordering::Acquire) == 0 && t.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        // The seeded moment: mostly under load, sometimes at once.
        let wait_ms = if rng.random_range(0..10) == 0 {
            rng.random_range(0..20)
        } else {
            rng.random_range(50..700)
        };
        std::thread::sleep(Duration::from_millis(wait_ms));
        drop(broker); // SIGKILL, then reaped
        stop.store(true, Ordering::Release);
        sender.close();
        producer.join().unwrap();
        if let Some((mut child, reader)) = cpp {
            let _ = child.kill();
            let _ = child.wait();
            r.cpp_acked += reader.join().unwrap();
        }
        ack_log.lock().unwrap().flush().unwrap();
        let new_acks = acked.load(Ordering::Acquire) - acked_before;
        if new_acks > 0 {
            r.cycles_with_acks += 1;
        }
        r.cycles += 1;
        match verify(&data, &ack_path) {
            Ok(v) => {
                let lost = v.lines - v.ok;
                r.acked = v.lines;
                r.acked_lost = lost;
                // Loss is cumulative over the log: this kill's share.
                r.max_lost_one_kill = r.max_lost_one_kill.max(lost.saturating_sub(lost_before));
                lost_before = lost;
                if lost > 0 && matches!(flush, "sync" | "group") {
                    r.failures.push(format!(
                        "{flush} cycle {cycle} (seed {seed}, killed after {wait_ms} ms): \
                         {lost} of {} acknowledged sends lost",
                        v.lines
                    ));
                    break;
                }
            }
            Err(e) => {
                r.failures
                    .push(format!("{flush} cycle {cycle} (seed {seed}): {e}"));
                break;
            }
        }
    }
    r.send_failures = failed.load(Ordering::Relaxed);
    r.elapsed_s = started.elapsed().as_secs_f64();
    r
}

#[test]
fn acknowledged_sends_survive_kill9_of_the_broker_process() {
    let seed: u64 = env_or(
        "MQLAB_BROKER_KILL9_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    );
    let cycles: u64 = env_or("MQLAB_BROKER_KILL9_CYCLES", 3);
    let workers: usize = env_or("MQLAB_BROKER_KILL9_WORKERS", 1);
    let flushes: Vec<String> = env_or("MQLAB_BROKER_KILL9_FLUSH", "sync,group,async".to_string())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    println!("seed {seed} (MQLAB_BROKER_KILL9_SEED={seed} replays this run)");
    let python = std::env::var("MQLAB_INTEROP_PYTHON").ok();
    if python.is_none() {
        println!(
            "the C++ client is not installed (MQLAB_INTEROP_PYTHON unset; .ci/run sets it): mqlab's client produces alone"
        );
    }
    let todo = Mutex::new(flushes.iter().enumerate().collect::<Vec<_>>());
    let reports = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..workers.max(1) {
            s.spawn(|| loop {
                let Some((i, flush)) = todo.lock().unwrap().pop() else {
                    return;
                };
                let r = lineage(
                    flush,
                    cycles,
                    seed.wrapping_add(i as u64),
                    python.as_deref(),
                );
                println!("BROKER_KILL9 {}", serde_json::to_string(&r).unwrap());
                reports.lock().unwrap().push(r);
            });
        }
    });
    let reports = reports.into_inner().unwrap();
    let failures: Vec<&String> = reports.iter().flat_map(|r| &r.failures).collect();
    assert!(failures.is_empty(), "seed {seed}: {failures:#?}");
    for r in &reports {
        assert_eq!(r.cycles, cycles, "{r:?}");
        assert!(
            python.is_none() || r.cpp_acked > 0,
            "{}: the C++ producer had no send acknowledged in {} cycles",
            r.flush,
            r.cycles
        );
        assert!(
            r.cycles_with_acks * 2 >= r.cycles,
            "{}: only {} of {} cycles had acknowledged sends",
            r.flush,
            r.cycles_with_acks,
            r.cycles
        );
    }
}
