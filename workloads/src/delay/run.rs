//! One scheduler's run: schedule N timers, crash and recover if asked,
//! wait for the deliveries, read them back, write the scheduler's folder.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use mqlab_engine::delay::{Clock, SchedulerKind, SystemClock};
use mqlab_engine::Message;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::live::{live_ref, open_live, read_back, rss_bytes, Live, ID, TOPIC};
use super::outputs::{time_series, write_text, DelaySummary, Lateness};
use super::plan::Plan;
use super::request::{DelayRequest, Pattern};
use crate::recorder::LatencySummary;
use crate::summary::hgrm_text;
use crate::table::{csv_text, round3};
use crate::util::{scratch_dir, write_command, write_json};

pub(super) fn run_one(
    args: &DelayRequest,
    kind: SchedulerKind,
    parent: &Path,
    out: &Path,
) -> Result<DelaySummary> {
    let scratch = scratch_dir(parent, &format!("mqlab-delay-{}-", kind.name()))?;
    let dir = scratch.path().to_path_buf();
    let rss0 = rss_bytes();
    let mut live = Some(open_live(&dir, args, kind)?);
    // The first put creates (and with pre-faulting, populates) the first
    // segment, which can take seconds: do it before anything is measured.
    let warm = live_ref(&live)
        .store
        .put(&Message::new("DelayWarmup", Vec::new()));
    if !warm.is_ok() {
        bail!("warm-up put failed: {:?}", warm.detail);
    }
    // --crash-at counts from here: the first open (pre-faulting a segment
    // can take seconds) is not part of the run.
    let start = Instant::now();
    let clock = SystemClock;
    let plan = Plan::new(args, clock.now_ms());
    let levels_only = kind != SchedulerKind::Wheel;
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let body = vec![b'x'; args.body_bytes];
    let mut crash_pending = args.crash_at;
    // The crash's (recovery ms, store open ms, copies delivered before it).
    let mut crashed: Option<(u64, u64, u64)> = None;
    let mut acked = vec![false; args.timers as usize];
    let mut n_acked = 0u64;
    let mut last_due = i64::MIN;
    let mut first_due = i64::MAX;
    let log_start = live_ref(&live).store.offsets().written;
    // Crashes and reopens the store once `--crash-at` has come.
    let crash_if_due =
        |live: &mut Option<Live>, pending: &mut Option<f64>| -> Result<Option<(u64, u64, u64)>> {
            let Some(at) = *pending else {
                return Ok(None);
            };
            if start.elapsed().as_secs_f64() < at {
                return Ok(None);
            }
            *pending = None;
            let before = live_ref(live).delivered();
            eprintln!(
                "  {}: crash at {at:.1} s, {before} copies delivered",
                kind.name()
            );
            // Drop without shutdown: threads stop, nothing more is persisted;
            // the page cache keeps what was written (a process crash).
            if let Some(dead) = live.take() {
                drop(dead.sched);
                drop(dead.store);
            }
            let l = open_live(&dir, args, kind)?;
            let r = (l.sched.stats().recovery_ms, l.store_open_ms, before);
            *live = Some(l);
            Ok(Some(r))
        };
    let sched_start = Instant::now();
    let mut last_report = Instant::now();
    for i in 0..args.timers {
        if let Some(c) = crash_if_due(&mut live, &mut crash_pending)? {
            crashed = Some(c);
        }
        let m = Message::new(TOPIC, body.clone())
            .with_queue((i % args.queues as u64) as u32)
            .with_property(ID, i.to_string());
        let now = clock.now_ms();
        let at = plan.at(&mut rng, now, levels_only);
        match live_ref(&live).sched.schedule(m, at) {
            Ok(h) => {
                acked[i as usize] = true;
                n_acked += 1;
                last_due = last_due.max(h.deliver_ms);
                first_due = first_due.min(h.deliver_ms);
            }
            Err(e) => eprintln!("  schedule {i}: {e}"),
        }
        if last_report.elapsed() > Duration::from_secs(2) {
            eprintln!("  {}: scheduled {i} of {}", kind.name(), args.timers);
            last_report = Instant::now();
        }
    }
    let schedule_secs = sched_start.elapsed().as_secs_f64();
    let sched_end_ms = clock.now_ms();
    // The peak of pending timers: everything scheduled, little delivered
    // yet (the burst and long delays), so per-timer figures are fair.
    let peak = live_ref(&live).sched.stats();
    let rss1 = rss_bytes();
    let log_bytes = live_ref(&live)
        .store
        .offsets()
        .written
        .saturating_sub(log_start);
    let pending = peak.pending.max(1);
    // Wait for the deliveries.
    let deadline_ms = last_due + args.grace_ms as i64;
    loop {
        if let Some(c) = crash_if_due(&mut live, &mut crash_pending)? {
            crashed = Some(c);
        }
        let st = live_ref(&live).sched.stats();
        let in_topic = live_ref(&live).delivered();
        if (in_topic >= n_acked && st.pending == 0 && crash_pending.is_none())
            || clock.now_ms() > deadline_ms
        {
            break;
        }
        if last_report.elapsed() > Duration::from_secs(2) {
            eprintln!(
                "  {}: {in_topic} of {n_acked} delivered, {} pending",
                kind.name(),
                st.pending
            );
            last_report = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let Live { store, sched, .. } = live.take().expect("the store is open");
    let stats = sched.stats();
    sched.shutdown()?;
    let rb = read_back(&store, args.queues, args.timers)?;
    Arc::try_unwrap(store)
        .map_err(|_| anyhow!("store still shared"))?
        .shutdown()?;
    drop(scratch);
    let _ = acked;

    let l = LatencySummary::of(&rb.hist);
    let summary = DelaySummary {
        scheduler: kind.name().into(),
        pattern: args.pattern,
        timers: args.timers,
        backend: args.backend.name().into(),
        flush: args.flush.to_string(),
        precision_ms: args.precision_ms,
        deliver_threads: args.deliver_threads,
        body_bytes: args.body_bytes,
        schedule_per_s: round3(n_acked as f64 / schedule_secs.max(1e-9)),
        schedule_secs: round3(schedule_secs),
        lateness_ms: Lateness {
            p50: l.p50,
            p90: l.p90,
            p99: l.p99,
            p999: l.p999,
            max: l.max,
            mean: l.mean,
            count: l.count,
        },
        late_over_1s: rb.late_over_1s,
        early: rb.early,
        bytes_per_timer: round3((peak.ram_bytes + peak.index_bytes) as f64 / pending as f64),
        ram_bytes_per_timer: round3(peak.ram_bytes as f64 / pending as f64),
        index_bytes_per_timer: round3(peak.index_bytes as f64 / pending as f64),
        commitlog_bytes_per_timer: round3(log_bytes as f64 / n_acked.max(1) as f64),
        rss_bytes_per_timer: round3(rss1.saturating_sub(rss0) as f64 / pending as f64),
        pending_at_peak: peak.pending,
        acked: n_acked,
        delivered: rb.delivered,
        lost: n_acked.saturating_sub(rb.delivered),
        duplicated: rb.duplicated,
        crash_at_s: args.crash_at,
        delivered_before_crash: crashed.map(|c| c.2),
        recovery_ms: crashed.map(|c| c.0),
        store_open_ms: crashed.map(|c| c.1),
        scheduled_ahead_ms: (args.pattern == Pattern::Burst && first_due != i64::MAX)
            .then_some(first_due - sched_end_ms),
        stats,
    };
    std::fs::create_dir_all(out)
        .with_context(|| format!("create scheduler folder {}", out.display()))?;
    write_json(&out.join("summary.json"), &summary)?;
    write_text(&out.join("lateness.hgrm"), hgrm_text(&rb.hist))?;
    let csv = csv_text(
        &[
            "t_s",
            "delivered",
            "lateness_p50_ms",
            "lateness_p99_ms",
            "lateness_max_ms",
        ],
        time_series(&rb.points, rb.first_due_ms)
            .into_iter()
            .map(|(t, n, p50, p99, max)| {
                [
                    format!("{t:.3}"),
                    n.to_string(),
                    p50.to_string(),
                    p99.to_string(),
                    max.to_string(),
                ]
            }),
    );
    write_text(&out.join("lateness_timeseries.csv"), csv)?;
    write_command(out)?;
    Ok(summary)
}
