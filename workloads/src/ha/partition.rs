//! `mqlab ha --partition` (issue 16, replication faults): seeded schedules
//! of network faults and failovers against a controller-mode group.
//!
//! Each schedule: a controller and 2 or 3 brokers (`mqlab broker
//! --controller`, processes), broker 1 elected at epoch 1 and the others in
//! its in-sync set before the load starts. Every link a broker has goes
//! through a seeded [`FaultProxy`]:
//!
//! - its controller link (`--controller` names a proxy whose upstream is
//!   the controller);
//! - its HA port (`--ha-announce` names a proxy whose upstream is the port
//!   the broker says it serves on when it becomes master); connections are
//!   labelled with the slave's broker id from the controller-mode hello, so
//!   one slave can be cut from its master while the others pass.
//!
//! A producer in this process sends to *every* broker at once (a client
//! with a stale route, one thread and one connection per broker, paced):
//! a slave refuses, a master acknowledges, so an old master that goes on
//! acknowledging after it was deposed is seen. Each SEND_OK is logged with
//! the broker that answered, its commit-log offset (from the msgId) and
//! the time.
//!
//! The schedule (drawn from the schedule's seed): one slave cut from
//! everything (HA and controller), the master cut from everything (so the
//! controller deposes it), the master's controller link only, the master's
//! HA links only (its in-sync set shrinks, then it is killed), a flapping
//! link (partition or reset, 50..800 ms phases), a slow slave (delay per
//! chunk), or two of them overlapped; most with a SIGKILL of the master
//! (the one at that moment) and its restart on the same data. Then every
//! link heals, every killed broker is restarted, and the group must
//! converge: one master, every other broker its slave at its epoch (45 s
//! at most, else the schedule fails with its seed). The load stops, the
//! slaves are given time to catch up, every process is stopped cleanly.
//!
//! Checked on the final master's store (recovered read-only):
//!
//! - `acked_lost`: acknowledged messages (by any broker, at any epoch)
//!   missing from it. Under SYNC_MASTER it must be 0.
//! - `dual_master_epochs`: master epochs in which two different brokers
//!   acknowledged writes. An ack's broker is the connection it came back
//!   on; its epoch is, for a message in the final log at the acked offset,
//!   the final master's epoch file at that offset (authoritative: the
//!   entry the writing master appended when it took over); for a lost
//!   message, the epoch the broker announced ("now master at epoch N") in
//!   its latest master period that began before the ack and at or below
//!   the acked offset. Also counted: epochs of the final log whose records
//!   name two different store hosts (brokers). Must be 0 in every mode.
//! - `diverged`: records of another broker's log (after convergence) that
//!   are not at the same offset in the final master's: a replica that did
//!   not truncate what the master never had. Must be 0.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use mqlab_client::tcp::pipelined::{response_name, PipelinedSender};
use mqlab_engine::Message;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::proc::{offsets, BrokerProc};
use super::trial::{key, now_us, TOPIC};
use crate::faultproxy::{ha_hello_broker_id, Fault, FaultProxy};

/// Settings shared by every schedule.
#[derive(Debug, Clone)]
pub struct PartitionParams {
    pub bin: PathBuf,
    /// The controller's heartbeat timeout, ms.
    pub heartbeat_ms: u64,
    /// haMaxTimeSlaveNotCatchup, ms.
    pub catchup_ms: u64,
    /// Sends per second to each broker.
    pub rate: u64,
    pub inflight: usize,
    pub queues: u32,
    pub body_bytes: usize,
    pub flush: String,
    /// The kinds to draw from (`None`: [`KINDS`]).
    pub kinds: Option<Vec<String>>,
}

/// A broker named by its part in the schedule, bound when first used:
/// `Master(k)` to the master at that moment, `Slave(k)` to a (seeded)
/// alive broker that is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Who {
    Master(u8),
    Slave(u8),
}

impl std::fmt::Display for Who {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Who::Master(k) => write!(f, "M{k}"),
            Who::Slave(k) => write!(f, "S{k}"),
        }
    }
}

/// Which of a broker's links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// To the controller.
    Ctl,
    /// Its HA port: every slave's connection to it.
    HaIn,
    /// Its connections as a slave, to any master.
    HaOut,
    /// All three: cut from everyone but clients.
    All,
}

impl std::fmt::Display for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Link::Ctl => "ctl",
            Link::HaIn => "ha-in",
            Link::HaOut => "ha-out",
            Link::All => "all",
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Act {
    Fault(Who, Link, Fault),
    Heal(Who, Link),
    Kill(Who),
    Restart(Who),
}

impl std::fmt::Display for Act {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Act::Fault(w, l, x) => write!(f, "{x} {w}.{l}"),
            Act::Heal(w, l) => write!(f, "heal {w}.{l}"),
            Act::Kill(w) => write!(f, "kill -9 {w}"),
            Act::Restart(w) => write!(f, "restart {w}"),
        }
    }
}

/// A seeded schedule: its kind and timed steps (ms after the load starts).
#[derive(Debug, Clone)]
pub struct Schedule {
    pub kind: String,
    steps: Vec<(u64, Act)>,
}

impl Schedule {
    /// `kind: t1 act; t2 act; ...`
    pub fn text(&self) -> String {
        let steps: Vec<String> = self.steps.iter().map(|(t, a)| format!("{t} {a}")).collect();
        format!("{}: {}", self.kind, steps.join("; "))
    }

    /// Schedule steps that kill a broker.
    pub fn kills(&self) -> usize {
        self.steps
            .iter()
            .filter(|(_, a)| matches!(a, Act::Kill(_)))
            .count()
    }
}

