//! Command-line interface: every subcommand, its options and their defaults.
//! Where a subcommand's options are exactly a library request
//! (`RunRequest`, `Overrides`, `BaselineRequest`, `DelayRequest`), that
//! struct derives `clap::Args` and is parsed directly; the structs here are
//! the ones whose options still need turning into a request.
//!
//! Options that a spec file can also set are `Option`s, so that the
//! precedence is explicit: a flag given on the command line beats the spec,
//! which beats the built-in default named in the help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use mqlab::baseline::BaselineRequest;
use mqlab::crash::{CrashMode, CrashParams};
use mqlab::delay::DelayRequest;
use mqlab::matrix::MatrixRequest;
use mqlab::run::RunRequest;
use mqlab::spec::Overrides;
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
    /// ack latency and the loss window; with --target rocketmq://HOST:PORT,
    /// against a remoting broker found through that name server.
    Run(RunRequest),
    /// Run the flush x backend matrix (plus a few async flush intervals) and
    /// the device baseline, print the table and draw the charts. The default
    /// command; 78 s on the 2-core development machine.
    Matrix(MatrixArgs),
    /// Measure the raw device in a data directory: pwrite+fdatasync rate per
    /// batch size and buffered write bandwidth.
    Baseline(BaselineRequest),
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
    /// Combine the result folders of `run --target` runs on several load
    /// hosts (started together with --start-at) into one result, exactly:
    /// histograms add, counts and errors by code add, time series add by
    /// wall-clock second; writes summary.json, .hgrm and charts as a run.
    Merge(mqlab::merge::MergeRequest),
    /// Timer levels vs the time wheel: schedule N delayed messages, deliver
    /// them, and record schedule rate, lateness, bytes per timer, and
    /// losses and duplicates across an optional crash.
    Delay(DelayRequest),
    /// A RocketMQ-compatible broker on TCP (with an embedded name server
    /// unless --namesrv is given) that real RocketMQ clients use; runs until
    /// Ctrl-C or SIGTERM, then shuts down cleanly.
    Broker(mqlab::serve::BrokerRequest),
    /// A standalone RocketMQ name server on TCP (brokers register with
    /// `mqlab broker --namesrv HOST:PORT`); runs until Ctrl-C or SIGTERM.
    Namesrv(mqlab::serve::NamesrvRequest),
    /// A controller (RocketMQ 5's controller mode): decides which broker of
    /// each group is master, elects a new one when the master's
    /// heartbeats stop; one alone, or three with --peers (Raft).
    Controller(mqlab::serve::ControllerRequest),
    /// Peers on the wire (scripts/peers-wire.sh): `redis` drives a Redis
    /// server with pipelined XADDs; `report` aggregates the script's runs
    /// into summary.json, table.csv and a chart.
    PeersWire(mqlab::peers_wire::PeersWireRequest),
    /// What each replication mode loses when the master dies: master and
    /// slave broker processes, SIGKILL of the master at seeded moments,
    /// `verify --acked` on the surviving slave (issue 14).
    Ha(mqlab::ha::HaRequest),
    /// Turn the store of a killed broker (run with --power-loss-marks)
    /// into what a power loss at that moment could have left: unsynced
    /// appended bytes zeroed, in-place files back to their last synced
    /// copy; prints per file what was dropped (issue 14).
    Powerloss(mqlab::ha::powerloss::PowerLossRequest),
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
    pub workload: Overrides,
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
    /// The family of configurations: `store` (flush x backend in
    /// process) or `wire` (each flush strategy in process and over
    /// loopback TCP against a mqlab broker the lab starts: what the
    /// network costs). [default: store]
    #[arg(long, value_name = "FAMILY")]
    pub family: Option<mqlab::matrix::Family>,
    /// Print the families and what each runs, then exit.
    #[arg(long)]
    pub list_families: bool,
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
    /// the index. An ack log written from what a wire client was told
    /// (CSV `topic,queue_id,queue_offset,msg_id,key`, queue id optional,
    /// msg_id the unique or the offset message id) is resolved to its
    /// records first; a line naming none is missing.
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

// The options that are not a library request as they stand, turned into
// one.

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
            workload: self.workload,
            data_dir: self.data_dir,
            out: self.out,
            no_plot: self.no_plot,
            no_baseline: self.no_baseline,
            family: self.family.unwrap_or_default(),
        })
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
