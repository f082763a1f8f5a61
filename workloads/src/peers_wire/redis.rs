//! `mqlab peers-wire redis`: Redis streams as a peer on the wire. `XADD`s
//! of one body size with a fixed number in flight, over a few connections,
//! for a duration after a warmup; writes the figures a `run --target` run
//! writes under the same names (`throughput_msgs_per_s`,
//! `throughput_mib_per_s`, `ack_latency_us` with p50/p99/..., `errors`,
//! `messages_acked`, `duration_s`) in summary.json.
//!
//! Each connection is one thread with a window of `inflight / connections`
//! commands (the remainder spread over the first ones): it keeps its window
//! full with pipelined `XADD <stream> * k <key> b <body>` (packed by the
//! `redis` crate, one write for all the commands that a refill adds) and
//! reads the replies in order, so an ack's latency is from its command's
//! write to its reply. Redis answers in order and, with `appendfsync
//! always`, only after the event loop's fsync of the AOF (one fsync for
//! every command read in that loop iteration: group commit), so the
//! latency is the durable ack's.
//!
//! With `--consumers N` (producers + consumers), N more connections read
//! the stream while it is written, each one a thread looping on
//! `XREADGROUP GROUP mqlab c<i> COUNT 256 BLOCK 100 NOACK STREAMS <stream> >`
//! (one consumer group created at `$` before the producers start, so every
//! entry is delivered to one consumer once, as RocketMQ's clustering
//! consumers share a topic's queues; NOACK: no pending-entries list, as a
//! consumer that commits its offset). Each body carries its wall-clock
//! send time in bytes 12..20 (as `run --target`'s bodies), so a consumer
//! records end-to-end latency (send to consume) for entries sent after the
//! warmup. When the producers stop, the consumers read on until they have
//! every acknowledged entry (at most 10 s). summary.json then has, at
//! its top level as `run --target`'s, `consumers`, `produced`, `consumed`,
//! `consume_msgs_per_s` (everything consumed over the time from the start
//! until the consumers stopped, warmup and catch-up included, as `run
//! --target` computes it) and `e2e_latency_us`.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use redis::{ConnectionLike, Value};
use serde::Serialize;

use crate::recorder::{latency_hist, LatencySummary};
use crate::util;

