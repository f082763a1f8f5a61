//! Messaging experiments: `mqlab run --spec FILE` with a `[messaging]`
//! table runs one of them, each variant on its own fresh store, and writes
//! one run folder per variant (summary.json with the messaging figures,
//! timeseries.csv and ack_latency.hgrm of the producers, messaging.csv of
//! backlog and consumer queue over time, e2e_latency.hgrm) plus charts.
//!
//! | experiment | variants | question |
//! |---|---|---|
//! | peak-shaving | push, pull | bursty producers against a consumer with a fixed rate: backlog, consumer-side queue, end-to-end latency |
//! | ordered | concurrent, orderly, orderly-no-pq-lock | what the three locks cost, and the duplicates the process-queue lock prevents while members come and go |
//! | transactions | plain, txn, txn-unanswered | half + commit vs plain send; resolution latency when some producers never answer |
//! | retry | fail percentages | retry traffic, DLQ arrivals, latency of retried messages |
//! | broadcast | clustering, broadcasting | fan-out cost |
//!
//! Every message body carries (key, step, send time in µs since the run
//! started), so consumers measure end-to-end latency, duplicates and order
//! without a side table of what was sent.

mod broadcast;
mod drive;
pub mod figures;
mod lab;
mod ordered;
mod peak;
pub mod plot;
mod retry;
mod series;
pub mod spec;
mod tracker;
mod txn;

use std::path::Path;

use anyhow::{bail, Context, Result};

pub use figures::Figures;
use lab::{Ctx, Outcome};
use series::rows_csv;
pub use spec::{Experiment, MessagingSpec};

use crate::recorder::{LatencySummary, LossStats};
use crate::spec::Workload;
use crate::summary::{self, LossWindowJson, RunConfig, Summary};
use crate::table::round3;
use crate::util::{self, MachineInfo};

fn run_variant(ctx: &Ctx<'_>, exp: Experiment, variant: &str) -> Result<Outcome> {
    match exp {
        Experiment::PeakShaving => peak::run(ctx, variant),
        Experiment::Ordered => ordered::run(ctx, variant),
        Experiment::Transactions => txn::run(ctx, variant),
        Experiment::Retry => retry::run(ctx, variant),
        Experiment::Broadcast => broadcast::run(ctx, variant),
    }
}

fn table(rows: &[&Summary]) -> String {
    let mut cells = vec![[
        "variant",
        "sent msgs/s",
        "send p99 µs",
        "consumed",
        "e2e p50 ms",
        "e2e p99 ms",
        "backlog max",
        "consumer queue max",
        "dup",
        "out of order",
        "DLQ",
        "txn p99 ms",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect::<Vec<_>>()];
    for s in rows {
        let Some(f) = &s.messaging else { continue };
        cells.push(vec![
            f.variant.clone(),
            util::thousands(s.throughput_msgs_per_s),
            util::thousands(s.ack_latency_us.p99 as f64),
            util::thousands(f.consumed as f64),
            format!("{:.1}", f.e2e_latency_us.p50 as f64 / 1000.0),
            format!("{:.1}", f.e2e_latency_us.p99 as f64 / 1000.0),
            util::thousands(f.backlog_max as f64),
            util::thousands(f.consumer_queue_max as f64),
            f.duplicates.to_string(),
            f.out_of_order.to_string(),
            f.dlq_messages.to_string(),
            f.txn_resolution_ms
                .as_ref()
                .map_or("-".into(), |l| l.p99.to_string()),
        ]);
    }
    summary::render_table(&cells)
}

/// `mqlab run --spec` with a `[messaging]` table: workload `w` (resolved
/// from the spec and the command line), results in `out`, scratch stores
/// under `data_dir` (default: the system temporary directory).
pub fn cmd_run(m: &MessagingSpec, w: &Workload, out: &Path, data_dir: Option<&Path>) -> Result<()> {
    let Some(exp) = m.experiment else {
        bail!("[messaging] needs `experiment` (peak-shaving, ordered, transactions, retry, broadcast)");
    };
    let w = w.clone();
    let out = out.to_path_buf();
    std::fs::create_dir_all(&out)
        .with_context(|| format!("create output folder {}", out.display()))?;
    let parent = util::scratch_parent(data_dir)?;
    let machine = MachineInfo::collect(&parent);
    let ctx = Ctx {
        w: &w,
        m,
        parent: &parent,
    };
    let variants = m.variants.clone().unwrap_or_else(|| exp.default_variants());
    let mut summaries = Vec::new();
    for v in &variants {
        eprintln!("mqlab: {} / {v} ...", exp.name());
        let started_utc = util::timestamp();
        let o = run_variant(&ctx, exp, v).with_context(|| format!("variant {v}"))?;
        // A variant that acknowledged nothing measured nothing: a row of
        // zeros would pass for a result.
        if o.stats.msgs == 0 && !util::stopped() {
            bail!(
                "{} / {v}: no message was acknowledged: {}",
                exp.name(),
                summary::why_nothing_acked(&o.stats.errors)
            );
        }
        let dir = out.join(v);
        let mut wv = w.clone();
        wv.name = format!("{}-{v}", w.name);
        let secs = o.produce_secs.max(1e-9);
        let summary = Summary {
            mqlab_version: env!("CARGO_PKG_VERSION").to_string(),
            name: wv.name.clone(),
            label: v.clone(),
            command: util::command_line(),
            started_utc,
            config: RunConfig {
                store: wv.store_config(),
                workload: wv,
            },
            duration_s: round3(o.produce_secs),
            messages_acked: o.stats.msgs,
            bytes_acked: o.stats.msgs * w.msg_size as u64,
            throughput_msgs_per_s: round3(o.stats.msgs as f64 / secs),
            throughput_mib_per_s: round3(
                (o.stats.msgs * w.msg_size as u64) as f64 / secs / (1024.0 * 1024.0),
            ),
            ack_latency_us: LatencySummary::of(&o.stats.ack),
            intended_latency_us: None,
            loss_window: LossWindowJson::default(),
            errors: o.stats.errors.clone(),
            offsets_end: o.offsets_end.into(),
            open_ms: 0.0,
            shutdown_ms: None,
            baseline: None,
            ratios: None,
            machine: machine.clone(),
            interrupted: util::stopped(),
            messaging: Some(o.figures.clone()),
        };
        summary::write_run_outputs(
            &dir,
            &summary,
            &o.stats,
            &LossStats::default(),
            o.total_secs,
        )?;
        let csv = dir.join("messaging.csv");
        std::fs::write(&csv, rows_csv(&o.rows))
            .with_context(|| format!("write {}", csv.display()))?;
        let hgrm = dir.join("e2e_latency.hgrm");
        std::fs::write(&hgrm, summary::hgrm_text(&o.e2e))
            .with_context(|| format!("write {}", hgrm.display()))?;
        summaries.push(summary);
        if util::stopped() {
            break;
        }
    }
    util::write_command(&out)?;
    let charts = plot::draw(std::slice::from_ref(&out), &out)?;
    let refs: Vec<&Summary> = summaries.iter().collect();
    print!("{}", table(&refs));
    for c in charts {
        println!("chart: {}", out.join(c).display());
    }
    println!("results: {}", out.display());
    Ok(())
}
