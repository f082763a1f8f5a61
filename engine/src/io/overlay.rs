//! `overlay`: reads through to a real directory, keeps every change in
//! memory. `Store::open` with `read_only` uses it, so `mqlab verify` and
//! `inspect` can run full recovery (truncation, re-dispatch) on a live or
//! damaged store without modifying a byte of it.
//!
//! Unlike loading files into memory, only what is written is held: a
//! store with many 1 GiB segments costs the memory of its recovery writes
//! (consume-queue units, index items), not of its data. Writes are kept as
//! non-overlapping byte ranges; a shrink hides the real bytes past it.
//! Nothing here is durable: `sync_data` is a no-op.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use super::{fsutil, Env, File, OpenOptions};

/// Name in results.
pub const NAME: &str = "overlay";

/// Read-through, write-to-memory environment over a real directory.
#[derive(Debug, Default)]
pub struct OverlayEnv {
    files: Mutex<HashMap<PathBuf, Arc<OverlayFile>>>,
    dirs: Mutex<BTreeSet<PathBuf>>,
    removed: Mutex<BTreeSet<PathBuf>>,
}

impl OverlayEnv {
    /// A new overlay (paths are used as given, read from the real file
    /// system).
    pub fn new() -> Self {
        OverlayEnv::default()
    }
}

#[derive(Debug)]
struct State {
    len: u64,
    /// Real bytes at or past this offset read as zero (a shrink hid them).
    real_visible: u64,
    /// Written ranges: start -> bytes, non-overlapping.
    patches: BTreeMap<u64, Vec<u8>>,
}

#[derive(Debug)]
struct OverlayFile {
    real: Option<std::fs::File>,
    state: RwLock<State>,
}

impl OverlayFile {
    fn insert(&self, st: &mut State, off: u64, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let end = off + data.len() as u64;
        // Merge with every overlapping or touching range into one.
        let mut start = off;
        let mut merged_end = end;
        let overlapping: Vec<u64> = st
            .patches
            .range(..=end)
            .filter(|(s, b)| **s + b.len() as u64 >= off)
            .map(|(s, _)| *s)
            .collect();
        let mut pieces = Vec::new();
        for s in overlapping {
            let b = st.patches.remove(&s).expect("key just listed");
            start = start.min(s);
            merged_end = merged_end.max(s + b.len() as u64);
            pieces.push((s, b));
        }
        let mut buf = vec![0u8; (merged_end - start) as usize];
        for (s, b) in pieces {
            let at = (s - start) as usize;
            buf[at..at + b.len()].copy_from_slice(&b);
        }
        let at = (off - start) as usize;
        buf[at..at + data.len()].copy_from_slice(data);
        st.patches.insert(start, buf);
    }
}

impl File for OverlayFile {
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
        self.insert(&mut st, offset, buf);
        if !buf.is_empty() {
            st.len = st.len.max(offset + buf.len() as u64);
        }
        Ok(())
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let st = self.state.read().unwrap_or_else(|e| e.into_inner());
        if offset >= st.len {
            return Ok(0);
        }
        let n = ((st.len - offset) as usize).min(buf.len());
        let out = &mut buf[..n];
        out.fill(0);
        let end = offset + n as u64;
        let real_end = st.real_visible.min(end);
        if let (Some(f), true) = (&self.real, offset < real_end) {
            let want = (real_end - offset) as usize;
            let mut done = 0;
            while done < want {
                match f.read_at(&mut out[done..want], offset + done as u64) {
                    Ok(0) => break,
                    Ok(k) => done += k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        for (s, b) in st.patches.range(..end) {
            let (ps, pe) = (*s, *s + b.len() as u64);
            if pe <= offset {
                continue;
            }
            let from = ps.max(offset);
            let to = pe.min(end);
            out[(from - offset) as usize..(to - offset) as usize]
                .copy_from_slice(&b[(from - ps) as usize..(to - ps) as usize]);
        }
        Ok(n)
    }

    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
        if len < st.len {
            st.real_visible = st.real_visible.min(len);
            // Drop or cut patches past the new end.
            let past: Vec<u64> = st.patches.range(len..).map(|(s, _)| *s).collect();
            for s in past {
                st.patches.remove(&s);
            }
            if let Some((s, b)) = st.patches.range_mut(..len).next_back() {
                let keep = (len - *s) as usize;
                if b.len() > keep {
                    b.truncate(keep);
                }
            }
        }
        st.len = len;
        Ok(())
    }

    fn len(&self) -> u64 {
        self.state.read().unwrap_or_else(|e| e.into_inner()).len
    }
}

impl Env for OverlayEnv {
    fn name(&self) -> &'static str {
        NAME
    }

