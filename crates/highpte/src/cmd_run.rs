//! `highpte run`: run one workload on one configuration and report.

use crate::report;
use crate::workload_args::WorkloadArgs;
use clap::Args;
use highpte_kernel::FailAlloc;
use highpte_workload::runner::{self, InvariantChecks, RunOptions, RunReport};
use highpte_workload::WorkloadSpec;
use serde_json::{json, Value};
use std::rc::Rc;

/// `highpte run`.
#[derive(Args, Clone, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub w: WorkloadArgs,
    /// Print one JSON object (schema: docs/json.md).
    #[arg(long)]
    pub json: bool,
    /// Write a plot of LowFree and page tables per step (SVG, or PNG by extension).
    #[arg(long)]
    pub plot: Option<std::path::PathBuf>,
    /// Check the kernel's invariants after every step and at the end.
    #[arg(long)]
    pub check: bool,
    /// Stress mode: perturb interleavings from the seed.
    #[arg(long)]
    pub stress: bool,
    /// Fault injection, as for `highpte stress`: fail page allocations at a rate (rate=0.01),
    /// only the N-th one (nth=N), every one at a named site (site=NAME) or the N-th there
    /// (site=NAME:N).
    #[arg(long = "fail-alloc", value_parser = crate::args::parse_fail_alloc, default_value = "off")]
    pub fail_alloc: FailAlloc,
    /// Print CSV, one row per step (for pandas and spreadsheets).
    #[arg(long, conflicts_with = "json")]
    pub csv: bool,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
    #[command(flatten)]
    pub timeline: crate::timeline::TimelineArgs,
}

/// The CSV columns of `run --csv`: one row per step.
const STEP_CSV: &[&str] = &[
    "step",
    "processes",
    "processes_ok",
    "failures",
    "first_failure_call",
    "first_failure_errno_or_signal",
    "MemFree_kB",
    "LowFree_kB",
    "HighFree_kB",
    "PageTablesLow_kB",
    "PageTablesHigh_kB",
    "Cached_kB",
    "SwapFree_kB",
    "file_reads",
    "disk_reads",
    "cycles",
];

/// Print the steps of `r` as CSV.
fn print_steps_csv(r: &RunReport) -> anyhow::Result<()> {
    let header: Vec<String> = STEP_CSV.iter().map(|s| s.to_string()).collect();
    let rows: Vec<Vec<String>> = r
        .steps
        .iter()
        .map(|s| {
            let m = &s.meminfo;
            let f = s.failures.first();
            vec![
                (s.step + 1).to_string(),
                s.processes.to_string(),
                s.processes_ok.to_string(),
                s.failures.len().to_string(),
                f.map(|f| f.call.clone()).unwrap_or_default(),
                f.map(|f| f.errno_or_signal.clone()).unwrap_or_default(),
                m.mem_free.to_string(),
                m.low_free.to_string(),
                m.high_free.to_string(),
                m.page_tables_low.to_string(),
                m.page_tables_high.to_string(),
                m.cached.to_string(),
                m.swap_free.to_string(),
                s.file_reads.to_string(),
                s.disk_reads.to_string(),
                s.cycles.to_string(),
            ]
        })
        .collect();
    crate::cmd_compare::print_csv(&header, &rows)
}

/// Quote `s` for a POSIX shell if it needs it.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./,:=+@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The workload argument of a replay command: a built-in's name, or the file's absolute path
/// (so that the command works from any directory).
pub fn replay_workload(workload: &str) -> String {
    if highpte_workload::builtin(workload).is_some() {
        return workload.to_string();
    }
    let p = std::path::Path::new(workload);
    let abs = std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    shell_quote(&abs.display().to_string())
}

/// The command that replays this run bit for bit from any directory: every machine and
/// workload value spelled out, so nothing depends on defaults or the current directory.
pub fn replay_command(cmd: &str, a: &RunArgs, spec: &WorkloadSpec) -> String {
    let m = &spec.machine;
    let mut c = format!(
        "highpte {cmd} {} --config {} --ram {} --cpus {} --preempt {} --seed {} --processes {} --ramp {}",
        replay_workload(&a.w.workload),
        m.config,
        m.ram,
        m.cpus,
        if m.preempt { "on" } else { "off" },
        m.seed,
        match a.w.instances_from {
            Some(crate::workload_args::InstancesFrom::Fork) => a.w.processes.unwrap_or(1),
            _ => spec.processes.count,
        },
        match spec.processes.ramp {
            Some(r) => format!("{},{}", r.start, r.step),
            None => "none".to_string(),
        }
    );
    if m.kernel != highpte_arch::KernelProfile::default() {
        c.push_str(&format!(" --kernel {}", m.kernel));
    }
    if a.w.instances_from == Some(crate::workload_args::InstancesFrom::Fork) {
        c.push_str(" --instances-from fork");
    }
    if let Some(s) = m.strategy {
        c.push_str(&format!(" --strategy {s}"));
    }
    if let Some(p) = m.pt_alloc {
        c.push_str(&format!(" --pt-alloc {p}"));
    }
    if m.swap.0 > 0 {
        c.push_str(&format!(" --swap {}", m.swap));
    }
    if let Some(r) = m.reclaim {
        c.push_str(&format!(" --reclaim {r}"));
    }
    if m.debug {
        c.push_str(" --debug");
    }
    let mach = &a.w.machine;
    if let Some(h) = mach.highmem {
        c.push_str(&format!(
            " --highmem {}",
            highpte_arch::size::DisplaySize(h)
        ));
    }
    if let Some(n) = mach.pkmap_entries {
        c.push_str(&format!(" --pkmap-entries {n}"));
    }
    if let Some(p) = &mach.cost {
        // Absolute, so that the command replays from any directory.
        let p = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
        c.push_str(&format!(
            " --cost {}",
            shell_quote(&p.display().to_string())
        ));
    }
    if a.stress {
        c.push_str(" --stress");
    }
    if a.check {
        c.push_str(" --check");
    }
    if a.fail_alloc != FailAlloc::Off {
        c.push_str(&format!(" --fail-alloc {}", a.fail_alloc));
    }
    c
}

