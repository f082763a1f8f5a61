//! `uring` backend: positional reads, writes and fdatasync through io_uring.
//!
//! Answers "does io_uring beat pwrite + fdatasync for a commit log?" with the
//! same store and workloads. Each call submits one operation
//! (`IORING_OP_WRITE`, `IORING_OP_READ`, or `IORING_OP_FSYNC` with
//! `DATASYNC`) and waits for its completion before returning.
//!
//! Availability: [`UringEnv::new`] probes the kernel (a small ring, then
//! `IORING_REGISTER_PROBE` for the three opcodes) and fails with an
//! [`io::ErrorKind::Unsupported`] error that says why: no io_uring in the
//! kernel (ENOSYS), disabled by the `kernel.io_uring_disabled` sysctl or a
//! seccomp filter (EPERM), a kernel older than 5.6, or a missing opcode.
//! Setting the environment variable `MQLAB_DISABLE_URING` ([`DISABLE_ENV`]) to
//! anything but empty or `"0"` makes the probe fail the same way; the test
//! suite uses it to simulate a kernel without io_uring.
//!
//! Rings: one small ring per thread, created on the thread's first operation
//! and shared by every file. A thread owns its ring outright, so there is no
//! lock, and readers never queue behind the writer's fsync, as they would
//! behind a per-file ring mutex.
//!
//! Ordering: a call returns only after reaping its own completion, and rings
//! are never shared between threads, so at most one operation is in flight
//! per ring and the ring is empty between calls. An fsync is submitted after
//! every write whose call already returned has completed, so it covers them
//! all; no `IO_LINK` is needed. (A write still running on another thread is
//! not covered, exactly as with fdatasync.)
//!
//! Soundness: the kernel holds raw pointers into the caller's buffer while an
//! operation is in flight. The buffer is borrowed for the whole call and the
//! call does not return before the completion is reaped; if the kernel never
//! consumed the entry, the ring (holding a stale entry) is dropped before
//! returning; if it did consume it and waiting keeps failing, the process
//! aborts rather than return and let the kernel write into freed memory.

use std::cell::Cell;
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use io_uring::{opcode, squeue, types, IoUring, Probe};

use super::{fsutil, Env, File, OpenOptions};

/// Name in results and charts.
pub const NAME: &str = "uring";

/// Environment variable that, set to a value other than empty or `"0"`,
/// makes [`UringEnv::new`] fail as if the kernel had no io_uring.
pub const DISABLE_ENV: &str = "MQLAB_DISABLE_URING";

/// Submission queue entries per ring. One operation is in flight at a time;
/// a few spare slots cost nothing.
const RING_ENTRIES: u32 = 8;

/// Largest single read or write submitted; the kernel caps one transfer just
/// under 2 GiB (MAX_RW_COUNT) and the SQE length is a u32.
const MAX_IO_BYTES: usize = 1 << 30;

/// Bound on retries of a transient failure (EAGAIN, EBUSY from
/// io_uring_enter, or EAGAIN/EINTR as an operation's result).
const MAX_RETRIES: u32 = 1000;

/// io_uring environment. Holding one means the kernel passed the probe.
#[derive(Debug)]
pub struct UringEnv {
    _probed: (),
}

impl UringEnv {
    /// Probes the kernel; fails with `ErrorKind::Unsupported` and the reason
    /// when io_uring cannot be used or [`DISABLE_ENV`] is set.
    pub fn new() -> io::Result<UringEnv> {
        probe(disabled_by_env())?;
        Ok(UringEnv { _probed: () })
    }
}

/// True when [`DISABLE_ENV`] asks to simulate a kernel without io_uring.
fn disabled_by_env() -> bool {
    flag_disables(std::env::var_os(DISABLE_ENV).as_deref())
}

fn flag_disables(value: Option<&OsStr>) -> bool {
    matches!(value, Some(v) if !v.is_empty() && v != "0")
}

fn unavailable(why: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!("io_uring is unavailable: {why}"),
    )
}

/// Checks that io_uring works here and supports every opcode this backend
/// submits. `disabled` simulates a kernel without io_uring.
pub fn probe(disabled: bool) -> io::Result<()> {
    if disabled {
        return Err(unavailable(format!(
            "disabled by {DISABLE_ENV} (simulating a kernel without io_uring)"
        )));
    }
    let ring = new_ring()?;
    let mut probe = Probe::new();
    ring.submitter().register_probe(&mut probe).map_err(|e| {
        unavailable(format!(
            "IORING_REGISTER_PROBE failed ({e}); kernel older than 5.6?"
        ))
    })?;
    let missing: Vec<&str> = [
        ("IORING_OP_WRITE", opcode::Write::CODE),
        ("IORING_OP_READ", opcode::Read::CODE),
        ("IORING_OP_FSYNC", opcode::Fsync::CODE),
    ]
    .into_iter()
    .filter(|&(_, code)| !probe.is_supported(code))
    .map(|(name, _)| name)
    .collect();
    if !missing.is_empty() {
        return Err(unavailable(format!(
            "the kernel does not support {}",
            missing.join(", ")
        )));
    }
    Ok(())
}

