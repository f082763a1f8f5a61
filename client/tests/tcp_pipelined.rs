//! The pipelined sender (`mqlab_client::tcp::pipelined`): thousands of
//! sends in flight over two connections to a broker on loopback, each
//! answered once and stored; against a server that never answers every
//! send times out and nothing hangs; against servers that answer garbage
//! every send fails, and nothing panics.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mqlab_broker::node::{Node, NodeConfig};
use mqlab_client::tcp::pipelined::{
    PipelinedConfig, PipelinedSender, RoutedSender, SendError, SendReply,
};
use mqlab_engine::message::PROPERTY_KEYS;
use mqlab_engine::{FlushKind, Message, StoreConfig};
use mqlab_protocol::codes::response;
use mqlab_protocol::{decode_frame, encode_frame, Limits, RemotingCommand};

fn node(dir: &std::path::Path, namesrv: bool) -> Node {
    let mut store = StoreConfig::small();
    store.flush.kind = FlushKind::Group;
    Node::start(NodeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        embedded_namesrv: namesrv.then(|| "127.0.0.1:0".parse().unwrap()),
        store,
        ..NodeConfig::new(dir.join("store"))
    })
    .unwrap()
}

/// Sends `n` messages of topic `topic` (queue `i % queues`, key `k<i>`)
/// and waits for every answer; returns them by message number, failing
/// the test if one is answered twice or an answer is missing after
/// `secs`.
fn send_all(
    n: usize,
    secs: u64,
    mut send: impl FnMut(usize, Message, Box<dyn FnOnce(SendReply) + Send>),
) -> Vec<SendReply> {
    let (tx, rx) = mpsc::channel::<(usize, SendReply)>();
    for i in 0..n {
        let mut m = Message::new("Pipe", format!("pipelined-{i}").into_bytes());
        m.properties.insert(PROPERTY_KEYS.into(), format!("k{i}"));
        let tx = tx.clone();
        send(
            i,
            m,
            Box::new(move |r| {
                let _ = tx.send((i, r));
            }),
        );
    }
    drop(tx);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut got: HashMap<usize, SendReply> = HashMap::new();
    while got.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        let (i, r) = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("{} of {n} answered within {secs} s", got.len()));
        assert!(got.insert(i, r).is_none(), "send {i} answered twice");
    }
    // Nothing more comes: every callback was called once.
    assert!(rx.recv_timeout(Duration::from_millis(100)).is_err());
    (0..n).map(|i| got.remove(&i).unwrap()).collect()
}

/// Every queue of `per_queue` (queue id -> the queue offsets sent to it)
/// holds offsets 0..`n`, each once, in any order.
fn assert_offsets_once(per_queue: HashMap<u32, Vec<u64>>, n: u64) {
    for (q, mut offs) in per_queue {
        offs.sort_unstable();
        assert_eq!(offs, (0..n).collect::<Vec<u64>>(), "queue {q}");
    }
}

#[test]
fn five_thousand_sends_with_a_thousand_in_flight_over_two_connections() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path(), false);
    node.broker().create_topic("Pipe", 4).unwrap();
    let sender = PipelinedSender::connect(
        node.addr(),
        PipelinedConfig {
            connections: 2,
            max_in_flight: 1000,
            timeout: Duration::from_secs(30),
            ..PipelinedConfig::default()
        },
    )
    .unwrap();
    let peak = Arc::new(AtomicUsize::new(0));
    let replies = send_all(5000, 60, |i, mut m, cb| {
        m.queue_id = (i % 4) as u32;
        sender.send(&m, cb);
        let now = sender.in_flight();
        assert!(now <= 1000, "{now} in flight");
        peak.fetch_max(now, Ordering::Relaxed);
    });
    assert!(sender.wait_idle(Duration::from_secs(5)));
    assert_eq!(sender.in_flight(), 0);
    // The bound was reached: sends were pipelined, not one at a time.
    assert!(peak.load(Ordering::Relaxed) > 100, "peak {peak:?}");
    let store = node.store();
    let mut per_queue: HashMap<u32, Vec<u64>> = HashMap::new();
    for (i, r) in replies.iter().enumerate() {
        let sent = r
            .result
            .as_ref()
            .unwrap_or_else(|e| panic!("send {i}: {e}"));
        assert!(sent.is_ok(), "send {i}: code {}", sent.code);
        assert_eq!(sent.queue_id, (i % 4) as u32);
        let phys = sent.phys_offset().expect("an offset message id");
        let m = store.get(phys).unwrap();
        assert_eq!(m.body, format!("pipelined-{i}").into_bytes());
        assert_eq!(m.properties[PROPERTY_KEYS], format!("k{i}"));
        assert_eq!(
            (m.queue_id, m.queue_offset),
            (sent.queue_id, sent.queue_offset)
        );
        per_queue
            .entry(m.queue_id)
            .or_default()
            .push(m.queue_offset);
    }
    // Every queue offset once: 1,250 messages per queue, offsets 0..1250.
    assert_offsets_once(per_queue, 1250);
    drop(sender);
    node.shutdown().unwrap();
}