/// `mqlab peers-wire redis`'s options.
#[derive(Debug, Clone, clap::Args)]
pub struct RedisRequest {
    /// The Redis server, `redis://HOST:PORT`.
    #[arg(long, value_name = "URL")]
    pub target: String,
    /// XADDs in flight in all (spread over the connections).
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub inflight: usize,
    /// TCP connections (capped at --inflight), one thread each.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub connections: usize,
    /// Body bytes per entry (the `b` field; `k` holds a key as `run`'s).
    #[arg(long, default_value_t = 1024, value_name = "BYTES")]
    pub msg_size: usize,
    /// Measured seconds, after the warmup.
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    pub duration: f64,
    /// Warmup seconds, excluded from every figure.
    #[arg(long, default_value_t = 1.0, value_name = "SECS")]
    pub warmup: f64,
    /// Stream key.
    #[arg(long, default_value = "mqlab", value_name = "KEY")]
    pub stream: String,
    /// Consumer connections reading the stream during the run (XREADGROUP,
    /// one group): 0 runs producers only.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub consumers: usize,
    /// Output folder for summary.json (created if missing). [default:
    /// print only]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// summary.json of a Redis run.
#[derive(Debug, Clone, Serialize)]
pub struct RedisSummary {
    /// Always `redis-streams`.
    pub engine: String,
    /// --target.
    pub target: String,
    /// The command line.
    pub command: String,
    /// `redis_version` from INFO server.
    pub redis_version: String,
    /// CONFIG GET appendonly.
    pub appendonly: String,
    /// CONFIG GET appendfsync.
    pub appendfsync: String,
    /// XADDs in flight in all.
    pub inflight: usize,
    /// Connections used.
    pub connections: usize,
    /// Body bytes.
    pub msg_size: usize,
    /// Warmup seconds.
    pub warmup_s: f64,
    /// Measured seconds.
    pub duration_s: f64,
    /// Replies (not errors) that arrived in the measured window.
    pub messages_acked: u64,
    /// messages_acked / duration_s.
    pub throughput_msgs_per_s: f64,
    /// Body MiB per second.
    pub throughput_mib_per_s: f64,
    /// Command write to reply, µs, of the measured window's replies.
    pub ack_latency_us: LatencySummary,
    /// Error replies by their code (`OOM`, `ERR`, ...), whole run.
    pub errors: BTreeMap<String, u64>,
    /// With --consumers: what they read, at the top level as `run
    /// --target` writes its consumers' figures.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub messaging: Option<RedisMessaging>,
}

/// The consumers' figures, under `run --target`'s names.
#[derive(Debug, Clone, Serialize)]
pub struct RedisMessaging {
    /// Consumer connections.
    pub consumers: usize,
    /// Entries acknowledged to the producers over the whole run.
    pub produced: u64,
    /// Entries read by the consumers (each once: one group).
    pub consumed: u64,
    /// consumed / seconds from the start until the consumers stopped.
    pub consume_msgs_per_s: f64,
    /// Send (wall clock, in the body) to read, µs, entries sent after the
    /// warmup.
    pub e2e_latency_us: LatencySummary,
    /// XREADGROUP calls that failed.
    pub read_errors: u64,
}

struct Shared {
    measure_from: Instant,
    measure_to: Instant,
    /// measure_from on the wall clock, µs (what end-to-end latency counts
    /// from: entries sent before it are warmup).
    measure_from_wall_us: u64,
    stop: AtomicBool,
    /// Entries acknowledged over the whole run (all producers).
    produced: AtomicU64,
    /// Entries read (all consumers).
    consumed: AtomicU64,
    /// Set once the producers are done: consumers stop when they have read
    /// `produced`, or at `consumers_deadline_ms` after this.
    producers_done: AtomicBool,
}

struct ConnResult {
    hist: Histogram<u64>,
    acked: u64,
    errors: BTreeMap<String, u64>,
}

/// Consumer group name.
const GROUP: &str = "mqlab";

/// Where a body carries its wall-clock send time (µs, little endian), as
/// `run --target`'s bodies do.
const SENT_AT: std::ops::Range<usize> = 12..20;

fn wall_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

struct ConsumerResult {
    e2e: Histogram<u64>,
    read_errors: u64,
}

/// The entries of one XREADGROUP reply: (id, body) pairs. RESP2 shape:
/// `[[stream, [[id, [field, value, ...]], ...]], ...]`, or nil on timeout.
fn reply_bodies(v: &Value, out: &mut Vec<Vec<u8>>) {
    let Value::Array(streams) = v else {
        return;
    };
    for s in streams {
        let Value::Array(kv) = s else { continue };
        let Some(Value::Array(entries)) = kv.get(1) else {
            continue;
        };
        for e in entries {
            let Value::Array(e) = e else { continue };
            let Some(Value::Array(fields)) = e.get(1) else {
                continue;
            };
            let mut body = Vec::new();
            for pair in fields.chunks(2) {
                if let [Value::BulkString(f), Value::BulkString(b)] = pair {
                    if f.as_slice() == b"b" {
                        body = b.clone();
                    }
                }
            }
            out.push(body);
        }
    }
}

/// One consumer's loop: XREADGROUP until the producers are done and every
/// acknowledged entry is read (or the catch-up deadline).
fn consume(
    client: &redis::Client,
    sh: &Shared,
    id: usize,
    stream: &str,
    catch_up: Duration,
) -> Result<ConsumerResult> {
    let mut con = connection(client)?;
    let mut res = ConsumerResult {
        e2e: latency_hist(),
        read_errors: 0,
    };
    let consumer = format!("c{id}");
    let mut bodies = Vec::new();
    let mut done_at: Option<Instant> = None;
    loop {
        if sh.producers_done.load(Ordering::Acquire) {
            let t = *done_at.get_or_insert_with(Instant::now);
            if sh.consumed.load(Ordering::Acquire) >= sh.produced.load(Ordering::Acquire)
                || t.elapsed() >= catch_up
            {
                break;
            }
        }
        if util::stopped() {
            break;
        }
        let reply: redis::RedisResult<Value> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(&consumer)
            .arg("COUNT")
            .arg(256)
            .arg("BLOCK")
            .arg(100)
            .arg("NOACK")
            .arg("STREAMS")
            .arg(stream)
            .arg(">")
            .query(&mut con);
        let reply = match reply {
            Ok(v) => v,
            Err(_) => {
                res.read_errors += 1;
                if res.read_errors > 100 {
                    bail!("XREADGROUP failed 100 times");
                }
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        bodies.clear();
        reply_bodies(&reply, &mut bodies);
        let now = wall_us();
        for b in &bodies {
            if let Some(sent) = b.get(SENT_AT) {
                let sent = u64::from_le_bytes(sent.try_into().expect("8 bytes"));
                if sent >= sh.measure_from_wall_us {
                    res.e2e.saturating_record(now.saturating_sub(sent).max(1));
                }
            }
        }
        sh.consumed.fetch_add(bodies.len() as u64, Ordering::AcqRel);
    }
    Ok(res)
}

/// The server's answer to one query, as a string (`?` when it has none).
fn config_get(con: &mut redis::Connection, key: &str) -> String {
    let v: redis::RedisResult<Vec<String>> = redis::cmd("CONFIG").arg("GET").arg(key).query(con);
    v.ok()
        .and_then(|v| v.get(1).cloned())
        .unwrap_or_else(|| "?".into())
}

fn info_version(con: &mut redis::Connection) -> String {
    let v: redis::RedisResult<String> = redis::cmd("INFO").arg("server").query(con);
    v.ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("redis_version:")
                    .map(|v| v.trim().to_string())
            })
        })
        .unwrap_or_else(|| "?".into())
}

