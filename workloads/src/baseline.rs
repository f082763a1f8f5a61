//! The device baseline: what the disk under the data directory can do,
//! measured in the same run as the store so every figure can be reported as
//! a ratio to it (STYLE.md: a performance claim is a ratio measured in one
//! run against a baseline measured in the same run).
//!
//! - pwrite+fdatasync: sequential writes of one batch size into a file
//!   pre-sized with set_len (as the store's segments are), each followed by
//!   fdatasync; ops/s, MiB/s, p50/p99 of the pair. The 4 KiB rate bounds
//!   `sync` (one fdatasync per message); the bigger batches bound `group`.
//! - buffered write: 1 MiB writes without any sync, the page-cache
//!   bandwidth that bounds `async` and `pool`.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mqlab_engine::device;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::recorder::latency_hist;
use crate::table::{render_table, round3};
use crate::util::thousands;

/// Batch sizes measured by default, bytes.
pub const DEFAULT_BATCH_SIZES: [usize; 5] = [4096, 16 * 1024, 64 * 1024, 256 * 1024, 1 << 20];

/// One batch size's pwrite+fdatasync figures.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SyncBatch {
    /// Bytes per pwrite.
    pub batch_bytes: usize,
    /// pwrite+fdatasync pairs per second.
    pub ops_per_s: f64,
    /// MiB per second.
    pub mib_per_s: f64,
    /// Median pair latency, µs.
    pub p50_us: u64,
    /// 99th percentile, µs.
    pub p99_us: u64,
    /// Pairs measured.
    pub ops: u64,
}

/// What the device did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Baseline {
    /// 4 KiB pwrite+fdatasync per second (the sync flush ceiling).
    pub fdatasync_per_s: f64,
    /// p50 of a 4 KiB pwrite+fdatasync, µs.
    pub fdatasync_p50_us: u64,
    /// p99 of a 4 KiB pwrite+fdatasync, µs.
    pub fdatasync_p99_us: u64,
    /// Every batch size.
    pub sync_batches: Vec<SyncBatch>,
    /// Buffered (page cache) write bandwidth, MiB/s.
    pub buffered_write_mib_per_s: f64,
    /// Filesystem type of the directory measured.
    pub filesystem: String,
    /// Wall time of the whole measurement, s.
    pub elapsed_s: f64,
}

impl Baseline {
    /// Best MiB/s over the batch sizes.
    pub fn best_sync_batch_mib_per_s(&self) -> f64 {
        self.sync_batches
            .iter()
            .map(|b| b.mib_per_s)
            .fold(0.0, f64::max)
    }

    /// A printable table.
    pub fn table(&self) -> String {
        let mut rows = vec![vec![
            "pwrite+fdatasync batch".to_string(),
            "ops/s".into(),
            "MiB/s".into(),
            "p50 µs".into(),
            "p99 µs".into(),
        ]];
        for b in &self.sync_batches {
            rows.push(vec![
                format!("{} KiB", b.batch_bytes / 1024),
                thousands(b.ops_per_s),
                format!("{:.1}", b.mib_per_s),
                thousands(b.p50_us as f64),
                thousands(b.p99_us as f64),
            ]);
        }
        rows.push(vec![
            "buffered write (1 MiB, no sync)".into(),
            "-".into(),
            format!("{:.1}", self.buffered_write_mib_per_s),
            "-".into(),
            "-".into(),
        ]);
        render_table(&rows)
    }
}

/// Settings of a measurement.
#[derive(Debug, Clone)]
pub struct BaselineParams {
    /// Batch sizes, bytes.
    pub batch_sizes: Vec<usize>,
    /// Time per batch size.
    pub per_size: Duration,
    /// Time of buffered writes.
    pub buffered: Duration,
}

impl Default for BaselineParams {
    fn default() -> Self {
        BaselineParams {
            batch_sizes: DEFAULT_BATCH_SIZES.to_vec(),
            per_size: Duration::from_millis(400),
            buffered: Duration::from_millis(500),
        }
    }
}

const FILE_BYTES: u64 = 256 << 20;

// The primitives live in mqlab_engine::device (shared with the benches).
fn budget(time: Duration) -> device::Budget {
    device::Budget {
        time,
        min_ops: 3,
        file_bytes: FILE_BYTES,
    }
}

