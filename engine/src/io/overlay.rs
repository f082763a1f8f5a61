//! `overlay`: reads through to a real directory, keeps every change in
//! memory. `Store::open` with `read_only` uses it, so `mqlab verify` and
//! `inspect` can run full recovery (truncation, re-dispatch) on a live or
//! damaged store without modifying a byte of it.
//!
//! Unlike loading files into memory, only what is written is held: a
//! store with many 1 GiB segments costs the memory of its recovery writes
//! (consume-queue units, index items), not of its data. Writes land in
//! 4 KiB pages (a page is filled from the real file the first time it is
//! written), so a write costs its own bytes plus at most two page fills,
//! whatever the file's size or how many writes came before; a shrink hides
//! the real bytes past it. Nothing here is durable: `sync_data` is a no-op.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use super::{fsutil, Env, File, OpenOptions};

/// Name in results.
pub const NAME: &str = "overlay";

/// Bytes per overlay page.
const PAGE_BYTES: u64 = 4096;

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
    /// Written pages: page number -> the page's whole content (real bytes
    /// where nothing was written, zero past `real_visible`).
    pages: BTreeMap<u64, Box<[u8]>>,
}

#[derive(Debug)]
struct OverlayFile {
    real: Option<std::fs::File>,
    state: RwLock<State>,
}

impl OverlayFile {
    /// Reads real bytes `[offset, offset + out.len())` below
    /// `real_visible` into `out`; the rest of `out` is zero.
    fn read_real(&self, real_visible: u64, offset: u64, out: &mut [u8]) -> io::Result<()> {
        out.fill(0);
        let end = offset + out.len() as u64;
        let real_end = real_visible.min(end);
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
        Ok(())
    }
}

