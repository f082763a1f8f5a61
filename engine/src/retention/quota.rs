//! Disk usage as the store's commit-log segments against a byte budget:
//! the same answer on every backend, the simulator included, and what
//! tests and experiments use to reach 75/85/90 % on purpose.

use super::DiskUsage;
use crate::store::Store;

/// Segments x segment size over `capacity_bytes`.
#[derive(Debug, Clone, Copy)]
pub struct QuotaUsage {
    /// The budget, bytes.
    pub capacity_bytes: u64,
}

impl DiskUsage for QuotaUsage {
    fn name(&self) -> &'static str {
        "quota"
    }

    fn used_ratio(&self, store: &Store) -> std::io::Result<f64> {
        let used = store.segment_bases().len() as u64 * store.segment_bytes();
        Ok(used as f64 / self.capacity_bytes.max(1) as f64)
    }
}
