//! messaging.csv: backlog, consumer-side queue and retry counts sampled
//! over a variant's run.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mqlab_engine::service::Service;

use crate::table::csv_text;

/// One sample of messaging.csv.
#[derive(Debug, Clone, Copy, Default)]
pub struct Row {
    /// ms since the run started.
    pub t_ms: u64,
    /// Acknowledged sends so far.
    pub produced: u64,
    /// Deliveries so far.
    pub consumed: u64,
    /// Messages not consumed by the group.
    pub backlog: u64,
    /// Messages cached by consumers, not consumed yet.
    pub consumer_queue: u64,
    /// Messages sent back for a retry so far.
    pub retried: u64,
    /// Messages in the DLQ.
    pub dlq: u64,
}

/// messaging.csv text.
pub fn rows_csv(rows: &[Row]) -> String {
    csv_text(
        &[
            "t_ms",
            "produced",
            "consumed",
            "backlog",
            "consumer_queue",
            "retried",
            "dlq",
        ],
        rows.iter().map(|r| {
            [
                r.t_ms,
                r.produced,
                r.consumed,
                r.backlog,
                r.consumer_queue,
                r.retried,
                r.dlq,
            ]
            .map(|v| v.to_string())
        }),
    )
}

/// Samples `f` at the start, every `period` on a background service
/// thread, and once more when finished.
pub struct Sampler {
    service: Service,
    rows: Arc<Mutex<Vec<Row>>>,
}

impl Sampler {
    /// Starts sampling.
    pub fn start(period: Duration, mut f: impl FnMut() -> Row + Send + 'static) -> Sampler {
        let service = Service::default();
        let rows = Arc::new(Mutex::new(Vec::new()));
        let out = rows.clone();
        service.spawn("mqlab-messaging-sampler", move |signal| {
            let push = |row| out.lock().unwrap_or_else(|e| e.into_inner()).push(row);
            loop {
                push(f());
                if !signal.wait(period) {
                    break;
                }
            }
            push(f());
        });
        Sampler { service, rows }
    }

    /// Stops and returns the samples.
    pub fn finish(self) -> Vec<Row> {
        self.service.stop();
        std::mem::take(&mut *self.rows.lock().unwrap_or_else(|e| e.into_inner()))
    }
}
