//! The `/proc` views of a run of the exact layer: JSON and text.

use highpte_workload::exact::proc_view::backing_name;
use highpte_workload::exact::{ProcRecord, ProcSnapshot};
use highpte_workload::runner::RunReport;
use serde_json::{json, Value};

/// One process's views as JSON: `maps` (one object per VMA) and `status` (kB).
pub fn snapshot_json(p: &ProcSnapshot) -> Value {
    let maps: Vec<Value> = p
        .maps
        .iter()
        .map(|e| {
            json!({
                "start": format!("{:#010x}", e.start),
                "end": format!("{:#010x}", e.end),
                "perms": String::from_utf8_lossy(&e.perms()),
                "offset": e.offset,
                "backing": backing_name(e.backing),
            })
        })
        .collect();
    let s = &p.status;
    json!({
        "process": p.process,
        "pid": p.pid,
        "maps": maps,
        "status": {"VmSize": s.vm_size_kb, "VmRSS": s.vm_rss_kb, "VmData": s.vm_data_kb, "VmStk": s.vm_stk_kb, "VmPTE": s.vm_pte_kb},
    })
}

/// The views of a step's processes.
pub fn snapshots_json(ps: &[ProcSnapshot]) -> Value {
    Value::Array(ps.iter().map(snapshot_json).collect())
}

/// What the `proc` ops recorded.
pub fn records_json(rs: &[ProcRecord]) -> Value {
    Value::Array(
        rs.iter()
            .map(|r| json!({"at": r.at, "what": r.what, "view": snapshot_json(&r.snapshot)}))
            .collect(),
    )
}

/// Prints the per-process `/proc` lines of the last step and what the `proc` ops recorded
/// (nothing for workloads that do not use the exact layer).
pub fn print_procs(r: &RunReport) {
    if let Some(last) = r.steps.last().filter(|s| !s.procs.is_empty()) {
        println!();
        println!("processes at the last step (/proc/PID/status, kB):");
        println!(
            "  {:<10}{:>6}{:>10}{:>10}{:>10}{:>8}{:>8}",
            "process", "pid", "VmSize", "VmRSS", "VmData", "VmStk", "VmPTE"
        );
        for p in &last.procs {
            let s = &p.status;
            println!(
                "  {:<10}{:>6}{:>10}{:>10}{:>10}{:>8}{:>8}",
                p.process, p.pid, s.vm_size_kb, s.vm_rss_kb, s.vm_data_kb, s.vm_stk_kb, s.vm_pte_kb
            );
        }
    }
    for rec in &r.proc_records {
        println!();
        println!(
            "{}: /proc/{}/{} of {}:",
            rec.at, rec.snapshot.pid, rec.what, rec.snapshot.process
        );
        let lines = match rec.what {
            "maps" => rec.snapshot.maps_lines(),
            _ => rec.snapshot.status_lines(),
        };
        for l in lines {
            println!("  {l}");
        }
    }
    if r.expectations_met > 0 {
        println!();
        println!("{} expectations met", r.expectations_met);
    }
}
