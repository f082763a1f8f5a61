//! `mmap` backend: files are shared memory mappings, durability by
//! msync(MS_SYNC).
//!
//! RocketMQ's `MappedFile` writes its commit log through a mapping; this
//! backend lets mqlab measure that choice against plain pwrite and io_uring.
//! `write_at` and `read_at` are memcpys into and out of a `MAP_SHARED`
//! mapping of the whole file; `sync_data` is msync(MS_SYNC) over the mapping
//! (memmap2's `flush`), plus fdatasync when the length changed since the last
//! sync, so the new size is durable too. MS_ASYNC is deliberately not used: on
//! Linux it is a no-op (dirty pages are tracked anyway) and makes nothing
//! durable.
//!
//! Invariants:
//! - The mapping covers exactly `[0, len)` of the file, and there is no
//!   mapping while `len == 0` (a zero-length mmap is an error).
//! - The mapping is only replaced (set_len, or a write past the end) under the
//!   write half of an `RwLock`; every copy in or out holds the read half, so a
//!   copy never touches an unmapped address, and readers run concurrently
//!   with the writer.
//! - `write_at` and `set_len` are serialized by a mutex, so two writers never
//!   copy into the same bytes at once, and the length only changes while that
//!   mutex is held.
//! - No Rust reference into the mapping is ever created; only raw copies, so
//!   the compiler never assumes the mapped bytes are immutable.
//!
//! Known hazards, inherent to mmap, that pwrite does not have:
//! - If another process truncates a mapped file, touching the lost pages
//!   raises SIGBUS and kills the process. The store owns its directory; do not
//!   run a second store, or tools that truncate files, on it.
//! - A write into a hole of a sparse file allocates blocks at page-fault
//!   time; on a full disk that is SIGBUS, not ENOSPC. So every writable
//!   file has its blocks reserved by fallocate before it is mapped (at open
//!   and on growth), whatever `preallocate` says: a full disk then fails the
//!   open or the resize with ENOSPC, which the store turns into a refusal.
//!   `preallocate` only adds pre-faulting (MAP_POPULATE).
//! - A failed writeback cannot fail `write_at` (it is a memcpy); it surfaces
//!   as an error from the next `sync_data`, after which the store refuses
//!   writes.
//! - A `read_at` that overlaps a concurrent `write_at` of the same bytes is a
//!   data race. The store never does it: readers only read below the write
//!   position the writer published after its write returned.

use std::io;
use std::path::Path;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use memmap2::{MmapOptions, MmapRaw};

use super::{fsutil, Env, File, OpenOptions};

/// Name in results and charts.
pub const NAME: &str = "mmap";

/// Memory-mapped environment.
#[derive(Debug, Default)]
pub struct MmapEnv;

impl MmapEnv {
    /// A new environment.
    pub fn new() -> Self {
        MmapEnv
    }
}

/// The current mapping and the file length it covers.
struct Mapping {
    /// `None` when `len == 0`, or after a remap failed (then every access
    /// fails until a later `set_len` maps the file again).
    map: Option<MmapRaw>,
    /// File length in bytes; the mapping, when present, is this long.
    len: u64,
}

impl Mapping {
    /// The mapping, or an error when a failed remap left none.
    fn mapped(&self) -> io::Result<&MmapRaw> {
        self.map.as_ref().ok_or_else(|| {
            io::Error::other("mmap: file is not mapped after a failed remap; reopen it")
        })
    }
}

struct MmapFile {
    file: std::fs::File,
    read_only: bool,
    /// Reserve blocks (fallocate) and pre-fault pages on every (re)map.
    preallocate: bool,
    mapping: RwLock<Mapping>,
    /// Held by `write_at` and `set_len`; see the module invariants.
    writer: Mutex<()>,
    /// Mirror of `mapping.len`: `len()` is called on hot paths and must not
    /// wait behind a remap.
    len: AtomicU64,
    /// The length changed since the last `sync_data`: msync covers the mapped
    /// pages, fdatasync makes the new size durable.
    len_dirty: AtomicBool,
}

/// Lock helpers: a panic while a lock was held leaves `Mapping` consistent
/// (it is only mutated by whole-field assignments), so poisoning is ignored.
fn read(lock: &RwLock<Mapping>) -> RwLockReadGuard<'_, Mapping> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write(lock: &RwLock<Mapping>) -> RwLockWriteGuard<'_, Mapping> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

fn lock(mutex: &Mutex<()>) -> MutexGuard<'_, ()> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read_only_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        "mmap: file was opened read-only",
    )
}

fn too_large(len: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("mmap: length {len} does not fit the address space"),
    )
}

impl MmapFile {
    /// Maps `[0, len)` of the file, or nothing when `len == 0`.
    fn map(&self, len: u64) -> io::Result<Option<MmapRaw>> {
        if len == 0 {
            return Ok(None);
        }
        let len_usize = usize::try_from(len).map_err(|_| too_large(len))?;
        let mut opts = MmapOptions::new();
        opts.len(len_usize);
        if self.preallocate {
            // MAP_POPULATE read-faults every page into the page cache without
            // dirtying it (shared mappings are not write-faulted), so writes
            // do not pay for a fault that reads from disk.
            opts.populate();
        }
        let map = if self.read_only {
            opts.map_raw_read_only(&self.file)?
        } else {
            opts.map_raw(&self.file)?
        };
        Ok(Some(map))
    }

