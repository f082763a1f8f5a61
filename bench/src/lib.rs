//! mqlab-bench: what the criterion benches (`benches/`) and the peers
//! runner (`src/bin/mqlab-peers.rs`) share.
//!
//! - [`DeviceFigures`]: the device limits of the same run (pwrite+fdatasync
//!   at queue depth 1 for each batch size, buffered-write and memcpy
//!   bandwidth), measured with the one implementation in
//!   `mqlab_engine::device` that `mqlab baseline` also uses.
//! - [`closed_loop`]: C threads each doing one operation at a time, until a
//!   count or a deadline; per-operation latency into an HdrHistogram.
//! - [`async_closed_loop`] / [`AsyncPuts`]: C puts in flight through
//!   `Store::put_async` from submitting threads, same histogram and
//!   [`LoadResult`], every completion counted (acknowledged or failed).
//! - [`RatioReport`]: each bench's figures next to the matching device
//!   figure, printed and written as JSON and markdown under
//!   `target/criterion/mqlab/` (or `$MQLAB_BENCH_OUT`).
//! - [`record_bytes`]: the exact commit-log record size of a bench message,
//!   so that msg/s turns into MB/s and into device batch sizes.
//!
//! Every ratio is a figure of this run over a device figure of this run
//! (STYLE.md habit 11); nothing here asserts on time.

mod async_load;
pub mod report;

pub use async_load::{async_closed_loop, AsyncEnd, AsyncPuts, AsyncRun, AsyncWindow};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mqlab_engine::device;
use mqlab_engine::log::record;
use mqlab_engine::Message;
use serde::{Deserialize, Serialize};

/// Topic every bench message goes to.
pub const TOPIC: &str = "Bench";

/// Queues the bench messages are spread over (thread i uses queue i % 8).
pub const QUEUES: u32 = 8;

/// Where benches put their stores and scratch files: `$MQLAB_BENCH_DIR`, else
/// the system temp dir. Use a directory on the disk you want measured.
pub fn bench_dir() -> PathBuf {
    std::env::var_os("MQLAB_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

/// A fresh directory under [`bench_dir`], removed when dropped.
pub fn scratch(prefix: &str) -> tempfile::TempDir {
    let parent = bench_dir();
    std::fs::create_dir_all(&parent).expect("create bench dir");
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(parent)
        .expect("create scratch dir")
}

/// The bench message: `msg_bytes` of body to [`TOPIC`], queue `queue`.
pub fn message(msg_bytes: usize, queue: u32) -> Message {
    Message::new(TOPIC, vec![b'x'; msg_bytes]).with_queue(queue % QUEUES)
}

/// Commit-log record size of [`message`] with the default store config
/// (IPv4 hosts, whole-record CRC property).
pub fn record_bytes(msg_bytes: usize) -> usize {
    let msg = message(msg_bytes, 0);
    let mut buf = Vec::new();
    let host = mqlab_engine::StoreConfig::default().store_host;
    record::encode(&msg, &[], 0, &host, true, &mut buf);
    buf.len()
}

/// A latency histogram in µs (1 µs to 1 h, 3 significant digits).
pub fn latency_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// pwrite+fdatasync at one batch size.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SyncFigure {
    /// Bytes per pwrite.
    pub batch_bytes: usize,
    /// Pairs per second.
    pub ops_per_s: f64,
    /// MiB per second.
    pub mib_per_s: f64,
    /// Median pair latency, µs.
    pub p50_us: u64,
    /// 99th percentile, µs.
    pub p99_us: u64,
}

/// The device limits of this run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct DeviceFigures {
    /// Directory measured.
    pub dir: String,
    /// pwrite+fdatasync at queue depth 1, one entry per batch size, sorted.
    pub sync: Vec<SyncFigure>,
    /// Buffered write bandwidth (1 MiB writes, no sync), MiB/s.
    pub buffered_write_mib_per_s: f64,
    /// Single-thread memcpy bandwidth (1 MiB copies), MiB/s.
    pub memcpy_mib_per_s: f64,
}

