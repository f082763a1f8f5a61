//! Requests the broker pushes to a `TcpBroker` on its control connection:
//! a transactional producer is asked about half messages whose end never
//! came (CHECK_TRANSACTION_STATE) and its answer commits or rolls them
//! back; a consumer rebalances when a member joins (NOTIFY_CONSUMER_IDS_
//! CHANGED), long before its own timer, also after its control connection
//! was cut and re-opened; and whatever bytes a broker pushes, the client
//! ignores what it does not understand, closes a connection that does not
//! decode, and opens a new one.

mod messaging_support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use messaging_support::*;
use mqlab_broker::txn::{PROPERTY_PRODUCER_GROUP, PROPERTY_TRANSACTION_PREPARED};
use mqlab_broker::types::{CheckTransactionStateRequest, ConsumerData, HeartbeatRequest};
use mqlab_broker::{ClientChannel, LocalTransactionState as S, Subscription};
use mqlab_client::api::BrokerApi;
use mqlab_client::consumer::pull::PullConsumer;
use mqlab_client::consumer::push::PushConsumer;
use mqlab_client::consumer::{ConsumeStatus, Listener};
use mqlab_client::producer::ProducerConfig;
use mqlab_client::tcp::TcpBroker;
use mqlab_client::transaction::{TransactionListener, TransactionProducer};
use mqlab_engine::message::StoredMessage;
use mqlab_engine::Message;
use mqlab_protocol::codes::{request, response};
use mqlab_protocol::{decode_frame, encode_frame, Limits, RemotingCommand, FLAG_ONEWAY};
use rand::{Rng, SeedableRng};

/// Local transactions whose outcome is decided later, by body; counts the
/// checks per body.
#[derive(Default)]
struct Ledger {
    decided: Mutex<HashMap<String, S>>,
    asked: Mutex<HashMap<String, usize>>,
}

impl TransactionListener for Ledger {
    fn execute_local(&self, _msg: &Message) -> S {
        S::Unknown
    }
    fn check_local(&self, msg: &StoredMessage) -> S {
        let body = String::from_utf8_lossy(&msg.body).into_owned();
        *self.asked.lock().unwrap().entry(body.clone()).or_default() += 1;
        self.decided
            .lock()
            .unwrap()
            .get(&body)
            .copied()
            .unwrap_or(S::Unknown)
    }
}

#[test]
fn transactional_producer_answers_checks_over_tcp() {
    let mut cfg = broker_config();
    cfg.txn.check_enabled = true;
    cfg.txn.check_interval_ms = 50;
    cfg.txn.timeout_ms = 100;
    let lab = Lab::with(Transport::Tcp, cfg);
    lab.broker.create_topic("Ledger", 2).unwrap();
    let ledger = Arc::new(Ledger::default());
    let tcp = lab.tcp().unwrap();
    let tp = TransactionProducer::start(
        tcp.clone(),
        ProducerConfig {
            group: "ledger".into(),
            ..ProducerConfig::default()
        },
        ledger.clone(),
    );
    // One half message of this producer, its local outcome not known yet.
    let r = tp.send_in_transaction(Message::new("Ledger", "pay-1"));
    assert!(r.send.is_ok(), "{:?}", r.send);
    assert_eq!(r.state, S::Unknown);
    // One of a producer of the group that died before ending it: unknown
    // to this producer but for its ledger.
    let dead = lab.tcp().unwrap();
    let mut m = Message::new("Ledger", "pay-2");
    m.properties
        .insert(PROPERTY_TRANSACTION_PREPARED.into(), "true".into());
    m.properties
        .insert(PROPERTY_PRODUCER_GROUP.into(), "ledger".into());
    assert!(dead.send_message(&m).is_ok());
    drop(dead);
    wait_for(5, "two pending", || lab.broker.pending_transactions() == 2);
    // Asked while undecided, they stay pending.
    wait_for(10, "both asked", || ledger.asked.lock().unwrap().len() == 2);
    assert_eq!(lab.broker.pending_transactions(), 2);
    {
        let mut d = ledger.decided.lock().unwrap();
        d.insert("pay-1".into(), S::CommitMessage);
        d.insert("pay-2".into(), S::RollbackMessage);
    }
    wait_for(10, "both resolved by checks", || {
        lab.broker.pending_transactions() == 0
    });
    let reader = PullConsumer::assign(
        lab.api(),
        consumer_config("ledger-reader", "r"),
        &lab.broker.queues_of("Ledger"),
        "*",
    )
    .unwrap();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while seen.is_empty() && Instant::now() < deadline {
        seen.extend(
            reader
                .poll(10, Duration::from_millis(50))
                .iter()
                .map(|m| String::from_utf8_lossy(&m.body).into_owned()),
        );
    }
    // Anything rolled back would have shown up with the commit.
    seen.extend(
        reader
            .poll(10, Duration::from_millis(100))
            .iter()
            .map(|m| String::from_utf8_lossy(&m.body).into_owned()),
    );
    assert_eq!(
        seen,
        vec!["pay-1"],
        "committed by its check, pay-2 rolled back"
    );
    let checks = tcp.push_stats().checks.load(Ordering::Relaxed);
    let asked: usize = ledger.asked.lock().unwrap().values().sum();
    eprintln!("checks pushed {checks}, answered {asked}");
    assert!(checks >= 4 && asked >= 4, "asked twice each at least");
    reader.shutdown().unwrap();
    tp.shutdown();
    drop((tp, tcp));
    lab.shutdown();
}

