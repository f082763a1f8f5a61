//! Key index: RocketMQ's IndexFile, a hash table on disk mapping
//! `topic#key` to commit-log offsets, chained newest first.
//!
//! File layout (see FORMAT.md): a 40-byte header, `slots` 4-byte hash
//! slots holding the newest item number of that hash (0 = empty), then
//! `items` 20-byte items (key hash 4, phys offset 8, seconds since the
//! header's begin timestamp 4, previous item number 4). Item 0 is never
//! used. Lookups return candidates; the store decodes each record and keeps
//! only those whose topic and keys really match, so hash collisions and
//! items left past a recovery cut are harmless.
//!
//! `file.rs` is one index file; this module is the series of them
//! ([`IndexService`]: newest last, a new file when the newest is full).

mod file;

pub use file::{key_hash, IndexEntry, IndexFile, IndexHeader, HEADER_BYTES, ITEM_BYTES, MAX_HITS};

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use crate::error::{Error, Result};
use crate::io::{Env, OpenOptions};

/// All index files, newest last.
pub struct IndexService {
    env: Arc<dyn Env>,
    dir: PathBuf,
    slots: u32,
    items: u32,
    read_only: bool,
    files: RwLock<Vec<Arc<IndexFile>>>,
    write_lock: Mutex<()>,
}

impl IndexService {
    /// Loads `index/`. Geometry: the configured (slots, items) when the
    /// file length matches, else items = 4 x slots (RocketMQ's default
    /// ratio); a file matching neither is ignored with a note.
    pub fn open(
        env: Arc<dyn Env>,
        dir: &Path,
        slots: u32,
        items: u32,
        read_only: bool,
        notes: &mut Vec<String>,
    ) -> Result<IndexService> {
        let mut names = env.list_dir(dir).map_err(|e| Error::io("list", dir, e))?;
        names.sort();
        let mut files = Vec::new();
        for name in names {
            let path = dir.join(&name);
            if name.len() != 17 || !name.bytes().all(|b| b.is_ascii_digit()) {
                notes.push(format!(
                    "ignored {}: not an index file name",
                    path.display()
                ));
                continue;
            }
            let file = env
                .open(
                    &path,
                    OpenOptions {
                        read_only,
                        ..OpenOptions::default()
                    },
                )
                .map_err(|e| Error::io("open", &path, e))?;
            let len = file.len();
            let geometry = |s: u64, i: u64| HEADER_BYTES + s * 4 + i * ITEM_BYTES;
            let (fs, fi) = if len == geometry(slots as u64, items as u64) {
                (slots, items)
            } else if len > HEADER_BYTES && (len - HEADER_BYTES).is_multiple_of(84) {
                let s = (len - HEADER_BYTES) / 84;
                (s as u32, (s * 4) as u32)
            } else {
                notes.push(format!(
                    "ignored {}: length {len} matches no known geometry",
                    path.display()
                ));
                continue;
            };
            let mut hb = [0u8; 40];
            let n = file
                .read_at(0, &mut hb)
                .map_err(|e| Error::io("read", &path, e))?;
            let mut header = IndexHeader::decode(&hb);
            if n < 40 || header.index_count > fi {
                notes.push(format!("ignored {}: bad header", path.display()));
                continue;
            }
            if header.index_count == 0 {
                header.index_count = 1;
            }
            let f = IndexFile {
                path,
                file,
                slots: fs,
                items: fi,
                header: Mutex::new(header),
                slot_cache: Mutex::new(None),
            };
            f.repair_header(notes)?;
            files.push(Arc::new(f));
        }
        Ok(IndexService {
            env,
            dir: dir.to_path_buf(),
            slots,
            items,
            read_only,
            files: RwLock::new(files),
            write_lock: Mutex::new(()),
        })
    }