/// Builds a ring, turning setup failures into an explanation.
fn new_ring() -> io::Result<IoUring> {
    IoUring::new(RING_ENTRIES).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOSYS) => {
            unavailable("io_uring_setup returned ENOSYS: the kernel has no io_uring")
        }
        Some(libc::EPERM) => unavailable(
            "io_uring_setup returned EPERM: disabled by the kernel.io_uring_disabled \
             sysctl or denied by a seccomp filter (container runtimes)",
        ),
        Some(libc::ENOMEM) => unavailable(
            "io_uring_setup returned ENOMEM: RLIMIT_MEMLOCK too low for a ring \
             (kernels before 5.12)",
        ),
        _ => unavailable(format!("io_uring_setup failed: {e}")),
    })
}

thread_local! {
    /// This thread's ring; taken out for the duration of one operation.
    static RING: Cell<Option<IoUring>> = const { Cell::new(None) };
}

/// This thread's ring, or a fresh one (first use, or during thread exit when
/// thread-locals are gone).
fn take_ring() -> io::Result<IoUring> {
    match RING.try_with(Cell::take) {
        Ok(Some(ring)) => Ok(ring),
        _ => new_ring(),
    }
}

fn put_ring(ring: IoUring) {
    // During thread exit the ring is simply dropped.
    let _ = RING.try_with(|cell| cell.set(Some(ring)));
}

/// Submits `entry` on this thread's ring, waits for its completion and
/// returns the completion's result (bytes transferred, or `-errno`).
///
/// # Safety
///
/// Every buffer `entry` points to must stay valid for the whole call (and,
/// for a read, not be accessed by anyone else): the kernel reads or writes it
/// until the completion is reaped, which this function does before it
/// returns.
#[allow(unsafe_code)]
unsafe fn submit_one(entry: &squeue::Entry) -> io::Result<i32> {
    let mut ring = take_ring()?;
    assert!(
        ring.submission().is_empty() && ring.completion().is_empty(),
        "io_uring ring not empty between operations"
    );
    // SAFETY: the caller keeps every buffer of `entry` valid until we return,
    // and we return only after reaping this entry's completion, or after
    // dropping the ring while the kernel has not consumed the entry.
    unsafe { ring.submission().push(entry) }
        .map_err(|_| io::Error::other("io_uring submission queue full"))?;
    let mut failures = 0u32;
    loop {
        match ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                failures += 1;
                let transient = matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EBUSY));
                let consumed = ring.submission().is_empty();
                if !consumed && (!transient || failures > MAX_RETRIES) {
                    // The kernel never saw the entry, so it holds no pointer
                    // to the buffer. The ring still holds the stale entry:
                    // drop it rather than submit it with a later call.
                    return Err(e);
                }
                if consumed && failures > MAX_RETRIES {
                    // The kernel may still write into the caller's buffer;
                    // returning would let it scribble on freed memory.
                    eprintln!(
                        "mqlab: io_uring: cannot reap an in-flight operation ({e}); aborting"
                    );
                    std::process::abort();
                }
                std::thread::yield_now();
            }
        }
        let reaped = ring.completion().next().map(|cqe| cqe.result());
        if let Some(res) = reaped {
            put_ring(ring);
            return Ok(res);
        }
    }
}

