//! One kill: a master and its slaves (processes, each slave's HA link
//! through a fault proxy), a producer load from this process, the
//! replication lag sampled live, SIGKILL of the master at a seeded moment,
//! the slaves stopped cleanly, `mqlab verify --acked` on each slave, and a
//! scan of each slave's store for duplicates and order.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use mqlab_client::tcp::pipelined::{PipelinedConfig, PipelinedSender};
use mqlab_engine::Message;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::proc::{offsets, BrokerProc};
use super::Mode;
use crate::faultproxy::{Fault, FaultProxy};
use crate::verify::CLIENT_ACK_LOG_HEADER;

pub const TOPIC: &str = "HaTopic";

/// Settings shared by every kill.
#[derive(Debug, Clone)]
pub struct TrialParams {
    pub bin: PathBuf,
    pub kill_after_ms: (u64, u64),
    pub inflight: usize,
    pub queues: u32,
    pub body_bytes: usize,
    pub sample_ms: u64,
    pub fault: Fault,
    /// Controller failover (a name server, a controller, brokers in
    /// controller mode) instead of a survivor slave.
    pub failover: bool,
    /// The controller's heartbeat timeout, ms (with `failover`).
    pub heartbeat_ms: u64,
    /// Load on the new master after its first ack, ms.
    pub post_failover_ms: u64,
}

/// One acknowledged send.
#[derive(Debug, Clone)]
pub(super) struct Ack {
    pub(super) seq: u64,
    pub(super) queue_id: u32,
    pub(super) queue_offset: u64,
    pub(super) msg_id: String,
    pub(super) phys: u64,
    pub(super) at_us: u64,
    /// 0: acknowledged by the first master, 1: by the one elected after
    /// the kill.
    pub(super) epoch: u8,
}

/// A lag sample: master's offsets and each slave's written offset.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub t_ms: f64,
    pub master_committed: u64,
    pub slave_written: Vec<u64>,
    /// Bytes the master has committed that the best slave has not.
    pub lag_bytes: u64,
    /// Messages acknowledged by then that the best slave does not have.
    pub lag_msgs: u64,
    /// Age of the oldest of those, ms (0 when none).
    pub lag_age_ms: f64,
}

/// A sample as taken: µs since the load began, the master's committed
/// offset, each slave's written offset.
pub(super) type RawSample = (u64, u64, Vec<u64>);

/// What one kill found.
#[derive(Debug, Clone, Serialize)]
pub struct Trial {
    pub mode: String,
    pub kill: usize,
    pub seed: u64,
    pub kill_at_ms: u64,
    pub sent: u64,
    pub acked: u64,
    pub send_errors: u64,
    pub msgs_per_s: f64,
    /// Acknowledged messages missing on the best slave (the one an
    /// election would pick: the longest log).
    pub acked_lost: u64,
    /// ... on the worst slave.
    pub acked_lost_worst_slave: u64,
    /// `mqlab verify --acked` per slave: missing lines and verdict.
    pub verify_missing: Vec<u64>,
    pub verify_ok: Vec<bool>,
    /// Messages of the topic stored twice on the best slave.
    pub duplicated: u64,
    /// Per queue on the best slave, queue offsets that do not follow the
    /// one before in the log.
    pub out_of_order: u64,
    /// Per queue, a producer sequence below an earlier one (concurrent
    /// async sends; informational).
    pub send_order_inversions: u64,
    /// The lag sampled just before the kill: acknowledged messages (by the
    /// end) past the best slave's written offset at that sample.
    pub lag_at_kill_msgs: u64,
    pub lag_at_kill_bytes: u64,
    pub lag_at_kill_age_ms: f64,
    /// Lost messages the best slave had reported written at that sample.
    pub loss_over_lag: u64,
    pub samples: usize,
    pub max_lag_msgs: u64,
    /// With --failover: last ack from the old master to the first from
    /// the new one, ms.
    pub failover_ms: Option<f64>,
    /// With --failover: SIGKILL to the new master in the route, ms.
    pub election_ms: Option<f64>,
    /// With --failover: sends the new master acknowledged, and how many
    /// of them its log lacks at the end (must be 0).
    pub acked_after_failover: u64,
    pub lost_after_failover: u64,
    pub slave_end: Vec<u64>,
    #[serde(skip)]
    pub lag: Vec<Sample>,
}

