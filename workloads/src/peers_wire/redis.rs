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

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
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
}

struct Shared {
    measure_from: Instant,
    measure_to: Instant,
    stop: AtomicBool,
}

struct ConnResult {
    hist: Histogram<u64>,
    acked: u64,
    errors: BTreeMap<String, u64>,
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
    let mut buf: Vec<u8> = Vec::with_capacity(window.min(256) * (body.len() + 96));
    // Refill once this many slots are free (one write for all of them).
    let refill_at = (window / 16).max(1);
    let mut seq = 0u64;
    loop {
        let issuing = !sh.stop.load(Ordering::Relaxed) && Instant::now() < sh.measure_to;
        if issuing && window - pending.len() >= refill_at {
            let now = Instant::now();
            while pending.len() < window {
                redis::cmd("XADD")
                    .arg(stream)
                    .arg("*")
                    .arg("k")
                    .arg(format!("k{id}-{seq}"))
                    .arg("b")
                    .arg(body)
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
            _ if now >= sh.measure_from && now <= sh.measure_to => {
                res.acked += 1;
                let us = now.duration_since(sent).as_micros().max(1) as u64;
                res.hist.saturating_record(us);
            }
            _ => {}
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
    let _ = admin.check_connection();

    let conns = req.connections.min(req.inflight);
    let body: Arc<Vec<u8>> = Arc::new((0..req.msg_size).map(|i| b'a' + (i % 26) as u8).collect());
    let start = Instant::now();
    let sh = Arc::new(Shared {
        measure_from: start + Duration::from_secs_f64(req.warmup),
        measure_to: start + Duration::from_secs_f64(req.warmup + req.duration),
        stop: AtomicBool::new(false),
    });
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