fn connection(client: &redis::Client) -> Result<redis::Connection> {
    let con = client
        .get_connection_with_timeout(Duration::from_secs(5))
        .context("connect")?;
    con.set_read_timeout(Some(Duration::from_secs(10)))?;
    con.set_write_timeout(Some(Duration::from_secs(10)))?;
    Ok(con)
}

/// One connection's loop: keep `window` XADDs in flight until the measured
/// window ends, then collect the replies still owed.
fn drive(
    client: &redis::Client,
    sh: &Shared,
    id: usize,
    window: usize,
    stream: &str,
    body: &[u8],
) -> Result<ConnResult> {
    let mut con = connection(client)?;
    let mut res = ConnResult {
        hist: latency_hist(),
        acked: 0,
        errors: BTreeMap::new(),
    };
    let mut pending: VecDeque<Instant> = VecDeque::with_capacity(window);
    // This connection's copy of the body: bytes 12..20 get each entry's
    // wall-clock send time (for the consumers' end-to-end latency).
    let mut body = body.to_vec();
    let stamp = body.len() >= SENT_AT.end;
    let mut buf: Vec<u8> = Vec::with_capacity(window.min(256) * (body.len() + 96));
    // Refill once this many slots are free (one write for all of them).
    let refill_at = (window / 16).max(1);
    let mut seq = 0u64;
    loop {
        let issuing = !sh.stop.load(Ordering::Relaxed) && Instant::now() < sh.measure_to;
        if issuing && window - pending.len() >= refill_at {
            let now = Instant::now();
            let now_wall = wall_us();
            if stamp {
                body[SENT_AT].copy_from_slice(&now_wall.to_le_bytes());
            }
            while pending.len() < window {
                redis::cmd("XADD")
                    .arg(stream)
                    .arg("*")
                    .arg("k")
                    .arg(format!("k{id}-{seq}"))
                    .arg("b")
                    .arg(body.as_slice())
                    .write_packed_command(&mut buf);
                pending.push_back(now);
                seq += 1;
            }
            con.send_packed_command(&buf).context("send XADD")?;
            buf.clear();
        }
        let Some(sent) = pending.pop_front() else {
            break;
        };
        let reply = con.recv_response().context("read XADD reply")?;
        let now = Instant::now();
        match reply {
            Value::ServerError(e) => {
                *res.errors.entry(e.code().to_string()).or_default() += 1;
            }
            _ => {
                sh.produced.fetch_add(1, Ordering::AcqRel);
                if now >= sh.measure_from && now <= sh.measure_to {
                    res.acked += 1;
                    let us = now.duration_since(sent).as_micros().max(1) as u64;
                    res.hist.saturating_record(us);
                }
            }
        }
        if util::stopped() {
            sh.stop.store(true, Ordering::Relaxed);
        }
    }
    Ok(res)
}

