//! mqlab-peers: runs one engine configuration (mqlab, or with the `peers`
//! feature rocketmq-store 1.x and RocksDB) with the same closed-loop driver,
//! measures the device, and turns a set of runs into `summary.json`, a
//! markdown table and a chart. `scripts/peers.sh` drives it.
//!
//! ```text
//! mqlab-peers device --dir D --out device.json [--msg-bytes 1024] [--concurrency 1,16,256]
//! mqlab-peers run --engine E --flush F --concurrency C --msg-bytes B --secs S --dir D [--api blocking|async] [--out runs.jsonl] [--round N]
//! mqlab-peers report --runs runs.jsonl --device device.json --out results/peers
//! ```
//!
//! Engines: `mqlab-pwrite`, `mqlab-mmap`, `mqlab-uring` (flush sync, group,
//! async, pool); with `--features peers`: `rocketmq-store` (its defaults,
//! micro-batching on), `rocketmq-store-nobatch`
//! (`commit_log_micro_batch_enabled = false`), both with flush group
//! (SYNC_FLUSH) or async (ASYNC_FLUSH); `rocksdb` with flush group
//! (`WriteOptions::set_sync(true)`) or async (`set_sync(false)`).
//!
//! mqlab is driven through the blocking `Store::put` from C threads
//! (`--api blocking`, the default) or through `Store::put_async` with C
//! puts in flight from one submitting thread (`--api async`; the result's
//! engine name ends in `-put_async`, see `report::PUT_ASYNC_SUFFIX`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};
use mqlab_bench::report::{self, EngineRun};
use mqlab_bench::{
    async_closed_loop, message, record_bytes, DeviceFigures, LoadPool, LoadResult, Until,
};
use mqlab_engine::{BackendKind, FlushConfig, FlushKind, PutStatus, Store, StoreConfig};

/// The engines this build can run, for `--help`.
const ENGINES: &str = if cfg!(feature = "peers") {
    "engines: mqlab-pwrite mqlab-mmap mqlab-uring rocketmq-store rocketmq-store-nobatch rocksdb"
} else {
    "engines: mqlab-pwrite mqlab-mmap mqlab-uring (build with --features peers for rocketmq-store and rocksdb)"
};

/// mqlab-peers: the same closed-loop driver over mqlab and its peers
/// (scripts/peers.sh drives it).
#[derive(Debug, Parser)]
#[command(name = "mqlab-peers", after_help = ENGINES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measure the device: pwrite+fdatasync per batch size the runs will
    /// use, buffered write and memcpy bandwidth.
    Device(DeviceArgs),
    /// Run one engine configuration and print (and append) its result line.
    Run(RunArgs),
    /// Turn runs and device figures into summary.json, table.md and the chart.
    Report(ReportArgs),
}

#[derive(Debug, clap::Args)]
struct DeviceArgs {
    /// Directory to measure in.
    #[arg(long, value_name = "D")]
    dir: PathBuf,
    /// Where to write the device figures (JSON).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Message sizes the runs use, bytes, comma separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1024",
        value_name = "LIST"
    )]
    msg_bytes: Vec<usize>,
    /// Concurrencies the runs use, comma separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1,16,256",
        value_name = "LIST"
    )]
    concurrency: Vec<usize>,
    /// Milliseconds spent on each batch size.
    #[arg(long, default_value_t = 400, value_name = "MS")]
    per_size_ms: u64,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Engine (see the list below).
    #[arg(long, value_name = "E")]
    engine: String,
    /// Flush strategy: sync, group, async or pool (peers: group or async).
    #[arg(long, value_name = "F")]
    flush: String,
    /// Closed-loop senders.
    #[arg(long, default_value_t = 16, value_name = "C")]
    concurrency: usize,
    /// Message body size, bytes.
    #[arg(long, default_value_t = 1024, value_name = "B")]
    msg_bytes: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 3.0, value_name = "S")]
    secs: f64,
    /// Warmup seconds before the measurement.
    #[arg(long, default_value_t = 0.5, value_name = "S")]
    warmup_secs: f64,
    /// Parent of the run's scratch directory.
    #[arg(long, value_name = "D")]
    dir: PathBuf,
    /// Append the result line to this file too.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Round number recorded with the result.
    #[arg(long, default_value_t = 0, value_name = "N")]
    round: u32,
    /// mqlab only: no index (keys are not indexed).
    #[arg(long)]
    no_index: bool,
    /// mqlab only: pre-fault commit-log segments at creation.
    #[arg(long)]
    preallocate: bool,
    /// mqlab only: write zeros over each commit-log segment before use
    /// (StoreConfig::warm_segments, RocketMQ's warmMapedFileEnable; the
    /// first segment is written when the store opens, before the clock
    /// starts).
    #[arg(long)]
    warm_segments: bool,
    /// mqlab only: `blocking` (Store::put, one thread per put in flight)
    /// or `async` (Store::put_async, C in flight from one thread).
    #[arg(long, value_enum, default_value_t = Api::Blocking)]
    api: Api,
}