#[test]
fn routed_sends_find_the_broker_through_the_name_server() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path(), true);
    let ns = node.embedded_namesrv().unwrap();
    // A topic nobody created: sent where the node routes TBW102, with the
    // configured default queue count, which the broker creates at the
    // first send (autoCreateTopicEnable).
    let t = Instant::now();
    let fresh = PipelinedConfig {
        default_topic_queue_nums: 2,
        ..PipelinedConfig::default()
    };
    let auto = loop {
        match RoutedSender::connect(ns, "Fresh", fresh.clone()) {
            Ok(r) => break r,
            Err(e) => {
                assert!(t.elapsed() < Duration::from_secs(15), "{e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    assert!(auto.auto_create());
    assert_eq!(auto.queues().len(), 2);
    for r in send_all(20, 30, |i, mut m, cb| auto.send(&mut m, i, cb)) {
        assert!(r.result.unwrap().is_ok());
    }
    assert_eq!(node.broker().topic_queues("Fresh"), Some(2));
    node.broker().create_topic("Pipe", 3).unwrap();
    // The registrar announces the new topic within a second or so (until
    // then its route is TBW102's).
    let t = Instant::now();
    let routed = loop {
        let r = RoutedSender::connect(ns, "Pipe", PipelinedConfig::default()).unwrap();
        if !r.auto_create() {
            break r;
        }
        assert!(t.elapsed() < Duration::from_secs(15), "Pipe never routed");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(routed.queues().len(), 3);
    assert!(!routed.auto_create());
    assert_eq!(routed.queues()[0].broker_addr, node.addr());
    let replies = send_all(300, 30, |i, mut m, cb| routed.send(&mut m, i, cb));
    // Round robin over the 3 queues; two connections may reorder sends
    // within a queue, so each queue holds offsets 0..100 in some order.
    let mut per_queue: HashMap<u32, Vec<u64>> = HashMap::new();
    for (i, r) in replies.iter().enumerate() {
        let s = r.result.as_ref().unwrap();
        assert_eq!(s.queue_id, (i % 3) as u32);
        per_queue
            .entry(s.queue_id)
            .or_default()
            .push(s.queue_offset);
    }
    assert_offsets_once(per_queue, 100);
    drop(routed);
    node.shutdown().unwrap();
}

/// A server on loopback that accepts connections and hands each to
/// `serve` on its own thread.
fn server(serve: impl Fn(TcpStream) + Send + Sync + 'static) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let serve = Arc::new(serve);
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let serve = serve.clone();
            std::thread::spawn(move || serve(s));
        }
    });
    addr
}

/// Reads requests off `s` and calls `each` with every one decoded.
fn requests(mut s: TcpStream, mut each: impl FnMut(&mut TcpStream, RemotingCommand) -> bool) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        let n = match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        while let Ok(Some((cmd, used))) = decode_frame(&buf, &Limits::default()) {
            buf.drain(..used);
            if !each(&mut s, cmd) {
                return;
            }
        }
    }
}

