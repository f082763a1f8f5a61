//! Retention (RocketMQ's CleanCommitLogService): deletes old commit-log
//! segments, and stops writes before the disk fills.
//!
//! Every `check_interval_ms`:
//! - usage >= `disk_full_ratio` (90 %): the store refuses puts with
//!   SERVICE_NOT_AVAILABLE and a "disk full" detail, until usage drops
//!   below it again;
//! - usage >= `clean_forcibly_ratio` (85 %): segments are deleted oldest
//!   first whether expired or not;
//! - at a `delete_when_hours` hour, or with usage >= `max_used_ratio`
//!   (75 %): expired segments are deleted, oldest first.
//!
//! A segment is expired when it was last written more than
//! `file_reserved_hours` (72) ago by the clock. Its last write is taken as
//! the store time of the next segment's first record (a segment is full
//! once the next one starts), so the active segment never expires. At most
//! `delete_batch_max` segments go per run; deletion never passes what is
//! durable and dispatched.
//!
//! How full the disk is comes from a [`DiskUsage`]: [`QuotaUsage`] (the
//! store's segments against a byte budget; works on every backend,
//! including the simulator) or [`DfUsage`] (the real file system).

mod df;
mod quota;

pub use df::DfUsage;
pub use quota::QuotaUsage;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::service::Periodic;
use crate::store::Store;

/// How full the disk holding the store is.
pub trait DiskUsage: Send + Sync {
    /// Name in results.
    fn name(&self) -> &'static str;
    /// Used fraction, 0.0 to 1.0.
    fn used_ratio(&self, store: &Store) -> std::io::Result<f64>;
}

/// Retention settings (RocketMQ's names in brackets).
#[derive(Debug, Clone, PartialEq)]
pub struct RetentionConfig {
    /// Segments last written longer ago than this are expired, hours.
    /// Default 72 [fileReservedTime].
    pub file_reserved_hours: u64,
    /// Hours of the day (UTC, 0-23) at which expired segments are deleted.
    /// Default [4] [deleteWhen "04"].
    pub delete_when_hours: Vec<u8>,
    /// Over this used fraction, expired segments are deleted at any hour.
    /// Default 0.75 [diskMaxUsedSpaceRatio].
    pub max_used_ratio: f64,
    /// Over this, segments are deleted expired or not. Default 0.85
    /// [diskSpaceCleanForciblyRatio].
    pub clean_forcibly_ratio: f64,
    /// Over this, puts are refused. Default 0.90
    /// [diskSpaceWarningLevelRatio].
    pub disk_full_ratio: f64,
    /// Period of the check, ms. Default 10,000 [cleanResourceInterval].
    pub check_interval_ms: u64,
    /// Segments deleted per run at most. Default 10.
    pub delete_batch_max: usize,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            file_reserved_hours: 72,
            delete_when_hours: vec![4],
            max_used_ratio: 0.75,
            clean_forcibly_ratio: 0.85,
            disk_full_ratio: 0.90,
            check_interval_ms: 10_000,
            delete_batch_max: 10,
        }
    }
}

impl RetentionConfig {
    /// Checks every value once.
    pub fn sanitize(&self) -> Result<()> {
        let ok = 0.0 < self.max_used_ratio
            && self.max_used_ratio <= self.clean_forcibly_ratio
            && self.clean_forcibly_ratio <= self.disk_full_ratio
            && self.disk_full_ratio <= 1.0;
        if !ok {
            return Err(Error::Config(format!(
                "retention ratios must satisfy 0 < max_used {} <= clean_forcibly {} <= disk_full {} <= 1",
                self.max_used_ratio, self.clean_forcibly_ratio, self.disk_full_ratio
            )));
        }
        if self.delete_when_hours.iter().any(|&h| h > 23) {
            return Err(Error::Config("delete_when_hours must be 0-23".into()));
        }
        if self.check_interval_ms == 0 || self.delete_batch_max == 0 {
            return Err(Error::Config(
                "check_interval_ms and delete_batch_max must be > 0".into(),
            ));
        }
        Ok(())
    }
}

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct RetentionRun {
    /// Used fraction seen.
    pub used_ratio: f64,
    /// Puts are refused after this run.
    pub disk_full: bool,
    /// Why deletion ran: "time", "space", "forced", or empty.
    pub reason: String,
    /// Files removed (segments and consume-queue files).
    pub removed: Vec<std::path::PathBuf>,
    /// Segments removed.
    pub segments_removed: usize,
}