    fn open(&self, path: &Path, opts: OpenOptions) -> io::Result<Arc<dyn File>> {
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = files.get(path) {
            if opts.len > 0 && f.len() < opts.len {
                f.set_len(opts.len)?;
            }
            return Ok(f.clone());
        }
        let removed = self
            .removed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(path);
        let real = if removed {
            None
        } else {
            match std::fs::File::open(path) {
                Ok(f) => Some(f),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(e),
            }
        };
        if real.is_none() && !opts.create {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{}: no such file", path.display()),
            ));
        }
        let real_len = match &real {
            Some(f) => f.metadata()?.len(),
            None => 0,
        };
        let f = Arc::new(OverlayFile {
            real,
            state: RwLock::new(State {
                len: real_len.max(opts.len),
                real_visible: real_len,
                patches: BTreeMap::new(),
            }),
        });
        files.insert(path.to_path_buf(), f.clone());
        Ok(f)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let removed = self
            .removed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut names: BTreeSet<String> = fsutil::list_dir(path)?
            .into_iter()
            .filter(|n| !removed.contains(&path.join(n)))
            .collect();
        let files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        let dirs = self.dirs.lock().unwrap_or_else(|e| e.into_inner());
        for p in files.keys().chain(dirs.iter()) {
            if p.parent() == Some(path) && !removed.contains(p) {
                if let Some(n) = p.file_name().and_then(|n| n.to_str()) {
                    names.insert(n.to_string());
                }
            }
        }
        Ok(names.into_iter().collect())
    }

    fn is_dir(&self, path: &Path) -> bool {
        self.dirs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(path)
            || path.is_dir()
    }

    fn exists(&self, path: &Path) -> bool {
        if self
            .removed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(path)
        {
            return false;
        }
        self.files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(path)
            || self.is_dir(path)
            || path.exists()
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut dirs = self.dirs.lock().unwrap_or_else(|e| e.into_inner());
        let mut p = Some(path);
        while let Some(d) = p {
            if d.as_os_str().is_empty() {
                break;
            }
            dirs.insert(d.to_path_buf());
            p = d.parent();
        }
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let existed = self
            .files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(path)
            .is_some();
        if !existed && !path.exists() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{}: no such file", path.display()),
            ));
        }
        self.removed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(path.to_path_buf());
        Ok(())
    }

    fn sync_dir(&self, _path: &Path) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> OpenOptions {
        OpenOptions::default()
    }

    #[test]
    fn reads_through_and_never_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789").unwrap();
        let env = OverlayEnv::new();
        let f = env.open(&path, opts()).unwrap();
        f.write_at(2, b"ab").unwrap();
        f.write_at(3, b"XYZ").unwrap();
        f.write_at(12, b"!").unwrap();
        let mut b = [0u8; 16];
        let n = f.read_at(0, &mut b).unwrap();
        assert_eq!(&b[..n], b"01aXYZ6789\0\0!");
        // Shrink then grow: the hidden real bytes read as zero.
        f.set_len(4).unwrap();
        f.set_len(8).unwrap();
        let n = f.read_at(0, &mut b).unwrap();
        assert_eq!(&b[..n], b"01aX\0\0\0\0");
        env.remove_file(&path).unwrap();
        assert!(!env.exists(&path));
        assert!(env.list_dir(dir.path()).unwrap().is_empty());
        // The real file is untouched.
        assert_eq!(std::fs::read(&path).unwrap(), b"0123456789");
    }

    #[test]
    fn patches_merge_in_any_order() {
        let dir = tempfile::tempdir().unwrap();
        let env = OverlayEnv::new();
        let f = env
            .open(
                &dir.path().join("new"),
                OpenOptions {
                    create: true,
                    len: 32,
                    ..OpenOptions::default()
                },
            )
            .unwrap();
        let mut model = vec![0u8; 32];
        for (i, (off, len)) in [(10, 5), (0, 3), (12, 10), (2, 9), (30, 2), (5, 1)]
            .into_iter()
            .enumerate()
        {
            let data = vec![i as u8 + 1; len];
            f.write_at(off, &data).unwrap();
            model[off as usize..off as usize + len].copy_from_slice(&data);
        }
        let mut b = vec![0u8; 32];
        assert_eq!(f.read_at(0, &mut b).unwrap(), 32);
        assert_eq!(b, model);
        let mut part = vec![0u8; 7];
        f.read_at(9, &mut part).unwrap();
        assert_eq!(part, model[9..16]);
        assert!(!dir.path().join("new").exists());
    }
}
