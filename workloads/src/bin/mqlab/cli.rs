//! Command-line interface: every subcommand, its options and their defaults.
//!
//! Options that a spec file can also set are `Option`s here, so that the
//! precedence is explicit: a flag given on the command line beats the spec,
//! which beats the built-in default named in the help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use mqlab::baseline::BaselineRequest;
use mqlab::crash::{CrashMode, CrashParams};
use mqlab::delay::{DelayRequest, Pattern};
use mqlab::matrix::MatrixRequest;
use mqlab::run::RunRequest;
use mqlab::spec::Overrides;
use mqlab_engine::delay::SchedulerKind;
use mqlab_engine::{BackendKind, FlushKind};

/// mqlab: measure what each flush strategy and I/O backend of a
/// RocketMQ-style store costs, and what it can lose.
///
/// With no subcommand, runs `mqlab matrix` with its defaults.
#[derive(Debug, Parser)]
#[command(name = "mqlab", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one workload against an in-process store and record throughput,
    /// ack latency and the loss window.
    Run(RunArgs),
    /// Run the flush x backend matrix (plus a few async flush intervals) and
    /// the device baseline, print the table and draw the charts. The default
    /// command; 78 s on the 2-core development machine.
    Matrix(MatrixArgs),
    /// Measure the raw device in a data directory: pwrite+fdatasync rate per
    /// batch size and buffered write bandwidth.
    Baseline(BaselineArgs),
    /// Simulated crash experiment on the `sim` backend: crash at seeded random
    /// moments, recover, and compare acknowledged messages lost with the loss
    /// window sampled at the crash instant.
    Crash(CrashArgs),
    /// Recover a store directory in memory (never modifying it), check every
    /// record's CRC and that every acknowledged message of an ack log is
    /// present. Exit status 0 only when nothing is missing or corrupt.
    Verify(VerifyArgs),
    /// Show a store directory's segments, offsets, queues, checkpoint and
    /// what recovery would truncate (never modifies it).
    Inspect(InspectArgs),
    /// Draw charts (SVG and PNG) from result folders.
    Plot(PlotArgs),
    /// Timer levels vs the time wheel: schedule N delayed messages, deliver
    /// them, and record schedule rate, lateness, bytes per timer, and
    /// losses and duplicates across an optional crash.
    Delay(DelayArgs),
}

