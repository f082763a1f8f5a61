//! `mmap` backend (stub, being written).
use std::io;
use std::path::Path;
use std::sync::Arc;
use super::{Env, File, OpenOptions};
/// Name in results and charts.
pub const NAME: &str = "mmap";
/// mmap environment.
#[derive(Debug, Default)]
pub struct MmapEnv;
impl MmapEnv {
    /// A new environment.
    pub fn new() -> Self { MmapEnv }
}
impl Env for MmapEnv {
    fn name(&self) -> &'static str { NAME }
    fn open(&self, path: &Path, opts: OpenOptions) -> io::Result<Arc<dyn File>> { super::pwrite::PwriteEnv.open(path, opts) }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> { super::fsutil::list_dir(path) }
    fn is_dir(&self, path: &Path) -> bool { path.is_dir() }
    fn exists(&self, path: &Path) -> bool { path.exists() }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> { std::fs::create_dir_all(path) }
    fn remove_file(&self, path: &Path) -> io::Result<()> { std::fs::remove_file(path) }
    fn sync_dir(&self, path: &Path) -> io::Result<()> { super::fsutil::sync_dir(path) }
}
