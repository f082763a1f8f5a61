//! The I/O backend axis: how bytes reach a file and become durable.
//!
//! Every file the store touches (commit-log segments, consume queues, index
//! files, the checkpoint, the abort marker) goes through an [`Env`], so that
//! the fault-injecting simulator ([`sim::SimEnv`]) sees every write and every
//! sync and can crash the whole store directory consistently.
//!
//! Contracts every implementation keeps:
//! - `write_at` either writes the whole buffer or returns an error; a short
//!   write is an error, never silently accepted.
//! - `read_at` never reads past the file length: it returns the number of
//!   bytes read, which is short only at the end of the file.
//! - After `sync_data` returns `Ok`, every byte written before the call
//!   survives a power loss. After it returns `Err`, nothing is known: the
//!   caller must not retry it (the kernel may have dropped the dirty pages,
//!   see PostgreSQL's fsyncgate) and the store refuses further writes.
//! - `set_len` truncates or extends; bytes between the old and new length
//!   read as zero.
//!
//! The store calls these through `dyn` at the edges; the cost of a virtual
//! call is noise next to a system call or a page-cache copy.

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;

pub mod mmap;
pub mod overlay;
pub mod powerloss;
pub mod pwrite;
pub mod sim;
#[cfg(target_os = "linux")]
pub mod uring;

/// One open file of the store.
pub trait File: Send + Sync {
    /// Writes all of `buf` at byte `offset`, extending the file if needed.
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()>;
    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read
    /// (fewer only at end of file).
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;
    /// Makes every byte written so far durable (fdatasync / msync(MS_SYNC) /
    /// IORING_OP_FSYNC with DATASYNC).
    fn sync_data(&self) -> io::Result<()>;
    /// Writes all of `buf` at `offset`, then makes every byte written so far
    /// durable: `write_at` followed by `sync_data`, which a backend may
    /// chain into one operation (io_uring: a write linked to an fsync, one
    /// submission and one wait). Group commit writes each batch this way.
    fn write_at_and_sync(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.write_at(offset, buf)?;
        self.sync_data()
    }
    /// The first offset at or after `offset` that may hold data (not a
    /// hole of a sparse file), or None when only zeros follow. Lets scans
    /// for the end of data skip what was never written, so their cost
    /// follows the data, not the preallocated file size. A backend that
    /// cannot tell answers `offset` itself (never wrong, only slower).
    fn next_data(&self, offset: u64) -> io::Result<Option<u64>> {
        Ok((offset < self.len()).then_some(offset))
    }
    /// Truncates or extends the file; new bytes read as zero.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Current length in bytes.
    fn len(&self) -> u64;
    /// True when the file is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How to open a file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenOptions {
    /// Create the file when it does not exist.
    pub create: bool,
    /// When the file is created (or shorter), extend it to this length.
    /// Segment-like files are fixed size; 0 leaves the length alone.
    pub len: u64,
    /// Physically allocate and pre-fault the whole length at creation
    /// (fallocate, or touching every page for mmap), so the first write to a
    /// page does not pay for block allocation.
    pub preallocate: bool,
    /// Open without write access; writes fail. Used by `verify`/`inspect`.
    pub read_only: bool,
}

impl OpenOptions {
    /// Open an existing file without write access (`verify`, `inspect`,
    /// reading config files and checkpoints).
    pub fn read_only() -> OpenOptions {
        OpenOptions {
            read_only: true,
            ..OpenOptions::default()
        }
    }
}

/// A file system: opens files and manages directories.
pub trait Env: Send + Sync {
    /// Short name used in results and chart legends ("pwrite", "mmap", ...).
    fn name(&self) -> &'static str;
    /// Opens (or creates, per `opts`) a file.
    fn open(&self, path: &Path, opts: OpenOptions) -> io::Result<Arc<dyn File>>;
    /// Names (not paths) of the entries of a directory, sorted. A missing
    /// directory is an empty list.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    /// True when `path` names a directory.
    fn is_dir(&self, path: &Path) -> bool;
    /// True when `path` exists.
    fn exists(&self, path: &Path) -> bool;
    /// Creates a directory and its parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creations, removals) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
}

/// The backends the CLI can name. `Sim` is built by the caller (it holds a
/// seed and a fault plan), so it is not constructed here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// std::fs + pwrite + fdatasync.
    Pwrite,
    /// memmap2 mapping, msync(MS_SYNC) for durability.
    Mmap,
    /// io_uring writes and fdatasync.
    Uring,
}

impl BackendKind {
    /// All real backends.
    pub const ALL: [BackendKind; 3] = [BackendKind::Pwrite, BackendKind::Mmap, BackendKind::Uring];

