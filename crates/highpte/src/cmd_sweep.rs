//! `highpte sweep`: run one workload for each value of one parameter (processes, RAM, CPUs or
//! seed) on each configuration, print a table and plot a series per configuration.

use crate::cmd_compare::{self, CellChoice, ConfigList};
use crate::report;
use crate::workload_args::{InputError, WorkloadArgs};
use clap::Args;
use highpte_arch::size::{parse_size, DisplaySize, GB, MB};
use highpte_arch::{MemoryVariant, MAX_CPUS};
use highpte_workload::runner::RunReport;
use highpte_workload::{Size, WorkloadSpec};
use serde_json::{json, Value};
use std::path::PathBuf;

/// Most values one sweep may have (a guard against a mistyped step).
pub const MAX_POINTS: usize = 200;

/// The parameter a sweep varies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VaryName {
    /// Target number of processes.
    Processes,
    /// Installed RAM, bytes.
    Ram,
    /// Number of CPUs.
    Cpus,
    /// The seed.
    Seed,
}

impl VaryName {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            VaryName::Processes => "processes",
            VaryName::Ram => "ram",
            VaryName::Cpus => "cpus",
            VaryName::Seed => "seed",
        }
    }
    /// The table's column header for the value.
    fn header(self) -> &'static str {
        match self {
            VaryName::Processes => "target\nprocesses",
            VaryName::Ram => "RAM",
            VaryName::Cpus => "CPUs",
            VaryName::Seed => "seed",
        }
    }
    /// The plot's x-axis description, with its unit.
    fn axis(self) -> &'static str {
        match self {
            VaryName::Processes => "processes (target)",
            VaryName::Ram => "RAM (GB)",
            VaryName::Cpus => "CPUs",
            VaryName::Seed => "seed",
        }
    }
    /// A value as the table shows it.
    fn show(self, v: u64) -> String {
        match self {
            VaryName::Ram => DisplaySize(v).to_string(),
            _ => v.to_string(),
        }
    }
    /// A value on the plot's x axis.
    fn x(self, v: u64) -> f64 {
        match self {
            VaryName::Ram => v as f64 / GB as f64,
            _ => v as f64,
        }
    }
}

/// A parsed `--vary NAME=FROM..TO/STEP`: the parameter and every value, FROM first.
#[derive(Clone, Debug)]
pub struct Vary {
    /// The parameter.
    pub name: VaryName,
    /// The values: FROM, FROM+STEP, ... up to and including TO when a step lands on it.
    pub values: Vec<u64>,
}

const VARY_FORM: &str = "expected NAME=FROM..TO/STEP with NAME one of processes, ram, cpus, seed, e.g. processes=100..600/100, ram=4G..32G/4G, cpus=1..8/1";

/// clap parser for `--vary`. Errors say what is wrong, where (character position in the
/// argument), and how to fix it.
pub fn parse_vary(s: &str) -> Result<Vary, String> {
    let err =
        |what: String, at: usize| format!("{what} at character {} of '{s}'; {VARY_FORM}", at + 1);
    let Some(eq) = s.find('=') else {
        return Err(err("missing '=' after the parameter name".into(), s.len()));
    };
    let name = match s[..eq].trim() {
        "processes" => VaryName::Processes,
        "ram" => VaryName::Ram,
        "cpus" => VaryName::Cpus,
        "seed" => VaryName::Seed,
        other => return Err(err(format!("unknown parameter '{other}'"), 0)),
    };
    let rest = &s[eq + 1..];
    let base = eq + 1;
    let Some(dots) = rest.find("..") else {
        return Err(err("missing '..' between FROM and TO".into(), base));
    };
    let Some(slash) = rest.find('/') else {
        return Err(err("missing '/STEP' after TO".into(), s.len()));
    };
    if slash < dots {
        return Err(err("'/STEP' must come after FROM..TO".into(), base + slash));
    }
    let parts = [
        ("FROM", &rest[..dots], base),
        ("TO", &rest[dots + 2..slash], base + dots + 2),
        ("STEP", &rest[slash + 1..], base + slash + 1),
    ];
    let mut vals = [0u64; 3];
    for (i, (what, text, at)) in parts.iter().enumerate() {
        let text = text.trim();
        if text.is_empty() {
            return Err(err(format!("{what} is empty"), *at));
        }
        vals[i] = match name {
            VaryName::Ram => {
                parse_size(text).map_err(|e| err(format!("{what} '{text}': {e}"), *at))?
            }
            _ => text
                .parse::<u64>()
                .map_err(|_| err(format!("{what} '{text}' is not a whole number"), *at))?,
        };
    }
    let [from, to, step] = vals;
    if step == 0 {
        return Err(err(
            "STEP is 0: it must be at least 1".into(),
            base + slash + 1,
        ));
    }
    if from > to {
        return Err(err(
            format!(
                "FROM ({}) is larger than TO ({})",
                name.show(from),
                name.show(to)
            ),
            base,
        ));
    }
    let count = (to - from) / step + 1;
    if count > MAX_POINTS as u64 {
        return Err(err(
            format!("{count} values; a sweep runs at most {MAX_POINTS}: use a larger STEP"),
            base + slash + 1,
        ));
    }
    let values: Vec<u64> = (0..count).map(|i| from + i * step).collect();
    for &v in &values {
        let bad = match name {
            VaryName::Processes => (v == 0 || v > 32767)
                .then(|| format!("{v} processes is out of range: accepted 1 to 32767")),
            VaryName::Cpus => (v == 0 || v > u64::from(MAX_CPUS))
                .then(|| format!("{v} CPUs is out of range: accepted 1 (UP) to {MAX_CPUS}")),
            VaryName::Ram => (!(16 * MB..=64 * GB).contains(&v) || v % 4096 != 0).then(|| {
                format!(
                    "RAM of {} is out of range: accepted 16M to 64G in whole 4K pages",
                    DisplaySize(v)
                )
            }),
            VaryName::Seed => None,
        };
        if let Some(b) = bad {
            return Err(err(b, base));
        }
    }
    Ok(Vary { name, values })
}

