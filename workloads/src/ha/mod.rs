//! `mqlab ha` (issue 14): what each replication mode loses when the master
//! dies.
//!
//! For each mode (ASYNC_MASTER or SYNC_MASTER, a flush strategy, 1 or 2
//! slaves) and each kill: a master `mqlab broker` process and its slaves
//! (processes; each slave's HA connection goes through a seeded
//! [`crate::faultproxy::FaultProxy`], `--fault`), a producer load from
//! this process (`PipelinedSender`, one connection so each queue's order
//! is the send order), the replication lag sampled live from the brokers'
//! metrics endpoints (the master's committed offset against each slave's
//! written offset, and in messages and age against the acks received),
//! SIGKILL of the master at a seeded random moment, the slaves stopped
//! cleanly (SIGTERM), then `mqlab verify --data-dir SLAVE --acked LOG` with
//! the ack log of every send the master acknowledged (SEND_OK only), and a
//! scan of the slave's store for duplicates and per-queue order.
//!
//! The survivor is the slave with the longest log (the one an election
//! would pick). Controller failover (promotion, failover time) is not
//! part of this run: `failover_ms` is null with the reason.
//!
//! Expected: SYNC_MASTER loses no acknowledged message (its ack waits for
//! a slave's report); ASYNC_MASTER loses at most the lag sampled at the
//! kill (`loss_over_lag`, lost messages the best slave had already reported
//! written, is 0).
//!
//! `--failover` adds a controller ([`failover`]); `--partition` (issue 16)
//! runs seeded schedules of network faults and failovers against a
//! controller-mode group with every broker link behind a fault proxy
//! ([`partition`]).

mod failover;
pub mod partition;
pub mod powerloss;
mod proc;
mod report;
mod trial;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use mqlab_engine::FlushKind;
use serde::Serialize;

use crate::faultproxy::Fault;
pub use trial::{Sample, Trial, TrialParams};

