//! `highpte replay TRACE`: a page trace of a real program replayed through the kernel, in one
//! or more instances, with what it cost.

use crate::args::MachineArgs;
use crate::cmd_run::RunArgs;
use crate::workload_args::{InputError, InstancesFrom, WorkloadArgs};
use clap::Args;
use highpte_kernel::FailAlloc;
use highpte_workload::runner::RunReport;
use serde_json::{json, Map, Value};
use std::path::PathBuf;

/// `highpte replay`.
#[derive(Args, Clone, Debug)]
pub struct ReplayArgs {
    /// The trace (.pgt or .pgt.zst; format: docs/traces.md).
    pub trace: PathBuf,
    #[command(flatten)]
    pub machine: MachineArgs,
    /// Instances of the trace: each a process of its own, replaying the whole trace once and
    /// staying alive until the end: 1 to 32767.
    #[arg(long, value_parser = crate::args::parse_processes, default_value = "1")]
    pub instances: u32,
    /// How the instances start: "exec" (each its own process, mapping the program itself) or
    /// "fork" (forked from one parent that mapped the program and loaded its text, which they
    /// share copy-on-write; no --ramp). See docs/traces.md.
    #[arg(long, value_enum, default_value = "exec")]
    pub instances_from: InstancesFrom,
    /// Start the instances in steps, as START,STEP (e.g. 100,100), with a report after each.
    #[arg(long)]
    pub ramp: Option<String>,
    /// Seed of every random choice (the interleaving of the instances): 0 to 2^64-1.
    #[arg(long, value_parser = crate::args::parse_seed, allow_hyphen_values = true)]
    pub seed: Option<u64>,
    /// Print one JSON object (schema: docs/json.md).
    #[arg(long)]
    pub json: bool,
    /// Write a plot of LowFree and page tables per step (SVG, or PNG by extension).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Check the kernel's invariants after every step and at the end.
    #[arg(long)]
    pub check: bool,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
    #[command(flatten)]
    pub timeline: crate::timeline::TimelineArgs,
}

/// Run `highpte replay`.
pub fn run(a: &ReplayArgs) -> anyhow::Result<u8> {
    let trace = a.trace.display().to_string();
    if !highpte_workload::trace::is_trace_path(&trace) {
        return Err(InputError(format!(
            "'{trace}' is not a trace: expected a .pgt or .pgt.zst file (make one with 'highpte trace convert')"
        ))
        .into());
    }
    let r = RunArgs {
        w: WorkloadArgs {
            workload: trace,
            machine: a.machine.clone(),
            seed: a.seed,
            processes: Some(a.instances),
            ramp: a.ramp.clone(),
            instances_from: Some(a.instances_from),
        },
        json: a.json,
        plot: a.plot.clone(),
        check: a.check,
        stress: false,
        fail_alloc: FailAlloc::Off,
        csv: false,
        quiet: a.quiet,
        timeline: a.timeline.clone(),
    };
    crate::cmd_run::run(&r)
}

fn counter(r: &RunReport, name: &str) -> u64 {
    r.counters
        .iter()
        .chain(r.machine.iter())
        .find(|(k, _)| k == name)
        .map_or(0, |(_, v)| *v)
}

/// Cycles (all CPUs) per replayed access.
fn cycles_per_access(r: &RunReport) -> f64 {
    let n = r.replay.total_accesses();
    if n == 0 {
        0.0
    } else {
        r.cycles_all_cpus as f64 / n as f64
    }
}

/// TLB misses (user and kernel, every CPU) per 1,000 replayed accesses.
fn tlb_misses_per_1000(r: &RunReport) -> f64 {
    let n = r.replay.total_accesses();
    if n == 0 {
        0.0
    } else {
        counter(r, "tlb_misses") as f64 * 1000.0 / n as f64
    }
}

/// The instance, record, access and distinct-page keys of `t`; the distinct pages as zeros
/// before the first instance completes when `always`, else only once it has.
fn totals_json(
    m: &mut Map<String, Value>,
    t: &highpte_workload::runner::ReplayTotals,
    always: bool,
) {
    m.insert("instances".into(), json!(t.started));
    m.insert("instances_completed".into(), json!(t.completed));
    m.insert("records".into(), json!(t.records));
    m.insert(
        "accesses".into(),
        json!({"fetch": t.accesses[0], "read": t.accesses[1], "write": t.accesses[2], "modify": t.accesses[3], "total": t.total_accesses()}),
    );
    if let Some([all, fetch, data, written]) = t.distinct.or(always.then_some([0; 4])) {
        m.insert("distinct_pages".into(), json!(all));
        m.insert(
            "pages".into(),
            json!({"fetch": fetch, "data": data, "written": written}),
        );
    }
}

/// The keys a run with `replay` ops adds to its JSON object (docs/json.md, "replay"); none
/// for other runs.
pub fn replay_json(r: &RunReport) -> Map<String, Value> {
    let mut m = Map::new();
    let t = &r.replay;
    if t.started == 0 {
        return m;
    }
    totals_json(&mut m, t, true);
    m.insert(
        "faults".into(),
        json!({
            "total": counter(r, "faults"),
            "demand_zero": counter(r, "faults_anon"),
            "cow": counter(r, "faults_cow"),
            "shared": counter(r, "faults_shared"),
            "file": counter(r, "faults_file"),
            "major": counter(r, "pgmajfault"),
            "sigsegv": counter(r, "faults_sigsegv"),
            "sigbus": counter(r, "faults_sigbus"),
        }),
    );
    m.insert(
        "tlb_misses_per_1000".into(),
        json!((tlb_misses_per_1000(r) * 1000.0).round() / 1000.0),
    );
    m.insert("kmap_atomic".into(), json!(counter(r, "kmap_atomic")));
    m.insert(
        "cycles_per_access".into(),
        json!((cycles_per_access(r) * 1000.0).round() / 1000.0),
    );
    m.insert("syscalls_replayed".into(), json!(t.syscalls));
    m.insert("madvise_skipped".into(), json!(t.madvise_skipped));
    m.insert("text_pages_loaded".into(), json!(t.text_pages_loaded));
    m
}