/// The kinds a schedule is drawn from by default (`combo` overlaps two of
/// the others). The default draw is fixed: a seed always gives the same
/// schedule.
pub const KINDS: [&str; 7] = [
    "slave-cut",
    "master-cut",
    "master-ctl-cut",
    "master-ha-cut",
    "flap",
    "slow-slave",
    "combo",
];

/// Kinds drawn only when asked for (`--kinds`): `split` puts the master
/// and one slave on one side, the controller and the other slave on the
/// other (needs 2 slaves).
pub const EXTRA_KINDS: [&str; 1] = ["split"];

fn r(rng: &mut ChaCha8Rng, lo: u64, hi: u64) -> u64 {
    rng.random_range(lo..=hi.max(lo))
}

/// Draws the steps of one `kind` starting at `t0`, appending to `steps`;
/// returns the time its last step is due.
fn draw(
    kind: &str,
    rng: &mut ChaCha8Rng,
    t0: u64,
    hb: u64,
    catchup: u64,
    steps: &mut Vec<(u64, Act)>,
) -> u64 {
    let m = Who::Master(0);
    let s = Who::Slave(0);
    // A SIGKILL at `at` and the restart: mostly after the controller's
    // heartbeat timeout (a failover), else LO..HI ms later (the master
    // back before the controller noticed); returns its time.
    fn kill_restart(
        rng: &mut ChaCha8Rng,
        steps: &mut Vec<(u64, Act)>,
        who: Who,
        at: u64,
        (lo, hi): (u64, u64),
        hb: u64,
    ) -> u64 {
        steps.push((at, Act::Kill(who)));
        let after = if rng.random_bool(0.75) {
            r(rng, hb + 1200, hb + 3500).max(lo)
        } else {
            r(rng, lo, hi)
        };
        let back = at + after;
        steps.push((back, Act::Restart(who)));
        back
    }
    match kind {
        "slave-cut" => {
            let d = r(rng, 300, 4000);
            steps.push((t0, Act::Fault(s, Link::All, Fault::Partition)));
            steps.push((t0 + d, Act::Heal(s, Link::All)));
            let mut end = t0 + d;
            if rng.random_bool(0.6) {
                let at = t0 + r(rng, d * 3 / 10, d + 1500);
                end = end.max(kill_restart(rng, steps, m, at, (800, 2500), hb));
            }
            end
        }
        "master-cut" => {
            let d = r(rng, hb + 1500, hb + 4500);
            steps.push((t0, Act::Fault(m, Link::All, Fault::Partition)));
            steps.push((t0 + d, Act::Heal(m, Link::All)));
            let mut end = t0 + d;
            if rng.random_bool(0.3) {
                // The master after the heal (the elected one, most likely).
                let at = t0 + d + r(rng, 500, 2000);
                end = kill_restart(rng, steps, Who::Master(1), at, (800, 2500), hb);
            }
            end
        }
        "master-ctl-cut" => {
            let d = r(rng, hb + 1500, hb + 4000);
            steps.push((t0, Act::Fault(m, Link::Ctl, Fault::Partition)));
            steps.push((t0 + d, Act::Heal(m, Link::Ctl)));
            t0 + d
        }
        "master-ha-cut" => {
            let d = r(rng, catchup + 1000, catchup + 3000);
            steps.push((t0, Act::Fault(m, Link::HaIn, Fault::Partition)));
            let mut end = t0 + d;
            if rng.random_bool(0.7) {
                let at = t0 + d - r(rng, 0, 500);
                end = end.max(kill_restart(rng, steps, m, at, (1000, 3000), hb));
            }
            steps.push((t0 + d, Act::Heal(m, Link::HaIn)));
            end
        }
        "flap" => {
            let (who, link) = match r(rng, 0, 3) {
                0 => (s, Link::HaOut),
                1 => (m, Link::HaIn),
                2 => (m, Link::Ctl),
                _ => (m, Link::All),
            };
            let fault = if rng.random_bool(0.3) {
                Fault::Drop(1.0)
            } else {
                Fault::Partition
            };
            let (lo, hi) = (r(rng, 50, 300), r(rng, 300, 800));
            let total = r(rng, 2000, 6000);
            let mut t = t0;
            while t < t0 + total {
                steps.push((t, Act::Fault(who, link, fault)));
                t += r(rng, lo, hi);
                steps.push((t, Act::Heal(who, link)));
                t += r(rng, lo, hi);
            }
            let mut end = t;
            if rng.random_bool(0.5) {
                let at = t0 + r(rng, 0, total);
                let back = r(rng, 500, 2000) + t.saturating_sub(at);
                end = end.max(kill_restart(rng, steps, m, at, (back, back), hb));
            }
            end
        }
        "slow-slave" => {
            let d = r(rng, 1000, 5000);
            let ms = r(rng, 5, 60);
            steps.push((t0, Act::Fault(s, Link::HaOut, Fault::Delay(ms))));
            steps.push((t0 + d, Act::Heal(s, Link::HaOut)));
            let mut end = t0 + d;
            if rng.random_bool(0.7) {
                let at = t0 + r(rng, d / 4, d);
                end = end.max(kill_restart(rng, steps, m, at, (500, 2000), hb));
            }
            end
        }
        "split" => {
            // {master, S0} | {controller, S1}: the controller elects S1
            // while the master and S0 go on together.
            let d = r(rng, hb + 1500, hb + 4500);
            let s1 = Who::Slave(1);
            for (w, l) in [(m, Link::Ctl), (s, Link::Ctl), (s1, Link::HaOut)] {
                steps.push((t0, Act::Fault(w, l, Fault::Partition)));
                steps.push((t0 + d, Act::Heal(w, l)));
            }
            let mut end = t0 + d;
            if rng.random_bool(0.3) {
                let at = t0 + d + r(rng, 500, 2000);
                end = kill_restart(rng, steps, Who::Master(1), at, (800, 2500), hb);
            }
            end
        }
        _ => unreachable!("kind {kind}"),
    }
}