/// `mqlab peers-wire redis`.
pub fn cmd_redis(req: RedisRequest) -> Result<()> {
    if !req.target.starts_with("redis://") {
        bail!("--target {:?}: expected redis://HOST:PORT", req.target);
    }
    if req.inflight == 0 || req.connections == 0 {
        bail!("--inflight and --connections must be at least 1");
    }
    if req.duration.is_nan() || req.duration <= 0.0 || req.warmup < 0.0 {
        bail!("--duration must be > 0 and --warmup >= 0");
    }
    let client = redis::Client::open(req.target.as_str())
        .with_context(|| format!("--target {:?}", req.target))?;
    let mut admin = connection(&client).with_context(|| format!("Redis at {}", req.target))?;
    let redis_version = info_version(&mut admin);
    let appendonly = config_get(&mut admin, "appendonly");
    let appendfsync = config_get(&mut admin, "appendfsync");
    // A stream left by an earlier run would make this one's AOF and memory
    // bigger: start from none.
    let _: i64 = redis::cmd("DEL").arg(&req.stream).query(&mut admin)?;
    if req.consumers > 0 {
        // One group from the (empty) stream's end: every entry of this run
        // goes to one consumer.
        let _: Value = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&req.stream)
            .arg(GROUP)
            .arg("$")
            .arg("MKSTREAM")
            .query(&mut admin)
            .context("XGROUP CREATE")?;
    }
    let _ = admin.check_connection();

    let conns = req.connections.min(req.inflight);
    let body: Arc<Vec<u8>> = Arc::new((0..req.msg_size).map(|i| b'a' + (i % 26) as u8).collect());
    let start = Instant::now();
    let sh = Arc::new(Shared {
        measure_from: start + Duration::from_secs_f64(req.warmup),
        measure_to: start + Duration::from_secs_f64(req.warmup + req.duration),
        measure_from_wall_us: wall_us() + (req.warmup * 1e6) as u64,
        stop: AtomicBool::new(false),
        produced: AtomicU64::new(0),
        consumed: AtomicU64::new(0),
        producers_done: AtomicBool::new(false),
    });
    let consumer_handles: Vec<_> = (0..req.consumers)
        .map(|i| {
            let (client, sh, stream) = (client.clone(), sh.clone(), req.stream.clone());
            std::thread::spawn(move || consume(&client, &sh, i, &stream, Duration::from_secs(10)))
        })
        .collect();
    let handles: Vec<_> = (0..conns)
        .map(|i| {
            let window = req.inflight / conns + usize::from(i < req.inflight % conns);
            let (client, sh, body, stream) =
                (client.clone(), sh.clone(), body.clone(), req.stream.clone());
            std::thread::spawn(move || drive(&client, &sh, i, window, &stream, &body))
        })
        .collect();
    let mut hist = latency_hist();
    let mut acked = 0u64;
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut failure = None;
    for h in handles {
        match h.join() {
            Ok(Ok(r)) => {
                hist.add(&r.hist).ok();
                acked += r.acked;
                for (k, v) in r.errors {
                    *errors.entry(k).or_default() += v;
                }
            }
            Ok(Err(e)) => {
                sh.stop.store(true, Ordering::Relaxed);
                failure = Some(e);
            }
            Err(_) => failure = Some(anyhow::anyhow!("a connection thread panicked")),
        }
    }
    sh.producers_done.store(true, Ordering::Release);
    let mut e2e = latency_hist();
    let mut read_errors = 0;
    for h in consumer_handles {
        match h.join() {
            Ok(Ok(r)) => {
                e2e.add(&r.e2e).ok();
                read_errors += r.read_errors;
            }
            Ok(Err(e)) => failure = failure.or(Some(e.context("XREADGROUP"))),
            Err(_) => failure = Some(anyhow::anyhow!("a consumer thread panicked")),
        }
    }
    let consumed_secs = start.elapsed().as_secs_f64();
    if let Some(e) = failure {
        return Err(e.context(format!("XADD to {}", req.target)));
    }
    let measured = (sh.measure_to.min(Instant::now()) - sh.measure_from).as_secs_f64();
    let duration_s = if sh.stop.load(Ordering::Relaxed) {
        measured.max(1e-9)
    } else {
        req.duration
    };
    let msgs = acked as f64 / duration_s;
    let summary = RedisSummary {
        engine: "redis-streams".into(),
        target: req.target.clone(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        redis_version,
        appendonly,
        appendfsync,
        inflight: req.inflight,
        connections: conns,
        msg_size: req.msg_size,
        warmup_s: req.warmup,
        duration_s,
        messages_acked: acked,
        throughput_msgs_per_s: msgs,
        throughput_mib_per_s: msgs * req.msg_size as f64 / (1 << 20) as f64,
        ack_latency_us: LatencySummary::of(&hist),
        errors,
        messaging: (req.consumers > 0).then(|| {
            let consumed = sh.consumed.load(Ordering::Acquire);
            RedisMessaging {
                consumers: req.consumers,
                produced: sh.produced.load(Ordering::Acquire),
                consumed,
                consume_msgs_per_s: consumed as f64 / consumed_secs.max(1e-9),
                e2e_latency_us: LatencySummary::of(&e2e),
                read_errors,
            }
        }),
    };
    println!(
        "redis-streams appendfsync={} inflight={} connections={} msg_bytes={} msgs_per_s={:.0} p50_us={} p99_us={} errors={}",
        summary.appendfsync,
        summary.inflight,
        summary.connections,
        summary.msg_size,
        summary.throughput_msgs_per_s,
        summary.ack_latency_us.p50,
        summary.ack_latency_us.p99,
        summary.errors.values().sum::<u64>()
    );
    if let Some(m) = &summary.messaging {
        println!(
            "consumers={} produced={} consumed={} consume_msgs_per_s={:.0} e2e_p50_us={} e2e_p99_us={}",
            m.consumers,
            m.produced,
            m.consumed,
            m.consume_msgs_per_s,
            m.e2e_latency_us.p50,
            m.e2e_latency_us.p99
        );
    }
    if let Some(dir) = &req.out {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let path = dir.join("summary.json");
        std::fs::write(&path, serde_json::to_string_pretty(&summary)? + "\n")
            .with_context(|| format!("write {}", path.display()))?;
    }
    if acked == 0 {
        bail!("no XADD acknowledged in the measured window");
    }
    Ok(())
}
