//! Clients of a topic over every broker group that serves it, the route
//! learned from a name server: [`RoutedProducer`] (sends to masters only,
//! failing over to another group) and [`RoutedConsumer`] (pulls each
//! queue where the broker suggests, from a slave when its master is gone).
//!
//! Both follow RocketMQ's client:
//! - the route (GET_ROUTEINFO_BY_TOPIC) is asked again every
//!   `route_refresh` (RocketMQ's `pollNameServerInterval`, 30 s) and at
//!   once after a request to a broker failed;
//! - the producer sends only to a group's master (broker id 0), as
//!   `topicRouteData2TopicPublishInfo` lists queues: a group whose master is
//!   not in the route has no writable queue. A send is tried
//!   `1 + retry_times_when_send_failed` times (`retryTimesWhenSendFailed`,
//!   2); each retry picks the next queue, round robin, on a group other
//!   than the one that just failed (`selectOneMessageQueue(lastBrokerName)`),
//!   after a connection error or a refusal (SERVICE_NOT_AVAILABLE,
//!   SYSTEM_BUSY, ...). A stored-but-not-OK answer (FLUSH_DISK_TIMEOUT,
//!   FLUSH_SLAVE_TIMEOUT, SLAVE_NOT_AVAILABLE) is returned as it is
//!   (`retryAnotherBrokerWhenNotStoreOK` false). No latency fault
//!   tolerance: a dead master is avoided once the route drops it;
//! - the consumer keeps per queue the broker id to pull from next: the
//!   last answer's `suggestWhichBrokerId` (`PullAPIWrapper.updatePullFromWhichNode`),
//!   0 at first. The address is found as `findBrokerAddressInSubscribe(name,
//!   id, onlyThisBroker = false)`: that id, else (a slave id) the next
//!   one, else any broker of the group, the lowest id first: the master
//!   when it is up, a slave when the master is gone;
//! - consumer offsets go to the group's master, or, when it is not in the
//!   route, to any broker of the group (`RemoteBrokerOffsetStore`'s
//!   `findBrokerAddressInSubscribe(name, MASTER_ID, true)`, then `false`
//!   after a route refresh). Pulls never carry the commit flag.
//!
//! mqlab's consumer here is a plain pull consumer of every queue of one
//! topic (no rebalance): [`RoutedConsumer::poll`] pulls each queue once,
//! [`RoutedConsumer::commit`] commits what was returned. A group without
//! an offset on a queue starts at the queue's first offset.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mqlab_broker::types::{MessageQueue, PullRequest, PullStatus};
use mqlab_engine::message::{PutStatus, StoredMessage};
use mqlab_engine::{Message, PutResult};
use mqlab_protocol::body::route::TopicRouteData;

use super::pipelined::{
    lookup_route, resolve_addr, write_queues, RouteQueue, MAX_QUEUES_PER_GROUP,
};
use super::TcpBroker;
use crate::api::BrokerApi;
use crate::error::{Error, Result};

/// RocketMQ's broker id of a master.
pub const MASTER_ID: u64 = 0;

/// A queue of a topic on one broker group.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupQueue {
    /// Broker group.
    pub broker_name: String,
    /// Queue id in that group.
    pub queue_id: u32,
}

/// What a topic's route says: each group's brokers (id -> address) and
/// its queues.
#[derive(Debug, Clone, Default)]
struct RouteView {
    brokers: BTreeMap<String, BTreeMap<u64, SocketAddr>>,
    /// Read queues of every group, by group name.
    read_queues: Vec<GroupQueue>,
    /// Writable queues on masters, RocketMQ's order.
    write_queues: Vec<RouteQueue>,
}

