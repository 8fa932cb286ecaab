//! `raftcast chaos`: kill, pause and partition a live local cluster under load and prove no
//! durable event is lost.
//!
//! A run spawns `--nodes` raftcast processes (from `--binary`, default this executable) on
//! free loopback ports, data dirs in a temp dir, each with `--fault-injection`. Socket.IO
//! clients ([`client`]) connect over WebSocket, subscribe to their trades with `since` after
//! every reconnect; a publisher ([`load`]) emits durable events at `--rate` and records every
//! answer; a quote stream runs alongside. Faults ([`plan`], [`faults`]) — SIGKILL and
//! restart, SIGSTOP/SIGCONT, isolation, one-way loss, slow links through the nodes' fault
//! switch (`POST /cluster/fault`) — follow a seeded schedule. At the end the [`check`]er
//! compares every acknowledged emit with every client's deliveries and every node's history;
//! the [`report`] goes to the terminal, a JSON file and a timeline [`plot`].
//!
//! By default (`--net switch`) partitions go through the in-process fault switch, which
//! needs neither root nor `ip netns`. With `--net netns` ([`netns`]) every node runs in a
//! network namespace of its own behind a bridge, and isolation, one-way loss and slow links
//! are real network faults (`tc netem` where the kernel has it, else `ip rule` blackholes
//! and `tbf` rate limits); [`links`] picks the mechanism.

pub mod calls;
pub mod check;
pub mod client;
pub mod cluster;
pub mod error;
pub mod faults;
pub mod interrupt;
pub mod links;
pub mod load;
pub mod netns;
pub mod plan;
pub mod plot;
pub mod record;
pub mod report;
pub mod runner;

use std::process::ExitCode;

pub use error::ChaosError;
pub use runner::{execute, Outcome};

use crate::config::ChaosArgs;

/// The `raftcast chaos` subcommand: runs, prints the summary table, writes the JSON report
/// and the plot. Exit code 0 = passed, 1 = a loss, duplicate, ordering break or split brain
/// was found, 2 = the harness could not run.
pub async fn run(args: ChaosArgs) -> ExitCode {
    let show = std::io::IsTerminal::is_terminal(&std::io::stderr());
    match execute(args, show).await {
        Ok(out) => {
            println!("{}", out.report.table());
            println!("report: {}", out.json.display());
            if let Some(p) = &out.plot {
                println!("plot:   {}", p.display());
            }
            if let Some(d) = &out.report.data_dir {
                println!("data and node logs kept in {d}");
            }
            println!("rerun:  {}", out.report.settings.command);
            if out.report.verdict.passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("chaos: {e}");
            ExitCode::from(2)
        }
    }
}
