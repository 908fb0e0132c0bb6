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
        ("PageTables", m.page_tables),
    ];
    rows.iter()
        .map(|(k, v)| format!("{:<14}{:>12} kB", format!("{k}:"), v))
        .collect()
}

/// A byte count in MB with one decimal.
pub fn mb(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 / 1024.0)
}