/// Submits `first` linked to `second` (the caller sets `IO_LINK` on
/// `first`) on this thread's ring, waits for both completions and returns
/// their results in that order. If `first` fails or is short, the kernel
/// cancels `second` (`-ECANCELED`).
///
/// # Safety
///
/// As [`submit_one`], for the buffers of both entries.
#[allow(unsafe_code)]
unsafe fn submit_linked(first: &squeue::Entry, second: &squeue::Entry) -> io::Result<(i32, i32)> {
    let mut ring = take_ring()?;
    assert!(
        ring.submission().is_empty() && ring.completion().is_empty(),
        "io_uring ring not empty between operations"
    );
    let pair = [first.clone().user_data(0), second.clone().user_data(1)];
    // SAFETY: as in `submit_one`; both completions are reaped before we
    // return, or the ring is dropped while the kernel has consumed neither.
    unsafe { ring.submission().push_multiple(&pair) }
        .map_err(|_| io::Error::other("io_uring submission queue full"))?;
    let mut results = [None::<i32>; 2];
    let mut failures = 0u32;
    while results.iter().any(Option::is_none) {
        let waiting = results.iter().filter(|r| r.is_none()).count();
        match ring.submit_and_wait(waiting) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                failures += 1;
                let transient = matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EBUSY));
                let none_consumed = ring.submission().len() == pair.len();
                if none_consumed && (!transient || failures > MAX_RETRIES) {
                    // The kernel holds no pointer: drop the ring and its
                    // stale entries.
                    return Err(e);
                }
                if !none_consumed && failures > MAX_RETRIES {
                    eprintln!("mqlab: io_uring: cannot reap in-flight operations ({e}); aborting");
                    std::process::abort();
                }
                std::thread::yield_now();
            }
        }
        for cqe in ring.completion() {
            if let Some(slot) = results.get_mut(cqe.user_data() as usize) {
                *slot = Some(cqe.result());
            }
        }
    }
    put_ring(ring);
    Ok((results[0].unwrap_or(0), results[1].unwrap_or(0)))
}

/// What to do with a negative completion result of a read or write.
fn retry_or_error(res: i32, retries: &mut u32) -> io::Result<()> {
    let errno = -res;
    if matches!(errno, libc::EINTR | libc::EAGAIN) && *retries < MAX_RETRIES {
        *retries += 1;
        return Ok(());
    }
    Err(io::Error::from_raw_os_error(errno))
}

struct UringFile {
    file: std::fs::File,
    read_only: bool,
    /// Cached length: `len()` is called on hot paths and must not stat.
    len: AtomicU64,
}

impl UringFile {
    fn fd(&self) -> types::Fd {
        let fd: RawFd = self.file.as_raw_fd();
        types::Fd(fd)
    }
}

fn read_only_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        "uring: file was opened read-only",
    )
}

/// End of `[offset, offset + len)`, which must fit in an `off_t`: an SQE
/// offset of `-1` (`u64::MAX`) would silently mean "the file position".
fn io_end(offset: u64, len: usize) -> io::Result<u64> {
    offset
        .checked_add(len as u64)
        .filter(|&end| end <= i64::MAX as u64)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("uring: range at offset {offset} of {len} bytes exceeds the maximum file offset"),
            )
        })
}

impl File for UringFile {
    fn next_data(&self, offset: u64) -> io::Result<Option<u64>> {
        super::fsutil::seek_data(&self.file, offset, self.len())
    }

    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        if self.read_only {
            return Err(read_only_error());
        }
        let end = io_end(offset, buf.len())?;
        if buf.is_empty() {
            // Nothing reaches the file, so the length must not move either.
            return Ok(());
        }
        let mut done = 0;
        let mut retries = 0;
        while done < buf.len() {
            let chunk = &buf[done..buf.len().min(done + MAX_IO_BYTES)];
            let entry = opcode::Write::new(self.fd(), chunk.as_ptr(), chunk.len() as u32)
                .offset(offset + done as u64)
                .build();
            #[allow(unsafe_code)]
            // SAFETY: `chunk` borrows `buf`, which outlives this call, and
            // `submit_one` returns only once the write has completed.
            let res = unsafe { submit_one(&entry) }?;
            match res {
                n if n > 0 => done += n as usize,
                0 => return Err(io::ErrorKind::WriteZero.into()),
                e => retry_or_error(e, &mut retries)?,
            }
        }
        self.len.fetch_max(end, Ordering::AcqRel);
        Ok(())
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        io_end(offset, buf.len())?;
        let mut done = 0;
        let mut retries = 0;
        while done < buf.len() {
            let end = buf.len().min(done + MAX_IO_BYTES);
            let chunk = &mut buf[done..end];
            let entry = opcode::Read::new(self.fd(), chunk.as_mut_ptr(), chunk.len() as u32)
                .offset(offset + done as u64)
                .build();
            #[allow(unsafe_code)]
            // SAFETY: `chunk` is exclusively borrowed from `buf` for this
            // call, and `submit_one` returns only once the read has completed.
            let res = unsafe { submit_one(&entry) }?;
            match res {
                n if n > 0 => done += n as usize,
                0 => break,
                e => retry_or_error(e, &mut retries)?,
            }
        }
        Ok(done)
    }

    fn sync_data(&self) -> io::Result<()> {
        let entry = opcode::Fsync::new(self.fd())
            .flags(types::FsyncFlags::DATASYNC)
            .build();
        #[allow(unsafe_code)]
        // SAFETY: an fsync entry points to no memory of ours.
        let res = unsafe { submit_one(&entry) }?;
        if res < 0 {
            // Never retried, not even on EINTR: see the `File` contract.
            return Err(io::Error::from_raw_os_error(-res));
        }
        Ok(())
    }

    fn write_at_and_sync(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        if self.read_only {
            return Err(read_only_error());
        }
        let end = io_end(offset, buf.len())?;
        if buf.is_empty() || buf.len() > MAX_IO_BYTES {
            self.write_at(offset, buf)?;
            return self.sync_data();
        }
        let write = opcode::Write::new(self.fd(), buf.as_ptr(), buf.len() as u32)
            .offset(offset)
            .build()
            .flags(squeue::Flags::IO_LINK);
        let sync = opcode::Fsync::new(self.fd())
            .flags(types::FsyncFlags::DATASYNC)
            .build();
        #[allow(unsafe_code)]
        // SAFETY: the write points into `buf`, borrowed for this call, and
        // `submit_linked` returns only once both operations have completed;
        // the fsync points to no memory of ours.
        let (written, synced) = unsafe { submit_linked(&write, &sync) }?;
        match written {
            n if n >= 0 && n as usize == buf.len() => {
                self.len.fetch_max(end, Ordering::AcqRel);
                if synced < 0 {
                    // Never retried: see the `File` contract.
                    return Err(io::Error::from_raw_os_error(-synced));
                }
                Ok(())
            }
            // Short: the kernel cancelled the fsync; finish unchained.
            n if n > 0 => {
                self.write_at(offset + n as u64, &buf[n as usize..])?;
                self.len.fetch_max(end, Ordering::AcqRel);
                self.sync_data()
            }
            0 => Err(io::ErrorKind::WriteZero.into()),
            e if matches!(-e, libc::EINTR | libc::EAGAIN) => {
                self.write_at(offset, buf)?;
                self.sync_data()
            }
            e => Err(io::Error::from_raw_os_error(-e)),
        }
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        if self.read_only {
            return Err(read_only_error());
        }
        self.file.set_len(len)?;
        self.len.store(len, Ordering::Release);
        Ok(())
    }

    fn len(&self) -> u64 {
        self.len.load(Ordering::Acquire)
    }
}

