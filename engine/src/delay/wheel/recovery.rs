//! Opening the wheel: load the wheel copy of the newest valid check
//! record, cut the timer log at its end, re-link what was queued after it,
//! find timers already delivered (so none is delivered twice) and reload
//! every slot from the delivered-through slot.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::deliver::start_threads;
use super::*;
use crate::delay::{
    Clock, Counter, PROPERTY_TIMER_SOURCE_OFFSET, TIMER_CANCEL_QUEUE, TIMER_QUEUE, TIMER_TOPIC,
};
use crate::error::{Error, Result};
use crate::io::{Env, OpenOptions};
use crate::service::{Service, Signal};
use crate::store::Store;

impl WheelScheduler {
    /// Opens (recovering) the wheel whose files live in `dir` (usually the
    /// store's root: `timerwheel`, `timerlog/`, `config/timercheck`) on the
    /// environment the store was opened with.
    pub fn open(
        store: Arc<Store>,
        env: Arc<dyn Env>,
        dir: impl AsRef<Path>,
        cfg: WheelConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<WheelScheduler> {
        cfg.sanitize()?;
        let started = Instant::now();
        let dir = dir.as_ref().to_path_buf();
        let n = cfg.slots();
        let cfg_dir = dir.join("config");
        env.create_dir_all(&cfg_dir)
            .map_err(|e| Error::io("create dir", &cfg_dir, e))?;
        let check_path = cfg_dir.join("timercheck");
        let check_file = env
            .open(
                &check_path,
                OpenOptions {
                    create: true,
                    len: 2 * CHECK_RECORD_BYTES,
                    ..OpenOptions::default()
                },
            )
            .map_err(|e| Error::io("open", &check_path, e))?;
        env.sync_dir(&cfg_dir)
            .map_err(|e| Error::io("sync dir", &cfg_dir, e))?;
        let mut buf = [0u8; 2 * CHECK_RECORD_BYTES as usize];
        let got = check_file
            .read_at(0, &mut buf)
            .map_err(|e| Error::io("read", &check_path, e))?;
        let cp = (0..2)
            .filter(|k| got >= (k + 1) * CHECK_RECORD_BYTES as usize)
            .filter_map(|k| {
                CheckRecord::decode(&buf[k * CHECK_RECORD_BYTES as usize..])
                    .filter(|r| r.gen % 2 == k as u64)
            })
            .max_by_key(|r| r.gen);
        if let Some(c) = cp {
            if c.precision_ms != cfg.precision_ms || c.slots != n {
                return Err(Error::Config(format!(
                    "the timer wheel in {} has precision {} ms and {} slots; open it with the same",
                    dir.display(),
                    c.precision_ms,
                    c.slots
                )));
            }
        }
        let wheel_file = WheelFile::open(env.as_ref(), dir.join("timerwheel"), n)?;
        env.sync_dir(&dir)
            .map_err(|e| Error::io("sync dir", &dir, e))?;
        let entries = match cp {
            Some(c) => Some(wheel_file.read_copy((c.gen % 2) as usize)?),
            None => None,
        };
        let mut index = WheelIndex::open(
            env.clone(),
            &dir.join("timerlog"),
            cfg.precision_ms,
            n,
            cfg.timerlog_segment_bytes,
            cp.map(|c| c.tl_end).unwrap_or(0),
            entries,
        )?;
        let now = clock.now_ms();
        let window_ms = index.window_ms();
        let (r, c, mut q, mut qc, gen) = match cp {
            Some(c) => (c.r_ms, c.c_offset, c.q_timer, c.q_cancel, c.gen),
            None => (index.slot_ms(now), store.min_offset(), 0, 0, 0),
        };
        // Which entries still hold pending rounds; the copy the next
        // checkpoint writes is rewritten whole (it may be stale or torn).
        let mut linked = 0u64;
        for e in index.slots.iter() {
            if e.count > 0 && e.time_ms >= r {
                linked += e.count as u64;
            }
        }
        index.linked = linked;
        index.assume_files_before(r + window_ms);
        for copy in 0..2 {
            if cp.is_none() || copy != (gen % 2) as usize {
                for (w, word) in index.dirty[copy].iter_mut().enumerate() {
                    let bits = (n as usize - w * 64).min(64);
                    *word = if bits == 64 {
                        u64::MAX
                    } else {
                        (1 << bits) - 1
                    };
                }
            }
        }
        // The store may have lost timer records the checkpoint covered
        // (async flush and power loss): link from what it still has.
        let q_max = |qid: u32| {
            store
                .queues()
                .into_iter()
                .find(|i| i.topic == TIMER_TOPIC && i.queue_id == qid)
                .map(|i| i.max_offset)
                .unwrap_or(0)
        };
        q = q.min(q_max(TIMER_QUEUE));
        qc = qc.min(q_max(TIMER_CANCEL_QUEUE));
        // Deliveries since C: skip them when their slots reload.
        let mut dedup = HashSet::new();
        let end = store.offsets().committed;
        let from = c.max(store.min_offset());
        if from < end && (cp.is_some() || q_max(TIMER_QUEUE) > 0) {
            store.scan(from, &mut |r| {
                if let Ok(m) = r {
                    if m.topic != TIMER_TOPIC {
                        if let Some(src) = m
                            .properties
                            .get(PROPERTY_TIMER_SOURCE_OFFSET)
                            .and_then(|s| s.parse().ok())
                        {
                            dedup.insert(src);
                        }
                    }
                }
                true
            })?;
        }
        let state = State {
            index,
            q_timer: q,
            q_cancel: qc,
            load_cursor: r,
            loaded: BTreeMap::new(),
            ready_len: 0,
            ready_bytes: 0,
            r_persisted: r,
            gen,
            dedup,
            cache_sweep_at: 65_536,
            urgent: false,
            graveyard: Vec::new(),
        };
        let inner = Arc::new(Inner {
            store,
            window_ms,
            clock,
            state: Mutex::new(state),
            due_cache: Mutex::new(HashMap::new()),
            wheel_file,
            check_path,
            check_file,
            enqueue_lock: Mutex::new(()),
            load_lock: Mutex::new(()),
            checkpoint_lock: Mutex::new(()),
            work: Signal::default(),
            poisoned: Mutex::new(None),
            last_tick_checkpoint_ms: std::sync::atomic::AtomicI64::new(now),
            scheduled: Counter::default(),
            delivered: Counter::default(),
            cancelled: Counter::default(),
            rolled: Counter::default(),
            dedup_skipped: Counter::default(),
            dropped: Counter::default(),
            recovery_ms: AtomicU64::new(0),
            cfg,
        });
        inner
            .recovery_ms
            .store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        let mut threads = Service::default();
        if inner.cfg.background {
            start_threads(&inner, &mut threads);
        }
        Ok(WheelScheduler { inner, threads })
    }
}
