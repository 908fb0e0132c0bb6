//! `highpte demo`: the seed's story in one screen and one plot.
//!
//! 1. A database SGA (512 MB of SysV shared memory) attached by more and more processes on a
//!    32 GB PAE machine with 4 CPUs, on `64g` (page tables in low memory) and `64g-highpte`
//!    (user pte pages in high memory, mapped with kmap_atomic) side by side.
//! 2. wli's 2002 test: 1024 processes each mapping a shared 512 MB region on an 8-CPU 12 GB
//!    machine.

use crate::report;
use clap::Args;
use highpte_arch::MemoryVariant;
use highpte_workload::runner::{self, RunOptions, RunReport};
use highpte_workload::{builtin, WorkloadSpec};
use std::path::PathBuf;
use std::time::Instant;

/// `highpte demo`.
#[derive(Args, Clone, Debug)]
pub struct DemoArgs {
    /// Write a plot of sga's LowFree against processes here (SVG, or PNG by extension);
    /// without it no plot is written.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Print one JSON object with the four runs.
    #[arg(long)]
    pub json: bool,
    /// Smaller scale (sga to 600 processes, wli with 256): for a quick look.
    #[arg(long)]
    pub quick: bool,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
}

fn with_config(mut s: WorkloadSpec, v: MemoryVariant) -> WorkloadSpec {
    s.machine.config = v;
    s.machine.strategy = None;
    s
}

/// Host threads the demo runs simulations on: two (or one on a one-CPU host). Two keep the
/// peak host memory to two runs' worth.
fn workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(2))
}

/// Run the four simulations (sga and wli, each on `64g` and `64g-highpte`) on [`workers`]
/// threads, the longest first so that the threads finish together: sga on `64g-highpte`
/// (2,000 processes) on one, then the wli runs and sga on `64g` (which stops near 500) on
/// the other. Returns `[sga 64g, sga 64g-highpte, wli 64g, wli 64g-highpte]`.
fn run_four(
    sga: &WorkloadSpec,
    wli: &WorkloadSpec,
    bars: &crate::progress::Bars,
) -> anyhow::Result<[RunReport; 4]> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    let (low, high) = (MemoryVariant::Highmem64g, MemoryVariant::Highmem64gHighpte);
    // (slot in the result, workload, configuration), in the order the threads take them
    let order = [(1, sga, high), (3, wli, high), (2, wli, low), (0, sga, low)];
    let mut labels: [String; 4] = Default::default();
    let queue: Vec<Mutex<Option<_>>> = order
        .into_iter()
        .map(|(slot, spec, v)| {
            labels[slot] = format!("{} on {}", spec.name, v.name());
            let spec = with_config(spec.clone(), v);
            let bar = bars.bar(&spec, &labels[slot]);
            Mutex::new(Some((slot, spec, bar)))
        })
        .collect();
    let next = AtomicUsize::new(0);
    let results: Mutex<[Option<Result<RunReport, String>>; 4]> = Mutex::default();
    std::thread::scope(|s| {
        let threads: Vec<_> = (0..workers())
            .map(|_| {
                s.spawn(|| {
                    while let Some(job) = queue.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let Some((slot, spec, bar)) = job.lock().ok().and_then(|mut j| j.take())
                        else {
                            continue;
                        };
                        let mut o = RunOptions::default();
                        crate::progress::attach(&mut o, bar);
                        let r = runner::run(&spec, &o)
                            .map(crate::report::scrub)
                            .map_err(|e| e.to_string());
                        if let Ok(mut out) = results.lock() {
                            out[slot] = Some(r);
                        }
                    }
                })
            })
            .collect();
        // joined here, so a run's panic is reported below rather than re-raised by the scope
        for t in threads {
            let _ = t.join();
        }
    });
    // a run that panicked took its thread with it (the panic message is on stderr); the
    // other thread went on with the rest of the queue
    let results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    let mut out = Vec::with_capacity(4);
    for (r, label) in results.into_iter().zip(&labels) {
        match r {
            Some(Ok(r)) => out.push(r),
            Some(Err(e)) => anyhow::bail!("{label}: {e}"),
            None => anyhow::bail!("the {label} run panicked"),
        }
    }
    out.try_into()
        .map_err(|_| anyhow::anyhow!("the demo lost a run's report"))
}