    /// Every file, oldest first.
    pub fn files(&self) -> Vec<Arc<IndexFile>> {
        self.files.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Highest physical offset indexed (the newest file's end).
    pub fn end_phys_offset(&self) -> u64 {
        self.files()
            .last()
            .map(|f| {
                let h = f.header();
                if h.index_count > 1 {
                    h.end_phys_offset + 1
                } else {
                    0
                }
            })
            .unwrap_or(0)
    }

    fn new_file(&self, now_ms: i64) -> Result<Arc<IndexFile>> {
        self.env
            .create_dir_all(&self.dir)
            .map_err(|e| Error::io("create dir", &self.dir, e))?;
        let mut name = timestamp_name(now_ms);
        let existing = self.files();
        // Names must be unique and increasing even within one millisecond.
        if let Some(last) = existing.last() {
            let last_name = last.path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.as_str() <= last_name {
                let n: u64 = last_name.parse().unwrap_or(0) + 1;
                name = format!("{n:017}");
            }
        }
        let path = self.dir.join(&name);
        let len = HEADER_BYTES + self.slots as u64 * 4 + self.items as u64 * ITEM_BYTES;
        let file = self
            .env
            .open(
                &path,
                OpenOptions {
                    create: true,
                    len,
                    ..OpenOptions::default()
                },
            )
            .map_err(|e| Error::io("create", &path, e))?;
        let f = Arc::new(IndexFile {
            path,
            file,
            slots: self.slots,
            items: self.items,
            header: Mutex::new(IndexHeader {
                index_count: 1,
                ..IndexHeader::default()
            }),
            slot_cache: Mutex::new(None),
        });
        self.files
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(f.clone());
        Ok(f)
    }

    /// Indexes `keys` of the message at `phys`. Records below the newest
    /// file's end offset are already indexed and skipped.
    pub fn put(&self, keys: &[String], phys: u64, store_ts: i64) -> Result<()> {
        let batch: Vec<IndexEntry> = keys
            .iter()
            .map(|k| IndexEntry {
                key: k.clone(),
                phys,
                store_ts,
            })
            .collect();
        self.put_batch(&batch)
    }

    /// Indexes a dispatch round's keys, in record order, with a few writes
    /// per file (see `IndexFile::put_many`). Records below the newest
    /// file's end offset are already indexed and skipped.
    pub fn put_batch(&self, batch: &[IndexEntry]) -> Result<()> {
        if self.read_only || batch.is_empty() {
            return Ok(());
        }
        let _w = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        // Strictly below: the record at the end offset may have had only
        // some of its keys indexed before a crash. Re-adding one gives a
        // duplicate item, which lookups de-duplicate.
        let skip_below = self.files().last().and_then(|f| {
            let h = f.header();
            (h.index_count > 1).then_some(h.end_phys_offset)
        });
        let entries: Vec<(u32, u64, i64)> = batch
            .iter()
            .filter(|e| skip_below.is_none_or(|end| e.phys >= end))
            .map(|e| (key_hash(&e.key), e.phys, e.store_ts))
            .collect();
        debug_assert!(
            entries.windows(2).all(|w| w[0].1 <= w[1].1),
            "index entries out of record order"
        );
        let mut at = 0;
        while at < entries.len() {
            let file = match self.files().last() {
                Some(f) if !f.is_full() => f.clone(),
                Some(f) => {
                    f.seal()?;
                    self.new_file(entries[at].2)?
                }
                None => self.new_file(entries[at].2)?,
            };
            let took = file.put_many(&entries[at..])?;
            if took == 0 {
                // Full after all (only a file that was full when opened).
                file.seal()?;
                let fresh = self.new_file(entries[at].2)?;
                at += fresh.put_many(&entries[at..])?;
            } else {
                at += took;
            }
        }
        Ok(())
    }

    /// Candidate physical offsets for `key` in `[begin, end]`, newest file
    /// first, at most [`MAX_HITS`].
    pub fn query(&self, key: &str, begin: i64, end: i64) -> Result<Vec<u64>> {
        let mut out = Vec::new();
        for f in self.files().iter().rev() {
            if out.len() >= MAX_HITS {
                break;
            }
            if f.header().index_count <= 1 || !f.time_matches(begin, end) {
                continue;
            }
            f.select(key, begin, end, &mut out)?;
        }
        Ok(out)
    }

    /// Every `(key hash, phys)` a lookup can reach, file by file (see
    /// `IndexFile::for_each_reachable`).
    pub fn for_each_reachable(&self, f: &mut dyn FnMut(u32, u64)) -> Result<()> {
        for file in self.files() {
            file.for_each_reachable(f)?;
        }
        Ok(())
    }

    /// Recovery cut at `cut`: files whose first item is at or past it are
    /// deleted; the others have their end offset lowered below it. Items
    /// past the cut may stay in a kept file, but lookups verify the records
    /// they point at. Returns the files deleted.
    pub fn truncate_phys(&self, cut: u64) -> Result<Vec<PathBuf>> {
        let mut removed = Vec::new();
        let mut files = self.files.write().unwrap_or_else(|e| e.into_inner());
        let mut keep = Vec::new();
        for f in files.drain(..) {
            let h = f.header();
            if h.index_count > 1 && h.begin_phys_offset >= cut {
                if !self.read_only {
                    self.env
                        .remove_file(&f.path)
                        .map_err(|e| Error::io("remove", &f.path, e))?;
                }
                removed.push(f.path.clone());
                continue;
            }
            if h.index_count > 1 && h.end_phys_offset >= cut {
                // cut > begin_phys_offset >= 0 here, so cut - 1 is safe.
                f.header
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .end_phys_offset = cut - 1;
                if !self.read_only {
                    f.write_header()?;
                }
            }
            keep.push(f);
        }
        *files = keep;
        Ok(removed)
    }

    /// Crash recovery: keeps the newest file's items for records below
    /// `phys` (durable: the checkpoint flushed them before recording the
    /// offset) wherever they sit, drops the rest and recomputes every link
    /// and the slot table from the kept items, so holes, torn items or
    /// reordering among unsynced writes cannot cut a hash chain (see
    /// `IndexFile::rebuild_from`). Re-dispatch from `phys` re-adds what
    /// was dropped. Older files were sealed (synced) before the newest one
    /// got items, so they need nothing.
    pub fn rebuild_newest_from(&self, phys: u64) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        let _w = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        let Some(f) = self.files().last().cloned() else {
            return Ok(());
        };
        f.rebuild_from(phys)
    }

    /// Writes every header and syncs every file (recovery).
    pub fn sync_all(&self) -> Result<()> {
        let _w = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        for f in self.files() {
            f.write_header()?;
            f.file
                .sync_data()
                .map_err(|e| Error::io("fdatasync", &f.path, e))?;
        }
        Ok(())
    }

    /// Writes headers and syncs the newest file(s).
    pub fn flush(&self) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        let _w = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        let files = self.files();
        for f in files.iter().rev().take(2) {
            f.write_header()?;
            f.file
                .sync_data()
                .map_err(|e| Error::io("fdatasync", &f.path, e))?;
        }
        Ok(())
    }
}