/// mqlab's pipelined sender to a broker as the experiment's producers use
/// it: one connection, `inflight` sends in flight, `queues` queues for a
/// topic it creates.
pub(super) fn pipelined_sender(
    addr: std::net::SocketAddr,
    group: &str,
    inflight: usize,
    queues: usize,
) -> Result<Arc<PipelinedSender>> {
    PipelinedSender::connect(
        addr,
        PipelinedConfig {
            producer_group: group.into(),
            connections: 1,
            max_in_flight: inflight,
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            default_topic_queue_nums: queues as i32,
        },
    )
    .map(Arc::new)
    .map_err(|e| anyhow!("connect to {addr}: {e}"))
}

/// A trial's sender ([`pipelined_sender`] with the trial's settings).
pub(super) fn sender_to(
    addr: std::net::SocketAddr,
    p: &TrialParams,
) -> Result<Arc<PipelinedSender>> {
    pipelined_sender(addr, "HaProducer", p.inflight, p.queues as usize)
}

/// The sender a producer uses now and the number its acks are tagged
/// with (a failover trial: 0 the first master, 1 the elected one).
pub(super) type Current = (Arc<PipelinedSender>, u8);

/// A trial's producer: one thread sending keyed messages of
/// `p.body_bytes` round-robin over `p.queues` queues through whichever
/// sender `current` names (none: it waits), every SEND_OK recorded as an
/// [`Ack`] (time since `t0`, tagged with the sender's number), every other
/// answer counted in `errors`.
pub(super) struct Producer {
    pub acks: Arc<Mutex<Vec<Ack>>>,
    pub errors: Arc<std::sync::atomic::AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Drop for Producer {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

impl Producer {
    pub(super) fn start(
        name: &str,
        p: &TrialParams,
        t0: Instant,
        current: impl Fn() -> Option<Current> + Send + 'static,
    ) -> Result<Producer> {
        let acks: Arc<Mutex<Vec<Ack>>> = Arc::new(Mutex::new(Vec::with_capacity(1 << 16)));
        let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, e, st) = (acks.clone(), errors.clone(), stop.clone());
        let body = vec![b'h'; p.body_bytes];
        let queues = p.queues.max(1) as u64;
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let mut seq = 0u64;
                while !st.load(Ordering::Acquire) {
                    let Some((sender, tag)) = current() else {
                        std::thread::sleep(Duration::from_millis(1));
                        continue;
                    };
                    let msg = Message::new(TOPIC, body.clone())
                        .with_queue((seq % queues) as u32)
                        .with_keys(key(seq));
                    let (acks, errors) = (a.clone(), e.clone());
                    let s = seq;
                    sender.send(&msg, move |r| match r.result {
                        Ok(sent) if sent.is_ok() => {
                            let at_us = now_us(t0);
                            let phys = sent.phys_offset().unwrap_or(u64::MAX);
                            acks.lock().unwrap_or_else(|e| e.into_inner()).push(Ack {
                                seq: s,
                                queue_id: sent.queue_id,
                                queue_offset: sent.queue_offset,
                                msg_id: sent.msg_id,
                                phys,
                                at_us,
                                epoch: tag,
                            });
                        }
                        _ => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    });
                    seq += 1;
                }
                seq
            })?;
        Ok(Producer {
            acks,
            errors,
            stop,
            thread: Some(thread),
        })
    }

    /// Stops sending; how many messages were sent (0 when stopped
    /// already).
    pub(super) fn stop(&mut self) -> Result<u64> {
        self.stop.store(true, Ordering::Release);
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| anyhow!("the producer thread panicked")),
            None => Ok(0),
        }
    }

    /// Send failures so far.
    pub(super) fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// The acks so far, taken, in the order they arrived.
    pub(super) fn take_acks(&self) -> Vec<Ack> {
        let mut acks = std::mem::take(&mut *self.acks.lock().unwrap_or_else(|e| e.into_inner()));
        acks.sort_by_key(|a| a.at_us);
        acks
    }
}

pub(super) fn now_us(t0: Instant) -> u64 {
    t0.elapsed().as_micros() as u64
}

pub(super) fn key(seq: u64) -> String {
    format!("k{seq}")
}

/// A master `mqlab broker` and its slaves, each slave's HA link through
/// a seeded fault proxy, every slave connected.
pub(super) struct Group {
    pub master: BrokerProc,
    pub slaves: Vec<BrokerProc>,
    pub proxies: Vec<FaultProxy>,
}

