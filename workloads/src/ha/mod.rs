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

mod failover;
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
        --quick (CI): ASYNC_MASTER and SYNC_MASTER, group flush, 1 slave, 3 kills each."
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
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub heartbeat_timeout_ms: u64,
    /// With --failover: load kept on the new master after its first
    /// ack, ms.
    #[arg(long, value_name = "MS", default_value_t = 300)]
    pub post_failover_ms: u64,
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
        heartbeat_ms: r.heartbeat_timeout_ms.max(100),
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
