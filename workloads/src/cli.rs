//! Command-line interface: every subcommand, its options and their defaults.
//!
//! Options that a spec file can also set are `Option`s here, so that the
//! precedence is explicit: a flag given on the command line beats the spec,
//! which beats the built-in default named in the help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
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
    Delay(crate::delay::DelayArgs),
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

/// What a crash takes away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CrashMode {
    /// Power loss: only durable (fdatasync'ed) bytes survive; window =
    /// acked - flushed.
    Power,
    /// Process crash: the page cache survives; window = acked - committed.
    Process,
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
