//! `highpte compare`: run one workload on every combination of configurations, pte strategies
//! and page-table allocators, in parallel on the host, and print one row per run.
//!
//! Also the machinery `sweep` shares: building one checked [`WorkloadSpec`] per cell
//! ([`cell_spec`]) and running cells on a pool of host threads ([`run_cells`]).

use crate::args::NumberedSwapFiles;
use crate::report;
use crate::workload_args::{InputError, WorkloadArgs};
use clap::Args;
use highpte_arch::MemoryVariant;
use highpte_kernel::{PtAllocKind, PteStrategy};
use highpte_workload::runner::{self, RunOptions, RunReport};
use highpte_workload::{Size, WorkloadSpec};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;
use serde_json::{json, Value};
use std::path::PathBuf;

mod lists;

pub use lists::{parse_configs, ConfigList, PtAllocList, StrategyList};
use lists::{parse_pt_allocs, parse_strategies};

/// `highpte compare`.
#[derive(Args, Clone, Debug)]
pub struct CompareArgs {
    #[command(flatten)]
    pub w: WorkloadArgs,
    /// Configurations to run on, comma-separated, or `all` (the five) [default: all].
    #[arg(long, value_parser = parse_configs)]
    pub configs: Option<ConfigList>,
    /// pte strategies to run with, comma-separated, or `all` [default: each config's own].
    #[arg(long, value_parser = parse_strategies)]
    pub strategies: Option<StrategyList>,
    /// Page-table allocators to run with, comma-separated, or `all` [default: the workload's].
    #[arg(long = "pt-allocs", value_parser = parse_pt_allocs)]
    pub pt_allocs: Option<PtAllocList>,
    /// Runs at a time (host threads) [default: the number of host CPUs].
    #[arg(long, short = 'j', value_parser = crate::args::parse_jobs)]
    pub jobs: Option<usize>,
    /// Print a JSON list with one run object per row (schema: docs/json.md).
    #[arg(long)]
    pub json: bool,
    /// Write a plot of LowFree against processes, one series per run (SVG, or PNG by
    /// extension).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Print CSV, one row per run (for pandas and spreadsheets).
    #[arg(long, conflicts_with = "json")]
    pub csv: bool,
    /// Run only the I-th of N deterministic slices of the runs and print a shard document
    /// (JSON) for `highpte merge` (docs/cluster.md).
    #[arg(long, value_parser = crate::shard::parse_shard, conflicts_with_all = ["plot", "csv"])]
    pub shard: Option<crate::shard::Shard>,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
}

/// What one cell changes in the base workload: `None` keeps the workload's own choice.
#[derive(Clone, Copy, Debug)]
pub struct CellChoice {
    /// The memory configuration.
    pub variant: MemoryVariant,
    /// The pte strategy (None: the workload's, or the config's default).
    pub strategy: Option<PteStrategy>,
    /// The page-table allocator (None: the workload's).
    pub pt_alloc: Option<PtAllocKind>,
}

/// Load the workload with every command-line override applied except `--config` (the commands
/// that take `--configs` decide what it means), checked on a configuration that can address
/// any RAM: each cell sets its own configuration afterwards with [`cell_spec`]. The spec keeps
/// the workload's own configuration.
pub fn base_spec(w: &WorkloadArgs) -> Result<WorkloadSpec, InputError> {
    let mut any = w.clone();
    any.machine.config = Some(MemoryVariant::Highmem64g);
    let mut spec = any.spec()?;
    // The file parsed and checked above, so loading it again only fails if it changed.
    let own = match highpte_workload::builtin(&w.workload) {
        Some(s) => s,
        // a trace runs on the default machine
        None if highpte_workload::trace::is_trace_path(&w.workload) => {
            highpte_workload::trace::replay_workload(&w.workload, 1, false).map_err(InputError)?
        }
        None => highpte_workload::load_workload(std::path::Path::new(&w.workload))
            .map_err(|e| InputError(e.to_string()))?,
    };
    spec.machine.config = own.machine.config;
    Ok(spec)
}