fn measure_sync(path: &Path, batch: usize, time: Duration) -> Result<SyncBatch> {
    let mut hist = latency_hist();
    let run =
        device::pwrite_fdatasync(path, batch, budget(time), &crate::util::stopped, &mut |d| {
            hist.saturating_record(d.as_micros() as u64)
        })
        .with_context(|| format!("pwrite+fdatasync on {}", path.display()))?;
    Ok(SyncBatch {
        batch_bytes: batch,
        ops_per_s: round3(run.ops_per_s()),
        mib_per_s: round3(run.mib_per_s()),
        p50_us: hist.value_at_quantile(0.5),
        p99_us: hist.value_at_quantile(0.99),
        ops: run.ops,
    })
}

fn measure_buffered(path: &Path, time: Duration) -> Result<f64> {
    let bw = device::buffered_write(path, 1 << 20, budget(time), &crate::util::stopped)
        .with_context(|| format!("buffered write on {}", path.display()))?;
    Ok(round3(bw.mib_per_s()))
}

/// Measures the device under `dir` (scratch files are removed afterwards).
pub fn measure(dir: &Path, p: &BaselineParams) -> Result<Baseline> {
    fs::create_dir_all(dir).with_context(|| format!("create data dir {}", dir.display()))?;
    let t = Instant::now();
    let path = dir.join(format!("mqlab-baseline-{}.tmp", std::process::id()));
    let mut batches = Vec::new();
    for &b in &p.batch_sizes {
        batches.push(measure_sync(&path, b, p.per_size)?);
    }
    let buffered = measure_buffered(&path, p.buffered)?;
    let four_k = batches
        .iter()
        .find(|b| b.batch_bytes == 4096)
        .or(batches.first())
        .cloned()
        .unwrap_or_default();
    Ok(Baseline {
        fdatasync_per_s: four_k.ops_per_s,
        fdatasync_p50_us: four_k.p50_us,
        fdatasync_p99_us: four_k.p99_us,
        sync_batches: batches,
        buffered_write_mib_per_s: buffered,
        filesystem: crate::util::filesystem_type(dir),
        elapsed_s: round3(t.elapsed().as_secs_f64()),
    })
}

/// What `mqlab baseline` is asked to do: plain data, which the binary's
/// command line fills (the `#[arg]`s and these comments are its options and
/// their help).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct BaselineRequest {
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

/// `mqlab baseline`.
pub fn cmd_baseline(args: BaselineRequest) -> Result<()> {
    let parent = crate::util::scratch_parent(args.data_dir.as_deref())?;
    let scratch = crate::util::scratch_dir(&parent, "mqlab-baseline-")?;
    let p = BaselineParams {
        batch_sizes: if args.batch_sizes.is_empty() {
            DEFAULT_BATCH_SIZES.to_vec()
        } else {
            args.batch_sizes.clone()
        },
        per_size: Duration::from_secs_f64(args.secs_per_size.max(0.001)),
        buffered: Duration::from_secs_f64(args.buffered_secs.max(0.001)),
    };
    if p.batch_sizes.contains(&0) {
        anyhow::bail!("--batch-sizes must be > 0");
    }
    if let Some(&b) = p.batch_sizes.iter().find(|&&b| b as u64 > FILE_BYTES) {
        anyhow::bail!("--batch-sizes: {b} is larger than the {FILE_BYTES}-byte scratch file");
    }
    let b = measure(scratch.path(), &p)?;
    if let Some(out) = &args.out {
        let dir = crate::util::OutDir::given(out, "output folder")?;
        crate::util::write_json(&out.join("baseline.json"), &b)?;
        crate::util::write_command(out)?;
        dir.keep();
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&b)?);
    } else {
        println!("device under {} ({}):", parent.display(), b.filesystem);
        print!("{}", b.table());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_measurement() {
        let dir = tempfile::tempdir().unwrap();
        let b = measure(
            dir.path(),
            &BaselineParams {
                batch_sizes: vec![4096, 65536],
                per_size: Duration::from_millis(20),
                buffered: Duration::from_millis(20),
            },
        )
        .unwrap();
        assert_eq!(b.sync_batches.len(), 2);
        assert!(b.fdatasync_per_s > 0.0);
        assert!(b.buffered_write_mib_per_s > 0.0);
        assert!(b.sync_batches[0].p50_us <= b.sync_batches[0].p99_us);
        assert!(b.table().contains("64 KiB"));
        // Scratch file removed.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
