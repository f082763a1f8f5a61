//! `mqlab`: the lab around the mqlab storage engine. It runs workloads
//! against an in-process store and records what each flush strategy and I/O
//! backend costs (throughput, ack latency, device ratios) and what it can
//! lose (the loss window, proven by simulated crashes), then draws charts.
//!
//! With no subcommand it runs `mqlab matrix`, so `cargo run --release` is
//! the whole experiment. The binary only parses the command line
//! ([`cli`]) into the library's request structs and calls the library.

#![deny(unsafe_code)]

mod cli;

use clap::Parser;
use mqlab::{baseline, charts, crash, delay, inspect, matrix, run, serve, util, verify};

use cli::{Cli, Command, MatrixArgs};

fn main() {
    let cli = Cli::parse();
    util::install_ctrlc();
    let result = match cli.command {
        Some(Command::Run(a)) => run::cmd_run(a),
        Some(Command::Matrix(a)) if a.list_families => {
            print!("{}", matrix::families_text());
            Ok(())
        }
        Some(Command::Matrix(a)) => a.request().and_then(matrix::cmd_matrix),
        None => MatrixArgs::parse_default()
            .request()
            .and_then(matrix::cmd_matrix),
        Some(Command::Baseline(a)) => baseline::cmd_baseline(a),
        Some(Command::Crash(a)) => {
            crash::cmd_crash(&a.params(), a.seed, a.crashes, a.out.as_deref())
        }
        Some(Command::Verify(a)) => {
            verify::cmd_verify(&a.data_dir, a.acked.as_deref(), a.json, a.no_index)
        }
        Some(Command::Inspect(a)) => inspect::cmd_inspect(&a.data_dir, a.json),
        Some(Command::Plot(a)) => charts::cmd_plot(&a.inputs, &a.out),
        Some(Command::Merge(a)) => mqlab::merge::cmd_merge(a),
        Some(Command::Delay(a)) => delay::cmd_delay(a),
        Some(Command::Broker(a)) => serve::cmd_broker(a),
        Some(Command::Namesrv(a)) => serve::cmd_namesrv(a),
        Some(Command::Controller(a)) => serve::cmd_controller(a),
        Some(Command::PeersWire(a)) => mqlab::peers_wire::cmd_peers_wire(a),
        Some(Command::Ha(a)) => mqlab::ha::cmd_ha(a),
        Some(Command::Powerloss(a)) => mqlab::ha::powerloss::cmd_powerloss(a),
    };
    if let Err(e) = result {
        // One line with every context: "create data dir /x: File exists
        // (os error 17)", the operation and the path before the OS error.
        eprintln!("Error: {e:#}");
        std::process::exit(1);
    }
}
