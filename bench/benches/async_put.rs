//! `async_put`: durable 1 KiB puts under group commit with 16, 256 and
//! 1,024 in flight, through `Store::put_async` (one submitting thread keeps
//! the window full; the group-commit service calls the completions after
//! the fdatasync covering them) and, for comparison, through blocking
//! `Store::put` (one thread per put in flight). Issue 15's in-process
//! target: with put_async at 1,024 in flight, durable throughput >= 0.5 x
//! the device's fdatasync bandwidth at the batch size reached.
//!
//! Every point opens a fresh store (group flush, default settings:
//! batched writes, no gather wait) on an environment that counts the
//! commit log's fdatasyncs and the bytes written to it, runs a warmup,
//! then a measured window, and reads from the counters the mean bytes per
//! fdatasync of that window (the batch size reached). Right after the
//! point, in the same directory, the device is measured at exactly that
//! batch size (`mqlab_engine::device::pwrite_fdatasync`: pwrite of that
//! many bytes + fdatasync, sequential offsets in a preallocated file,
//! repeated), and the point's ratio is the commit-log bytes made durable
//! per second over the device's bytes per second at that batch. Points
//! are interleaved (the order rotates each round) and summary rows are
//! medians over rounds (of the figures, and of the per-round ratios).
//!
//! This is not a criterion sampling loop: the ratio needs a device figure
//! at a batch size only known after the point ran, and medians over
//! interleaved rounds on a shared machine, so the bench times its own
//! fixed windows (`harness = false`, run with `cargo bench`).
//!
//! Environment (defaults in brackets):
//! - `MQLAB_ASYNC_PUT_ROUNDS` [3], `MQLAB_ASYNC_PUT_SECS` measured seconds
//!   per point [3], `MQLAB_ASYNC_PUT_WARMUP` [1],
//!   `MQLAB_ASYNC_PUT_DEVICE_SECS` device seconds per point [2];
//! - `MQLAB_ASYNC_PUT_CONC` [16,256,1024], `MQLAB_ASYNC_PUT_MODES`
//!   [async,blocking], `MQLAB_ASYNC_PUT_BACKENDS` [pwrite] (uring too),
//!   `MQLAB_ASYNC_PUT_SUBMITTERS` put_async threads [1],
//!   `MQLAB_ASYNC_PUT_MSG_BYTES` [1024], `MQLAB_ASYNC_PUT_WARM` [0] (1:
//!   `StoreConfig::warm_segments`, segments written with zeros before
//!   use; the first when the store opens, before the clock starts);
//! - `MQLAB_BENCH_DIR` the disk measured (stores and device scratch file);
//! - `MQLAB_BENCH_OUT` output folder [target/criterion/mqlab/async-put]:
//!   runs.jsonl (one line per point and round), summary.json, table.md,
//!   table.csv.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use mqlab_bench::report::median_f;
use mqlab_bench::{latency_hist, message, record_bytes, scratch, AsyncPuts, LoadPool, Until};
use mqlab_engine::device::{self, Budget};
use mqlab_engine::io::{File, OpenOptions};
use mqlab_engine::{BackendKind, Env, FlushConfig, FlushKind, PutStatus, Store, StoreConfig};
use serde::Serialize;

// --- Counting environment ------------------------------------------------

