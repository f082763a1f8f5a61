//! mqlab-engine: a RocketMQ-compatible message store with pluggable I/O
//! backends, flush strategies and delay schedulers, built to be measured.
//!
//! See `engine/FORMAT.md` for the on-disk formats and the repository's
//! `ARCHITECTURE.md` for the modules, the threads, the offsets (written,
//! committed, flushed, acked), the loss window and how a put travels.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod clock;
pub mod config;
pub mod config_file;
pub mod delay;
pub mod device;
pub mod error;
pub mod flush;
pub mod index;
pub mod io;
pub mod lock;
pub mod log;
pub mod message;
pub mod queue;
pub mod retention;
pub mod series;
pub mod service;
pub mod store;
pub mod topic;

pub use config::StoreConfig;
pub use error::{Error, Result};
pub use flush::{FlushConfig, FlushKind};
pub use io::{BackendKind, Env};
pub use message::{AppendOffsets, Message, Offsets, PutResult, PutStatus, StoredMessage};
pub use store::{QueueInfo, RecoveryReport, ReplicaGate, Store, Truncation};