/// `mqlab ha`'s options.
#[derive(Debug, Clone, clap::Args)]
#[command(
    about = "What each replication mode loses when the master dies: master and slave \
             `mqlab broker` processes, a producer, the replication lag sampled live, \
             SIGKILL of the master at seeded moments, then `mqlab verify --acked` on the \
             surviving slave",
    long_about = "What each replication mode loses when the master dies (issue 14).\n\n\
        For each mode in {ASYNC_MASTER, SYNC_MASTER} x {sync, group, async flush} x {1, 2 \
        slaves} and each kill: start a master `mqlab broker` and its slaves (processes, each \
        slave's HA link through a seeded fault proxy), send from this process (pipelined, \
        acks logged), sample the replication lag (master committed vs slaves written, bytes, \
        messages, age), SIGKILL the master at a seeded random moment, stop the slaves with \
        SIGTERM, run `mqlab verify --acked` on each slave and scan it for duplicates and \
        order. acked_lost counts messages the master acknowledged that the best slave does \
        not have; loss_over_lag those of them the best slave had reported written at the \
        sample just before the kill (must be 0). Controller failover is not measured \
        (failover_ms null, with the reason).\n\n\
        Outputs in --out: summary.json (a `modes` list), trials.csv (one line per kill), \
        lag.csv (every sample), ack logs (acks/<mode>/kill-N.csv, the first \
        --keep-ack-logs of each mode), ha_loss_vs_throughput.svg/png.\n\n\
        --quick (CI): ASYNC_MASTER and SYNC_MASTER, group flush, 1 slave, 3 kills each.\n\n\
        --partition (issue 16, replication faults): --schedules seeded schedules of network \
        faults (fault proxies on every broker's controller link and HA port: a slave cut off, \
        the master cut off and deposed, flapping links, a slow slave) with SIGKILLs of the \
        master, against a controller-mode group; the producer sends to every broker; after \
        the heal and convergence, every acknowledged message must be on the final master \
        (SYNC_MASTER) and no master epoch may have acknowledgements from two brokers \
        (dual_master_epochs). Outputs summary.json and schedules.jsonl; --replay SEED runs \
        one schedule."
)]
pub struct HaRequest {
    /// Output folder. [default: results/ha/run-<UTC time>]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// The CI subset: ASYNC_MASTER and SYNC_MASTER x group x 1 slave, 3
    /// kills each, short loads.
    #[arg(long)]
    pub quick: bool,
    /// Seed of every random choice (kill moments, proxy drops); a run
    /// repeats its choices with the same seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Kills per mode. [default: 20, --quick 3]
    #[arg(long, value_name = "N")]
    pub kills: Option<usize>,
    /// Roles, comma separated. [default: ASYNC_MASTER,SYNC_MASTER]
    #[arg(long, value_name = "LIST")]
    pub roles: Option<String>,
    /// Flush strategies, comma separated. [default: sync,group,async;
    /// --quick group]
    #[arg(long, value_name = "LIST")]
    pub flushes: Option<String>,
    /// Slave counts, comma separated. [default: 1,2; --quick 1]
    #[arg(long, value_name = "LIST")]
    pub slaves: Option<String>,
    /// The master is killed at a seeded moment in MIN..MAX ms after the
    /// load starts. [default: 300..2000, --quick 300..900]
    #[arg(long, value_name = "MIN..MAX")]
    pub kill_after_ms: Option<String>,
    /// Sends in flight.
    #[arg(long, default_value_t = 256)]
    pub inflight: usize,
    /// Queues the sends spread over.
    #[arg(long, default_value_t = 4)]
    pub queues: u32,
    /// Message body bytes.
    #[arg(long, default_value_t = 256)]
    pub body_bytes: usize,
    /// Lag sample interval, ms.
    #[arg(long, default_value_t = 10)]
    pub sample_ms: u64,
    /// What the fault proxy on each slave's HA link does: pass, delay:MS,
    /// drop:P (close with probability P per chunk) or partition.
    #[arg(long, default_value = "pass")]
    pub fault: String,
    /// Controller failover: a name server, a controller and the brokers
    /// in controller mode (`--controller`); after the kill the producer
    /// follows the route to the elected slave and goes on sending there;
    /// failover time is measured, loss checked on the new master. (The HA
    /// links do not go through the fault proxy then.)
    #[arg(long)]
    pub failover: bool,
    /// With --failover: the controller's heartbeat timeout (a master
    /// silent this long is replaced), ms.
    /// [default: 1000; --partition 3000: three of the brokers' 1 s
    /// heartbeat periods, so a proxy's few ms do not depose a master]
    #[arg(long, value_name = "MS")]
    pub heartbeat_timeout_ms: Option<u64>,
    /// With --failover: load kept on the new master after its first
    /// ack, ms.
    #[arg(long, value_name = "MS", default_value_t = 300)]
    pub post_failover_ms: u64,
    /// Replication faults (issue 16): seeded partition/flap/slow-link
    /// schedules with failovers against a controller-mode group (see
    /// --schedules, --replay).
    #[arg(long)]
    pub partition: bool,
    /// Power loss (issue 14): every broker runs with power-loss marks;
    /// at the kill the store of each killed broker is turned into what a
    /// power loss would have left (`mqlab powerloss`), then every replica
    /// is verified (see --power-loss-of; summary.json has power_loss,
    /// window_at_kill_msgs, loss_over_window).
    #[arg(long)]
    pub power_loss: bool,
    /// With --power-loss: who loses power, comma separated: `master` (the
    /// slaves stay up) and/or `all` (every replica at the same instant).
    /// [default: master,all]
    #[arg(long, value_name = "LIST")]
    pub power_loss_of: Option<String>,
    /// With --partition: schedules to run (round robin over the roles and
    /// slave counts). [default: 20, --quick 3]
    #[arg(long, value_name = "N")]
    pub schedules: Option<usize>,
    /// With --partition: run the one schedule of this seed (as printed by
    /// a run), with the first role and slave count given.
    #[arg(long, value_name = "SEED")]
    pub replay: Option<u64>,
    /// With --partition: the schedule kinds to draw from, comma separated:
    /// slave-cut, master-cut, master-ctl-cut, master-ha-cut, flap,
    /// slow-slave, combo, split. [default: all but split]
    #[arg(long, value_name = "LIST")]
    pub kinds: Option<String>,
    /// With --partition: sends per second to each broker.
    #[arg(long, value_name = "N", default_value_t = 800)]
    pub rate: u64,
    /// With --partition: the brokers' haMaxTimeSlaveNotCatchup, ms.
    #[arg(long, value_name = "MS", default_value_t = 3000)]
    pub catchup_ms: u64,
    /// Ack logs kept per mode (the first N kills').
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub keep_ack_logs: usize,
    /// The `mqlab` binary the brokers and verify run from. [default: this
    /// one]
    #[arg(long, value_name = "PATH")]
    pub bin: Option<PathBuf>,
}

