//! The controller's replicated state (RocketMQ's `ReplicasInfoManager`):
//! per broker group (broker name) the registered replicas, the master and
//! its epoch, and the in-sync replica set (SyncStateSet) with its own
//! epoch. It changes only by applying [`Command`]s in Raft log order, so
//! every controller holds the same state; whatever depends on time or on
//! who is alive (heartbeats) is decided by the leader before it proposes
//! and travels inside the command ([`Candidate`]s), so applying stays
//! deterministic.
//!
//! Election ([`Command::Elect`], RocketMQ's `DefaultElectPolicy`): a group
//! whose master is still among the alive candidates keeps it; otherwise
//! the new master is the alive member of the SyncStateSet with the
//! highest (epoch, max offset), ties to the lowest broker id; with
//! `unclean`, any alive registered replica when no member is alive. The
//! master epoch goes up by one, the SyncStateSet becomes the new master
//! alone (its slaves rejoin it as they catch up) and its epoch goes up.
//! No candidate: the group is left without a master (epochs unchanged)
//! until one comes back. A group that never had a master elects the
//! first broker that registers (RocketMQ's first-time election).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::codes;

/// One broker of a group as registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replica {
    /// Its remoting address (`host:port`).
    pub addr: String,
    /// Where it serves slaves when it is master (`host:port`).
    pub ha_addr: String,
}

/// A broker group's replication state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// Cluster name, as last registered.
    pub cluster: String,
    /// Broker id -> replica.
    pub replicas: BTreeMap<u64, Replica>,
    /// The master's broker id, if the group has one.
    pub master: Option<u64>,
    /// Bumped by every election that names a master; 0 before the first.
    pub master_epoch: u32,
    /// The in-sync replicas (the master included).
    pub sync_state_set: BTreeSet<u64>,
    /// Bumped by every change of the set.
    pub sync_state_set_epoch: u32,
}

impl Group {
    /// The master's replica entry.
    pub fn master_replica(&self) -> Option<(u64, &Replica)> {
        let id = self.master?;
        self.replicas.get(&id).map(|r| (id, r))
    }
}

/// An alive broker the leader offers for an election, with what its last
/// heartbeat said.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    /// Broker id.
    pub id: u64,
    /// The newest master epoch it knows.
    pub epoch: u32,
    /// Its commit log's end.
    pub max_offset: u64,
}

/// A change to the state, as proposed through Raft.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// CONTROLLER_REGISTER_BROKER: adds or updates a replica; elects it
    /// when its group never had a master.
    Register {
        /// Cluster name.
        cluster: String,
        /// Broker group.
        group: String,
        /// Broker id (>= 1, stable for a broker's life).
        id: u64,
        /// Remoting address.
        addr: String,
        /// HA address.
        ha_addr: String,
    },
    /// Elect a master among `candidates` (the alive brokers of the group);
    /// `designated` names the only acceptable one (CONTROLLER_ELECT_MASTER
    /// from an operator).
    Elect {
        /// Broker group.
        group: String,
        /// Alive brokers.
        candidates: Vec<Candidate>,
        /// Elect outside the SyncStateSet when none of it is alive.
        unclean: bool,
        /// Only this broker may be elected.
        designated: Option<u64>,
    },
    /// CONTROLLER_ALTER_SYNC_STATE_SET from the master.
    AlterSyncStateSet {
        /// Broker group.
        group: String,
        /// Who asks (must be the master).
        master: u64,
        /// The master epoch it holds.
        master_epoch: u32,
        /// The set epoch it last saw.
        sync_state_set_epoch: u32,
        /// The new set (must contain the master).
        new_set: BTreeSet<u64>,
    },
}

impl Command {
    /// The group a command is about.
    pub fn group(&self) -> &str {
        match self {
            Command::Register { group, .. }
            | Command::Elect { group, .. }
            | Command::AlterSyncStateSet { group, .. } => group,
        }
    }
}

/// What applying a command answered: a remoting response code
/// (`SUCCESS` or a CONTROLLER_* code), a remark, and the group after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// Response code.
    pub code: i32,
    /// Why, for a refusal.
    pub remark: Option<String>,
    /// The group as it is now (None: unknown group).
    pub group: Option<Group>,
    /// True when the command changed the master.
    pub master_changed: bool,
}

