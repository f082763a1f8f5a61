//! `mqlab`: the lab around the mqlab storage engine. It runs workloads
//! against an in-process store and records what each flush strategy and I/O
//! backend costs (throughput, ack latency, device ratios) and what it can
//! lose (the loss window, proven by simulated crashes), then draws charts.
//!
//! With no subcommand it runs `mqlab matrix`, so `cargo run --release` is
//! the whole experiment.

#![deny(unsafe_code)]

mod baseline;
mod cli;
mod crash;
mod delay;
mod inspect;
mod matrix;
mod messaging;
mod plot;
mod recorder;
mod run;
mod spec;
mod summary;
mod util;
mod verify;
mod workload;

use clap::Parser;

use cli::{Cli, Command, MatrixArgs};

fn main() {
    let cli = Cli::parse();
    util::install_ctrlc();
    let result = match cli.command {
        Some(Command::Run(a)) => run::cmd_run(a),
        Some(Command::Matrix(a)) => matrix::cmd_matrix(a),
        None => matrix::cmd_matrix(MatrixArgs::parse_default()),
        Some(Command::Baseline(a)) => baseline::cmd_baseline(a),
        Some(Command::Crash(a)) => crash::cmd_crash(a),
        Some(Command::Verify(a)) => verify::cmd_verify(a),
        Some(Command::Inspect(a)) => inspect::cmd_inspect(a),
        Some(Command::Plot(a)) => plot::cmd_plot(a),
        Some(Command::Delay(a)) => delay::cmd_delay(a),
    };
    if let Err(e) = result {
        // One line with every context: "create data dir /x: File exists
        // (os error 17)", the operation and the path before the OS error.
        eprintln!("Error: {e:#}");
        std::process::exit(1);
    }
}