impl RouteView {
    fn of(route: &TopicRouteData) -> RouteView {
        let mut v = RouteView::default();
        for b in &route.broker_datas {
            let addrs = b
                .broker_addrs
                .iter()
                .filter(|(id, _)| **id >= 0)
                .filter_map(|(id, a)| Some((*id as u64, resolve_addr(a).ok()?)))
                .collect();
            v.brokers.insert(b.broker_name.clone(), addrs);
        }
        let mut qds: Vec<_> = route.queue_datas.iter().collect();
        qds.sort_by(|a, b| a.broker_name.cmp(&b.broker_name));
        for q in qds {
            const PERM_READ: i32 = 4;
            if q.perm & PERM_READ == 0 || !v.brokers.contains_key(&q.broker_name) {
                continue;
            }
            let n = (q.read_queue_nums.max(0) as u32).min(MAX_QUEUES_PER_GROUP);
            v.read_queues.extend((0..n).map(|queue_id| GroupQueue {
                broker_name: q.broker_name.clone(),
                queue_id,
            }));
        }
        v.write_queues = write_queues(route, None);
        v
    }

    /// RocketMQ's `MQClientInstance.findBrokerAddressInSubscribe`: the
    /// broker `id` of the group, else (a slave id) `id + 1`, else, unless
    /// `only_this`, any broker of the group (the lowest id).
    fn find(&self, group: &str, id: u64, only_this: bool) -> Option<(u64, SocketAddr)> {
        let map = self.brokers.get(group)?;
        if let Some(a) = map.get(&id) {
            return Some((id, *a));
        }
        if id != MASTER_ID {
            if let Some(a) = map.get(&(id + 1)) {
                return Some((id + 1, *a));
            }
        }
        if only_this {
            return None;
        }
        map.iter().next().map(|(i, a)| (*i, *a))
    }
}

/// The route of one topic, asked again when stale or after a failure.
struct Route {
    namesrv: SocketAddr,
    topic: String,
    refresh: Duration,
    timeout: Duration,
    /// The view and when it was fetched (None: fetch before use).
    view: Mutex<(Arc<RouteView>, Option<Instant>)>,
    /// One client per broker address.
    conns: Mutex<HashMap<SocketAddr, Arc<TcpBroker>>>,
    group: String,
    files: PathBuf,
}

impl Route {
    fn new(namesrv: SocketAddr, topic: &str, group: &str, refresh: Duration) -> Route {
        Route {
            namesrv,
            topic: topic.to_string(),
            refresh,
            timeout: Duration::from_secs(3),
            view: Mutex::new((Arc::new(RouteView::default()), None)),
            conns: Mutex::new(HashMap::new()),
            group: group.to_string(),
            files: std::env::temp_dir().join("mqlab-routed-client"),
        }
    }

    /// The current view, asked again when stale. A failed lookup keeps
    /// the old view (an error only when there never was one).
    fn view(&self) -> Result<Arc<RouteView>> {
        let (v, at) = self.view.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if at.is_some_and(|t| t.elapsed() < self.refresh) {
            return Ok(v);
        }
        match lookup_route(self.namesrv, &self.topic, self.timeout) {
            Ok(r) => {
                let nv = Arc::new(r.as_ref().map(RouteView::of).unwrap_or_default());
                *self.view.lock().unwrap_or_else(|e| e.into_inner()) =
                    (nv.clone(), Some(Instant::now()));
                Ok(nv)
            }
            Err(e) if at.is_none() && v.brokers.is_empty() => Err(e),
            Err(_) => Ok(v),
        }
    }

    /// The next [`Route::view`] asks the name server.
    fn invalidate(&self) {
        self.view.lock().unwrap_or_else(|e| e.into_inner()).1 = None;
    }

    fn conn(&self, addr: SocketAddr) -> Arc<TcpBroker> {
        self.conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(addr)
            .or_insert_with(|| Arc::new(TcpBroker::new(addr, &self.group, self.files.clone())))
            .clone()
    }
}