/// Every group, by broker name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaState {
    /// Groups by broker name.
    pub groups: BTreeMap<String, Group>,
}

impl ReplicaState {
    /// A group, if known.
    pub fn group(&self, name: &str) -> Option<&Group> {
        self.groups.get(name)
    }

    /// Applies `cmd` (deterministic: the same state and command always
    /// give the same state and outcome).
    pub fn apply(&mut self, cmd: &Command) -> Outcome {
        let name = cmd.group().to_string();
        let (code, remark, master_changed) = match cmd {
            Command::Register {
                cluster,
                id,
                addr,
                ha_addr,
                ..
            } => {
                let g = self.groups.entry(name.clone()).or_default();
                if *id == 0 {
                    (
                        codes::CONTROLLER_BROKER_ID_INVALID,
                        Some("broker id 0 is the route's master id; replicas are 1..".into()),
                        false,
                    )
                } else {
                    g.cluster = cluster.clone();
                    g.replicas.insert(
                        *id,
                        Replica {
                            addr: addr.clone(),
                            ha_addr: ha_addr.clone(),
                        },
                    );
                    let first = g.master.is_none() && g.master_epoch == 0;
                    if first {
                        g.master = Some(*id);
                        g.master_epoch = 1;
                        g.sync_state_set = BTreeSet::from([*id]);
                        g.sync_state_set_epoch += 1;
                    }
                    (codes::SUCCESS, None, first)
                }
            }
            Command::Elect {
                candidates,
                unclean,
                designated,
                ..
            } => match self.groups.get_mut(&name) {
                None => (
                    codes::CONTROLLER_BROKER_METADATA_NOT_EXIST,
                    Some(format!("no broker of group {name} registered")),
                    false,
                ),
                Some(g) => elect(g, candidates, *unclean, *designated),
            },
            Command::AlterSyncStateSet {
                master,
                master_epoch,
                sync_state_set_epoch,
                new_set,
                ..
            } => match self.groups.get_mut(&name) {
                None => (
                    codes::CONTROLLER_BROKER_METADATA_NOT_EXIST,
                    Some(format!("no broker of group {name} registered")),
                    false,
                ),
                Some(g) => {
                    let r = if g.master != Some(*master) || g.master_epoch != *master_epoch {
                        Err((
                            codes::CONTROLLER_FENCED_MASTER_EPOCH,
                            format!(
                                "broker {master} at epoch {master_epoch} is not the master (master {:?}, epoch {})",
                                g.master, g.master_epoch
                            ),
                        ))
                    } else if g.sync_state_set_epoch != *sync_state_set_epoch {
                        Err((
                            codes::CONTROLLER_FENCED_SYNC_STATE_SET_EPOCH,
                            format!(
                                "sync state set epoch {sync_state_set_epoch} is stale (now {})",
                                g.sync_state_set_epoch
                            ),
                        ))
                    } else if !new_set.contains(master) {
                        Err((
                            codes::CONTROLLER_INVALID_REQUEST,
                            "the new sync state set must contain the master".into(),
                        ))
                    } else if let Some(x) = new_set.iter().find(|i| !g.replicas.contains_key(i)) {
                        Err((
                            codes::CONTROLLER_INVALID_REPLICAS,
                            format!("broker {x} is not registered in {name}"),
                        ))
                    } else {
                        Ok(())
                    };
                    match r {
                        Err((c, why)) => (c, Some(why), false),
                        Ok(()) => {
                            if g.sync_state_set != *new_set {
                                g.sync_state_set = new_set.clone();
                                g.sync_state_set_epoch += 1;
                            }
                            (codes::SUCCESS, None, false)
                        }
                    }
                }
            },
        };
        Outcome {
            code,
            remark,
            group: self.groups.get(&name).cloned(),
            master_changed,
        }
    }
}