/// The retention service.
pub struct Retention {
    store: Arc<Store>,
    cfg: RetentionConfig,
    clock: Arc<dyn Clock>,
    usage: Box<dyn DiskUsage>,
    blocked_by_us: AtomicBool,
    thread: Mutex<Option<Periodic>>,
}

impl std::fmt::Debug for Retention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retention")
            .field("cfg", &self.cfg)
            .field("usage", &self.usage.name())
            .finish()
    }
}

impl Retention {
    /// A retention service (not started; see [`Retention::start`]).
    pub fn new(
        store: Arc<Store>,
        cfg: RetentionConfig,
        clock: Arc<dyn Clock>,
        usage: Box<dyn DiskUsage>,
    ) -> Result<Arc<Retention>> {
        cfg.sanitize()?;
        Ok(Arc::new(Retention {
            store,
            cfg,
            clock,
            usage,
            blocked_by_us: AtomicBool::new(false),
            thread: Mutex::new(None),
        }))
    }

    /// Runs [`Retention::run_once`] every `check_interval_ms` on a thread.
    pub fn start(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        let t = Periodic::spawn(
            "mqlab-retention",
            Duration::from_millis(self.cfg.check_interval_ms),
            move || match me.upgrade() {
                Some(r) => {
                    let _ = r.run_once();
                    true
                }
                None => false,
            },
        );
        *self.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(t);
    }

    /// Stops the thread.
    pub fn stop(&self) {
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            t.stop();
        }
    }

    fn guard_writes(&self, ratio: f64) -> bool {
        let full = ratio >= self.cfg.disk_full_ratio;
        if full {
            self.store.set_write_block(Some(format!(
                "disk full: {:.1}% used, at or over disk_full_ratio {:.0}%",
                ratio * 100.0,
                self.cfg.disk_full_ratio * 100.0
            )));
            self.blocked_by_us.store(true, Ordering::Release);
        } else if self.blocked_by_us.swap(false, Ordering::AcqRel) {
            self.store.set_write_block(None);
        }
        full
    }

    fn hour_utc(&self) -> u8 {
        (self.clock.now_ms().div_euclid(3_600_000).rem_euclid(24)) as u8
    }

    /// One check: guards writes, deletes what the rules allow.
    pub fn run_once(&self) -> Result<RetentionRun> {
        let ratio = self
            .usage
            .used_ratio(&self.store)
            .map_err(|e| Error::io("disk usage", self.store.dir(), e))?;
        let mut run = RetentionRun {
            used_ratio: ratio,
            disk_full: self.guard_writes(ratio),
            ..RetentionRun::default()
        };
        let forced = ratio >= self.cfg.clean_forcibly_ratio;
        let space = ratio >= self.cfg.max_used_ratio;
        let time = self.cfg.delete_when_hours.contains(&self.hour_utc());
        run.reason = if forced {
            "forced"
        } else if space {
            "space"
        } else if time {
            "time"
        } else {
            return Ok(run);
        }
        .to_string();
        let bases = self.store.segment_bases();
        let now = self.clock.now_ms();
        let reserved = self.cfg.file_reserved_hours.saturating_mul(3_600_000) as i64;
        let mut cut = None;
        for (i, w) in bases.windows(2).enumerate() {
            if i >= self.cfg.delete_batch_max {
                break;
            }
            let expired = match self.store.get(w[1]) {
                Ok(first_of_next) => first_of_next.store_timestamp_ms + reserved <= now,
                Err(_) => false,
            };
            if !(expired || forced) {
                break;
            }
            cut = Some(w[1]);
        }
        if let Some(cut) = cut {
            let before = self.store.segment_bases().len();
            run.removed = self.store.delete_segments_before(cut)?;
            run.segments_removed = before - self.store.segment_bases().len();
            if run.disk_full {
                let ratio = self
                    .usage
                    .used_ratio(&self.store)
                    .map_err(|e| Error::io("disk usage", self.store.dir(), e))?;
                run.used_ratio = ratio;
                run.disk_full = self.guard_writes(ratio);
            }
        }
        Ok(run)
    }
}

impl Drop for Retention {
    fn drop(&mut self) {
        self.stop();
    }
}
