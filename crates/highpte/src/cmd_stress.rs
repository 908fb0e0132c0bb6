//! `highpte stress`: one cell of the seed's test matrix (`highpte matrix`, in `cmd_matrix`):
//! the `churn` VM stress workload with stress-mode interleavings, data stamps, invariants and
//! the debugging helpers on, replayable bit for bit from the seed.

use crate::args::SwapFileArgs;
use clap::Args;
use highpte_arch::MemoryVariant;
use highpte_kernel::mm::reclaim::ReclaimKind;
use highpte_kernel::{FailAlloc, PteStrategy};
use highpte_workload::runner::{self, InvariantChecks, RunOptions, RunReport};
use highpte_workload::{builtin, Op, Size, WorkloadSpec};
use serde_json::json;
use std::path::PathBuf;

fn parse_variant(s: &str) -> Result<MemoryVariant, String> {
    s.parse::<MemoryVariant>().map_err(|_| format!("unknown configuration '{s}': expected one of nohighmem, 4g, 4g-highpte, 64g, 64g-highpte"))
}

fn parse_strategy(s: &str) -> Result<PteStrategy, String> {
    PteStrategy::from_name(s)
        .ok_or_else(|| format!("unknown pte strategy '{s}': expected lowmem, atomic or persistent"))
}

/// One stress cell.
#[derive(Args, Clone, Debug)]
pub struct StressArgs {
    /// Memory configuration.
    #[arg(long, value_parser = parse_variant, default_value = "64g-highpte")]
    pub config: MemoryVariant,
    /// CPUs (1 = UP).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=32))]
    pub cpus: u32,
    #[command(flatten)]
    pub preempt: crate::args::PreemptArgs,
    /// The seed: 0 to 2^64-1.
    #[arg(long, default_value_t = 1, value_parser = crate::args::parse_seed, allow_hyphen_values = true)]
    pub seed: u64,
    /// Random operations per process: 1 to 1000000.
    #[arg(long, default_value_t = 400, value_parser = clap::value_parser!(u64).range(1..=MAX_OPS))]
    pub ops: u64,
    /// Processes.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub processes: u32,
    /// pte strategy (default: the config's).
    #[arg(long, value_parser = parse_strategy)]
    pub strategy: Option<PteStrategy>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Fault injection: fail page allocations at a rate (rate=0.01), only the N-th one
    /// (nth=N), every one at a named site (site=NAME; `highpte sites` lists them) or the N-th
    /// there (site=NAME:N). Random decisions come from the seed: the run replays.
    #[arg(long, value_parser = parse_fail_alloc, default_value = "off")]
    pub fail_alloc: FailAlloc,
    /// Overcommit: a small machine with swap twice its RAM; every process first writes its
    /// share of a ballast twice the size of RAM and of a file ballast half the size of RAM
    /// (write()), all read both back (checking every stamp), then churn runs with the ballast
    /// swapped out.
    #[arg(long)]
    pub overcommit: bool,
    /// With --overcommit: the reclaim design, scan (page-table scan, the default) or rmap
    /// (reverse maps).
    #[arg(long, value_parser = parse_reclaim, requires = "overcommit")]
    pub reclaim: Option<ReclaimKind>,
    #[command(flatten)]
    pub swap_file: SwapFileArgs,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
    #[command(flatten)]
    pub timeline: crate::timeline::TimelineArgs,
}

/// The most random operations per process a stress cell takes (`--ops`).
pub const MAX_OPS: u64 = 1_000_000;

fn parse_reclaim(s: &str) -> Result<ReclaimKind, String> {
    ReclaimKind::from_name(s)
        .ok_or_else(|| format!("unknown reclaim design '{s}': expected scan or rmap"))
}

/// RAM for an overcommit cell: the smallest machine of each configuration that still has
/// high memory (896 MB of low memory + 128 MB), or 128 MB without highmem.
pub fn overcommit_ram(v: MemoryVariant) -> u64 {
    match v {
        MemoryVariant::NoHighmem => 128 << 20,
        _ => 1 << 30,
    }
}

