//! `device`: the raw limits every other bench is divided by, measured with
//! the same primitives as `mqlab baseline` (`mqlab_engine::device`):
//! pwrite+fdatasync at queue depth 1 for 4 KiB and the batch sizes group
//! commit forms (16 KiB to 1 MiB), buffered-write bandwidth, memcpy
//! bandwidth. `MQLAB_BENCH_DIR` picks the disk.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use mqlab_bench::{latency_hist, scratch, DeviceFigures, RatioReport, RatioRow, SyncFigure};
use mqlab_engine::device::{self, Budget};

const BATCHES: [usize; 6] = [4096, 16 << 10, 64 << 10, 256 << 10, 512 << 10, 1 << 20];

fn main() {
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_secs(1))
        .without_plots()
        .configure_from_args();
    let dir = scratch("mqlab-bench-device-");
    let path = dir.path().join("scratch");
    let figures = RefCell::new(DeviceFigures {
        dir: dir.path().display().to_string(),
        ..Default::default()
    });
    let rows = RefCell::new(Vec::new());
    let mut group = c.benchmark_group("device");
    group.sampling_mode(SamplingMode::Flat);
    let never = || false;
    for &b in &BATCHES {
        group.throughput(Throughput::Bytes(b as u64));
        let mut hist = latency_hist();
        let mut totals = (0u64, Duration::ZERO);
        group.bench_function(BenchmarkId::new("pwrite_fdatasync_qd1", b), |bench| {
            bench.iter_custom(|iters| {
                let run = device::pwrite_fdatasync(
                    &path,
                    b,
                    Budget {
                        time: Duration::ZERO,
                        min_ops: iters,
                        file_bytes: 256 << 20,
                    },
                    &never,
                    &mut |d| hist.saturating_record(d.as_micros() as u64),
                )
                .expect("pwrite+fdatasync");
                totals.0 += run.ops;
                totals.1 += run.elapsed;
                run.elapsed
            });
        });
        if totals.0 == 0 {
            continue;
        }
        let ops = totals.0 as f64 / totals.1.as_secs_f64();
        let f = SyncFigure {
            batch_bytes: b,
            ops_per_s: ops,
            mib_per_s: ops * b as f64 / (1 << 20) as f64,
            p50_us: hist.value_at_quantile(0.5),
            p99_us: hist.value_at_quantile(0.99),
        };
        rows.borrow_mut().push(RatioRow {
            group: "device".into(),
            id: format!("pwrite_fdatasync_qd1/{b}"),
            msgs_per_s: ops,
            mb_per_s: ops * b as f64 / 1e6,
            p50_us: f.p50_us,
            p99_us: f.p99_us,
            note: "ops/s = pwrite+fdatasync pairs".into(),
            ..Default::default()
        });
        figures.borrow_mut().sync.push(f);
    }
    let chunk = 1usize << 20;
    group.throughput(Throughput::Bytes(chunk as u64));
    for name in ["buffered_write", "memcpy"] {
        let mut totals = (0u64, Duration::ZERO);
        group.bench_function(BenchmarkId::new(name, chunk), |bench| {
            bench.iter_custom(|iters| {
                let t = Instant::now();
                let bw = if name == "memcpy" {
                    let src = vec![1u8; chunk];
                    let mut dst = vec![0u8; chunk];
                    let t = Instant::now();
                    for _ in 0..iters {
                        dst.copy_from_slice(std::hint::black_box(&src));
                        std::hint::black_box(&mut dst);
                    }
                    device::Bandwidth {
                        bytes: iters * chunk as u64,
                        elapsed: t.elapsed(),
                    }
                } else {
                    device::buffered_write(
                        &path,
                        chunk,
                        Budget {
                            time: Duration::ZERO,
                            min_ops: iters,
                            file_bytes: 256 << 20,
                        },
                        &never,
                    )
                    .expect("buffered write")
                };
                let _ = t;
                totals.0 += bw.bytes;
                totals.1 += bw.elapsed;
                bw.elapsed
            });
        });
        if totals.0 == 0 {
            continue;
        }
        let mib = totals.0 as f64 / totals.1.as_secs_f64() / (1 << 20) as f64;
        if name == "memcpy" {
            figures.borrow_mut().memcpy_mib_per_s = mib;
        } else {
            figures.borrow_mut().buffered_write_mib_per_s = mib;
        }
        rows.borrow_mut().push(RatioRow {
            group: "device".into(),
            id: format!("{name}/{chunk}"),
            mb_per_s: mib * (1 << 20) as f64 / 1e6,
            note: "1 MiB chunks".into(),
            ..Default::default()
        });
    }
    group.finish();
    c.final_summary();
    let mut report = RatioReport::new("device", figures.into_inner());
    report.rows = rows.into_inner();
    report.write();
}
