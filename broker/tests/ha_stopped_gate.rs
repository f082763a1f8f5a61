//! A SYNC_MASTER whose HA side stopped never acknowledges a put on its
//! local flush alone (issue 14).
//!
//! Regression: stopping a master's HA side removed its store's replica
//! gate, so until the next role's service started (or the store entered
//! slave mode) a put was answered PUT_OK without any slave having it. A
//! deposed SYNC_MASTER acknowledged that way what its successor never had
//! (`mqlab ha --failover`, one kill on a loaded machine: 3 acknowledged
//! messages lost). Now the stopped service leaves a gate that answers
//! FLUSH_SLAVE_TIMEOUT, blocking and asynchronous puts alike, and the next
//! master's service replaces it.

use std::net::TcpListener;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use mqlab_broker::ha::{BrokerRole, HaConfig, HaService};
use mqlab_engine::{FlushKind, Message, PutStatus, Store, StoreConfig};

fn ha(role: BrokerRole) -> HaConfig {
    HaConfig {
        role,
        heartbeat_interval_ms: 200,
        slave_timeout_ms: 200,
        ..HaConfig::default()
    }
}

fn start(store: &Arc<Store>, role: BrokerRole) -> HaService {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    HaService::start(store.clone(), ha(role), Some(listener)).unwrap()
}

fn put_async(store: &Store, msg: &Message) -> PutStatus {
    let (tx, rx) = mpsc::channel();
    store.put_async(
        msg,
        Box::new(move |r: mqlab_engine::PutResult| {
            let _ = tx.send(r.status);
        }),
    );
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the put answered")
}

#[test]
fn a_stopped_sync_master_acknowledges_nothing_unreplicated() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = StoreConfig::small();
    cfg.flush.kind = FlushKind::Group;
    let store = Arc::new(Store::open(dir.path(), cfg).unwrap());
    let msg = Message::new("GateTopic", b"body".to_vec());

    // Running, with no slave: nobody can confirm.
    let mut ha = start(&store, BrokerRole::SyncMaster);
    assert_eq!(store.put(&msg).status, PutStatus::SlaveNotAvailable);
    // Stopped (as in a role switch): written, never PUT_OK.
    ha.shutdown();
    let blocking = store.put(&msg);
    assert_eq!(
        blocking.status,
        PutStatus::FlushSlaveTimeout,
        "{:?}",
        blocking.detail
    );
    assert_eq!(put_async(&store, &msg), PutStatus::FlushSlaveTimeout);
    // The next role's service replaces the stopped gate: an ASYNC_MASTER
    // acknowledges on its flush again...
    let mut next = start(&store, BrokerRole::AsyncMaster);
    assert_eq!(store.put(&msg).status, PutStatus::PutOk);
    assert_eq!(put_async(&store, &msg), PutStatus::PutOk);
    next.shutdown();
    // ...and a SYNC_MASTER waits for its slaves again.
    let mut again = start(&store, BrokerRole::SyncMaster);
    assert_eq!(store.put(&msg).status, PutStatus::SlaveNotAvailable);
    again.shutdown();
}