pub fn run(a: &RunArgs) -> anyhow::Result<u8> {
    let spec = a.w.spec()?;
    if let Some(p) = &a.plot {
        crate::plot::check_path(p)?;
    }
    let replay = replay_command("run", a, &spec);
    let mut opts = RunOptions {
        fail_alloc: a.fail_alloc,
        stress: a.stress,
        invariants: if a.check {
            InvariantChecks::EachStep
        } else {
            InvariantChecks::Never
        },
        ..Default::default()
    };
    opts.highmem_limit = a.w.machine.highmem;
    if let Some(cost) = a.w.machine.cost_model()? {
        opts.machine.cost = cost;
    }
    opts.machine.swap_file = a.w.machine.swap_file.single()?;
    if let Some(n) = a.w.machine.pkmap_entries {
        opts.kernel_tweak = Some(Rc::new(move |k: &mut highpte_kernel::KernelOptions| {
            k.pkmap_entries = Some(n)
        }));
    }
    let bars = crate::progress::Bars::new(crate::progress::enabled(a.quiet, a.json || a.csv));
    crate::progress::attach(
        &mut opts,
        bars.bar(&spec, &format!("{} on {}", spec.name, spec.machine.config)),
    );
    let timeline = crate::timeline::Session::start(&a.timeline)?;
    opts.machine.timeline = timeline.as_ref().map(|t| t.hook());
    let rep = runner::run(&spec, &opts).map(crate::report::scrub);
    bars.clear();
    drop(opts);
    crate::timeline::finish(timeline)?;
    let rep = rep?;
    if let Some(p) = &a.plot {
        crate::plot::steps_plot(
            p,
            &format!("{} on {}", rep.workload, rep.config),
            &[&report_json(&rep)],
        )?;
    }
    if a.csv {
        print_steps_csv(&rep)?;
    } else if a.json {
        let mut v = report_json(&rep);
        v["replay"] = json!(replay);
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print_report(&rep, &replay);
    }
    Ok(if rep.failed_checks() {
        crate::EXIT_FAILURE_FOUND
    } else {
        0
    })
}

/// The documented JSON object of one run.
pub fn report_json(r: &RunReport) -> Value {
    let ff = r.first_failure.as_ref().map(|f| {
        json!({"process": f.process, "pid": f.pid, "call": f.call, "errno_or_signal": f.errno_or_signal, "LowFree": f.low_free_kb, "HighFree": f.high_free_kb, "step": f.step + 1, "processes_done": f.processes_done})
    });
    let steps: Vec<Value> = r
        .steps
        .iter()
        .map(|s| {
            let mut v = json!({"step": s.step + 1, "processes": s.processes, "processes_ok": s.processes_ok, "meminfo": report::meminfo_json(&s.meminfo), "cycles": s.cycles, "failures": s.failures.len(), "file_reads": s.file_reads, "disk_reads": s.disk_reads, "procs": crate::report_proc::snapshots_json(&s.procs)});
            if let (Some(rp), Some(o)) = (&s.replay, v.as_object_mut()) {
                o.extend(crate::cmd_replay::step_replay_json(rp));
            }
            v
        })
        .collect();
    let counters: serde_json::Map<String, Value> = r
        .counters
        .iter()
        .chain(r.machine.iter())
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let mut v = json!({
        "workload": r.workload,
        "boot": {"MemFree": r.boot_mem_free_kb, "LowFree": r.boot_low_free_kb},
        "config": r.config.name(),
        "kernel": r.kernel.name(),
        "paging": r.paging,
        "ram_bytes": r.ram_bytes,
        "cpus": r.cpus,
        "preempt": r.preempt,
        "strategy": r.strategy.name(),
        "pt_alloc": r.pt_alloc.name(),
        "reclaim": r.reclaim.name(),
        "swap_bytes": r.swap_bytes,
        "reclaim_zones": r.reclaim_zones.iter().map(|(z, s, rc)| json!({"zone": z, "scanned": s, "reclaimed": rc})).collect::<Vec<_>>(),
        "pte_chain_peak_bytes": r.pte_chain_peak_bytes,
        "seed": r.seed,
        "processes_started": r.processes_started,
        "processes_failed": r.processes_failed,
        "first_failure": ff,
        "steps": steps,
        "meminfo": report::meminfo_json(&r.meminfo_peak),
        "meminfo_end": report::meminfo_json(&r.meminfo_end),
        "pagetables": {"low_pages": r.meminfo_peak.page_tables_low / 4, "high_pages": r.meminfo_peak.page_tables_high / 4},
        "counters": counters,
        "operations": r.operations,
        "cycles": r.cycles,
        "cycles_all_cpus": r.cycles_all_cpus,
        "host_seconds": r.host_seconds,
        "event_hash": format!("{:#018x}", r.event_hash),
        "check_failures": r.check_failures,
        "outcome": r.outcome,
        "proc_records": crate::report_proc::records_json(&r.proc_records),
        "expectations_met": r.expectations_met,
        "deadlocked": r.deadlocked,
    });
    if let Some(o) = v.as_object_mut() {
        o.extend(crate::cmd_replay::replay_json(r));
    }
    v
}