/// Workload options shared by `run` and `matrix`.
#[derive(Debug, Args, Clone, Default)]
pub struct WorkloadArgs {
    /// Producer threads. [default: 4]
    #[arg(long, value_name = "N")]
    pub producers: Option<usize>,
    /// Outstanding sends per producer. `Store::put` is synchronous, so each
    /// producer runs N sender threads, each with one put in flight
    /// (producers x inflight threads in all). [default: 1]
    #[arg(long, value_name = "N")]
    pub inflight: Option<usize>,
    /// Message body size in bytes. [default: 1024]
    #[arg(long, value_name = "BYTES")]
    pub msg_size: Option<usize>,
    /// Target send rate over all producers, messages per second; 0 = as fast
    /// as possible. With a rate, latency is also recorded against each
    /// message's intended send time (coordinated omission shows). [default: 0]
    #[arg(long, value_name = "MSGS_PER_S")]
    pub rate: Option<f64>,
    /// Measured duration in seconds, after the warmup. [default: 5 for run,
    /// 3 for matrix, 1 for matrix --quick]
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Stop after this many messages in all (warmup included) instead of
    /// after a duration.
    #[arg(long, value_name = "N")]
    pub messages: Option<u64>,
    /// Warmup in seconds, excluded from every statistic. [default: 1 for run
    /// (0 with --messages), 0.5 for matrix, 0.25 for matrix --quick]
    #[arg(long, value_name = "SECS")]
    pub warmup: Option<f64>,
    /// Queues of the topic; messages go round-robin. [default: 8]
    #[arg(long, value_name = "N")]
    pub queues: Option<u32>,
    /// Give every message a unique key (KEYS property, indexed), so `verify`
    /// can look it up. [default: true]
    #[arg(long, value_name = "BOOL")]
    pub keys: Option<bool>,
    /// Topic name. [default: mqlab]
    #[arg(long, value_name = "NAME")]
    pub topic: Option<String>,
    /// Async/pool flusher period in ms (flushIntervalCommitLog). [default: 500]
    #[arg(long, value_name = "MS")]
    pub flush_interval_ms: Option<u64>,
    /// Group commit only: puts copy into a memory staging area and the
    /// group-commit service writes each batch with one write before its
    /// fdatasync (true), or every put writes its own record, as RocketMQ's
    /// GroupCommitService does (false). Acks wait for the fdatasync either
    /// way. [default: true]
    #[arg(long, value_name = "BOOL")]
    pub group_batch_writes: Option<bool>,
    /// Commit-log segment size in bytes. [default: 1073741824 (1 GiB)]
    #[arg(long, value_name = "BYTES")]
    pub segment_bytes: Option<u64>,
    /// Small store files (StoreConfig::small(): 1 MiB segments, small
    /// consume-queue and index files) for tests and quick checks; the
    /// default is RocketMQ's geometry (1 GiB segments, 420 MB index files).
    #[arg(long)]
    pub small_files: bool,
    /// Time-series bucket in ms (timeseries.csv rows and the over-time
    /// chart). [default: 100 for runs under 10 s with warmup (coarser with
    /// hundreds of senders), else 1000]
    #[arg(long, value_name = "MS")]
    pub timeseries_ms: Option<u64>,
    /// Loss-window sampling period in ms (at most 10). [default: 5]
    #[arg(long, value_name = "MS")]
    pub sample_ms: Option<u64>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Workload spec (TOML, see workloads/specs/); command-line flags
    /// override its values.
    #[arg(long, value_name = "FILE")]
    pub spec: Option<PathBuf>,
    /// Flush strategy: sync (fdatasync per put), group (group commit), async
    /// (periodic flusher), pool (transient store pool). [default: async]
    #[arg(long, value_name = "STRATEGY")]
    pub flush: Option<FlushKind>,
    /// I/O backend: pwrite, mmap or uring. [default: pwrite]
    #[arg(long, value_name = "BACKEND")]
    pub backend: Option<BackendKind>,
    #[command(flatten)]
    pub workload: WorkloadArgs,
    /// Store directory, created if missing (and then removed again if the
    /// run fails). [default: a fresh temporary directory, removed
    /// afterwards]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Keep the data directory (only matters for the default temporary one).
    #[arg(long)]
    pub keep_data: bool,
    /// The run's output folder (summary.json, timeseries.csv,
    /// ack_latency.hgrm, command.txt), created if missing (and then removed
    /// again if the run fails); an existing folder is written into and
    /// never removed. [default: results/<timestamp>-<name>/, with -2, -3,
    /// ... added when that folder exists]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Write one CSV line per acknowledged message, as acks arrive, with the
    /// header `topic,queue_id,queue_offset,phys_offset,key` (input of
    /// `verify --acked`).
    #[arg(long, value_name = "FILE")]
    pub ack_log: Option<PathBuf>,
    /// Write each ack-log line to the file as it is acknowledged (one
    /// write per ack) instead of through a 64 KiB buffer, so that a run
    /// killed with SIGKILL leaves every acknowledgement it made in the log
    /// (scripts/reliability.sh needs this to measure what `pool` loses).
    #[arg(long)]
    pub ack_log_unbuffered: bool,
    /// Skip the device baseline (no ratios to the device in the summary).
    #[arg(long)]
    pub no_baseline: bool,
    /// Leave the store as a crash would (no clean shutdown), e.g. to test
    /// `verify` on an unclean directory.
    #[arg(long)]
    pub no_shutdown: bool,
    /// Run name used in the output folder. [default: the spec name, or
    /// <flush>-<backend>]
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct MatrixArgs {
    /// Short run (29 s in all on the 2-core development machine, where the
    /// default matrix takes 78 s): 1 s per configuration after 0.25 s of
    /// warmup (the default is 3 s after 0.5 s).
    #[arg(long)]
    pub quick: bool,
    /// Flush strategies to run, comma separated. [default: sync,group,async,pool]
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub flush: Vec<FlushKind>,
    /// Backends to run, comma separated; uring is skipped with a note where
    /// the kernel lacks it. [default: pwrite,mmap,uring]
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub backend: Vec<BackendKind>,
    /// Extra async runs (pwrite backend) with these flush intervals in ms,
    /// besides the default 500 ms. Give `--intervals ''` for none.
    /// [default: 10,100,1000]
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub intervals: Option<Vec<String>>,
    #[command(flatten)]
    pub workload: WorkloadArgs,
    /// Parent of the per-run temporary data directories (each removed after
    /// its run). Must be on the disk you want to measure. [default: the
    /// system temporary directory]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Output folder, created if missing (and then removed again if the
    /// matrix fails). [default: results/<timestamp>/, with -2, -3, ...
    /// added when that folder exists; results/latest is pointed at it once
    /// the matrix succeeded]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Do not draw charts.
    #[arg(long)]
    pub no_plot: bool,
    /// Skip the device baseline.
    #[arg(long)]
    pub no_baseline: bool,
}

impl MatrixArgs {
    /// The matrix with every default, as `mqlab` with no subcommand runs it.
    pub fn parse_default() -> MatrixArgs {
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            m: MatrixArgs,
        }
        Wrapper::parse_from(["mqlab"]).m
    }
}