/// The workload for one cell: `base` on `c`, checked. RAM beyond what the configuration can
/// address is ignored by that kernel, as Linux does: the cell runs with the most RAM the
/// configuration addresses, and a note says so.
pub fn cell_spec(
    base: &WorkloadSpec,
    c: CellChoice,
    notes: &mut Vec<String>,
) -> Result<WorkloadSpec, InputError> {
    let mut spec = base.clone();
    spec.machine.config = c.variant;
    if let Some(note) = crate::args::ram_note(c.variant, spec.machine.ram.0) {
        if !notes.contains(&note) {
            notes.push(note);
        }
        spec.machine.ram = Size(c.variant.max_usable_ram());
    }
    if let Some(s) = c.strategy {
        spec.machine.strategy = Some(s);
    }
    if let Some(a) = c.pt_alloc {
        spec.machine.pt_alloc = Some(a);
    }
    spec.validate().map_err(|problems| {
        let msg: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        InputError(format!(
            "workload '{}' on {} is invalid: {}",
            spec.name,
            c.variant.name(),
            msg.join("; ")
        ))
    })?;
    Ok(spec)
}

/// How one cell ended: a report, a run that could not start, or a crash of the simulator.
pub enum CellResult {
    /// The run finished (it may have failed inside the simulation: that is a result).
    Done(Box<RunReport>),
    /// The run could not start (bad input the checks above did not catch).
    Refused(String),
    /// The simulator panicked (a bug): the message.
    Panicked(String),
}

/// The number of host CPUs (at least 1).
pub fn host_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// What every cell of a compare or sweep shares beyond its spec.
pub struct CellMachine {
    /// The `highmem=` limit (`--highmem`).
    pub highmem: Option<u64>,
    /// The cost model (`--cost FILE`); `None`: the default table.
    pub cost: Option<highpte_machine::cost::CostModel>,
}

impl CellMachine {
    /// From the command's machine flags; reads `--cost FILE` (bad input: exit 2).
    pub fn from_args(m: &crate::args::MachineArgs) -> Result<Self, InputError> {
        Ok(Self {
            highmem: m.highmem,
            cost: m.cost_model()?,
        })
    }
}

/// Run every spec, `jobs` at a time on a rayon pool of host threads (each run builds its own
/// machine inside its thread), and return the results in the order of `specs`. A progress bar counts the runs
/// on stderr when `progress` is set.
/// `machine` gives what every run shares beyond its spec (`--highmem`, `--cost`); with
/// `swap_files`, run `i` keeps its swap device in file `i` (`--swap-file`).
pub fn run_cells(
    specs: &[WorkloadSpec],
    jobs: usize,
    progress: bool,
    machine: &CellMachine,
    swap_files: Option<&NumberedSwapFiles>,
) -> Vec<CellResult> {
    let jobs = jobs.clamp(1, specs.len().max(1));
    let bar = if progress {
        let b =
            ProgressBar::with_draw_target(Some(specs.len() as u64), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} runs {msg}",
        ) {
            b.set_style(style);
        }
        b.enable_steady_tick(std::time::Duration::from_millis(200));
        b
    } else {
        ProgressBar::hidden()
    };
    let run_one = |i: usize, spec: &WorkloadSpec| {
        let mut opts = RunOptions {
            highmem_limit: machine.highmem,
            ..RunOptions::default()
        };
        if let Some(cost) = &machine.cost {
            opts.machine.cost = cost.clone();
        }
        opts.machine.swap_file = swap_files.map(|f| f.path(i));
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            runner::run(spec, &opts).map(crate::report::scrub)
        }));
        let r = match outcome {
            Ok(Ok(rep)) => CellResult::Done(Box::new(rep)),
            Ok(Err(e)) => CellResult::Refused(e.to_string()),
            Err(p) => CellResult::Panicked(
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panic".to_string()),
            ),
        };
        bar.set_message(format!(
            "(last: {} {})",
            spec.machine.config,
            spec.machine.strategy.map_or("", PteStrategy::name)
        ));
        bar.inc(1);
        r
    };
    // One rayon pool of `jobs` threads; results come back in the order of `specs`.
    let results: Vec<CellResult> = match rayon::ThreadPoolBuilder::new().num_threads(jobs).build() {
        Ok(pool) => pool.install(|| {
            specs
                .par_iter()
                .enumerate()
                .map(|(i, spec)| run_one(i, spec))
                .collect()
        }),
        // no threads to be had: one run after another on this one
        Err(_) => specs
            .iter()
            .enumerate()
            .map(|(i, s)| run_one(i, s))
            .collect(),
    };
    bar.finish_and_clear();
    results
}