/// Print the text report of one run; `replay` is the command that replays it.
pub fn print_report(r: &RunReport, replay: &str) {
    // The kernel profile only when it is not the default, so that 2.5 reports read as before.
    let kernel = if r.kernel == highpte_arch::KernelProfile::default() {
        String::new()
    } else {
        format!(", kernel {}", r.kernel)
    };
    println!(
        "{} on {}{} ({} paging), {} RAM, {} CPU(s), preempt {}, pte strategy {}, page-table allocator {}, seed {}",
        r.workload,
        r.config,
        kernel,
        r.paging,
        highpte_arch::size::DisplaySize(r.ram_bytes),
        r.cpus,
        if r.preempt { "on" } else { "off" },
        r.strategy,
        r.pt_alloc,
        r.seed
    );
    println!("{}", report::steps_table(&[r]));
    match &r.first_failure {
        Some(f) => println!(
            "first failure: process {} (pid {}) in step {}, {} processes done: {} failed with {}, LowFree {}, HighFree {}",
            f.process,
            f.pid,
            f.step + 1,
            f.processes_done,
            f.call,
            f.errno_or_signal,
            report::mb(f.low_free_kb),
            report::mb(f.high_free_kb)
        ),
        None if r.deadlocked => println!(
            "no process failed, but the machine deadlocked in step {} with {} processes started (the last row shows the machine as it stopped): {}",
            r.steps.last().map_or(1, |s| s.step + 1),
            r.processes_started,
            r.outcome
        ),
        None => println!("no failure: all {} processes ran", r.processes_started),
    }
    println!();
    println!("meminfo at the last step:");
    for l in report::meminfo_lines(&r.meminfo_peak) {
        println!("  {l}");
    }
    if r.swap_bytes > 0 || r.reclaim_zones.iter().any(|z| z.1 > 0) {
        println!();
        println!(
            "reclaim ({}), swap {}:",
            r.reclaim,
            highpte_arch::size::DisplaySize(r.swap_bytes)
        );
        for (z, s, rc) in &r.reclaim_zones {
            if *s > 0 || *rc > 0 {
                println!("  {z:<8} {s:>10} pages scanned {rc:>10} reclaimed");
            }
        }
        if r.pte_chain_peak_bytes > 0 {
            println!(
                "  reverse-map chains: {} at most, in low memory",
                report::mb(r.pte_chain_peak_bytes / 1024)
            );
        }
    }
    crate::report_proc::print_procs(r);
    crate::cmd_replay::print_replay(r);
    println!();
    println!("counters:");
    let mut line = String::new();
    for (k, v) in r.counters.iter().chain(r.machine.iter()) {
        if *v == 0 {
            continue;
        }
        let item = format!("{k} {v}");
        if line.len() + item.len() > 96 {
            println!("  {line}");
            line.clear();
        }
        if !line.is_empty() {
            line.push_str(", ");
        }
        line.push_str(&item);
    }
    if !line.is_empty() {
        println!("  {line}");
    }
    for l in r.kernel_log.iter().take(5) {
        println!("kernel: {l}");
    }
    if r.kernel_log.len() > 5 {
        println!("kernel: ... {} more lines", r.kernel_log.len() - 5);
    }
    println!();
    println!(
        "{} operations; {} simulated cycles ({:.3} s at 2 GHz); host {:.2} s; event hash {:#018x}",
        r.operations,
        r.cycles,
        r.cycles as f64 / 2e9,
        r.host_seconds,
        r.event_hash
    );
    if r.failed_checks() {
        println!();
        println!("CHECKS FAILED:");
        for c in &r.check_failures {
            println!("  {c}");
        }
        println!("replay: {replay}");
    }
}