#[derive(Debug, Args)]
pub struct BaselineArgs {
    /// Directory to measure in (a scratch file is created and removed).
    /// [default: the system temporary directory]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Batch sizes for pwrite+fdatasync, bytes, comma separated.
    /// [default: 4096,16384,65536,262144,1048576]
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub batch_sizes: Vec<usize>,
    /// Seconds spent on each batch size.
    #[arg(long, default_value_t = 0.4, value_name = "SECS")]
    pub secs_per_size: f64,
    /// Seconds of buffered writes (no sync) for the bandwidth figure.
    #[arg(long, default_value_t = 0.5, value_name = "SECS")]
    pub buffered_secs: f64,
    /// Write baseline.json into this folder as well.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CrashArgs {
    /// Flush strategy under test.
    #[arg(long, default_value = "async", value_name = "STRATEGY")]
    pub flush: FlushKind,
    /// power (only durable bytes survive) or process (the page cache
    /// survives; interesting for `pool`).
    #[arg(long, value_enum, default_value_t = CrashMode::Power)]
    pub mode: CrashMode,
    /// Number of crashes; crash i runs its own workload on a fresh simulated
    /// disk seeded with seed + i.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub crashes: u32,
    /// Seed of the first crash (disk, crash moment, torn writes).
    #[arg(long, default_value_t = 1, value_name = "S")]
    pub seed: u64,
    /// Producer threads.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub producers: usize,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 256, value_name = "BYTES")]
    pub msg_size: usize,
    /// Queues of the topic.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub queues: u32,
    /// Async/pool flusher period in ms.
    #[arg(long, default_value_t = 100, value_name = "MS")]
    pub flush_interval_ms: u64,
    /// Earliest crash moment after the workload starts, ms.
    #[arg(long, default_value_t = 50, value_name = "MS")]
    pub min_ms: u64,
    /// Latest crash moment after the workload starts, ms.
    #[arg(long, default_value_t = 400, value_name = "MS")]
    pub max_ms: u64,
    /// Power mode only: let a seeded prefix of the in-flight writes survive,
    /// the last one torn at a random byte (as real disks do).
    #[arg(long, default_value_t = true, value_name = "BOOL", action = clap::ArgAction::Set)]
    pub torn: bool,
    /// Output folder, created if missing (and then removed again if the
    /// experiment cannot run). [default:
    /// results/<timestamp>-crash-<flush>-<mode>/, with -2, -3, ... added
    /// when that folder exists]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Store directory to verify (read only: recovery happens in memory).
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Ack log written by `mqlab run --ack-log` (CSV
    /// `topic,queue_id,queue_offset,phys_offset,key`): every line must be
    /// present, reachable through its consume queue and, with a key, through
    /// the index.
    #[arg(long, value_name = "FILE")]
    pub acked: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Skip the index lookup of keys (faster on big ack logs).
    #[arg(long)]
    pub no_index: bool,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Store directory to inspect (read only).
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PlotArgs {
    /// Result folders: a matrix folder, run folders (with summary.json) or
    /// crash folders (with crashes.json).
    #[arg(required = true, value_name = "IN")]
    pub inputs: Vec<PathBuf>,
    /// Where to write the charts (SVG and PNG).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// `mqlab delay`.
#[derive(Debug, Args)]
pub struct DelayArgs {
    /// Schedulers, comma separated: wheel, levels (one thread per level),
    /// levels-single-thread. [default: wheel,levels,levels-single-thread]
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub scheduler: Vec<SchedulerKind>,
    /// Timers to schedule per scheduler.
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    pub timers: u64,
    /// Delay pattern.
    #[arg(long, value_enum, default_value_t = Pattern::Burst)]
    pub pattern: Pattern,
    /// Crash the process (scheduler and store dropped without shutdown,
    /// page cache kept) this many seconds after scheduling starts, then
    /// recover and go on.
    #[arg(long, value_name = "SECS")]
    pub crash_at: Option<f64>,
    /// Output folder. [default: results/delay-<timestamp>]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// I/O backend of the store (RocketMQ maps its files: mmap).
    #[arg(long, default_value = "mmap", value_name = "BACKEND")]
    pub backend: BackendKind,
    /// Flush strategy of the store.
    #[arg(long, default_value = "async", value_name = "STRATEGY")]
    pub flush: FlushKind,
    /// Parent of the scratch store directories (removed afterwards).
    /// [default: the system temporary directory]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Wheel slot width, ms.
    #[arg(long, default_value_t = 1_000, value_name = "MS")]
    pub precision_ms: u64,
    /// Wheel delivery threads.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub deliver_threads: usize,
    /// Shortest delay (uniform, levels), ms.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub min_delay_ms: u64,
    /// Longest delay (uniform, levels), ms.
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    pub max_delay_ms: u64,
    /// Burst: due times spread over this many ms (0 = all the same ms).
    #[arg(long, default_value_t = 1_000, value_name = "MS")]
    pub burst_spread_ms: u64,
    /// Burst: it starts this long after the run. [default: 2 s + 8 µs per
    /// timer, so that scheduling ends before it]
    #[arg(long, value_name = "MS")]
    pub lead_ms: Option<u64>,
    /// Message body size, bytes.
    #[arg(long, default_value_t = 100, value_name = "BYTES")]
    pub body_bytes: usize,
    /// Queues of the real topic.
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub queues: u32,
    /// Give up waiting for deliveries this long after the last due time, ms.
    #[arg(long, default_value_t = 60_000, value_name = "MS")]
    pub grace_ms: u64,
    /// Do not pre-fault commit-log segments at creation (first writes to
    /// each page then pay a page fault inside the measured deliveries).
    /// Pre-faulting a 1 GiB segment stalls the put that creates it for a
    /// second or more: the first segment is created before measuring, but
    /// runs that fill more than one segment (millions of timers) measure
    /// fairer lateness with this flag.
    #[arg(long)]
    pub no_preallocate: bool,
    /// Seed of the delay draws.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Do not draw charts.
    #[arg(long)]
    pub no_plot: bool,
}

// The command line as the library's plain request structs: the only
// place that knows both.

impl From<WorkloadArgs> for Overrides {
    fn from(a: WorkloadArgs) -> Overrides {
        Overrides {
            producers: a.producers,
            inflight: a.inflight,
            msg_size: a.msg_size,
            rate: a.rate,
            duration: a.duration,
            messages: a.messages,
            warmup: a.warmup,
            queues: a.queues,
            keys: a.keys,
            topic: a.topic,
            flush_interval_ms: a.flush_interval_ms,
            group_batch_writes: a.group_batch_writes,
            segment_bytes: a.segment_bytes,
            small_files: a.small_files,
            timeseries_ms: a.timeseries_ms,
            sample_ms: a.sample_ms,
        }
    }
}

impl From<RunArgs> for RunRequest {
    fn from(a: RunArgs) -> RunRequest {
        RunRequest {
            spec: a.spec,
            flush: a.flush,
            backend: a.backend,
            workload: a.workload.into(),
            data_dir: a.data_dir,
            keep_data: a.keep_data,
            out: a.out,
            ack_log: a.ack_log,
            ack_log_unbuffered: a.ack_log_unbuffered,
            no_baseline: a.no_baseline,
            no_shutdown: a.no_shutdown,
            name: a.name,
        }
    }
}

impl MatrixArgs {
    /// The matrix request; fails on an `--intervals` entry that is not a
    /// number (empty entries are skipped, so `--intervals ''` is none).
    pub fn request(self) -> anyhow::Result<MatrixRequest> {
        let intervals = match self.intervals {
            None => None,
            Some(list) => Some(
                list.iter()
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| {
                        s.trim().parse::<u64>().map_err(|_| {
                            anyhow::anyhow!("--intervals: {s:?} is not a number of ms")
                        })
                    })
                    .collect::<anyhow::Result<Vec<u64>>>()?,
            ),
        };
        Ok(MatrixRequest {
            quick: self.quick,
            flush: self.flush,
            backend: self.backend,
            intervals,
            workload: self.workload.into(),
            data_dir: self.data_dir,
            out: self.out,
            no_plot: self.no_plot,
            no_baseline: self.no_baseline,
        })
    }
}

impl From<BaselineArgs> for BaselineRequest {
    fn from(a: BaselineArgs) -> BaselineRequest {
        BaselineRequest {
            data_dir: a.data_dir,
            batch_sizes: a.batch_sizes,
            secs_per_size: a.secs_per_size,
            buffered_secs: a.buffered_secs,
            out: a.out,
            json: a.json,
        }
    }
}

impl CrashArgs {
    /// The settings every crash of the experiment runs with.
    pub fn params(&self) -> CrashParams {
        CrashParams {
            flush: self.flush,
            mode: self.mode,
            producers: self.producers,
            msg_size: self.msg_size,
            queues: self.queues,
            flush_interval_ms: self.flush_interval_ms,
            min_ms: self.min_ms,
            max_ms: self.max_ms.max(self.min_ms),
            torn: self.torn,
        }
    }
}

impl From<DelayArgs> for DelayRequest {
    fn from(a: DelayArgs) -> DelayRequest {
        DelayRequest {
            scheduler: a.scheduler,
            timers: a.timers,
            pattern: a.pattern,
            crash_at: a.crash_at,
            out: a.out,
            backend: a.backend,
            flush: a.flush,
            data_dir: a.data_dir,
            precision_ms: a.precision_ms,
            deliver_threads: a.deliver_threads,
            min_delay_ms: a.min_delay_ms,
            max_delay_ms: a.max_delay_ms,
            burst_spread_ms: a.burst_spread_ms,
            lead_ms: a.lead_ms,
            body_bytes: a.body_bytes,
            queues: a.queues,
            grace_ms: a.grace_ms,
            no_preallocate: a.no_preallocate,
            seed: a.seed,
            no_plot: a.no_plot,
        }
    }
}