/// Turn a churn cell into an overcommit cell: swap twice RAM, and a ballast phase that
/// writes twice RAM of private memory and half of RAM of files (one per process, through
/// `write()`), then verifies both (`read()` for the files) before the churn.
pub fn overcommit_spec(s: &mut WorkloadSpec, reclaim: ReclaimKind) -> anyhow::Result<()> {
    let ram = overcommit_ram(s.machine.config);
    s.machine.ram = Size(ram);
    s.machine.swap = Size(2 * ram);
    s.machine.reclaim = Some(reclaim);
    let share = (2 * ram / u64::from(s.processes.count.max(1))).div_ceil(4096) * 4096;
    let file_share = (ram / 2 / u64::from(s.processes.count.max(1))).div_ceil(4096) * 4096;
    let text = format!(
        r#"
name = "ballast"
[[phases]]
name = "fill"
ops = [
  {{ op = "mmap", name = "ballast", size = "{share}" }},
  {{ op = "touch", region = "ballast", write = true }},
  {{ op = "file_write", file = "ballast-{{p}}", size = "{file_share}" }},
]
[[phases]]
name = "verify"
ops = [
  {{ op = "touch", region = "ballast" }},
  {{ op = "file_read", file = "ballast-{{p}}" }},
]
"#
    );
    let b = highpte_workload::parse_workload(&text, "overcommit")
        .map_err(|e| anyhow::anyhow!("overcommit phases: {e}"))?;
    let mut phases = b.phases;
    phases.append(&mut s.phases);
    s.phases = phases;
    Ok(())
}

fn parse_fail_alloc(s: &str) -> Result<FailAlloc, String> {
    FailAlloc::parse(s)
}

/// RAM for a stress machine of each configuration: enough high memory to matter, small
/// enough to be quick.
pub fn stress_ram(v: MemoryVariant) -> u64 {
    match v {
        MemoryVariant::NoHighmem => 768 << 20,
        MemoryVariant::Highmem4g | MemoryVariant::Highmem4gHighpte => 2 << 30,
        MemoryVariant::Highmem64g | MemoryVariant::Highmem64gHighpte => 6 << 30,
    }
}

