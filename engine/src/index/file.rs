//! One index file (FORMAT.md, "Index"): a 40-byte header, `slots` 4-byte
//! hash slots holding the newest item number of that hash (0 = empty),
//! then `items` 20-byte items (key hash 4, phys offset 8, seconds since the
//! header's begin timestamp 4, previous item number 4). Item 0 is never
//! used. Chains run newest first; a lookup only returns candidates.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::io::File;
use crate::queue::java_hash;

/// Header size.
pub const HEADER_BYTES: u64 = 40;
/// Item size.
pub const ITEM_BYTES: u64 = 20;
/// Most hits a lookup returns (RocketMQ's `maxNum` cap).
pub const MAX_HITS: usize = 64;

/// The 40-byte header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct IndexHeader {
    /// Store timestamp of the first item, ms.
    pub begin_timestamp: i64,
    /// Store timestamp of the last item, ms.
    pub end_timestamp: i64,
    /// Physical offset of the first item's message.
    pub begin_phys_offset: u64,
    /// Physical offset of the last item's message.
    pub end_phys_offset: u64,
    /// Slots in use.
    pub hash_slot_count: u32,
    /// Next item number (starts at 1).
    pub index_count: u32,
}

impl IndexHeader {
    pub(super) fn decode(b: &[u8; 40]) -> IndexHeader {
        let r8 = |at: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[at..at + 8]);
            u64::from_be_bytes(a)
        };
        let r4 = |at: usize| u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        IndexHeader {
            begin_timestamp: r8(0) as i64,
            end_timestamp: r8(8) as i64,
            begin_phys_offset: r8(16),
            end_phys_offset: r8(24),
            hash_slot_count: r4(32),
            index_count: r4(36),
        }
    }

    pub(super) fn encode(&self) -> [u8; 40] {
        let mut b = [0u8; 40];
        b[0..8].copy_from_slice(&self.begin_timestamp.to_be_bytes());
        b[8..16].copy_from_slice(&self.end_timestamp.to_be_bytes());
        b[16..24].copy_from_slice(&self.begin_phys_offset.to_be_bytes());
        b[24..32].copy_from_slice(&self.end_phys_offset.to_be_bytes());
        b[32..36].copy_from_slice(&self.hash_slot_count.to_be_bytes());
        b[36..40].copy_from_slice(&self.index_count.to_be_bytes());
        b
    }
}

/// RocketMQ's key hash: `abs(String.hashCode())`, with MIN_VALUE -> 0.
pub fn key_hash(key: &str) -> u32 {
    let h = java_hash(key);
    if h == i32::MIN {
        0
    } else {
        h.unsigned_abs()
    }
}

/// One key of a record to index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    /// `topic#key`.
    pub key: String,
    /// Physical offset of the record.
    pub phys: u64,
    /// Store timestamp of the record, ms.
    pub store_ts: i64,
}

/// One index file.
pub struct IndexFile {
    pub(super) path: PathBuf,
    pub(super) file: Arc<dyn File>,
    pub(super) slots: u32,
    pub(super) items: u32,
    pub(super) header: Mutex<IndexHeader>,
    /// The slot table while this file takes items (lock after `header`).
    pub(super) slot_cache: Mutex<Option<Vec<u32>>>,
}

impl IndexFile {
    pub(super) fn slot_pos(&self, hash: u32) -> u64 {
        HEADER_BYTES + (hash % self.slots) as u64 * 4
    }

    pub(super) fn item_pos(&self, n: u32) -> u64 {
        HEADER_BYTES + self.slots as u64 * 4 + n as u64 * ITEM_BYTES
    }

    pub(super) fn read_u32(&self, pos: u64) -> Result<u32> {
        let mut b = [0u8; 4];
        let n = self
            .file
            .read_at(pos, &mut b)
            .map_err(|e| Error::io("read", &self.path, e))?;
        Ok(if n == 4 { u32::from_be_bytes(b) } else { 0 })
    }

