//! `codec`: record encode (with both CRCs: the body CRC and the
//! whole-record `__CRC32#` property) and decode (both CRCs verified) at
//! 128 B, 1 KiB, 4 KiB and 64 KiB bodies. The ratio report compares the
//! record bytes per second with single-thread memcpy bandwidth of the same
//! run: how far the codec is from a plain copy.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use mqlab_bench::{mb_per_s, message, DeviceFigures, RatioReport, RatioRow};
use mqlab_engine::log::record::{self, CrcCheck, DecodedView};
use mqlab_engine::{device, StoreConfig};

const SIZES: [usize; 4] = [128, 1024, 4096, 64 * 1024];

fn main() {
    let mut c = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .without_plots()
        .configure_from_args();
    let memcpy = device::memcpy(1 << 20, Duration::from_millis(300));
    let dev = DeviceFigures {
        dir: "(memory)".into(),
        memcpy_mib_per_s: memcpy.mib_per_s(),
        ..Default::default()
    };
    let report = RefCell::new(RatioReport::new("codec", dev));
    let host = StoreConfig::default().store_host;
    let mut group = c.benchmark_group("codec");
    for &size in &SIZES {
        let msg = message(size, 1);
        let mut buf = Vec::new();
        let layout = record::encode(&msg, &[], 1, &host, true, &mut buf);
        record::finish(&mut buf, layout, 7, 4096, 2);
        let rec = buf.len();
        group.throughput(Throughput::Bytes(rec as u64));
        for op in ["encode", "decode"] {
            let mut totals = (0u64, Duration::ZERO);
            group.bench_function(BenchmarkId::new(op, size), |b| {
                b.iter_custom(|iters| {
                    let mut out = Vec::with_capacity(rec);
                    let t = Instant::now();
                    for i in 0..iters {
                        if op == "encode" {
                            let l = record::encode(&msg, &[], 1, &host, true, &mut out);
                            record::finish(&mut out, l, i, 4096, 2);
                            std::hint::black_box(&out);
                        } else {
                            let v = record::decode_view(
                                std::hint::black_box(&buf),
                                4096,
                                u64::MAX,
                                CrcCheck::Required,
                            )
                            .expect("decodes");
                            assert!(matches!(v, DecodedView::Message(_)));
                        }
                    }
                    let e = t.elapsed();
                    totals.0 += iters;
                    totals.1 += e;
                    e
                });
            });
            if totals.0 == 0 {
                continue; // filtered out
            }
            let rate = totals.0 as f64 / totals.1.as_secs_f64().max(1e-9);
            let mb = mb_per_s(rate, rec);
            let bound = memcpy.bytes_per_s() / 1e6;
            report.borrow_mut().rows.push(RatioRow {
                group: "codec".into(),
                id: format!("{op}/{size}"),
                msgs_per_s: rate,
                mb_per_s: mb,
                device_figure: "memcpy MB/s".into(),
                device_value: bound,
                ratio: mb / bound.max(1e-9),
                note: format!("{rec} B records"),
                ..Default::default()
            });
        }
    }
    group.finish();
    c.final_summary();
    report.into_inner().write();
}
