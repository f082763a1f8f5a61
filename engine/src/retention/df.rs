//! Disk usage of the real file system holding the store, from `df -P -k`
//! (POSIX output: used and available 1 KiB blocks). A child process keeps
//! the engine free of unsafe code; it runs once per check interval.

use std::io;
use std::process::Command;

use super::DiskUsage;
use crate::store::Store;

/// The file system's used / (used + available).
#[derive(Debug, Default, Clone, Copy)]
pub struct DfUsage;

/// Parses `df -P -k` output: used / (used + available) of the last line.
pub fn parse_df(out: &str) -> Option<f64> {
    let line = out.lines().rfind(|l| !l.trim().is_empty())?;
    let cols: Vec<&str> = line.split_whitespace().collect();
    // Filesystem 1024-blocks Used Available Capacity Mounted-on
    let used: f64 = cols.get(2)?.parse().ok()?;
    let avail: f64 = cols.get(3)?.parse().ok()?;
    (used + avail > 0.0).then(|| used / (used + avail))
}

impl DiskUsage for DfUsage {
    fn name(&self) -> &'static str {
        "df"
    }

    fn used_ratio(&self, store: &Store) -> io::Result<f64> {
        let out = Command::new("df")
            .arg("-P")
            .arg("-k")
            .arg(store.dir())
            .output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "df failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        parse_df(&String::from_utf8_lossy(&out.stdout))
            .ok_or_else(|| io::Error::other("cannot parse df output"))
    }
}

#[cfg(test)]
mod tests {
    use super::parse_df;

    #[test]
    fn parses_posix_df() {
        let out = "Filesystem     1024-blocks      Used Available Capacity Mounted on\n\
                   /dev/sda1        100000     75000     25000      75% /work\n";
        assert_eq!(parse_df(out), Some(0.75));
        assert_eq!(parse_df("garbage"), None);
    }
}
