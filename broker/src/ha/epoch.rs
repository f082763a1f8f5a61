//! The epoch file (RocketMQ's `EpochFileCache`): which master epoch wrote
//! which part of the commit log, as entries (epoch, start offset) in
//! increasing order of both; an epoch's bytes run from its start to the
//! next entry's start (the last one's to the log's end). Kept in the data
//! directory as `epoch` (one `epoch start` pair per line, written to a
//! temporary file, synced and renamed, so a crash leaves the old or the new
//! file whole).
//!
//! A master appends (its epoch, its log end) when it takes over. A slave
//! that meets a master compares both files ([`consistent_point`]): the
//! bytes both wrote under the newest epoch they share are the same, what
//! the slave has past that is not the master's and is truncated; then the
//! slave takes the master's entries as its own (its log becomes a prefix
//! of the master's).

use std::io::Write;
use std::path::{Path, PathBuf};

/// One entry: `epoch` started writing at `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    /// Master epoch.
    pub epoch: u32,
    /// Commit-log offset of its first byte.
    pub start: u64,
}

/// Most entries a file (or a master's handshake) may hold.
pub const MAX_ENTRIES: usize = 65_536;

/// The file and its entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochFile {
    path: PathBuf,
    entries: Vec<EpochEntry>,
}

impl EpochFile {
    /// Reads `dir/epoch` (none yet: no entries).
    pub fn open(dir: &Path) -> Result<EpochFile, String> {
        let path = dir.join("epoch");
        let entries = match std::fs::read_to_string(&path) {
            Ok(text) => parse(&text).map_err(|e| format!("{}: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(format!("read {}: {e}", path.display())),
        };
        Ok(EpochFile { path, entries })
    }

    /// The entries, oldest first.
    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    /// The newest epoch (0 without entries).
    pub fn last_epoch(&self) -> u32 {
        self.entries.last().map_or(0, |e| e.epoch)
    }

    /// A master's start: drops entries starting past `start` (a slave
    /// that took a master's entries but not all its bytes), then appends
    /// (`epoch`, `start`) unless the newest entry is that epoch already.
    /// An epoch not above the newest one is refused.
    pub fn begin(&mut self, epoch: u32, start: u64) -> Result<(), String> {
        self.entries.retain(|e| e.start <= start);
        match self.entries.last() {
            Some(l) if l.epoch == epoch => return Ok(()),
            Some(l) if l.epoch > epoch => {
                return Err(format!(
                    "epoch {epoch} is older than the newest one, {}",
                    l.epoch
                ))
            }
            _ => {}
        }
        if self.entries.len() >= MAX_ENTRIES {
            self.entries.remove(0);
        }
        self.entries.push(EpochEntry { epoch, start });
        self.save()
    }

    /// A slave's adoption of its master's entries.
    pub fn replace(&mut self, entries: Vec<EpochEntry>) -> Result<(), String> {
        validate(&entries)?;
        if entries != self.entries {
            self.entries = entries;
            self.save()?;
        }
        Ok(())
    }

    fn save(&self) -> Result<(), String> {
        let tmp = self.path.with_extension("tmp");
        let mut text = String::new();
        for e in &self.entries {
            text.push_str(&format!("{} {}\n", e.epoch, e.start));
        }
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            if let Some(d) = self.path.parent() {
                std::fs::File::open(d)?.sync_all()?;
            }
            Ok(())
        };
        write().map_err(|e| format!("write {}: {e}", self.path.display()))
    }
}

fn parse(text: &str) -> Result<Vec<EpochEntry>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let mut it = line.split_whitespace();
        let (Some(a), Some(b), None) = (it.next(), it.next(), it.next()) else {
            return Err(format!("line {}: expected `epoch start`", n + 1));
        };
        let epoch = a
            .parse()
            .map_err(|e| format!("line {}: epoch {a:?}: {e}", n + 1))?;
        let start = b
            .parse()
            .map_err(|e| format!("line {}: start {b:?}: {e}", n + 1))?;
        out.push(EpochEntry { epoch, start });
    }
    validate(&out)?;
    Ok(out)
}

/// Entries must grow in both epoch and start.
pub fn validate(entries: &[EpochEntry]) -> Result<(), String> {
    if entries.len() > MAX_ENTRIES {
        return Err(format!(
            "{} epoch entries (at most {MAX_ENTRIES})",
            entries.len()
        ));
    }
    for w in entries.windows(2) {
        if w[1].epoch <= w[0].epoch || w[1].start < w[0].start {
            return Err(format!(
                "epoch entries out of order: ({}, {}) then ({}, {})",
                w[0].epoch, w[0].start, w[1].epoch, w[1].start
            ));
        }
    }
    Ok(())
}

