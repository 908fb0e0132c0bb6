//! `highpte`: run workloads on a simulated 32-bit x86 machine running the highpte VM design,
//! and show where memory goes, what it costs and what breaks.

mod args;
mod bench;
mod cmd_bench;
mod cmd_boot;
mod cmd_calibrate;
mod cmd_compare;
mod cmd_deadlock;
mod cmd_demo;
mod cmd_matrix;
mod cmd_replay;
mod cmd_run;
mod cmd_sites;
mod cmd_stress;
mod cmd_sweep;
mod cmd_trace;
mod plot;
mod progress;
mod report;
mod report_proc;
mod shard;
mod text;
mod timeline;
mod workload_args;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Exit status: the simulation found a failure it was asked to check.
pub const EXIT_FAILURE_FOUND: u8 = 1;
/// Exit status: bad usage or input.
pub const EXIT_USAGE: u8 = 2;

#[derive(Parser)]
#[command(
    name = "highpte",
    version,
    about = "Simulate Linux 2.5's highpte on 32-bit x86: page tables in high memory, mapped per CPU",
    long_about = None
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The seed's story: sga and wli on 64g and 64g-highpte side by side, with a plot.
    Demo(cmd_demo::DemoArgs),
    /// Boot a machine and print its boot log, memory layout and meminfo.
    Boot(args::BootArgs),
    /// Find a seed where persistent kmap() page tables deadlock, report it, and run the same
    /// seed with kmap_atomic.
    ExplainDeadlock(cmd_deadlock::DeadlockArgs),
    /// The seed's 20-kernel test matrix under VM stress (churn), cells in parallel.
    Matrix(cmd_matrix::MatrixArgs),
    /// One stress cell: churn with stress interleavings; replays bit for bit from its seed.
    Stress(cmd_stress::StressArgs),
    /// Run a workload (built-in or file) on one configuration and report.
    Run(cmd_run::RunArgs),
    /// Hold the simulator against a real Linux 6.1 686-pae kernel's measurements
    /// (docs/fidelity.md): the figures side by side, each with its error and target.
    Calibrate(cmd_calibrate::CalibrateArgs),
    /// Run a workload on several configurations (x strategies x allocators): a row per run.
    Compare(cmd_compare::CompareArgs),
    /// Run a workload for each value of one parameter on each configuration, with a plot.
    Sweep(cmd_sweep::SweepArgs),
    /// Benchmarks: host time and simulated cycles side by side (host kernel vs simulator,
    /// the pte strategies and page-table allocators, boot, memory, the demo).
    Bench(cmd_bench::BenchArgs),
    /// Every named page-allocation site (for `--fail-alloc site=NAME`) and what allocates there.
    Sites(cmd_sites::SitesArgs),
    /// Replay a page trace of a real program (PGT1) through the kernel, in N instances.
    Replay(cmd_replay::ReplayArgs),
    /// Page traces of real programs: `trace info TRACE`, `trace convert LACKEY -o TRACE`.
    Trace(cmd_trace::TraceArgs),
    /// Join the shards of a matrix, sweep or compare run with `--shard I/N` into the table,
    /// JSON and plot of one unsharded run.
    Merge(shard::MergeArgs),
    /// Print a shell completion script: bash, zsh, fish, elvish or powershell.
    Completions(CompletionsArgs),
    /// Print the manual page (roff, for `man -l -`), generated from these definitions.
    Man(ManArgs),
}

/// `highpte completions`.
#[derive(clap::Args, Clone, Debug)]
struct CompletionsArgs {
    /// The shell.
    shell: clap_complete::Shell,
}

/// `highpte man`.
#[derive(clap::Args, Clone, Debug)]
struct ManArgs {
    /// The page of this command (e.g. `run`) instead of the top-level page.
    command: Option<String>,
}

/// Print the completion script for `shell`.
fn completions(a: &CompletionsArgs) -> anyhow::Result<u8> {
    use clap::CommandFactory;
    clap_complete::generate(
        a.shell,
        &mut Cli::command(),
        "highpte",
        &mut std::io::stdout(),
    );
    Ok(0)
}

/// Print the manual page of highpte or of one of its commands.
fn man(a: &ManArgs) -> anyhow::Result<u8> {
    use clap::CommandFactory;
    let top = Cli::command();
    let cmd = match &a.command {
        None => top,
        Some(name) => {
            let sub = top
                .get_subcommands()
                .find(|c| c.get_name() == name)
                .cloned()
                .ok_or_else(|| {
                    workload_args::InputError(format!(
                        "no command '{name}': expected one of {}",
                        top.get_subcommands()
                            .map(|c| c.get_name().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?;
            sub.display_name(format!("highpte-{name}"))
        }
    };
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut out)?;
    use std::io::Write;
    std::io::stdout().write_all(&out)?;
    Ok(0)
}

/// Die quietly of SIGPIPE when the reader of stdout goes away (`highpte ... | head -1`), as
/// Unix tools do, instead of panicking in `println!` (Rust starts programs with SIGPIPE
/// ignored).
fn default_sigpipe() {
    // SAFETY: SIG_DFL installs no handler code; nothing else in this program uses SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    default_sigpipe();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => return args::usage_error(e),
    };
    let r = match cli.command {
        Command::Demo(a) => cmd_demo::run(&a),
        Command::Boot(a) => cmd_boot::run(&a),
        Command::Run(a) => cmd_run::run(&a),
        Command::Matrix(a) => cmd_matrix::run_matrix(&a),
        Command::ExplainDeadlock(a) => cmd_deadlock::run(&a),
        Command::Stress(a) => cmd_stress::run_stress(&a),
        Command::Compare(a) => cmd_compare::run(&a),
        Command::Calibrate(a) => cmd_calibrate::run(&a),
        Command::Sweep(a) => cmd_sweep::run(&a),
        Command::Bench(a) => cmd_bench::run(&a),
        Command::Sites(a) => cmd_sites::run(&a),
        Command::Merge(a) => shard::run(&a),
        Command::Trace(a) => cmd_trace::run(&a),
        Command::Replay(a) => cmd_replay::run(&a),
        Command::Completions(a) => completions(&a),
        Command::Man(a) => man(&a),
    };
    match r {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("highpte: {}", text::display_message(&format!("{e:#}")));
            ExitCode::from(EXIT_USAGE)
        }
    }
}
