//! `mqlab ha --power-loss` and `mqlab powerloss` (issue 14): a power loss
//! of the master's disk, and of every replica's disk at the same instant.
//!
//! A broker is a separate process, so the in-process `sim` backend cannot
//! outlive its SIGKILL. Every broker of a kill runs with power-loss marks
//! (`mqlab broker --power-loss-marks`: the store records, per file, what
//! a sync made durable; `mqlab_engine::io::powerloss`). At the seeded
//! moment the master (`--power-loss-of master`), or the master and every
//! slave (`all`), is SIGKILLed right after one last sample of its offsets
//! (the master's flushed offset: the window is the acknowledged messages
//! past it); the power loss is then applied to each killed store
//! (`io::powerloss::apply`: unsynced appended bytes zeroed, in-place files
//! back to their last synced copy); slaves that were not killed are
//! stopped cleanly. Every replica's directory is then checked as it
//! would recover (`mqlab verify --acked` and a scan, both recovering in
//! memory), and the survivor is the replica with the longest recovered
//! log (every replica's log is a prefix of the master's, so it holds
//! whatever any other holds).
//!
//! Counted per kill: `acked_lost` on the survivor, `acked_lost_master` on
//! the power-lost master, `window_at_kill_msgs` (acknowledged messages at
//! or past the master's flushed offset at the last sample: what a power
//! loss may take from the master), `loss_over_window` (messages lost from
//! the survivor although they lay below the master's flushed offset: must
//! be 0), `master_loss_over_window` (the same on the master's own disk:
//! must be 0), `loss_over_lag` (master variant: lost although the best
//! slave had reported them written).
//!
//! Expected: SYNC_MASTER with a surviving slave loses nothing, whatever
//! the flush; all replicas powered off together lose nothing under sync
//! and group flush (the master's own disk has every acknowledged
//! message), and under async flush at most the master's window.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use mqlab_engine::io::powerloss::{self, PowerLossReport};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::proc::{offsets, Offsets};
use super::trial::{
    now_us, scan, sender_to, start_group, verify, write_ack_log, Ack, Group, Producer, TrialParams,
};
use super::{HaRequest, Mode};
use crate::faultproxy::Fault;

/// `mqlab powerloss`'s options.
#[derive(Debug, Clone, clap::Args)]
pub struct PowerLossRequest {
    /// Store directory of a killed store that ran with power-loss marks
    /// (`mqlab broker --power-loss-marks`); its files are rewritten.
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `mqlab powerloss --data-dir DIR`: rewrites a killed store's files to
/// what a power loss at the moment it stopped could have left, and says
/// per file what was dropped. Normal recovery opens it afterwards.
pub fn cmd_powerloss(r: PowerLossRequest) -> Result<()> {
    // Not while a writer runs (the lock is released by the kill).
    let _lock = mqlab_engine::lock::lock_exclusive(&r.data_dir).map_err(|e| {
        anyhow!(
            "{}: {e} (stop or kill the store first)",
            r.data_dir.display()
        )
    })?;
    let rep = powerloss::apply(&r.data_dir)
        .with_context(|| format!("apply a power loss to {}", r.data_dir.display()))?;
    if r.json {
        println!("{}", serde_json::to_string_pretty(&rep)?);
        return Ok(());
    }
    print!("{}", report_text(&rep));
    Ok(())
}

fn report_text(rep: &PowerLossReport) -> String {
    let mut s = format!(
        "power loss applied: {} marks ({} unreadable, ignored), {} files, {} changed, {} non-zero bytes dropped\n",
        rep.marks,
        rep.bad_lines,
        rep.files.len(),
        rep.files_changed,
        rep.bytes_dropped
    );
    for f in &rep.files {
        s.push_str(&format!(
            "  {:<48} {:<8} {:>10} B dropped  {}\n",
            f.file,
            format!("{:?}", f.kind).to_lowercase(),
            f.bytes_dropped,
            f.action
        ));
    }
    s
}

/// Which brokers lose power at the kill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PowerOff {
    /// The master only; the slaves stay up (stopped cleanly after).
    Master,
    /// The master and every slave at the same instant.
    All,
}

