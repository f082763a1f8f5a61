//! The route table (see the module docs of `namesrv`).

use std::collections::{BTreeMap, BTreeSet};

use mqlab_protocol::body::register::TopicConfig;
use mqlab_protocol::body::route::{BrokerData, QueueData, TopicRouteData};

/// A broker unheard of for this long is dropped (RocketMQ's
/// `BROKER_CHANNEL_EXPIRED_TIME`, 120 s).
pub const BROKER_EXPIRED_MS: i64 = 120_000;

/// One REGISTER_BROKER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// Cluster name.
    pub cluster: String,
    /// Broker group name.
    pub broker_name: String,
    /// 0 for the master, 1.. for slaves.
    pub broker_id: i64,
    /// "host:port" clients connect to.
    pub broker_addr: String,
    /// "host:port" of its HA service.
    pub ha_addr: String,
    /// Its topics (only a master's are routed).
    pub topics: Vec<TopicConfig>,
}

impl Registration {
    /// A master (id 0) of `broker_name` in DefaultCluster at `addr`
    /// serving `topics` with `queues` queues each.
    pub fn master(broker_name: &str, addr: &str, topics: &[&str], queues: i32) -> Self {
        Registration {
            cluster: "DefaultCluster".into(),
            broker_name: broker_name.into(),
            broker_id: 0,
            broker_addr: addr.into(),
            ha_addr: String::new(),
            topics: topics.iter().map(|t| TopicConfig::new(t, queues)).collect(),
        }
    }
}

#[derive(Debug, Clone)]
struct Live {
    broker_name: String,
    last_ms: i64,
    ha_addr: String,
}

/// Brokers, their topics and their liveness.
#[derive(Debug, Default)]
pub struct RouteTable {
    /// Broker group -> (cluster, id -> address).
    brokers: BTreeMap<String, (String, BTreeMap<i64, String>)>,
    /// Topic -> broker group -> queues.
    topics: BTreeMap<String, BTreeMap<String, QueueData>>,
    /// Address -> liveness.
    live: BTreeMap<String, Live>,
}

impl RouteTable {
    /// An empty table.
    pub fn new() -> Self {
        RouteTable::default()
    }

    /// Records a registration at `now_ms`. Returns the group master's
    /// (address, HA address) when the registrant is a slave and the master
    /// is known (RocketMQ answers a slave with them).
    pub fn register(&mut self, r: &Registration, now_ms: i64) -> Option<(String, String)> {
        let entry = self
            .brokers
            .entry(r.broker_name.clone())
            .or_insert_with(|| (r.cluster.clone(), BTreeMap::new()));
        entry.0 = r.cluster.clone();
        // One address per id, one id per address: a broker that moved or
        // changed role replaces its old entry.
        entry
            .1
            .retain(|id, addr| *id != r.broker_id && *addr != r.broker_addr);
        entry.1.insert(r.broker_id, r.broker_addr.clone());
        if r.broker_id == 0 {
            let announced: BTreeSet<&str> =
                r.topics.iter().map(|t| t.topic_name.as_str()).collect();
            for t in &r.topics {
                self.topics.entry(t.topic_name.clone()).or_default().insert(
                    r.broker_name.clone(),
                    QueueData {
                        broker_name: r.broker_name.clone(),
                        read_queue_nums: t.read_queue_nums,
                        write_queue_nums: t.write_queue_nums,
                        perm: t.perm,
                        topic_sys_flag: t.topic_sys_flag,
                    },
                );
            }
            // Topics the master no longer serves leave its routes.
            for (topic, groups) in self.topics.iter_mut() {
                if !announced.contains(topic.as_str()) {
                    groups.remove(&r.broker_name);
                }
            }
            self.topics.retain(|_, g| !g.is_empty());
        }
        self.live.insert(
            r.broker_addr.clone(),
            Live {
                broker_name: r.broker_name.clone(),
                last_ms: now_ms,
                ha_addr: r.ha_addr.clone(),
            },
        );
        if r.broker_id == 0 {
            return None;
        }
        let master = self.brokers.get(&r.broker_name)?.1.get(&0)?.clone();
        let ha = self
            .live
            .get(&master)
            .map(|l| l.ha_addr.clone())
            .unwrap_or_default();
        Some((master, ha))
    }

    /// Removes the broker at `addr` (UNREGISTER_BROKER, or expiry).
    pub fn unregister(&mut self, addr: &str) {
        let Some(live) = self.live.remove(addr) else {
            return;
        };
        let mut group_gone = false;
        if let Some((_, addrs)) = self.brokers.get_mut(&live.broker_name) {
            addrs.retain(|_, a| a != addr);
            group_gone = addrs.is_empty();
        }
        // A group without anyone serves nothing: its queues go. A group
        // that lost only its master keeps them (RocketMQ's
        // `cleanTopicByUnRegisterRequests` keeps a reduced group's queue
        // data): consumers read them from a slave, producers skip a group
        // without a broker 0.
        if group_gone {
            for groups in self.topics.values_mut() {
                groups.remove(&live.broker_name);
            }
            self.topics.retain(|_, g| !g.is_empty());
        }
        if group_gone {
            self.brokers.remove(&live.broker_name);
        }
    }