/// Commit-log fdatasyncs and bytes written, counted by [`CountingEnv`].
#[derive(Debug, Default)]
struct Counters {
    syncs: AtomicU64,
    bytes: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> (u64, u64) {
        (
            self.syncs.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }
}

/// A backend's environment whose commit-log files (`<dir>/commitlog/*`)
/// count their syncs and written bytes; every other file is the backend's.
struct CountingEnv {
    inner: Arc<dyn Env>,
    counters: Arc<Counters>,
}

struct CountingFile {
    inner: Arc<dyn File>,
    counters: Arc<Counters>,
}

/// True on the segment warmer's thread (`StoreConfig::warm_segments`):
/// its zeros and its one sync per segment are not the puts' batches.
fn warming() -> bool {
    std::thread::current().name() == Some("mqlab-warm")
}

impl File for CountingFile {
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        if !warming() {
            self.counters
                .bytes
                .fetch_add(buf.len() as u64, Ordering::Relaxed);
        }
        self.inner.write_at(offset, buf)
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read_at(offset, buf)
    }
    fn sync_data(&self) -> io::Result<()> {
        if !warming() {
            self.counters.syncs.fetch_add(1, Ordering::Relaxed);
        }
        self.inner.sync_data()
    }
    fn write_at_and_sync(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.counters
            .bytes
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        self.counters.syncs.fetch_add(1, Ordering::Relaxed);
        // The backend's own chaining (io_uring links the two).
        self.inner.write_at_and_sync(offset, buf)
    }
    fn next_data(&self, offset: u64) -> io::Result<Option<u64>> {
        self.inner.next_data(offset)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn len(&self) -> u64 {
        self.inner.len()
    }
}

impl Env for CountingEnv {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn open(&self, path: &Path, opts: OpenOptions) -> io::Result<Arc<dyn File>> {
        let f = self.inner.open(path, opts)?;
        let in_log = path
            .parent()
            .and_then(|p| p.file_name())
            .is_some_and(|n| n == "commitlog");
        Ok(if in_log {
            Arc::new(CountingFile {
                inner: f,
                counters: self.counters.clone(),
            })
        } else {
            f
        })
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        self.inner.list_dir(path)
    }
    fn is_dir(&self, path: &Path) -> bool {
        self.inner.is_dir(path)
    }
    fn exists(&self, path: &Path) -> bool {
        self.inner.exists(path)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_file(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.inner.sync_dir(path)
    }
}

// --- Settings --------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Mode {
    /// `Store::put_async`, a window of C per run.
    Async,
    /// `Store::put`, C threads.
    Blocking,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Async => "async",
            Mode::Blocking => "blocking",
        }
    }
}

struct Settings {
    rounds: u32,
    secs: f64,
    warmup: f64,
    device_secs: f64,
    conc: Vec<usize>,
    modes: Vec<Mode>,
    backends: Vec<BackendKind>,
    submitters: usize,
    msg_bytes: usize,
    warm_segments: bool,
    out: PathBuf,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?}: not a valid value")),
        Err(_) => default,
    }
}