fn frame(cmd: RemotingCommand) -> Vec<u8> {
    encode_frame(&cmd).unwrap()
}

/// A SUCCESS answer to request `opaque` with no fields.
fn bare_success(opaque: i32) -> RemotingCommand {
    RemotingCommand {
        code: response::SUCCESS,
        opaque,
        flag: 1,
        ..RemotingCommand::default()
    }
}

fn small(timeout_ms: u64) -> PipelinedConfig {
    PipelinedConfig {
        connections: 2,
        max_in_flight: 64,
        timeout: Duration::from_millis(timeout_ms),
        connect_timeout: Duration::from_secs(2),
        ..PipelinedConfig::default()
    }
}

#[test]
fn a_server_that_never_answers_times_every_send_out() {
    let addr = server(|s| requests(s, |_, _| true));
    let sender = PipelinedSender::connect(addr, small(200)).unwrap();
    let t = Instant::now();
    // 300 sends through 64 slots: each wave waits for the previous one's
    // timeouts, so this also shows that a timeout frees its slot.
    let replies = send_all(300, 30, |_, m, cb| sender.send(&m, cb));
    for r in &replies {
        assert_eq!(
            r.result,
            Err(SendError::Timeout(Duration::from_millis(200)))
        );
        assert!(r.latency >= Duration::from_millis(200), "{:?}", r.latency);
    }
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    assert_eq!(sender.in_flight(), 0);
    // Close with sends pending: they fail at once, nothing waits.
    let (tx, rx) = mpsc::channel();
    for _ in 0..10 {
        let tx = tx.clone();
        sender.send(&Message::new("Pipe", b"x".to_vec()), move |r| {
            let _ = tx.send(r);
        });
    }
    sender.close();
    for _ in 0..10 {
        let r = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(
            matches!(r.result, Err(SendError::Connection(_))),
            "{:?}",
            r.result
        );
    }
    // Closed: later sends fail immediately.
    let r = send_all(1, 5, |_, m, cb| sender.send(&m, cb));
    assert_eq!(r[0].result, Err(SendError::Closed));
}

#[test]
fn garbage_from_the_server_fails_the_sends_and_nothing_panics() {
    // What hostile servers answer to a request with opaque `o`.
    type Answer = fn(i32) -> Vec<u8>;
    let answers: Vec<(&str, Answer)> = vec![
        ("random bytes", |_| {
            let mut s = 0x9E37_79B9_7F4A_7C15u64;
            (0..4096)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    s as u8
                })
                .collect()
        }),
        ("a negative frame length", |_| {
            vec![0xff, 0xff, 0xff, 0xf0, 1, 2, 3]
        }),
        ("a 2 GiB frame length", |_| {
            vec![0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0]
        }),
        ("a header longer than its frame", |_| {
            vec![0, 0, 0, 8, 0, 0xff, 0xff, 0xff, b'{', b'}', 0, 0]
        }),
        ("a header that is not JSON", |_| {
            let mut f = vec![0, 0, 0, 9, 0, 0, 0, 5];
            f.extend_from_slice(b"{{{{{");
            f
        }),
    ];
    for (what, make) in answers {
        let addr = server(move |s| {
            requests(s, |s, req| {
                let _ = s.write_all(&make(req.opaque));
                true
            })
        });
        let sender = PipelinedSender::connect(addr, small(2000)).unwrap();
        let replies = send_all(50, 30, |_, m, cb| sender.send(&m, cb));
        for r in &replies {
            assert!(
                matches!(
                    r.result,
                    Err(SendError::Connection(_) | SendError::Timeout(_))
                ),
                "{what}: {:?}",
                r.result
            );
        }
        assert!(
            replies
                .iter()
                .any(|r| matches!(&r.result, Err(SendError::Connection(w)) if w.contains("undecodable") || w.contains("closed"))),
            "{what}: {replies:?}"
        );
        assert_eq!(sender.in_flight(), 0, "{what}");
    }
    // Well-formed frames with answers that do not decode as a send's.
    let bad_answers: Vec<Answer> = vec![
        |o| frame(bare_success(o)),
        |o| {
            frame(
                bare_success(o)
                    .with_field("msgId", "x")
                    .with_field("queueOffset", "-5"),
            )
        },
        |o| {
            frame(
                bare_success(o)
                    .with_field("msgId", "x")
                    .with_field("queueId", "nine"),
            )
        },
    ];
    let seen = Arc::new(Mutex::new(0usize));
    for make in bad_answers {
        let addr = server(move |s| {
            requests(s, |s, req| {
                // An answer to a request never made, then the bad one.
                let _ = s.write_all(&frame(bare_success(req.opaque.wrapping_add(1_000_000))));
                let _ = s.write_all(&make(req.opaque));
                true
            })
        });
        let sender = PipelinedSender::connect(addr, small(2000)).unwrap();
        for r in send_all(50, 30, |_, m, cb| sender.send(&m, cb)) {
            assert!(
                matches!(r.result, Err(SendError::BadAnswer(_))),
                "{:?}",
                r.result
            );
            *seen.lock().unwrap() += 1;
        }
    }
    assert_eq!(*seen.lock().unwrap(), 150);
    // A refusal is an error with its code.
    let addr = server(|s| {
        requests(s, |s, req| {
            let busy = RemotingCommand::response_to(
                &req,
                response::SYSTEM_BUSY,
                Some("[TIMEOUT_CLEAN_QUEUE] broker busy".into()),
            );
            let _ = s.write_all(&encode_frame(&busy).unwrap());
            true
        })
    });
    let sender = PipelinedSender::connect(addr, small(2000)).unwrap();
    for r in send_all(20, 30, |_, m, cb| sender.send(&m, cb)) {
        let e = r.result.unwrap_err();
        assert_eq!(e.kind(), "SYSTEM_BUSY", "{e}");
    }
}