/// `highpte sweep`.
#[derive(Args, Clone, Debug)]
pub struct SweepArgs {
    #[command(flatten)]
    pub w: WorkloadArgs,
    /// The parameter and its values: NAME=FROM..TO/STEP, NAME one of processes, ram, cpus,
    /// seed (e.g. ram=4G..32G/4G).
    #[arg(long, value_parser = parse_vary)]
    pub vary: Vary,
    /// Configurations, comma-separated, or `all` [default: the workload's].
    #[arg(long, value_parser = cmd_compare::parse_configs)]
    pub configs: Option<ConfigList>,
    /// Write a plot: LowFree at the last step and processes failed against the value, one
    /// series per configuration (SVG, or PNG by extension).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Print a JSON list with one run object per point (schema: docs/json.md).
    #[arg(long)]
    pub json: bool,
    /// Runs at a time (host threads) [default: the number of host CPUs].
    #[arg(long, short = 'j', value_parser = crate::args::parse_jobs)]
    pub jobs: Option<usize>,
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

/// `base` with the swept parameter set to `v`.
fn with_value(base: &WorkloadSpec, name: VaryName, v: u64) -> WorkloadSpec {
    let mut s = base.clone();
    match name {
        VaryName::Processes => {
            // v is checked to fit 1..=32767 by parse_vary.
            let n = u32::try_from(v).unwrap_or(u32::MAX);
            s.processes.count = n;
            if let Some(r) = &mut s.processes.ramp {
                r.start = r.start.min(n);
            }
        }
        VaryName::Ram => s.machine.ram = Size(v),
        VaryName::Cpus => s.machine.cpus = u32::try_from(v).unwrap_or(u32::MAX),
        VaryName::Seed => s.machine.seed = v,
    }
    s
}

/// `highpte sweep`.
pub fn run(a: &SweepArgs) -> anyhow::Result<u8> {
    let base = cmd_compare::base_spec(&a.w)?;
    if let Some(p) = &a.plot {
        crate::plot::check_path(p)?;
    }
    let configs = match (&a.configs, a.w.machine.config) {
        (Some(_), Some(_)) => {
            return Err(InputError(
                "give either --configs (a list) or --config, not both".to_string(),
            )
            .into())
        }
        (Some(l), None) => l.0.clone(),
        (None, Some(v)) => vec![v],
        (None, None) => vec![base.machine.config],
    };
    let overridden = match a.vary.name {
        VaryName::Processes => a.w.processes.is_some(),
        VaryName::Ram => a.w.machine.ram.is_some(),
        VaryName::Cpus => a.w.machine.cpus.is_some(),
        VaryName::Seed => a.w.seed.is_some(),
    };
    if overridden {
        return Err(InputError(format!(
            "--{} and --vary {}=.. both set the {}: drop one",
            a.vary.name.name(),
            a.vary.name.name(),
            a.vary.name.name()
        ))
        .into());
    }
    let mut notes = Vec::new();
    let mut specs = Vec::new();
    let mut cells: Vec<(MemoryVariant, u64)> = Vec::new();
    for &variant in &configs {
        for &v in &a.vary.values {
            let s = with_value(&base, a.vary.name, v);
            let c = CellChoice {
                variant,
                strategy: None,
                pt_alloc: None,
            };
            specs.push(cmd_compare::cell_spec(&s, c, &mut notes)?);
            cells.push((variant, v));
        }
    }
    let labels: Vec<String> = cells
        .iter()
        .map(|(c, v)| {
            format!(
                "{} {}={}",
                c.name(),
                a.vary.name.name(),
                a.vary.name.show(*v)
            )
        })
        .collect();
    let shard_of = |k: usize| a.shard.is_none_or(|s| s.takes(k));
    let picked: Vec<usize> = (0..specs.len()).filter(|&k| shard_of(k)).collect();
    let my_specs: Vec<WorkloadSpec> = picked.iter().map(|&k| specs[k].clone()).collect();
    let my_labels: Vec<String> = picked.iter().map(|&k| labels[k].clone()).collect();
    let jobs = a.jobs.unwrap_or_else(cmd_compare::host_cpus);
    let progress = crate::progress::enabled(a.quiet, a.json || a.csv || a.shard.is_some());
    let cell_machine = cmd_compare::CellMachine::from_args(&a.w.machine)?;
    let swap_files = a.w.machine.swap_file.numbered(specs.len())?;
    let t0 = std::time::Instant::now();
    let results = cmd_compare::run_cells(
        &my_specs,
        jobs,
        progress,
        &cell_machine,
        swap_files.as_ref(),
    );
    let (done, status) = cmd_compare::collect(results, &my_labels);
    let runs: Vec<&RunReport> = done.iter().map(|(_, r)| r).collect();
    cmd_compare::fallback_notes(&runs, &mut notes);
    let cells_json: Vec<Value> = done
        .iter()
        .map(|(i, r)| {
            let k = picked[*i];
            let mut v = crate::cmd_run::report_json(r);
            v["vary"] = json!({"name": a.vary.name.name(), "value": cells[k].1});
            v["cell"] = json!(k);
            v
        })
        .collect();
    let params = json!({
        "workload": base.name,
        "vary": a.vary.name.name(),
        "values": a.vary.values,
        "configs": configs.iter().map(|c| c.name()).collect::<Vec<_>>(),
    });
    if let Some(shard) = a.shard {
        let doc = crate::shard::document(
            "sweep",
            params,
            shard,
            specs.len(),
            cells_json,
            &notes,
            t0.elapsed().as_secs_f64(),
        );
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(status);
    }
    let out = cmd_compare::Output {
        json: a.json,
        csv: a.csv,
        plot: a.plot.clone(),
    };
    Ok(status.max(render(&params, &cells_json, &notes, &out)?))
}

/// Print a sweep's results (its run objects with their `vary`, in cell order) and write its
/// plot: what `sweep` prints, and what `merge` prints for its shards.
pub fn render(
    params: &Value,
    runs: &[Value],
    notes: &[String],
    out: &cmd_compare::Output,
) -> anyhow::Result<u8> {
    use crate::report::{js, ju};
    let name = match js(params, "vary") {
        "processes" => VaryName::Processes,
        "ram" => VaryName::Ram,
        "cpus" => VaryName::Cpus,
        _ => VaryName::Seed,
    };
    let values: Vec<u64> = params["values"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_u64)
        .collect();
    let configs: Vec<&str> = params["configs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let workload = js(params, "workload");
    let value = |r: &Value| ju(r, &["vary", "value"]);
    if let Some(p) = &out.plot {
        let series: Vec<crate::plot::SweepSeries> = configs
            .iter()
            .map(|c| crate::plot::SweepSeries {
                label: c.to_string(),
                points: runs
                    .iter()
                    .filter(|r| js(r, "config") == *c)
                    .map(|r| {
                        (
                            name.x(value(r)),
                            ju(r, &["meminfo", "LowFree"]) as f64 / 1024.0,
                            ju(r, &["processes_failed"]) as f64,
                        )
                    })
                    .collect(),
            })
            .collect();
        crate::plot::sweep_plot(
            p,
            &format!(
                "{workload}: LowFree and failed processes against {}",
                name.axis()
            ),
            name.axis(),
            &series,
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
        let list: Vec<Value> = runs
            .iter()
            .map(|r| {
                let mut r = r.clone();
                if let Some(o) = r.as_object_mut() {
                    o.remove("cell");
                }
                r
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(status);
    }
    if out.csv {
        let mut header = vec![name.name().to_string()];
        header.extend(cmd_compare::CSV_RUN_COLUMNS.iter().map(|s| s.to_string()));
        let rows: Vec<Vec<String>> = runs
            .iter()
            .map(|r| {
                let mut row = vec![value(r).to_string()];
                row.extend(cmd_compare::csv_run_row(r));
                row
            })
            .collect();
        cmd_compare::print_csv(&header, &rows)?;
        return Ok(status);
    }
    println!(
        "{workload}: {} = {} to {} ({} values) on {}; values at the last step",
        name.name(),
        name.show(values.first().copied().unwrap_or(0)),
        name.show(values.last().copied().unwrap_or(0)),
        values.len(),
        configs.join(", ")
    );
    let shown: Vec<String> = runs.iter().map(|r| name.show(value(r))).collect();
    let refs: Vec<&Value> = runs.iter().collect();
    println!(
        "{}",
        report::runs_table(&refs, Some((name.header(), &shown)))
    );
    for n in notes {
        println!("note: {n}");
    }
    if let Some(p) = &out.plot {
        println!("plot: {}", p.display());
    }
    cmd_compare::print_check_failures(runs);
    Ok(status)
}