/// `yyyyMMddHHmmssSSS` in UTC for a time in ms.
pub fn timestamp_name(ms: i64) -> String {
    let ms = ms.max(0);
    let secs = ms / 1000;
    let (days, sod) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = crate::clock::civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}{:03}",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::java_hash;

    #[test]
    fn timestamp_names() {
        assert_eq!(timestamp_name(0), "19700101000000000");
        // 2024-02-29T12:34:56.789Z
        assert_eq!(timestamp_name(1_709_210_096_789), "20240229123456789");
    }

    #[test]
    fn java_hash_matches_java() {
        assert_eq!(java_hash("hello"), 99_162_322);
        assert_eq!(java_hash(""), 0);
        // "polygenelubricants".hashCode() == Integer.MIN_VALUE
        assert_eq!(java_hash("polygenelubricants"), i32::MIN);
        assert_eq!(key_hash("polygenelubricants"), 0);
    }

    fn service(dir: &Path) -> IndexService {
        let env: Arc<dyn Env> = Arc::new(crate::io::pwrite::PwriteEnv::new());
        IndexService::open(env, dir, 64, 1_000, false, &mut Vec::new()).unwrap()
    }

    fn all_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_batch_writes_the_same_bytes_as_one_key_at_a_time() {
        // 64 slots, 1,000 items a file: long chains, collisions, two rolls.
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (one, batched) = (service(a.path()), service(b.path()));
        let ts = 1_700_000_000_000i64;
        let entries: Vec<IndexEntry> = (0..2_500u64)
            .map(|i| IndexEntry {
                key: format!("T#k{}", i % 700),
                phys: i * 100,
                store_ts: ts + i as i64 * 7,
            })
            .collect();
        for e in &entries {
            one.put(std::slice::from_ref(&e.key), e.phys, e.store_ts)
                .unwrap();
        }
        for chunk in entries.chunks(333) {
            batched.put_batch(chunk).unwrap();
        }
        for f in one.files().iter().chain(batched.files().iter()) {
            f.write_header().unwrap();
        }
        assert_eq!(one.files().len(), 3);
        assert_eq!(all_bytes(a.path()), all_bytes(b.path()));
        // Every key finds its newest records, newest first.
        for k in [0u64, 1, 350, 699] {
            let hits = batched.query(&format!("T#k{k}"), 0, i64::MAX).unwrap();
            let newest = k + 700 * ((2_499 - k) / 700);
            assert_eq!(hits.first(), Some(&(newest * 100)), "key {k}");
            assert!(hits.contains(&(k * 100)), "key {k}: {hits:?}");
        }
        // The bulk walk reaches exactly what lookups reach.
        let mut reached = std::collections::HashSet::new();
        batched
            .for_each_reachable(&mut |h, p| {
                reached.insert((h, p));
            })
            .unwrap();
        assert_eq!(reached.len(), entries.len());
        for e in &entries {
            assert!(reached.contains(&(key_hash(&e.key), e.phys)), "{e:?}");
        }
        // A record already indexed is skipped on a second pass.
        let count = batched.files().last().unwrap().header().index_count;
        batched.put_batch(&entries[..10]).unwrap();
        assert_eq!(batched.files().last().unwrap().header().index_count, count);
    }
}