/// Notes on runs whose strategy could not apply: a high-memory strategy on a machine without
/// high memory falls back to low pages.
pub fn fallback_notes(runs: &[&RunReport], notes: &mut Vec<String>) {
    for r in runs {
        if r.strategy != PteStrategy::Lowmem && r.meminfo_peak.high_total == 0 {
            let n = format!(
                "{} with strategy {}: there is no high memory, so the kernel fell back to low pages for the pte pages (kmap of a low page is its direct mapping)",
                r.config, r.strategy
            );
            if !notes.contains(&n) {
                notes.push(n);
            }
        }
    }
}

/// Split results into reports, printing what went wrong with the others; the exit status the
/// failures call for (0 if none).
pub fn collect(results: Vec<CellResult>, labels: &[String]) -> (Vec<(usize, RunReport)>, u8) {
    let mut ok = Vec::new();
    let mut status = 0u8;
    for (i, r) in results.into_iter().enumerate() {
        let label = labels.get(i).map(String::as_str).unwrap_or("?");
        match r {
            CellResult::Done(rep) => {
                if rep.failed_checks() {
                    status = status.max(crate::EXIT_FAILURE_FOUND);
                }
                ok.push((i, *rep));
            }
            CellResult::Refused(e) => {
                eprintln!("highpte: {label}: could not run: {e}");
                status = crate::EXIT_USAGE;
            }
            CellResult::Panicked(e) => {
                eprintln!("highpte: {label}: the simulator crashed (a bug): {e}");
                status = status.max(crate::EXIT_FAILURE_FOUND);
            }
        }
    }
    (ok, status)
}

/// Print each run's failed checks (stamps, invariants, deadlocks) under a heading.
pub fn print_check_failures(runs: &[Value]) {
    use crate::report::js;
    for r in runs {
        for c in r["check_failures"].as_array().into_iter().flatten() {
            println!(
                "CHECK FAILED ({} {} {}): {}",
                js(r, "config"),
                js(r, "strategy"),
                js(r, "pt_alloc"),
                c.as_str().unwrap_or_default()
            );
        }
    }
}

