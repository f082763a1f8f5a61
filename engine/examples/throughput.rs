//! A rough, single-run throughput figure per backend x flush strategy.
//! The real measurement tool is `mqlab run` / `mqlab matrix`; this example
//! exists so the engine can be sized without the lab.
//!
//! ```text
//! cargo run --release -p mqlab-engine --example throughput -- [SECS] [THREADS] [MSG_BYTES] [DIR] [prealloc]
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mqlab_engine::{BackendKind, FlushKind, Message, PutStatus, Store, StoreConfig};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let secs: f64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let threads: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(16);
    let size: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1024);
    let base = args
        .get(3)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let preallocate = args.get(4).is_some_and(|a| a == "prealloc");
    println!(
        "{threads} threads, {size} B messages, {secs} s per run, data under {}",
        base.display()
    );
    println!(
        "{:<8} {:<6} {:>12} {:>9} {:>10} {:>10}",
        "backend", "flush", "msgs/s", "MiB/s", "p50 us", "p99 us"
    );
    for backend in BackendKind::ALL {
        for flush in FlushKind::ALL {
            let dir = base.join(format!(
                "mqlab-throughput-{backend}-{flush}-{}",
                std::process::id()
            ));
            let cfg = StoreConfig {
                backend,
                segment_bytes: 256 << 20,
                preallocate,
                flush: mqlab_engine::FlushConfig {
                    kind: flush,
                    ..Default::default()
                },
                ..StoreConfig::default()
            };
            let store = match Store::open(&dir, cfg) {
                Ok(s) => Arc::new(s),
                Err(e) => {
                    println!("{backend:<8} {flush:<6} skipped: {e}");
                    continue;
                }
            };
            let stop = Arc::new(AtomicBool::new(false));
            let start = Instant::now();
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let (store, stop) = (store.clone(), stop.clone());
                    std::thread::spawn(move || {
                        let mut lat = Vec::new();
                        let msg = Message::new("Bench", vec![b'x'; size]).with_queue(t as u32 % 8);
                        while !stop.load(Ordering::Relaxed) {
                            let t0 = Instant::now();
                            let r = store.put(&msg);
                            assert_eq!(r.status, PutStatus::PutOk, "{:?}", r.detail);
                            lat.push(t0.elapsed().as_micros() as u32);
                        }
                        lat
                    })
                })
                .collect();
            std::thread::sleep(Duration::from_secs_f64(secs));
            stop.store(true, Ordering::Relaxed);
            let mut lat: Vec<u32> = handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect();
            let elapsed = start.elapsed().as_secs_f64();
            lat.sort_unstable();
            let pct = |p: f64| {
                lat.get(((lat.len() as f64 - 1.0) * p) as usize)
                    .copied()
                    .unwrap_or(0)
            };
            let rate = lat.len() as f64 / elapsed;
            println!(
                "{backend:<8} {flush:<6} {rate:>12.0} {:>9.1} {:>10} {:>10}",
                rate * size as f64 / (1 << 20) as f64,
                pct(0.5),
                pct(0.99)
            );
            Arc::try_unwrap(store).ok().map(|s| s.shutdown());
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