fn env_list(name: &str, default: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split([',', ' '])
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

impl Settings {
    fn from_env() -> Settings {
        let out = std::env::var_os("MQLAB_BENCH_OUT")
            .map(PathBuf::from)
            .unwrap_or_else(|| mqlab_bench::RatioReport::out_dir().join("async-put"));
        Settings {
            rounds: env_or("MQLAB_ASYNC_PUT_ROUNDS", 3),
            secs: env_or("MQLAB_ASYNC_PUT_SECS", 3.0),
            warmup: env_or("MQLAB_ASYNC_PUT_WARMUP", 1.0),
            device_secs: env_or("MQLAB_ASYNC_PUT_DEVICE_SECS", 2.0),
            conc: env_list("MQLAB_ASYNC_PUT_CONC", "16,256,1024")
                .iter()
                .map(|c| c.parse().expect("MQLAB_ASYNC_PUT_CONC: numbers"))
                .collect(),
            modes: env_list("MQLAB_ASYNC_PUT_MODES", "async,blocking")
                .iter()
                .map(|m| match m.as_str() {
                    "async" => Mode::Async,
                    "blocking" => Mode::Blocking,
                    o => panic!("MQLAB_ASYNC_PUT_MODES: {o:?} (async, blocking)"),
                })
                .collect(),
            backends: env_list("MQLAB_ASYNC_PUT_BACKENDS", "pwrite")
                .iter()
                .map(|b| b.parse().expect("MQLAB_ASYNC_PUT_BACKENDS"))
                .collect(),
            submitters: env_or("MQLAB_ASYNC_PUT_SUBMITTERS", 1usize).max(1),
            msg_bytes: env_or("MQLAB_ASYNC_PUT_MSG_BYTES", 1024),
            warm_segments: env_or("MQLAB_ASYNC_PUT_WARM", 0u8) == 1,
            out,
        }
    }
}

// --- One point ---------------------------------------------------------------

/// What the load of one point measured (its measured window only).
struct Load {
    acked: u64,
    errors: u64,
    elapsed: Duration,
    hist: Histogram<u64>,
}

/// put_async with `conc` in flight, spread over `submitters` threads
/// (the shared driver, `mqlab_bench::AsyncPuts`).
fn run_async(store: &Arc<Store>, p: &Point, s: &Settings, counters: &Counters) -> (Load, Snap) {
    let puts = AsyncPuts::start(store, s.msg_bytes, p.conc, s.submitters);
    let mut edges = Vec::with_capacity(2);
    let w = puts.window(
        Duration::from_secs_f64(s.warmup),
        Duration::from_secs_f64(s.secs),
        |acked| edges.push(Snap::take(counters, acked)),
    );
    let (hist, _) = puts.finish();
    (
        Load {
            acked: w.acked,
            errors: w.errors,
            elapsed: w.elapsed,
            hist,
        },
        edges[1].minus(&edges[0]),
    )
}

/// Blocking put from `conc` threads.
fn run_blocking(store: &Arc<Store>, p: &Point, s: &Settings, counters: &Counters) -> (Load, Snap) {
    let errors = Arc::new(AtomicU64::new(0));
    let (st, e2) = (store.clone(), errors.clone());
    let msgs: Vec<_> = (0..p.conc)
        .map(|t| message(s.msg_bytes, t as u32))
        .collect();
    let mut pool = LoadPool::new(p.conc, move |t| {
        if st.put(&msgs[t]).status != PutStatus::PutOk {
            e2.fetch_add(1, Ordering::Relaxed);
        }
        true
    });
    pool.run(Until::Time(Duration::from_secs_f64(s.warmup)));
    let before = Snap::take(counters, 0);
    let e0 = errors.load(Ordering::Relaxed);
    let r = pool.run(Until::Time(Duration::from_secs_f64(s.secs)));
    let after = Snap::take(counters, 0);
    drop(pool);
    let errs = errors.load(Ordering::Relaxed) - e0;
    (
        Load {
            acked: r.ops.saturating_sub(errs),
            errors: errs,
            elapsed: r.elapsed,
            hist: r.hist,
        },
        after.minus(&before),
    )
}

/// Counters at one instant.
#[derive(Debug, Clone, Copy)]
struct Snap {
    syncs: u64,
    bytes: u64,
    acked: u64,
}

impl Snap {
    fn take(c: &Counters, acked: u64) -> Snap {
        let (syncs, bytes) = c.snapshot();
        Snap {
            syncs,
            bytes,
            acked,
        }
    }
    fn minus(&self, o: &Snap) -> Snap {
        Snap {
            syncs: self.syncs - o.syncs,
            bytes: self.bytes - o.bytes,
            acked: self.acked.saturating_sub(o.acked),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Point {
    mode: Mode,
    backend: BackendKind,
    conc: usize,
}

/// One point of one round (a line of runs.jsonl).
#[derive(Debug, Clone, Serialize)]
struct Row {
    round: u32,
    mode: Mode,
    backend: String,
    concurrency: usize,
    msg_bytes: usize,
    record_bytes: usize,
    status: String,
    secs: f64,
    msgs: u64,
    errors: u64,
    msgs_per_s: f64,
    /// Body bytes, MB/s (10^6).
    body_mb_per_s: f64,
    /// Commit-log bytes written in the window, MB/s (10^6).
    log_mb_per_s: f64,
    p50_us: u64,
    p99_us: u64,
    fdatasyncs: u64,
    fdatasyncs_per_s: f64,
    /// Commit-log bytes written per fdatasync (the batch size reached).
    bytes_per_fdatasync: f64,
    msgs_per_fdatasync: f64,
    /// pwrite+fdatasync of `device_batch_bytes`, right after the point.
    device_batch_bytes: usize,
    device_fdatasync_per_s: f64,
    device_mb_per_s: f64,
    device_p50_us: u64,
    device_p99_us: u64,
    /// log_mb_per_s / device_mb_per_s.
    ratio: f64,
    /// Body bytes over the device's bytes (the stricter reading).
    body_ratio: f64,
}

fn run_point(round: u32, p: Point, s: &Settings, dir: &Path) -> Row {
    let rec = record_bytes(s.msg_bytes);
    let mut row = Row {
        round,
        mode: p.mode,
        backend: p.backend.name().into(),
        concurrency: p.conc,
        msg_bytes: s.msg_bytes,
        record_bytes: rec,
        status: "ok".into(),
        secs: 0.0,
        msgs: 0,
        errors: 0,
        msgs_per_s: 0.0,
        body_mb_per_s: 0.0,
        log_mb_per_s: 0.0,
        p50_us: 0,
        p99_us: 0,
        fdatasyncs: 0,
        fdatasyncs_per_s: 0.0,
        bytes_per_fdatasync: 0.0,
        msgs_per_fdatasync: 0.0,
        device_batch_bytes: 0,
        device_fdatasync_per_s: 0.0,
        device_mb_per_s: 0.0,
        device_p50_us: 0,
        device_p99_us: 0,
        ratio: 0.0,
        body_ratio: 0.0,
    };
    let store_dir = dir.join(format!(
        "r{round}-{}-{}-c{}",
        p.mode.name(),
        p.backend,
        p.conc
    ));
    let counters = Arc::new(Counters::default());
    let opened = p
        .backend
        .env()
        .map_err(|e| e.to_string())
        .and_then(|inner| {
            let env: Arc<dyn Env> = Arc::new(CountingEnv {
                inner,
                counters: counters.clone(),
            });
            let cfg = StoreConfig {
                backend: p.backend,
                flush: FlushConfig::for_kind(FlushKind::Group),
                warm_segments: s.warm_segments,
                ..StoreConfig::default()
            };
            Store::open_with_env(env, &store_dir, cfg).map_err(|e| e.to_string())
        });
    let store = match opened {
        Ok(s) => Arc::new(s),
        Err(e) => {
            row.status = format!("open failed: {e}");
            return row;
        }
    };
    let (load, d) = match p.mode {
        Mode::Async => run_async(&store, &p, s, &counters),
        Mode::Blocking => run_blocking(&store, &p, s, &counters),
    };
    if let Ok(st) = Arc::try_unwrap(store) {
        let _ = st.shutdown();
    }
    // The store's files go after the device measurement: unlinking a
    // segment just written can keep the file system busy under it.
    let row = measure_device(row, &load, d, s, dir);
    let _ = std::fs::remove_dir_all(&store_dir);
    row
}

/// Fills the row's figures from the load and the counters, then measures
/// the device at the batch size reached.
fn measure_device(mut row: Row, load: &Load, d: Snap, s: &Settings, dir: &Path) -> Row {
    let secs = load.elapsed.as_secs_f64().max(1e-9);
    row.secs = (secs * 1000.0).round() / 1000.0;
    row.msgs = load.acked;
    row.errors = load.errors;
    row.msgs_per_s = load.acked as f64 / secs;
    row.body_mb_per_s = row.msgs_per_s * s.msg_bytes as f64 / 1e6;
    row.log_mb_per_s = d.bytes as f64 / secs / 1e6;
    row.p50_us = load.hist.value_at_quantile(0.5);
    row.p99_us = load.hist.value_at_quantile(0.99);
    row.fdatasyncs = d.syncs;
    row.fdatasyncs_per_s = d.syncs as f64 / secs;
    if d.syncs == 0 || load.acked == 0 {
        row.status = format!("no fdatasync or ack in the window ({} errors)", load.errors);
        return row;
    }
    row.bytes_per_fdatasync = d.bytes as f64 / d.syncs as f64;
    row.msgs_per_fdatasync = load.acked as f64 / d.syncs as f64;
    // The device at the batch size reached, same directory, same moment.
    let batch = row.bytes_per_fdatasync.round().max(1.0) as usize;
    let mut h = latency_hist();
    let run = device::pwrite_fdatasync(
        &dir.join("device.tmp"),
        batch,
        Budget {
            time: Duration::from_secs_f64(s.device_secs),
            min_ops: 3,
            file_bytes: (256u64 << 20).max(batch as u64 * 4),
        },
        &|| false,
        &mut |t| h.saturating_record(t.as_micros() as u64),
    );
    match run {
        Ok(run) => {
            row.device_batch_bytes = batch;
            row.device_fdatasync_per_s = run.ops_per_s();
            row.device_mb_per_s = run.ops_per_s() * batch as f64 / 1e6;
            row.device_p50_us = h.value_at_quantile(0.5);
            row.device_p99_us = h.value_at_quantile(0.99);
            row.ratio = row.log_mb_per_s / row.device_mb_per_s.max(1e-9);
            row.body_ratio = row.body_mb_per_s / row.device_mb_per_s.max(1e-9);
        }
        Err(e) => row.status = format!("device measurement failed: {e}"),
    }
    row
}

// --- Summary -------------------------------------------------------------------

/// Medians over rounds of one mode x backend x concurrency.
#[derive(Debug, Clone, Serialize)]
struct SummaryRow {
    mode: Mode,
    backend: String,
    concurrency: usize,
    msg_bytes: usize,
    rounds: usize,
    failed_rounds: Vec<String>,
    msgs_per_s: f64,
    msgs_per_s_min: f64,
    msgs_per_s_max: f64,
    body_mb_per_s: f64,
    log_mb_per_s: f64,
    p50_us: f64,
    p99_us: f64,
    fdatasyncs_per_s: f64,
    bytes_per_fdatasync: f64,
    msgs_per_fdatasync: f64,
    device_batch_bytes: f64,
    device_fdatasync_per_s: f64,
    device_mb_per_s: f64,
    /// Median of the per-round ratios (log bytes / device bytes).
    ratio: f64,
    ratio_min: f64,
    ratio_max: f64,
    body_ratio: f64,
    errors: u64,
    /// The target for this row (async, 1,024 in flight: 0.5).
    target: Option<f64>,
    met: Option<bool>,
}

/// async / blocking msgs/s at one concurrency, median of per-round ratios.
#[derive(Debug, Clone, Serialize)]
struct Comparison {
    what: String,
    ratio: f64,
    rounds: usize,
}

fn summarize(rows: &[Row], s: &Settings) -> (Vec<SummaryRow>, Vec<Comparison>) {
    let mut out = Vec::new();
    let mut cmp = Vec::new();
    for &backend in &s.backends {
        for &mode in &s.modes {
            for &c in &s.conc {
                let all: Vec<&Row> = rows
                    .iter()
                    .filter(|r| r.mode == mode && r.backend == backend.name() && r.concurrency == c)
                    .collect();
                let ok: Vec<&Row> = all.iter().copied().filter(|r| r.status == "ok").collect();
                let m = |f: &dyn Fn(&Row) -> f64| median_f(ok.iter().map(|r| f(r)).collect());
                let mps: Vec<f64> = ok.iter().map(|r| r.msgs_per_s).collect();
                let ratios: Vec<f64> = ok.iter().map(|r| r.ratio).collect();
                let ratio = median_f(ratios.clone());
                let target = (mode == Mode::Async && c == 1024).then_some(0.5);
                out.push(SummaryRow {
                    mode,
                    backend: backend.name().into(),
                    concurrency: c,
                    msg_bytes: s.msg_bytes,
                    rounds: ok.len(),
                    failed_rounds: all
                        .iter()
                        .filter(|r| r.status != "ok")
                        .map(|r| format!("round {}: {}", r.round, r.status))
                        .collect(),
                    msgs_per_s: m(&|r| r.msgs_per_s).round(),
                    msgs_per_s_min: mps.iter().copied().fold(f64::INFINITY, f64::min).min(1e18),
                    msgs_per_s_max: mps.iter().copied().fold(0.0, f64::max),
                    body_mb_per_s: m(&|r| r.body_mb_per_s),
                    log_mb_per_s: m(&|r| r.log_mb_per_s),
                    p50_us: m(&|r| r.p50_us as f64),
                    p99_us: m(&|r| r.p99_us as f64),
                    fdatasyncs_per_s: m(&|r| r.fdatasyncs_per_s),
                    bytes_per_fdatasync: m(&|r| r.bytes_per_fdatasync).round(),
                    msgs_per_fdatasync: m(&|r| r.msgs_per_fdatasync),
                    device_batch_bytes: m(&|r| r.device_batch_bytes as f64).round(),
                    device_fdatasync_per_s: m(&|r| r.device_fdatasync_per_s),
                    device_mb_per_s: m(&|r| r.device_mb_per_s),
                    ratio,
                    ratio_min: ratios
                        .iter()
                        .copied()
                        .fold(f64::INFINITY, f64::min)
                        .min(1e18),
                    ratio_max: ratios.iter().copied().fold(0.0, f64::max),
                    body_ratio: m(&|r| r.body_ratio),
                    errors: all.iter().map(|r| r.errors).sum(),
                    target,
                    met: target.map(|t| !ok.is_empty() && ratio >= t),
                });
            }
        }
        for &c in &s.conc {
            let per_round: Vec<f64> = (1..=s.rounds)
                .filter_map(|round| {
                    let f = |mode| {
                        rows.iter().find(|r| {
                            r.round == round
                                && r.mode == mode
                                && r.backend == backend.name()
                                && r.concurrency == c
                                && r.status == "ok"
                        })
                    };
                    match (f(Mode::Async), f(Mode::Blocking)) {
                        (Some(a), Some(b)) if b.msgs_per_s > 0.0 => {
                            Some(a.msgs_per_s / b.msgs_per_s)
                        }
                        _ => None,
                    }
                })
                .collect();
            if !per_round.is_empty() {
                cmp.push(Comparison {
                    what: format!(
                        "{backend}, {c} in flight: put_async msgs/s / blocking put msgs/s"
                    ),
                    rounds: per_round.len(),
                    ratio: median_f(per_round),
                });
            }
        }
    }
    (out, cmp)
}

fn fmt0(x: f64) -> String {
    let s = format!("{:.0}", x.abs());
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    if x < 0.0 {
        format!("-{out}")
    } else {
        out
    }
}

fn table_md(rows: &[SummaryRow], cmp: &[Comparison]) -> String {
    let mut s = String::from(
        "| put | backend | in flight | rounds | msgs/s | body MB/s | log MB/s | p50 µs | p99 µs | fdatasync/s | bytes per fdatasync | msgs per fdatasync | device fdatasync/s at that batch | device MB/s | ratio (log MB/s / device MB/s) | min..max | target |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {} | {}{} | {} | {:.1} | {:.1} | {} | {} | {} | {} | {:.1} | {} | {:.1} | {:.2} | {:.2}..{:.2} | {} |\n",
            r.mode.name(),
            r.backend,
            r.concurrency,
            r.rounds,
            if r.failed_rounds.is_empty() {
                String::new()
            } else {
                format!(" ({} failed)", r.failed_rounds.len())
            },
            fmt0(r.msgs_per_s),
            r.body_mb_per_s,
            r.log_mb_per_s,
            fmt0(r.p50_us),
            fmt0(r.p99_us),
            fmt0(r.fdatasyncs_per_s),
            fmt0(r.bytes_per_fdatasync),
            r.msgs_per_fdatasync,
            fmt0(r.device_fdatasync_per_s),
            r.device_mb_per_s,
            r.ratio,
            if r.rounds > 0 { r.ratio_min } else { 0.0 },
            r.ratio_max,
            match (r.target, r.met) {
                (Some(t), Some(true)) => format!(">= {t}: met"),
                (Some(t), _) => format!(">= {t}: **not met**"),
                _ => "-".into(),
            }
        ));
    }
    if !cmp.is_empty() {
        s.push_str("\n| comparison (same rounds) | median ratio | rounds |\n|---|---:|---:|\n");
        for c in cmp {
            s.push_str(&format!("| {} | {:.2} | {} |\n", c.what, c.ratio, c.rounds));
        }
    }
    s
}

fn table_csv(rows: &[SummaryRow]) -> String {
    let mut s = String::from("mode,backend,concurrency,msg_bytes,rounds,msgs_per_s,body_mb_per_s,log_mb_per_s,p50_us,p99_us,fdatasyncs_per_s,bytes_per_fdatasync,msgs_per_fdatasync,device_batch_bytes,device_fdatasync_per_s,device_mb_per_s,ratio,ratio_min,ratio_max,body_ratio,errors\n");
    for r in rows {
        s.push_str(&format!(
            "{},{},{},{},{},{:.0},{:.3},{:.3},{:.0},{:.0},{:.1},{:.0},{:.2},{:.0},{:.1},{:.3},{:.3},{:.3},{:.3},{:.3},{}\n",
            r.mode.name(),
            r.backend,
            r.concurrency,
            r.msg_bytes,
            r.rounds,
            r.msgs_per_s,
            r.body_mb_per_s,
            r.log_mb_per_s,
            r.p50_us,
            r.p99_us,
            r.fdatasyncs_per_s,
            r.bytes_per_fdatasync,
            r.msgs_per_fdatasync,
            r.device_batch_bytes,
            r.device_fdatasync_per_s,
            r.device_mb_per_s,
            r.ratio,
            if r.rounds > 0 { r.ratio_min } else { 0.0 },
            r.ratio_max,
            r.body_ratio,
            r.errors
        ));
    }
    s
}

fn main() {
    // `cargo bench` passes --bench (and maybe a filter); nothing to parse.
    let s = Settings::from_env();
    let dir = scratch("mqlab-bench-async-put-");
    std::fs::create_dir_all(&s.out).expect("create output folder");
    let runs_path = s.out.join("runs.jsonl");
    let mut runs_text = String::new();
    let mut points = Vec::new();
    for &backend in &s.backends {
        for &mode in &s.modes {
            for &conc in &s.conc {
                points.push(Point {
                    mode,
                    backend,
                    conc,
                });
            }
        }
    }
    let mut loads: Vec<String> = Vec::new();
    let mut rows = Vec::new();
    let n = points.len();
    for round in 1..=s.rounds {
        loads.push(format!(
            "round {round} start: {}",
            std::fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .trim()
        ));
        for i in 0..n {
            let p = points[(i + round as usize - 1) % n];
            let row = run_point(round, p, &s, dir.path());
            eprintln!(
                "async-put: round {round} {} {} c={}: {} msgs/s, {:.1} log MB/s, {:.0} B per fdatasync, device {:.1} MB/s at that batch, ratio {:.2} ({})",
                row.mode.name(),
                row.backend,
                row.concurrency,
                fmt0(row.msgs_per_s),
                row.log_mb_per_s,
                row.bytes_per_fdatasync,
                row.device_mb_per_s,
                row.ratio,
                row.status
            );
            runs_text.push_str(&serde_json::to_string(&row).expect("row json"));
            runs_text.push('\n');
            std::fs::write(&runs_path, &runs_text).expect("write runs.jsonl");
            rows.push(row);
        }
    }
    let (summary_rows, cmp) = summarize(&rows, &s);
    let md = table_md(&summary_rows, &cmp);
    let summary = serde_json::json!({
        "generated_by": "cargo bench -p mqlab-bench --bench async_put (scripts/async-put.sh)",
        "settings": {
            "rounds": s.rounds,
            "secs": s.secs,
            "warmup_secs": s.warmup,
            "device_secs": s.device_secs,
            "concurrency": s.conc,
            "modes": s.modes,
            "backends": s.backends.iter().map(|b| b.name()).collect::<Vec<_>>(),
            "submitters": s.submitters,
            "warm_segments": s.warm_segments,
            "msg_bytes": s.msg_bytes,
            "record_bytes": record_bytes(s.msg_bytes),
            "dir": mqlab_bench::bench_dir().display().to_string(),
            "flush": "group (default FlushConfig: group_batch_writes true, group_wait_us 0)",
        },
        "load_average": loads,
        "rows": summary_rows,
        "comparisons": cmp,
    });
    std::fs::write(
        s.out.join("summary.json"),
        serde_json::to_string_pretty(&summary).expect("summary json") + "\n",
    )
    .expect("write summary.json");
    std::fs::write(s.out.join("table.md"), &md).expect("write table.md");
    std::fs::write(s.out.join("table.csv"), table_csv(&summary_rows)).expect("write table.csv");
    println!("{md}");
    println!("written to {}", s.out.display());
}