impl PowerOff {
    fn name(self) -> &'static str {
        match self {
            PowerOff::Master => "master",
            PowerOff::All => "all",
        }
    }
}

/// What one power-loss kill found.
#[derive(Debug, Clone, Serialize)]
pub struct PlTrial {
    pub mode: String,
    pub power_off: PowerOff,
    pub kill: usize,
    pub seed: u64,
    pub kill_at_ms: u64,
    pub sent: u64,
    pub acked: u64,
    pub send_errors: u64,
    pub msgs_per_s: f64,
    /// Acknowledged messages missing on the survivor (the replica with
    /// the longest recovered log).
    pub acked_lost: u64,
    /// "master" or "slaveN".
    pub survivor: String,
    /// ... on the power-lost master's own disk.
    pub acked_lost_master: u64,
    /// ... per slave (1, 2, ...).
    pub acked_lost_slaves: Vec<u64>,
    /// The master's offsets at the last sample before the kill.
    pub master_at_kill: [u64; 3],
    /// Acknowledged messages at or past the master's flushed offset then:
    /// the power-loss window of the master (async flush; 0 under sync and
    /// group).
    pub window_at_kill_msgs: u64,
    pub window_at_kill_bytes: u64,
    /// Lost on the survivor although below the master's flushed offset.
    pub loss_over_window: u64,
    /// Lost on the master's disk although below its flushed offset.
    pub master_loss_over_window: u64,
    /// Acknowledged messages past the best slave's written offset at the
    /// last sample (the replication lag).
    pub lag_at_kill_msgs: u64,
    /// Master variant: lost on the survivor although the best slave had
    /// reported them written at the last sample.
    pub loss_over_lag: u64,
    /// Non-zero bytes the power loss dropped, per killed store (master
    /// first).
    pub bytes_dropped: Vec<u64>,
    /// `mqlab verify --acked` per replica (master first): verdict (false
    /// wherever an acknowledged message is missing, as on a slave behind).
    pub verify_ok: Vec<bool>,
    /// ... acknowledged lines it found missing or unreachable (through
    /// the queue or the key).
    pub verify_missing: Vec<u64>,
    /// Acknowledged messages in a replica's log that `mqlab verify` could
    /// not reach through their queue or key, summed over the replicas
    /// (verify's missing minus the scan's): must be 0.
    pub unreachable: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
    pub ends: Vec<u64>,
}

struct Replica {
    name: String,
    dir: PathBuf,
}