/// How mqlab is driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Api {
    /// Store::put from C threads, one put each at a time.
    Blocking,
    /// Store::put_async, C puts in flight from one submitting thread.
    Async,
}

#[derive(Debug, clap::Args)]
struct ReportArgs {
    /// Result lines of `run` (JSON lines).
    #[arg(long, value_name = "FILE")]
    runs: PathBuf,
    /// Device figures of `device` (JSON, or JSON lines: their median).
    #[arg(long, value_name = "FILE")]
    device: PathBuf,
    /// Output folder.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Device(a) => cmd_device(&a),
        Command::Run(a) => cmd_run(&a),
        Command::Report(a) => {
            let files = report::write_report(&a.runs, &a.device, &a.out)?;
            for f in files {
                println!("wrote {}", a.out.join(f).display());
            }
            Ok(())
        }
    }
}

fn cmd_device(a: &DeviceArgs) -> Result<()> {
    let per = Duration::from_millis(a.per_size_ms);
    let d = DeviceFigures::measure(
        &a.dir,
        &DeviceFigures::batch_sizes_for(&a.msg_bytes, &a.concurrency),
        per,
        Duration::from_millis(500),
    )?;
    std::fs::write(&a.out, serde_json::to_vec_pretty(&d)?)?;
    for s in &d.sync {
        println!(
            "pwrite+fdatasync {:>8} B: {:>9.0} ops/s {:>8.1} MiB/s p50 {:>6} µs p99 {:>6} µs",
            s.batch_bytes, s.ops_per_s, s.mib_per_s, s.p50_us, s.p99_us
        );
    }
    println!(
        "buffered write {:.0} MiB/s, memcpy {:.0} MiB/s",
        d.buffered_write_mib_per_s, d.memcpy_mib_per_s
    );
    Ok(())
}

fn cmd_run(a: &RunArgs) -> Result<()> {
    let (engine, flush) = (a.engine.clone(), a.flush.clone());
    let (concurrency, msg_bytes, round) = (a.concurrency, a.msg_bytes, a.round);
    let (secs, warmup) = (a.secs, a.warmup_secs);
    let base = &a.dir;
    std::fs::create_dir_all(base)?;
    let dir = tempfile::Builder::new()
        .prefix(&format!("{engine}-{flush}-"))
        .tempdir_in(base)?;
    let time = Duration::from_secs_f64(secs);
    let warm = Duration::from_secs_f64(warmup);
    let mqlab = engine.starts_with("mqlab-");
    if a.api == Api::Async && !mqlab {
        bail!("--api async drives mqlab only ({engine:?} has its own driver)");
    }
    let (r, summary_flush) = if let Some(backend) = engine.strip_prefix("mqlab-") {
        let knobs = Knobs {
            index: !a.no_index,
            preallocate: a.preallocate,
            warm_segments: a.warm_segments,
            api: a.api,
        };
        run_mqlab(
            backend,
            &flush,
            concurrency,
            msg_bytes,
            warm,
            time,
            dir.path(),
            knobs,
        )?
    } else {
        run_peer(
            &engine,
            &flush,
            concurrency,
            msg_bytes,
            warm,
            time,
            dir.path(),
        )?
    };
    let mut name = engine.clone();
    if mqlab && flush == "pool" {
        name.push_str("-pool");
    }
    if a.api == Api::Async {
        name.push_str(report::PUT_ASYNC_SUFFIX);
    }
    let run = EngineRun {
        engine: name,
        flush: summary_flush.to_string(),
        concurrency,
        msg_bytes,
        msgs_per_s: r.ops_per_s(),
        p50_us: r.hist.value_at_quantile(0.5),
        p99_us: r.hist.value_at_quantile(0.99),
        round,
        record_bytes: if mqlab { record_bytes(msg_bytes) } else { 0 },
    };
    let line = serde_json::to_string(&run)?;
    println!("{line}");
    if let Some(out) = &a.out {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(out)?;
        writeln!(f, "{line}")?;
    }
    Ok(())
}

