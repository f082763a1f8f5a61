//! The wheel's threads: enqueue (links scheduled timers into the wheel),
//! loader (reads and prepares a slot before it starts), deliver (puts due
//! timers to their real topics) and checkpoint.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::delay::timerlog::{TimerLogReader, UnitKind};
use crate::delay::{
    deliver_ms_of, put_outcome, to_real_topic, PutOutcome, PROPERTY_TIMER_CANCEL_OFFSET,
    PROPERTY_TIMER_OUT_MS, PROPERTY_TIMER_SOURCE_OFFSET, TIMER_CANCEL_QUEUE, TIMER_QUEUE,
    TIMER_TOPIC,
};
use crate::error::{Error, Result};
use crate::message::Message;
use crate::service::Service;

/// Timers prepared (record read, message built) per chunk of a slot load.
const PREPARE_CHUNK: usize = 4096;

pub(super) fn start_threads(inner: &Arc<Inner>, threads: &mut Service) {
    let run = |inner: &Arc<Inner>, what: &'static str, e: Error| {
        inner.poison(format!("{what}: {e}"));
    };
    let i = inner.clone();
    threads.spawn("mqlab-wheel-enqueue", move |stop| {
        while !stop.stopped() {
            match i.enqueue_round() {
                Ok(n) if n > 0 => {}
                Ok(_) => {
                    stop.wait(Duration::from_millis(1));
                }
                Err(e) => return run(&i, "enqueue", e),
            }
        }
    });
    let i = inner.clone();
    threads.spawn("mqlab-wheel-load", move |stop| {
        let idle = Duration::from_millis(i.cfg.precision_ms.clamp(1, 5));
        while !stop.stopped() {
            match i.load_step() {
                Ok(true) => {}
                Ok(false) => {
                    stop.wait(idle);
                }
                Err(e) => return run(&i, "load", e),
            }
        }
    });
    for k in 0..inner.cfg.deliver_threads {
        let i = inner.clone();
        threads.spawn(format!("mqlab-wheel-deliver-{k}"), move |stop| {
            while !stop.stopped() {
                match i.deliver_batch(256) {
                    Ok(b) if b.taken > 0 && b.retried == 0 => {}
                    Ok(b) => {
                        let wait_ms = if b.retried > 0 {
                            100
                        } else {
                            b.next_due
                                .map(|d| (d - i.clock.now_ms()).clamp(0, 50))
                                .unwrap_or(50)
                        };
                        let wait =
                            Duration::from_millis(wait_ms as u64).max(Duration::from_micros(200));
                        i.work.wait(wait);
                    }
                    Err(e) => return run(&i, "deliver", e),
                }
            }
        });
    }
    let i = inner.clone();
    threads.spawn("mqlab-wheel-checkpoint", move |stop| {
        let every = Duration::from_millis(i.cfg.checkpoint_interval_ms);
        while stop.wait(every) {
            if let Err(e) = i.checkpoint() {
                return run(&i, "checkpoint", e);
            }
        }
    });
}
impl Inner {
    /// Links what was scheduled since the last round, in queue order.
    fn enqueue_round(&self) -> Result<u64> {
        const BATCH: usize = 8192;
        let _g = self.enqueue_lock.lock().unwrap_or_else(|e| e.into_inner());
        let q = self.lock().q_timer;
        let units = self.store.queue_units(TIMER_TOPIC, TIMER_QUEUE, q, BATCH)?;
        let mut items = Vec::with_capacity(units.len());
        {
            let mut cache = self.due_cache.lock().unwrap_or_else(|e| e.into_inner());
            for u in &units {
                items.push((u.phys_offset, cache.remove(&u.phys_offset)));
            }
            // Entries the enqueue step read before `schedule` cached them
            // are never looked up again: sweep them now and then.
            let sweep_at = self.lock().cache_sweep_at;
            if cache.len() > sweep_at {
                if let Some(last) = units.last() {
                    cache.retain(|p, _| *p > last.phys_offset);
                }
                self.lock().cache_sweep_at = (cache.len() * 2).max(65_536);
            }
        }
        let mut resolved = Vec::with_capacity(items.len());
        for (phys, due) in items {
            let due = match due {
                Some(d) => Some(d),
                None => self
                    .store
                    .get(phys)
                    .ok()
                    .and_then(|m| deliver_ms_of(&m.properties)),
            };
            match due {
                Some(d) => resolved.push((phys, d)),
                None => self.dropped.add(1),
            }
        }
        let n = units.len() as u64;
        if n > 0 {
            let mut st = self.lock();
            for (phys, due) in resolved {
                self.ingest(&mut st, UnitKind::Timer, phys, due)?;
            }
            st.q_timer = q + n;
        }
        let mut applied = 0;
        if units.len() < BATCH {
            // Cancels only once the timers before them are linked.
            let qc = self.lock().q_cancel;
            let msgs = self
                .store
                .get_from_queue(TIMER_TOPIC, TIMER_CANCEL_QUEUE, qc, 256)?;
            if !msgs.is_empty() {
                let mut st = self.lock();
                for m in &msgs {
                    let target = m
                        .properties
                        .get(PROPERTY_TIMER_CANCEL_OFFSET)
                        .and_then(|s| s.parse::<u64>().ok());
                    if let (Some(t), Some(d)) = (target, deliver_ms_of(&m.properties)) {
                        self.ingest(&mut st, UnitKind::Cancel, t, d)?;
                    }
                }
                st.q_cancel = qc + msgs.len() as u64;
                applied = msgs.len() as u64;
            }
        }
        if n + applied > 0 {
            self.work.notify();
        }
        Ok(n + applied)
    }