impl File for OverlayFile {
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
        let end = offset + buf.len() as u64;
        let mut at = offset;
        while at < end {
            let page = at / PAGE_BYTES;
            let page_start = page * PAGE_BYTES;
            let from = (at - page_start) as usize;
            let to = ((end - page_start).min(PAGE_BYTES)) as usize;
            if !st.pages.contains_key(&page) {
                let mut fresh = vec![0u8; PAGE_BYTES as usize].into_boxed_slice();
                // A page past the file's end holds zeros; below it, what
                // a read would see.
                self.read_real(st.real_visible, page_start, &mut fresh)?;
                st.pages.insert(page, fresh);
            }
            let src = (at - offset) as usize;
            let p = st.pages.get_mut(&page).expect("page just ensured");
            p[from..to].copy_from_slice(&buf[src..src + (to - from)]);
            at = page_start + to as u64;
        }
        st.len = st.len.max(end);
        Ok(())
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let st = self.state.read().unwrap_or_else(|e| e.into_inner());
        if offset >= st.len {
            return Ok(0);
        }
        let n = ((st.len - offset) as usize).min(buf.len());
        if n == 0 {
            return Ok(0);
        }
        let out = &mut buf[..n];
        let end = offset + n as u64;
        self.read_real(st.real_visible, offset, out)?;
        let first = offset / PAGE_BYTES;
        let last = (end - 1) / PAGE_BYTES;
        for (page, b) in st.pages.range(first..=last) {
            let ps = page * PAGE_BYTES;
            let from = ps.max(offset);
            let to = (ps + PAGE_BYTES).min(end);
            out[(from - offset) as usize..(to - offset) as usize]
                .copy_from_slice(&b[(from - ps) as usize..(to - ps) as usize]);
        }
        Ok(n)
    }

    fn next_data(&self, offset: u64) -> io::Result<Option<u64>> {
        let st = self.state.read().unwrap_or_else(|e| e.into_inner());
        if offset >= st.len {
            return Ok(None);
        }
        let real = match &self.real {
            Some(f) if offset < st.real_visible => fsutil::seek_data(f, offset, st.real_visible)?,
            _ => None,
        };
        let page = st
            .pages
            .range(offset / PAGE_BYTES..)
            .next()
            .map(|(p, _)| (p * PAGE_BYTES).max(offset));
        Ok(match (real, page) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
        if len < st.len {
            st.real_visible = st.real_visible.min(len);
            // Drop pages past the new end, zero the cut part of the last.
            let first_past = len.div_ceil(PAGE_BYTES);
            let past: Vec<u64> = st.pages.range(first_past..).map(|(p, _)| *p).collect();
            for p in past {
                st.pages.remove(&p);
            }
            if !len.is_multiple_of(PAGE_BYTES) {
                if let Some(b) = st.pages.get_mut(&(len / PAGE_BYTES)) {
                    b[(len % PAGE_BYTES) as usize..].fill(0);
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
                pages: BTreeMap::new(),
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
    fn matches_a_model_across_pages_shrinks_and_grows() {
        use rand::{Rng, SeedableRng};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let seed = 0x0fe7_1a75;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut model: Vec<u8> = (0..3 * PAGE_BYTES as usize + 123)
            .map(|_| rng.random())
            .collect();
        std::fs::write(&path, &model).unwrap();
        let original = model.clone();
        let env = OverlayEnv::new();
        let f = env.open(&path, opts()).unwrap();
        for step in 0..2_000 {
            match rng.random_range(0..10) {
                0 => {
                    let len = rng.random_range(0..5 * PAGE_BYTES) as usize;
                    f.set_len(len as u64).unwrap();
                    model.resize(len, 0);
                }
                _ => {
                    let off = rng.random_range(0..5 * PAGE_BYTES) as usize;
                    let n = rng.random_range(1..2 * PAGE_BYTES) as usize;
                    let data: Vec<u8> = (0..n).map(|_| rng.random()).collect();
                    f.write_at(off as u64, &data).unwrap();
                    if model.len() < off + n {
                        model.resize(off + n, 0);
                    }
                    model[off..off + n].copy_from_slice(&data);
                }
            }
            assert_eq!(f.len(), model.len() as u64, "seed {seed:#x} step {step}");
            let off = rng.random_range(0..=model.len());
            let mut b = vec![0u8; rng.random_range(0..3 * PAGE_BYTES as usize)];
            let n = f.read_at(off as u64, &mut b).unwrap();
            let want = &model[off..(off + b.len()).min(model.len())];
            assert_eq!(&b[..n], want, "seed {seed:#x} step {step}");
        }
        // The real file is untouched.
        assert_eq!(std::fs::read(&path).unwrap(), original);
    }

    #[test]
    fn cost_follows_what_is_written_not_the_file_size() {
        // 100,000 touching 20-byte writes (an index rebuild's pattern)
        // into a 400 MB sparse file: pages held = pages touched.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sparse");
        std::fs::File::create(&path)
            .unwrap()
            .set_len(400_000_000)
            .unwrap();
        let env = OverlayEnv::new();
        let f = env.open(&path, opts()).unwrap();
        for i in 0..100_000u64 {
            f.write_at(1_000_000 + i * 20, &i.to_be_bytes().repeat(2)[..16])
                .unwrap();
            f.write_at(1_000_000 + i * 20 + 16, &[1, 2, 3, 4]).unwrap();
        }
        let mut b = [0u8; 20];
        f.read_at(1_000_000 + 77_777 * 20, &mut b).unwrap();
        assert_eq!(&b[..8], &77_777u64.to_be_bytes());
        assert_eq!(&b[16..], &[1, 2, 3, 4]);
        let file = env.files.lock().unwrap()[&path].clone();
        let pages = file.state.read().unwrap().pages.len() as u64;
        assert_eq!(
            pages,
            (2_000_000u64 + 999_999) / PAGE_BYTES - 1_000_000 / PAGE_BYTES + 1
        );
    }

    #[test]
    fn next_data_never_skips_data() {
        // Sparse real file: data at 1 MiB and 3 MiB + 5; overlay writes at
        // 2 MiB and a shrink-then-grow past the end.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sparse");
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(4 << 20).unwrap();
        f.write_at(b"real", 1 << 20).unwrap();
        f.write_at(b"tail", (3 << 20) + 5).unwrap();
        f.sync_all().unwrap();
        let real = crate::io::pwrite::PwriteEnv::new()
            .open(&path, opts())
            .unwrap();
        let env = OverlayEnv::new();
        let over = env.open(&path, opts()).unwrap();
        over.write_at(2 << 20, b"over").unwrap();
        let model = |o: u64| -> Option<u64> {
            [1u64 << 20, 2 << 20, (3 << 20) + 5]
                .into_iter()
                .find(|&d| d + 3 >= o)
                .map(|d| d.max(o))
        };
        for o in [
            0,
            4096,
            (1 << 20) + 2,
            (1 << 20) + 4,
            3 << 20,
            (3 << 20) + 9,
            4 << 20,
        ] {
            let got = over.next_data(o).unwrap();
            // Everything between o and the answer reads as zero, and data
            // the model knows of is never past the answer.
            if let Some(want) = model(o) {
                let at = got.expect("data follows");
                assert!(at >= o && at <= want, "offset {o}: {at} vs {want}");
            }
            let until = got.unwrap_or(4 << 20);
            let mut b = vec![0u8; (until - o) as usize];
            over.read_at(o, &mut b).unwrap();
            assert!(b.iter().all(|x| *x == 0), "offset {o}: data skipped");
        }
        // The plain backend answers within the file too.
        let at = real.next_data(4096).unwrap().unwrap();
        assert!(at <= 1 << 20);
        assert_eq!(real.next_data(4 << 20).unwrap(), None);
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
