//! Soak (issue 16): `mqlab broker` as a process under many producer and
//! consumer connections over loopback, mixed message sizes, for a while;
//! then producers stop and every consumer group drains its backlog.
//! Measured: throughput, send and end-to-end latency percentiles, the
//! broker's RSS every second (from /proc/<pid>/status). Checked: every
//! acknowledged message is consumed by every group (its key at its queue
//! offset), the backlog reaches 0 before the drain deadline, no send or
//! pull fails (SYSTEM_BUSY is retried and counted).
//!
//! Each producer connection is a thread sending SEND_MESSAGE_V2 one at a
//! time at its share of the target rate; each consumer connection is a
//! thread pulling one queue for one group (long polling, RocketMQ's
//! PULL_MESSAGE with SUSPEND): groups = consumers / queues, so every group
//! reads every queue.
//!
//! CI: 50 producer + 50 consumer connections, 5 s. `scripts/soak.sh` runs
//! the full one (1,000 + 1,000 connections, 10 minutes) through the same
//! code with `MQLAB_SOAK_*` variables (see [`Cfg::from_env`]) and writes
//! `summary.json` and `rss.csv` to `MQLAB_SOAK_OUT`. Prints one
//! `SOAK {json}` line.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mqlab_engine::log::record::{self, CrcCheck, Decoded};
use mqlab_protocol::codes::{request, response};
use mqlab_protocol::headers::pull_sys_flag;
use mqlab_protocol::{decode_frame, encode_frame, Limits, RemotingCommand};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const TOPIC: &str = "Soak";

#[derive(Debug, Clone, serde::Serialize)]
struct Cfg {
    producers: usize,
    consumers: usize,
    queues: u32,
    secs: u64,
    /// Target sends per second over all producers.
    rate: u64,
    drain_secs: u64,
    flush: String,
    long_poll_ms: u64,
    seed: u64,
    /// The broker's RSS must stay under this.
    rss_bound_bytes: u64,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

impl Cfg {
    /// `MQLAB_SOAK_PRODUCERS` (50), `_CONSUMERS` (50), `_QUEUES` (10),
    /// `_SECS` (5), `_RATE` (1000 msgs/s), `_DRAIN_SECS` (60), `_FLUSH`
    /// (group), `_LONG_POLL_MS` (1000; 0 polls every 50 ms), `_SEED`,
    /// `_RSS_BOUND_MIB` (1024).
    fn from_env() -> Cfg {
        let seed = env_or(
            "MQLAB_SOAK_SEED",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64,
        );
        Cfg {
            producers: env_or("MQLAB_SOAK_PRODUCERS", 50),
            consumers: env_or("MQLAB_SOAK_CONSUMERS", 50),
            queues: env_or("MQLAB_SOAK_QUEUES", 10),
            secs: env_or("MQLAB_SOAK_SECS", 5),
            rate: env_or("MQLAB_SOAK_RATE", 1000),
            drain_secs: env_or("MQLAB_SOAK_DRAIN_SECS", 60),
            flush: env_or("MQLAB_SOAK_FLUSH", "group".to_string()),
            long_poll_ms: env_or("MQLAB_SOAK_LONG_POLL_MS", 1000),
            seed,
            rss_bound_bytes: env_or::<u64>("MQLAB_SOAK_RSS_BOUND_MIB", 1024) << 20,
        }
    }
}

/// `mqlab broker` on loopback ports it picks, stopping by itself after
/// `duration` seconds at the latest.
struct BrokerProc {
    child: Child,
    addr: SocketAddr,
}

impl BrokerProc {
    fn start(data: &Path, flush: &str, duration: u64) -> BrokerProc {
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
                "--status-secs",
                "0",
                "--duration",
            ])
            .arg(duration.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running mqlab broker");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let addr = loop {
            let Some(Ok(line)) = lines.next() else {
                let _ = child.kill();
                panic!("mqlab broker exited before it listened");
            };
            if line.starts_with("mqlab broker") {
                if let Some(a) = line
                    .split("listening on ")
                    .nth(1)
                    .and_then(|r| r.split([';', ' ']).next())
                    .and_then(|a| a.parse().ok())
                {
                    break a;
                }
            }
        };
        // Keep draining its outputs; a full pipe would stall it. Of its
        // stderr, the first 200 lines saying why a connection was closed
        // are shown (a problem's cause on the broker's side).
        std::thread::spawn(move || lines.for_each(drop));
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut shown = 0;
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                if shown < 200 && (l.contains("closed") || l.contains("error")) {
                    eprintln!("broker: {l}");
                    shown += 1;
                }
            }
        });
        BrokerProc { child, addr }
    }

    fn rss(&self) -> u64 {
        self.status("VmRSS:")
    }

    /// A field of /proc/<pid>/status in bytes (VmRSS: resident in all;
    /// RssAnon: the heap and stacks; RssFile: mapped files, which the
    /// kernel can drop).
    fn status(&self, field: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }

    /// SIGTERM and a bounded wait for the clean exit.
    fn stop(mut self) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(60) {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for BrokerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One connection, one request at a time.
struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
    chunk: Vec<u8>,
}

