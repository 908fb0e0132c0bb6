//! `highpte stress` (one cell) and `highpte matrix` (the seed's 20 kernels): the `churn` VM
//! stress workload with stress-mode interleavings, data stamps, invariants and the debugging
//! helpers on, replayable bit for bit from the seed.

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
const STRESS_SWAP_HOW: &str = "stress cells have swap only with --overcommit";

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

fn faults(r: &RunReport) -> u64 {
    counter(r, "faults")
}

fn counter(r: &RunReport, name: &str) -> u64 {
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

/// `highpte matrix`.
#[derive(Args, Clone, Debug)]
pub struct MatrixArgs {
    /// Seeds per kernel.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=10000))]
    pub seeds: u64,
    /// Random operations per process: 1 to 1000000.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=MAX_OPS))]
    pub ops: u64,
    /// Processes per cell.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub processes: u32,
    /// CPUs of the SMP kernels.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(2..=32))]
    pub smp_cpus: u32,
    /// Cells at a time (host threads) [default: the number of host CPUs].
    #[arg(long, short = 'j', value_parser = crate::args::parse_jobs)]
    pub jobs: Option<usize>,
    /// Print the grid as JSON.
    #[arg(long)]
    pub json: bool,
    /// Overcommit every cell: swap twice RAM, a ballast twice RAM and a file ballast half of RAM written and verified
    /// before the churn (see `highpte stress --overcommit`).
    #[arg(long)]
    pub overcommit: bool,
    /// With --overcommit: the reclaim designs to run, scan, rmap or both (each doubles the
    /// grid).
    #[arg(long, value_parser = parse_reclaim_choice, requires = "overcommit")]
    pub reclaim: Option<String>,
    #[command(flatten)]
    pub swap_file: SwapFileArgs,
    /// Print CSV, one row per cell (for pandas and spreadsheets).
    #[arg(long, conflicts_with = "json")]
    pub csv: bool,
    /// Run only the I-th of N deterministic slices of the cells and print a shard document
    /// (JSON) for `highpte merge` (docs/cluster.md).
    #[arg(long, value_parser = crate::shard::parse_shard, conflicts_with = "csv")]
    pub shard: Option<crate::shard::Shard>,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
}

fn parse_reclaim_choice(s: &str) -> Result<String, String> {
    match s {
        "scan" | "rmap" | "both" => Ok(s.to_string()),
        _ => Err(format!(
            "unknown reclaim design '{s}': expected scan, rmap or both"
        )),
    }
}

#[derive(Clone)]
struct Cell {
    variant: MemoryVariant,
    cpus: u32,
    preempt: bool,
    seed: u64,
    reclaim: Option<ReclaimKind>,
}

struct CellResult {
    pass: bool,
    ops: u64,
    faults: u64,
    pswpout: u64,
    pswpin: u64,
    /// File pages read from and written to the disk.
    fs_read: u64,
    fs_written: u64,
    failures: Vec<String>,
    hash: u64,
}

pub fn run_matrix(a: &MatrixArgs) -> anyhow::Result<u8> {
    a.swap_file.require_swap(a.overcommit, STRESS_SWAP_HOW)?;
    let designs: Vec<Option<ReclaimKind>> = if !a.overcommit {
        vec![None]
    } else {
        match a.reclaim.as_deref().unwrap_or("both") {
            "scan" => vec![Some(ReclaimKind::Scan)],
            "rmap" => vec![Some(ReclaimKind::Rmap)],
            _ => vec![Some(ReclaimKind::Scan), Some(ReclaimKind::Rmap)],
        }
    };
    let mut cells = Vec::new();
    for &reclaim in &designs {
        for smp in [false, true] {
            for preempt in [true, false] {
                for v in MemoryVariant::ALL {
                    for seed in 1..=a.seeds {
                        cells.push(Cell {
                            variant: v,
                            cpus: if smp { a.smp_cpus } else { 1 },
                            preempt,
                            seed,
                            reclaim,
                        });
                    }
                }
            }
        }
    }
    let swap_files = a.swap_file.numbered(cells.len())?;
    let jobs = a
        .jobs
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        })
        .max(1);
    let picked: Vec<usize> = (0..cells.len())
        .filter(|&k| a.shard.is_none_or(|s| s.takes(k)))
        .collect();
    let bars = crate::progress::Bars::new(crate::progress::enabled(
        a.quiet,
        a.json || a.csv || a.shard.is_some(),
    ));
    let bar = bars
        .items(picked.len() as u64, "cells", "matrix")
        .unwrap_or_else(indicatif::ProgressBar::hidden);
    let t0 = std::time::Instant::now();
    let run_cell = |i: usize| {
        let c = &cells[i];
        let res = stress_spec(
            c.variant,
            c.cpus,
            c.preempt,
            c.seed,
            a.ops,
            a.processes,
            None,
            c.reclaim,
        )
        .and_then(|spec| stress_run(&spec, swap_files.as_ref().map(|f| f.path(i))));
        let cr = match res {
            Ok(r) => CellResult {
                pass: !r.failed_checks(),
                ops: r.operations,
                faults: faults(&r),
                pswpout: counter(&r, "pswpout"),
                pswpin: counter(&r, "pswpin"),
                fs_read: counter(&r, "fs_pages_read"),
                fs_written: counter(&r, "fs_pages_written"),
                failures: r.check_failures.clone(),
                hash: r.event_hash,
            },
            Err(e) => CellResult {
                pass: false,
                ops: 0,
                faults: 0,
                pswpout: 0,
                pswpin: 0,
                fs_read: 0,
                fs_written: 0,
                failures: vec![e.to_string()],
                hash: 0,
            },
        };
        bar.inc(1);
        (i, cr)
    };
    // One rayon pool of `jobs` threads; every cell's result, by cell index.
    let done: Vec<(usize, CellResult)> =
        match rayon::ThreadPoolBuilder::new().num_threads(jobs).build() {
            Ok(pool) => pool.install(|| {
                use rayon::prelude::*;
                picked.par_iter().map(|&i| run_cell(i)).collect()
            }),
            Err(_) => picked.iter().map(|&i| run_cell(i)).collect(),
        };
    bars.clear();
    let mut results: Vec<Option<CellResult>> = (0..cells.len()).map(|_| None).collect();
    for (i, cr) in done {
        results[i] = Some(cr);
    }
    let cells_json: Vec<serde_json::Value> = picked
        .iter()
        .filter_map(|&i| {
            let c = &cells[i];
            results[i].as_ref().map(|r| {
                let replay = replay_command(
                    c.variant, c.cpus, c.preempt, c.seed, a.ops, a.processes, c.reclaim,
                );
                json!({"cell": i, "replay": replay, "config": c.variant.name(), "cpus": c.cpus, "preempt": c.preempt, "seed": c.seed, "reclaim": c.reclaim.map(|r| r.name()), "pass": r.pass, "operations": r.ops, "faults": r.faults, "pswpout": r.pswpout, "pswpin": r.pswpin, "fs_pages_read": r.fs_read, "fs_pages_written": r.fs_written, "event_hash": format!("{:#018x}", r.hash), "failures": r.failures})
            })
        })
        .collect();
    let params = json!({
        "seeds": a.seeds,
        "ops": a.ops,
        "processes": a.processes,
        "smp_cpus": a.smp_cpus,
        "overcommit": a.overcommit,
        "reclaim": a.reclaim.as_deref().unwrap_or("both"),
        "designs": designs.iter().map(|d| d.map(|r| r.name())).collect::<Vec<_>>(),
    });
    let host_seconds = t0.elapsed().as_secs_f64();
    if let Some(shard) = a.shard {
        let doc = crate::shard::document(
            "matrix",
            params,
            shard,
            cells.len(),
            cells_json,
            &[],
            host_seconds,
        );
        println!("{}", serde_json::to_string_pretty(&doc)?);
        let pass = results.iter().flatten().all(|r| r.pass);
        return Ok(if pass { 0 } else { crate::EXIT_FAILURE_FOUND });
    }
    let out = crate::cmd_compare::Output {
        json: a.json,
        csv: a.csv,
        plot: None,
    };
    let _ = jobs;
    render_matrix(&params, &cells_json, &out, host_seconds)
}