/// Settings of a [`RoutedProducer`] or [`RoutedConsumer`].
#[derive(Debug, Clone)]
pub struct RoutedConfig {
    /// Producer or consumer group.
    pub group: String,
    /// The route is asked again this often (and after a failed request).
    /// Default 30 s (pollNameServerInterval).
    pub route_refresh: Duration,
    /// Producer: retries of a failed send, each on another group when there
    /// is one. Default 2 (retryTimesWhenSendFailed).
    pub retry_times_when_send_failed: u32,
    /// Consumer: most messages per pull. Default 32 (pullBatchSize).
    pub pull_batch_size: usize,
    /// Producer: a group whose send failed (a connection error or a
    /// refusal) gets no first attempts for this long while another group
    /// has a queue (a coarse `sendLatencyFaultEnable`: RocketMQ isolates a
    /// failed broker for up to 10 minutes). Default None (off, as
    /// RocketMQ's default): only the retry avoids the group that failed.
    pub isolate_failed_group: Option<Duration>,
}

impl Default for RoutedConfig {
    fn default() -> Self {
        RoutedConfig {
            group: "mqlab-routed".into(),
            route_refresh: Duration::from_secs(30),
            retry_times_when_send_failed: 2,
            pull_batch_size: 32,
            isolate_failed_group: None,
        }
    }
}

/// Where a send went and how it ended.
#[derive(Debug, Clone)]
pub struct RoutedSend {
    /// The broker group of the last attempt.
    pub broker_name: String,
    /// The queue id there.
    pub queue_id: u32,
    /// Attempts made (1 = no retry).
    pub attempts: u32,
    /// The last attempt's result.
    pub result: PutResult,
}

impl RoutedSend {
    /// True when the message is stored and acknowledged (SEND_OK).
    pub fn is_ok(&self) -> bool {
        self.result.status == PutStatus::PutOk
    }
}

/// Sends a topic's messages to the masters of every group that serves it,
/// retrying a failed send on another group.
pub struct RoutedProducer {
    route: Route,
    cfg: RoutedConfig,
    next: AtomicUsize,
    /// Groups isolated after a failure, until when.
    isolated: Mutex<HashMap<String, Instant>>,
}

impl std::fmt::Debug for RoutedProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoutedProducer")
            .field("topic", &self.route.topic)
            .finish_non_exhaustive()
    }
}

impl RoutedProducer {
    /// A producer of `topic`, its route from the name server at `namesrv`
    /// (asked at the first send).
    pub fn new(namesrv: SocketAddr, topic: &str, cfg: RoutedConfig) -> RoutedProducer {
        RoutedProducer {
            route: Route::new(namesrv, topic, &cfg.group, cfg.route_refresh),
            cfg,
            next: AtomicUsize::new(0),
            isolated: Mutex::new(HashMap::new()),
        }
    }

    /// The writable queues now (masters only).
    pub fn queues(&self) -> Result<Vec<RouteQueue>> {
        Ok(self.route.view()?.write_queues.clone())
    }

    /// RocketMQ's `TopicPublishInfo.selectOneMessageQueue(lastBrokerName)`:
    /// the next queue round robin, skipping queues of `avoid` and of
    /// isolated groups while another group has one.
    fn select(&self, queues: &[RouteQueue], avoid: Option<&str>) -> RouteQueue {
        let n = queues.len();
        let now = Instant::now();
        let isolated: Vec<String> = {
            let mut m = self.isolated.lock().unwrap_or_else(|e| e.into_inner());
            m.retain(|_, until| *until > now);
            m.keys().cloned().collect()
        };
        if !isolated.is_empty() {
            for _ in 0..n {
                let q = &queues[self.next.fetch_add(1, Ordering::Relaxed) % n];
                if Some(q.broker_name.as_str()) != avoid && !isolated.contains(&q.broker_name) {
                    return q.clone();
                }
            }
        }
        if let Some(avoid) = avoid {
            for _ in 0..n {
                let q = &queues[self.next.fetch_add(1, Ordering::Relaxed) % n];
                if q.broker_name != avoid {
                    return q.clone();
                }
            }
        }
        queues[self.next.fetch_add(1, Ordering::Relaxed) % n].clone()
    }

