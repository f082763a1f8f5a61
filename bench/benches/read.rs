//! `read`: consume-queue scan (entries/s), get by physical offset and key
//! lookup (msg/s) on a store of `MQLAB_BENCH_READ_MSGS` (default 1,000,000)
//! 128 B messages in one queue, each with its own key; and recovery of a
//! commit log of `MQLAB_BENCH_RECOVERY_BYTES` (default 1 GiB; `256M` etc.
//! allowed) of 1 KiB messages, in MB/s:
//! - `recovery/log_scan`: the recovery scan alone (every record parsed,
//!   both CRCs verified), as `Store::open` runs it after a crash;
//! - `recovery/open_after_crash`: the whole `Store::open` after a crash
//!   (abort marker present, no checkpoint): scan, truncate, re-dispatch of
//!   every record into the consume queues and the index, syncs.
//!
//! Both read a page-cache-warm log (the bench just wrote it): they measure
//! the CPU side of recovery, not the disk's read bandwidth.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use mqlab_bench::{
    closed_loop, mb_per_s, message, recovery_bytes, scratch, DeviceFigures, RatioReport, RatioRow,
    Totals, Until, TOPIC,
};
use mqlab_engine::log::record::CrcCheck;
use mqlab_engine::log::{scan, CommitLog, LogOptions};
use mqlab_engine::{BackendKind, Message, PutStatus, Store, StoreConfig};