#[test]
fn a_topic_without_a_route_is_a_clear_error() {
    // A name server that knows no topic, not even TBW102.
    let ns = server(|s| {
        requests(s, |s, req| {
            let none = RemotingCommand::response_to(
                &req,
                response::TOPIC_NOT_EXIST,
                Some("no route".into()),
            );
            let _ = s.write_all(&frame(none));
            true
        })
    });
    let e = RoutedSender::connect(ns, "Pipe", PipelinedConfig::default()).unwrap_err();
    assert!(e.to_string().contains("create the topic"), "{e}");
    // Nothing listening: an error, not a hang.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let gone = l.local_addr().unwrap();
    drop(l);
    assert!(RoutedSender::connect(gone, "Pipe", PipelinedConfig::default()).is_err());
}

#[test]
fn a_dead_broker_fails_sends_and_a_restarted_one_is_reconnected() {
    // The server closes every connection after its first request.
    let served = Arc::new(AtomicUsize::new(0));
    let s2 = served.clone();
    let addr = server(move |s| {
        let served = s2.clone();
        requests(s, move |s, req| {
            served.fetch_add(1, Ordering::Relaxed);
            let ok = RemotingCommand::response_to(&req, response::SUCCESS, None)
                .with_field("msgId", "7F00000100002A9F0000000000000400")
                .with_field("queueId", 0)
                .with_field("queueOffset", 0);
            let _ = s.write_all(&encode_frame(&ok).unwrap());
            false
        })
    });
    let sender = PipelinedSender::connect(
        addr,
        PipelinedConfig {
            connections: 1,
            max_in_flight: 1,
            timeout: Duration::from_secs(2),
            ..PipelinedConfig::default()
        },
    )
    .unwrap();
    // One at a time: the first is answered, the connection closes; later
    // sends fail until a reconnect (once a second) succeeds.
    let t = Instant::now();
    let mut ok = 0;
    while ok < 3 {
        let r = send_all(1, 10, |_, m, cb| sender.send(&m, cb));
        if r[0].result.is_ok() {
            ok += 1;
        } else {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(t.elapsed() < Duration::from_secs(20));
    }
    assert!(served.load(Ordering::Relaxed) >= 3);
}
