//! The mqlab lab as a library: workloads against an in-process store or
//! broker (or any remoting broker over TCP: `wire`), the loss-window
//! recorder, run summaries (.json, .csv, .hgrm), charts, specs, crash and
//! delay experiments, the device baseline, and `verify`/`inspect` for
//! store directories.
//!
//! The `mqlab` binary (src/bin/mqlab) only turns its command line into
//! the plain request structs each module takes (`run::RunRequest`,
//! `matrix::MatrixRequest`, ...): nothing here knows about clap's parser.
//! Inside the crate dependencies point one way (checked by
//! scripts/import-circles.py): experiments (`matrix`, `run`, `crash`,
//! `delay`, `messaging`) over `workload`, `recorder`, `summary`, `plot`,
//! `spec`, over `table` and `util`.

#![deny(unsafe_code)]

pub mod baseline;
pub mod charts;
pub mod crash;
pub mod delay;
pub mod faultproxy;
pub mod ha;
pub mod inspect;
pub mod matrix;
pub mod merge;
pub mod messaging;
pub mod peers_wire;
pub mod plot;
pub mod recorder;
pub mod run;
pub mod serve;
pub mod slow_wait;
pub mod spec;
pub mod summary;
pub mod table;
pub mod util;
pub mod verify;
pub mod wire;
pub mod workload;