/// Starts `mode`'s group in `dir` (`extra` flags for every broker), and
/// waits (10 s at most) until every slave is connected through its proxy.
pub(super) fn start_group(
    p: &TrialParams,
    mode: &Mode,
    seed: u64,
    dir: &Path,
    extra: &[String],
) -> Result<Group> {
    let flush = mode.flush.to_string();
    let mut args = vec![
        "--role".to_string(),
        mode.role.clone(),
        "--flush".into(),
        flush.clone(),
    ];
    args.extend(extra.iter().cloned());
    let master = BrokerProc::start(&p.bin, dir, "master", &args)?;
    let ha = master
        .ha
        .ok_or_else(|| anyhow!("the master printed no HA address"))?;
    let mut proxies = Vec::new();
    let mut slaves = Vec::new();
    for i in 0..mode.slaves {
        let proxy = FaultProxy::start(ha, p.fault, seed ^ (i as u64 + 1), 8)?;
        let mut args = vec![
            "--role".to_string(),
            "SLAVE".into(),
            "--ha-master".into(),
            proxy.addr().to_string(),
            "--broker-id".into(),
            (i + 1).to_string(),
            "--flush".into(),
            flush.clone(),
        ];
        args.extend(extra.iter().cloned());
        let slave = BrokerProc::start(&p.bin, dir, &format!("slave{}", i + 1), &args)?;
        proxies.push(proxy);
        slaves.push(slave);
    }
    // Every slave connected (through its proxy) before the load starts.
    let t = Instant::now();
    while proxies.iter().any(|p| p.connections() == 0) {
        if t.elapsed() > Duration::from_secs(10) {
            bail!("a slave never connected to the master");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(Group {
        master,
        slaves,
        proxies,
    })
}

/// A fresh directory under `work` for one trial (or schedule), its name
/// starting with `prefix`; removed when dropped.
pub(super) fn trial_dir(work: &Path, prefix: &str) -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(work)
        .with_context(|| format!("a trial directory under {}", work.display()))
}

/// Runs one kill in a fresh directory under `work`; the ack log goes to
/// `ack_log`.
pub fn run(
    p: &TrialParams,
    mode: &Mode,
    kill: usize,
    seed: u64,
    work: &Path,
    ack_log: &Path,
) -> Result<Trial> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let dir = trial_dir(work, "mqlab-ha-")?;
    let Group {
        mut master,
        mut slaves,
        proxies,
    } = start_group(p, mode, seed, dir.path(), &[])?;

    let sender = sender_to(master.addr, p).map_err(|e| anyhow!("connect to the master: {e}"))?;
    let t0 = Instant::now();
    let mut producer = {
        let sender = sender.clone();
        Producer::start("ha-producer", p, t0, move || Some((sender.clone(), 0)))?
    };

    // Live samples until the seeded kill, the last one right before it.
    let (raw, final_slaves, kill_at_ms, killed_us) =
        sample_then_kill(&mut master, &slaves, p, t0, &mut rng)?;
    let sent = producer.stop()?;
    sender.wait_idle(Duration::from_secs(10));
    sender.close();

    for s in slaves.drain(..) {
        let name = s.name.clone();
        s.stop().with_context(|| format!("stop {name}"))?;
    }
    for px in proxies {
        px.stop();
    }

    let acks = producer.take_acks();
    write_ack_log(ack_log, &acks)?;

    // verify --acked and a scan of every slave.
    let mut verify_missing = Vec::new();
    let mut verify_ok = Vec::new();
    let mut scans = Vec::new();
    let slave_dirs: Vec<PathBuf> = (0..mode.slaves)
        .map(|i| dir.path().join(format!("slave{}", i + 1)))
        .collect();
    for d in &slave_dirs {
        let (missing, ok) = verify(&p.bin, d, ack_log)?;
        verify_missing.push(missing);
        verify_ok.push(ok);
        scans.push(scan(d)?);
    }
    let best = (0..scans.len()).max_by_key(|&i| scans[i].end).unwrap_or(0);
    let lost_on = |sc: &Scan| acks.iter().filter(|a| !sc.keys.contains(&a.seq)).count() as u64;
    let lost_each: Vec<u64> = scans.iter().map(lost_on).collect();
    let acked_lost = lost_each.get(best).copied().unwrap_or(0);
    let worst = lost_each.iter().copied().max().unwrap_or(0);
    // The best slave at the kill's sample: what it had reported written.
    let best_at_kill = final_slaves.iter().copied().max().unwrap_or(0);
    let loss_over_lag = scans
        .get(best)
        .map(|sc| {
            acks.iter()
                .filter(|a| !sc.keys.contains(&a.seq) && a.phys < best_at_kill)
                .count() as u64
        })
        .unwrap_or(0);
    let rec = scans.iter().find_map(|s| s.record_size).unwrap_or(0);
    let past: Vec<&Ack> = acks.iter().filter(|a| a.phys >= best_at_kill).collect();
    let lag_at_kill_msgs = past.len() as u64;
    let lag_at_kill_bytes = past
        .iter()
        .map(|a| a.phys + rec)
        .max()
        .map_or(0, |end| end.saturating_sub(best_at_kill));
    let lag_at_kill_age_ms = past
        .iter()
        .map(|a| a.at_us)
        .min()
        .map_or(0.0, |t| killed_us.saturating_sub(t) as f64 / 1000.0);

    let lag = lag_samples(&raw, &acks);
    let duplicated = scans.get(best).map_or(0, |s| s.duplicated);
    let out_of_order = scans.get(best).map_or(0, |s| s.out_of_order);
    let send_order_inversions = scans.get(best).map_or(0, |s| s.inversions);
    let acked = acks.len() as u64;
    Ok(Trial {
        mode: mode.name(),
        kill,
        seed,
        kill_at_ms,
        sent,
        acked,
        send_errors: producer.errors(),
        msgs_per_s: acked as f64 / (killed_us.max(1) as f64 / 1e6),
        acked_lost,
        acked_lost_worst_slave: worst,
        verify_missing,
        verify_ok,
        duplicated,
        out_of_order,
        send_order_inversions,
        lag_at_kill_msgs,
        lag_at_kill_bytes,
        lag_at_kill_age_ms,
        loss_over_lag,
        samples: lag.len(),
        max_lag_msgs: lag.iter().map(|s| s.lag_msgs).max().unwrap_or(0),
        failover_ms: None,
        election_ms: None,
        acked_after_failover: 0,
        lost_after_failover: 0,
        slave_end: scans.iter().map(|s| s.end).collect(),
        lag,
    })
}

