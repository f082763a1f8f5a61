//! Delayed sends over loopback TCP, on a broker driven by a manual clock:
//! a `DELAY` level goes to `SCHEDULE_TOPIC_XXXX` and a `TIMER_DELAY_MS`
//! to the time wheel; neither can be pulled from its topic before the
//! clock reaches its due time, both can soon after. Unreadable or too
//! distant delays are MESSAGE_ILLEGAL naming the property, with nothing
//! stored; timers survive a broker restart.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mqlab_broker::remoting::{BrokerHandler, RemotingServer, ServerConfig};
use mqlab_broker::{Broker, BrokerConfig};
use mqlab_engine::clock::{Clock, ManualClock};
use mqlab_engine::{Store, StoreConfig};
use mqlab_protocol::codes::{request, response};
use mqlab_protocol::headers::{pull_sys_flag, PullMessageRequest};
use mqlab_protocol::{encode_frame, RemotingCommand};

struct Setup {
    dir: tempfile::TempDir,
    store: Arc<Store>,
    clock: Arc<ManualClock>,
    broker: Arc<Broker>,
    server: RemotingServer,
}

fn serve(broker: Arc<Broker>) -> RemotingServer {
    let handler = Arc::new(BrokerHandler::new(
        broker,
        "127.0.0.1:10911".parse().unwrap(),
    ));
    RemotingServer::start(
        ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..ServerConfig::default()
        },
        handler,
    )
    .unwrap()
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), StoreConfig::small()).unwrap());
    let clock = ManualClock::new();
    let broker = Broker::open(store.clone(), BrokerConfig::default(), clock.clone()).unwrap();
    let server = serve(broker.clone());
    Setup {
        dir,
        store,
        clock,
        broker,
        server,
    }
}

fn send(addr: SocketAddr, topic: &str, props: &str, body: &str) -> RemotingCommand {
    let req = RemotingCommand::request(request::SEND_MESSAGE_V2, 3)
        .with_field("a", "PG")
        .with_field("b", topic)
        .with_field("d", 4)
        .with_field("e", 0)
        .with_field("i", props)
        .with_body(body.as_bytes().to_vec());
    common::roundtrip(&mut common::connect(addr), &encode_frame(&req).unwrap())
}

fn phys_of(r: &RemotingCommand) -> u64 {
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    u64::from_str_radix(&r.ext_fields["msgId"][16..], 16).unwrap()
}

/// Physical offsets a pull of queue 0 from offset 0 returns (empty when
/// nothing is there), holding the pull up to `hold_ms`.
fn pull(addr: SocketAddr, topic: &str, hold_ms: i64) -> Vec<u64> {
    let req = PullMessageRequest {
        consumer_group: "CG".into(),
        topic: topic.into(),
        queue_id: 0,
        queue_offset: 0,
        max_msg_nums: 32,
        sys_flag: if hold_ms > 0 {
            pull_sys_flag::SUSPEND
        } else {
            0
        },
        commit_offset: 0,
        suspend_timeout_millis: hold_ms,
        subscription: None,
        sub_version: 0,
        expression_type: None,
    };
    let mut cmd = RemotingCommand::request(request::PULL_MESSAGE, 11);
    cmd.ext_fields = req.to_fields();
    let r = common::roundtrip(&mut common::connect(addr), &encode_frame(&cmd).unwrap());
    if r.code == response::PULL_NOT_FOUND {
        return Vec::new();
    }
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    common::record_offsets(&r.body)
}

/// Pulls until something comes, at most 10 s.
fn pull_soon(addr: SocketAddr, topic: &str) -> Vec<u64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = pull(addr, topic, 500);
        if !got.is_empty() {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{topic}: nothing delivered within 10 s"
        );
    }
}

/// Asserts nothing is pullable now, nor 300 ms later.
fn not_yet(addr: SocketAddr, topic: &str) {
    assert!(
        pull(addr, topic, 0).is_empty(),
        "{topic}: delivered at once"
    );
    assert!(
        pull(addr, topic, 300).is_empty(),
        "{topic}: delivered early"
    );
}

