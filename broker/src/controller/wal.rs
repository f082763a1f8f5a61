//! The controller's Raft log on disk (optional, `--data-dir`): raft-rs
//! leaves storage to its user; this keeps its `MemStorage` and writes
//! every appended entry and every hard state to one append-only file,
//! synced before the messages that depend on it go out (raft-rs's
//! `persisted_messages`), and replays the file into a fresh `MemStorage`
//! at start. A torn tail (a crash during a write) is cut at the first
//! record that does not check out.
//!
//! Record: `u32 len | u8 kind | u64 hash | payload`, big-endian; `len`
//! counts the payload; kind 1 = an `eraftpb.Entry`, 2 = a `HardState`
//! (protobuf); `hash` is FNV-1a 64 of kind and payload. Replaying appends
//! entries in order (a later entry at an index already present replaces
//! the suffix from there, as Raft overwrote it) and keeps the last hard
//! state. The file is never compacted: controller commands are rare.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use protobuf::Message as _;
use raft::prelude::{Entry, HardState};

const ENTRY: u8 = 1;
const HARD_STATE: u8 = 2;
const HEADER: usize = 13;
/// Largest record accepted at replay (a controller command is tiny).
const MAX_RECORD: usize = 16 << 20;

fn fnv(kind: u8, payload: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in std::iter::once(&kind).chain(payload) {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The open log file.
#[derive(Debug)]
pub struct Wal {
    file: File,
    path: PathBuf,
}

/// What a replay found.
#[derive(Debug, Default)]
pub struct Replayed {
    /// Entries in log order (later ones may overwrite earlier indexes).
    pub entries: Vec<Vec<Entry>>,
    /// The newest hard state.
    pub hard_state: Option<HardState>,
    /// Bytes cut from a torn tail.
    pub cut: u64,
}

impl Wal {
    /// Opens (creating) `dir/raft.log` and reads it back.
    pub fn open(dir: &Path) -> Result<(Wal, Replayed), String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let path = dir.join("raft.log");
        let mut bytes = Vec::new();
        if path.exists() {
            File::open(&path)
                .and_then(|mut f| f.read_to_end(&mut bytes))
                .map_err(|e| format!("read {}: {e}", path.display()))?;
        }
        let mut out = Replayed::default();
        let mut at = 0usize;
        while at + HEADER <= bytes.len() {
            let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap_or_default()) as usize;
            let kind = bytes[at + 4];
            let hash = u64::from_be_bytes(bytes[at + 5..at + 13].try_into().unwrap_or_default());
            if len > MAX_RECORD || at + HEADER + len > bytes.len() {
                break;
            }
            let payload = &bytes[at + HEADER..at + HEADER + len];
            if fnv(kind, payload) != hash {
                break;
            }
            match kind {
                ENTRY => match Entry::parse_from_bytes(payload) {
                    Ok(e) => out.entries.push(vec![e]),
                    Err(_) => break,
                },
                HARD_STATE => match HardState::parse_from_bytes(payload) {
                    Ok(h) => out.hard_state = Some(h),
                    Err(_) => break,
                },
                _ => break,
            }
            at += HEADER + len;
        }
        out.cut = (bytes.len() - at) as u64;
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| format!("open {}: {e}", path.display()))?;
        file.set_len(at as u64)
            .and_then(|_| file.sync_all())
            .map_err(|e| format!("cut {}: {e}", path.display()))?;
        let mut wal = Wal { file, path };
        wal.seek_end(at as u64)?;
        Ok((wal, out))
    }

    fn seek_end(&mut self, at: u64) -> Result<(), String> {
        use std::io::Seek;
        self.file
            .seek(std::io::SeekFrom::Start(at))
            .map(|_| ())
            .map_err(|e| format!("seek {}: {e}", self.path.display()))
    }

    /// Appends `entries` and `hard_state` (if any) and syncs.
    pub fn persist(
        &mut self,
        entries: &[Entry],
        hard_state: Option<&HardState>,
    ) -> Result<(), String> {
        if entries.is_empty() && hard_state.is_none() {
            return Ok(());
        }
        let mut buf = Vec::new();
        let mut put = |kind: u8, payload: Vec<u8>| {
            buf.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            buf.push(kind);
            buf.extend_from_slice(&fnv(kind, &payload).to_be_bytes());
            buf.extend_from_slice(&payload);
        };
        for e in entries {
            put(
                ENTRY,
                e.write_to_bytes()
                    .map_err(|e| format!("encode entry: {e}"))?,
            );
        }
        if let Some(h) = hard_state {
            put(
                HARD_STATE,
                h.write_to_bytes()
                    .map_err(|e| format!("encode hard state: {e}"))?,
            );
        }
        self.file
            .write_all(&buf)
            .and_then(|_| self.file.sync_data())
            .map_err(|e| format!("write {}: {e}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64, data: &[u8]) -> Entry {
        Entry {
            index,
            term,
            data: data.to_vec().into(),
            ..Default::default()
        }
    }

    #[test]
    fn replays_what_was_persisted_and_cuts_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, r) = Wal::open(dir.path()).unwrap();
        assert!(r.entries.is_empty() && r.hard_state.is_none());
        let hs = HardState {
            term: 3,
            vote: 2,
            commit: 2,
            ..Default::default()
        };
        w.persist(&[entry(1, 1, b"a"), entry(2, 1, b"b")], Some(&hs))
            .unwrap();
        w.persist(&[entry(2, 3, b"c")], None).unwrap();
        drop(w);
        // A torn record at the end.
        let path = dir.path().join("raft.log");
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[0, 0, 0, 9, 1, 7]).unwrap();
        drop(f);
        let (mut w, r) = Wal::open(dir.path()).unwrap();
        assert_eq!(r.cut, 6);
        let flat: Vec<(u64, u64)> = r
            .entries
            .iter()
            .flatten()
            .map(|e| (e.index, e.term))
            .collect();
        assert_eq!(flat, vec![(1, 1), (2, 1), (2, 3)]);
        assert_eq!(r.hard_state.unwrap().vote, 2);
        w.persist(&[entry(3, 3, b"d")], None).unwrap();
        drop(w);
        let (_, r) = Wal::open(dir.path()).unwrap();
        assert_eq!((r.entries.len(), r.cut), (4, 0));
    }
}