    /// Header snapshot.
    pub fn header(&self) -> IndexHeader {
        *self.header.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Path of the file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn is_full(&self) -> bool {
        self.header().index_count >= self.items
    }

    /// Adds keys `(hash, phys, store_ts)` in order until the file is full;
    /// returns how many it took. The items go out in one write; the slots
    /// come from the in-memory copy of the slot table and the touched ones
    /// go out as a few coalesced runs (a dispatch round costs a handful of
    /// writes, not three I/O round trips per key). The header is updated
    /// only once the writes succeeded.
    pub(super) fn put_many(&self, entries: &[(u32, u64, i64)]) -> Result<usize> {
        let mut hdr = self.header.lock().unwrap_or_else(|e| e.into_inner());
        let mut cache = self.slot_cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.is_none() {
            let mut raw = vec![0u8; self.slots as usize * 4];
            let got = self
                .file
                .read_at(HEADER_BYTES, &mut raw)
                .map_err(|e| Error::io("read", &self.path, e))?;
            raw[got..].fill(0);
            *cache = Some(
                raw.chunks_exact(4)
                    .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
            );
        }
        let table = cache.as_mut().expect("loaded above");
        let mut h = *hdr;
        let first = h.index_count;
        let take = entries.len().min(self.items.saturating_sub(first) as usize);
        let mut items = Vec::with_capacity(take * ITEM_BYTES as usize);
        let mut dirty = Vec::with_capacity(take);
        for &(hash, phys, store_ts) in &entries[..take] {
            let slot = (hash % self.slots) as usize;
            let mut prev = table[slot];
            if prev > h.index_count {
                prev = 0;
            }
            let diff_s = if h.begin_timestamp <= 0 {
                0
            } else {
                (store_ts.saturating_sub(h.begin_timestamp) / 1000).clamp(0, i32::MAX as i64)
            };
            let n = h.index_count;
            items.extend_from_slice(&hash.to_be_bytes());
            items.extend_from_slice(&phys.to_be_bytes());
            items.extend_from_slice(&(diff_s as i32).to_be_bytes());
            items.extend_from_slice(&prev.to_be_bytes());
            table[slot] = n;
            dirty.push(slot as u32);
            if h.index_count <= 1 {
                h.begin_phys_offset = phys;
                h.begin_timestamp = store_ts;
            }
            if prev == 0 {
                h.hash_slot_count += 1;
            }
            h.index_count += 1;
            h.end_phys_offset = phys;
            h.end_timestamp = store_ts;
        }
        debug_assert_eq!(items.len() as u64, take as u64 * ITEM_BYTES);
        let result = self.write_items_and_slots(first, &items, &mut dirty, table);
        if result.is_err() {
            // What reached the file is unknown: reload the table next time.
            *cache = None;
        }
        result?;
        *hdr = h;
        Ok(take)
    }

    pub(super) fn write_items_and_slots(
        &self,
        first: u32,
        items: &[u8],
        dirty: &mut Vec<u32>,
        table: &[u32],
    ) -> Result<()> {
        let write = |pos: u64, b: &[u8]| {
            self.file
                .write_at(pos, b)
                .map_err(|e| Error::io("write", &self.path, e))
        };
        write(self.item_pos(first), items)?;
        dirty.sort_unstable();
        dirty.dedup();
        // Runs of touched slots; gaps up to a page are written through.
        const GAP_SLOTS: u32 = 1024;
        let mut i = 0;
        let mut run = Vec::new();
        while i < dirty.len() {
            let start = dirty[i];
            let mut end = start;
            while i + 1 < dirty.len() && dirty[i + 1] - end <= GAP_SLOTS {
                i += 1;
                end = dirty[i];
            }
            i += 1;
            run.clear();
            for v in &table[start as usize..=end as usize] {
                run.extend_from_slice(&v.to_be_bytes());
            }
            write(HEADER_BYTES + start as u64 * 4, &run)?;
        }
        Ok(())
    }

    /// Forgets the in-memory slot table (after slots were written
    /// directly, or when the file is sealed).
    pub(super) fn drop_slot_cache(&self) {
        *self.slot_cache.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The header is written lazily (at flush and roll); after a crash the
    /// items and slots on disk may be ahead of it, and a slot write may have
    /// been lost after its item reached the disk. Walk the items past
    /// `index_count` while they are non-zero (items are appended in order),
    /// re-link every slot to its newest item, and move the header up. The
    /// last item found may be torn: it is dropped (its slot restored to the
    /// item's predecessor if the slot already pointed at it) and re-added
    /// by re-dispatch, which redoes every record at or past the new end.
    pub(super) fn repair_header(&self, notes: &mut Vec<String>) -> Result<()> {
        let mut h = self.header.lock().unwrap_or_else(|e| e.into_inner());
        let before = h.index_count;
        let mut found = Vec::new();
        let mut n = h.index_count;
        let mut item = [0u8; 20];
        while n < self.items {
            let got = self
                .file
                .read_at(self.item_pos(n), &mut item)
                .map_err(|e| Error::io("read", &self.path, e))?;
            if got < 20 || item == [0u8; 20] {
                break;
            }
            let hash = u32::from_be_bytes([item[0], item[1], item[2], item[3]]);
            let mut p = [0u8; 8];
            p.copy_from_slice(&item[4..12]);
            let diff = i32::from_be_bytes([item[12], item[13], item[14], item[15]]) as i64;
            let prev = u32::from_be_bytes([item[16], item[17], item[18], item[19]]);
            found.push((n, hash, u64::from_be_bytes(p), diff, prev));
            n += 1;
        }
        let Some(last) = found.pop() else {
            return Ok(());
        };
        let write_slot = |hash: u32, value: u32| {
            self.file
                .write_at(self.slot_pos(hash), &value.to_be_bytes())
                .map_err(|e| Error::io("write", &self.path, e))
        };
        if self.read_u32(self.slot_pos(last.1))? == last.0 {
            write_slot(last.1, last.4)?;
        }
        for &(n, hash, phys, diff, _) in &found {
            if self.read_u32(self.slot_pos(hash))? < n {
                write_slot(hash, n)?;
            }
            if h.index_count <= 1 {
                h.begin_phys_offset = phys;
            }
            h.end_phys_offset = h.end_phys_offset.max(phys);
            h.end_timestamp = h.end_timestamp.max(
                h.begin_timestamp
                    .saturating_add(diff.max(0).saturating_mul(1000)),
            );
            h.index_count = n + 1;
        }
        notes.push(format!(
            "{}: header behind its items; index count {} -> {} (one possibly torn item dropped)",
            self.path.display(),
            before,
            h.index_count
        ));
        Ok(())
    }

    /// Crash rebuild: keeps every item, wherever it sits, whose record is
    /// below `phys`, zeroes every other item, and recomputes every hash
    /// chain (each kept item's previous-item link and the whole slot table)
    /// from the kept items in item order. Nothing written before the crash
    /// is trusted but the items themselves: unsynced writes may have reached
    /// the disk in any order, torn, or not at all, so a slot or a link may
    /// point at an item that never landed or at one of another hash.
    ///
    /// Idempotent, so a crash during the rebuild is repaired by the next
    /// one: items keep their positions (nothing is copied, so a torn write
    /// cannot lose an item), only links, slots and dropped items change,
    /// and the kept set depends on the items alone.
    pub(super) fn rebuild_from(&self, phys: u64) -> Result<()> {
        let mut h = self.header.lock().unwrap_or_else(|e| e.into_inner());
        self.drop_slot_cache();
        let mut slots = vec![0u32; self.slots as usize];
        let mut kept = IndexHeader::default();
        let mut last_kept = 0u32;
        let mut links = Vec::new();
        let mut zero = Vec::new();
        const CHUNK: u32 = 16 * 1024;
        let mut buf = vec![0u8; CHUNK as usize * ITEM_BYTES as usize];
        let mut first = 1u32;
        while first < self.items {
            // Skip holes of the sparse file (never-written items) unread.
            match self
                .file
                .next_data(self.item_pos(first))
                .map_err(|e| Error::io("seek data", &self.path, e))?
            {
                None => break,
                Some(at) => {
                    let n = ((at - self.item_pos(0)) / ITEM_BYTES) as u32;
                    if n >= self.items {
                        break;
                    }
                    first = first.max(n);
                }
            }
            let count = CHUNK.min(self.items - first);
            let bytes = &mut buf[..count as usize * ITEM_BYTES as usize];
            let got = self
                .file
                .read_at(self.item_pos(first), bytes)
                .map_err(|e| Error::io("read", &self.path, e))?;
            for (i, item) in bytes[..got - got % ITEM_BYTES as usize]
                .chunks_exact(ITEM_BYTES as usize)
                .enumerate()
            {
                if item.iter().all(|&b| b == 0) {
                    continue;
                }
                let n = first + i as u32;
                let hash = u32::from_be_bytes([item[0], item[1], item[2], item[3]]);
                let mut p = [0u8; 8];
                p.copy_from_slice(&item[4..12]);
                let p = u64::from_be_bytes(p);
                if p >= phys {
                    zero.push(n);
                    continue;
                }
                let diff = i32::from_be_bytes([item[12], item[13], item[14], item[15]]);
                let prev = u32::from_be_bytes([item[16], item[17], item[18], item[19]]);
                let slot = &mut slots[(hash % self.slots) as usize];
                if *slot == 0 {
                    kept.hash_slot_count += 1;
                }
                if prev != *slot {
                    links.push((n, *slot));
                }
                *slot = n;
                if last_kept == 0 {
                    kept.begin_phys_offset = p;
                }
                last_kept = n;
                kept.end_phys_offset = kept.end_phys_offset.max(p);
                kept.end_timestamp = kept.end_timestamp.max(
                    h.begin_timestamp
                        .saturating_add((diff.max(0) as i64).saturating_mul(1000)),
                );
            }
            if got < bytes.len() {
                break;
            }
            first += count;
        }
        let write = |pos: u64, b: &[u8]| {
            self.file
                .write_at(pos, b)
                .map_err(|e| Error::io("write", &self.path, e))
        };
        for (n, prev) in links {
            write(self.item_pos(n) + 16, &prev.to_be_bytes())?;
        }
        for n in zero {
            write(self.item_pos(n), &[0u8; ITEM_BYTES as usize])?;
        }
        let mut table = Vec::with_capacity(slots.len() * 4);
        for v in &slots {
            table.extend_from_slice(&v.to_be_bytes());
        }
        write(HEADER_BYTES, &table)?;
        kept.index_count = last_kept + 1;
        kept.begin_timestamp = if last_kept == 0 { 0 } else { h.begin_timestamp };
        if last_kept == 0 {
            kept.end_timestamp = 0;
        }
        *h = kept;
        drop(h);
        self.seal()
    }

    /// Makes a full file durable before a newer one receives items:
    /// re-dispatch after a crash skips records at or below the newest
    /// file's end, which is only right if every older file is complete.
    pub(super) fn seal(&self) -> Result<()> {
        self.drop_slot_cache();
        self.write_header()?;
        self.file
            .sync_data()
            .map_err(|e| Error::io("fdatasync", &self.path, e))
    }

    pub(super) fn write_header(&self) -> Result<()> {
        let h = self.header();
        self.file
            .write_at(0, &h.encode())
            .map_err(|e| Error::io("write", &self.path, e))
    }

    pub(super) fn time_matches(&self, begin: i64, end: i64) -> bool {
        let h = self.header();
        (begin < h.begin_timestamp && end > h.end_timestamp)
            || (begin >= h.begin_timestamp && begin <= h.end_timestamp)
            || (end >= h.begin_timestamp && end <= h.end_timestamp)
    }

    /// Every item a lookup (any time range) can reach, as `(key hash,
    /// phys)`: the chains from every slot, walked as `select` walks them,
    /// from two bulk reads instead of a read per hop. For verifying many
    /// keys at once; a chain is not cut at [`MAX_HITS`].
    pub(super) fn for_each_reachable(&self, f: &mut dyn FnMut(u32, u64)) -> Result<()> {
        let h = self.header();
        if h.index_count <= 1 {
            return Ok(());
        }
        let read_all = |pos: u64, buf: &mut [u8]| -> Result<()> {
            let mut done = 0;
            while done < buf.len() {
                let n = self
                    .file
                    .read_at(pos + done as u64, &mut buf[done..])
                    .map_err(|e| Error::io("read", &self.path, e))?;
                if n == 0 {
                    buf[done..].fill(0);
                    break;
                }
                done += n;
            }
            Ok(())
        };
        let mut table = vec![0u8; self.slots as usize * 4];
        read_all(HEADER_BYTES, &mut table)?;
        // Items 0..=index_count (select may read the one at the count).
        let count = (h.index_count as usize + 1).min(self.items as usize);
        let mut items = vec![0u8; count * ITEM_BYTES as usize];
        read_all(self.item_pos(0), &mut items)?;
        let mut visited = vec![false; count];
        for (slot, head) in table.chunks_exact(4).enumerate() {
            let mut next = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
            if next == 0 || next > h.index_count {
                continue;
            }
            while (next as usize) < count && !visited[next as usize] {
                visited[next as usize] = true;
                let item = &items[next as usize * 20..next as usize * 20 + 20];
                let ihash = u32::from_be_bytes([item[0], item[1], item[2], item[3]]);
                let mut p = [0u8; 8];
                p.copy_from_slice(&item[4..12]);
                let diff = i32::from_be_bytes([item[12], item[13], item[14], item[15]]);
                let prev = u32::from_be_bytes([item[16], item[17], item[18], item[19]]);
                if (ihash % self.slots) as usize == slot && diff >= 0 {
                    f(ihash, u64::from_be_bytes(p));
                }
                if prev == 0 || prev > h.index_count || prev == next || diff < 0 {
                    break;
                }
                next = prev;
            }
        }
        Ok(())
    }

    /// Candidate offsets for `key` in `[begin, end]` ms.
    pub(super) fn select(&self, key: &str, begin: i64, end: i64, out: &mut Vec<u64>) -> Result<()> {
        let h = self.header();
        let hash = key_hash(key);
        let mut next = self.read_u32(self.slot_pos(hash))?;
        if next == 0 || next > h.index_count {
            return Ok(());
        }
        // Bounded walk: a chain can never be longer than the item count.
        for _ in 0..h.index_count {
            if out.len() >= MAX_HITS {
                break;
            }
            let mut item = [0u8; 20];
            let n = self
                .file
                .read_at(self.item_pos(next), &mut item)
                .map_err(|e| Error::io("read", &self.path, e))?;
            if n < 20 {
                break;
            }
            let ihash = u32::from_be_bytes([item[0], item[1], item[2], item[3]]);
            let mut p = [0u8; 8];
            p.copy_from_slice(&item[4..12]);
            let phys = u64::from_be_bytes(p);
            let diff = i32::from_be_bytes([item[12], item[13], item[14], item[15]]) as i64;
            let prev = u32::from_be_bytes([item[16], item[17], item[18], item[19]]);
            let t = h.begin_timestamp.saturating_add(diff.saturating_mul(1000));
            if ihash == hash && t >= begin && t <= end {
                out.push(phys);
            }
            if prev == 0 || prev > h.index_count || prev == next || t < begin {
                break;
            }
            next = prev;
        }
        Ok(())
    }
}