/// The schedule of `seed` for a group with `slaves` slaves, its kind
/// drawn from `kinds` (`None`: [`KINDS`]; `split` needs 2 slaves and is
/// left out with fewer).
pub fn schedule(
    seed: u64,
    slaves: usize,
    hb: u64,
    catchup: u64,
    kinds: Option<&[String]>,
) -> Schedule {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x05EE_D0F5_C4ED);
    let kinds: Vec<&str> = match kinds {
        None => KINDS.to_vec(),
        Some(k) => k
            .iter()
            .map(|x| x.as_str())
            .filter(|x| slaves >= 2 || *x != "split")
            .collect(),
    };
    let kinds = if kinds.is_empty() {
        vec!["slave-cut"]
    } else {
        kinds
    };
    let kind = kinds[rng.random_range(0..kinds.len())];
    // What a combo overlaps: the others (the first six of KINDS by
    // default).
    let parts: Vec<&str> = kinds.iter().copied().filter(|k| *k != "combo").collect();
    let parts = if parts.is_empty() {
        KINDS[..KINDS.len() - 1].to_vec()
    } else {
        parts
    };
    let mut steps = Vec::new();
    let t0 = r(&mut rng, 200, 800);
    if kind == "combo" {
        let a = parts[rng.random_range(0..parts.len())];
        let b = parts[rng.random_range(0..parts.len())];
        let end_a = draw(a, &mut rng, t0, hb, catchup, &mut steps);
        let t1 = t0 + r(&mut rng, 0, end_a.saturating_sub(t0));
        draw(b, &mut rng, t1, hb, catchup, &mut steps);
        steps.sort_by_key(|(t, _)| *t);
        return Schedule {
            kind: format!("combo({a}+{b})"),
            steps,
        };
    }
    draw(kind, &mut rng, t0, hb, catchup, &mut steps);
    steps.sort_by_key(|(t, _)| *t);
    Schedule {
        kind: kind.into(),
        steps,
    }
}

/// One acknowledged send.
#[derive(Debug, Clone)]
struct Ack {
    node: usize,
    seq: u64,
    phys: u64,
    at_us: u64,
}

/// A master period a broker announced.
#[derive(Debug, Clone)]
struct Period {
    node: usize,
    epoch: u32,
    /// Its epoch file's entry for that epoch (the log end at the switch).
    start: Option<u64>,
    seen_us: u64,
}

/// What one broker last said about its role.
#[derive(Debug, Clone, Default)]
struct View {
    /// (master?, epoch, the master's broker id)
    role: Option<(bool, u32, u64)>,
    in_sync: Vec<u64>,
    truncations: u64,
    truncated_bytes: u64,
}

/// A broker's output being followed.
struct LogTail {
    node: usize,
    path: PathBuf,
    data: PathBuf,
    pos: u64,
    partial: String,
}

#[derive(Default)]
struct Watch {
    periods: Vec<Period>,
    views: Vec<View>,
    tails: Vec<LogTail>,
    /// Two brokers said "now master at epoch N" for the same N.
    named_twice: BTreeSet<u32>,
}

fn epoch_entries(data: &Path) -> Vec<(u32, u64)> {
    std::fs::read_to_string(data.join("epoch"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
        })
        .collect()
}

/// A line a broker prints that the watcher follows.
#[derive(Debug, Clone, PartialEq)]
enum Line {
    /// `now master at epoch N (HA on ADDR)`
    Master(u32, Option<SocketAddr>),
    /// `now slave of broker M (HA ADDR) at epoch N`: (N, M)
    Slave(u32, u64),
    /// `in-sync set {..} -> {ids} (epoch K)`
    InSync(Vec<u64>),
    /// `mqlab ha: broker N: commit log cut from A back to B (N bytes the
    /// master never had)`: the bytes cut
    Truncated(u64),
}

fn parse_line(line: &str) -> Option<Line> {
    let line = line.trim_end();
    if let Some(rest) = line.split("now master at epoch ").nth(1) {
        let epoch = rest.split_whitespace().next()?.parse().ok()?;
        let ha = rest
            .split("(HA on ")
            .nth(1)
            .and_then(|x| x.trim_end_matches(')').parse().ok());
        return Some(Line::Master(epoch, ha));
    }
    if let Some(rest) = line.split("now slave of broker ").nth(1) {
        let master = rest.split_whitespace().next()?.parse().ok()?;
        let epoch = rest
            .split("at epoch ")
            .nth(1)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        return Some(Line::Slave(epoch, master));
    }
    if line.contains(": in-sync set ") && line.contains(" (epoch ") {
        let set = line.split("-> {").nth(1)?.split('}').next()?;
        let ids = set
            .split(',')
            .filter_map(|x| x.trim().parse().ok())
            .collect();
        return Some(Line::InSync(ids));
    }
    if let Some(rest) = line.split(": commit log cut from ").nth(1) {
        let bytes = rest
            .split(" (")
            .nth(1)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        return Some(Line::Truncated(bytes));
    }
    None
}