/// Runs `op` for the warmup, then measures it for `time`.
fn measure<F: Fn(usize) -> bool + Send + Sync + 'static>(
    concurrency: usize,
    warm: Duration,
    time: Duration,
    op: F,
) -> LoadResult {
    let mut pool = LoadPool::new(concurrency, op);
    if !warm.is_zero() {
        pool.run(Until::Time(warm));
    }
    pool.run(Until::Time(time))
}

/// mqlab settings a run may change from the defaults.
struct Knobs {
    /// Build the key index (default on; `--no-index`).
    index: bool,
    /// Preallocate segments (default off; `--preallocate`).
    preallocate: bool,
    /// Write zeros over segments before use (`--warm-segments`).
    warm_segments: bool,
    /// Blocking or asynchronous puts (`--api`).
    api: Api,
}

#[allow(clippy::too_many_arguments)]
fn run_mqlab(
    backend: &str,
    flush: &str,
    concurrency: usize,
    msg_bytes: usize,
    warm: Duration,
    time: Duration,
    dir: &Path,
    knobs: Knobs,
) -> Result<(LoadResult, &'static str)> {
    let backend = match backend {
        "pwrite" => BackendKind::Pwrite,
        "mmap" => BackendKind::Mmap,
        "uring" => BackendKind::Uring,
        other => bail!("unknown mqlab backend {other:?}"),
    };
    let kind: FlushKind = flush.parse().map_err(anyhow::Error::msg)?;
    let cfg = StoreConfig {
        backend,
        flush: FlushConfig::for_kind(kind),
        index_enabled: knobs.index,
        preallocate: knobs.preallocate,
        warm_segments: knobs.warm_segments,
        ..StoreConfig::default()
    };
    let store = std::sync::Arc::new(Store::open(dir.join("store"), cfg)?);
    let r = match knobs.api {
        Api::Blocking => put_blocking(&store, concurrency, msg_bytes, warm, time),
        Api::Async => put_async(&store, concurrency, msg_bytes, warm, time),
    };
    let store = std::sync::Arc::try_unwrap(store)
        .map_err(|_| anyhow::anyhow!("store still shared after the run"))?;
    store.shutdown()?;
    Ok((r?, kind.ack_wait().name()))
}

