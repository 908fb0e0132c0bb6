//! Report helpers: meminfo as JSON and tables, sizes.

use highpte_kernel::Meminfo;
use serde_json::{json, Value};

/// `meminfo` as the documented JSON object (kB values with /proc/meminfo's key names).
pub fn meminfo_json(m: &Meminfo) -> Value {
    json!({
        "MemTotal": m.mem_total,
        "MemFree": m.mem_free,
        "LowTotal": m.low_total,
        "LowFree": m.low_free,
        "HighTotal": m.high_total,
        "HighFree": m.high_free,
        "PageTables": m.page_tables,
        "PageTablesLow": m.page_tables_low,
        "PageTablesHigh": m.page_tables_high,
        "PageTablePools": m.pt_pools,
        "Cached": m.cached,
        "Dirty": m.dirty,
        "SwapTotal": m.swap_total,
        "SwapFree": m.swap_free,
        "SwapCached": m.swap_cached,
        "PteChains": m.pte_chains,
    })
}

/// Meminfo lines in /proc/meminfo's layout.
pub fn meminfo_lines(m: &Meminfo) -> Vec<String> {
    let rows = [
        ("MemTotal", m.mem_total),
        ("MemFree", m.mem_free),
        ("LowTotal", m.low_total),
        ("LowFree", m.low_free),
        ("HighTotal", m.high_total),
        ("HighFree", m.high_free),
        ("Cached", m.cached),
        ("Dirty", m.dirty),
    ];
    let swap = [
        ("SwapTotal", m.swap_total),
        ("SwapFree", m.swap_free),
        ("SwapCached", m.swap_cached),
    ];
    let chains = [("PteChains", m.pte_chains)];
    let rows = rows
        .iter()
        .chain(swap.iter().filter(|_| m.swap_total > 0))
        .chain(chains.iter().filter(|_| m.pte_chains > 0));
    let mut lines: Vec<String> = rows
        .map(|(k, v)| format!("{:<14}{:>12} kB", format!("{k}:"), v))
        .collect();
    // PageTables after HighFree, with where the pages are (one line, as /proc/meminfo has one).
    lines.insert(
        6,
        format!(
            "{:<14}{:>12} kB   ({} kB in low memory, {} kB in high memory)",
            "PageTables:", m.page_tables, m.page_tables_low, m.page_tables_high
        ),
    );
    lines
}

/// A byte count in MB with one decimal.
pub fn mb(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 / 1024.0)
}

/// The per-step table of one or more runs (side by side when several).
pub fn steps_table(runs: &[&highpte_workload::runner::RunReport]) -> String {
    use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    let mut header = vec!["processes".to_string()];
    // page-cache columns when the workload reads files
    let files = runs
        .iter()
        .any(|r| r.steps.iter().any(|s| s.file_reads > 0));
    for r in runs {
        let tag = if runs.len() > 1 {
            format!(" ({})", r.config)
        } else {
            String::new()
        };
        header.push(format!("LowFree{tag}"));
        header.push(format!("PageTables low{tag}"));
        header.push(format!("PageTables high{tag}"));
        if files {
            header.push(format!("Cached{tag}"));
            header.push(format!("read() hits{tag}"));
        }
        header.push(format!("failures{tag}"));
    }
    t.set_header(header);
    let n = runs.iter().map(|r| r.steps.len()).max().unwrap_or(0);
    for i in 0..n {
        let procs = runs
            .iter()
            .filter_map(|r| r.steps.get(i))
            .map(|s| s.processes)
            .max()
            .unwrap_or(0);
        let mut row = vec![procs.to_string()];
        for r in runs {
            match r.steps.get(i) {
                Some(s) => {
                    row.push(mb(s.meminfo.low_free));
                    row.push(mb(s.meminfo.page_tables_low));
                    row.push(mb(s.meminfo.page_tables_high));
                    if files {
                        row.push(mb(s.meminfo.cached));
                        let prev = i.checked_sub(1).and_then(|j| r.steps.get(j));
                        row.push(hit_rate(
                            s.file_reads - prev.map_or(0, |p| p.file_reads),
                            s.disk_reads - prev.map_or(0, |p| p.disk_reads),
                        ));
                    }
                    row.push(if s.failures.is_empty() {
                        "-".to_string()
                    } else {
                        let f = &s.failures[0];
                        let same = s
                            .failures
                            .iter()
                            .all(|g| g.call == f.call && g.errno_or_signal == f.errno_or_signal);
                        if same {
                            format!("{} x {} {}", s.failures.len(), f.call, f.errno_or_signal)
                        } else {
                            format!(
                                "{} (first: {} {})",
                                s.failures.len(),
                                f.call,
                                f.errno_or_signal
                            )
                        }
                    });
                }
                None => {
                    let blank = if files { 5 } else { 3 };
                    row.extend(std::iter::repeat_n(String::new(), blank));
                    row.push("(stopped)".to_string());
                }
            }
        }
        t.add_row(row);
    }
    t.to_string()
}