fn elect(
    g: &mut Group,
    candidates: &[Candidate],
    unclean: bool,
    designated: Option<u64>,
) -> (i32, Option<String>, bool) {
    let alive = |id: u64| candidates.iter().any(|c| c.id == id);
    if let Some(m) = g.master {
        if alive(m) && designated.is_none_or(|d| d == m) {
            return (
                codes::CONTROLLER_MASTER_STILL_EXIST,
                Some(format!("broker {m} is master and alive")),
                false,
            );
        }
    }
    let registered: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| g.replicas.contains_key(&c.id))
        .filter(|c| designated.is_none_or(|d| d == c.id))
        .collect();
    let mut pool: Vec<&Candidate> = registered
        .iter()
        .copied()
        .filter(|c| g.sync_state_set.contains(&c.id))
        .collect();
    if pool.is_empty() && unclean {
        pool = registered;
    }
    // Highest epoch, then highest offset, then lowest id.
    let best = pool
        .into_iter()
        .max_by(|a, b| (a.epoch, a.max_offset, b.id).cmp(&(b.epoch, b.max_offset, a.id)));
    match best {
        Some(c) => {
            g.master = Some(c.id);
            g.master_epoch += 1;
            g.sync_state_set = BTreeSet::from([c.id]);
            g.sync_state_set_epoch += 1;
            (codes::SUCCESS, None, true)
        }
        None => {
            let changed = g.master.take().is_some();
            (
                codes::CONTROLLER_MASTER_NOT_AVAILABLE,
                Some(format!(
                    "no alive broker of the sync state set {:?}{}",
                    g.sync_state_set,
                    if unclean { " nor any other" } else { "" }
                )),
                changed,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(id: u64) -> Command {
        Command::Register {
            cluster: "C".into(),
            group: "g".into(),
            id,
            addr: format!("127.0.0.1:{}", 10_000 + id),
            ha_addr: format!("127.0.0.1:{}", 20_000 + id),
        }
    }

    fn cand(id: u64, epoch: u32, max_offset: u64) -> Candidate {
        Candidate {
            id,
            epoch,
            max_offset,
        }
    }

    fn elect_cmd(c: Vec<Candidate>, unclean: bool) -> Command {
        Command::Elect {
            group: "g".into(),
            candidates: c,
            unclean,
            designated: None,
        }
    }

    fn alter(master: u64, epoch: u32, set_epoch: u32, set: &[u64]) -> Command {
        Command::AlterSyncStateSet {
            group: "g".into(),
            master,
            master_epoch: epoch,
            sync_state_set_epoch: set_epoch,
            new_set: set.iter().copied().collect(),
        }
    }

    #[test]
    fn first_registration_is_master_then_elections_stay_in_sync() {
        let mut s = ReplicaState::default();
        let o = s.apply(&reg(1));
        assert!(o.master_changed);
        let g = o.group.unwrap();
        assert_eq!(
            (g.master, g.master_epoch, g.sync_state_set_epoch),
            (Some(1), 1, 1)
        );
        for id in [2, 3] {
            let o = s.apply(&reg(id));
            assert_eq!(o.code, codes::SUCCESS);
            assert!(!o.master_changed);
        }
        assert_eq!(s.group("g").unwrap().replicas.len(), 3);
        assert_eq!(s.apply(&reg(0)).code, codes::CONTROLLER_BROKER_ID_INVALID);

        // Broker 2 caught up: {1, 2}.
        assert_eq!(s.apply(&alter(1, 1, 1, &[1, 2])).code, codes::SUCCESS);
        // Stale epochs are fenced; the master must stay in the set.
        assert_eq!(
            s.apply(&alter(1, 1, 1, &[1, 2, 3])).code,
            codes::CONTROLLER_FENCED_SYNC_STATE_SET_EPOCH
        );
        assert_eq!(
            s.apply(&alter(2, 1, 2, &[2])).code,
            codes::CONTROLLER_FENCED_MASTER_EPOCH
        );
        assert_eq!(
            s.apply(&alter(1, 1, 2, &[2])).code,
            codes::CONTROLLER_INVALID_REQUEST
        );
        assert_eq!(
            s.apply(&alter(1, 1, 2, &[1, 9])).code,
            codes::CONTROLLER_INVALID_REPLICAS
        );

        // The master is alive: no election.
        let o = s.apply(&elect_cmd(vec![cand(1, 1, 10), cand(2, 1, 10)], false));
        assert_eq!(o.code, codes::CONTROLLER_MASTER_STILL_EXIST);

        // Master 1 dead; 3 has more bytes but is out of sync: 2 wins.
        let o = s.apply(&elect_cmd(vec![cand(2, 1, 100), cand(3, 1, 500)], false));
        assert_eq!(o.code, codes::SUCCESS);
        assert!(o.master_changed);
        let g = o.group.unwrap();
        assert_eq!(g.master, Some(2));
        assert_eq!(g.master_epoch, 2);
        assert_eq!(g.sync_state_set, BTreeSet::from([2]));
        assert_eq!(g.sync_state_set_epoch, 3);

        // 2 dies too: 3 is not in sync, so no master (clean)...
        let o = s.apply(&elect_cmd(vec![cand(3, 1, 500)], false));
        assert_eq!(o.code, codes::CONTROLLER_MASTER_NOT_AVAILABLE);
        assert!(o.master_changed);
        assert_eq!(s.group("g").unwrap().master, None);
        assert_eq!(s.group("g").unwrap().master_epoch, 2);
        // ...unless unclean.
        let o = s.apply(&elect_cmd(vec![cand(3, 1, 500)], true));
        assert_eq!(o.code, codes::SUCCESS);
        let g = o.group.unwrap();
        assert_eq!((g.master, g.master_epoch), (Some(3), 3));
        // A registration does not elect in a group that had a master.
        s.groups.get_mut("g").unwrap().master = None;
        assert!(!s.apply(&reg(1)).master_changed);
    }

    #[test]
    fn election_prefers_epoch_then_offset_then_lowest_id() {
        let mut s = ReplicaState::default();
        for id in 1..=4 {
            s.apply(&reg(id));
        }
        s.apply(&alter(1, 1, 1, &[1, 2, 3, 4]));
        let o = s.apply(&elect_cmd(
            vec![cand(2, 1, 900), cand(3, 2, 100), cand(4, 2, 100)],
            false,
        ));
        assert_eq!(o.group.unwrap().master, Some(3));
        // Designated: only that one.
        let mut d = ReplicaState::default();
        for id in 1..=3 {
            d.apply(&reg(id));
        }
        d.apply(&alter(1, 1, 1, &[1, 2, 3]));
        let o = d.apply(&Command::Elect {
            group: "g".into(),
            candidates: vec![cand(1, 1, 9), cand(2, 1, 9), cand(3, 1, 1)],
            unclean: false,
            designated: Some(3),
        });
        assert_eq!((o.code, o.group.unwrap().master), (codes::SUCCESS, Some(3)));
        assert_eq!(
            d.apply(&elect_cmd(vec![], false)).code,
            codes::CONTROLLER_MASTER_NOT_AVAILABLE
        );
        assert_eq!(
            ReplicaState::default()
                .apply(&elect_cmd(vec![], false))
                .code,
            codes::CONTROLLER_BROKER_METADATA_NOT_EXIST
        );
    }

    #[test]
    fn replaying_the_same_commands_gives_the_same_state() {
        use rand::{Rng, SeedableRng};
        let seed = 0x5eed_c0de;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut cmds = Vec::new();
        for _ in 0..500 {
            let id = rng.random_range(1..5u64);
            cmds.push(match rng.random_range(0..3) {
                0 => reg(id),
                1 => {
                    let mut c = Vec::new();
                    for i in 1..5 {
                        if rng.random_bool(0.5) {
                            c.push(cand(i, rng.random_range(0..4), rng.random_range(0..1000)));
                        }
                    }
                    elect_cmd(c, rng.random_bool(0.2))
                }
                _ => alter(
                    id,
                    rng.random_range(0..5),
                    rng.random_range(0..8),
                    &[id, rng.random_range(1..5)],
                ),
            });
        }
        let (mut a, mut b) = (ReplicaState::default(), ReplicaState::default());
        for c in &cmds {
            let bytes = serde_json::to_vec(c).unwrap();
            let back: Command = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(a.apply(c), b.apply(&back), "seed {seed:#x}");
            if let Some(g) = a.group("g") {
                if let Some(m) = g.master {
                    assert!(g.sync_state_set.contains(&m), "seed {seed:#x}: {g:?}");
                }
            }
        }
        assert_eq!(a, b, "seed {seed:#x}");
    }
}