    /// Sends `msg` (its topic and queue id set here): SEND_OK or a
    /// stored-but-not-OK status at the first attempt that gets one, else
    /// the last failure after `1 + retry_times_when_send_failed` attempts.
    /// An error only when no group has a master in the route.
    pub fn send(&self, msg: &Message) -> Result<RoutedSend> {
        let mut msg = msg.clone();
        msg.topic = self.route.topic.clone();
        let times = 1 + self.cfg.retry_times_when_send_failed;
        let mut last: Option<RoutedSend> = None;
        for attempt in 1..=times {
            let view = self.route.view()?;
            if view.write_queues.is_empty() {
                self.route.invalidate();
                if let Some(l) = last {
                    return Ok(l);
                }
                return Err(Error::Wire(format!(
                    "topic {}: no group with a master in the route",
                    self.route.topic
                )));
            }
            let q = self.select(
                &view.write_queues,
                last.as_ref().map(|l| l.broker_name.as_str()),
            );
            msg.queue_id = q.queue_id;
            let result = self.route.conn(q.broker_addr).send_message(&msg);
            let sent = RoutedSend {
                broker_name: q.broker_name,
                queue_id: q.queue_id,
                attempts: attempt,
                result,
            };
            match sent.result.status {
                // Stored: answered as it is (no retry would be safe from
                // a duplicate, RocketMQ's default).
                PutStatus::PutOk
                | PutStatus::FlushDiskTimeout
                | PutStatus::FlushSlaveTimeout
                | PutStatus::SlaveNotAvailable => return Ok(sent),
                // A message the broker will never take.
                PutStatus::MessageIllegal => return Ok(sent),
                // A connection error or a refusal: another group.
                _ => {
                    if let Some(d) = self.cfg.isolate_failed_group {
                        self.isolated
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(sent.broker_name.clone(), Instant::now() + d);
                    }
                    self.route.invalidate();
                    last = Some(sent);
                }
            }
        }
        Ok(last.expect("at least one attempt"))
    }
}

/// A queue's pull state.
#[derive(Debug, Clone, Default)]
struct QueueState {
    /// Next offset to pull (None: ask the broker for the group's offset).
    next: Option<u64>,
    /// Offset the returned messages end at, not yet committed.
    uncommitted: Option<u64>,
    /// Broker id the next pull goes to (the last suggestion).
    pull_from: u64,
}

/// One queue's pull.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The queue.
    pub queue: GroupQueue,
    /// Broker id that answered.
    pub broker_id: u64,
    /// The broker id it suggested for the next pull.
    pub suggested: u64,
    /// How it ended.
    pub status: PullStatus,
    /// The messages.
    pub msgs: Vec<StoredMessage>,
}

/// One [`RoutedConsumer::poll`].
#[derive(Debug, Default)]
pub struct Poll {
    /// The queues pulled.
    pub pulled: Vec<Pulled>,
    /// The queues that could not be pulled, with why.
    pub failed: Vec<(GroupQueue, Error)>,
}

/// Pulls every queue of a topic over every group, each from the broker
/// last suggested, from a slave when the group's master is gone.
pub struct RoutedConsumer {
    route: Route,
    cfg: RoutedConfig,
    queues: Mutex<BTreeMap<GroupQueue, QueueState>>,
}

impl std::fmt::Debug for RoutedConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoutedConsumer")
            .field("topic", &self.route.topic)
            .field("group", &self.cfg.group)
            .finish_non_exhaustive()
    }
}

impl RoutedConsumer {
    /// A consumer of every queue of `topic` in group `cfg.group`, its
    /// route from the name server at `namesrv`.
    pub fn new(namesrv: SocketAddr, topic: &str, cfg: RoutedConfig) -> RoutedConsumer {
        RoutedConsumer {
            route: Route::new(namesrv, topic, &cfg.group, cfg.route_refresh),
            cfg,
            queues: Mutex::new(BTreeMap::new()),
        }
    }

    fn mq(&self, q: &GroupQueue) -> MessageQueue {
        MessageQueue::new(self.route.topic.clone(), q.queue_id)
    }