/// The CSV columns of a matrix cell.
const MATRIX_CSV: &[&str] = &[
    "config",
    "cpus",
    "preempt",
    "seed",
    "reclaim",
    "pass",
    "operations",
    "faults",
    "pswpout",
    "pswpin",
    "fs_pages_read",
    "fs_pages_written",
    "event_hash",
    "first_failure",
];

/// Print a matrix's results (its cells' JSON, in cell order): what `matrix` prints, and what
/// `merge` prints for its shards. The status: 1 if a cell failed.
pub fn render_matrix(
    params: &serde_json::Value,
    cells: &[serde_json::Value],
    out: &crate::cmd_compare::Output,
    host_seconds: f64,
) -> anyhow::Result<u8> {
    use crate::report::{js, ju};
    let seeds = ju(params, &["seeds"]);
    let ops = ju(params, &["ops"]);
    let processes = ju(params, &["processes"]) as u32;
    let designs: Vec<Option<ReclaimKind>> = params["designs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| d.as_str().and_then(ReclaimKind::from_name))
        .collect();
    let all_pass = cells.iter().all(|c| c["pass"] == true);
    let status = if all_pass {
        0
    } else {
        crate::EXIT_FAILURE_FOUND
    };
    if out.json {
        let list: Vec<serde_json::Value> = cells
            .iter()
            .map(|c| {
                let mut c = c.clone();
                if let Some(o) = c.as_object_mut() {
                    o.remove("cell");
                }
                c
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"cells": list, "seeds": seeds, "ops": ops, "processes": processes, "pass": all_pass, "host_seconds": host_seconds})
            )?
        );
        return Ok(status);
    }
    if out.csv {
        let header: Vec<String> = MATRIX_CSV.iter().map(|s| s.to_string()).collect();
        let rows: Vec<Vec<String>> = cells
            .iter()
            .map(|c| {
                MATRIX_CSV
                    .iter()
                    .map(|k| match *k {
                        "first_failure" => c["failures"][0].as_str().unwrap_or("").to_string(),
                        _ => match &c[*k] {
                            serde_json::Value::String(s) => s.clone(),
                            serde_json::Value::Null => String::new(),
                            v => v.to_string(),
                        },
                    })
                    .collect()
            })
            .collect();
        crate::cmd_compare::print_csv(&header, &rows)?;
        return Ok(status);
    }
    use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    let mut header = vec!["kernel".to_string()];
    header.extend(MemoryVariant::ALL.iter().map(|v| v.name().to_string()));
    t.set_header(header);
    let mut failing: Vec<String> = Vec::new();
    let (mut total_ops, mut total_faults) = (0u64, 0u64);
    let (mut total_swapped, mut total_file_io) = (0u64, 0u64);
    for &reclaim in &designs {
        for smp in [false, true] {
            for preempt in [true, false] {
                let mut row = vec![format!(
                    "{}-preempt {}{}",
                    if smp { "SMP" } else { "UP" },
                    if preempt { "on" } else { "off" },
                    reclaim.map(|r| format!(", {r}")).unwrap_or_default()
                )];
                for v in MemoryVariant::ALL {
                    let mut pass = true;
                    let (mut n_ops, mut fl) = (0u64, 0u64);
                    for c in cells {
                        let cpus = ju(c, &["cpus"]) as u32;
                        if js(c, "config") == v.name()
                            && (cpus > 1) == smp
                            && c["preempt"] == preempt
                            && c["reclaim"].as_str().and_then(ReclaimKind::from_name) == reclaim
                        {
                            n_ops += ju(c, &["operations"]);
                            fl += ju(c, &["faults"]);
                            total_swapped += ju(c, &["pswpout"]) + ju(c, &["pswpin"]);
                            total_file_io +=
                                ju(c, &["fs_pages_read"]) + ju(c, &["fs_pages_written"]);
                            if c["pass"] != true {
                                pass = false;
                                failing.push(format!(
                                    "{}\n    {}",
                                    replay_command(
                                        v,
                                        cpus,
                                        preempt,
                                        ju(c, &["seed"]),
                                        ops,
                                        processes,
                                        reclaim
                                    ),
                                    c["failures"][0].as_str().unwrap_or_default()
                                ));
                            }
                        }
                    }
                    total_ops += n_ops;
                    total_faults += fl;
                    row.push(format!(
                        "{} {} ops / {} faults",
                        if pass { "pass" } else { "FAIL" },
                        n_ops,
                        fl
                    ));
                }
                t.add_row(row);
            }
        }
    }
    println!("The seed's test matrix: churn VM stress (fork, mremap, shm, file I/O, stamps, invariants, debug helpers on) on 20 kernels x {seeds} seed(s)");
    if params["overcommit"] == true {
        println!("Overcommitted: swap twice RAM, a ballast twice RAM and a file ballast half of RAM written and verified first; reclaim {}", js(params, "reclaim"));
    }
    println!("{t}");
    println!(
        "{} cells x {} seeds: {} operations, {} page faults, {} pages swapped out and in, {} file pages written back and read from the disk, {}",
        20 * designs.len(),
        seeds,
        total_ops,
        total_faults,
        total_swapped,
        total_file_io,
        if all_pass { "all pass" } else { "FAILURES" },
    );
    println!("host time: {host_seconds:.1} s");
    for f in &failing {
        println!("replay: {f}");
    }
    Ok(status)
}