impl Watch {
    /// Reads what the brokers printed since the last poll.
    fn poll(&mut self, t0: Instant, proxies: &[Arc<NodeLinks>]) {
        let mut lines: Vec<(usize, PathBuf, String)> = Vec::new();
        for t in &mut self.tails {
            let Ok(mut f) = std::fs::File::open(&t.path) else {
                continue;
            };
            if f.seek(SeekFrom::Start(t.pos)).is_err() {
                continue;
            }
            let mut buf = String::new();
            let Ok(n) = f.read_to_string(&mut buf) else {
                continue;
            };
            t.pos += n as u64;
            t.partial.push_str(&buf);
            while let Some(i) = t.partial.find('\n') {
                let l: String = t.partial.drain(..=i).collect();
                lines.push((t.node, t.data.clone(), l));
            }
        }
        for (node, data, l) in lines {
            let Some(line) = parse_line(&l) else {
                continue;
            };
            let v = &mut self.views[node];
            match line {
                Line::Master(epoch, ha) => {
                    if let Some(ha) = ha {
                        proxies[node].ha.set_upstream(Some(ha));
                    }
                    v.role = Some((true, epoch, node as u64 + 1));
                    v.in_sync = vec![node as u64 + 1];
                    let start = epoch_entries(&data)
                        .iter()
                        .find(|(e, _)| *e == epoch)
                        .map(|(_, s)| *s);
                    if self
                        .periods
                        .iter()
                        .any(|p| p.epoch == epoch && p.node != node)
                    {
                        self.named_twice.insert(epoch);
                    }
                    self.periods.push(Period {
                        node,
                        epoch,
                        start,
                        seen_us: now_us(t0),
                    });
                }
                Line::Slave(epoch, master) => v.role = Some((false, epoch, master)),
                Line::InSync(ids) => v.in_sync = ids,
                Line::Truncated(bytes) => {
                    v.truncations += 1;
                    v.truncated_bytes += bytes;
                }
            }
        }
    }

    /// The master with the newest epoch announced.
    fn master(&self) -> Option<(usize, u32)> {
        self.periods
            .iter()
            .max_by_key(|p| p.epoch)
            .map(|p| (p.node, p.epoch))
    }
}

/// A broker's two proxies.
struct NodeLinks {
    ctl: FaultProxy,
    ha: FaultProxy,
}

/// One broker of the group.
struct Node {
    id: u64,
    proc: Option<BrokerProc>,
    incarnation: u32,
    /// Client addresses of every incarnation (the store host of its
    /// records).
    addrs: Vec<SocketAddr>,
    sender: Arc<RwLock<Option<Arc<PipelinedSender>>>>,
}

/// What one schedule found.
#[derive(Debug, Clone, Serialize)]
pub struct ScheduleResult {
    pub index: usize,
    pub seed: u64,
    pub role: String,
    pub slaves: usize,
    pub kind: String,
    pub schedule: String,
    pub kills: usize,
    pub acked: u64,
    /// Acknowledged messages missing from the final master.
    pub acked_lost: u64,
    /// Of them, acknowledged by a broker at an epoch older than the
    /// final master's (a deposed or killed master).
    pub acked_lost_old_epochs: u64,
    /// Master epochs in which two brokers acknowledged writes (acks and
    /// the final log together).
    pub dual_master_epochs: u64,
    /// Of them, seen in the final log's records.
    pub dual_master_epochs_in_log: u64,
    /// Epochs two brokers announced themselves master of.
    pub epochs_named_twice: u64,
    /// Epochs with acknowledged writes.
    pub epochs_with_acks: u64,
    /// Acks by a broker after another announced a newer epoch (a deposed
    /// master still acknowledging; informational).
    pub acks_after_newer_epoch: u64,
    /// The final master's epoch.
    pub final_epoch: u32,
    pub final_master: u64,
    /// Records of other brokers not at the same offset in the final
    /// master's log.
    pub diverged: u64,
    /// Truncations the brokers logged (a commit log cut back at a
    /// handshake with a new master), and the bytes they cut.
    pub truncations: u64,
    pub truncated_bytes: u64,
    /// Lost acks no announced master period explains.
    pub unattributed: u64,
    /// Surviving acks whose announced period disagrees with the final
    /// log's epoch file (a check of the attribution).
    pub attribution_mismatch: u64,
    /// From the heal to one master and all its slaves, ms.
    pub converge_ms: f64,
    /// The final master's last in-sync set change named every broker
    /// (informational: a master re-elected with its set unchanged prints
    /// none).
    pub in_sync_full: bool,
    pub send_errors: BTreeMap<String, u64>,
    pub elapsed_s: f64,
}

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

fn sender_to(addr: SocketAddr, p: &PartitionParams) -> Result<Arc<PipelinedSender>> {
    super::trial::pipelined_sender(addr, "HaPartitionProducer", p.inflight, p.queues as usize)
}

/// The cluster of one schedule.
struct Group<'a> {
    p: &'a PartitionParams,
    role: String,
    dir: PathBuf,
    nodes: Vec<Node>,
    links: Vec<Arc<NodeLinks>>,
    watch: Arc<Mutex<Watch>>,
    bound: HashMap<Who, usize>,
    rng: ChaCha8Rng,
    t0: Instant,
}