/// Runs one kill with power loss in a fresh directory under `work`.
pub fn run(
    p: &TrialParams,
    mode: &Mode,
    power_off: PowerOff,
    kill: usize,
    seed: u64,
    work: &Path,
    ack_log: &Path,
) -> Result<PlTrial> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let dir = super::trial::trial_dir(work, "mqlab-ha-pl-")?;
    let Group {
        mut master,
        mut slaves,
        proxies,
    } = start_group(p, mode, seed, dir.path(), &["--power-loss-marks".into()])?;

    let sender = sender_to(master.addr, p).map_err(|e| anyhow!("connect to the master: {e}"))?;
    let t0 = Instant::now();
    let mut producer = {
        let sender = sender.clone();
        Producer::start("ha-pl-producer", p, t0, move || Some((sender.clone(), 0)))?
    };

    // Wait for the seeded moment, take the last sample, kill at once.
    let (lo, hi) = p.kill_after_ms;
    let kill_at_ms = rng.random_range(lo..=hi.max(lo));
    let wake = t0 + Duration::from_millis(kill_at_ms);
    while Instant::now() < wake {
        std::thread::sleep(Duration::from_millis(2).min(wake - Instant::now()));
    }
    let slave_at_kill: Vec<Offsets> = slaves
        .iter()
        .map(|s| offsets(s.metrics()).unwrap_or_default())
        .collect();
    let m_at = offsets(master.metrics()).context("the master's offsets at the kill")?;
    master.kill9();
    if power_off == PowerOff::All {
        for s in &mut slaves {
            s.kill9();
        }
    }
    let killed_us = now_us(t0);
    let sent = producer.stop()?;
    sender.wait_idle(Duration::from_secs(10));
    sender.close();
    if power_off == PowerOff::Master {
        for s in slaves.drain(..) {
            let name = s.name.clone();
            s.stop().with_context(|| format!("stop {name}"))?;
        }
    }
    drop(slaves);
    for px in proxies {
        px.stop();
    }
    let acks = producer.take_acks();
    write_ack_log(ack_log, &acks)?;

    // The power loss, on every killed store.
    let mut replicas = vec![Replica {
        name: "master".into(),
        dir: dir.path().join("master"),
    }];
    for i in 0..mode.slaves {
        replicas.push(Replica {
            name: format!("slave{}", i + 1),
            dir: dir.path().join(format!("slave{}", i + 1)),
        });
    }
    let killed = match power_off {
        PowerOff::Master => 1,
        PowerOff::All => replicas.len(),
    };
    let mut bytes_dropped = Vec::new();
    for r in &replicas[..killed] {
        let rep = powerloss::apply(&r.dir).with_context(|| format!("power loss of {}", r.name))?;
        bytes_dropped.push(
            rep.files
                .iter()
                .filter(|f| f.file.starts_with("commitlog/"))
                .map(|f| f.bytes_dropped)
                .sum(),
        );
    }

    // Each replica as it recovers.
    let mut verify_ok = Vec::new();
    let mut verify_missing = Vec::new();
    let mut scans = Vec::new();
    for r in &replicas {
        let (missing, ok) = verify(&p.bin, &r.dir, ack_log)?;
        verify_ok.push(ok);
        verify_missing.push(missing);
        scans.push(scan(&r.dir).with_context(|| format!("scan {}", r.name))?);
    }
    let lost_on = |i: usize| {
        acks.iter()
            .filter(|a| !scans[i].keys.contains(&a.seq))
            .collect::<Vec<_>>()
    };
    let unreachable = (0..scans.len())
        .map(|i| verify_missing[i].saturating_sub(lost_on(i).len() as u64))
        .sum();
    let best = (0..scans.len()).max_by_key(|&i| scans[i].end).unwrap_or(0);
    let lost_best = lost_on(best);
    let lost_master = lost_on(0);
    let flushed = m_at.flushed;
    let window: Vec<&Ack> = acks.iter().filter(|a| a.phys >= flushed).collect();
    let rec = scans.iter().find_map(|s| s.record_size).unwrap_or(0);
    let best_slave_written = slave_at_kill.iter().map(|o| o.written).max().unwrap_or(0);
    let acked = acks.len() as u64;
    Ok(PlTrial {
        mode: mode.name(),
        power_off,
        kill,
        seed,
        kill_at_ms,
        sent,
        acked,
        send_errors: producer.errors(),
        msgs_per_s: acked as f64 / (killed_us.max(1) as f64 / 1e6),
        acked_lost: lost_best.len() as u64,
        survivor: replicas[best].name.clone(),
        acked_lost_master: lost_master.len() as u64,
        acked_lost_slaves: (1..replicas.len())
            .map(|i| lost_on(i).len() as u64)
            .collect(),
        master_at_kill: [m_at.written, m_at.committed, m_at.flushed],
        window_at_kill_msgs: window.len() as u64,
        window_at_kill_bytes: window
            .iter()
            .map(|a| a.phys + rec)
            .max()
            .map_or(0, |end| end.saturating_sub(flushed)),
        loss_over_window: lost_best.iter().filter(|a| a.phys < flushed).count() as u64,
        master_loss_over_window: lost_master.iter().filter(|a| a.phys < flushed).count() as u64,
        lag_at_kill_msgs: acks.iter().filter(|a| a.phys >= best_slave_written).count() as u64,
        loss_over_lag: if power_off == PowerOff::Master {
            lost_best
                .iter()
                .filter(|a| a.phys < best_slave_written)
                .count() as u64
        } else {
            0
        },
        bytes_dropped,
        verify_ok,
        verify_missing,
        unreachable,
        duplicated: scans[best].duplicated,
        out_of_order: scans[best].out_of_order,
        ends: scans.iter().map(|s| s.end).collect(),
    })
}

