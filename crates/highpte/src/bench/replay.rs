//! `highpte bench`'s replay measurement: records of a real program's page trace replayed per
//! host second on one instance, the simulator's hottest loop (docs/traces.md), printed beside
//! the TLB-hit loop.

use crate::bench::table::{int, millions, Table};
use highpte_arch::MemoryVariant;
use highpte_kernel::PteStrategy;
use highpte_workload::runner::{self, RunOptions};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The SQLite trace beside the repository (../shared/traces/).
const SHARED_TRACE: &str = "sqlite-3.50.2-i386-static-bench5k.pgt.zst";

/// The trace to measure: `given`, else the shared SQLite trace (from the current directory's
/// `../shared/traces/`, or beside the source tree), else the checked-in 3,850-record sample.
pub fn pick_trace(given: Option<&Path>) -> PathBuf {
    if let Some(p) = given {
        return p.to_path_buf();
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        Path::new("../shared/traces").join(SHARED_TRACE),
        src.join("../../../shared/traces").join(SHARED_TRACE),
    ];
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| src.join("tests/data/sqlite-first60k.pgt.zst"))
}

/// One replay of `trace` by one instance on the machine of `strategy` (64g or 64g-highpte,
/// 1 CPU): records per host second of the replay loop, of the scan, and cycles per access.
struct Measured {
    records: u64,
    loop_rate: f64,
    scan_rate: f64,
    cycles_per_access: f64,
    run_seconds: f64,
}

fn measure(trace: &Path, strategy: PteStrategy) -> anyhow::Result<Measured> {
    let name = trace.display().to_string();
    let t = Instant::now();
    let info = highpte_workload::trace::scan_trace(trace)
        .map_err(|e| crate::workload_args::InputError(e.to_string()))?;
    let scan_seconds = t.elapsed().as_secs_f64();
    let mut spec = highpte_workload::trace::replay_workload(&name, 1, false)
        .map_err(crate::workload_args::InputError)?;
    spec.machine.config = if strategy.highmem_ptes() {
        MemoryVariant::Highmem64gHighpte
    } else {
        MemoryVariant::Highmem64g
    };
    spec.machine.strategy = Some(strategy);
    spec.machine.cpus = 1;
    spec.machine.ram = highpte_workload::Size(highpte_arch::size::GB);
    let t = Instant::now();
    let rep = runner::run(&spec, &RunOptions::default())?;
    let run_seconds = t.elapsed().as_secs_f64();
    let r = &rep.replay;
    anyhow::ensure!(
        r.completed == 1 && r.records == info.records,
        "the replay of {name} did not complete: {:?}",
        rep.first_failure
    );
    Ok(Measured {
        records: r.records,
        loop_rate: r.records as f64 / r.loop_host_seconds.max(1e-9),
        scan_rate: info.records as f64 / scan_seconds.max(1e-9),
        cycles_per_access: rep.cycles_all_cpus as f64 / r.total_accesses().max(1) as f64,
        run_seconds,
    })
}

/// The table: one row per strategy.
pub fn table(trace: &Path) -> anyhow::Result<Table> {
    let mut t = Table::new(
        format!(
            "2b. Replay of a real program's page trace (one instance, 1 CPU, 1G): {}",
            trace.file_name().map_or_else(
                || trace.display().to_string(),
                |n| n.to_string_lossy().to_string()
            )
        ),
        &[
            "machine",
            "records",
            "records / host s",
            "ns / record",
            "scan records / host s",
            "whole run host s",
            "sim cycles / access",
        ],
    );
    let mut first = 0.0;
    for s in [PteStrategy::Atomic, PteStrategy::Lowmem] {
        let m = measure(trace, s)?;
        if first == 0.0 {
            first = m.loop_rate;
        }
        let variant = if s.highmem_ptes() {
            "64g-highpte"
        } else {
            "64g"
        };
        t.row(vec![
            format!("{s} ({variant})"),
            int(m.records),
            millions(m.loop_rate),
            format!("{:.1}", 1e9 / m.loop_rate),
            millions(m.scan_rate),
            format!("{:.2}", m.run_seconds),
            format!("{:.1}", m.cycles_per_access),
        ]);
    }
    t.note(format!(
        "Target: at least 20 M records per host second on one instance (the replay loop: \
         reading, folding, and every access through the MMU and the fault path). Measured \
         {:.1} M/s ({}). The whole run adds the scan (one pass that plans the fold) and the \
         boot.",
        first / 1e6,
        if first >= 20e6 { "met" } else { "NOT met" }
    ));
    Ok(t)
}