    /// Loads the next slot that is within the prefetch horizon. Returns
    /// true when it made progress (loaded a slot or skipped empty ones).
    fn load_step(&self) -> Result<bool> {
        let _g = self.load_lock.lock().unwrap_or_else(|e| e.into_inner());
        let p = self.cfg.precision_ms as i64;
        let dead = std::mem::take(&mut self.lock().graveyard);
        drop(dead);
        let (t, e, reader, index) = {
            let mut st = self.lock();
            let horizon = self.clock.now_ms() + self.cfg.prefetch_ms as i64;
            let mut scanned = 0u32;
            let mut found = None;
            while scanned < 65_536 {
                let t = st.load_cursor;
                let bound = st.r_persisted.min(st.delivered_through()) + self.window_ms - p;
                if (t > horizon && !st.urgent) || t >= bound {
                    break;
                }
                if st.ready_len >= self.cfg.max_ready && !st.loaded.is_empty() {
                    break;
                }
                if st.index.linked() == 0 {
                    // Nothing linked anywhere: skip the empty slots at once.
                    let to = (self.slot_ms(horizon) + p).min(bound);
                    if to > t {
                        st.load_cursor = to;
                        scanned += 1;
                    }
                    break;
                }
                st.load_cursor = t + p;
                scanned += 1;
                if let Some(e) = st.index.entry(t) {
                    found = Some((t, e));
                    break;
                }
            }
            let Some((t, e)) = found else {
                if st.load_cursor > horizon {
                    st.urgent = false;
                }
                return Ok(scanned > 0);
            };
            st.urgent = false;
            st.index.note_taken(e.count as u64);
            let written = self.store.offsets().written;
            let l = st.loaded.entry(t).or_insert_with(|| Loaded::new(written));
            l.loading = true;
            let index = st.index.index_of(t);
            (t, e, st.index.reader(&e), index)
        };
        if let Err(e) = self.load_slot(t, &e, &reader, index) {
            self.poison(format!("loading slot {t}: {e}"));
            return Err(e);
        }
        Ok(true)
    }

