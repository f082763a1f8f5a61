//! The `timerwheel` file (FORMAT.md, "Delay"): two copies of the wheel's
//! entries; a checkpoint writes the copy the newest checkpoint does not
//! use, so a crash at any instant leaves the other intact.

use std::path::PathBuf;
use std::sync::Arc;

use super::{Slot, SLOT_BYTES};
use crate::error::{Error, Result};
use crate::io::{Env, File, OpenOptions};

/// The `timerwheel` file: two copies of the entries, copy `k` at byte
/// `k * slots * 32`.
pub(super) struct WheelFile {
    pub(super) path: PathBuf,
    pub(super) file: Arc<dyn File>,
    pub(super) slots: u64,
}

impl WheelFile {
    pub(super) fn open(env: &dyn Env, path: PathBuf, slots: u64) -> Result<WheelFile> {
        let file = env
            .open(
                &path,
                OpenOptions {
                    create: true,
                    len: 2 * slots * SLOT_BYTES,
                    ..OpenOptions::default()
                },
            )
            .map_err(|e| Error::io("open", &path, e))?;
        Ok(WheelFile { path, file, slots })
    }

    pub(super) fn read_copy(&self, copy: usize) -> Result<Vec<Slot>> {
        let mut out = Vec::with_capacity(self.slots as usize);
        let base = copy as u64 * self.slots * SLOT_BYTES;
        let mut buf = vec![0u8; 1 << 20];
        let mut i = 0u64;
        while i < self.slots {
            let n = ((self.slots - i) * SLOT_BYTES).min(buf.len() as u64) as usize;
            let got = self
                .file
                .read_at(base + i * SLOT_BYTES, &mut buf[..n])
                .map_err(|e| Error::io("read", &self.path, e))?;
            if got < n {
                buf[got..n].fill(0);
            }
            for c in buf[..n].chunks_exact(32) {
                let s = Slot::decode(c).ok_or_else(|| Error::Corrupt {
                    path: self.path.clone(),
                    offset: base + i * SLOT_BYTES,
                    reason: "wheel entry CRC mismatch".into(),
                })?;
                out.push(s);
                i += 1;
            }
        }
        Ok(out)
    }

    pub(super) fn write_entries(&self, copy: usize, entries: &[(usize, Slot)]) -> Result<()> {
        let base = copy as u64 * self.slots * SLOT_BYTES;
        let mut k = 0;
        let mut buf = Vec::new();
        while k < entries.len() {
            // One write per run of consecutive entries.
            let start = entries[k].0;
            buf.clear();
            while k < entries.len()
                && entries[k].0 == start + buf.len() / 32
                && buf.len() < (1 << 20)
            {
                buf.extend_from_slice(&entries[k].1.encode());
                k += 1;
            }
            self.file
                .write_at(base + start as u64 * SLOT_BYTES, &buf)
                .map_err(|e| Error::io("write", &self.path, e))?;
        }
        Ok(())
    }

    pub(super) fn sync(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| Error::io("fdatasync", &self.path, e))
    }
}
