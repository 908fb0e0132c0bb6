//! `highpte matrix`: the seed's test matrix, the `churn` stress of `highpte stress` on 20
//! kernels (UP/SMP x preempt on/off x the five configurations) and any number of seeds, with
//! `--overcommit` and both reclaim designs, sharded for a cluster (`--shard`, `merge`).

use crate::args::SwapFileArgs;
use crate::cmd_stress::{
    counter, faults, replay_command, stress_run, stress_spec, MAX_OPS, STRESS_SWAP_HOW,
};
use clap::Args;
use highpte_arch::MemoryVariant;
use highpte_kernel::mm::reclaim::ReclaimKind;
use serde_json::json;

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
    pub reclaim: Option<ReclaimChoice>,
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

/// `matrix --reclaim`: one reclaim design, or both side by side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReclaimChoice {
    /// One design.
    One(ReclaimKind),
    /// Scan and rmap (the grid twice).
    Both,
}

impl ReclaimChoice {
    /// The designs, in table order.
    fn designs(self) -> Vec<Option<ReclaimKind>> {
        match self {
            ReclaimChoice::One(r) => vec![Some(r)],
            ReclaimChoice::Both => vec![Some(ReclaimKind::Scan), Some(ReclaimKind::Rmap)],
        }
    }
    /// The name on the command line and in JSON.
    fn name(self) -> &'static str {
        match self {
            ReclaimChoice::One(r) => r.name(),
            ReclaimChoice::Both => "both",
        }
    }
}

fn parse_reclaim_choice(s: &str) -> Result<ReclaimChoice, String> {
    match s {
        "both" => Ok(ReclaimChoice::Both),
        _ => ReclaimKind::from_name(s)
            .map(ReclaimChoice::One)
            .ok_or_else(|| format!("unknown reclaim design '{s}': expected scan, rmap or both")),
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
    let (designs, cells) = matrix_cells(a);
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
        let cr = run_cell(a, &cells[i], swap_files.as_ref().map(|f| f.path(i)));
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
        .filter_map(|&i| results[i].as_ref().map(|r| cell_json(a, i, &cells[i], r)))
        .collect();
    let params = json!({
        "seeds": a.seeds,
        "ops": a.ops,
        "processes": a.processes,
        "smp_cpus": a.smp_cpus,
        "overcommit": a.overcommit,
        "reclaim": a.reclaim.unwrap_or(ReclaimChoice::Both).name(),
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

/// The grid's reclaim designs and its cells, in table order (design, UP/SMP, preempt on/off,
/// configuration, seed).
fn matrix_cells(a: &MatrixArgs) -> (Vec<Option<ReclaimKind>>, Vec<Cell>) {
    let designs: Vec<Option<ReclaimKind>> = if !a.overcommit {
        vec![None]
    } else {
        a.reclaim.unwrap_or(ReclaimChoice::Both).designs()
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
    (designs, cells)
}

/// Run one cell (its own machine).
fn run_cell(a: &MatrixArgs, c: &Cell, swap_file: Option<std::path::PathBuf>) -> CellResult {
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
    .and_then(|spec| stress_run(&spec, swap_file));
    match res {
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
    }
}

/// Cell `i`'s JSON object (docs/json.md, `highpte matrix --json`), with its index.
fn cell_json(a: &MatrixArgs, i: usize, c: &Cell, r: &CellResult) -> serde_json::Value {
    let replay = replay_command(
        c.variant,
        c.cpus,
        c.preempt,
        c.seed,
        a.ops,
        a.processes,
        c.reclaim,
    );
    json!({"cell": i, "replay": replay, "config": c.variant.name(), "cpus": c.cpus, "preempt": c.preempt, "seed": c.seed, "reclaim": c.reclaim.map(|r| r.name()), "pass": r.pass, "operations": r.ops, "faults": r.faults, "pswpout": r.pswpout, "pswpin": r.pswpin, "fs_pages_read": r.fs_read, "fs_pages_written": r.fs_written, "event_hash": format!("{:#018x}", r.hash), "failures": r.failures})
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
        print_matrix_json(cells, seeds, ops, processes, all_pass, host_seconds)?;
        return Ok(status);
    }
    if out.csv {
        print_matrix_csv(cells)?;
        return Ok(status);
    }
    use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    let mut header = vec!["kernel".to_string()];
    header.extend(MemoryVariant::ALL.iter().map(|v| v.name().to_string()));
    t.set_header(header);
    let mut failing: Vec<String> = Vec::new();
    let mut totals = Totals::default();
    for &reclaim in &designs {
        for smp in [false, true] {
            for preempt in [true, false] {
                let row = kernel_row(
                    cells,
                    RowKey {
                        smp,
                        preempt,
                        reclaim,
                    },
                    (ops, processes),
                    &mut totals,
                    &mut failing,
                );
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
        totals.ops,
        totals.faults,
        totals.swapped,
        totals.file_io,
        if all_pass { "all pass" } else { "FAILURES" },
    );
    println!("host time: {host_seconds:.1} s");
    for f in &failing {
        println!("replay: {f}");
    }
    Ok(status)
}

/// Which row of the table: UP or SMP, preemption, reclaim design.
#[derive(Clone, Copy)]
struct RowKey {
    smp: bool,
    preempt: bool,
    reclaim: Option<ReclaimKind>,
}

/// The grid's totals over the cells rendered.
#[derive(Default)]
struct Totals {
    ops: u64,
    faults: u64,
    swapped: u64,
    file_io: u64,
}

/// One kernel's row of the table (a cell per configuration, its seeds summed); adds to the
/// totals and to the replay lines of failing cells.
fn kernel_row(
    cells: &[serde_json::Value],
    key: RowKey,
    (ops, processes): (u64, u32),
    totals: &mut Totals,
    failing: &mut Vec<String>,
) -> Vec<String> {
    use crate::report::{js, ju};
    let RowKey {
        smp,
        preempt,
        reclaim,
    } = key;
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
                totals.swapped += ju(c, &["pswpout"]) + ju(c, &["pswpin"]);
                totals.file_io += ju(c, &["fs_pages_read"]) + ju(c, &["fs_pages_written"]);
                if c["pass"] != true {
                    pass = false;
                    failing.push(format!(
                        "{}\n    {}",
                        replay_command(v, cpus, preempt, ju(c, &["seed"]), ops, processes, reclaim),
                        c["failures"][0].as_str().unwrap_or_default()
                    ));
                }
            }
        }
        totals.ops += n_ops;
        totals.faults += fl;
        row.push(format!(
            "{} {} ops / {} faults",
            if pass { "pass" } else { "FAIL" },
            n_ops,
            fl
        ));
    }
    row
}

/// `matrix --json`: the cells (without their index) and the totals.
fn print_matrix_json(
    cells: &[serde_json::Value],
    seeds: u64,
    ops: u64,
    processes: u32,
    all_pass: bool,
    host_seconds: f64,
) -> anyhow::Result<()> {
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
    Ok(())
}

/// `matrix --csv`: a row per cell.
fn print_matrix_csv(cells: &[serde_json::Value]) -> anyhow::Result<()> {
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
    Ok(())
}