/// `highpte compare`.
pub fn run(a: &CompareArgs) -> anyhow::Result<u8> {
    let configs = match (&a.configs, a.w.machine.config) {
        (Some(_), Some(_)) => {
            return Err(InputError(
                "give either --configs (a list) or --config, not both".to_string(),
            )
            .into())
        }
        (Some(l), None) => l.0.clone(),
        (None, Some(v)) => vec![v],
        (None, None) => MemoryVariant::ALL.to_vec(),
    };
    let strategies: Vec<Option<PteStrategy>> = match (&a.strategies, a.w.machine.strategy) {
        (Some(_), Some(_)) => {
            return Err(InputError(
                "give either --strategies (a list) or --strategy, not both".to_string(),
            )
            .into())
        }
        (Some(l), None) => l.0.iter().copied().map(Some).collect(),
        (None, s) => vec![s],
    };
    let allocs: Vec<Option<PtAllocKind>> = match (&a.pt_allocs, a.w.machine.pt_alloc) {
        (Some(_), Some(_)) => {
            return Err(InputError(
                "give either --pt-allocs (a list) or --pt-alloc, not both".to_string(),
            )
            .into())
        }
        (Some(l), None) => l.0.iter().copied().map(Some).collect(),
        (None, p) => vec![p],
    };
    let base = base_spec(&a.w)?;
    if let Some(p) = &a.plot {
        crate::plot::check_path(p)?;
    }
    let mut notes = Vec::new();
    let mut specs = Vec::new();
    let mut labels = Vec::new();
    for &variant in &configs {
        for &strategy in &strategies {
            for &pt_alloc in &allocs {
                let c = CellChoice {
                    variant,
                    strategy,
                    pt_alloc,
                };
                specs.push(cell_spec(&base, c, &mut notes)?);
                labels.push(format!(
                    "{} {} {}",
                    variant.name(),
                    strategy.map(|s| s.name()).unwrap_or("(default strategy)"),
                    pt_alloc.map(|s| s.name()).unwrap_or("")
                ));
            }
        }
    }
    let shard_of = |k: usize| a.shard.is_none_or(|s| s.takes(k));
    let picked: Vec<usize> = (0..specs.len()).filter(|&k| shard_of(k)).collect();
    let my_specs: Vec<WorkloadSpec> = picked.iter().map(|&k| specs[k].clone()).collect();
    let my_labels: Vec<String> = picked.iter().map(|&k| labels[k].clone()).collect();
    let jobs = a.jobs.unwrap_or_else(host_cpus);
    let progress = crate::progress::enabled(a.quiet, a.json || a.csv || a.shard.is_some());
    let cell_machine = CellMachine::from_args(&a.w.machine)?;
    let swap_files = a.w.machine.swap_file.numbered(specs.len())?;
    let t0 = std::time::Instant::now();
    let results = run_cells(
        &my_specs,
        jobs,
        progress,
        &cell_machine,
        swap_files.as_ref(),
    );
    let (done, status) = collect(results, &my_labels);
    let runs: Vec<&RunReport> = done.iter().map(|(_, r)| r).collect();
    fallback_notes(&runs, &mut notes);
    let cells: Vec<Value> = done
        .iter()
        .map(|(i, r)| {
            let mut v = crate::cmd_run::report_json(r);
            v["cell"] = json!(picked[*i]);
            v
        })
        .collect();
    let params = json!({"workload": base.name, "runs": specs.len(), "pt_allocs": allocs.len()});
    if let Some(shard) = a.shard {
        let doc = crate::shard::document(
            "compare",
            params,
            shard,
            specs.len(),
            cells,
            &notes,
            t0.elapsed().as_secs_f64(),
        );
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(status);
    }
    let out = Output {
        json: a.json,
        csv: a.csv,
        plot: a.plot.clone(),
    };
    Ok(status.max(render(&params, &cells, &notes, &out)?))
}

/// How a command's results are printed: a table (default), JSON, or CSV; and a plot if asked.
#[derive(Clone, Debug, Default)]
pub struct Output {
    /// Print JSON.
    pub json: bool,
    /// Print CSV, one row per run.
    pub csv: bool,
    /// Write the plot here.
    pub plot: Option<PathBuf>,
}

/// The columns of a run's CSV row, after any the command adds before them.
pub const CSV_RUN_COLUMNS: &[&str] = &[
    "config",
    "strategy",
    "pt_alloc",
    "processes_started",
    "processes_failed",
    "first_failure_call",
    "first_failure_errno_or_signal",
    "LowFree_kB",
    "PageTablesLow_kB",
    "PageTablesHigh_kB",
    "Cached_kB",
    "kmap_atomic",
    "kmap",
    "invlpg",
    "tlb_shootdowns",
    "operations",
    "cycles",
    "host_seconds",
    "event_hash",
];

