//! `pwrite` backend: std::fs positional writes, durability by fdatasync.
//!
//! The plainest way to write a log, and the baseline the other backends are
//! compared with. Writes go to the page cache; `sync_data` is fdatasync(2).

use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::{fsutil, Env, File, OpenOptions};

/// Name in results and charts.
pub const NAME: &str = "pwrite";

/// std::fs environment.
#[derive(Debug, Default)]
pub struct PwriteEnv;

impl PwriteEnv {
    /// A new environment.
    pub fn new() -> Self {
        PwriteEnv
    }
}

struct PwriteFile {
    file: std::fs::File,
    /// Cached length: `len()` is called on hot paths and must not stat.
    len: AtomicU64,
}

impl File for PwriteFile {
    fn next_data(&self, offset: u64) -> io::Result<Option<u64>> {
        super::fsutil::seek_data(&self.file, offset, self.len())
    }

    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.file.write_all_at(buf, offset)?;
        self.len
            .fetch_max(offset + buf.len() as u64, Ordering::AcqRel);
        Ok(())
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            match self.file.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }

    fn sync_data(&self) -> io::Result<()> {
        fsutil::sync_data(&self.file)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        self.len.store(len, Ordering::Release);
        Ok(())
    }

    fn len(&self) -> u64 {
        self.len.load(Ordering::Acquire)
    }
}

impl Env for PwriteEnv {
    fn name(&self) -> &'static str {
        NAME
    }

    fn open(&self, path: &Path, opts: OpenOptions) -> io::Result<Arc<dyn File>> {
        let file = fsutil::open_std(path, opts)?;
        let len = file.metadata()?.len();
        Ok(Arc::new(PwriteFile {
            file,
            len: AtomicU64::new(len),
        }))
    }

    super::std_dir_ops!();
}