/// The end of `epoch`'s bytes in a log ending at `end` with `entries`.
fn end_of(entries: &[EpochEntry], i: usize, end: u64) -> u64 {
    entries.get(i + 1).map_or(end, |n| n.start).min(end)
}

/// RocketMQ's `findConsistentPoint`: the offset up to which a slave's log
/// (`local` entries, ending at `local_end`) agrees with a master's
/// (`master` entries, ending at `master_end`): the newest epoch both have
/// with the same start, up to where the shorter of the two ends it. No
/// shared epoch: 0 when the slave has entries (nothing can be trusted),
/// else `min(local_end, master_end)` (a log written before epochs were
/// kept: taken as the classic protocol takes it).
pub fn consistent_point(
    local: &[EpochEntry],
    local_end: u64,
    master: &[EpochEntry],
    master_end: u64,
) -> u64 {
    if local.is_empty() {
        return local_end.min(master_end);
    }
    for (i, l) in local.iter().enumerate().rev() {
        if let Some(j) = master
            .iter()
            .position(|m| m.epoch == l.epoch && m.start == l.start)
        {
            if l.start > local_end {
                continue;
            }
            return end_of(local, i, local_end).min(end_of(master, j, master_end));
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(epoch: u32, start: u64) -> EpochEntry {
        EpochEntry { epoch, start }
    }

    #[test]
    fn consistent_points() {
        // A demoted master (epoch 1 up to 900) meets the new master, which
        // took over at 700 in epoch 2: 200 bytes of epoch 1 are not shared.
        assert_eq!(
            consistent_point(&[e(1, 0)], 900, &[e(1, 0), e(2, 700)], 1500),
            700
        );
        // A slave behind the master in the same epoch keeps everything.
        assert_eq!(consistent_point(&[e(1, 0)], 500, &[e(1, 0)], 900), 500);
        // A master that lost unflushed bytes in a crash: the slave cuts to
        // the master's end.
        assert_eq!(consistent_point(&[e(1, 0)], 900, &[e(1, 0)], 800), 800);
        // A slave that adopted epoch 2's entry but has bytes only to 650.
        assert_eq!(
            consistent_point(
                &[e(1, 0), e(2, 700)],
                650,
                &[e(1, 0), e(2, 700), e(3, 900)],
                1000
            ),
            650
        );
        // Epoch 2 shared: cut where the master's epoch 2 ended.
        assert_eq!(
            consistent_point(
                &[e(1, 0), e(2, 700)],
                1200,
                &[e(1, 0), e(2, 700), e(3, 1000)],
                1300
            ),
            1000
        );
        // Nothing shared: nothing trusted; no epochs at all: classic.
        assert_eq!(consistent_point(&[e(5, 0)], 900, &[e(1, 0)], 900), 0);
        assert_eq!(consistent_point(&[], 900, &[e(1, 0)], 800), 800);
        assert_eq!(consistent_point(&[], 0, &[e(1, 0)], 800), 0);
    }

    #[test]
    fn the_file_keeps_its_entries_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = EpochFile::open(dir.path()).unwrap();
        assert_eq!(f.last_epoch(), 0);
        f.begin(1, 0).unwrap();
        f.begin(1, 10).unwrap();
        f.begin(3, 500).unwrap();
        assert!(f.begin(2, 600).is_err());
        assert_eq!(
            EpochFile::open(dir.path()).unwrap().entries(),
            &[e(1, 0), e(3, 500)]
        );
        // A new master behind an adopted entry drops it.
        f.begin(4, 400).unwrap();
        assert_eq!(f.entries(), &[e(1, 0), e(4, 400)]);
        f.replace(vec![e(1, 0), e(2, 100)]).unwrap();
        assert_eq!(
            EpochFile::open(dir.path()).unwrap().entries(),
            &[e(1, 0), e(2, 100)]
        );
        assert!(f.replace(vec![e(2, 0), e(1, 100)]).is_err());
        std::fs::write(dir.path().join("epoch"), "1 0\nx 5\n").unwrap();
        assert!(EpochFile::open(dir.path()).unwrap_err().contains("line 2"));
    }
}