#[test]
fn a_delay_level_waits_for_its_time() {
    let s = setup();
    let addr = s.server.local_addr();
    let r = send(
        addr,
        "Later",
        "DELAY\u{1}1\u{2}KEYS\u{1}k\u{2}",
        "in a second",
    );
    let held = s.store.get(phys_of(&r)).unwrap();
    assert_eq!(
        (held.topic.as_str(), held.queue_id),
        ("SCHEDULE_TOPIC_XXXX", 0)
    );
    assert_eq!(held.properties["REAL_TOPIC"], "Later");
    assert_eq!(held.properties["REAL_QID"], "0");
    not_yet(addr, "Later");
    s.clock.advance(999);
    not_yet(addr, "Later");
    s.clock.advance(1);
    let got = pull_soon(addr, "Later");
    assert_eq!(got.len(), 1);
    let m = s.store.get(got[0]).unwrap();
    assert_eq!(m.body, b"in a second");
    assert_eq!(m.properties.get("KEYS").map(String::as_str), Some("k"));
    assert!(!m.properties.contains_key("DELAY"));
    assert!(!m.properties.contains_key("REAL_TOPIC"));

    // Past the last level: the last level (RocketMQ clamps), queue 17.
    let r = send(addr, "Later", "DELAY\u{1}99\u{2}", "in two hours");
    assert_eq!(s.store.get(phys_of(&r)).unwrap().queue_id, 17);
    // DELAY 0 is no delay.
    let r = send(addr, "Now", "DELAY\u{1}0\u{2}", "now");
    assert_eq!(s.store.get(phys_of(&r)).unwrap().topic, "Now");
}

#[test]
fn a_timer_waits_for_its_time_and_survives_a_restart() {
    let s = setup();
    let addr = s.server.local_addr();
    let r = send(addr, "Timer", "TIMER_DELAY_MS\u{1}1500\u{2}", "in 1.5 s");
    let held = s.store.get(phys_of(&r)).unwrap();
    assert_eq!(held.topic, "rmq_sys_wheel_timer");
    assert_eq!(held.properties["REAL_TOPIC"], "Timer");
    not_yet(addr, "Timer");
    s.clock.advance(1_499);
    not_yet(addr, "Timer");
    s.clock.advance(1);
    let got = pull_soon(addr, "Timer");
    assert_eq!(s.store.get(got[0]).unwrap().body, b"in 1.5 s");

    // An absolute time in the past is now.
    let past = s.clock.now_ms() - 10;
    let r = send(
        addr,
        "Timer2",
        &format!("TIMER_DELIVER_MS\u{1}{past}\u{2}"),
        "late",
    );
    assert_eq!(s.store.get(phys_of(&r)).unwrap().topic, "Timer2");

    // A timer pending across a clean restart of the broker.
    let r = send(
        addr,
        "Timer3",
        "TIMER_DELAY_SEC\u{1}60\u{2}",
        "after the restart",
    );
    phys_of(&r);
    let Setup {
        dir,
        store,
        clock,
        broker,
        server,
    } = s;
    server.shutdown();
    broker.shutdown().unwrap();
    drop(broker);
    let broker = Broker::open(store.clone(), BrokerConfig::default(), clock.clone()).unwrap();
    let server = serve(broker);
    let addr = server.local_addr();
    not_yet(addr, "Timer3");
    clock.advance(60_000);
    let got = pull_soon(addr, "Timer3");
    assert_eq!(store.get(got[0]).unwrap().body, b"after the restart");
    drop(dir);
}

#[test]
fn illegal_delays_are_refused_and_store_nothing() {
    let s = setup();
    let addr = s.server.local_addr();
    let four_days = 4 * 86_400_000i64;
    let far = s.clock.now_ms() + four_days;
    let cases = [
        ("DELAY\u{1}abc\u{2}".to_string(), "DELAY"),
        ("DELAY\u{1}1.5\u{2}".to_string(), "DELAY"),
        (
            "TIMER_DELAY_SEC\u{1}soon\u{2}".to_string(),
            "TIMER_DELAY_SEC",
        ),
        (
            format!("TIMER_DELAY_MS\u{1}{four_days}\u{2}"),
            "TIMER_DELAY_MS",
        ),
        (
            format!("TIMER_DELIVER_MS\u{1}{far}\u{2}"),
            "TIMER_DELIVER_MS",
        ),
        (
            format!("TIMER_DELAY_SEC\u{1}{}\u{2}", i64::MAX),
            "TIMER_DELAY_SEC",
        ),
        (
            "TIMER_DELAY_MS\u{1}1000\u{2}TIMER_DEL_UNIQKEY\u{1}x\u{2}".to_string(),
            "TIMER_DEL_UNIQKEY",
        ),
    ];
    let before = s.store.offsets();
    for (props, names) in &cases {
        let r = send(addr, "Refused", props, "x");
        assert_eq!(
            r.code,
            response::MESSAGE_ILLEGAL,
            "{props:?}: {:?}",
            r.remark
        );
        let remark = r.remark.unwrap_or_default();
        assert!(remark.contains(names), "{props:?}: {remark:?}");
    }
    assert_eq!(
        s.store.offsets(),
        before,
        "a refused delay stored something"
    );
    // Three days exactly is accepted.
    let r = send(addr, "Refused", "TIMER_DELAY_SEC\u{1}259200\u{2}", "x");
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
}