/// A run object's values for [`CSV_RUN_COLUMNS`].
pub fn csv_run_row(r: &Value) -> Vec<String> {
    use crate::report::{js, ju};
    let f = &r["first_failure"];
    vec![
        js(r, "config").to_string(),
        js(r, "strategy").to_string(),
        js(r, "pt_alloc").to_string(),
        ju(r, &["processes_started"]).to_string(),
        ju(r, &["processes_failed"]).to_string(),
        js(f, "call").to_string(),
        js(f, "errno_or_signal").to_string(),
        ju(r, &["meminfo", "LowFree"]).to_string(),
        ju(r, &["meminfo", "PageTablesLow"]).to_string(),
        ju(r, &["meminfo", "PageTablesHigh"]).to_string(),
        ju(r, &["meminfo", "Cached"]).to_string(),
        ju(r, &["counters", "kmap_atomic"]).to_string(),
        ju(r, &["counters", "kmap"]).to_string(),
        ju(r, &["counters", "invlpg"]).to_string(),
        ju(r, &["counters", "tlb_shootdowns"]).to_string(),
        ju(r, &["operations"]).to_string(),
        ju(r, &["cycles"]).to_string(),
        format!("{:.3}", r["host_seconds"].as_f64().unwrap_or(0.0)),
        js(r, "event_hash").to_string(),
    ]
}

/// Print `header` and `rows` as CSV on stdout.
pub fn print_csv(header: &[String], rows: &[Vec<String>]) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_writer(std::io::stdout().lock());
    w.write_record(header)?;
    for r in rows {
        w.write_record(r)?;
    }
    w.flush()?;
    Ok(())
}

/// Print a compare's results (its run objects, in cell order) and write its plot: what
/// `compare` prints, and what `merge` prints for its shards. The status: 1 if a check failed.
pub fn render(
    params: &Value,
    runs: &[Value],
    notes: &[String],
    out: &Output,
) -> anyhow::Result<u8> {
    let refs: Vec<&Value> = runs.iter().collect();
    let name = crate::report::js(params, "workload");
    let runs_clean: Vec<Value> = runs
        .iter()
        .map(|r| {
            let mut r = r.clone();
            if let Some(o) = r.as_object_mut() {
                o.remove("cell");
            }
            r
        })
        .collect();
    if let Some(p) = &out.plot {
        // Label each series with what differs between the runs: config and strategy, plus
        // the allocator when several are compared.
        let shown: Vec<Value> = runs
            .iter()
            .map(|r| {
                let mut r = r.clone();
                if params["pt_allocs"].as_u64() > Some(1) {
                    r["strategy"] = json!(format!(
                        "{}, {}",
                        crate::report::js(&r, "strategy"),
                        crate::report::js(&r, "pt_alloc")
                    ));
                }
                r
            })
            .collect();
        let shown_refs: Vec<&Value> = shown.iter().collect();
        crate::plot::steps_plot(
            p,
            &format!("{name}: LowFree per step, by configuration"),
            &shown_refs,
        )?;
    }
    let status = if runs.iter().any(|r| {
        r["check_failures"]
            .as_array()
            .is_some_and(|c| !c.is_empty())
    }) {
        crate::EXIT_FAILURE_FOUND
    } else {
        0
    };
    if out.json {
        println!("{}", serde_json::to_string_pretty(&runs_clean)?);
        return Ok(status);
    }
    if out.csv {
        let header: Vec<String> = CSV_RUN_COLUMNS.iter().map(|s| s.to_string()).collect();
        let rows: Vec<Vec<String>> = runs.iter().map(csv_run_row).collect();
        print_csv(&header, &rows)?;
        return Ok(status);
    }
    println!(
        "{name}: {} run(s); values at the last step",
        params["runs"].as_u64().unwrap_or(runs.len() as u64)
    );
    println!("{}", report::runs_table(&refs, None));
    crate::cmd_replay::print_replay_rows(runs);
    for n in notes {
        println!("note: {n}");
    }
    if let Some(p) = &out.plot {
        println!("plot of LowFree against processes: {}", p.display());
    }
    print_check_failures(runs);
    Ok(status)
}
