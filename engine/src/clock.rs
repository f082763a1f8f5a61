//! Time as the messaging services see it.
//!
//! Every rule that depends on age (lock expiry, transaction check timeout,
//! the 72-hour rule, file retention, delay levels) reads a [`Clock`], so
//! tests can move time by hours with a [`ManualClock`] instead of sleeping.
//! Waits (long polling, pull back-off) stay real: they are configured in
//! milliseconds and tests set them small.
//!
//! Also the one calendar conversion of the workspace ([`civil_from_days`]):
//! index file names and the lab's folder names both use it.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of "now" in milliseconds since the Unix epoch.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Now, ms since the epoch.
    fn now_ms(&self) -> i64;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

/// Wall-clock milliseconds since the epoch (0 if the clock is before it).
pub fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        wall_ms()
    }
}

/// The wall clock, shared.
pub fn system() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// A clock that moves only when told to. It starts at the wall clock's
/// "now" by default, so that store timestamps (always wall time) and this
/// clock agree until a test advances it.
#[derive(Debug)]
pub struct ManualClock {
    now_ms: AtomicI64,
}

impl ManualClock {
    /// A clock stopped at the wall clock's now.
    pub fn new() -> Arc<ManualClock> {
        Self::at(wall_ms())
    }

    /// A clock stopped at `ms`.
    pub fn at(ms: i64) -> Arc<ManualClock> {
        Arc::new(ManualClock {
            now_ms: AtomicI64::new(ms),
        })
    }

    /// Moves the clock forward by `ms`.
    pub fn advance(&self, ms: i64) {
        self.now_ms.fetch_add(ms, Ordering::AcqRel);
    }

    /// Sets the clock.
    pub fn set(&self, ms: i64) {
        self.now_ms.store(ms, Ordering::Release);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now_ms.load(Ordering::Acquire)
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian, UTC
/// (Howard Hinnant's civil-from-days algorithm; negative days count back
/// from the epoch).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::at(1_000);
        assert_eq!(c.now_ms(), 1_000);
        c.advance(72 * 3_600_000);
        assert_eq!(c.now_ms(), 1_000 + 72 * 3_600_000);
        c.set(5);
        assert_eq!(c.now_ms(), 5);
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
