//! The `config/timercheck` records (two, alternating, each with a CRC)
//! and the checkpoint that writes them once the timer log and the wheel
//! copy they vouch for are durable.

use super::Inner;
use crate::error::{Error, Result};

pub(super) const CHECK_RECORD_BYTES: u64 = 128;
const CHECK_MAGIC: u32 = 0x4d51_5443; // "MQTC"
const CHECK_VERSION: u32 = 1;
/// One `config/timercheck` record (FORMAT.md, "Delay").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct CheckRecord {
    pub(super) gen: u64,
    pub(super) tl_end: u64,
    pub(super) tl_first: u64,
    pub(super) q_timer: u64,
    pub(super) q_cancel: u64,
    pub(super) r_ms: i64,
    pub(super) c_offset: u64,
    pub(super) precision_ms: u64,
    pub(super) slots: u64,
}

impl CheckRecord {
    pub(super) fn encode(&self) -> [u8; CHECK_RECORD_BYTES as usize] {
        let mut b = [0u8; CHECK_RECORD_BYTES as usize];
        b[0..4].copy_from_slice(&CHECK_MAGIC.to_be_bytes());
        b[4..8].copy_from_slice(&CHECK_VERSION.to_be_bytes());
        let fields = [
            self.gen,
            self.tl_end,
            self.tl_first,
            self.q_timer,
            self.q_cancel,
            self.r_ms as u64,
            self.c_offset,
            self.precision_ms,
            self.slots,
        ];
        for (k, v) in fields.iter().enumerate() {
            b[8 + k * 8..16 + k * 8].copy_from_slice(&v.to_be_bytes());
        }
        let crc = crc32fast::hash(&b[..124]);
        b[124..128].copy_from_slice(&crc.to_be_bytes());
        b
    }

    pub(super) fn decode(b: &[u8]) -> Option<CheckRecord> {
        if b.len() < CHECK_RECORD_BYTES as usize
            || u32::from_be_bytes([b[0], b[1], b[2], b[3]]) != CHECK_MAGIC
            || u32::from_be_bytes([b[4], b[5], b[6], b[7]]) != CHECK_VERSION
            || u32::from_be_bytes([b[124], b[125], b[126], b[127]]) != crc32fast::hash(&b[..124])
        {
            return None;
        }
        let f = |k: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[8 + k * 8..16 + k * 8]);
            u64::from_be_bytes(x)
        };
        Some(CheckRecord {
            gen: f(0),
            tl_end: f(1),
            tl_first: f(2),
            q_timer: f(3),
            q_cancel: f(4),
            r_ms: f(5) as i64,
            c_offset: f(6),
            precision_ms: f(7),
            slots: f(8),
        })
    }
}
impl Inner {
    /// Writes a checkpoint (module docs).
    pub(super) fn checkpoint(&self) -> Result<()> {
        self.check_poison()?;
        let _g = self
            .checkpoint_lock
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let r = self.checkpoint_inner();
        if let Err(e) = &r {
            self.poison(format!("checkpoint: {e}"));
        }
        r
    }

    fn checkpoint_inner(&self) -> Result<()> {
        let (rec, dirty, files, copy) = {
            let mut st = self.lock();
            st.index.tl.write_out()?;
            // Every slot before R is fully delivered: each of its puts was
            // acknowledged, so the progress is as durable as the store
            // makes any acknowledged put.
            let r_cp = st.delivered_through();
            let c_cp = st
                .loaded
                .values()
                .map(|l| l.load_offset)
                .min()
                .unwrap_or_else(|| self.store.offsets().written);
            let copy = ((st.gen + 1) % 2) as usize;
            let dirty = st.index.take_dirty(copy);
            let files = st.index.tl.take_unsynced();
            let rec = CheckRecord {
                gen: st.gen + 1,
                tl_end: st.index.tl.end(),
                tl_first: st.index.tl.first_pos(),
                q_timer: st.q_timer,
                q_cancel: st.q_cancel,
                r_ms: r_cp,
                c_offset: c_cp,
                precision_ms: self.cfg.precision_ms,
                slots: self.cfg.slots(),
            };
            (rec, dirty, files, copy)
        };
        for (path, f) in files {
            f.sync_data()
                .map_err(|e| Error::io("fdatasync", &path, e))?;
        }
        self.wheel_file.write_entries(copy, &dirty)?;
        self.wheel_file.sync()?;
        let at = (rec.gen % 2) * CHECK_RECORD_BYTES;
        self.check_file
            .write_at(at, &rec.encode())
            .and_then(|_| self.check_file.sync_data())
            .map_err(|e| Error::io("write", &self.check_path, e))?;
        let mut st = self.lock();
        st.gen = rec.gen;
        let older = st.r_persisted;
        st.r_persisted = rec.r_ms;
        // Files only slots before both valid checkpoints' R point into.
        st.index.release_before(older.min(rec.r_ms))?;
        Ok(())
    }
}