    /// Truncates or extends the file to `new_len` and maps it again. The
    /// caller holds `writer`.
    fn resize(&self, new_len: u64) -> io::Result<()> {
        let mut m = write(&self.mapping);
        let old_len = m.len;
        // Unmap first: no mapping ever covers bytes past the end of the file.
        m.map = None;
        let resized = self.file.set_len(new_len).and_then(|()| {
            m.len = new_len;
            self.len.store(new_len, Ordering::Release);
            self.len_dirty.store(true, Ordering::Release);
            if !self.read_only && new_len > old_len {
                // No holes under a mapping: see the module comment.
                fsutil::preallocate(&self.file, old_len, new_len - old_len)?;
            }
            Ok(())
        });
        // Map whatever length the file now has, even when set_len failed.
        let remapped = self.map(m.len).map(|map| m.map = map);
        resized.and(remapped)
    }
}

impl File for MmapFile {
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        if self.read_only {
            return Err(read_only_error());
        }
        if buf.is_empty() {
            return Ok(());
        }
        let end = offset
            .checked_add(buf.len() as u64)
            .ok_or_else(|| too_large(u64::MAX))?;
        let _writer = lock(&self.writer);
        // Only the holder of `writer` changes the length, so it cannot shrink
        // between this check and the copy below.
        if end > self.len.load(Ordering::Acquire) {
            self.resize(end)?;
        }
        let m = read(&self.mapping);
        assert!(end <= m.len, "mapping shorter than the write after resize");
        let map = m.mapped()?;
        let start = usize::try_from(offset).map_err(|_| too_large(offset))?;
        #[allow(unsafe_code)]
        // SAFETY: `[start, start + buf.len())` lies inside the mapping (checked
        // above), which is writable (not read-only) and stays mapped while we
        // hold the read lock. `buf` is caller memory, never inside our
        // mapping, so the ranges do not overlap. No other writer copies
        // concurrently (`writer` is held); readers of these bytes are excluded
        // by the store's protocol (see the module doc).
        unsafe {
            ptr::copy_nonoverlapping(buf.as_ptr(), map.as_mut_ptr().add(start), buf.len());
        }
        Ok(())
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let m = read(&self.mapping);
        if buf.is_empty() || offset >= m.len {
            return Ok(0);
        }
        let n = (m.len - offset).min(buf.len() as u64) as usize;
        let map = m.mapped()?;
        let start = usize::try_from(offset).map_err(|_| too_large(offset))?;
        #[allow(unsafe_code)]
        // SAFETY: `[start, start + n)` lies inside the mapping (`offset < len`
        // and `n <= len - offset`), which stays mapped while we hold the read
        // lock. `buf` is a distinct, exclusively borrowed buffer of at least
        // `n` bytes. The writer does not write these bytes concurrently (see
        // the module doc).
        unsafe {
            ptr::copy_nonoverlapping(map.as_ptr().add(start), buf.as_mut_ptr(), n);
        }
        Ok(n)
    }

    fn sync_data(&self) -> io::Result<()> {
        {
            let m = read(&self.mapping);
            if m.len > 0 {
                // msync(MS_SYNC) over the whole mapping.
                m.mapped()?.flush()?;
            }
        }
        if self.len_dirty.swap(false, Ordering::AcqRel) {
            fsutil::sync_data(&self.file).inspect_err(|_| {
                self.len_dirty.store(true, Ordering::Release);
            })?;
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        if self.read_only {
            return Err(read_only_error());
        }
        let _writer = lock(&self.writer);
        self.resize(len)
    }

    fn len(&self) -> u64 {
        self.len.load(Ordering::Acquire)
    }
}

impl Env for MmapEnv {
    fn name(&self) -> &'static str {
        NAME
    }

    fn open(&self, path: &Path, opts: OpenOptions) -> io::Result<Arc<dyn File>> {
        let file = fsutil::open_std(path, opts)?;
        let len = file.metadata()?.len();
        if !opts.read_only && len > 0 {
            // No holes under a mapping: see the module comment. Cheap for
            // blocks already allocated.
            fsutil::preallocate(&file, 0, len)?;
        }
        let f = MmapFile {
            file,
            read_only: opts.read_only,
            preallocate: opts.preallocate,
            mapping: RwLock::new(Mapping { map: None, len }),
            writer: Mutex::new(()),
            len: AtomicU64::new(len),
            len_dirty: AtomicBool::new(false),
        };
        let map = f.map(len)?;
        write(&f.mapping).map = map;
        Ok(Arc::new(f))
    }

    super::std_dir_ops!();
}

// The contract every backend keeps is tested once, for all of them, in
// engine/tests/backend_contract.rs; here only what is mmap's own.
#[cfg(test)]
mod tests {
    use super::*;

    fn create(len: u64) -> OpenOptions {
        OpenOptions {
            create: true,
            len,
            ..OpenOptions::default()
        }
    }

    fn read_vec(f: &dyn File, offset: u64, n: usize) -> Vec<u8> {
        let mut buf = vec![0xAA; n];
        let got = f.read_at(offset, &mut buf).unwrap();
        buf.truncate(got);
        buf
    }

    #[test]
    fn preallocate_maps_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let opts = OpenOptions {
            preallocate: true,
            ..create(1 << 20)
        };
        let f = MmapEnv::new().open(&dir.path().join("f"), opts).unwrap();
        assert_eq!(f.len(), 1 << 20);
        assert_eq!(read_vec(&*f, (1 << 20) - 4, 8), [0, 0, 0, 0]);
        f.write_at((1 << 20) + 10, b"grow").unwrap();
        assert_eq!(read_vec(&*f, (1 << 20) + 10, 4), b"grow");
    }
}