    fn load_slot(&self, t: i64, e: &Slot, reader: &TimerLogReader, index: usize) -> Result<()> {
        let units = WheelIndex::read_slot(reader, e, index)?;
        let mut cancels = HashSet::new();
        let mut timers = Vec::with_capacity(units.len());
        let mut rolls = Vec::new();
        for u in units {
            if u.rolled {
                rolls.push(u);
            } else if u.kind == UnitKind::Cancel {
                cancels.insert(u.phys);
            } else {
                timers.push((u.due_ms, u.phys));
            }
        }
        timers.sort_unstable();
        timers.dedup();
        {
            let mut st = self.lock();
            for u in &rolls {
                self.ingest(&mut st, u.kind, u.phys, u.due_ms)?;
            }
            self.rolled.add(rolls.len() as u64);
            let State { loaded, dedup, .. } = &mut *st;
            let l = loaded.get_mut(&t).expect("a loading slot stays loaded");
            l.cancels.extend(cancels.iter().copied());
            let before = timers.len();
            timers.retain(|(_, p)| !l.cancels.contains(p));
            self.cancelled.add((before - timers.len()) as u64);
            let before = timers.len();
            timers.retain(|(_, p)| !dedup.remove(p));
            self.dedup_skipped.add((before - timers.len()) as u64);
        }
        for chunk in timers.chunks(PREPARE_CHUNK) {
            let mut prepared = Vec::with_capacity(chunk.len());
            let mut bytes = 0;
            for &(due, phys) in chunk {
                match self.prepare(phys, due) {
                    Ok(m) => {
                        bytes += msg_bytes(&m);
                        prepared.push(Ready {
                            due,
                            phys,
                            msg: Some(m),
                        });
                    }
                    Err(_) => self.dropped.add(1),
                }
            }
            let mut st = self.lock();
            let l = st.loaded.get_mut(&t).expect("a loading slot stays loaded");
            let before = prepared.len();
            prepared.retain(|r| !l.cancels.contains(&r.phys));
            self.cancelled.add((before - prepared.len()) as u64);
            let n = prepared.len();
            if l.queue
                .back()
                .is_none_or(|b| prepared.first().is_none_or(|f| b.due <= f.due))
            {
                l.queue.extend(prepared);
            } else {
                let mut all: Vec<Ready> = l.queue.drain(..).chain(prepared).collect();
                all.sort_by_key(|r| r.due);
                l.queue = all.into();
            }
            st.ready_len += n;
            st.ready_bytes += bytes;
            drop(st);
            self.work.notify();
        }
        let mut st = self.lock();
        if let Some(l) = st.loaded.get_mut(&t) {
            l.loading = false;
        }
        Self::close_if_done(&mut st, t);
        Ok(())
    }

    /// Reads a timer record and builds the message to deliver.
    fn prepare(&self, phys: u64, due: i64) -> std::result::Result<Message, String> {
        let m = self.store.get(phys).map_err(|e| e.to_string())?;
        if m.topic != TIMER_TOPIC
            || m.queue_id != TIMER_QUEUE
            || deliver_ms_of(&m.properties) != Some(due)
        {
            return Err(format!("record at {phys} is not the timer due at {due}"));
        }
        let mut msg = to_real_topic(m).map_err(|e| e.to_string())?;
        msg.properties
            .insert(PROPERTY_TIMER_SOURCE_OFFSET.to_string(), phys.to_string());
        // Filled in at delivery, in place (no allocation on the hot path).
        msg.properties
            .insert(PROPERTY_TIMER_OUT_MS.to_string(), String::with_capacity(16));
        Ok(msg)
    }