impl Conn {
    fn open(addr: SocketAddr) -> std::io::Result<Conn> {
        let s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        s.set_nodelay(true)?;
        Ok(Conn {
            s,
            buf: Vec::new(),
            chunk: vec![0u8; 64 * 1024],
        })
    }

    fn call(&mut self, req: &RemotingCommand) -> Result<RemotingCommand, String> {
        self.s
            .write_all(&encode_frame(req).map_err(|e| e.to_string())?)
            .map_err(|e| format!("write: {e}"))?;
        loop {
            while let Some((cmd, used)) = decode_frame(&self.buf, &Limits::default())
                .map_err(|e| format!("bad answer: {e}"))?
            {
                self.buf.drain(..used);
                if cmd.is_response() && cmd.opaque == req.opaque {
                    return Ok(cmd);
                }
            }
            let n = self
                .s
                .read(&mut self.chunk)
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("closed".into());
            }
            self.buf.extend_from_slice(&self.chunk[..n]);
        }
    }
}

/// Shared between the threads.
struct Shared {
    stop_producers: AtomicBool,
    /// Set once the drain targets are known: consumers stop there.
    drain_to: Mutex<Option<Vec<u64>>>,
    acked: AtomicU64,
    consumed: AtomicU64,
    busy_retries: AtomicU64,
    errors: Mutex<Vec<String>>,
    error_count: AtomicU64,
    /// (queue, queue offset, key) of every acknowledged send.
    acks: Mutex<Vec<(u32, u64, u64)>>,
    send_us: Mutex<Histogram<u64>>,
    e2e_ms: Mutex<Histogram<u64>>,
    /// Per queue, the key at each offset, as group 0 consumed them.
    keys: Vec<Mutex<Vec<u64>>>,
    /// Per (group, queue): (end offset, hash of the (offset, key) run).
    runs: Mutex<Vec<GroupRun>>,
}

/// ((group, queue), (end offset, hash of the (offset, key) run)).
type GroupRun = ((usize, u32), (u64, u64));

impl Shared {
    fn error(&self, e: String) {
        if self.error_count.fetch_add(1, Ordering::Relaxed) < 20 {
            self.errors.lock().unwrap().push(e);
        }
    }
}

fn size_of(rng: &mut ChaCha8Rng) -> usize {
    match rng.random_range(0..100) {
        0..50 => rng.random_range(16..256),
        50..80 => rng.random_range(256..2048),
        80..97 => rng.random_range(2048..16384),
        _ => rng.random_range(16384..65536),
    }
}

