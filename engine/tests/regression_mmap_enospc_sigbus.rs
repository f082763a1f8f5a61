//! Regression (found by `reliability_faults::real_enospc_tmpfs`): with the
//! default `preallocate: false`, the mmap backend maps sparse segment
//! files, and the first write into an unallocated page of a full file
//! system is a SIGBUS that kills the process instead of an ENOSPC the store
//! could refuse with (io/mmap.rs lists the hazard; `preallocate: true`
//! avoids it because fallocate fails cleanly at segment creation). pwrite
//! and io_uring refuse the put with SERVICE_NOT_AVAILABLE and "No space
//! left on device".
//!
//! The fix: the mmap backend reserves the blocks of every writable file it
//! maps (fallocate, whatever `preallocate` says), so a full disk fails the
//! segment's creation with ENOSPC.
//!
//! Needs a small file system: `MQLAB_REL_TMPFS=<dir of a small tmpfs>`,
//! e.g. `mount -t tmpfs -o size=8m tmpfs /tmp/small`. The scenario runs in
//! a child process, since the bug kills it.

use std::path::PathBuf;

use mqlab_engine::{BackendKind, FlushKind, Message, PutStatus, Store, StoreConfig};

const CHILD: &str = "MQLAB_REGRESSION_SIGBUS_CHILD";

#[test]
fn child() {
    let Ok(dir) = std::env::var(CHILD) else {
        return;
    };
    let dir = PathBuf::from(dir).join("store-sigbus");
    let _ = std::fs::remove_dir_all(&dir);
    let mut cfg = StoreConfig::small();
    cfg.backend = BackendKind::Mmap;
    cfg.flush.kind = FlushKind::Sync;
    cfg.segment_bytes = 1 << 20;
    cfg.max_message_bytes = 8 * 1024;
    let store = Store::open(&dir, cfg).unwrap();
    let body = vec![1u8; 4096];
    for i in 0..100_000 {
        let r = store.put(&Message::new("Full", body.clone()).with_keys(format!("k{i}")));
        if r.status != PutStatus::PutOk {
            assert_eq!(r.status, PutStatus::ServiceNotAvailable);
            break;
        }
    }
    drop(store);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn mmap_full_disk_refuses_puts_instead_of_sigbus() {
    let Ok(dir) = std::env::var("MQLAB_REL_TMPFS") else {
        eprintln!("skipping: set MQLAB_REL_TMPFS to a small tmpfs");
        return;
    };
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--nocapture"])
        .env(CHILD, &dir)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(PathBuf::from(&dir).join("store-sigbus"));
    assert!(
        out.status.success(),
        "child: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