/// Samples the lag every `p.sample_ms` (the master's committed offset,
/// each slave's written offset) until a seeded moment in
/// `p.kill_after_ms`, takes the sample the kill is judged against and
/// SIGKILLs the master at once. Returns the samples (the last at the
/// kill), the slaves' written offsets at the kill, the drawn kill moment
/// (ms) and the kill's time, µs since `t0`.
pub(super) fn sample_then_kill(
    master: &mut BrokerProc,
    slaves: &[BrokerProc],
    p: &TrialParams,
    t0: Instant,
    rng: &mut ChaCha8Rng,
) -> Result<(Vec<RawSample>, Vec<u64>, u64, u64)> {
    let raw: Arc<Mutex<Vec<RawSample>>> = Arc::new(Mutex::new(Vec::new()));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (raw, sampling) = (raw.clone(), sampling.clone());
        let m = master.metrics();
        let s: Vec<_> = slaves.iter().map(|s| s.metrics()).collect();
        let every = Duration::from_millis(p.sample_ms.max(1));
        std::thread::Builder::new()
            .name("ha-sampler".into())
            .spawn(move || {
                while sampling.load(Ordering::Acquire) {
                    let at = now_us(t0);
                    let mc = offsets(m).map(|o| o.committed).unwrap_or(0);
                    let sw: Vec<u64> = s
                        .iter()
                        .map(|a| offsets(*a).map(|o| o.written).unwrap_or(0))
                        .collect();
                    raw.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((at, mc, sw));
                    std::thread::sleep(every);
                }
            })?
    };
    let (lo, hi) = p.kill_after_ms;
    let kill_at_ms = rng.random_range(lo..=hi.max(lo));
    let wake = t0 + Duration::from_millis(kill_at_ms);
    while Instant::now() < wake {
        std::thread::sleep(Duration::from_millis(2).min(wake - Instant::now()));
    }
    sampling.store(false, Ordering::Release);
    let _ = sampler.join();
    let at = now_us(t0);
    let final_slaves: Vec<u64> = slaves
        .iter()
        .map(|s| offsets(s.metrics()).map(|o| o.written).unwrap_or(0))
        .collect();
    master.kill9();
    let killed_us = now_us(t0);
    let mut raw = std::mem::take(&mut *raw.lock().unwrap_or_else(|e| e.into_inner()));
    raw.push((at, 0, final_slaves.clone()));
    Ok((raw, final_slaves, kill_at_ms, killed_us))
}

