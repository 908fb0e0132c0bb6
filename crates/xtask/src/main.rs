//! `cargo xtask`: project tasks that need more than cargo.
//!
//! - `cargo xtask qemu [SCENARIO] [--config C] [--ram SIZE] [--json]`: build the kernel core
//!   into a multiboot image (crates/baremetal), boot it under QEMU, print the scenario's report
//!   and, for `boot` and `sga`, hold its meminfo against `highpte run` of the same workload.
//! - `cargo xtask mmu-diff`: the differential MMU test (QEMU's MMU against the simulator's).

mod mmu_diff;
mod qemu;
mod scenario;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Project tasks: the bare-metal kernel under QEMU"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the bare-metal kernel, boot it under QEMU and run a scenario.
    Qemu(scenario::Args),
    /// The differential MMU test: the same page tables walked by QEMU and by the simulator.
    MmuDiff(mmu_diff::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Qemu(a) => scenario::run(&a),
        Cmd::MmuDiff(a) => mmu_diff::run(&a),
    };
    match r {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