/// The replay keys of one step's JSON object (docs/json.md): the run's replay figures when
/// the step's report was taken, counted from the start of the run.
pub fn step_replay_json(s: &highpte_workload::runner::StepReplay) -> Map<String, Value> {
    let mut m = Map::new();
    totals_json(&mut m, &s.totals, false);
    let [total, zero, cow, shared, file, major] = s.faults;
    m.insert(
        "faults".into(),
        json!({"total": total, "demand_zero": zero, "cow": cow, "shared": shared, "file": file, "major": major}),
    );
    m.insert(
        "tlb_misses_per_1000".into(),
        json!((s.tlb_misses_per_1000() * 1000.0).round() / 1000.0),
    );
    m.insert("kmap_atomic".into(), json!(s.kmap_atomic));
    m.insert(
        "cycles_per_access".into(),
        json!((s.cycles_per_access() * 1000.0).round() / 1000.0),
    );
    m
}

/// Per step of a ramped replay: what the instances so far cost (nothing for one step).
fn print_replay_steps(r: &RunReport) {
    let rows: Vec<Vec<String>> = r
        .steps
        .iter()
        .filter_map(|s| s.replay.as_ref().map(|rp| (s, rp)))
        .map(|(s, rp)| {
            vec![
                (s.step + 1).to_string(),
                rp.totals.started.to_string(),
                rp.totals.records.to_string(),
                rp.faults[0].to_string(),
                format!("{:.1}", rp.tlb_misses_per_1000()),
                format!(
                    "{} / {}",
                    s.meminfo.page_tables_low, s.meminfo.page_tables_high
                ),
                rp.kmap_atomic.to_string(),
                format!("{:.2}", rp.cycles_per_access()),
            ]
        })
        .collect();
    if rows.len() < 2 {
        return;
    }
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    t.set_header([
        "step",
        "instances",
        "records",
        "faults",
        "TLB misses / 1000",
        "page tables kB low / high",
        "kmap_atomic",
        "cycles / access",
    ]);
    for row in rows {
        t.add_row(row);
    }
    println!("  per step (counted from the start of the run):");
    println!("{t}");
}

/// The replay lines of a text report (none for a run without `replay` ops).
pub fn print_replay(r: &RunReport) {
    let t = &r.replay;
    if t.started == 0 {
        return;
    }
    println!();
    println!(
        "replay: {} instance(s) started, {} completed; {} records, {} accesses (fetch {}, read {}, write {}, modify {}), {} system calls and regions{}",
        t.started,
        t.completed,
        t.records,
        t.total_accesses(),
        t.accesses[0],
        t.accesses[1],
        t.accesses[2],
        t.accesses[3],
        t.syscalls,
        if t.madvise_skipped > 0 {
            format!(", {} madvise skipped", t.madvise_skipped)
        } else {
            String::new()
        }
    );
    if t.text_pages_loaded > 0 {
        println!(
            "  forked from one parent that loaded {} text pages (shared copy-on-write)",
            t.text_pages_loaded
        );
    }
    if let Some([all, fetch, data, written]) = t.distinct {
        println!(
            "  distinct pages (instance 0): {all} (fetch {fetch}, data {data}, written {written})"
        );
    }
    println!(
        "  faults {} (demand zero {}, copy-on-write {}, file {}, SIGSEGV {}); TLB misses per 1000 accesses {:.1}",
        counter(r, "faults"),
        counter(r, "faults_anon"),
        counter(r, "faults_cow"),
        counter(r, "faults_file"),
        counter(r, "faults_sigsegv"),
        tlb_misses_per_1000(r)
    );
    println!(
        "  page tables: {} kB low, {} kB high; kmap_atomic maps {}; {:.2} cycles per access (all CPUs)",
        r.meminfo_peak.page_tables_low,
        r.meminfo_peak.page_tables_high,
        counter(r, "kmap_atomic"),
        cycles_per_access(r)
    );
    print_replay_steps(r);
}

/// Under a `compare` table of runs that replay a trace: one line per run with what the
/// program cost there (nothing for other runs).
pub fn print_replay_rows(runs: &[Value]) {
    use crate::report::{js, ju};
    if !runs.iter().any(|r| r.get("records").is_some()) {
        return;
    }
    println!("replay: per run, every instance");
    for r in runs {
        println!(
            "  {:<12} {:<10} {} instances, {} records, {} faults; page tables {} kB low, {} kB high; kmap_atomic {}; TLB misses per 1000 accesses {:.1}; {:.2} cycles per access",
            js(r, "config"),
            js(r, "strategy"),
            ju(r, &["instances"]),
            ju(r, &["records"]),
            ju(r, &["faults", "total"]),
            ju(r, &["meminfo", "PageTablesLow"]),
            ju(r, &["meminfo", "PageTablesHigh"]),
            ju(r, &["kmap_atomic"]),
            r["tlb_misses_per_1000"].as_f64().unwrap_or(0.0),
            r["cycles_per_access"].as_f64().unwrap_or(0.0),
        );
    }
}
