//! `append`: every backend x flush strategy at 1, 16 and 256 puts in
//! flight, 128 B, 1 KiB and 4 KiB bodies. Each benchmark runs C threads
//! putting one message at a time (a closed loop) into one store opened for
//! that benchmark; criterion times batches of puts (`iter_custom`), and the
//! ratio report divides the msg/s of all batches by the device bound of the
//! same run:
//! - sync: queue-depth-1 pwrite+fdatasync/s at one record (target 0.9);
//! - group: C x fdatasync/s at a batch of C records (target 0.8), and p99
//!   over the device p99 at that batch (target <= 2);
//! - async, pool: buffered-write bandwidth in records/s (target 0.8).
//!
//! Filter like any criterion bench, e.g.
//! `cargo bench -p mqlab-bench --bench append -- 'append/pwrite/group'`.
//! `MQLAB_BENCH_DIR` picks the disk; `MQLAB_BENCH_QUICK=1` shortens every
//! measurement further.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use mqlab_bench::{
    latency_hist, mb_per_s, message, record_bytes, scratch, DeviceFigures, LoadPool, RatioReport,
    RatioRow, Until,
};
use mqlab_engine::flush::AckWait;
use mqlab_engine::{BackendKind, FlushConfig, FlushKind, PutStatus, Store, StoreConfig};

const CONCURRENCY: [usize; 3] = [1, 16, 256];
const SIZES: [usize; 3] = [128, 1024, 4096];

fn main() {
    let quick = std::env::var_os("MQLAB_BENCH_QUICK").is_some();
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(if quick { 100 } else { 300 }))
        .measurement_time(Duration::from_millis(if quick { 300 } else { 1000 }))
        .without_plots()
        .configure_from_args();
    let dir = scratch("mqlab-bench-append-");
    let device = DeviceFigures::measure(
        dir.path(),
        &DeviceFigures::batch_sizes_for(&SIZES, &CONCURRENCY),
        Duration::from_millis(if quick { 150 } else { 400 }),
        Duration::from_millis(500),
    )
    .expect("device measurement");
    let report = RefCell::new(RatioReport::new("append", device.clone()));
    let mut group = c.benchmark_group("append");
    group.sampling_mode(SamplingMode::Flat);
    for backend in BackendKind::ALL {
        for flush in FlushKind::ALL {
            for &conc in &CONCURRENCY {
                for &size in &SIZES {
                    let rec = record_bytes(size);
                    let id = BenchmarkId::new(format!("{backend}/{flush}/c{conc}"), size);
                    let id_text = format!("{backend}/{flush}/c{conc}/{size}");
                    // One iteration = one round of `conc` puts.
                    group.throughput(Throughput::Elements(conc as u64));
                    let mut store: Option<Arc<Store>> = None;
                    let mut pool: Option<LoadPool> = None;
                    let mut totals = (0u64, Duration::ZERO, latency_hist());
                    let mut failed = None;
                    group.bench_function(id, |b| {
                        if store.is_none() && failed.is_none() {
                            let cfg = StoreConfig {
                                backend,
                                flush: FlushConfig::for_kind(flush),
                                ..StoreConfig::default()
                            };
                            match Store::open(dir.path().join(&id_text), cfg) {
                                Ok(s) => {
                                    let s = Arc::new(s);
                                    let s2 = s.clone();
                                    let msgs: Vec<_> =
                                        (0..conc).map(|t| message(size, t as u32)).collect();
                                    pool = Some(LoadPool::new(conc, move |t| {
                                        s2.put(&msgs[t]).status == PutStatus::PutOk
                                    }));
                                    store = Some(s);
                                }
                                Err(e) => failed = Some(e.to_string()),
                            }
                        }
                        let Some(p) = pool.as_mut() else {
                            b.iter(|| ());
                            return;
                        };
                        b.iter_custom(|iters| {
                            let r = p.run(Until::Ops(iters * conc as u64));
                            totals.0 += r.ops;
                            totals.1 += r.elapsed;
                            totals.2.add(&r.hist).expect("same bounds");
                            r.elapsed
                        });
                    });
                    if let Some(e) = failed {
                        eprintln!("append {id_text}: skipped: {e}");
                        continue;
                    }
                    drop(pool.take());
                    let Some(s) = store.take() else {
                        continue; // filtered out
                    };
                    if let Ok(s) = Arc::try_unwrap(s) {
                        let _ = s.shutdown();
                    }
                    let _ = std::fs::remove_dir_all(dir.path().join(&id_text));
                    let rate = totals.0 as f64 / totals.1.as_secs_f64().max(1e-9);
                    let p50 = totals.2.value_at_quantile(0.5);
                    let p99 = totals.2.value_at_quantile(0.99);
                    let (figure, value, target, note) = match flush.ack_wait() {
                        AckWait::OwnSync => {
                            let d = device.sync_at(rec);
                            (
                                format!("qd1 pwrite+fdatasync/s at {rec} B"),
                                d.ops_per_s,
                                0.9,
                                format!(
                                    "p99/device p99 {:.2}",
                                    p99 as f64 / d.p99_us.max(1) as f64
                                ),
                            )
                        }
                        AckWait::SharedSync => {
                            let d = device.sync_at(rec * conc);
                            (
                                format!("{conc} x fdatasync/s at {} B", rec * conc),
                                device.durable_msgs_bound(conc, rec),
                                0.8,
                                format!(
                                    "p99/device p99 {:.2} (target <= 2)",
                                    p99 as f64 / d.p99_us.max(1) as f64
                                ),
                            )
                        }
                        AckWait::Write => (
                            "buffered write, records/s".into(),
                            device.buffered_msgs_bound(rec),
                            0.8,
                            if size == 128 {
                                format!("1M msg/s target: {:.2}", rate / 1e6)
                            } else {
                                String::new()
                            },
                        ),
                    };
                    report.borrow_mut().rows.push(RatioRow {
                        group: "append".into(),
                        id: id_text,
                        msgs_per_s: rate,
                        mb_per_s: mb_per_s(rate, rec),
                        p50_us: p50,
                        p99_us: p99,
                        device_figure: figure,
                        device_value: value,
                        ratio: rate / value.max(1e-9),
                        target: Some(target),
                        note,
                    });
                }
            }
        }
    }
    group.finish();
    c.final_summary();
    report.into_inner().write();
}
