//! Segment-file series: a directory of files, each named by the 20-digit,
//! zero-padded offset of its first byte (RocketMQ's `offset2FileName`).
//! The commit log, every consume queue and the timer log are such series;
//! this is the one place that names, lists, opens and creates their files.
//!
//! What a series means by an offset (commit-log bytes, consume-queue bytes,
//! timer-log bytes) and how it treats gaps, short files or names past the
//! end stays with its owner: a listing reports what is there, sorted, and
//! the names that are not offsets.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::io::{Env, File, OpenOptions};

/// 20-digit zero-padded file name of the file starting at `offset`.
pub fn file_name(offset: u64) -> String {
    format!("{offset:020}")
}

/// Parses a 20-digit file name; anything else is `None`.
pub fn parse_file_name(name: &str) -> Option<u64> {
    if name.len() != 20 || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    name.parse().ok()
}

/// What a directory of a series holds.
#[derive(Debug, Default)]
pub struct Listing {
    /// Files named by an offset, by offset.
    pub files: Vec<(u64, PathBuf)>,
    /// Everything else in the directory.
    pub ignored: Vec<PathBuf>,
}

/// One directory of offset-named files, on one environment.
#[derive(Clone)]
pub struct FileSeries {
    env: Arc<dyn Env>,
    dir: PathBuf,
}

impl std::fmt::Debug for FileSeries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSeries")
            .field("dir", &self.dir)
            .finish()
    }
}

impl FileSeries {
    /// The series in `dir` (nothing is touched yet).
    pub fn new(env: Arc<dyn Env>, dir: impl Into<PathBuf>) -> FileSeries {
        FileSeries {
            env,
            dir: dir.into(),
        }
    }

    /// The environment the files live on.
    pub fn env(&self) -> &Arc<dyn Env> {
        &self.env
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of the file starting at `base`.
    pub fn path(&self, base: u64) -> PathBuf {
        self.dir.join(file_name(base))
    }

    /// Creates the directory (and its parents) if missing.
    pub fn create_dir(&self) -> Result<()> {
        self.env
            .create_dir_all(&self.dir)
            .map_err(|e| Error::io("create dir", &self.dir, e))
    }

    /// The files of the directory, sorted by offset, and what else is there.
    pub fn list(&self) -> Result<Listing> {
        let names = self
            .env
            .list_dir(&self.dir)
            .map_err(|e| Error::io("list", &self.dir, e))?;
        let mut out = Listing::default();
        for name in names {
            match parse_file_name(&name) {
                Some(base) => out.files.push((base, self.dir.join(&name))),
                None => out.ignored.push(self.dir.join(&name)),
            }
        }
        out.files.sort();
        Ok(out)
    }

    /// Opens the existing file starting at `base`.
    pub fn open(&self, base: u64, read_only: bool) -> std::io::Result<Arc<dyn File>> {
        self.env.open(
            &self.path(base),
            OpenOptions {
                read_only,
                ..OpenOptions::default()
            },
        )
    }

    /// Opens the file starting at `base`, creating it `len` bytes long (and
    /// extending a shorter one); `preallocate` reserves its blocks. The
    /// caller syncs the directory when the new name must be durable.
    pub fn create(&self, base: u64, len: u64, preallocate: bool) -> std::io::Result<Arc<dyn File>> {
        self.env.open(
            &self.path(base),
            OpenOptions {
                create: true,
                len,
                preallocate,
                read_only: false,
            },
        )
    }

    /// Deletes the file starting at `base`.
    pub fn remove(&self, base: u64) -> std::io::Result<()> {
        self.env.remove_file(&self.path(base))
    }

    /// Makes the directory's entries (new and removed names) durable.
    pub fn sync_dir(&self) -> std::io::Result<()> {
        self.env.sync_dir(&self.dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::sim::SimEnv;

    #[test]
    fn names_round_trip_and_reject_others() {
        assert_eq!(file_name(0), "00000000000000000000");
        assert_eq!(file_name(1 << 30), "00000000001073741824");
        assert_eq!(parse_file_name("00000000001073741824"), Some(1 << 30));
        assert_eq!(parse_file_name("0000000000107374182"), None);
        assert_eq!(parse_file_name("0000000000107374182x"), None);
        assert_eq!(parse_file_name("99999999999999999999"), None);
    }

    #[test]
    fn lists_sorted_and_reports_strangers() {
        let env: Arc<dyn Env> = Arc::new(SimEnv::new(1));
        let s = FileSeries::new(env, "/s");
        s.create_dir().unwrap();
        s.create(8192, 4096, false).unwrap();
        s.create(0, 4096, false).unwrap();
        s.env()
            .open(
                &s.dir().join("notes.txt"),
                OpenOptions {
                    create: true,
                    ..OpenOptions::default()
                },
            )
            .unwrap();
        let l = s.list().unwrap();
        let bases: Vec<u64> = l.files.iter().map(|(b, _)| *b).collect();
        assert_eq!(bases, vec![0, 8192]);
        assert_eq!(l.ignored, vec![PathBuf::from("/s/notes.txt")]);
        assert_eq!(s.open(8192, true).unwrap().len(), 4096);
        s.remove(0).unwrap();
        assert_eq!(s.list().unwrap().files.len(), 1);
    }
}