    /// The name used in results.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Pwrite => pwrite::NAME,
            BackendKind::Mmap => mmap::NAME,
            BackendKind::Uring => "uring",
        }
    }

    /// Builds the backend's environment. Fails with a clear error where the
    /// backend is unavailable (io_uring on a kernel without it, or disabled
    /// by `kernel.io_uring_disabled`).
    pub fn env(self) -> io::Result<Arc<dyn Env>> {
        match self {
            BackendKind::Pwrite => Ok(Arc::new(pwrite::PwriteEnv::new())),
            BackendKind::Mmap => Ok(Arc::new(mmap::MmapEnv::new())),
            BackendKind::Uring => uring_env(),
        }
    }
}

#[cfg(target_os = "linux")]
fn uring_env() -> io::Result<Arc<dyn Env>> {
    Ok(Arc::new(uring::UringEnv::new()?))
}

#[cfg(not(target_os = "linux"))]
fn uring_env() -> io::Result<Arc<dyn Env>> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "io_uring backend is only available on Linux",
    ))
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for BackendKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "pwrite" => Ok(BackendKind::Pwrite),
            "mmap" => Ok(BackendKind::Mmap),
            "uring" | "io_uring" | "io-uring" => Ok(BackendKind::Uring),
            other => Err(format!(
                "unknown backend {other:?}: expected pwrite, mmap or uring"
            )),
        }
    }
}

/// The directory half of [`Env`] for the backends that use the real file
/// system through std::fs (pwrite, mmap, uring): they differ only in how
/// file bytes move.
macro_rules! std_dir_ops {
    () => {
        fn list_dir(&self, path: &std::path::Path) -> std::io::Result<Vec<String>> {
            super::fsutil::list_dir(path)
        }

        fn is_dir(&self, path: &std::path::Path) -> bool {
            path.is_dir()
        }

        fn exists(&self, path: &std::path::Path) -> bool {
            path.exists()
        }

        fn create_dir_all(&self, path: &std::path::Path) -> std::io::Result<()> {
            std::fs::create_dir_all(path)
        }

        fn remove_file(&self, path: &std::path::Path) -> std::io::Result<()> {
            std::fs::remove_file(path)
        }

        fn sync_dir(&self, path: &std::path::Path) -> std::io::Result<()> {
            super::fsutil::sync_dir(path)
        }
    };
}
pub(crate) use std_dir_ops;

/// Helpers shared by the std::fs based backends.
pub(crate) mod fsutil {
    use super::*;

    pub fn list_dir(path: &Path) -> io::Result<Vec<String>> {
        let rd = match std::fs::read_dir(path) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut names = Vec::new();
        for entry in rd {
            let entry = entry?;
            if let Some(name) = entry.file_name().to_str() {
                names.push(name.to_string());
            }
        }
        names.sort();
        Ok(names)
    }

    pub fn sync_dir(path: &Path) -> io::Result<()> {
        std::fs::File::open(path)?.sync_all()
    }

    /// `lseek(SEEK_DATA)`: the next offset holding data (the page cache
    /// counts), None past the last; where the file system cannot tell,
    /// `offset` itself.
    pub fn seek_data(f: &std::fs::File, offset: u64, len: u64) -> io::Result<Option<u64>> {
        if offset >= len {
            return Ok(None);
        }
        match rustix::fs::seek(f, rustix::fs::SeekFrom::Data(offset)) {
            Ok(at) if at >= len => Ok(None),
            Ok(at) => Ok(Some(at.max(offset))),
            Err(rustix::io::Errno::NXIO) => Ok(None),
            Err(rustix::io::Errno::INVAL | rustix::io::Errno::OPNOTSUPP) => Ok(Some(offset)),
            Err(e) => Err(e.into()),
        }
    }

    /// Opens a std file per `opts`, extending it to `opts.len` when shorter.
    pub fn open_std(path: &Path, opts: OpenOptions) -> io::Result<std::fs::File> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(!opts.read_only)
            .create(opts.create && !opts.read_only)
            .truncate(false)
            .open(path)?;
        if !opts.read_only && opts.len > 0 {
            let cur = file.metadata()?.len();
            if cur < opts.len {
                file.set_len(opts.len)?;
                if opts.preallocate {
                    preallocate(&file, cur, opts.len - cur)?;
                }
            }
        }
        Ok(file)
    }

    /// Reserves blocks for `[offset, offset + len)` so later writes do not
    /// allocate. Filesystems without fallocate fall back to a sparse file.
    #[allow(unsafe_code)]
    pub fn preallocate(file: &std::fs::File, offset: u64, len: u64) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            // SAFETY: fallocate on a valid, open file descriptor with in-range
            // arguments; it touches no memory of ours.
            let rc = unsafe {
                libc::fallocate(
                    file.as_raw_fd(),
                    libc::FALLOC_FL_KEEP_SIZE,
                    offset as libc::off_t,
                    len as libc::off_t,
                )
            };
            if rc != 0 {
                let err = io::Error::last_os_error();
                if err.raw_os_error() != Some(libc::EOPNOTSUPP) {
                    return Err(err);
                }
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = (file, offset, len);
        Ok(())
    }

    /// fdatasync where the platform has it, fsync elsewhere.
    pub fn sync_data(file: &std::fs::File) -> io::Result<()> {
        file.sync_data()
    }
}