fn producer(id: usize, addr: SocketAddr, cfg: &Cfg, sh: &Shared) {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ (id as u64).wrapping_mul(0x9e37));
    let mut conn = match Conn::open(addr) {
        Ok(c) => c,
        Err(e) => return sh.error(format!("producer {id}: connect: {e}")),
    };
    let mut hist = Histogram::<u64>::new(3).unwrap();
    let interval = Duration::from_secs_f64(cfg.producers as f64 / cfg.rate.max(1) as f64);
    let mut next = Instant::now() + interval.mul_f64(rng.random::<f64>());
    let mut i = 0u64;
    while !sh.stop_producers.load(Ordering::Acquire) {
        let now = Instant::now();
        if next > now {
            std::thread::sleep((next - now).min(Duration::from_millis(200)));
            continue;
        }
        next += interval;
        let key = ((id as u64) << 32) | i;
        let queue = ((id as u64 + i) % cfg.queues as u64) as u32;
        i += 1;
        let born = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let req = RemotingCommand::request(request::SEND_MESSAGE_V2, (i & 0x7fff_ffff) as i32)
            .with_field("a", "SoakPG")
            .with_field("b", TOPIC)
            .with_field("d", cfg.queues)
            .with_field("e", queue)
            .with_field("g", born)
            .with_field("i", format!("KEYS\u{1}s{key:x}\u{2}"))
            .with_body(vec![b's'; size_of(&mut rng)]);
        let t = Instant::now();
        let mut tries = 0;
        loop {
            match conn.call(&req) {
                Ok(a) if a.code == response::SUCCESS => {
                    let _ = hist.record(t.elapsed().as_micros() as u64);
                    let off = a.ext_fields.get("queueOffset").and_then(|v| v.parse().ok());
                    match off {
                        Some(off) => {
                            sh.acks.lock().unwrap().push((queue, off, key));
                            sh.acked.fetch_add(1, Ordering::Relaxed);
                        }
                        None => sh.error(format!("producer {id}: SUCCESS without queueOffset")),
                    }
                    break;
                }
                Ok(a) if a.code == response::SYSTEM_BUSY && tries < 50 => {
                    tries += 1;
                    sh.busy_retries.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(20));
                }
                Ok(a) => {
                    sh.error(format!(
                        "producer {id}: send answered {}: {:?}",
                        a.code, a.remark
                    ));
                    break;
                }
                Err(e) => {
                    sh.error(format!("producer {id}: {e}"));
                    return;
                }
            }
        }
    }
    sh.send_us.lock().unwrap().add(&hist).unwrap();
}

fn hash_step(h: u64, offset: u64, key: u64) -> u64 {
    (h ^ offset.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ key).wrapping_mul(0x100_0000_01b3)
}