/// The churn workload for one cell.
#[allow(clippy::too_many_arguments)]
pub fn stress_spec(
    v: MemoryVariant,
    cpus: u32,
    preempt: bool,
    seed: u64,
    ops: u64,
    processes: u32,
    strategy: Option<PteStrategy>,
    overcommit: Option<ReclaimKind>,
) -> anyhow::Result<WorkloadSpec> {
    let mut s = builtin("churn").ok_or_else(|| anyhow::anyhow!("built-in churn missing"))?;
    s.machine.config = v;
    s.machine.ram = Size(stress_ram(v));
    s.machine.cpus = cpus;
    s.machine.preempt = preempt;
    s.machine.seed = seed;
    s.machine.debug = true;
    s.machine.strategy = strategy;
    s.processes.count = processes;
    for p in &mut s.phases {
        for o in &mut p.ops {
            if let Op::Random { ops: n, .. } = o {
                *n = ops;
            }
        }
    }
    if let Some(r) = overcommit {
        overcommit_spec(&mut s, r)?;
    }
    if let Err(p) = s.validate() {
        anyhow::bail!(
            "stress workload invalid: {}",
            p.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    Ok(s)
}

/// Run one stress cell, its swap device in `swap_file` if given.
pub fn stress_run(spec: &WorkloadSpec, swap_file: Option<PathBuf>) -> anyhow::Result<RunReport> {
    stress_run_failing(spec, FailAlloc::Off, swap_file, None, None)
}

/// Run one stress cell with page allocations failing as `fail_alloc` says, advancing `bar`.
pub fn stress_run_failing(
    spec: &WorkloadSpec,
    fail_alloc: FailAlloc,
    swap_file: Option<PathBuf>,
    bar: Option<indicatif::ProgressBar>,
    timeline: Option<highpte_machine::TimelineHook>,
) -> anyhow::Result<RunReport> {
    let mut opts = RunOptions {
        fail_alloc,
        stress: true,
        invariants: InvariantChecks::EachStep,
        ..Default::default()
    };
    opts.machine.swap_file = swap_file;
    opts.machine.timeline = timeline;
    crate::progress::attach(&mut opts, bar);
    runner::run(spec, &opts)
        .map(crate::report::scrub)
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// How a stress command gets swap, for the `--swap-file` check.
pub(crate) const STRESS_SWAP_HOW: &str = "stress cells have swap only with --overcommit";

/// The exact command that replays a cell.
pub fn replay_command(
    v: MemoryVariant,
    cpus: u32,
    preempt: bool,
    seed: u64,
    ops: u64,
    processes: u32,
    overcommit: Option<ReclaimKind>,
) -> String {
    let mut c = format!(
        "highpte stress --config {} --cpus {} --preempt {} --seed {} --ops {} --processes {}",
        v.name(),
        cpus,
        if preempt { "on" } else { "off" },
        seed,
        ops,
        processes
    );
    if let Some(r) = overcommit {
        c.push_str(&format!(" --overcommit --reclaim {r}"));
    }
    c
}

pub(crate) fn faults(r: &RunReport) -> u64 {
    counter(r, "faults")
}

pub(crate) fn counter(r: &RunReport, name: &str) -> u64 {
    r.counters
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| *v)
        .unwrap_or(0)
}

pub fn run_stress(a: &StressArgs) -> anyhow::Result<u8> {
    a.swap_file.require_swap(a.overcommit, STRESS_SWAP_HOW)?;
    let preempt = a.preempt.value().unwrap_or(true);
    let reclaim = a.reclaim.unwrap_or(ReclaimKind::Scan);
    let spec = stress_spec(
        a.config,
        a.cpus,
        preempt,
        a.seed,
        a.ops,
        a.processes,
        a.strategy,
        a.overcommit.then_some(reclaim),
    )?;
    let swap_file = a.swap_file.single()?;
    let bars = crate::progress::Bars::new(crate::progress::enabled(a.quiet, a.json));
    let bar = bars.bar(&spec, &format!("stress on {}", a.config));
    let timeline = crate::timeline::Session::start(&a.timeline)?;
    let hook = timeline.as_ref().map(|t| t.hook());
    let r = stress_run_failing(&spec, a.fail_alloc, swap_file, bar, hook);
    bars.clear();
    crate::timeline::finish(timeline)?;
    let r = r?;
    let mut replay = replay_command(
        a.config,
        a.cpus,
        preempt,
        a.seed,
        a.ops,
        a.processes,
        a.overcommit.then_some(reclaim),
    );
    if a.fail_alloc != FailAlloc::Off {
        replay.push_str(&format!(" --fail-alloc {}", a.fail_alloc));
    }
    if a.json {
        let mut v = crate::cmd_run::report_json(&r);
        v["pass"] = json!(!r.failed_checks());
        v["replay"] = json!(replay);
        v["fail_alloc"] = json!(a.fail_alloc.to_string());
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "{}: {} on {} {}-preempt {}, seed {}: {} operations, {} faults, {} processes; event hash {:#018x}; host {:.2} s",
            if r.failed_checks() { "FAIL" } else { "pass" },
            r.workload,
            a.config,
            if a.cpus > 1 { "SMP" } else { "UP" },
            if preempt { "on" } else { "off" },
            a.seed,
            r.operations,
            faults(&r),
            r.processes_started,
            r.event_hash,
            r.host_seconds
        );
        if a.fail_alloc != FailAlloc::Off {
            let c = |name: &str| {
                r.counters
                    .iter()
                    .find(|(k, _)| k == name)
                    .map_or(0, |(_, v)| *v)
            };
            println!(
                "  --fail-alloc {}: {} page allocations failed (injected and real), {} OOM kills, {} processes failed",
                a.fail_alloc,
                c("alloc_failures"),
                c("oom_kills"),
                r.processes_failed
            );
        }
        for c in &r.check_failures {
            println!("  {c}");
        }
        if r.failed_checks() {
            println!("replay: {replay}");
        }
    }
    Ok(if r.failed_checks() {
        crate::EXIT_FAILURE_FOUND
    } else {
        0
    })
}