/// The share of `reads` page reads that did not go to the disk, or `-` if there were none.
pub fn hit_rate(reads: u64, disk: u64) -> String {
    if reads == 0 {
        "-".to_string()
    } else {
        format!(
            "{:.1}%",
            100.0 * reads.saturating_sub(disk) as f64 / reads as f64
        )
    }
}

/// kB as GB with one decimal.
pub fn gb(kb: u64) -> String {
    format!("{:.1} GB", kb as f64 / (1024.0 * 1024.0))
}

/// The demo's compact side-by-side table: LowFree and where the page tables are, per config.
pub fn demo_table(runs: &[&highpte_workload::runner::RunReport]) -> String {
    use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    let mut header = vec!["processes".to_string()];
    for r in runs {
        header.push(format!("{}\nLowFree", r.config));
        header.push(format!("{}\nPageTables low / high", r.config));
    }
    header.push("first failure".to_string());
    t.set_header(header);
    let n = runs.iter().map(|r| r.steps.len()).max().unwrap_or(0);
    for i in 0..n {
        let procs = runs
            .iter()
            .filter_map(|r| r.steps.get(i))
            .map(|s| s.processes)
            .max()
            .unwrap_or(0);
        let mut row = vec![procs.to_string()];
        let mut fail = String::new();
        for r in runs {
            match r.steps.get(i) {
                Some(s) => {
                    row.push(mb(s.meminfo.low_free));
                    row.push(format!(
                        "{} / {}",
                        mb(s.meminfo.page_tables_low),
                        mb(s.meminfo.page_tables_high)
                    ));
                    if let Some(f) = s.failures.first() {
                        fail = format!(
                            "{}: process {} {} {} (LowFree {})",
                            r.config,
                            f.process,
                            f.call,
                            f.errno_or_signal,
                            mb(f.low_free_kb)
                        );
                    }
                }
                None => {
                    row.push("-".to_string());
                    row.push("stopped".to_string());
                }
            }
        }
        row.push(fail);
        t.add_row(row);
    }
    t.to_string()
}

/// A whole number at `path` (keys) in a JSON object, 0 if absent.
pub fn ju(v: &Value, path: &[&str]) -> u64 {
    path.iter().fold(v, |v, k| &v[*k]).as_u64().unwrap_or(0)
}

/// A string at `key` in a JSON object, empty if absent.
pub fn js<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

/// The first failure of a run object in a few words: `touch ENOMEM, LowFree 0.3 MB`, or `-`.
pub fn first_failure_short(r: &Value) -> String {
    let f = &r["first_failure"];
    if f.is_object() {
        format!(
            "{} {}, LowFree {}",
            js(f, "call"),
            js(f, "errno_or_signal"),
            mb(ju(f, &["LowFree"]))
        )
    } else {
        "-".to_string()
    }
}