    fn state(&self, q: &GroupQueue) -> QueueState {
        self.queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(q)
            .cloned()
            .unwrap_or_default()
    }

    fn set_state(&self, q: &GroupQueue, f: impl FnOnce(&mut QueueState)) {
        f(self
            .queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(q.clone())
            .or_default())
    }

    /// The queues of the route now (every group's read queues).
    pub fn queues(&self) -> Result<Vec<GroupQueue>> {
        Ok(self.route.view()?.read_queues.clone())
    }

    /// The broker id the next pull of `q` goes to (the last suggestion).
    pub fn pull_from(&self, q: &GroupQueue) -> u64 {
        self.state(q).pull_from
    }

    /// Where offsets of `group` go: its master, else (after a route
    /// refresh) any broker of the group.
    fn offset_broker(&self, group: &str) -> Result<(u64, SocketAddr)> {
        if let Some(b) = self.route.view()?.find(group, MASTER_ID, true) {
            return Ok(b);
        }
        self.route.invalidate();
        self.route
            .view()?
            .find(group, MASTER_ID, false)
            .ok_or_else(|| Error::Wire(format!("broker group {group}: no broker in the route")))
    }

    /// The group's committed offset on `q` (None when it has none).
    pub fn committed(&self, q: &GroupQueue) -> Result<Option<u64>> {
        let (_, addr) = self.offset_broker(&q.broker_name)?;
        let r = self
            .route
            .conn(addr)
            .fetch_offset(&self.cfg.group, &self.mq(q));
        if r.is_err() {
            self.route.invalidate();
        }
        r
    }

    /// Pulls `q` once (not held): from the broker last suggested for it,
    /// found as RocketMQ's `findBrokerAddressInSubscribe(.., false)`.
    pub fn pull(&self, q: &GroupQueue) -> Result<Pulled> {
        let st = self.state(q);
        let offset = match st.next {
            Some(o) => o,
            None => self.committed(q)?.unwrap_or(0),
        };
        let found = self.route.view()?.find(&q.broker_name, st.pull_from, false);
        let (id, addr) = match found {
            Some(b) => b,
            None => {
                self.route.invalidate();
                self.route
                    .view()?
                    .find(&q.broker_name, st.pull_from, false)
                    .ok_or_else(|| {
                        Error::Wire(format!(
                            "broker group {}: no broker in the route",
                            q.broker_name
                        ))
                    })?
            }
        };
        let req = PullRequest {
            mq: self.mq(q),
            offset,
            max_msgs: self.cfg.pull_batch_size.max(1),
            filter: None,
            suspend_ms: 0,
        };
        let (r, suggested) =
            match self
                .route
                .conn(addr)
                .pull_suggesting(&req, &self.cfg.group, None)
            {
                Ok(x) => x,
                Err(e) => {
                    self.route.invalidate();
                    return Err(e);
                }
            };
        self.set_state(q, |s| {
            s.pull_from = suggested;
            s.next = Some(r.next_offset);
            if r.status == PullStatus::Found {
                s.uncommitted = Some(r.next_offset);
            }
        });
        Ok(Pulled {
            queue: q.clone(),
            broker_id: id,
            suggested,
            status: r.status,
            msgs: r.msgs,
        })
    }

    /// Pulls every queue once; a queue whose group cannot be reached is
    /// left out (its error in [`Poll::failed`]).
    pub fn poll(&self) -> Result<Poll> {
        let mut p = Poll::default();
        for q in self.queues()? {
            match self.pull(&q) {
                Ok(r) => p.pulled.push(r),
                Err(e) => p.failed.push((q, e)),
            }
        }
        Ok(p)
    }