fn consumer(group: usize, queue: u32, addr: SocketAddr, cfg: &Cfg, sh: &Shared) {
    let mut conn = match Conn::open(addr) {
        Ok(c) => c,
        Err(e) => return sh.error(format!("consumer {group}/{queue}: connect: {e}")),
    };
    let mut e2e = Histogram::<u64>::new(3).unwrap();
    let (mut offset, mut hash, mut opaque) = (0u64, 0xcbf2_9ce4_8422_2325u64, 0);
    let group_name = format!("SoakGroup{group}");
    loop {
        if let Some(to) = &*sh.drain_to.lock().unwrap() {
            if offset >= to[queue as usize] {
                break;
            }
        }
        opaque += 1;
        let mut sys = pull_sys_flag::COMMIT_OFFSET;
        if cfg.long_poll_ms > 0 {
            sys |= pull_sys_flag::SUSPEND;
        }
        let req = RemotingCommand::request(request::PULL_MESSAGE, opaque)
            .with_field("consumerGroup", &group_name)
            .with_field("topic", TOPIC)
            .with_field("queueId", queue)
            .with_field("queueOffset", offset)
            .with_field("maxMsgNums", 32)
            .with_field("sysFlag", sys)
            .with_field("commitOffset", offset)
            .with_field("suspendTimeoutMillis", cfg.long_poll_ms)
            .with_field("subVersion", 0);
        let a = match conn.call(&req) {
            Ok(a) => a,
            Err(e) => {
                sh.error(format!("consumer {group}/{queue}: {e}"));
                return;
            }
        };
        match a.code {
            response::SUCCESS => {
                let now_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_millis() as i64;
                let mut at = 0;
                let body = &a.body;
                while at < body.len() {
                    let size = body
                        .get(at..at + 4)
                        .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize);
                    if size < 8 || at + size > body.len() {
                        sh.error(format!("consumer {group}/{queue}: record of {size} bytes"));
                        return;
                    }
                    let rec = &body[at..at + size];
                    let phys = rec
                        .get(28..36)
                        .map_or(0, |b| u64::from_be_bytes(b.try_into().unwrap()));
                    match record::decode(rec, phys, size as u64, CrcCheck::Present) {
                        Ok(Decoded::Message(m)) => {
                            if m.queue_offset != offset {
                                sh.error(format!(
                                    "consumer {group}/{queue}: offset {} where {offset} was next",
                                    m.queue_offset
                                ));
                                return;
                            }
                            let key = m
                                .keys()
                                .next()
                                .and_then(|k| k.strip_prefix('s'))
                                .and_then(|k| u64::from_str_radix(k, 16).ok())
                                .unwrap_or(u64::MAX);
                            hash = hash_step(hash, offset, key);
                            if group == 0 {
                                let mut keys = sh.keys[queue as usize].lock().unwrap();
                                if keys.len() as u64 == offset {
                                    keys.push(key);
                                }
                            }
                            let _ = e2e.record((now_ms - m.born_timestamp_ms).max(0) as u64);
                            offset += 1;
                            sh.consumed.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(Decoded::Blank(_)) => {}
                        Err(e) => {
                            sh.error(format!("consumer {group}/{queue}: record: {e}"));
                            return;
                        }
                    }
                    at += size;
                }
                if let Some(next) = a
                    .ext_fields
                    .get("nextBeginOffset")
                    .and_then(|v| v.parse::<u64>().ok())
                {
                    if next != offset {
                        sh.error(format!(
                            "consumer {group}/{queue}: nextBeginOffset {next}, consumed to {offset}"
                        ));
                        return;
                    }
                }
            }
            response::PULL_NOT_FOUND | response::PULL_RETRY_IMMEDIATELY => {
                if cfg.long_poll_ms == 0 {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            response::SYSTEM_BUSY => std::thread::sleep(Duration::from_millis(20)),
            c => {
                sh.error(format!(
                    "consumer {group}/{queue}: pull answered {c}: {:?}",
                    a.remark
                ));
                return;
            }
        }
    }
    sh.runs
        .lock()
        .unwrap()
        .push(((group, queue), (offset, hash)));
    sh.e2e_ms.lock().unwrap().add(&e2e).unwrap();
}

fn max_offsets(addr: SocketAddr, queues: u32) -> Vec<u64> {
    let mut c = Conn::open(addr).unwrap();
    (0..queues)
        .map(|q| {
            let r = c
                .call(
                    &RemotingCommand::request(request::GET_MAX_OFFSET, q as i32 + 1)
                        .with_field("topic", TOPIC)
                        .with_field("queueId", q),
                )
                .unwrap();
            r.ext_fields["offset"].parse().unwrap()
        })
        .collect()
}

fn percentiles(h: &Histogram<u64>) -> serde_json::Value {
    serde_json::json!({
        "count": h.len(),
        "p50": h.value_at_quantile(0.5),
        "p90": h.value_at_quantile(0.9),
        "p99": h.value_at_quantile(0.99),
        "p999": h.value_at_quantile(0.999),
        "max": h.max(),
    })
}

/// Runs one soak; the summary (and, with `out`, summary.json and rss.csv
/// there).
fn soak(cfg: &Cfg, out: Option<&Path>) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let broker = BrokerProc::start(&data, &cfg.flush, cfg.secs + cfg.drain_secs + 300);
    let addr = broker.addr;
    let mut admin = Conn::open(addr).unwrap();
    let r = admin
        .call(
            &RemotingCommand::request(request::UPDATE_AND_CREATE_TOPIC, 1)
                .with_field("topic", TOPIC)
                .with_field("readQueueNums", cfg.queues)
                .with_field("writeQueueNums", cfg.queues)
                .with_field("perm", 6),
        )
        .unwrap();
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    let groups = (cfg.consumers / cfg.queues as usize).max(1);
    let sh = Arc::new(Shared {
        stop_producers: AtomicBool::new(false),
        drain_to: Mutex::new(None),
        acked: AtomicU64::new(0),
        consumed: AtomicU64::new(0),
        busy_retries: AtomicU64::new(0),
        errors: Mutex::new(Vec::new()),
        error_count: AtomicU64::new(0),
        acks: Mutex::new(Vec::new()),
        send_us: Mutex::new(Histogram::new(3).unwrap()),
        e2e_ms: Mutex::new(Histogram::new(3).unwrap()),
        keys: (0..cfg.queues).map(|_| Mutex::new(Vec::new())).collect(),
        runs: Mutex::new(Vec::new()),
    });
    let rss_start = broker.rss();
    let started = Instant::now();
    let spawn = |name: String, f: Box<dyn FnOnce() + Send>| {
        std::thread::Builder::new()
            .name(name)
            .stack_size(256 << 10)
            .spawn(f)
            .unwrap()
    };
    let mut consumers = Vec::new();
    for g in 0..groups {
        for q in 0..cfg.queues {
            let (sh, cfg) = (sh.clone(), cfg.clone());
            consumers.push(spawn(
                format!("soak-c{g}-{q}"),
                Box::new(move || consumer(g, q, addr, &cfg, &sh)),
            ));
        }
    }
    let producers: Vec<_> = (0..cfg.producers)
        .map(|p| {
            let (sh, cfg) = (sh.clone(), cfg.clone());
            spawn(
                format!("soak-p{p}"),
                Box::new(move || producer(p, addr, &cfg, &sh)),
            )
        })
        .collect();
    // RSS and progress every second, through load and drain.
    let mut series = Vec::new();
    let sample = |phase: &str, series: &mut Vec<serde_json::Value>| {
        series.push(serde_json::json!({
            "t_s": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
            "phase": phase,
            "rss_bytes": broker.rss(),
            "rss_anon_bytes": broker.status("RssAnon:"),
            "rss_file_bytes": broker.status("RssFile:"),
            "acked": sh.acked.load(Ordering::Relaxed),
            "consumed": sh.consumed.load(Ordering::Relaxed),
        }));
    };
    while started.elapsed() < Duration::from_secs(cfg.secs) {
        std::thread::sleep(Duration::from_secs(1).min(Duration::from_secs(cfg.secs)));
        sample("load", &mut series);
    }
    sh.stop_producers.store(true, Ordering::Release);
    for p in producers {
        p.join().unwrap();
    }
    let load_s = started.elapsed().as_secs_f64();
    let acked = sh.acked.load(Ordering::Relaxed);
    let targets = max_offsets(addr, cfg.queues);
    *sh.drain_to.lock().unwrap() = Some(targets.clone());
    let drain_started = Instant::now();
    let deadline = drain_started + Duration::from_secs(cfg.drain_secs);
    let mut drained = true;
    for c in consumers {
        while !c.is_finished() {
            if Instant::now() > deadline {
                drained = false;
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
            if series.last().and_then(|s| s["t_s"].as_f64()).unwrap_or(0.0) + 1.0
                <= started.elapsed().as_secs_f64()
            {
                sample("drain", &mut series);
            }
        }
        if !drained {
            break;
        }
        c.join().unwrap();
    }
    let drain_s = drain_started.elapsed().as_secs_f64();
    sample("end", &mut series);
    let rss_max = series
        .iter()
        .filter_map(|s| s["rss_bytes"].as_u64())
        .max()
        .unwrap_or(0);
    let rss_end = broker.rss();
    let rss_anon_max = series
        .iter()
        .filter_map(|s| s["rss_anon_bytes"].as_u64())
        .max()
        .unwrap_or(0);

    // Every group read every queue to its end, the same records in the
    // same order as group 0; every acknowledged send is there, its key at
    // its offset.
    let mut problems: Vec<String> = sh.errors.lock().unwrap().clone();
    let runs = sh.runs.lock().unwrap().clone();
    let mut backlog_end = 0u64;
    let mut reference = std::collections::BTreeMap::new();
    for ((g, q), (end, hash)) in &runs {
        backlog_end += targets[*q as usize].saturating_sub(*end);
        if *g == 0 {
            reference.insert(*q, (*end, *hash));
        }
    }
    for ((g, q), run) in &runs {
        if reference.get(q) != Some(run) {
            problems.push(format!(
                "group {g} queue {q} consumed {run:?}, group 0 {:?}",
                reference.get(q)
            ));
        }
    }
    let finished = runs.len();
    if finished < groups * cfg.queues as usize {
        backlog_end += (groups * cfg.queues as usize - finished) as u64;
        problems.push(format!(
            "{} of {} consumers did not drain",
            groups * cfg.queues as usize - finished,
            groups * cfg.queues as usize
        ));
    }
    let mut acked_not_consumed = 0u64;
    {
        let acks = sh.acks.lock().unwrap();
        for (q, off, key) in acks.iter() {
            let keys = sh.keys[*q as usize].lock().unwrap();
            if keys.get(*off as usize) != Some(key) {
                acked_not_consumed += 1;
                if acked_not_consumed <= 5 {
                    problems.push(format!(
                        "ack {key:x} at queue {q} offset {off} not consumed (found {:?})",
                        keys.get(*off as usize)
                    ));
                }
            }
        }
    }
    let clean_stop = broker.stop();
    if !clean_stop {
        problems.push("the broker did not stop cleanly on SIGTERM".into());
    }
    let consumed = sh.consumed.load(Ordering::Relaxed);
    let summary = serde_json::json!({
        "config": cfg,
        "groups": groups,
        "connections": cfg.producers + groups * cfg.queues as usize,
        "load_s": load_s,
        "acked": acked,
        "send_tps": acked as f64 / load_s,
        "busy_retries": sh.busy_retries.load(Ordering::Relaxed),
        "errors": sh.error_count.load(Ordering::Relaxed),
        "send_latency_us": percentiles(&sh.send_us.lock().unwrap()),
        "end_to_end_latency_ms": percentiles(&sh.e2e_ms.lock().unwrap()),
        "consumed": consumed,
        "consumed_per_group": consumed as f64 / groups as f64,
        "drained": drained && finished == groups * cfg.queues as usize,
        "drain_s": drain_s,
        "backlog_end": backlog_end,
        "acked_not_consumed": acked_not_consumed,
        "rss_start_bytes": rss_start,
        "rss_max_bytes": rss_max,
        "rss_end_bytes": rss_end,
        "rss_anon_max_bytes": rss_anon_max,
        "broker_clean_stop": clean_stop,
        "problems": problems,
    });
    if let Some(out) = out {
        std::fs::create_dir_all(out).unwrap();
        let mut s = summary.clone();
        s["timeseries"] = serde_json::Value::Array(series.clone());
        std::fs::write(
            out.join("summary.json"),
            serde_json::to_string_pretty(&s).unwrap(),
        )
        .unwrap();
        let mut csv =
            String::from("t_s,phase,rss_bytes,rss_anon_bytes,rss_file_bytes,acked,consumed\n");
        for p in &series {
            csv.push_str(&format!(
                "{},{},{},{},{},{},{}\n",
                p["t_s"],
                p["phase"].as_str().unwrap_or(""),
                p["rss_bytes"],
                p["rss_anon_bytes"],
                p["rss_file_bytes"],
                p["acked"],
                p["consumed"]
            ));
        }
        std::fs::write(out.join("rss.csv"), csv).unwrap();
    }
    summary
}

#[test]
fn many_connections_every_acked_message_consumed_and_backlogs_drained() {
    let cfg = Cfg::from_env();
    println!(
        "seed {} (MQLAB_SOAK_SEED={} replays the sizes and keys)",
        cfg.seed, cfg.seed
    );
    let out: Option<PathBuf> = std::env::var_os("MQLAB_SOAK_OUT").map(PathBuf::from);
    let s = soak(&cfg, out.as_deref());
    println!("SOAK {s}");
    let problems = s["problems"].as_array().cloned().unwrap_or_default();
    assert!(problems.is_empty(), "seed {}: {problems:#?}", cfg.seed);
    assert_eq!(s["errors"], 0);
    assert_eq!(s["drained"], true);
    assert_eq!(s["backlog_end"], 0);
    assert_eq!(s["acked_not_consumed"], 0);
    assert!(s["acked"].as_u64().unwrap() > 0);
    assert!(
        s["rss_max_bytes"].as_u64().unwrap() < cfg.rss_bound_bytes,
        "broker RSS {} over the bound {}",
        s["rss_max_bytes"],
        cfg.rss_bound_bytes
    );
}