/// Lag per sample, against the acks received by the sample's time.
pub(super) fn lag_samples(raw: &[RawSample], acks: &[Ack]) -> Vec<Sample> {
    raw.iter()
        .map(|(at, mc, sw)| {
            let best = sw.iter().copied().max().unwrap_or(0);
            let behind = acks
                .iter()
                .filter(|a| a.at_us <= *at && a.phys >= best && a.phys != u64::MAX);
            let (mut n, mut oldest) = (0u64, None::<u64>);
            for a in behind {
                n += 1;
                oldest = Some(oldest.map_or(a.at_us, |o: u64| o.min(a.at_us)));
            }
            Sample {
                t_ms: *at as f64 / 1000.0,
                master_committed: *mc,
                slave_written: sw.clone(),
                lag_bytes: mc.saturating_sub(best),
                lag_msgs: n,
                lag_age_ms: oldest.map_or(0.0, |o| at.saturating_sub(o) as f64 / 1000.0),
            }
        })
        .collect()
}

pub(super) fn write_ack_log(path: &Path, acks: &[Ack]) -> Result<()> {
    let mut out = String::with_capacity(acks.len() * 64 + 64);
    out.push_str(CLIENT_ACK_LOG_HEADER);
    out.push('\n');
    for a in acks {
        out.push_str(&format!(
            "{TOPIC},{},{},{},{}\n",
            a.queue_id,
            a.queue_offset,
            a.msg_id,
            key(a.seq)
        ));
    }
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(path, out).with_context(|| format!("write {}", path.display()))
}

/// `mqlab verify --data-dir DIR --acked LOG --json`: missing lines, verdict.
pub(super) fn verify(bin: &Path, dir: &Path, acked: &Path) -> Result<(u64, bool)> {
    let out = std::process::Command::new(bin)
        .args(["verify", "--json", "--data-dir"])
        .arg(dir)
        .arg("--acked")
        .arg(acked)
        .stderr(std::process::Stdio::null())
        .output()
        .context("run mqlab verify")?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "mqlab verify's output: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })?;
    let a = &v["acked"];
    let missing = a["missing"].as_u64().unwrap_or(0)
        + a["unreachable_via_queue"].as_u64().unwrap_or(0)
        + a["unreachable_via_index"].as_u64().unwrap_or(0);
    // Unresolved lines (no record at all) are counted in `lost`.
    let ok = v["ok"].as_bool().unwrap_or(false);
    let unresolved = v["lost"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|s| s.as_str())
                .filter(|s| s.contains("is not in the store"))
                .count() as u64
        })
        .unwrap_or(0);
    Ok((missing + unresolved, ok))
}

pub(super) struct Scan {
    pub(super) keys: HashSet<u64>,
    pub(super) duplicated: u64,
    pub(super) out_of_order: u64,
    pub(super) inversions: u64,
    pub(super) end: u64,
    pub(super) record_size: Option<u64>,
}

/// Every message of the topic in a slave's store (recovered read-only):
/// sequence numbers seen, duplicates, per queue a queue offset that does
/// not follow the one before it in the log (out of order: a gap or a step
/// back), and per queue a producer sequence lower than one before it
/// (inversions: sends in flight together are stored in any order, by the
/// master already; not a replication fault).
pub(super) fn scan(dir: &Path) -> Result<Scan> {
    let store = crate::inspect::open_read_only(dir)?;
    let mut keys = HashSet::new();
    let mut last: HashMap<u32, u64> = HashMap::new();
    let mut last_qo: HashMap<u32, u64> = HashMap::new();
    let (mut duplicated, mut out_of_order, mut inversions) = (0u64, 0u64, 0u64);
    let mut record_size = None;
    let mut err = None;
    let end = store.scan(store.min_offset(), &mut |r| match r {
        Ok(m) => {
            if m.topic != TOPIC {
                return true;
            }
            record_size.get_or_insert(m.total_size as u64);
            let Some(seq) = m
                .keys()
                .find_map(|k| k.strip_prefix('k').and_then(|s| s.parse::<u64>().ok()))
            else {
                return true;
            };
            if !keys.insert(seq) {
                duplicated += 1;
            }
            if let Some(prev) = last.insert(m.queue_id, seq) {
                if seq < prev {
                    inversions += 1;
                }
            }
            let want = last_qo.get(&m.queue_id).map_or(0, |q| q + 1);
            if m.queue_offset != want {
                out_of_order += 1;
            }
            last_qo.insert(m.queue_id, m.queue_offset);
            true
        }
        Err(e) => {
            err = Some(e.to_string());
            false
        }
    })?;
    if let Some(e) = err {
        bail!("scan of {}: {e}", dir.display());
    }
    Ok(Scan {
        keys,
        duplicated,
        out_of_order,
        inversions,
        end,
        record_size,
    })
}
