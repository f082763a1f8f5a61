//! The device primitives: what the disk and memory under a directory can do
//! without any store in the way. Every performance claim in mqlab is a ratio
//! to one of these, measured in the same run (STYLE.md), so they live in one
//! place: `mqlab baseline` (workloads), the criterion benches and the peers
//! runner (bench) all call them.
//!
//! - [`pwrite_fdatasync`]: sequential `pwrite` of one batch size into a file
//!   pre-sized with `set_len` (as segments are), each followed by
//!   `fdatasync`, one at a time (queue depth 1). The small-batch rate bounds
//!   the `sync` strategy; the batch group commit forms bounds `group`.
//! - [`buffered_write`]: sequential writes with no sync, the page-cache
//!   bandwidth that bounds `async` and `pool`.
//! - [`memcpy`]: memory bandwidth of one thread, the bound of any copy into
//!   a buffer (the pool's staging area, an mmap).
//!
//! Scratch files are created fresh and removed before returning. Nothing
//! here is timed against an expectation: callers turn the figures into
//! ratios.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// One pwrite+fdatasync measurement at one batch size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SyncRun {
    /// Bytes per pwrite.
    pub batch_bytes: usize,
    /// pwrite+fdatasync pairs completed.
    pub ops: u64,
    /// Wall time of all pairs.
    pub elapsed: Duration,
}

impl SyncRun {
    /// Pairs per second.
    pub fn ops_per_s(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// MiB per second.
    pub fn mib_per_s(&self) -> f64 {
        self.ops_per_s() * self.batch_bytes as f64 / (1024.0 * 1024.0)
    }
}

/// One bandwidth measurement (buffered write or memcpy).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bandwidth {
    /// Bytes moved.
    pub bytes: u64,
    /// Wall time.
    pub elapsed: Duration,
}

impl Bandwidth {
    /// MiB per second.
    pub fn mib_per_s(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64().max(1e-9) / (1024.0 * 1024.0)
    }

    /// Bytes per second.
    pub fn bytes_per_s(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// What a measurement runs for.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Keep going at least this long...
    pub time: Duration,
    /// ...and for at least this many operations (a very slow disk still
    /// yields a figure).
    pub min_ops: u64,
    /// Size of the scratch file; writes wrap around (sync) or start over on
    /// a truncated file (buffered) when they reach it.
    pub file_bytes: u64,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            time: Duration::from_millis(400),
            min_ops: 3,
            file_bytes: 256 << 20,
        }
    }
}

/// Measures pwrite+fdatasync of `batch_bytes` at queue depth 1 on a fresh
/// scratch file at `path` (removed afterwards). `on_op` gets each pair's
/// latency; `stop` ends the measurement early (Ctrl-C) when it returns true.
pub fn pwrite_fdatasync(
    path: &Path,
    batch_bytes: usize,
    budget: Budget,
    stop: &dyn Fn() -> bool,
    on_op: &mut dyn FnMut(Duration),
) -> io::Result<SyncRun> {
    assert!(batch_bytes > 0, "batch size must be > 0");
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    let file_bytes = budget.file_bytes.max(batch_bytes as u64);
    f.set_len(file_bytes)?;
    f.sync_all()?;
    let buf = vec![0xA5u8; batch_bytes];
    let mut off = 0u64;
    let mut ops = 0u64;
    let start = Instant::now();
    let result = (|| {
        while (start.elapsed() < budget.time || ops < budget.min_ops) && !stop() {
            if off + batch_bytes as u64 > file_bytes {
                off = 0;
            }
            let t = Instant::now();
            f.write_all_at(&buf, off)?;
            f.sync_data()?;
            on_op(t.elapsed());
            off += batch_bytes as u64;
            ops += 1;
        }
        Ok(())
    })();
    let elapsed = start.elapsed();
    drop(f);
    fs::remove_file(path).ok();
    result.map(|()| SyncRun {
        batch_bytes,
        ops,
        elapsed,
    })
}

/// Measures buffered (page cache) write bandwidth: sequential writes of
/// `chunk_bytes` without any sync into a fresh scratch file at `path`
/// (removed afterwards). At `budget.file_bytes` the file is truncated and
/// writing starts over, so every write lands on fresh pages, as appends to
/// a new segment do.
pub fn buffered_write(
    path: &Path,
    chunk_bytes: usize,
    budget: Budget,
    stop: &dyn Fn() -> bool,
) -> io::Result<Bandwidth> {
    assert!(chunk_bytes > 0, "chunk size must be > 0");
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    let buf = vec![0x5Au8; chunk_bytes];
    let mut off = 0u64;
    let mut bytes = 0u64;
    let mut ops = 0u64;
    let start = Instant::now();
    let result = (|| {
        while (start.elapsed() < budget.time || ops < budget.min_ops) && !stop() {
            if off + chunk_bytes as u64 > budget.file_bytes.max(chunk_bytes as u64) {
                f.set_len(0)?;
                off = 0;
            }
            f.write_all_at(&buf, off)?;
            off += chunk_bytes as u64;
            bytes += chunk_bytes as u64;
            ops += 1;
        }
        Ok(())
    })();
    let elapsed = start.elapsed();
    drop(f);
    fs::remove_file(path).ok();
    result.map(|()| Bandwidth { bytes, elapsed })
}

/// Measures single-thread memcpy bandwidth: copies of `chunk_bytes` from
/// one buffer to another for at least `time`.
pub fn memcpy(chunk_bytes: usize, time: Duration) -> Bandwidth {
    let src = vec![0x3Cu8; chunk_bytes.max(1)];
    let mut dst = vec![0u8; chunk_bytes.max(1)];
    let mut bytes = 0u64;
    let start = Instant::now();
    while start.elapsed() < time || bytes == 0 {
        dst.copy_from_slice(std::hint::black_box(&src));
        std::hint::black_box(&mut dst);
        bytes += src.len() as u64;
    }
    Bandwidth {
        bytes,
        elapsed: start.elapsed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Budget {
        Budget {
            time: Duration::from_millis(5),
            min_ops: 2,
            file_bytes: 64 << 10,
        }
    }

    #[test]
    fn primitives_measure_and_clean_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scratch");
        let mut seen = 0u64;
        let s = pwrite_fdatasync(&path, 16 << 10, tiny(), &|| false, &mut |_| seen += 1).unwrap();
        assert!(s.ops >= 2);
        assert_eq!(seen, s.ops);
        assert!(s.mib_per_s() > 0.0);
        let b = buffered_write(&path, 32 << 10, tiny(), &|| false).unwrap();
        assert!(b.bytes >= 2 * (32 << 10));
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        let m = memcpy(4096, Duration::from_millis(1));
        assert!(m.bytes >= 4096);
    }

    #[test]
    fn stop_still_yields_min_ops_semantics() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scratch");
        // `stop` wins over min_ops: Ctrl-C must end at once.
        let s = pwrite_fdatasync(&path, 4096, tiny(), &|| true, &mut |_| {}).unwrap();
        assert_eq!(s.ops, 0);
    }
}
