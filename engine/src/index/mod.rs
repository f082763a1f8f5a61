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

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use crate::error::{Error, Result};
use crate::io::{Env, File, OpenOptions};
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
    fn decode(b: &[u8; 40]) -> IndexHeader {
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

    fn encode(&self) -> [u8; 40] {
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
    path: PathBuf,
    file: Arc<dyn File>,
    slots: u32,
    items: u32,
    header: Mutex<IndexHeader>,
    /// The slot table while this file takes items (lock after `header`).
    slot_cache: Mutex<Option<Vec<u32>>>,
}

impl IndexFile {
    fn slot_pos(&self, hash: u32) -> u64 {
        HEADER_BYTES + (hash % self.slots) as u64 * 4
    }

    fn item_pos(&self, n: u32) -> u64 {
        HEADER_BYTES + self.slots as u64 * 4 + n as u64 * ITEM_BYTES
    }

    fn read_u32(&self, pos: u64) -> Result<u32> {
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

    fn is_full(&self) -> bool {
        self.header().index_count >= self.items
    }

    /// Adds keys `(hash, phys, store_ts)` in order until the file is full;
    /// returns how many it took. The items go out in one write; the slots
    /// come from the in-memory copy of the slot table and the touched ones
    /// go out as a few coalesced runs (a dispatch round costs a handful of
    /// writes, not three I/O round trips per key). The header is updated
    /// only once the writes succeeded.
    fn put_many(&self, entries: &[(u32, u64, i64)]) -> Result<usize> {
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

    fn write_items_and_slots(
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
    fn drop_slot_cache(&self) {
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
    fn repair_header(&self, notes: &mut Vec<String>) -> Result<()> {
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
    fn rebuild_from(&self, phys: u64) -> Result<()> {
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
    fn seal(&self) -> Result<()> {
        self.drop_slot_cache();
        self.write_header()?;
        self.file
            .sync_data()
            .map_err(|e| Error::io("fdatasync", &self.path, e))
    }

    fn write_header(&self) -> Result<()> {
        let h = self.header();
        self.file
            .write_at(0, &h.encode())
            .map_err(|e| Error::io("write", &self.path, e))
    }

    fn time_matches(&self, begin: i64, end: i64) -> bool {
        let h = self.header();
        (begin < h.begin_timestamp && end > h.end_timestamp)
            || (begin >= h.begin_timestamp && begin <= h.end_timestamp)
            || (end >= h.begin_timestamp && end <= h.end_timestamp)
    }

    /// Every item a lookup (any time range) can reach, as `(key hash,
    /// phys)`: the chains from every slot, walked as `select` walks them,
    /// from two bulk reads instead of a read per hop. For verifying many
    /// keys at once; a chain is not cut at [`MAX_HITS`].
    fn for_each_reachable(&self, f: &mut dyn FnMut(u32, u64)) -> Result<()> {
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
    fn select(&self, key: &str, begin: i64, end: i64, out: &mut Vec<u64>) -> Result<()> {
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