fn read_msgs() -> u64 {
    std::env::var("MQLAB_BENCH_READ_MSGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

/// A cheap deterministic sequence for picking random offsets and keys.
fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

fn main() {
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .without_plots()
        .configure_from_args();
    let dir = scratch("mqlab-bench-read-");
    // The device figure recovery is compared with: buffered write bandwidth
    // (the rate the log was written at) and memcpy.
    let device =
        DeviceFigures::measure(dir.path(), &[], Duration::ZERO, Duration::from_millis(500))
            .expect("device measurement");
    let report = RefCell::new(RatioReport::new("read", device.clone()));
    let push = |id: &str, rate: f64, bytes: usize, note: String| {
        report.borrow_mut().rows.push(RatioRow {
            group: "read".into(),
            id: id.into(),
            msgs_per_s: rate,
            mb_per_s: mb_per_s(rate, bytes),
            note,
            ..Default::default()
        });
    };

    // The query store: one queue, a key per message.
    let n = read_msgs();
    let qdir = dir.path().join("query");
    let store = Store::open(
        &qdir,
        StoreConfig {
            backend: BackendKind::Pwrite,
            ..StoreConfig::default()
        },
    )
    .expect("open");
    let t = Instant::now();
    let body = vec![b'q'; 128];
    for i in 0..n {
        let m = Message::new(TOPIC, body.clone()).with_keys(format!("k{i}"));
        assert_eq!(store.put(&m).status, PutStatus::PutOk);
    }
    assert!(store.wait_dispatched(store.offsets().committed, Duration::from_secs(600)));
    eprintln!(
        "read: {n} messages written and dispatched in {:?}",
        t.elapsed()
    );
    let units = store.queue_units(TOPIC, 0, 0, n as usize).expect("units");
    assert_eq!(units.len() as u64, n);
    let phys: Vec<u64> = units.iter().map(|u| u.phys_offset).collect();
    drop(units);

    let mut group = c.benchmark_group("read");
    group.sampling_mode(SamplingMode::Flat);
    const CHUNK: u64 = 1000;
    group.throughput(Throughput::Elements(1));
    let mut totals = Totals::default();
    group.bench_function(BenchmarkId::new("cq_scan", CHUNK), |b| {
        b.iter_custom(|iters| {
            let mut pos = 0u64;
            let mut left = iters;
            let t = Instant::now();
            while left > 0 {
                let k = left.min(CHUNK);
                if pos + k > n {
                    pos = 0;
                }
                let u = store.queue_units(TOPIC, 0, pos, k as usize).expect("units");
                std::hint::black_box(&u);
                pos += k;
                left -= k;
            }
            totals.add(iters, t.elapsed())
        });
    });
    if let Some(rate) = totals.per_s() {
        push(
            "cq_scan",
            rate,
            20,
            format!("entries/s, {CHUNK} per call; target 10M: {:.2}", rate / 1e7),
        );
    }
    for op in ["get_by_phys", "key_lookup"] {
        let mut totals = Totals::default();
        group.bench_function(op, |b| {
            b.iter_custom(|iters| {
                let mut x = 0x9E37_79B9_7F4A_7C15u64;
                let t = Instant::now();
                for _ in 0..iters {
                    let i = next(&mut x) % n;
                    if op == "get_by_phys" {
                        std::hint::black_box(store.get(phys[i as usize]).expect("get"));
                    } else {
                        let r = store
                            .query_by_key(TOPIC, &format!("k{i}"), 0, i64::MAX)
                            .expect("query");
                        assert_eq!(r.len(), 1);
                    }
                }
                totals.add(iters, t.elapsed())
            });
        });
        if let Some(rate) = totals.per_s() {
            push(op, rate, 128, "random messages, msg/s".into());
        }
    }
    store.shutdown().expect("shutdown");
    let _ = std::fs::remove_dir_all(&qdir);

    // The recovery store: a commit log of recovery_bytes().
    let want = recovery_bytes();
    let rdir = dir.path().join("recovery");
    let cfg = StoreConfig {
        backend: BackendKind::Pwrite,
        index_enabled: true,
        ..StoreConfig::default()
    };
    let store = Store::open(&rdir, cfg.clone()).expect("open");
    let store = std::sync::Arc::new(store);
    let s2 = store.clone();
    let msgs: Vec<_> = (0..2).map(|t| message(1024, t)).collect();
    let t = Instant::now();
    let per = mqlab_bench::record_bytes(1024) as u64;
    closed_loop(2, Until::Ops(want / per), move |t| {
        s2.put(&msgs[t]).status == PutStatus::PutOk
    });
    let end = store.offsets().committed;
    let store = std::sync::Arc::try_unwrap(store).expect("sole owner");
    store.shutdown().expect("shutdown");
    eprintln!("read: {end} B commit log written in {:?}", t.elapsed());
    group.throughput(Throughput::Bytes(end));
    let log_dir = rdir.join("commitlog");
    let mut totals = Totals::default();
    group.bench_function("recovery/log_scan", |b| {
        b.iter_custom(|iters| {
            totals.add_each(iters, end, || {
                let t = Instant::now();
                let mut notes = Vec::new();
                let (log, _) = CommitLog::open(
                    BackendKind::Pwrite.env().expect("env"),
                    &log_dir,
                    LogOptions {
                        segment_bytes: cfg.segment_bytes,
                        preallocate: false,
                        read_only: true,
                        store_host: cfg.store_host,
                        record_crc: true,
                        staging_bytes: None,
                    },
                    &mut notes,
                )
                .expect("open log");
                let first = log.min_offset();
                let out = scan::scan(&log, first, end, CrcCheck::Required, &mut |m| {
                    std::hint::black_box(m.queue_offset);
                    true
                })
                .expect("scan");
                assert_eq!(out.end, end, "{:?}", out.reason);
                t.elapsed()
            })
        });
    });
    if let Some(bps) = totals.per_s() {
        push(
            "recovery/log_scan",
            bps / per as f64,
            per as usize,
            format!("{end} B log, both CRCs; target 1 GB/s: {:.2}", bps / 1e9),
        );
    }
    let mut totals = Totals::default();
    group.bench_function("recovery/open_after_crash", |b| {
        b.iter_custom(|iters| {
            totals.add_each(iters, end, || {
                // What a crash leaves: the abort marker, and here no
                // checkpoint, so the whole log is re-parsed and re-dispatched.
                std::fs::write(rdir.join("abort"), b"").expect("abort marker");
                let _ = std::fs::remove_file(rdir.join("checkpoint"));
                let t = Instant::now();
                let s = Store::open(&rdir, cfg.clone()).expect("recover");
                let e = t.elapsed();
                assert_eq!(s.offsets().committed, end);
                s.shutdown().expect("shutdown");
                e
            })
        });
    });
    if let Some(bps) = totals.per_s() {
        push(
            "recovery/open_after_crash",
            bps / per as f64,
            per as usize,
            format!(
                "{end} B log, scan + re-dispatch (queues, index) + syncs; target 1 GB/s: {:.2}",
                bps / 1e9
            ),
        );
    }
    group.finish();
    c.final_summary();
    report.into_inner().write();
}