impl DeviceFigures {
    /// Measures `dir`'s device: pwrite+fdatasync at every size in
    /// `batch_sizes` (deduplicated) for `per_size` each, then buffered
    /// writes and memcpy for `bandwidth_time` each.
    pub fn measure(
        dir: &Path,
        batch_sizes: &[usize],
        per_size: Duration,
        bandwidth_time: Duration,
    ) -> std::io::Result<DeviceFigures> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("mqlab-bench-device-{}.tmp", std::process::id()));
        let mut sizes = batch_sizes.to_vec();
        sizes.sort_unstable();
        sizes.dedup();
        let budget = |time| device::Budget {
            time,
            ..device::Budget::default()
        };
        let mut sync = Vec::new();
        for b in sizes {
            let mut h = latency_hist();
            let run = device::pwrite_fdatasync(&path, b, budget(per_size), &|| false, &mut |d| {
                h.saturating_record(d.as_micros() as u64)
            })?;
            sync.push(SyncFigure {
                batch_bytes: b,
                ops_per_s: run.ops_per_s(),
                mib_per_s: run.mib_per_s(),
                p50_us: h.value_at_quantile(0.5),
                p99_us: h.value_at_quantile(0.99),
            });
        }
        let buffered = device::buffered_write(&path, 1 << 20, budget(bandwidth_time), &|| false)?;
        let memcpy = device::memcpy(1 << 20, bandwidth_time);
        Ok(DeviceFigures {
            dir: dir.display().to_string(),
            sync,
            buffered_write_mib_per_s: buffered.mib_per_s(),
            memcpy_mib_per_s: memcpy.mib_per_s(),
        })
    }

    /// The figure at `batch_bytes`: the exact size when measured, else
    /// interpolated in log-log between the neighbours (clamped at the ends).
    pub fn sync_at(&self, batch_bytes: usize) -> SyncFigure {
        let s = &self.sync;
        if s.is_empty() {
            return SyncFigure::default();
        }
        if let Some(f) = s.iter().find(|f| f.batch_bytes == batch_bytes) {
            return f.clone();
        }
        let hi = s.iter().position(|f| f.batch_bytes > batch_bytes);
        let (a, b) = match hi {
            Some(0) => return s[0].clone(),
            None => return s[s.len() - 1].clone(),
            Some(i) => (&s[i - 1], &s[i]),
        };
        let t = ((batch_bytes as f64).ln() - (a.batch_bytes as f64).ln())
            / ((b.batch_bytes as f64).ln() - (a.batch_bytes as f64).ln());
        let lerp = |x: f64, y: f64| (x.max(1e-9).ln() * (1.0 - t) + y.max(1e-9).ln() * t).exp();
        let ops = lerp(a.ops_per_s, b.ops_per_s);
        SyncFigure {
            batch_bytes,
            ops_per_s: ops,
            mib_per_s: ops * batch_bytes as f64 / (1024.0 * 1024.0),
            p50_us: lerp(a.p50_us as f64, b.p50_us as f64) as u64,
            p99_us: lerp(a.p99_us as f64, b.p99_us as f64) as u64,
        }
    }

    /// Durable messages per second the device allows with `concurrency`
    /// puts of `record` bytes sharing each fdatasync: C x fdatasync/s at a
    /// batch of C records (which is the batch's bandwidth over the record
    /// size). For C = 1 this is the queue-depth-1 rate.
    pub fn durable_msgs_bound(&self, concurrency: usize, record: usize) -> f64 {
        let c = concurrency.max(1);
        c as f64 * self.sync_at(c * record).ops_per_s
    }

    /// Messages per second the page cache allows at `record` bytes each.
    pub fn buffered_msgs_bound(&self, record: usize) -> f64 {
        self.buffered_write_mib_per_s * 1024.0 * 1024.0 / record.max(1) as f64
    }

    /// The batch sizes the ratios need: every record size at every
    /// concurrency, plus 4 KiB and 1 MiB.
    pub fn batch_sizes_for(msg_sizes: &[usize], concurrencies: &[usize]) -> Vec<usize> {
        let mut v = vec![4096, 1 << 20];
        for &m in msg_sizes {
            for &c in concurrencies {
                v.push(record_bytes(m) * c.max(1));
            }
        }
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// When a closed loop ends.
#[derive(Debug, Clone, Copy)]
pub enum Until {
    /// After this many operations in all (shared by the threads).
    Ops(u64),
    /// After this long.
    Time(Duration),
}

/// What a closed loop did.
#[derive(Debug, Clone)]
pub struct LoadResult {
    /// Operations completed.
    pub ops: u64,
    /// From the start barrier to the last thread's end.
    pub elapsed: Duration,
    /// Latency of every operation, µs.
    pub hist: Histogram<u64>,
}

impl LoadResult {
    /// Operations per second.
    pub fn ops_per_s(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Runs `op(thread)` from `threads` threads, each one operation at a time
/// (a closed loop with `threads` operations in flight), until `until`.
/// `op` returns false to abort the whole run (an error it reported).
pub fn closed_loop<F>(threads: usize, until: Until, op: F) -> LoadResult
where
    F: Fn(usize) -> bool + Send + Sync + 'static,
{
    LoadPool::new(threads, op).run(until)
}

/// A job of a [`LoadPool`] run.
struct Job {
    generation: u64,
    until: Until,
    quit: bool,
}

struct PoolShared {
    job: Mutex<Job>,
    start: Condvar,
    issued: AtomicU64,
    stop: AtomicBool,
    done: Mutex<(usize, Histogram<u64>, u64)>,
    finished: Condvar,
}

/// `threads` persistent threads running one operation each at a time, so
/// that repeated short runs (criterion's `iter_custom` batches) pay neither
/// thread creation nor teardown inside the timed part.
pub struct LoadPool {
    shared: Arc<PoolShared>,
    handles: Vec<std::thread::JoinHandle<()>>,
    generation: u64,
}

impl LoadPool {
    /// Starts the threads; they wait for [`LoadPool::run`].
    pub fn new<F>(threads: usize, op: F) -> LoadPool
    where
        F: Fn(usize) -> bool + Send + Sync + 'static,
    {
        let shared = Arc::new(PoolShared {
            job: Mutex::new(Job {
                generation: 0,
                until: Until::Ops(0),
                quit: false,
            }),
            start: Condvar::new(),
            issued: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            done: Mutex::new((0, latency_hist(), 0)),
            finished: Condvar::new(),
        });
        let op = Arc::new(op);
        let handles = (0..threads.max(1))
            .map(|t| {
                let (sh, op) = (shared.clone(), op.clone());
                std::thread::Builder::new()
                    .name(format!("mqlab-load-{t}"))
                    .stack_size(256 << 10)
                    .spawn(move || worker(t, &sh, &*op))
                    .expect("spawn load thread")
            })
            .collect();
        LoadPool {
            shared,
            handles,
            generation: 0,
        }
    }

    /// Runs one job on every thread and waits for all of them.
    pub fn run(&mut self, until: Until) -> LoadResult {
        let sh = &*self.shared;
        let n = self.handles.len();
        {
            let mut d = sh.done.lock().unwrap();
            *d = (0, latency_hist(), 0);
        }
        sh.issued.store(0, Ordering::SeqCst);
        sh.stop.store(false, Ordering::SeqCst);
        self.generation += 1;
        let start = Instant::now();
        {
            let mut j = sh.job.lock().unwrap();
            j.generation = self.generation;
            j.until = until;
            sh.start.notify_all();
        }
        if let Until::Time(d) = until {
            std::thread::sleep(d);
            sh.stop.store(true, Ordering::SeqCst);
        }
        let mut d = sh.done.lock().unwrap();
        while d.0 < n {
            d = sh.finished.wait(d).unwrap();
        }
        let elapsed = start.elapsed();
        let hist = std::mem::replace(&mut d.1, latency_hist());
        LoadResult {
            ops: d.2,
            elapsed,
            hist,
        }
    }
}

impl Drop for LoadPool {
    fn drop(&mut self) {
        {
            let mut j = self.shared.job.lock().unwrap();
            j.quit = true;
            self.shared.start.notify_all();
        }
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

fn worker(t: usize, sh: &PoolShared, op: &(dyn Fn(usize) -> bool + Send + Sync)) {
    let mut seen = 0u64;
    let mut h = latency_hist();
    loop {
        let until = {
            let mut j = sh.job.lock().unwrap();
            while j.generation == seen && !j.quit {
                j = sh.start.wait(j).unwrap();
            }
            if j.quit {
                return;
            }
            seen = j.generation;
            j.until
        };
        h.reset();
        let mut n = 0u64;
        loop {
            if sh.stop.load(Ordering::Relaxed) {
                break;
            }
            if let Until::Ops(total) = until {
                if sh.issued.fetch_add(1, Ordering::Relaxed) >= total {
                    break;
                }
            }
            let t0 = Instant::now();
            if !op(t) {
                sh.stop.store(true, Ordering::Relaxed);
                break;
            }
            h.saturating_record(t0.elapsed().as_micros() as u64);
            n += 1;
        }
        let mut d = sh.done.lock().unwrap();
        d.1.add(&h).expect("same histogram bounds");
        d.2 += n;
        d.0 += 1;
        sh.finished.notify_all();
    }
}

/// One row of a ratio report.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RatioRow {
    /// Criterion group.
    pub group: String,
    /// Benchmark id within the group.
    pub id: String,
    /// Messages (or entries) per second over the whole measurement.
    pub msgs_per_s: f64,
    /// MB/s (10^6 bytes) over the whole measurement.
    pub mb_per_s: f64,
    /// Median latency of one operation, µs (0 when not measured).
    pub p50_us: u64,
    /// 99th percentile, µs (0 when not measured).
    pub p99_us: u64,
    /// The device figure compared with, by name ("" when none applies).
    pub device_figure: String,
    /// The device figure's value, in the unit its name says.
    pub device_value: f64,
    /// This row's figure over the device figure (0 when none applies).
    pub ratio: f64,
    /// The target for the ratio, when it has one.
    pub target: Option<f64>,
    /// Free-form note (p99 ratio, what the ratio compares).
    pub note: String,
}

/// A bench's rows with the device figures of the same run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RatioReport {
    /// Bench name (file stem of the outputs).
    pub bench: String,
    /// Device figures measured at the start of the run.
    pub device: DeviceFigures,
    /// One per benchmark that ran.
    pub rows: Vec<RatioRow>,
}

impl RatioReport {
    /// An empty report.
    pub fn new(bench: &str, device: DeviceFigures) -> Self {
        RatioReport {
            bench: bench.into(),
            device,
            rows: Vec::new(),
        }
    }

    /// Output folder: `$MQLAB_BENCH_OUT`, else `<target>/criterion/mqlab`.
    pub fn out_dir() -> PathBuf {
        if let Some(d) = std::env::var_os("MQLAB_BENCH_OUT") {
            return PathBuf::from(d);
        }
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
        target.join("criterion").join("mqlab")
    }

    /// A markdown table of the rows.
    pub fn markdown(&self) -> String {
        let mut s = String::from(
            "| group | id | msg/s | MB/s | p50 µs | p99 µs | device figure | device | ratio | target | note |\n|---|---|---:|---:|---:|---:|---|---:|---:|---:|---|\n",
        );
        for r in &self.rows {
            s.push_str(&format!(
                "| {} | {} | {:.0} | {:.1} | {} | {} | {} | {:.1} | {} | {} | {} |\n",
                r.group,
                r.id,
                r.msgs_per_s,
                r.mb_per_s,
                r.p50_us,
                r.p99_us,
                r.device_figure,
                r.device_value,
                if r.ratio > 0.0 {
                    format!("{:.2}", r.ratio)
                } else {
                    "-".into()
                },
                r.target.map_or("-".into(), |t| format!(">= {t}")),
                r.note
            ));
        }
        s
    }

    /// Prints the table and writes `<bench>.json` and `<bench>.md` into
    /// [`RatioReport::out_dir`]. Rows of an earlier run of the same bench
    /// whose ids did not run this time (a filtered run) are kept, so a
    /// series of filtered runs adds up to one report.
    pub fn write(&mut self) {
        let dir = Self::out_dir();
        if let Err(e) = std::fs::create_dir_all(&dir) {
            eprintln!("mqlab-bench: cannot create {}: {e}", dir.display());
            return;
        }
        let json = dir.join(format!("{}.json", self.bench));
        if let Ok(old) = std::fs::read(&json) {
            if let Ok(old) = serde_json::from_slice::<RatioReport>(&old) {
                for r in old.rows {
                    if !self.rows.iter().any(|n| n.group == r.group && n.id == r.id) {
                        self.rows.push(r);
                    }
                }
            }
        }
        println!("\n{} ratios (device: {})", self.bench, self.device.dir);
        print!("{}", self.markdown());
        let md = format!(
            "# {} bench: figures and ratios to the device, one run\n\n{}\n",
            self.bench,
            self.markdown()
        );
        let ok = serde_json::to_vec_pretty(self)
            .map_err(std::io::Error::other)
            .and_then(|j| std::fs::write(&json, j))
            .and_then(|_| std::fs::write(dir.join(format!("{}.md", self.bench)), md));
        match ok {
            Ok(()) => println!("written to {}", json.display()),
            Err(e) => eprintln!("mqlab-bench: cannot write {}: {e}", json.display()),
        }
    }
}

/// What the timed iterations of one benchmark added up to (criterion
/// keeps its own statistics; the ratio rows want the plain rate).
#[derive(Debug, Clone, Copy, Default)]
pub struct Totals {
    /// Units done (messages, entries, bytes).
    pub units: u64,
    /// Time measured doing them.
    pub elapsed: Duration,
}

impl Totals {
    /// Adds `units` done in `elapsed`; returns `elapsed`, as
    /// `iter_custom` wants it.
    pub fn add(&mut self, units: u64, elapsed: Duration) -> Duration {
        self.units += units;
        self.elapsed += elapsed;
        elapsed
    }

    /// Runs `once` `iters` times, each returning the time of its measured
    /// part, and adds `units_each` per run; returns the time measured.
    pub fn add_each(
        &mut self,
        iters: u64,
        units_each: u64,
        mut once: impl FnMut() -> Duration,
    ) -> Duration {
        let elapsed = (0..iters).map(|_| once()).sum();
        self.add(iters * units_each, elapsed)
    }

    /// Units per second; `None` when nothing ran (the benchmark was
    /// filtered out).
    pub fn per_s(&self) -> Option<f64> {
        (self.units > 0).then(|| self.units as f64 / self.elapsed.as_secs_f64())
    }
}

/// MB/s (10^6 bytes per second) of `per_s` items of `bytes` each.
pub fn mb_per_s(per_s: f64, bytes: usize) -> f64 {
    per_s * bytes as f64 / 1e6
}

/// Size of the commit log the recovery bench builds: `$MQLAB_BENCH_RECOVERY_BYTES`
/// (plain bytes, or with a K/M/G suffix), default 1 GiB.
pub fn recovery_bytes() -> u64 {
    std::env::var("MQLAB_BENCH_RECOVERY_BYTES")
        .ok()
        .and_then(|v| parse_bytes(&v))
        .unwrap_or(1 << 30)
}

/// Parses `123`, `64K`, `256M`, `1G` (binary units).
pub fn parse_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mul) = match s.chars().last()?.to_ascii_uppercase() {
        'K' => (&s[..s.len() - 1], 1u64 << 10),
        'M' => (&s[..s.len() - 1], 1 << 20),
        'G' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.trim().parse::<u64>().ok().map(|n| n * mul)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_size_grows_with_body() {
        assert_eq!(record_bytes(1024) - record_bytes(128), 896);
        assert!(record_bytes(128) > 128 + 91);
    }

    #[test]
    fn interpolation_between_measured_sizes() {
        let f = |b: usize, ops: f64| SyncFigure {
            batch_bytes: b,
            ops_per_s: ops,
            mib_per_s: 0.0,
            p50_us: 100,
            p99_us: 200,
        };
        let d = DeviceFigures {
            sync: vec![f(4096, 1000.0), f(16384, 500.0)],
            ..Default::default()
        };
        assert_eq!(d.sync_at(4096).ops_per_s, 1000.0);
        let mid = d.sync_at(8192).ops_per_s;
        assert!(mid < 1000.0 && mid > 500.0, "{mid}");
        assert_eq!(d.sync_at(1).ops_per_s, 1000.0);
        assert_eq!(d.sync_at(1 << 30).ops_per_s, 500.0);
        assert_eq!(d.durable_msgs_bound(1, 4096), 1000.0);
    }

    #[test]
    fn closed_loop_counts_exactly() {
        let done = Arc::new(AtomicU64::new(0));
        let d2 = done.clone();
        let mut pool = LoadPool::new(4, move |_| {
            d2.fetch_add(1, Ordering::Relaxed);
            true
        });
        for _ in 0..3 {
            let r = pool.run(Until::Ops(1000));
            assert_eq!(r.ops, 1000);
            assert_eq!(r.hist.len(), 1000);
        }
        assert_eq!(done.load(Ordering::Relaxed), 3000);
        let r = closed_loop(2, Until::Ops(10), |_| true);
        assert_eq!(r.ops, 10);
    }

    #[test]
    fn bytes_parse() {
        assert_eq!(parse_bytes("64M"), Some(64 << 20));
        assert_eq!(parse_bytes("1g"), Some(1 << 30));
        assert_eq!(parse_bytes("4096"), Some(4096));
        assert_eq!(parse_bytes("x"), None);
    }
}