pub fn run(a: &DemoArgs) -> anyhow::Result<u8> {
    if let Some(p) = &a.plot {
        crate::plot::check_path(p)?;
    }
    let t0 = Instant::now();
    let progress = crate::progress::enabled(a.quiet, a.json);
    let mut sga = builtin("sga").ok_or_else(|| anyhow::anyhow!("built-in sga missing"))?;
    let mut wli = builtin("wli").ok_or_else(|| anyhow::anyhow!("built-in wli missing"))?;
    if a.quick {
        sga.processes.count = 600;
        wli.processes.count = 256;
        wli.machine.ram = highpte_workload::Size(3 << 30);
    }
    let bars = crate::progress::Bars::new(progress);
    let runs = run_four(&sga, &wli, &bars);
    bars.clear();
    let [s64, shp, w64, whp] = runs?;
    if let Some(p) = &a.plot {
        crate::plot::steps_plot(
            p,
            "sga: 512 MB SGA on a 32 GB PAE machine, 4 CPUs",
            &[
                &crate::cmd_run::report_json(&s64),
                &crate::cmd_run::report_json(&shp),
            ],
        )?;
    }
    let failed_checks = [&s64, &shp, &w64, &whp].iter().any(|r| r.failed_checks());
    if a.json {
        let v = serde_json::json!({
            "sga": [crate::cmd_run::report_json(&s64), crate::cmd_run::report_json(&shp)],
            "wli": [crate::cmd_run::report_json(&w64), crate::cmd_run::report_json(&whp)],
            "plot": a.plot.as_ref().map(|p| p.display().to_string()),
            "host_seconds": t0.elapsed().as_secs_f64(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(if failed_checks {
            crate::EXIT_FAILURE_FOUND
        } else {
            0
        });
    }
    println!("highpte demo: page tables in high memory (Linux 2.5.5's highpte) against page tables in low memory");
    println!();
    println!(
        "1. sga: one process creates a {} SysV segment (a database SGA); processes attach it and fault in",
        highpte_arch::size::DisplaySize(sga_size(&sga))
    );
    println!(
        "   every page, {} more per step, on a {} PAE machine with {} CPUs. Each process needs its own page tables:",
        sga.processes.ramp.map(|r| r.step).unwrap_or(0),
        highpte_arch::size::DisplaySize(sga.machine.ram.0),
        sga.machine.cpus
    );
    println!("   with PAE a pte page maps 2 MB, so 512 MB costs 256 pte pages = 1 MB per process.");
    println!();
    println!("{}", report::demo_table(&[&s64, &shp]));
    println!();
    println!("   64g:         {}", verdict(&s64));
    println!("   64g-highpte: {}", verdict(&shp));
    if let Some(p) = &a.plot {
        println!("   plot of LowFree against processes: {}", p.display());
    }
    println!();
    println!(
        "2. wli's test (LKML, Feb 2002): {} processes each map and touch a shared 512 MB region, {} machine, {} CPUs.",
        wli.processes.count,
        highpte_arch::size::DisplaySize(wli.machine.ram.0),
        wli.machine.cpus
    );
    println!("   2.4.17 died with \"LowFree of 2MB with 9GB of highmem free\".");
    println!("   64g:         {}", verdict(&w64));
    println!("   64g-highpte: {}", verdict(&whp));
    println!();
    println!("What it shows: without highpte every process's page tables come out of the ~900 MB of low memory the");
    println!("kernel maps permanently, and on a 32 GB machine mem_map alone has already taken 384 MB of it. Low memory");
    println!("runs out after a few hundred processes while gigabytes of high memory sit unused. With highpte the pte");
    println!("pages come from high memory and are mapped for a moment with kmap_atomic, per CPU, without a lock; low");
    println!("memory then only pays for each process's pgd and pmd pages and kernel stack (about 24 kB).");
    println!();
    println!(
        "{} kmap_atomic mappings in the highpte sga run; simulated {} vs {} cycles for the first {} processes.",
        counter(&shp, "kmap_atomic"),
        cycles_at(&s64, s64.steps.len().min(shp.steps.len())),
        cycles_at(&shp, s64.steps.len().min(shp.steps.len())),
        s64.steps.get(s64.steps.len().min(shp.steps.len()).saturating_sub(1)).map(|s| s.processes).unwrap_or(0)
    );
    println!("demo took {:.1} s host time. Replay any run with `highpte run sga --config 64g` (or wli, 64g-highpte).", t0.elapsed().as_secs_f64());
    if failed_checks {
        for r in [&s64, &shp, &w64, &whp] {
            for c in &r.check_failures {
                println!("CHECK FAILED ({} {}): {c}", r.workload, r.config);
            }
        }
        return Ok(crate::EXIT_FAILURE_FOUND);
    }
    Ok(0)
}

fn sga_size(s: &WorkloadSpec) -> u64 {
    s.phases
        .iter()
        .flat_map(|p| p.ops.iter())
        .find_map(|o| match o {
            highpte_workload::Op::Shmget { size, .. } => Some(size.0),
            _ => None,
        })
        .unwrap_or(0)
}

fn counter(r: &RunReport, name: &str) -> u64 {
    r.counters
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| *v)
        .unwrap_or(0)
}

fn cycles_at(r: &RunReport, steps: usize) -> u64 {
    r.steps
        .get(steps.saturating_sub(1))
        .map(|s| s.cycles)
        .unwrap_or(0)
}

/// One sentence on how a run ended.
pub fn verdict(r: &RunReport) -> String {
    match &r.first_failure {
        Some(f) => {
            let failed: usize = r.steps.iter().map(|s| s.failures.len()).sum();
            format!(
                "first failure when {} processes were attached: {} failed with {}, LowFree {}, HighFree {}; {} of {} processes failed",
                f.processes_done,
                f.call,
                f.errno_or_signal,
                report::mb(f.low_free_kb),
                report::gb(f.high_free_kb),
                failed,
                r.processes_started
            )
        }
        None => format!(
            "runs all {} processes; LowFree still {}, page tables {} in high memory and {} in low",
            r.processes_started,
            report::mb(r.meminfo_peak.low_free),
            report::mb(r.meminfo_peak.page_tables_high),
            report::mb(r.meminfo_peak.page_tables_low)
        ),
    }
}