/// One row per run (used by `compare`, `sweep` and `merge`), from the runs' JSON objects
/// ([`crate::cmd_run::report_json`]): configuration, strategy, allocator, processes, first
/// failure, LowFree and page tables at the last step, the mapping and TLB counters, simulated
/// cycles and host time. `extra` inserts one more column (a header and a value per run)
/// after the allocator, e.g. the value a sweep varies.
pub fn runs_table(runs: &[&Value], extra: Option<(&str, &[String])>) -> String {
    use comfy_table::{presets::UTF8_FULL_CONDENSED, CellAlignment, Table};
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    let mut header: Vec<String> = vec!["config".into(), "strategy".into(), "pt_alloc".into()];
    if let Some((h, _)) = extra {
        header.push(h.to_string());
    }
    header.extend(
        [
            "processes\nstarted / failed",
            "first failure\n(call errno, LowFree)",
            "LowFree",
            "PageTables\nlow / high",
            "kmap_atomic",
            "kmap",
            "invlpg",
            "TLB\nshootdowns",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    let steps = |r: &Value| r["steps"].as_array().cloned().unwrap_or_default();
    let files = runs
        .iter()
        .any(|r| steps(r).iter().any(|s| ju(s, &["file_reads"]) > 0));
    if files {
        header.extend(["Cached".to_string(), "read() hits".to_string()]);
    }
    header.extend(["simulated\ncycles".to_string(), "host s".to_string()]);
    t.set_header(header);
    for (i, r) in runs.iter().enumerate() {
        let m = &r["meminfo"];
        // the kernel profile beside the configuration when it is not the default (runs of
        // older versions, without the key, ran the default)
        let config = match js(r, "kernel") {
            "" | "2.5" => js(r, "config").to_string(),
            k => format!("{} ({k})", js(r, "config")),
        };
        let mut row = vec![
            config,
            js(r, "strategy").to_string(),
            js(r, "pt_alloc").to_string(),
        ];
        if let Some((_, vals)) = extra {
            row.push(vals.get(i).cloned().unwrap_or_default());
        }
        row.extend([
            format!(
                "{} / {}",
                ju(r, &["processes_started"]),
                ju(r, &["processes_failed"])
            ),
            first_failure_short(r),
            mb(ju(m, &["LowFree"])),
            format!(
                "{} / {}",
                mb(ju(m, &["PageTablesLow"])),
                mb(ju(m, &["PageTablesHigh"]))
            ),
            ju(r, &["counters", "kmap_atomic"]).to_string(),
            ju(r, &["counters", "kmap"]).to_string(),
            ju(r, &["counters", "invlpg"]).to_string(),
            ju(r, &["counters", "tlb_shootdowns"]).to_string(),
        ]);
        if files {
            let st = steps(r);
            let last = st.last();
            row.push(mb(ju(m, &["Cached"])));
            row.push(hit_rate(
                last.map_or(0, |s| ju(s, &["file_reads"])),
                last.map_or(0, |s| ju(s, &["disk_reads"])),
            ));
        }
        row.extend([
            ju(r, &["cycles"]).to_string(),
            format!("{:.2}", r["host_seconds"].as_f64().unwrap_or(0.0)),
        ]);
        t.add_row(row);
    }
    let first_numeric = 3 + usize::from(extra.is_some());
    for (i, col) in t.column_iter_mut().enumerate() {
        if i >= first_numeric && i != first_numeric + 1 {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
    t.to_string()
}

/// `s` without host memory addresses: the simulator names a lock by its name and its
/// address in the host process (`'mmap_sem' (0x55d00fb49d10)`), which changes from run to
/// run and means nothing to a reader. Parenthesised hexadecimal numbers of 9 digits or more
/// are dropped; the simulated machine's own addresses are 32-bit (8 digits) and stay.
pub fn strip_host_addresses(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(" (0x") {
        let after = &rest[i + 4..];
        let digits = after.bytes().take_while(u8::is_ascii_hexdigit).count();
        if digits >= 9 && after[digits..].starts_with(')') {
            out.push_str(&rest[..i]);
            rest = &after[digits + 1..];
        } else {
            out.push_str(&rest[..i + 4]);
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// A run report as the CLI shows it: host addresses dropped from its outcome and checks.
pub fn scrub(mut r: highpte_workload::runner::RunReport) -> highpte_workload::runner::RunReport {
    r.outcome = strip_host_addresses(&r.outcome);
    for c in &mut r.check_failures {
        *c = strip_host_addresses(c);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_addresses_are_dropped_and_simulated_ones_kept() {
        assert_eq!(
            strip_host_addresses(
                "holds ['mmap_sem' (0x55d00fb49d10)], at 0xc0100000 (0xfee00000) (0x1"
            ),
            "holds ['mmap_sem'], at 0xc0100000 (0xfee00000) (0x1"
        );
    }
}
