//! One kill with controller failover (`mqlab ha --failover`): a name
//! server, a controller and the brokers as processes in controller mode
//! (the first elected master at epoch 1, the others its slaves, the load
//! starting once every slave is in the in-sync set), the producer sending
//! to the master the name server's route names; SIGKILL of the master at a
//! seeded moment; the producer looks the route up every 20 ms until it
//! names another master, and sends there. Failover time: last ack from the
//! old master to the first from the new one. Then every broker left is
//! stopped cleanly and the new master's store is checked against every
//! ack, the old master's and the new one's. (The HA links do not go
//! through the fault proxy here. They can now: a broker announces a proxy
//! in front of its HA port with `--ha-announce`, which is what
//! `mqlab ha --partition`, [`super::partition`], does.)

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use mqlab_client::tcp::pipelined::{lookup_route, DEFAULT_TOPIC};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::proc::BrokerProc;
use super::trial::{
    lag_samples, now_us, sample_then_kill, scan, sender_to, verify, write_ack_log, Ack, Current,
    Producer, Trial, TrialParams, TOPIC,
};
use super::Mode;

fn wait_for(what: &str, secs: u64, mut ok: impl FnMut() -> bool) -> Result<()> {
    let t = Instant::now();
    while !ok() {
        if t.elapsed() > Duration::from_secs(secs) {
            bail!("timed out after {secs} s waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// The master (broker id 0) the name server's route names for the topic
/// (or for TBW102 before the topic is registered).
fn route_master(ns: SocketAddr) -> Option<SocketAddr> {
    for t in [TOPIC, DEFAULT_TOPIC] {
        if let Ok(Some(r)) = lookup_route(ns, t, Duration::from_millis(500)) {
            if let Some(a) = r
                .broker_datas
                .iter()
                .find_map(|b| b.broker_addrs.get(&0))
                .and_then(|a| a.parse().ok())
            {
                return Some(a);
            }
        }
    }
    None
}

/// Runs one kill with failover; the ack log goes to `ack_log`.
pub fn run(
    p: &TrialParams,
    mode: &Mode,
    kill: usize,
    seed: u64,
    work: &Path,
    ack_log: &Path,
) -> Result<Trial> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let dir = super::trial::trial_dir(work, "mqlab-ha-fo-")?;
    let d = dir.path();
    let hb = p.heartbeat_ms.to_string();
    let ns = BrokerProc::spawn(
        &p.bin,
        d,
        "namesrv",
        &["namesrv".into(), "--listen".into(), "127.0.0.1:0".into()],
        &|l| l.contains("listening on"),
    )?;
    let ctl = BrokerProc::spawn(
        &p.bin,
        d,
        "controller",
        &[
            "controller".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--heartbeat-timeout-ms".into(),
            hb.clone(),
        ],
        &|l| l.contains("listening on"),
    )?;
    let broker = |id: usize| {
        BrokerProc::start(
            &p.bin,
            d,
            &format!("b{id}"),
            &[
                "--role".into(),
                mode.role.clone(),
                "--flush".into(),
                mode.flush.clone(),
                "--controller".into(),
                ctl.addr.to_string(),
                "--broker-id".into(),
                id.to_string(),
                "--ha-listen".into(),
                "127.0.0.1:0".into(),
                "--namesrv".into(),
                ns.addr.to_string(),
                "--controller-heartbeat-timeout-ms".into(),
                hb.clone(),
                "--ha-max-time-slave-not-catchup-ms".into(),
                "5000".into(),
            ],
        )
    };
    let mut master = broker(1)?;
    wait_for("broker 1 elected", 15, || {
        master.stderr().contains("now master at epoch 1")
    })
    .map_err(|e| anyhow!("{e}: {}", master.stderr()))?;
    let mut slaves = Vec::new();
    for i in 0..mode.slaves {
        let s = broker(i + 2)?;
        wait_for("a slave following broker 1", 15, || {
            s.stderr().contains("now slave of broker 1")
        })
        .map_err(|e| anyhow!("{e}: {}", s.stderr()))?;
        slaves.push(s);
    }
    let full = format!(
        "-> {{{}}}",
        (1..=mode.slaves + 1)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    wait_for("every slave in the in-sync set", 30, || {
        master.stderr().contains(&full)
    })
    .map_err(|e| anyhow!("{e} ({full}): {}", master.stderr()))?;
    wait_for("the route naming broker 1", 15, || {
        route_master(ns.addr) == Some(master.addr)
    })?;

    // The producer sends through whichever sender is current (none
    // between the kill and the new master).
    let current: Arc<RwLock<Option<Current>>> =
        Arc::new(RwLock::new(Some((sender_to(master.addr, p)?, 0))));
    let t0 = Instant::now();
    let mut producer = {
        let current = current.clone();
        Producer::start("ha-producer", p, t0, move || {
            current.read().unwrap_or_else(|e| e.into_inner()).clone()
        })?
    };

    let (raw, final_slaves, kill_at_ms, killed_us) =
        sample_then_kill(&mut master, &slaves, p, t0, &mut rng)?;
    let old = current.write().unwrap_or_else(|e| e.into_inner()).take();

    // The client's side of the failover: the route, every 20 ms.
    let t = Instant::now();
    let new_addr = loop {
        if let Some(a) = route_master(ns.addr).filter(|a| *a != master.addr) {
            break a;
        }
        if t.elapsed() > Duration::from_secs(30) {
            let _ = producer.stop();
            bail!(
                "no new master in the route 30 s after the kill: {}",
                slaves
                    .iter()
                    .map(|s| s.stderr())
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let election_ms = (now_us(t0) - killed_us) as f64 / 1000.0;
    let elected = slaves
        .iter()
        .position(|s| s.addr == new_addr)
        .ok_or_else(|| anyhow!("the route names {new_addr}, none of the slaves"))?;
    if let Some((s, _)) = &old {
        s.close();
    }
    *current.write().unwrap_or_else(|e| e.into_inner()) = Some((sender_to(new_addr, p)?, 1));
    let first_new = || {
        producer
            .acks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|a| a.epoch == 1)
    };
    let got_new = wait_for("an ack from the new master", 15, first_new).is_ok();
    std::thread::sleep(Duration::from_millis(p.post_failover_ms));
    let sent = producer.stop()?;
    if let Some((s, _)) = current.write().unwrap_or_else(|e| e.into_inner()).take() {
        s.wait_idle(Duration::from_secs(10));
        s.close();
    }
    if !got_new {
        bail!(
            "the new master {new_addr} acknowledged nothing: {}",
            slaves[elected].stderr()
        );
    }

    for s in slaves.drain(..) {
        let name = s.name.clone();
        s.stop().with_context(|| format!("stop {name}"))?;
    }
    let _ = ctl.stop();
    let _ = ns.stop();

    let acks = producer.take_acks();
    write_ack_log(ack_log, &acks)?;
    let new_dir: PathBuf = d.join(format!("b{}", elected + 2));
    let (missing, ok) = verify(&p.bin, &new_dir, ack_log)?;
    let sc = scan(&new_dir)?;
    let lost_old = acks
        .iter()
        .filter(|a| a.epoch == 0 && !sc.keys.contains(&a.seq))
        .count() as u64;
    let lost_new = acks
        .iter()
        .filter(|a| a.epoch == 1 && !sc.keys.contains(&a.seq))
        .count() as u64;
    // What the elected slave had reported written just before the kill.
    let had = final_slaves.get(elected).copied().unwrap_or(0);
    let old_acks: Vec<&Ack> = acks.iter().filter(|a| a.epoch == 0).collect();
    let loss_over_lag = old_acks
        .iter()
        .filter(|a| !sc.keys.contains(&a.seq) && a.phys < had)
        .count() as u64;
    let rec = sc.record_size.unwrap_or(0);
    let past: Vec<&&Ack> = old_acks.iter().filter(|a| a.phys >= had).collect();
    let last_old = old_acks.iter().map(|a| a.at_us).max().unwrap_or(killed_us);
    let first_new_us = acks
        .iter()
        .filter(|a| a.epoch == 1)
        .map(|a| a.at_us)
        .min()
        .unwrap_or(last_old);
    let old_owned: Vec<Ack> = old_acks.iter().map(|a| (*a).clone()).collect();
    let lag = lag_samples(&raw, &old_owned);
    let acked_old = old_acks.len() as u64;
    Ok(Trial {
        mode: mode.name(),
        kill,
        seed,
        kill_at_ms,
        sent,
        acked: acked_old,
        send_errors: producer.errors(),
        msgs_per_s: acked_old as f64 / (killed_us.max(1) as f64 / 1e6),
        acked_lost: lost_old,
        acked_lost_worst_slave: lost_old,
        verify_missing: vec![missing],
        verify_ok: vec![ok],
        duplicated: sc.duplicated,
        out_of_order: sc.out_of_order,
        send_order_inversions: sc.inversions,
        lag_at_kill_msgs: past.len() as u64,
        lag_at_kill_bytes: past
            .iter()
            .map(|a| a.phys + rec)
            .max()
            .map_or(0, |end| end.saturating_sub(had)),
        lag_at_kill_age_ms: past
            .iter()
            .map(|a| a.at_us)
            .min()
            .map_or(0.0, |t| killed_us.saturating_sub(t) as f64 / 1000.0),
        loss_over_lag,
        samples: lag.len(),
        max_lag_msgs: lag.iter().map(|s| s.lag_msgs).max().unwrap_or(0),
        slave_end: vec![sc.end],
        failover_ms: Some(first_new_us.saturating_sub(last_old) as f64 / 1000.0),
        election_ms: Some(election_ms),
        acked_after_failover: acks.len() as u64 - acked_old,
        lost_after_failover: lost_new,
        lag,
    })
}