/// Starts a member of `group` on `api` with a rebalance timer of 10
/// minutes: only NOTIFY_CONSUMER_IDS_CHANGED moves its queues in time.
fn member(api: Arc<dyn BrokerApi>, group: &str, client: &str) -> PushConsumer {
    let mut cfg = consumer_config(group, client);
    cfg.rebalance_interval_ms = 600_000;
    PushConsumer::start(
        api,
        cfg,
        &[("N", "*")],
        Listener::concurrently(|_, _| ConsumeStatus::ConsumeSuccess),
    )
    .unwrap()
}

#[test]
fn consumer_rebalances_on_notify_over_tcp() {
    let lab = Lab::new(Transport::Tcp);
    lab.broker.create_topic("N", 4).unwrap();
    let tcp_a = lab.tcp().unwrap();
    let a = member(tcp_a.clone(), "gn", "a");
    wait_for(5, "a owns all", || owned(&a, "N") == 4);
    let joined = Instant::now();
    let b = member(lab.api(), "gn", "b");
    wait_for(5, "a gives two queues to b", || {
        owned(&a, "N") == 2 && owned(&b, "N") == 2
    });
    eprintln!("a rebalanced {:?} after b joined", joined.elapsed());
    assert!(tcp_a.push_stats().notifies.load(Ordering::Relaxed) >= 2);
    b.shutdown().unwrap();
    wait_for(5, "a takes all back when b leaves", || owned(&a, "N") == 4);
    a.shutdown().unwrap();
    drop(tcp_a);
    lab.shutdown();
}