    /// Delivers up to `max` due timers.
    fn deliver_batch(&self, max: usize) -> Result<BatchOutcome> {
        let now = self.clock.now_ms();
        let mut batch: Vec<(i64, Ready)> = Vec::new();
        let mut out = BatchOutcome::default();
        {
            let mut st = self.lock();
            let mut bytes = 0;
            'slots: for (t, l) in st.loaded.iter_mut() {
                while let Some(f) = l.queue.front() {
                    if f.due > now || batch.len() >= max {
                        break 'slots;
                    }
                    let r = l.queue.pop_front().expect("front exists");
                    bytes += r.msg.as_ref().map(msg_bytes).unwrap_or(0);
                    l.in_flight += 1;
                    batch.push((*t, r));
                }
            }
            st.ready_len -= batch.len();
            st.ready_bytes = st.ready_bytes.saturating_sub(bytes);
            out.next_due = st
                .loaded
                .values()
                .find_map(|l| l.queue.front().map(|f| f.due));
        }
        if batch.is_empty() {
            return Ok(out);
        }
        out.taken = batch.len();
        let now_s = now.to_string();
        let mut retry: Vec<(i64, Ready)> = Vec::new();
        let mut done: Vec<Message> = Vec::with_capacity(batch.len());
        let mut slots: Vec<i64> = Vec::with_capacity(batch.len());
        for (t, r) in batch {
            slots.push(t);
            let msg = match r.msg {
                Some(m) => Ok(m),
                None => self.prepare(r.phys, r.due),
            };
            let mut m = match msg {
                Ok(m) => m,
                Err(_) => {
                    self.dropped.add(1);
                    continue;
                }
            };
            match m.properties.get_mut(PROPERTY_TIMER_OUT_MS) {
                Some(v) => {
                    v.clear();
                    v.push_str(&now_s);
                }
                None => {
                    m.properties
                        .insert(PROPERTY_TIMER_OUT_MS.to_string(), now_s.clone());
                }
            }
            let res = self.store.put(&m);
            match put_outcome(&res) {
                PutOutcome::Stored => {
                    out.delivered += 1;
                    done.push(m);
                }
                PutOutcome::Rejected(_) => self.dropped.add(1),
                PutOutcome::Retry(_) => retry.push((
                    t,
                    Ready {
                        due: r.due,
                        phys: r.phys,
                        msg: Some(m),
                    },
                )),
            }
        }
        self.delivered.add(out.delivered);
        out.retried = retry.len();
        let mut st = self.lock();
        if st.graveyard.len() < 1 << 20 {
            st.graveyard.append(&mut done);
        }
        for t in &slots {
            if let Some(l) = st.loaded.get_mut(t) {
                l.in_flight -= 1;
            }
        }
        for (t, r) in retry.into_iter().rev() {
            st.ready_bytes += r.msg.as_ref().map(msg_bytes).unwrap_or(0);
            st.ready_len += 1;
            st.loaded
                .get_mut(&t)
                .expect("a slot with timers in flight stays loaded")
                .queue
                .push_front(r);
        }
        slots.dedup();
        for t in slots {
            Self::close_if_done(&mut st, t);
        }
        Ok(out)
    }
    pub(super) fn tick(&self) -> Result<u64> {
        self.check_poison()?;
        let end = self.store.offsets().written;
        self.store.wait_dispatched(end, Duration::from_secs(5));
        while self.enqueue_round()? > 0 {}
        let mut total = 0;
        loop {
            loop {
                let mut progressed = false;
                while self.load_step()? {
                    progressed = true;
                }
                loop {
                    let b = self.deliver_batch(1024)?;
                    total += b.delivered;
                    if b.taken == 0 || b.retried == b.taken {
                        break;
                    }
                    progressed = true;
                }
                if !progressed {
                    break;
                }
            }
            // The loader may stand at the window the last checkpoint
            // allows: checkpoint to move it, and go on if that helped.
            let blocked = {
                let st = self.lock();
                let bound = st.r_persisted.min(st.delivered_through()) + self.window_ms
                    - self.cfg.precision_ms as i64;
                let horizon = self.clock.now_ms() + self.cfg.prefetch_ms as i64;
                (st.load_cursor <= horizon && st.load_cursor >= bound).then_some(st.r_persisted)
            };
            match blocked {
                Some(before) => {
                    self.checkpoint()?;
                    if self.lock().r_persisted == before {
                        break;
                    }
                }
                None => break,
            }
        }
        let now = self.clock.now_ms();
        let last = self.last_tick_checkpoint_ms.load(Ordering::Relaxed);
        if now - last >= self.cfg.checkpoint_interval_ms as i64 {
            self.checkpoint()?;
            self.last_tick_checkpoint_ms.store(now, Ordering::Relaxed);
        }
        Ok(total)
    }
}