impl Env for UringEnv {
    fn name(&self) -> &'static str {
        NAME
    }

    fn open(&self, path: &Path, opts: OpenOptions) -> io::Result<Arc<dyn File>> {
        let file = fsutil::open_std(path, opts)?;
        let len = file.metadata()?.len();
        Ok(Arc::new(UringFile {
            file,
            read_only: opts.read_only,
            len: AtomicU64::new(len),
        }))
    }

    super::std_dir_ops!();
}

// The contract every backend keeps is tested once, for all of them, in
// engine/tests/backend_contract.rs; here only what is io_uring's own.
#[cfg(test)]
mod tests {
    use super::*;

    /// The environment, or `None` (after saying why) where io_uring is
    /// unavailable, so the suite passes on every kernel.
    fn env_or_skip(test: &str) -> Option<UringEnv> {
        match UringEnv::new() {
            Ok(env) => Some(env),
            Err(e) => {
                eprintln!("skipping {test}: {e}");
                None
            }
        }
    }

    fn create(len: u64) -> OpenOptions {
        OpenOptions {
            create: true,
            len,
            ..OpenOptions::default()
        }
    }

    #[test]
    fn disabled_probe_fails_cleanly() {
        let err = probe(true).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Unsupported);
        let msg = err.to_string();
        assert!(msg.contains("io_uring is unavailable"), "{msg}");
        assert!(msg.contains(DISABLE_ENV), "{msg}");
    }

    #[test]
    fn disable_flag_values() {
        assert!(!flag_disables(None));
        assert!(!flag_disables(Some(OsStr::new(""))));
        assert!(!flag_disables(Some(OsStr::new("0"))));
        assert!(flag_disables(Some(OsStr::new("1"))));
        assert!(flag_disables(Some(OsStr::new("yes"))));
    }

    #[test]
    fn enabled_probe_agrees_with_new() {
        // Whatever this kernel offers, a failure is an explained Unsupported.
        match probe(false) {
            Ok(()) => {}
            Err(e) => {
                assert_eq!(e.kind(), io::ErrorKind::Unsupported, "{e}");
                eprintln!("io_uring unavailable here: {e}");
            }
        }
    }

    #[test]
    fn offsets_beyond_off_t_are_rejected() {
        let Some(env) = env_or_skip("offsets_beyond_off_t_are_rejected") else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let f = env.open(&dir.path().join("f"), create(16)).unwrap();
        // u64::MAX is -1 as an SQE offset: "use the file position".
        let mut buf = [0u8; 4];
        let err = f.read_at(u64::MAX, &mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let err = f.write_at(u64::MAX - 1, b"ab").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(f.len(), 16);
    }
}