impl Group<'_> {
    fn args(&self, i: usize) -> Vec<String> {
        vec![
            "--role".into(),
            self.role.clone(),
            "--flush".into(),
            self.p.flush.clone(),
            "--controller".into(),
            self.links[i].ctl.addr().to_string(),
            "--broker-id".into(),
            (i + 1).to_string(),
            "--ha-listen".into(),
            "127.0.0.1:0".into(),
            "--ha-announce".into(),
            self.links[i].ha.addr().to_string(),
            "--controller-heartbeat-timeout-ms".into(),
            self.p.heartbeat_ms.to_string(),
            "--ha-max-time-slave-not-catchup-ms".into(),
            self.p.catchup_ms.to_string(),
        ]
    }

    /// Starts (or restarts) broker `i` on its data directory.
    fn start(&mut self, i: usize) -> Result<()> {
        let inc = self.nodes[i].incarnation;
        let data = format!("b{}", i + 1);
        let name = format!("b{}-{inc}", i + 1);
        {
            let mut w = self.watch.lock().unwrap_or_else(|e| e.into_inner());
            // What the last incarnation said is history now.
            w.poll(self.t0, &self.links);
            w.tails.retain(|t| t.node != i);
            w.views[i] = View::default();
            w.tails.push(LogTail {
                node: i,
                path: self.dir.join(format!("{name}.stderr")),
                data: self.dir.join(&data),
                pos: 0,
                partial: String::new(),
            });
        }
        let args = self.args(i);
        let proc = BrokerProc::start_as(&self.p.bin, &self.dir, &data, &name, &args)?;
        let sender = sender_to(proc.addr, self.p)?;
        let n = &mut self.nodes[i];
        n.addrs.push(proc.addr);
        n.proc = Some(proc);
        n.incarnation += 1;
        *n.sender.write().unwrap_or_else(|e| e.into_inner()) = Some(sender);
        Ok(())
    }

    fn kill(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        if let Some(mut p) = n.proc.take() {
            p.kill9();
        }
        if let Some(s) = n.sender.write().unwrap_or_else(|e| e.into_inner()).take() {
            s.close();
        }
        self.links[i].ha.set_upstream(None);
    }

    fn alive(&self, i: usize) -> bool {
        self.nodes[i].proc.is_some()
    }

    /// The broker a schedule name stands for (bound at its first use).
    fn resolve(&mut self, who: Who) -> Option<usize> {
        if let Some(&i) = self.bound.get(&who) {
            return Some(i);
        }
        let master = self
            .watch
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .master()
            .map(|m| m.0);
        let i = match who {
            Who::Master(_) => master.filter(|&m| self.alive(m))?,
            Who::Slave(_) => {
                let taken: Vec<usize> = self.bound.values().copied().collect();
                let c: Vec<usize> = (0..self.nodes.len())
                    .filter(|&i| Some(i) != master && self.alive(i) && !taken.contains(&i))
                    .collect();
                if c.is_empty() {
                    return None;
                }
                c[self.rng.random_range(0..c.len())]
            }
        };
        self.bound.insert(who, i);
        Some(i)
    }

    fn set_link(&self, i: usize, link: Link, fault: Option<Fault>) {
        let f = fault.unwrap_or(Fault::Pass);
        let id = i as u64 + 1;
        if matches!(link, Link::Ctl | Link::All) {
            self.links[i].ctl.set(f);
        }
        if matches!(link, Link::HaIn | Link::All) {
            self.links[i].ha.set(f);
        }
        if matches!(link, Link::HaOut | Link::All) {
            for l in &self.links {
                l.ha.set_label(id, fault);
            }
        }
    }

    /// Runs one step; a note of what it did.
    fn step(&mut self, act: &Act) -> Result<String> {
        let who = match act {
            Act::Fault(w, ..) | Act::Heal(w, _) | Act::Kill(w) | Act::Restart(w) => *w,
        };
        let Some(i) = self.resolve(who) else {
            return Ok(format!("{act}: no such broker now, skipped"));
        };
        match act {
            Act::Fault(_, l, f) => self.set_link(i, *l, Some(*f)),
            Act::Heal(_, l) => self.set_link(i, *l, None),
            Act::Kill(_) => self.kill(i),
            Act::Restart(_) => {
                if !self.alive(i) {
                    self.start(i)?;
                }
            }
        }
        Ok(String::new())
    }

    fn stderr_tails(&self) -> String {
        self.nodes
            .iter()
            .filter_map(|n| n.proc.as_ref())
            .map(|p| {
                let e = p.stderr();
                let lines: Vec<&str> = e.lines().collect();
                format!(
                    "--- {}:\n{}",
                    p.name,
                    lines[lines.len().saturating_sub(12)..].join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Runs schedule `index` (seed `seed`) in a fresh directory under `work`.
pub fn run(
    p: &PartitionParams,
    index: usize,
    seed: u64,
    role: &str,
    slaves: usize,
    work: &Path,
    keep: &Path,
) -> Result<ScheduleResult> {
    let started = Instant::now();
    let sched = schedule(
        seed,
        slaves,
        p.heartbeat_ms,
        p.catchup_ms,
        p.kinds.as_deref(),
    );
    let dir = super::trial::trial_dir(work, "mqlab-ha-part-")?;
    let d = dir.path().to_path_buf();
    let ctl = BrokerProc::spawn(
        &p.bin,
        &d,
        "controller",
        &[
            "controller".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--heartbeat-timeout-ms".into(),
            p.heartbeat_ms.to_string(),
        ],
        &|l| l.contains("listening on"),
    )?;
    let n = slaves + 1;
    let mut links = Vec::new();
    for i in 0..n {
        let s = seed ^ ((i as u64 + 1) << 40);
        links.push(Arc::new(NodeLinks {
            ctl: FaultProxy::start(ctl.addr, Fault::Pass, s ^ 1, 16)?,
            ha: FaultProxy::with_labeler(Fault::Pass, s ^ 2, 16, ha_hello_broker_id, 16)?,
        }));
    }
    let t0 = Instant::now();
    let watch = Arc::new(Mutex::new(Watch {
        views: vec![View::default(); n],
        ..Default::default()
    }));
    let watching = Arc::new(AtomicBool::new(true));
    let watcher = {
        let (watch, watching, links) = (watch.clone(), watching.clone(), links.clone());
        std::thread::Builder::new()
            .name("ha-part-watch".into())
            .spawn(move || {
                while watching.load(Ordering::Acquire) {
                    watch
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .poll(t0, &links);
                    std::thread::sleep(Duration::from_millis(5));
                }
            })?
    };
    let mut g = Group {
        p,
        role: role.to_string(),
        dir: d.clone(),
        nodes: (0..n)
            .map(|i| Node {
                id: i as u64 + 1,
                proc: None,
                incarnation: 0,
                addrs: Vec::new(),
                sender: Arc::new(RwLock::new(None)),
            })
            .collect(),
        links,
        watch: watch.clone(),
        bound: HashMap::new(),
        rng: ChaCha8Rng::seed_from_u64(seed ^ 0xB1_4D),
        t0,
    };
    let result = run_in(&mut g, &sched, index, seed, slaves, started);
    watching.store(false, Ordering::Release);
    let _ = watcher.join();
    for node in &mut g.nodes {
        if let Some(mut p) = node.proc.take() {
            p.kill9();
        }
    }
    let _ = ctl.stop();
    // A schedule that failed or broke a promise keeps its brokers' output
    // and epoch files.
    let bad = match &result {
        Ok(t) => {
            t.dual_master_epochs > 0
                || t.diverged > 0
                || (role == "SYNC_MASTER" && t.acked_lost > 0)
        }
        Err(_) => true,
    };
    if bad {
        let to = keep.join(format!("seed-{seed}"));
        let _ = std::fs::create_dir_all(&to);
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                let path = e.path();
                let name = e.file_name().to_string_lossy().into_owned();
                if name.ends_with(".stderr") {
                    let _ = std::fs::copy(&path, to.join(&name));
                } else if path.join("epoch").exists() {
                    let _ = std::fs::copy(path.join("epoch"), to.join(format!("{name}.epoch")));
                }
            }
        }
        let _ = std::fs::write(to.join("schedule.txt"), sched.text());
    }
    result
}

fn run_in(
    g: &mut Group<'_>,
    sched: &Schedule,
    index: usize,
    seed: u64,
    slaves: usize,
    started: Instant,
) -> Result<ScheduleResult> {
    let p = g.p;
    let n = g.nodes.len();
    // Broker 1 first (elected at epoch 1), then its slaves, then every
    // slave in the in-sync set. (A loaded machine may have the controller
    // re-elect broker 1 at a later epoch meanwhile: still broker 1.)
    g.start(0)?;
    let master_at_1 = |w: &Watch| {
        matches!(w.views[0].role, Some((true, _, 1))) && w.master().map(|m| m.0) == Some(0)
    };
    wait_for("broker 1 elected", 15, || {
        master_at_1(&g.watch.lock().unwrap_or_else(|e| e.into_inner()))
    })
    .map_err(|e| anyhow!("{e}: {}", g.stderr_tails()))?;
    for i in 1..n {
        g.start(i)?;
    }
    let full: Vec<u64> = (1..=n as u64).collect();
    wait_for("every slave in the in-sync set of broker 1", 30, || {
        let w = g.watch.lock().unwrap_or_else(|e| e.into_inner());
        master_at_1(&w) && w.views[0].in_sync == full
    })
    .map_err(|e| anyhow!("{e}: {}", g.stderr_tails()))?;

    // The load: one paced thread per broker.
    let t0 = g.t0;
    let load_t0 = now_us(t0);
    let acks: Arc<Mutex<Vec<Ack>>> = Arc::new(Mutex::new(Vec::with_capacity(1 << 16)));
    let errors: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let seq = Arc::new(AtomicU64::new(0));
    let mut producers = Vec::new();
    for (i, node) in g.nodes.iter().enumerate() {
        let (slot, acks, errors, stop, seq) = (
            node.sender.clone(),
            acks.clone(),
            errors.clone(),
            stop.clone(),
            seq.clone(),
        );
        let body = vec![b'p'; p.body_bytes];
        let queues = p.queues.max(1) as u64;
        let every = Duration::from_secs_f64(1.0 / p.rate.max(1) as f64);
        producers.push(
            std::thread::Builder::new()
                .name(format!("ha-part-producer-{i}"))
                .spawn(move || {
                    let mut next = Instant::now();
                    while !stop.load(Ordering::Acquire) {
                        let now = Instant::now();
                        if next > now {
                            std::thread::sleep(next - now);
                        } else if now - next > Duration::from_millis(100) {
                            next = now;
                        }
                        next += every;
                        let cur = slot.read().unwrap_or_else(|e| e.into_inner()).clone();
                        let Some(sender) = cur else {
                            std::thread::sleep(Duration::from_millis(5));
                            continue;
                        };
                        let s = seq.fetch_add(1, Ordering::Relaxed);
                        let msg = Message::new(TOPIC, body.clone())
                            .with_queue((s % queues) as u32)
                            .with_keys(key(s));
                        let (acks, errors) = (acks.clone(), errors.clone());
                        sender.send(&msg, move |reply| {
                            let kind = match reply.result {
                                Ok(sent) if sent.is_ok() => {
                                    let at_us = now_us(t0);
                                    acks.lock().unwrap_or_else(|e| e.into_inner()).push(Ack {
                                        node: i,
                                        seq: s,
                                        phys: sent.phys_offset().unwrap_or(u64::MAX),
                                        at_us,
                                    });
                                    return;
                                }
                                Ok(sent) => response_name(sent.code),
                                Err(e) => e.kind(),
                            };
                            *errors
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .entry(kind)
                                .or_default() += 1;
                        });
                    }
                })?,
        );
    }

    // The schedule.
    let mut notes = Vec::new();
    let mut failed: Option<anyhow::Error> = None;
    for (at, act) in &sched.steps {
        let due = Duration::from_micros(load_t0) + Duration::from_millis(*at);
        let now = t0.elapsed();
        if due > now {
            std::thread::sleep(due - now);
        }
        match g.step(act) {
            Ok(note) if !note.is_empty() => notes.push(format!("{at} {note}")),
            Ok(_) => {}
            Err(e) => {
                failed = Some(e.context(format!("step {at} {act}")));
                break;
            }
        }
    }
    // Heal everything, bring every broker back, wait for one master.
    for l in &g.links {
        l.ctl.heal_all();
        l.ha.heal_all();
    }
    if failed.is_none() {
        for i in 0..n {
            if !g.alive(i) {
                if let Err(e) = g.start(i) {
                    failed = Some(e.context(format!("restart broker {}", i + 1)));
                    break;
                }
            }
        }
    }
    let healed = Instant::now();
    let converged = |g: &Group<'_>| -> Option<(usize, u32, bool)> {
        let w = g.watch.lock().unwrap_or_else(|e| e.into_inner());
        let (f, e) = w.master()?;
        if !g.alive(f) || w.views[f].role != Some((true, e, f as u64 + 1)) {
            return None;
        }
        for j in 0..g.nodes.len() {
            if j != f && (!g.alive(j) || w.views[j].role != Some((false, e, f as u64 + 1))) {
                return None;
            }
        }
        let full = w.views[f].in_sync.len() == g.nodes.len();
        Some((f, e, full))
    };
    let mut conv = None;
    if failed.is_none() {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(45) {
            if let Some(c) = converged(g) {
                conv = Some(c);
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if conv.is_none() {
            failed = Some(anyhow!(
                "no single master with every broker its slave 45 s after the heal: {}",
                g.stderr_tails()
            ));
        }
    }
    let converge_ms = healed.elapsed().as_secs_f64() * 1000.0;
    // Some load on the final master.
    if failed.is_none() {
        std::thread::sleep(Duration::from_millis(500));
        conv = converged(g).or(conv);
    }
    let in_sync_full = conv.is_some_and(|c| c.2);
    stop.store(true, Ordering::Release);
    for h in producers {
        let _ = h.join();
    }
    for node in &g.nodes {
        if let Some(s) = node
            .sender
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            s.wait_idle(Duration::from_secs(10));
            s.close();
        }
    }
    if let Some(e) = failed {
        return Err(e.context(format!("schedule {} ({})", sched.text(), notes.join(", "))));
    }
    let (f, final_epoch, _) = conv.ok_or_else(|| anyhow!("no final master"))?;
    // The slaves catch up with the final master (10 s at most), then
    // everyone stops cleanly.
    let fm = g.nodes[f].proc.as_ref().map(|p| p.metrics());
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10) {
        let Some(end) = fm.and_then(|m| offsets(m).ok()).map(|o| o.written) else {
            break;
        };
        let behind = g.nodes.iter().enumerate().any(|(j, nd)| {
            j != f
                && nd
                    .proc
                    .as_ref()
                    .and_then(|p| offsets(p.metrics()).ok())
                    .is_none_or(|o| o.written < end)
        });
        if !behind {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for j in (0..n).rev() {
        if let Some(pr) = g.nodes[j].proc.take() {
            let name = pr.name.clone();
            pr.stop().with_context(|| format!("stop {name}"))?;
        }
    }
    g.watch
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .poll(t0, &g.links);

    // The final master's log: every record of the topic by key, with its
    // offset and store host; its epoch file.
    let fdir = g.dir.join(format!("b{}", f + 1));
    let owner: HashMap<SocketAddr, usize> = g
        .nodes
        .iter()
        .enumerate()
        .flat_map(|(i, nd)| nd.addrs.iter().map(move |a| (*a, i)))
        .collect();
    let final_log = scan_log(&fdir)?;
    let epochs = epoch_entries(&fdir);
    let epoch_at = |phys: u64| -> Option<u32> {
        epochs
            .iter()
            .rev()
            .find(|(_, s)| *s <= phys)
            .map(|(e, _)| *e)
    };
    let mut in_log: BTreeMap<u32, BTreeSet<usize>> = BTreeMap::new();
    for (phys, host) in final_log.values() {
        if let Some(e) = epoch_at(*phys) {
            in_log
                .entry(e)
                .or_default()
                .insert(owner.get(host).copied().unwrap_or(usize::MAX));
        }
    }
    let w = g.watch.lock().unwrap_or_else(|e| e.into_inner());
    let announced = |a: &Ack| -> Option<u32> {
        w.periods
            .iter()
            .filter(|pd| {
                pd.node == a.node
                    && pd.start.is_none_or(|s| s <= a.phys)
                    && pd.seen_us <= a.at_us + 500_000
            })
            .max_by_key(|pd| pd.seen_us)
            .map(|pd| pd.epoch)
    };
    let acks = std::mem::take(&mut *acks.lock().unwrap_or_else(|e| e.into_inner()));
    let mut by_epoch: BTreeMap<u32, BTreeSet<usize>> = BTreeMap::new();
    let (mut lost, mut lost_old, mut unattributed, mut mismatch, mut after_newer) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    for a in &acks {
        let kept = final_log.get(&a.seq).is_some_and(|(ph, _)| *ph == a.phys);
        let said = announced(a);
        let epoch = if kept {
            let e = epoch_at(a.phys);
            if said.is_some() && said != e {
                mismatch += 1;
            }
            e
        } else {
            lost += 1;
            if said.is_none() {
                unattributed += 1;
            }
            said
        };
        if let Some(e) = epoch {
            if !kept && e < final_epoch {
                lost_old += 1;
            }
            by_epoch.entry(e).or_default().insert(a.node);
            if w.periods
                .iter()
                .any(|pd| pd.epoch > e && pd.seen_us + 50_000 < a.at_us)
            {
                after_newer += 1;
            }
        }
    }
    let dual_log: BTreeSet<u32> = in_log
        .iter()
        .filter(|(_, s)| s.len() > 1)
        .map(|(e, _)| *e)
        .collect();
    let dual: BTreeSet<u32> = by_epoch
        .iter()
        .filter(|(_, s)| s.len() > 1)
        .map(|(e, _)| *e)
        .chain(dual_log.iter().copied())
        .collect();
    // Every other broker's log: each record at the same offset in the
    // final master's.
    let mut diverged = 0u64;
    for j in (0..n).filter(|&j| j != f) {
        let other = scan_log(&g.dir.join(format!("b{}", j + 1)))?;
        diverged += other
            .iter()
            .filter(|(k, (ph, _))| final_log.get(k).is_none_or(|(fp, _)| fp != ph))
            .count() as u64;
    }
    let truncations = w.views.iter().map(|v| v.truncations).sum();
    let truncated_bytes = w.views.iter().map(|v| v.truncated_bytes).sum();
    let named_twice = w.named_twice.len() as u64;
    drop(w);
    let send_errors = std::mem::take(&mut *errors.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(ScheduleResult {
        index,
        seed,
        role: g.role.clone(),
        slaves,
        kind: sched.kind.clone(),
        schedule: {
            let mut b: Vec<String> = g
                .bound
                .iter()
                .map(|(w, i)| format!("{w}=broker {}", i + 1))
                .collect();
            b.sort();
            b.extend(notes);
            format!("{} [{}]", sched.text(), b.join(", "))
        },
        kills: sched.kills(),
        acked: acks.len() as u64,
        acked_lost: lost,
        acked_lost_old_epochs: lost_old,
        dual_master_epochs: dual.len() as u64,
        dual_master_epochs_in_log: dual_log.len() as u64,
        epochs_named_twice: named_twice,
        epochs_with_acks: by_epoch.len() as u64,
        acks_after_newer_epoch: after_newer,
        final_epoch,
        final_master: g.nodes[f].id,
        diverged,
        truncations,
        truncated_bytes,
        unattributed,
        attribution_mismatch: mismatch,
        converge_ms,
        in_sync_full,
        send_errors,
        elapsed_s: started.elapsed().as_secs_f64(),
    })
}

/// Every record of the topic in a store (recovered read-only): key
/// sequence -> (offset, store host).
fn scan_log(dir: &Path) -> Result<HashMap<u64, (u64, SocketAddr)>> {
    let store = crate::inspect::open_read_only(dir)?;
    let mut out = HashMap::new();
    let mut err = None;
    store.scan(store.min_offset(), &mut |r| match r {
        Ok(m) => {
            if m.topic == TOPIC {
                if let Some(seq) = m
                    .keys()
                    .find_map(|k| k.strip_prefix('k').and_then(|s| s.parse::<u64>().ok()))
                {
                    out.insert(seq, (m.phys_offset, m.store_host));
                }
            }
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
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_repeat_and_cover_every_kind() {
        let mut kinds = BTreeSet::new();
        for seed in 0..200u64 {
            let a = schedule(seed, 2, 1000, 3000, None);
            let b = schedule(seed, 2, 1000, 3000, None);
            assert_eq!(a.text(), b.text(), "seed {seed}");
            assert!(!a.steps.is_empty(), "seed {seed}");
            assert!(a.steps.windows(2).all(|w| w[0].0 <= w[1].0), "seed {seed}");
            // Every kill is followed by a restart of the same broker.
            for (t, act) in &a.steps {
                if let Act::Kill(w) = act {
                    assert!(
                        a.steps
                            .iter()
                            .any(|(t2, x)| *t2 >= *t && *x == Act::Restart(*w)),
                        "seed {seed}: {}",
                        a.text()
                    );
                }
            }
            kinds.insert(a.kind.split('(').next().unwrap().to_string());
        }
        assert_eq!(kinds.len(), KINDS.len(), "{kinds:?}");
        // Asked-for kinds only; split needs two slaves.
        let split = vec!["split".to_string()];
        for seed in 0..20u64 {
            assert_eq!(schedule(seed, 2, 1000, 3000, Some(&split)).kind, "split");
            assert_eq!(
                schedule(seed, 1, 1000, 3000, Some(&split)).kind,
                "slave-cut"
            );
        }
        // The default draw does not move (replay commands stay valid).
        assert_eq!(
            schedule(15755402136606700607, 2, 3000, 3000, None).text(),
            "slave-cut: 289 partition S0.all; 2892 heal S0.all; 2905 kill -9 M0; 8878 restart M0"
        );
    }

    #[test]
    fn parses_the_brokers_lines() {
        assert_eq!(
            parse_line("mqlab broker broker-a/2: now master at epoch 3 (HA on 127.0.0.1:4000)\n"),
            Some(Line::Master(3, Some("127.0.0.1:4000".parse().unwrap())))
        );
        assert_eq!(
            parse_line(
                "mqlab broker broker-a/3: now slave of broker 2 (HA 127.0.0.1:9) at epoch 3"
            ),
            Some(Line::Slave(3, 2))
        );
        assert_eq!(
            parse_line("mqlab broker broker-a/1: in-sync set {1} -> {1, 2, 3} (epoch 4)"),
            Some(Line::InSync(vec![1, 2, 3]))
        );
        assert_eq!(
            parse_line("mqlab broker broker-a/1: in-sync set {1} -> {1, 2} refused: fenced"),
            None
        );
        assert_eq!(
            parse_line(
                "mqlab ha: broker 1: commit log cut from 5000 back to 4000 (1000 bytes the master never had)"
            ),
            Some(Line::Truncated(1000))
        );
        assert_eq!(
            parse_line("mqlab ha: truncated /x/commitlog/0 at offset 4000 (1000 bytes): epoch"),
            None
        );
        assert!(parse_line("anything else").is_none());
    }
}