    /// Commits, on every queue, the offset after the messages returned so
    /// far: to the group's master, or any broker of the group when the
    /// master is not in the route. Returns (queue, broker id it went to)
    /// for each commit made; a failed commit stays pending.
    pub fn commit(&self) -> Result<Vec<(GroupQueue, u64)>> {
        let pending: Vec<(GroupQueue, u64)> = self
            .queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(|(q, s)| Some((q.clone(), s.uncommitted?)))
            .collect();
        let mut done = Vec::new();
        let mut first_err = None;
        for (q, offset) in pending {
            let r = self.offset_broker(&q.broker_name).and_then(|(id, addr)| {
                self.route
                    .conn(addr)
                    .commit_offset(&self.cfg.group, &self.mq(&q), offset)
                    .map(|_| id)
            });
            match r {
                Ok(id) => {
                    self.set_state(&q, |s| {
                        if s.uncommitted == Some(offset) {
                            s.uncommitted = None;
                        }
                    });
                    done.push((q, id));
                }
                Err(e) => {
                    self.route.invalidate();
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) if done.is_empty() => Err(e),
            _ => Ok(done),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mqlab_protocol::body::route::{BrokerData, QueueData};
    use std::collections::BTreeSet;

    fn route(groups: &[(&str, &[(i64, &str)])]) -> TopicRouteData {
        let mut r = TopicRouteData::default();
        for (name, addrs) in groups {
            r.broker_datas.push(BrokerData {
                cluster: "C".into(),
                broker_name: name.to_string(),
                broker_addrs: addrs.iter().map(|(i, a)| (*i, a.to_string())).collect(),
            });
            r.queue_datas.push(QueueData {
                broker_name: name.to_string(),
                read_queue_nums: 2,
                write_queue_nums: 2,
                perm: 6,
                topic_sys_flag: 0,
            });
        }
        r
    }

    #[test]
    fn brokers_are_found_as_rocketmq_finds_them() {
        let v = RouteView::of(&route(&[
            ("a", &[(0, "127.0.0.1:1"), (1, "127.0.0.1:2")]),
            ("b", &[(2, "127.0.0.1:3")]),
        ]));
        let a = |p| Some(SocketAddr::from(([127, 0, 0, 1], p)));
        assert_eq!(v.find("a", 0, false).map(|x| x.1), a(1));
        assert_eq!(v.find("a", 1, false).map(|x| x.1), a(2));
        // A slave id missing: the next one, else anyone.
        assert_eq!(v.find("b", 1, true).map(|x| x.1), a(3));
        assert_eq!(v.find("b", 0, true), None);
        assert_eq!(v.find("b", 0, false), Some((2, a(3).unwrap())));
        assert_eq!(v.find("c", 0, false), None);
        // Reads over both groups, writes on a's master only.
        assert_eq!(v.read_queues.len(), 4);
        assert_eq!(v.write_queues.len(), 2);
        assert!(v.write_queues.iter().all(|q| q.broker_name == "a"));
    }

    #[test]
    fn a_retry_avoids_the_group_that_failed() {
        let p = RoutedProducer::new("127.0.0.1:1".parse().unwrap(), "T", RoutedConfig::default());
        let v = RouteView::of(&route(&[
            ("a", &[(0, "127.0.0.1:1")]),
            ("b", &[(0, "127.0.0.1:2")]),
        ]));
        for _ in 0..10 {
            assert_eq!(p.select(&v.write_queues, Some("a")).broker_name, "b");
            assert_eq!(p.select(&v.write_queues, Some("b")).broker_name, "a");
        }
        let only_a = RouteView::of(&route(&[("a", &[(0, "127.0.0.1:1")])]));
        assert_eq!(p.select(&only_a.write_queues, Some("a")).broker_name, "a");
        // Isolated: no first attempt on a while b has queues, until it ends.
        p.isolated
            .lock()
            .unwrap()
            .insert("a".into(), Instant::now() + Duration::from_millis(200));
        for _ in 0..10 {
            assert_eq!(p.select(&v.write_queues, None).broker_name, "b");
        }
        assert_eq!(p.select(&only_a.write_queues, None).broker_name, "a");
        std::thread::sleep(Duration::from_millis(250));
        let picked: BTreeSet<String> = (0..4)
            .map(|_| p.select(&v.write_queues, None).broker_name)
            .collect();
        assert_eq!(picked.len(), 2, "{picked:?}");
    }
}