/// One replication mode.
#[derive(Debug, Clone, Serialize)]
pub struct Mode {
    pub role: String,
    pub flush: String,
    pub slaves: usize,
}

impl Mode {
    /// `SYNC_MASTER/group/1-slave`.
    pub fn name(&self) -> String {
        format!(
            "{}/{}/{}-slave{}",
            self.role,
            self.flush,
            self.slaves,
            if self.slaves == 1 { "" } else { "s" }
        )
    }

    fn slug(&self) -> String {
        self.name().replace('/', "_")
    }
}

fn list(s: &str) -> Vec<String> {
    s.split(',')
        .map(|x| x.trim().to_string())
        .filter(|x| !x.is_empty())
        .collect()
}

/// The modes and kills a request asks for.
pub fn plan(r: &HaRequest) -> Result<(Vec<Mode>, usize)> {
    let roles = list(r.roles.as_deref().unwrap_or("ASYNC_MASTER,SYNC_MASTER"));
    let flushes =
        list(
            r.flushes
                .as_deref()
                .unwrap_or(if r.quick { "group" } else { "sync,group,async" }),
        );
    let slaves = list(
        r.slaves
            .as_deref()
            .unwrap_or(if r.quick { "1" } else { "1,2" }),
    );
    let mut modes = Vec::new();
    for role in &roles {
        if !matches!(role.as_str(), "ASYNC_MASTER" | "SYNC_MASTER") {
            bail!("--roles: {role:?} is not ASYNC_MASTER or SYNC_MASTER");
        }
        for f in &flushes {
            let _: FlushKind = f.parse().map_err(|e| anyhow!("--flushes: {f:?}: {e}"))?;
            for s in &slaves {
                let n: usize = s
                    .parse()
                    .ok()
                    .filter(|n| (1..=4).contains(n))
                    .ok_or_else(|| anyhow!("--slaves: {s:?} is not 1..4"))?;
                modes.push(Mode {
                    role: role.clone(),
                    flush: f.clone(),
                    slaves: n,
                });
            }
        }
    }
    if modes.is_empty() {
        bail!("no mode to run");
    }
    let kills = r.kills.unwrap_or(if r.quick { 3 } else { 20 });
    if kills == 0 {
        bail!("--kills must be at least 1");
    }
    Ok((modes, kills))
}

fn kill_window(r: &HaRequest) -> Result<(u64, u64)> {
    let Some(s) = &r.kill_after_ms else {
        return Ok(if r.quick { (300, 900) } else { (300, 2000) });
    };
    let (a, b) = s
        .split_once("..")
        .ok_or_else(|| anyhow!("--kill-after-ms: MIN..MAX, got {s:?}"))?;
    let (a, b): (u64, u64) = (
        a.trim()
            .parse()
            .map_err(|_| anyhow!("--kill-after-ms: {a:?}"))?,
        b.trim()
            .parse()
            .map_err(|_| anyhow!("--kill-after-ms: {b:?}"))?,
    );
    if a == 0 || b < a {
        bail!("--kill-after-ms: need 0 < MIN <= MAX, got {s:?}");
    }
    Ok((a, b))
}

