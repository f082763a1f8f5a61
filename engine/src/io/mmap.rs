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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::thread;

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
    fn roundtrip_at_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let env = MmapEnv::new();
        let f = env.open(&dir.path().join("seg"), create(8192)).unwrap();
        assert_eq!(f.len(), 8192);
        f.write_at(0, b"hello").unwrap();
        f.write_at(4093, b"across a page").unwrap();
        assert_eq!(read_vec(&*f, 0, 5), b"hello");
        assert_eq!(read_vec(&*f, 4093, 13), b"across a page");
        assert_eq!(read_vec(&*f, 5, 3), [0, 0, 0]);
        f.write_at(50_000, b"").unwrap();
        assert_eq!(f.len(), 8192);
    }

    #[test]
    fn write_past_end_grows_and_remaps() {
        let dir = tempfile::tempdir().unwrap();
        let env = MmapEnv::new();
        let f = env.open(&dir.path().join("f"), create(0)).unwrap();
        assert!(f.is_empty());
        assert_eq!(read_vec(&*f, 0, 10), b"");
        f.write_at(10, b"abc").unwrap();
        assert_eq!(f.len(), 13);
        assert_eq!(read_vec(&*f, 0, 100), b"\0\0\0\0\0\0\0\0\0\0abc");
        f.write_at(100_000, b"far").unwrap();
        assert_eq!(f.len(), 100_003);
        assert_eq!(read_vec(&*f, 10, 3), b"abc");
        assert_eq!(read_vec(&*f, 100_000, 3), b"far");
    }

    #[test]
    fn read_past_end_is_short() {
        let dir = tempfile::tempdir().unwrap();
        let env = MmapEnv::new();
        let f = env.open(&dir.path().join("f"), create(16)).unwrap();
        f.write_at(10, b"123456").unwrap();
        assert_eq!(read_vec(&*f, 10, 100), b"123456");
        assert_eq!(read_vec(&*f, 16, 4), b"");
        assert_eq!(read_vec(&*f, 1 << 40, 4), b"");
    }

    #[test]
    fn shrink_then_grow_reads_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let env = MmapEnv::new();
        let f = env.open(&dir.path().join("f"), create(8192)).unwrap();
        f.write_at(0, &[7u8; 8192]).unwrap();
        f.set_len(100).unwrap();
        assert_eq!(f.len(), 100);
        assert_eq!(read_vec(&*f, 0, 8192), vec![7u8; 100]);
        f.set_len(0).unwrap();
        assert_eq!(read_vec(&*f, 0, 8), b"");
        f.set_len(8192).unwrap();
        let mut want = vec![0u8; 8192];
        assert_eq!(read_vec(&*f, 0, 8192), want);
        f.set_len(50).unwrap();
        f.write_at(0, &[9u8; 50]).unwrap();
        f.set_len(4096).unwrap();
        want.truncate(4096);
        want[..50].fill(9);
        assert_eq!(read_vec(&*f, 0, 4096), want);
    }

    #[test]
    fn sync_data_ok() {
        let dir = tempfile::tempdir().unwrap();
        let env = MmapEnv::new();
        let empty = env.open(&dir.path().join("empty"), create(0)).unwrap();
        empty.sync_data().unwrap();
        let f = env.open(&dir.path().join("f"), create(4096)).unwrap();
        f.write_at(1, b"x").unwrap();
        f.sync_data().unwrap();
        f.set_len(10_000).unwrap();
        f.sync_data().unwrap();
        f.sync_data().unwrap();
    }

    #[test]
    fn read_only_rejects_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let env = MmapEnv::new();
        env.open(&path, create(64))
            .unwrap()
            .write_at(0, b"data")
            .unwrap();
        let ro = OpenOptions::read_only();
        let f = env.open(&path, ro).unwrap();
        assert_eq!(read_vec(&*f, 0, 4), b"data");
        let err = f.write_at(0, b"nope").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        let err = f.set_len(0).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        f.sync_data().unwrap();
        assert_eq!(f.len(), 64);
        // A read-only open never creates the file.
        assert!(env.open(&dir.path().join("missing"), ro).is_err());
    }

    #[test]
    fn reopen_sees_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        {
            let f = MmapEnv::new().open(&path, create(4096)).unwrap();
            f.write_at(123, b"persisted").unwrap();
            f.sync_data().unwrap();
        }
        let f = MmapEnv::new().open(&path, OpenOptions::default()).unwrap();
        assert_eq!(f.len(), 4096);
        assert_eq!(read_vec(&*f, 123, 9), b"persisted");
        // The pwrite backend reads the same bytes: the mapping wrote the file.
        let p = super::super::pwrite::PwriteEnv::new()
            .open(&path, OpenOptions::default())
            .unwrap();
        assert_eq!(read_vec(&*p, 123, 9), b"persisted");
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

    /// One writer appends records past the end (every append grows the file
    /// and remaps) and publishes its position; readers check every published
    /// record while the mapping is being replaced under them.
    #[test]
    fn concurrent_readers_with_writer() {
        const RECORD: usize = 64;
        const RECORDS: u64 = 500;
        let dir = tempfile::tempdir().unwrap();
        let f = MmapEnv::new()
            .open(&dir.path().join("f"), create(0))
            .unwrap();
        let published = AtomicU64::new(0);
        let done = AtomicBool::new(false);
        let record = |i: u64| [(i % 251) as u8; RECORD];
        thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    let mut buf = [0u8; RECORD];
                    let mut checked = 0u64;
                    loop {
                        let finished = done.load(Ordering::Acquire);
                        let n = published.load(Ordering::Acquire);
                        for i in (0..n).rev().take(8) {
                            let got = f.read_at(i * RECORD as u64, &mut buf).unwrap();
                            assert_eq!(got, RECORD);
                            assert_eq!(buf, record(i), "record {i}");
                            checked += 1;
                        }
                        if finished {
                            break;
                        }
                    }
                    assert!(checked > 0);
                });
            }
            for i in 0..RECORDS {
                f.write_at(i * RECORD as u64, &record(i)).unwrap();
                published.store(i + 1, Ordering::Release);
            }
            done.store(true, Ordering::Release);
        });
        assert_eq!(f.len(), RECORDS * RECORD as u64);
    }

    #[test]
    fn env_directory_ops() {
        let dir = tempfile::tempdir().unwrap();
        let env = MmapEnv::new();
        assert_eq!(env.name(), NAME);
        let sub = dir.path().join("a/b");
        assert!(env.list_dir(&sub).unwrap().is_empty());
        env.create_dir_all(&sub).unwrap();
        assert!(env.is_dir(&sub));
        env.open(&sub.join("2"), create(1)).unwrap();
        env.open(&sub.join("1"), create(0)).unwrap();
        assert_eq!(env.list_dir(&sub).unwrap(), ["1", "2"]);
        env.sync_dir(&sub).unwrap();
        env.remove_file(&sub.join("1")).unwrap();
        assert!(!env.exists(&sub.join("1")));
    }
}
