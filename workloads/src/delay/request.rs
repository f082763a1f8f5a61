//! What `mqlab delay` is asked to do, as plain data (the command line
//! fills it): schedulers, timers, the delay pattern, the store under them.

use std::path::PathBuf;

use clap::ValueEnum;
use mqlab_engine::delay::SchedulerKind;
use mqlab_engine::{BackendKind, FlushKind};
use serde::{Deserialize, Serialize};

/// Delay pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pattern {
    /// All due within one second.
    Burst,
    /// Delays uniform in [min, max].
    Uniform,
    /// Delays drawn from the delay levels in [min, max].
    Levels,
}

/// `mqlab delay`'s settings: plain data, which the binary's command line
/// fills (the `#[arg]`s and these comments are its options and their help).
#[derive(Debug, Clone, clap::Args)]
pub struct DelayRequest {
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