/// A TCP proxy whose connections can be cut.
struct Proxy {
    addr: SocketAddr,
    open: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    fn to(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (o, s) = (open.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Acquire) {
                let Ok((down, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                down.set_nonblocking(false).unwrap();
                let Ok(up) = TcpStream::connect(upstream) else {
                    continue;
                };
                let mut o = o.lock().unwrap();
                o.push(down.try_clone().unwrap());
                o.push(up.try_clone().unwrap());
                for (mut from, mut to) in [
                    (down.try_clone().unwrap(), up.try_clone().unwrap()),
                    (up, down),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Both);
                        let _ = from.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Proxy { addr, open, stop }
    }

    /// Closes every connection through the proxy.
    fn cut(&self) {
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.cut();
    }
}

#[test]
fn pushes_resume_after_the_control_connection_is_cut() {
    let lab = Lab::new(Transport::Tcp);
    lab.broker.create_topic("N", 4).unwrap();
    let proxy = Proxy::to(lab.addr().unwrap());
    let tcp_a = Arc::new(
        TcpBroker::new(proxy.addr, "PG", lab.dir.path().join("a"))
            .with_heartbeat_interval(Duration::from_millis(200)),
    );
    let a = member(tcp_a.clone(), "gr", "a");
    wait_for(5, "a owns all", || owned(&a, "N") == 4);
    let stats = tcp_a.push_stats();
    assert_eq!(stats.connects.load(Ordering::Relaxed), 1);
    let beats = stats.heartbeats.load(Ordering::Relaxed);
    proxy.cut();
    wait_for(5, "a new control connection, a registered again", || {
        stats.connects.load(Ordering::Relaxed) >= 2
            && stats.heartbeats.load(Ordering::Relaxed) > beats
    });
    assert_eq!(lab.broker.consumer_ids("gr"), vec!["a".to_string()]);
    let b = member(lab.api(), "gr", "b");
    wait_for(5, "a hears of b on its new connection", || {
        owned(&a, "N") == 2 && owned(&b, "N") == 2
    });
    b.shutdown().unwrap();
    a.shutdown().unwrap();
    // Its repeated heartbeats end with its unregister: it stays gone.
    std::thread::sleep(Duration::from_millis(500));
    assert!(lab.broker.consumer_ids("gr").is_empty());
    drop((tcp_a, proxy));
    lab.shutdown();
}

/// A channel counting what reaches it.
#[derive(Default)]
struct Counting {
    notified: AtomicUsize,
    checked: AtomicUsize,
}

impl ClientChannel for Counting {
    fn check_transaction_state(&self, _req: CheckTransactionStateRequest) {
        self.checked.fetch_add(1, Ordering::SeqCst);
    }
    fn notify_consumer_ids_changed(&self, _group: &str) {
        self.notified.fetch_add(1, Ordering::SeqCst);
    }
}

/// The broker's side of a fake connection.
struct Peer {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Peer {
    fn accept(l: &TcpListener) -> Peer {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match l.accept() {
                Ok((s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(Duration::from_millis(100)))
                        .unwrap();
                    return Peer { s, buf: Vec::new() };
                }
                Err(_) => {
                    assert!(Instant::now() < deadline, "the client did not connect");
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }

    /// The next frame, or None once the client closed the connection.
    fn read_one(&mut self) -> Option<RemotingCommand> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut chunk = [0u8; 4096];
        loop {
            if let Some((cmd, used)) = decode_frame(&self.buf, &Limits::default()).unwrap() {
                self.buf.drain(..used);
                return Some(cmd);
            }
            assert!(Instant::now() < deadline, "nothing from the client");
            match self.s.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return None,
            }
        }
    }

    /// The next frame that is not a heartbeat (heartbeats are answered),
    /// or None once the client closed the connection.
    fn next(&mut self) -> Option<RemotingCommand> {
        loop {
            let cmd = self.read_one()?;
            if cmd.code == request::HEART_BEAT && !cmd.is_response() {
                self.send(&RemotingCommand::response_to(&cmd, response::SUCCESS, None));
                continue;
            }
            return Some(cmd);
        }
    }

    /// Answers the heartbeat a new connection starts with.
    fn answer_heartbeat(&mut self) {
        let hb = self.read_one().expect("a heartbeat");
        assert_eq!(hb.code, request::HEART_BEAT);
        self.send(&RemotingCommand::response_to(&hb, response::SUCCESS, None));
    }

    fn send(&mut self, cmd: &RemotingCommand) {
        let _ = self.s.write_all(&encode_frame(cmd).unwrap());
    }

    fn push(&mut self, mut cmd: RemotingCommand) {
        cmd.flag |= FLAG_ONEWAY;
        self.send(&cmd);
    }

    /// Waits until the client closes the connection.
    fn closed(&mut self) {
        while self.next().is_some() {}
    }
}

#[test]
fn pushed_bytes_never_break_the_client() {
    let seed = seed(7);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let client = Arc::new(
        TcpBroker::new(l.local_addr().unwrap(), "PG", dir.path().to_path_buf())
            .with_heartbeat_interval(Duration::from_millis(100)),
    );
    let ch = Arc::new(Counting::default());
    let hb = HeartbeatRequest {
        client_id: "x".into(),
        producer_groups: vec!["pg".into()],
        consumers: vec![ConsumerData {
            group: "g".into(),
            subscriptions: vec![Subscription::new("T", "*")],
        }],
    };
    let (c, h, chan) = (client.clone(), hb.clone(), ch.clone());
    let first = std::thread::spawn(move || c.heartbeat(&h, chan));
    let mut peer = Peer::accept(&l);
    peer.answer_heartbeat();
    first.join().unwrap().unwrap();

    // Unknown codes: ignored; one that wants an answer is told so.
    peer.push(RemotingCommand::request(9999, 1));
    peer.send(&RemotingCommand::request(9998, 2));
    let r = peer.next().expect("an answer");
    assert!(r.is_response());
    assert_eq!(
        (r.code, r.opaque),
        (response::REQUEST_CODE_NOT_SUPPORTED, 2)
    );
    // Malformed or not for us: ignored.
    peer.push(RemotingCommand::request(
        request::NOTIFY_CONSUMER_IDS_CHANGED,
        3,
    ));
    peer.push(
        RemotingCommand::request(request::NOTIFY_CONSUMER_IDS_CHANGED, 4)
            .with_field("consumerGroup", "other"),
    );
    peer.push(
        RemotingCommand::request(request::CHECK_TRANSACTION_STATE, 5)
            .with_field("producerGroup", "pg")
            .with_field("commitLogOffset", 0)
            .with_body(vec![0, 0, 0, 40, 1, 2, 3]),
    );
    peer.push(
        RemotingCommand::request(request::CHECK_TRANSACTION_STATE, 6)
            .with_field("producerGroup", "pg")
            .with_field("commitLogOffset", "minus one"),
    );
    // Then one for us.
    peer.push(
        RemotingCommand::request(request::NOTIFY_CONSUMER_IDS_CHANGED, 7)
            .with_field("consumerGroup", "g"),
    );
    wait_for(5, "the notify", || ch.notified.load(Ordering::SeqCst) == 1);
    assert_eq!(ch.checked.load(Ordering::SeqCst), 0);
    let stats = client.push_stats();
    assert_eq!(stats.ignored.load(Ordering::Relaxed), 6);

    // Random frames and bytes, then a length past the frame cap: the
    // client closes the connection, and its next heartbeat opens another.
    for round in 0..30 {
        let mut bytes = Vec::new();
        for _ in 0..rng.random_range(1..4) {
            let frame = match rng.random_range(0..3) {
                // Random header and body behind a true length.
                0 => {
                    let n = rng.random_range(4..600);
                    let mut f = (n as u32).to_be_bytes().to_vec();
                    f.extend((0..n).map(|_| rng.random::<u8>()));
                    f
                }
                // A well-formed check with a random body and offset.
                1 => encode_frame(&{
                    let mut c = RemotingCommand::request(request::CHECK_TRANSACTION_STATE, round)
                        .with_field("producerGroup", "pg")
                        .with_field("commitLogOffset", rng.random::<i64>())
                        .with_body(
                            (0..rng.random_range(0..300))
                                .map(|_| rng.random())
                                .collect(),
                        );
                    if rng.random() {
                        // A plausible record size first.
                        let n = c.body.len() as u32;
                        if n >= 4 {
                            c.body[..4].copy_from_slice(&n.to_be_bytes());
                        }
                    }
                    c.flag |= FLAG_ONEWAY;
                    c
                })
                .unwrap(),
                // A well-formed push of a random code with random fields.
                _ => encode_frame(&{
                    let mut c = RemotingCommand::request(rng.random_range(0..100), round)
                        .with_field("consumerGroup", format!("g{}", rng.random::<u8>()))
                        .with_body((0..rng.random_range(0..64)).map(|_| rng.random()).collect());
                    c.flag = rng.random_range(0..4) & !1;
                    c
                })
                .unwrap(),
            };
            bytes.extend(frame);
        }
        bytes.extend(u32::MAX.to_be_bytes());
        let _ = peer.s.write_all(&bytes);
        peer.closed();
        peer = Peer::accept(&l);
        peer.answer_heartbeat();
    }
    assert!(stats.connects.load(Ordering::Relaxed) >= 31);
    // Still dispatching.
    peer.push(
        RemotingCommand::request(request::NOTIFY_CONSUMER_IDS_CHANGED, 8)
            .with_field("consumerGroup", "g"),
    );
    wait_for(5, "a notify after the noise", || {
        ch.notified.load(Ordering::SeqCst) == 2
    });
    assert_eq!(ch.checked.load(Ordering::SeqCst), 0);
    // Dropping the client closes its connection and ends its threads.
    drop(client);
    peer.closed();
}