    /// Drops brokers not heard from since `now_ms - BROKER_EXPIRED_MS`;
    /// returns their addresses.
    pub fn expire(&mut self, now_ms: i64) -> Vec<String> {
        let dead: Vec<String> = self
            .live
            .iter()
            .filter(|(_, l)| now_ms - l.last_ms > BROKER_EXPIRED_MS)
            .map(|(a, _)| a.clone())
            .collect();
        for a in &dead {
            self.unregister(a);
        }
        dead
    }

    /// The route of `topic`, or None when no live master serves it
    /// (TOPIC_NOT_EXIST).
    pub fn route(&self, topic: &str) -> Option<TopicRouteData> {
        let groups = self.topics.get(topic)?;
        let mut out = TopicRouteData::default();
        for (name, q) in groups {
            let Some((cluster, addrs)) = self.brokers.get(name) else {
                continue;
            };
            out.queue_datas.push(q.clone());
            out.broker_datas.push(BrokerData {
                cluster: cluster.clone(),
                broker_name: name.clone(),
                broker_addrs: addrs.clone(),
            });
        }
        (!out.queue_datas.is_empty()).then_some(out)
    }

    /// Cluster name -> broker group names (GET_BROKER_CLUSTER_INFO).
    pub fn clusters(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (name, (cluster, _)) in &self.brokers {
            out.entry(cluster.clone()).or_default().insert(name.clone());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(name: &str, id: i64, addr: &str, topics: &[(&str, i32)]) -> Registration {
        Registration {
            broker_id: id,
            ha_addr: format!("{addr}-ha"),
            topics: topics
                .iter()
                .map(|(t, q)| TopicConfig::new(t, *q))
                .collect(),
            ..Registration::master(name, addr, &[], 0)
        }
    }

    #[test]
    fn two_groups_master_and_slave() {
        let mut t = RouteTable::new();
        assert!(t
            .register(&reg("a", 0, "127.0.0.1:10911", &[("T", 4), ("U", 2)]), 0)
            .is_none());
        // A slave learns its master's address and HA address.
        let m = t.register(&reg("a", 1, "127.0.0.1:10921", &[]), 0);
        assert_eq!(
            m,
            Some(("127.0.0.1:10911".into(), "127.0.0.1:10911-ha".into()))
        );
        t.register(&reg("b", 0, "127.0.0.1:10931", &[("T", 8)]), 0);
        let r = t.route("T").unwrap();
        assert_eq!(r.queue_datas.len(), 2);
        let a = r
            .broker_datas
            .iter()
            .find(|b| b.broker_name == "a")
            .unwrap();
        assert_eq!(a.broker_addrs.len(), 2);
        assert_eq!(a.broker_addrs[&1], "127.0.0.1:10921");
        assert_eq!(t.route("U").unwrap().queue_datas.len(), 1);
        assert!(t.route("V").is_none());
        assert_eq!(t.clusters()["DefaultCluster"].len(), 2);
        // The master of a stops serving U.
        t.register(&reg("a", 0, "127.0.0.1:10911", &[("T", 4)]), 1);
        assert!(t.route("U").is_none());
    }

    #[test]
    fn a_dead_master_leaves_its_queues_to_the_slave_and_expiry_drops_the_silent() {
        let mut t = RouteTable::new();
        t.register(&reg("a", 0, "m-a", &[("T", 4)]), 0);
        t.register(&reg("a", 1, "s-a", &[]), 0);
        t.register(&reg("b", 0, "m-b", &[("T", 4)]), 100_000);
        t.unregister("m-a");
        // a's queues stay (read from its slave), the group without a
        // broker 0; b lives on.
        let r = t.route("T").unwrap();
        assert_eq!(r.queue_datas.len(), 2);
        let a = r
            .broker_datas
            .iter()
            .find(|b| b.broker_name == "a")
            .unwrap();
        assert_eq!(a.broker_addrs.keys().copied().collect::<Vec<_>>(), vec![1]);
        assert_eq!(t.clusters()["DefaultCluster"].len(), 2);
        let gone = t.expire(BROKER_EXPIRED_MS + 50_000);
        assert_eq!(gone, vec!["s-a".to_string()]);
        assert_eq!(t.clusters()["DefaultCluster"].len(), 1);
        let r = t.route("T").unwrap();
        assert_eq!(r.queue_datas.len(), 1);
        assert_eq!(r.queue_datas[0].broker_name, "b");
        t.expire(BROKER_EXPIRED_MS * 3);
        assert!(t.route("T").is_none());
        assert!(t.clusters().is_empty());
    }

    #[test]
    fn a_moved_broker_replaces_its_old_address() {
        let mut t = RouteTable::new();
        t.register(&reg("a", 0, "old:1", &[("T", 4)]), 0);
        t.register(&reg("a", 0, "new:1", &[("T", 4)]), 1);
        let r = t.route("T").unwrap();
        assert_eq!(r.broker_datas[0].broker_addrs.len(), 1);
        assert_eq!(r.broker_datas[0].broker_addrs[&0], "new:1");
    }
}
