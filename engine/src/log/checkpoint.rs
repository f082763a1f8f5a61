//! The `checkpoint` file: RocketMQ's StoreCheckpoint plus mqlab's extension.
//!
//! Layout (4 KiB, big-endian): physic msg timestamp @0, logics msg
//! timestamp @8, index msg timestamp @16, master flushed offset @24,
//! confirm phys offset @32. mqlab adds, past what RocketMQ reads: magic
//! "MQLB" @64, version @68, dispatched offset @72, flushed offset @80,
//! clean-shutdown end offset @88 (0 unless the last shutdown was clean),
//! flags @96 (bit 0: every record carries the record CRC).
//! See FORMAT.md.

use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::io::{Env, File, OpenOptions};

/// Size of the file.
pub const CHECKPOINT_BYTES: usize = 4096;
const EXT_MAGIC: u32 = 0x4d51_4c42; // "MQLB"
const EXT_VERSION: u32 = 1;

/// mqlab's extension fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CheckpointExt {
    /// Every record before this offset has durable consume-queue units and
    /// index items.
    pub dispatched: u64,
    /// Flushed offset when the checkpoint was written.
    pub flushed: u64,
    /// End of the log at a clean shutdown, 0 otherwise.
    pub clean_end: u64,
    /// Every record of the log carries the `__CRC32#` property, so
    /// recovery requires it (flag bit 0 at byte 96).
    pub records_have_crc: bool,
}

/// The checkpoint's fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Checkpoint {
    /// Store timestamp of the last flushed commit-log message, ms.
    pub physic_msg_timestamp: i64,
    /// Store timestamp of the last message with a flushed queue unit, ms.
    pub logics_msg_timestamp: i64,
    /// Store timestamp of the last message with a flushed index item, ms.
    pub index_msg_timestamp: i64,
    /// Master flushed offset (replication).
    pub master_flushed_offset: u64,
    /// Confirm offset.
    pub confirm_phys_offset: u64,
    /// mqlab's fields, absent in files other implementations wrote.
    pub ext: Option<CheckpointExt>,
}

fn be64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

fn be32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(a)
}

impl Checkpoint {
    /// Parses the file's bytes; a short file reads as zeros past its end.
    pub fn decode(bytes: &[u8]) -> Checkpoint {
        let mut b = [0u8; 100];
        let n = bytes.len().min(100);
        b[..n].copy_from_slice(&bytes[..n]);
        let ext =
            (be32(&b, 64) == EXT_MAGIC && be32(&b, 68) == EXT_VERSION).then(|| CheckpointExt {
                dispatched: be64(&b, 72),
                flushed: be64(&b, 80),
                clean_end: be64(&b, 88),
                records_have_crc: be32(&b, 96) & 1 == 1,
            });
        Checkpoint {
            physic_msg_timestamp: be64(&b, 0) as i64,
            logics_msg_timestamp: be64(&b, 8) as i64,
            index_msg_timestamp: be64(&b, 16) as i64,
            master_flushed_offset: be64(&b, 24),
            confirm_phys_offset: be64(&b, 32),
            ext,
        }
    }

    /// The 4 KiB image.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; CHECKPOINT_BYTES];
        b[0..8].copy_from_slice(&self.physic_msg_timestamp.to_be_bytes());
        b[8..16].copy_from_slice(&self.logics_msg_timestamp.to_be_bytes());
        b[16..24].copy_from_slice(&self.index_msg_timestamp.to_be_bytes());
        b[24..32].copy_from_slice(&self.master_flushed_offset.to_be_bytes());
        b[32..40].copy_from_slice(&self.confirm_phys_offset.to_be_bytes());
        if let Some(ext) = self.ext {
            b[64..68].copy_from_slice(&EXT_MAGIC.to_be_bytes());
            b[68..72].copy_from_slice(&EXT_VERSION.to_be_bytes());
            b[72..80].copy_from_slice(&ext.dispatched.to_be_bytes());
            b[80..88].copy_from_slice(&ext.flushed.to_be_bytes());
            b[88..96].copy_from_slice(&ext.clean_end.to_be_bytes());
            b[96..100].copy_from_slice(&u32::from(ext.records_have_crc).to_be_bytes());
        }
        b
    }
}

/// The open checkpoint file.
pub struct CheckpointFile {
    file: Arc<dyn File>,
    path: std::path::PathBuf,
}

impl CheckpointFile {
    /// Reads the checkpoint at `path`, if the file exists.
    pub fn read(env: &dyn Env, path: &Path) -> Result<Option<Checkpoint>> {
        if !env.exists(path) {
            return Ok(None);
        }
        let f = env
            .open(path, OpenOptions::read_only())
            .map_err(|e| Error::io("open", path, e))?;
        let mut b = vec![0u8; 100];
        let n = f
            .read_at(0, &mut b)
            .map_err(|e| Error::io("read", path, e))?;
        Ok(Some(Checkpoint::decode(&b[..n])))
    }

    /// Opens (creating) the checkpoint for writing.
    pub fn open(env: &dyn Env, path: &Path) -> Result<CheckpointFile> {
        let file = env
            .open(
                path,
                OpenOptions {
                    create: true,
                    len: CHECKPOINT_BYTES as u64,
                    ..OpenOptions::default()
                },
            )
            .map_err(|e| Error::io("open", path, e))?;
        Ok(CheckpointFile {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Writes and syncs the checkpoint.
    pub fn write(&self, cp: &Checkpoint) -> Result<()> {
        self.file
            .write_at(0, &cp.encode())
            .and_then(|_| self.file.sync_data())
            .map_err(|e| Error::io("write checkpoint", &self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_foreign() {
        let cp = Checkpoint {
            physic_msg_timestamp: 1,
            logics_msg_timestamp: 2,
            index_msg_timestamp: 3,
            master_flushed_offset: 4,
            confirm_phys_offset: 5,
            ext: Some(CheckpointExt {
                dispatched: 6,
                flushed: 7,
                clean_end: 8,
                records_have_crc: true,
            }),
        };
        assert_eq!(Checkpoint::decode(&cp.encode()), cp);
        let mut foreign = cp.encode();
        foreign[64..].fill(0);
        assert_eq!(Checkpoint::decode(&foreign).ext, None);
        assert_eq!(Checkpoint::decode(&[1, 2, 3]).ext, None);
    }
}
