//! Disk usage of the real file system holding the store, from `statvfs`
//! (through rustix, so the engine stays free of unsafe code): used and
//! available blocks as `df` reports them. Called once per check interval.

use std::io;

use super::DiskUsage;
use crate::store::Store;

/// The file system's used / (used + available).
#[derive(Debug, Default, Clone, Copy)]
pub struct DfUsage;

/// used / (used + available), as `df` computes its Capacity column: used
/// = total - free blocks, available = blocks free to unprivileged users.
pub fn used_ratio(blocks: u64, free: u64, available: u64) -> Option<f64> {
    let used = blocks.saturating_sub(free) as f64;
    let avail = available as f64;
    (used + avail > 0.0).then(|| used / (used + avail))
}

impl DiskUsage for DfUsage {
    fn name(&self) -> &'static str {
        "df"
    }

    fn used_ratio(&self, store: &Store) -> io::Result<f64> {
        let s = rustix::fs::statvfs(store.dir())?;
        used_ratio(s.f_blocks, s.f_bfree, s.f_bavail)
            .ok_or_else(|| io::Error::other("statvfs reports an empty file system"))
    }
}

#[cfg(test)]
mod tests {
    use super::used_ratio;

    #[test]
    fn ratio_as_df_computes_it() {
        // 100000 blocks, 25000 free, 25000 available: 75% used.
        assert_eq!(used_ratio(100_000, 25_000, 25_000), Some(0.75));
        // Reserved blocks count as neither used nor available.
        assert_eq!(
            used_ratio(100_000, 30_000, 25_000),
            Some(70_000.0 / 95_000.0)
        );
        assert_eq!(used_ratio(0, 0, 0), None);
    }

    #[test]
    fn statvfs_of_a_real_directory() {
        let dir = tempfile::tempdir().unwrap();
        let s = rustix::fs::statvfs(dir.path()).unwrap();
        let r = used_ratio(s.f_blocks, s.f_bfree, s.f_bavail).unwrap();
        assert!((0.0..=1.0).contains(&r), "{r}");
    }
}
