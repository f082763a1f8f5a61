//! Put, get, crash and recover from the command line.
//!
//! ```text
//! cargo run -p mqlab-engine --example demo -- put   DIR N [sync|group|async|pool] [pwrite|mmap|uring]
//! cargo run -p mqlab-engine --example demo -- crash DIR N [flush] [backend]   # puts, then aborts the process
//! cargo run -p mqlab-engine --example demo -- get   DIR PHYS_OFFSET
//! cargo run -p mqlab-engine --example demo -- queue DIR TOPIC QUEUE_ID [FROM]
//! cargo run -p mqlab-engine --example demo -- key   DIR TOPIC KEY
//! cargo run -p mqlab-engine --example demo -- recover DIR                     # open, print the recovery report
//! ```

use mqlab_engine::{Message, Store, StoreConfig};

fn config(args: &[String], at: usize) -> Result<StoreConfig, String> {
    let mut cfg = StoreConfig::small();
    if let Some(f) = args.get(at) {
        cfg.flush.kind = f.parse()?;
    }
    if let Some(b) = args.get(at + 1) {
        cfg.backend = b.parse()?;
    }
    Ok(cfg)
}

fn put_n(store: &Store, n: u64) {
    for i in 0..n {
        let msg = Message::new("DemoTopic", format!("hello #{i}").into_bytes())
            .with_queue((i % 4) as u32)
            .with_keys(format!("demo-{i}"))
            .with_tags("demo");
        let r = store.put(&msg);
        match r.offsets {
            Some(o) => println!(
                "{} message {i}: phys {} queue {} offset {}",
                r.status.as_str(),
                o.phys_offset,
                msg.queue_id,
                o.queue_offset
            ),
            None => println!("{} message {i}: {:?}", r.status.as_str(), r.detail),
        }
    }
    println!("offsets: {:?}", store.offsets());
}

fn run(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let usage = "usage: demo put|crash|get|queue|key|recover DIR ...";
    let cmd = args.first().ok_or(usage)?;
    let dir = args.get(1).ok_or(usage)?;
    let num = |i: usize| -> Result<u64, Box<dyn std::error::Error>> {
        Ok(args.get(i).ok_or(usage)?.parse::<u64>()?)
    };
    match cmd.as_str() {
        "put" => {
            let store = Store::open(dir, config(args, 3)?)?;
            put_n(&store, num(2)?);
            store.shutdown()?;
        }
        "crash" => {
            let store = Store::open(dir, config(args, 3)?)?;
            put_n(&store, num(2)?);
            println!("aborting without shutdown (process crash)");
            std::process::abort();
        }
        "get" => {
            let store = Store::open(dir, StoreConfig::small())?;
            let m = store.get(num(2)?)?;
            println!(
                "{} queue {} offset {} keys {:?} body {:?}",
                m.topic,
                m.queue_id,
                m.queue_offset,
                m.keys().collect::<Vec<_>>(),
                String::from_utf8_lossy(&m.body)
            );
            store.shutdown()?;
        }
        "queue" => {
            let store = Store::open(dir, StoreConfig::small())?;
            let topic = args.get(2).ok_or(usage)?;
            let from = if args.len() > 4 { num(4)? } else { 0 };
            for m in store.get_from_queue(topic, num(3)? as u32, from, 32)? {
                println!("{} {:?}", m.queue_offset, String::from_utf8_lossy(&m.body));
            }
            store.shutdown()?;
        }
        "key" => {
            let store = Store::open(dir, StoreConfig::small())?;
            let (topic, key) = (args.get(2).ok_or(usage)?, args.get(3).ok_or(usage)?);
            for m in store.query_by_key(topic, key, 0, i64::MAX)? {
                println!(
                    "phys {} {:?}",
                    m.phys_offset,
                    String::from_utf8_lossy(&m.body)
                );
            }
            store.shutdown()?;
        }
        "recover" => {
            let store = Store::open(dir, StoreConfig::small())?;
            println!("{:#?}", store.recovery_report());
            for q in store.queues() {
                println!(
                    "{}:{} offsets {}..{}",
                    q.topic, q.queue_id, q.min_offset, q.max_offset
                );
            }
            store.shutdown()?;
        }
        _ => return Err(usage.into()),
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = run(&args) {
        eprintln!("demo: {e}");
        std::process::exit(1);
    }
}