/// `Store::put` from `concurrency` threads; the first failed put is
/// printed and ends the load, and the run fails.
fn put_blocking(
    store: &std::sync::Arc<Store>,
    concurrency: usize,
    msg_bytes: usize,
    warm: Duration,
    time: Duration,
) -> Result<LoadResult> {
    use std::sync::atomic::{AtomicU64, Ordering};
    let msgs: Vec<_> = (0..concurrency)
        .map(|t| message(msg_bytes, t as u32))
        .collect();
    let failed = std::sync::Arc::new(AtomicU64::new(0));
    let (s2, f2) = (store.clone(), failed.clone());
    let r = measure(concurrency, warm, time, move |t| {
        let store = &s2;
        let res = store.put(&msgs[t]);
        if res.status != PutStatus::PutOk {
            eprintln!("put failed: {:?} {:?}", res.status, res.detail);
            f2.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        true
    });
    match failed.load(Ordering::Relaxed) {
        0 => Ok(r),
        n => bail!("{n} blocking puts failed (printed above)"),
    }
}

/// `Store::put_async` with `concurrency` in flight; every completion is
/// counted, and any failed one fails the run.
fn put_async(
    store: &std::sync::Arc<Store>,
    concurrency: usize,
    msg_bytes: usize,
    warm: Duration,
    time: Duration,
) -> Result<LoadResult> {
    let run = async_closed_loop(store, msg_bytes, concurrency, warm, time);
    let end = &run.end;
    if end.errors > 0 {
        eprintln!(
            "put_async failed: {}",
            end.first_error.as_deref().unwrap_or("?")
        );
        bail!(
            "{} of {} put_async completions failed (first printed above)",
            end.errors,
            end.submitted
        );
    }
    if !end.all_completed() {
        bail!(
            "put_async: {} submitted, {} acknowledged, {} failed, {} still in flight after the drain",
            end.submitted,
            end.acked,
            end.errors,
            end.in_flight
        );
    }
    Ok(run.load)
}

#[cfg(not(feature = "peers"))]
fn run_peer(
    engine: &str,
    _flush: &str,
    _concurrency: usize,
    _msg_bytes: usize,
    _warm: Duration,
    _time: Duration,
    _dir: &Path,
) -> Result<(LoadResult, &'static str)> {
    bail!("engine {engine:?} needs the peers feature: cargo build --release -p mqlab-bench --features peers")
}

#[cfg(feature = "peers")]
fn run_peer(
    engine: &str,
    flush: &str,
    concurrency: usize,
    msg_bytes: usize,
    warm: Duration,
    time: Duration,
    dir: &Path,
) -> Result<(LoadResult, &'static str)> {
    let durable = match flush {
        "group" | "sync" => true,
        "async" => false,
        other => bail!("flush {other:?}: peers take group (durable ack) or async"),
    };
    let class = if durable { "group" } else { "async" };
    match engine {
        "rocksdb" => Ok((
            peers::rocksdb(durable, concurrency, msg_bytes, warm, time, dir)?,
            class,
        )),
        "rocketmq-store" | "rocketmq-store-nobatch" => Ok((
            peers::rocketmq(
                durable,
                engine == "rocketmq-store",
                concurrency,
                msg_bytes,
                warm,
                time,
                dir,
            )?,
            class,
        )),
        other => bail!("unknown engine {other:?}"),
    }
}

/// Debian's librocksdb 7.8.3 (linked through `ROCKSDB_LIB_DIR` by
/// scripts/peers.sh, feature `system-rocksdb`) predates the C API's write
/// buffer manager; the rocksdb crate references its destructor from a drop
/// path this program never reaches (it creates no write buffer manager).
#[cfg(feature = "system-rocksdb")]
#[allow(unsafe_code)]
// SAFETY: a no-op with the C signature `void f(rocksdb_write_buffer_manager_t*)`;
// never called, since no write buffer manager is ever created.
#[unsafe(no_mangle)]
pub extern "C" fn rocksdb_write_buffer_manager_destroy(_manager: *mut std::ffi::c_void) {}

#[cfg(feature = "peers")]
mod peers {
    //! The peer engines, driven in-process like mqlab.

    use super::*;
    use anyhow::Context;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::Instant;

    use bytes::Bytes;
    use cheetah_string::CheetahString;
    use dashmap::DashMap;
    use mqlab_bench::latency_hist;
    use rocketmq_model::common::config::TopicConfig;
    use rocketmq_model::common::message::message_ext::MessageExt;
    use rocketmq_model::common::message::message_ext_broker_inner::MessageExtBrokerInner;
    use rocketmq_model::common::message::message_single::Message;
    use rocketmq_runtime::{RuntimeConfig, RuntimeOwner};
    use rocketmq_store::{
        BrokerStorePort, FlushDiskType, MessageStoreConfig, PutMessageStatus, StoreFactory,
        StoreFactoryConfig, StoreRuntimeConfig, StoreTelemetry,
    };

    /// RocksDB `put` with the WAL on, `sync` per `durable`.
    pub fn rocksdb(
        durable: bool,
        concurrency: usize,
        msg_bytes: usize,
        warm: Duration,
        time: Duration,
        dir: &Path,
    ) -> Result<LoadResult> {
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(true);
        let db = Arc::new(rocksdb::DB::open(&opts, dir.join("rocksdb"))?);
        let mut wo = rocksdb::WriteOptions::default();
        wo.set_sync(durable);
        let value = vec![b'x'; msg_bytes];
        let seq = AtomicU64::new(0);
        let db2 = db.clone();
        let r = measure(concurrency, warm, time, move |_| {
            let db = &db2;
            let k = seq.fetch_add(1, Ordering::Relaxed).to_be_bytes();
            match db.put_opt(k, &value, &wo) {
                Ok(()) => true,
                Err(e) => {
                    eprintln!("rocksdb put failed: {e}");
                    false
                }
            }
        });
        drop(db);
        Ok(r)
    }

    fn inner_message(topic: &str, queue_id: i32, body: &Bytes) -> MessageExtBrokerInner {
        let msg = Message::builder()
            .topic(topic)
            .body(body.clone())
            .build_unchecked();
        let mut ext = MessageExt::default();
        ext.set_message_inner(msg);
        ext.set_queue_id(queue_id);
        ext.set_born_host(std::net::SocketAddr::from(([127, 0, 0, 1], 40000)));
        ext.set_store_host(std::net::SocketAddr::from(([127, 0, 0, 1], 10911)));
        ext.set_born_timestamp(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0),
        );
        MessageExtBrokerInner {
            message_ext_inner: ext,
            ..Default::default()
        }
    }

    /// rocketmq-store 1.x, in-process, `concurrency` tasks on its own
    /// runtime each putting one message at a time.
    pub fn rocketmq(
        durable: bool,
        micro_batch: bool,
        concurrency: usize,
        msg_bytes: usize,
        warm: Duration,
        time: Duration,
        dir: &Path,
    ) -> Result<LoadResult> {
        let owner = RuntimeOwner::plan(RuntimeConfig::server_default("mqlab-peers"))?.build()?;
        let ctx = owner.root_context().component("peer-store");
        let defaults = MessageStoreConfig::default();
        let cfg = MessageStoreConfig {
            store_path_root_dir: CheetahString::from_string(
                dir.join("rocketmq").to_string_lossy().to_string(),
            ),
            flush_disk_type: if durable {
                FlushDiskType::SyncFlush
            } else {
                FlushDiskType::AsyncFlush
            },
            ha_listen_port: 0,
            ha_listen_address: "127.0.0.1".parse()?,
            timer_wheel_enable: false,
            commit_log_micro_batch_enabled: if micro_batch {
                defaults.commit_log_micro_batch_enabled
            } else {
                false
            },
            ..defaults
        };
        let topics: Arc<DashMap<CheetahString, Arc<TopicConfig>>> = Arc::new(DashMap::new());
        let topic = mqlab_bench::TOPIC;
        let queues = mqlab_bench::QUEUES;
        topics.insert(
            CheetahString::from_static_str(topic),
            Arc::new(TopicConfig::with_queues(topic, queues, queues)),
        );
        let factory_cfg = StoreFactoryConfig::try_new(
            Arc::new(cfg),
            Arc::new(StoreRuntimeConfig::default()),
            topics,
            None,
            false,
            StoreTelemetry::noop(),
        )
        .context("rocketmq-store rejected the configuration")?;
        let (mut store, _timer) = StoreFactory::open(factory_cfg, ctx)?.into_parts();
        let body = Bytes::from(vec![b'x'; msg_bytes]);
        let result = owner.block_on(async move {
            store.init().await?;
            anyhow::ensure!(store.load().await, "rocketmq-store load failed");
            store.start().await?;
            let store = Arc::new(store);
            let run = |d: Duration| {
                let store = store.clone();
                let body = body.clone();
                async move {
                    let stop = Arc::new(AtomicBool::new(false));
                    let mut tasks = Vec::new();
                    for t in 0..concurrency {
                        let (store, stop, body) = (store.clone(), stop.clone(), body.clone());
                        tasks.push(tokio::spawn(async move {
                            let mut h = latency_hist();
                            let mut failed = None;
                            let qid = (t as u32 % queues) as i32;
                            while !stop.load(Ordering::Relaxed) {
                                let m = inner_message(topic, qid, &body);
                                let t0 = Instant::now();
                                let r = store.put_message_shared(m).await;
                                if r.put_message_status() != PutMessageStatus::PutOk {
                                    failed = Some(format!("{:?}", r.put_message_status()));
                                    break;
                                }
                                h.saturating_record(t0.elapsed().as_micros() as u64);
                            }
                            (h, failed)
                        }));
                    }
                    let start = Instant::now();
                    tokio::time::sleep(d).await;
                    stop.store(true, Ordering::Relaxed);
                    let mut hist = latency_hist();
                    let mut err = None;
                    for t in tasks {
                        let (h, f) = t.await?;
                        hist.add(&h).expect("same bounds");
                        err = err.or(f);
                    }
                    let elapsed = start.elapsed();
                    if let Some(e) = err {
                        anyhow::bail!("rocketmq-store put failed: {e}");
                    }
                    Ok::<_, anyhow::Error>(LoadResult {
                        ops: hist.len(),
                        elapsed,
                        hist,
                    })
                }
            };
            if !warm.is_zero() {
                run(warm).await?;
            }
            let r = run(time).await?;
            let mut store = Arc::try_unwrap(store)
                .map_err(|_| anyhow::anyhow!("store still shared after the run"))?;
            store.shutdown_gracefully().await?;
            Ok::<_, anyhow::Error>(r)
        });
        let _ = owner.shutdown_runtime_blocking();
        result
    }
}