/// The seed of kill `k` of mode `m`.
fn trial_seed(seed: u64, m: usize, k: usize) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ ((m as u64) << 32)
        ^ (k as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9)
}

/// `mqlab ha`.
pub fn cmd_ha(r: HaRequest) -> Result<()> {
    if r.partition {
        return cmd_partition(r);
    }
    if r.power_loss {
        return powerloss::cmd(r);
    }
    let (modes, kills) = plan(&r)?;
    let fault: Fault = r.fault.parse().map_err(|e| anyhow!("--fault: {e}"))?;
    let out = r
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("results/ha/run-{}", crate::util::timestamp())));
    std::fs::create_dir_all(&out).with_context(|| format!("create {}", out.display()))?;
    let bin = match &r.bin {
        Some(b) => b.clone(),
        None => std::env::current_exe().context("the mqlab binary")?,
    };
    let params = TrialParams {
        bin,
        kill_after_ms: kill_window(&r)?,
        inflight: r.inflight.max(1),
        queues: r.queues.max(1),
        body_bytes: r.body_bytes,
        sample_ms: r.sample_ms,
        fault,
        failover: r.failover,
        heartbeat_ms: r.heartbeat_timeout_ms.unwrap_or(1000).max(100),
        post_failover_ms: r.post_failover_ms,
    };
    let work = out.join("work");
    std::fs::create_dir_all(&work)?;
    println!(
        "mqlab ha: seed {}, {} modes x {kills} kills, kill after {}..{} ms, {}, out {}",
        r.seed,
        modes.len(),
        params.kill_after_ms.0,
        params.kill_after_ms.1,
        if r.failover {
            format!(
                "controller failover (heartbeat timeout {} ms)",
                params.heartbeat_ms
            )
        } else {
            format!("slave survivor, fault proxy {fault}")
        },
        out.display()
    );
    let started = Instant::now();
    let mut trials: Vec<Trial> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    'modes: for (mi, mode) in modes.iter().enumerate() {
        for k in 0..kills {
            if crate::util::stopped() {
                failures.push("stopped by a signal before every kill ran".into());
                break 'modes;
            }
            let seed = trial_seed(r.seed, mi, k);
            let log = if k < r.keep_ack_logs {
                out.join("acks")
                    .join(mode.slug())
                    .join(format!("kill-{k}.csv"))
            } else {
                work.join(format!("acks-{}-{k}.csv", mode.slug()))
            };
            let ran = if params.failover {
                failover::run(&params, mode, k, seed, &work, &log)
            } else {
                trial::run(&params, mode, k, seed, &work, &log)
            };
            match ran {
                Ok(t) => {
                    println!(
                        "{} kill {k} (seed {seed}) at {} ms: acked {} ({:.0}/s), lost {} (worst slave {}), lag at kill {} msgs {} B {:.1} ms, over lag {}, dup {}, out of order {}",
                        t.mode,
                        t.kill_at_ms,
                        t.acked,
                        t.msgs_per_s,
                        t.acked_lost,
                        t.acked_lost_worst_slave,
                        t.lag_at_kill_msgs,
                        t.lag_at_kill_bytes,
                        t.lag_at_kill_age_ms,
                        t.loss_over_lag,
                        t.duplicated,
                        t.out_of_order
                    );
                    if let (Some(f), Some(e)) = (t.failover_ms, t.election_ms) {
                        println!(
                            "  failover {f:.0} ms (new master in the route {e:.0} ms after the kill), {} acked by the new master, {} of them lost",
                            t.acked_after_failover, t.lost_after_failover
                        );
                    }
                    trials.push(t);
                }
                Err(e) => {
                    let msg = format!("{} kill {k} (seed {seed}): {e:#}", mode.name());
                    eprintln!("mqlab ha: {msg}");
                    failures.push(msg);
                }
            }
            if k >= r.keep_ack_logs {
                let _ = std::fs::remove_file(&log);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    let summary = report::write(&out, &r, &modes, kills, &trials, &failures, started)?;
    print!("{}", report::table(&summary));
    println!("wrote {}", out.join("summary.json").display());
    if !failures.is_empty() {
        bail!("{} kills failed to run (seed {})", failures.len(), r.seed);
    }
    Ok(())
}

/// `mqlab ha --partition`.
fn cmd_partition(r: HaRequest) -> Result<()> {
    let roles = list(r.roles.as_deref().unwrap_or("SYNC_MASTER,ASYNC_MASTER"));
    for role in &roles {
        if !matches!(role.as_str(), "ASYNC_MASTER" | "SYNC_MASTER") {
            bail!("--roles: {role:?} is not ASYNC_MASTER or SYNC_MASTER");
        }
    }
    let slaves: Vec<usize> = list(r.slaves.as_deref().unwrap_or("2,1"))
        .iter()
        .map(|s| {
            s.parse()
                .ok()
                .filter(|n| (1..=3).contains(n))
                .ok_or_else(|| anyhow!("--slaves: {s:?} is not 1..3"))
        })
        .collect::<Result<_>>()?;
    if roles.is_empty() || slaves.is_empty() {
        bail!("no role or slave count to run");
    }
    let flush = r
        .flushes
        .as_deref()
        .map(list)
        .and_then(|l| l.first().cloned())
        .unwrap_or_else(|| "group".into());
    let _: FlushKind = flush
        .parse()
        .map_err(|e| anyhow!("--flushes: {flush:?}: {e}"))?;
    let out = r.out.clone().unwrap_or_else(|| {
        PathBuf::from(format!("results/ha/partition-{}", crate::util::timestamp()))
    });
    std::fs::create_dir_all(&out).with_context(|| format!("create {}", out.display()))?;
    let bin = match &r.bin {
        Some(b) => b.clone(),
        None => std::env::current_exe().context("the mqlab binary")?,
    };
    let kinds = match r.kinds.as_deref() {
        None => None,
        Some(k) => {
            let l = list(k);
            for x in &l {
                if !partition::KINDS.contains(&x.as_str())
                    && !partition::EXTRA_KINDS.contains(&x.as_str())
                {
                    bail!("--kinds: unknown kind {x:?}");
                }
            }
            Some(l)
        }
    };
    let p = partition::PartitionParams {
        bin,
        kinds,
        heartbeat_ms: r.heartbeat_timeout_ms.unwrap_or(3000).max(100),
        catchup_ms: r.catchup_ms.max(100),
        rate: r.rate.max(1),
        inflight: r.inflight.clamp(1, 64),
        queues: r.queues.max(1),
        body_bytes: r.body_bytes,
        flush,
    };
    // (schedule index, seed, role, slaves)
    let plan: Vec<(usize, u64, String, usize)> = match r.replay {
        Some(seed) => vec![(0, seed, roles[0].clone(), slaves[0])],
        None => {
            let n = r.schedules.unwrap_or(if r.quick { 3 } else { 20 });
            if n == 0 {
                bail!("--schedules must be at least 1");
            }
            (0..n)
                .map(|i| {
                    let role = roles[i % roles.len()].clone();
                    let sl = slaves[(i / roles.len()) % slaves.len()];
                    (i, trial_seed(r.seed, 1000, i), role, sl)
                })
                .collect()
        }
    };
    let work = out.join("work");
    std::fs::create_dir_all(&work)?;
    let keep = out.join("kept");
    println!(
        "mqlab ha --partition: seed {}, {} schedules, roles {}, slaves {:?}, {} flush, controller heartbeat timeout {} ms, catch-up {} ms, {} sends/s per broker, out {}",
        r.seed,
        plan.len(),
        roles.join(","),
        slaves,
        p.flush,
        p.heartbeat_ms,
        p.catchup_ms,
        p.rate,
        out.display()
    );
    let started = Instant::now();
    let mut results = Vec::new();
    let mut failures = Vec::new();
    let mut lines = String::new();
    for (i, seed, role, sl) in &plan {
        if crate::util::stopped() {
            failures.push("stopped by a signal before every schedule ran".to_string());
            break;
        }
        let replay = format!(
            "mqlab ha --partition --replay {seed} --roles {role} --slaves {sl} --heartbeat-timeout-ms {} --catchup-ms {} --rate {}{}",
            p.heartbeat_ms,
            p.catchup_ms,
            p.rate,
            r.kinds
                .as_deref()
                .map(|k| format!(" --kinds {k}"))
                .unwrap_or_default()
        );
        match partition::run(&p, *i, *seed, role, *sl, &work, &keep) {
            Ok(t) => {
                let bad = t.dual_master_epochs > 0
                    || t.diverged > 0
                    || (role == "SYNC_MASTER" && t.acked_lost > 0);
                println!(
                    "schedule {i} {role}/{sl} (seed {seed}) {}: acked {}, lost {} ({} at older epochs), dual-master epochs {}, epochs with acks {}, final master {} at epoch {}, converged in {:.0} ms, truncations {}, diverged {}, {:.1} s{}",
                    t.kind,
                    t.acked,
                    t.acked_lost,
                    t.acked_lost_old_epochs,
                    t.dual_master_epochs,
                    t.epochs_with_acks,
                    t.final_master,
                    t.final_epoch,
                    t.converge_ms,
                    t.truncations,
                    t.diverged,
                    t.elapsed_s,
                    if bad { format!("  <-- FAILED CHECK; replay: {replay}") } else { String::new() }
                );
                println!("  {}", t.schedule);
                lines.push_str(&serde_json::to_string(&t)?);
                lines.push('\n');
                results.push(t);
            }
            Err(e) => {
                let msg =
                    format!("schedule {i} {role}/{sl} (seed {seed}): {e:#}; replay: {replay}");
                eprintln!("mqlab ha: {msg}");
                failures.push(msg);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    std::fs::write(out.join("schedules.jsonl"), lines)?;
    let summary = partition_summary(&r, &p, &roles, &results, &failures, started);
    std::fs::write(
        out.join("summary.json"),
        serde_json::to_string_pretty(&summary)?,
    )?;
    println!(
        "partition_schedules {} (of {}), partition_acked_lost_sync {}, acked lost under ASYNC_MASTER {}, dual_master_epochs {}, diverged {}, failures {}",
        summary["partition_schedules"],
        plan.len(),
        summary["partition_acked_lost_sync"],
        summary["partition_acked_lost_async"],
        summary["dual_master_epochs"],
        summary["diverged"],
        failures.len()
    );
    println!("wrote {}", out.join("summary.json").display());
    let sync_lost = summary["partition_acked_lost_sync"].as_u64().unwrap_or(0);
    let dual = summary["dual_master_epochs"].as_u64().unwrap_or(0);
    let diverged = summary["diverged"].as_u64().unwrap_or(0);
    if !failures.is_empty() || sync_lost > 0 || dual > 0 || diverged > 0 {
        bail!(
            "{} schedules failed to run, {sync_lost} SYNC_MASTER acks lost, {dual} dual-master epochs, {diverged} diverged records (seed {})",
            failures.len(),
            r.seed
        );
    }
    Ok(())
}

fn partition_summary(
    r: &HaRequest,
    p: &partition::PartitionParams,
    roles: &[String],
    res: &[partition::ScheduleResult],
    failures: &[String],
    started: Instant,
) -> serde_json::Value {
    use serde_json::json;
    let sum = |f: &dyn Fn(&partition::ScheduleResult) -> u64, role: Option<&str>| -> u64 {
        res.iter()
            .filter(|t| role.is_none_or(|x| t.role == x))
            .map(f)
            .sum()
    };
    let mut by_kind: std::collections::BTreeMap<String, serde_json::Value> = Default::default();
    for t in res {
        let k = t.kind.split('(').next().unwrap_or("").to_string();
        let e = by_kind.entry(k).or_insert_with(|| {
            json!({"schedules": 0, "kills": 0, "acked": 0, "acked_lost_sync": 0,
                   "acked_lost_async": 0, "dual_master_epochs": 0, "truncations": 0})
        });
        let add = |e: &mut serde_json::Value, key: &str, v: u64| {
            e[key] = json!(e[key].as_u64().unwrap_or(0) + v);
        };
        add(e, "schedules", 1);
        add(e, "kills", t.kills as u64);
        add(e, "acked", t.acked);
        if t.role == "SYNC_MASTER" {
            add(e, "acked_lost_sync", t.acked_lost);
        } else {
            add(e, "acked_lost_async", t.acked_lost);
        }
        add(e, "dual_master_epochs", t.dual_master_epochs);
        add(e, "truncations", t.truncations);
    }
    let mut conv: Vec<f64> = res.iter().map(|t| t.converge_ms).collect();
    conv.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| {
        if conv.is_empty() {
            0.0
        } else {
            conv[((conv.len() - 1) as f64 * q).round() as usize]
        }
    };
    json!({
        "generated_by": "mqlab ha --partition",
        "seed": r.seed,
        "replay": r.replay,
        "roles": roles,
        "flush": p.flush,
        "heartbeat_timeout_ms": p.heartbeat_ms,
        "catchup_ms": p.catchup_ms,
        "rate_per_broker": p.rate,
        "kinds": p.kinds,
        "elapsed_s": started.elapsed().as_secs_f64(),
        "partition_schedules": res.len(),
        "partition_schedules_sync": res.iter().filter(|t| t.role == "SYNC_MASTER").count(),
        "partition_acked_lost_sync": sum(&|t| t.acked_lost, Some("SYNC_MASTER")),
        "partition_acked_lost_async": sum(&|t| t.acked_lost, Some("ASYNC_MASTER")),
        "dual_master_epochs": sum(&|t| t.dual_master_epochs, None),
        "dual_master_epochs_in_log": sum(&|t| t.dual_master_epochs_in_log, None),
        "epochs_named_twice": sum(&|t| t.epochs_named_twice, None),
        "diverged": sum(&|t| t.diverged, None),
        "acked": sum(&|t| t.acked, None),
        "acked_sync": sum(&|t| t.acked, Some("SYNC_MASTER")),
        "kills": sum(&|t| t.kills as u64, None),
        "truncations": sum(&|t| t.truncations, None),
        "truncated_bytes": sum(&|t| t.truncated_bytes, None),
        "acks_after_newer_epoch": sum(&|t| t.acks_after_newer_epoch, None),
        "unattributed_lost_acks": sum(&|t| t.unattributed, None),
        "attribution_mismatch": sum(&|t| t.attribution_mismatch, None),
        "epochs_with_acks": sum(&|t| t.epochs_with_acks, None),
        "schedules_with_failover": res.iter().filter(|t| t.final_epoch > 1).count(),
        "in_sync_full_at_end": res.iter().filter(|t| t.in_sync_full).count(),
        "converge_ms": {"p50": at(0.5), "p99": at(0.99), "max": conv.last().copied().unwrap_or(0.0)},
        "by_kind": by_kind,
        "failures": failures,
    })
}