fn pcts(v: &[f64]) -> serde_json::Value {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| {
        if v.is_empty() {
            0.0
        } else {
            v[((v.len() - 1) as f64 * q).round() as usize]
        }
    };
    serde_json::json!({"p50": at(0.5), "p99": at(0.99), "max": v.last().copied().unwrap_or(0.0)})
}

/// The variants a request asks for.
fn variants(r: &HaRequest) -> Result<Vec<PowerOff>> {
    let mut out = Vec::new();
    for v in super::list(r.power_loss_of.as_deref().unwrap_or("master,all")) {
        out.push(match v.as_str() {
            "master" => PowerOff::Master,
            "all" => PowerOff::All,
            o => bail!("--power-loss-of: {o:?} is not master or all"),
        });
    }
    if out.is_empty() {
        bail!("--power-loss-of: nothing to run");
    }
    Ok(out)
}

/// `mqlab ha --power-loss`.
pub fn cmd(r: HaRequest) -> Result<()> {
    let (modes, kills) = super::plan(&r)?;
    let power_offs = variants(&r)?;
    let fault: Fault = r.fault.parse().map_err(|e| anyhow!("--fault: {e}"))?;
    let out = r.out.clone().unwrap_or_else(|| {
        PathBuf::from(format!(
            "results/ha/power-loss-{}",
            crate::util::timestamp()
        ))
    });
    std::fs::create_dir_all(&out).with_context(|| format!("create {}", out.display()))?;
    let bin = match &r.bin {
        Some(b) => b.clone(),
        None => std::env::current_exe().context("the mqlab binary")?,
    };
    let params = TrialParams {
        bin,
        kill_after_ms: super::kill_window(&r)?,
        inflight: r.inflight.max(1),
        queues: r.queues.max(1),
        body_bytes: r.body_bytes,
        sample_ms: r.sample_ms,
        fault,
        failover: false,
        heartbeat_ms: 1000,
        post_failover_ms: 0,
    };
    let work = out.join("work");
    std::fs::create_dir_all(&work)?;
    println!(
        "mqlab ha --power-loss: seed {}, {} modes x {:?} x {kills} kills, kill after {}..{} ms, fault proxy {fault}, out {}",
        r.seed,
        modes.len(),
        power_offs.iter().map(|v| v.name()).collect::<Vec<_>>(),
        params.kill_after_ms.0,
        params.kill_after_ms.1,
        out.display()
    );
    let started = Instant::now();
    let mut trials: Vec<PlTrial> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    'all: for (vi, po) in power_offs.iter().enumerate() {
        for (mi, mode) in modes.iter().enumerate() {
            for k in 0..kills {
                if crate::util::stopped() {
                    failures.push("stopped by a signal before every kill ran".into());
                    break 'all;
                }
                let seed = super::trial_seed(r.seed, mi + 100 * (vi + 1), k);
                let slug = format!("{}_{}", mode.slug(), po.name());
                let log = if k < r.keep_ack_logs {
                    out.join("acks").join(&slug).join(format!("kill-{k}.csv"))
                } else {
                    work.join(format!("acks-{slug}-{k}.csv"))
                };
                match run(&params, mode, *po, k, seed, &work, &log) {
                    Ok(t) => {
                        println!(
                            "{} power-off {} kill {k} (seed {seed}) at {} ms: acked {} ({:.0}/s), lost {} on the survivor ({}), {} on the master's disk, window at kill {} msgs, over window {} (master {}), lag {} msgs, over lag {}, dropped {:?} B",
                            t.mode,
                            po.name(),
                            t.kill_at_ms,
                            t.acked,
                            t.msgs_per_s,
                            t.acked_lost,
                            t.survivor,
                            t.acked_lost_master,
                            t.window_at_kill_msgs,
                            t.loss_over_window,
                            t.master_loss_over_window,
                            t.lag_at_kill_msgs,
                            t.loss_over_lag,
                            t.bytes_dropped
                        );
                        trials.push(t);
                    }
                    Err(e) => {
                        let msg = format!(
                            "{} power-off {} kill {k} (seed {seed}): {e:#}",
                            mode.name(),
                            po.name()
                        );
                        eprintln!("mqlab ha: {msg}");
                        failures.push(msg);
                    }
                }
                if k >= r.keep_ack_logs {
                    let _ = std::fs::remove_file(&log);
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    let summary = summarize(&r, &modes, &power_offs, kills, &trials, &failures, started);
    std::fs::write(
        out.join("summary.json"),
        serde_json::to_string_pretty(&summary)?,
    )?;
    let mut lines = String::new();
    for t in &trials {
        lines.push_str(&serde_json::to_string(t)?);
        lines.push('\n');
    }
    std::fs::write(out.join("trials.jsonl"), lines)?;
    print!("{}", table(&summary));
    println!("wrote {}", out.join("summary.json").display());
    let bad = summary["violations"].as_u64().unwrap_or(0);
    if !failures.is_empty() || bad > 0 {
        bail!(
            "{} kills failed to run, {bad} kills broke an expectation (seed {})",
            failures.len(),
            r.seed
        );
    }
    Ok(())
}

/// True when a kill broke what the module documentation expects.
pub fn violates(t: &PlTrial, role: &str, flush: &str) -> bool {
    let durable_flush = flush == "sync" || flush == "group";
    let survivor_must_have_all = match t.power_off {
        // A surviving slave has what a SYNC_MASTER acknowledged.
        PowerOff::Master => role == "SYNC_MASTER",
        // The master's disk has what sync and group flush acknowledged.
        PowerOff::All => durable_flush,
    };
    t.loss_over_window > 0
        || t.master_loss_over_window > 0
        || t.unreachable > 0
        || t.loss_over_lag > 0
        || (durable_flush && t.acked_lost_master > 0)
        || (survivor_must_have_all && t.acked_lost > 0)
}

fn summarize(
    r: &HaRequest,
    modes: &[Mode],
    power_offs: &[PowerOff],
    kills: usize,
    trials: &[PlTrial],
    failures: &[String],
    started: Instant,
) -> serde_json::Value {
    use serde_json::json;
    let mut out = Vec::new();
    let mut violations = 0u64;
    for po in power_offs {
        for m in modes {
            let ts: Vec<&PlTrial> = trials
                .iter()
                .filter(|t| t.power_off == *po && t.mode == m.name())
                .collect();
            let f =
                |g: &dyn Fn(&PlTrial) -> f64| pcts(&ts.iter().map(|t| g(t)).collect::<Vec<_>>());
            let sum = |g: &dyn Fn(&PlTrial) -> u64| ts.iter().map(|t| g(t)).sum::<u64>();
            let bad: Vec<u64> = ts
                .iter()
                .filter(|t| violates(t, &m.role, &m.flush))
                .map(|t| t.seed)
                .collect();
            violations += bad.len() as u64;
            let mut survivors: BTreeMap<String, usize> = BTreeMap::new();
            for t in &ts {
                *survivors.entry(t.survivor.clone()).or_default() += 1;
            }
            out.push(json!({
                "name": format!("{} power-off:{}", m.name(), po.name()),
                "role": m.role,
                "flush": m.flush,
                "slaves": m.slaves,
                "power_loss": true,
                "power_off": po,
                "failovers": ts.len(),
                "acked": sum(&|t| t.acked),
                "acked_lost": sum(&|t| t.acked_lost),
                "kills_with_loss": ts.iter().filter(|t| t.acked_lost > 0).count(),
                "acked_lost_per_kill": f(&|t| t.acked_lost as f64),
                "acked_lost_master": sum(&|t| t.acked_lost_master),
                "acked_lost_master_per_kill": f(&|t| t.acked_lost_master as f64),
                "window_at_kill_msgs": f(&|t| t.window_at_kill_msgs as f64),
                "window_at_kill_bytes": f(&|t| t.window_at_kill_bytes as f64),
                "loss_over_window": sum(&|t| t.loss_over_window),
                "master_loss_over_window": sum(&|t| t.master_loss_over_window),
                "lag_at_kill_msgs": f(&|t| t.lag_at_kill_msgs as f64),
                "loss_over_lag": sum(&|t| t.loss_over_lag),
                "bytes_dropped_master": f(&|t| t.bytes_dropped.first().copied().unwrap_or(0) as f64),
                "survivors": survivors,
                "duplicated": sum(&|t| t.duplicated),
                "out_of_order": sum(&|t| t.out_of_order),
                "msgs_per_s": f(&|t| t.msgs_per_s),
                "send_errors": sum(&|t| t.send_errors),
                "verify_failed_runs": ts.iter().filter(|t| t.verify_ok.iter().any(|ok| !ok)).count(),
                "unreachable": sum(&|t| t.unreachable),
                "violations": bad,
            }));
        }
    }
    json!({
        "generated_by": "mqlab ha --power-loss",
        "seed": r.seed,
        "kills_per_mode": kills,
        "fault": r.fault,
        "kill_after_ms": r.kill_after_ms,
        "inflight": r.inflight,
        "queues": r.queues,
        "body_bytes": r.body_bytes,
        "power_loss": true,
        "elapsed_s": started.elapsed().as_secs_f64(),
        "survivor": "the replica with the longest log after the power loss and recovery (master or a slave)",
        "modes": out,
        "violations": violations,
        "failures": failures,
    })
}

/// The summary as a Markdown table.
pub fn table(s: &serde_json::Value) -> String {
    let mut t = String::from(
        "| mode | power off | kills | acked | lost (survivor) | kills with loss | lost per kill p50 / max | lost on master's disk | window at kill msgs p50 / max | loss over window | loss over lag | dropped from master p50 B | survivors | msgs/s p50 |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let empty = Vec::new();
    for m in s["modes"].as_array().unwrap_or(&empty) {
        let n = |k: &str| m[k].as_u64().unwrap_or(0);
        let p = |k: &str, q: &str| m[k][q].as_f64().unwrap_or(0.0);
        let name = m["name"].as_str().unwrap_or("");
        t.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {:.0} / {:.0} | {} | {:.0} / {:.0} | {} | {} | {:.0} | {} | {:.0} |\n",
            name.split(' ').next().unwrap_or(name),
            m["power_off"].as_str().unwrap_or(""),
            n("failovers"),
            crate::util::thousands(n("acked") as f64),
            n("acked_lost"),
            n("kills_with_loss"),
            p("acked_lost_per_kill", "p50"),
            p("acked_lost_per_kill", "max"),
            n("acked_lost_master"),
            p("window_at_kill_msgs", "p50"),
            p("window_at_kill_msgs", "max"),
            n("loss_over_window") + n("master_loss_over_window"),
            n("loss_over_lag"),
            p("bytes_dropped_master", "p50"),
            m["survivors"].to_string().replace('"', ""),
            p("msgs_per_s", "p50"),
        ));
    }
    t
}
