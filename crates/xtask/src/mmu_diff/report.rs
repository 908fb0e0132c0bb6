//! The report of a mode: its JSON object and the text printed from it.

use super::{hex, Args, Dump, Stats};
use highpte_arch::PageFaultErrorCode;
use serde_json::{json, Value};

/// The JSON object of one mode (`seconds`: QEMU's wall time).
pub(super) fn mode_json(a: &Args, mode: &str, d: &Dump, stats: &Stats, seconds: f64) -> Value {
    let high_tables = d.pages.iter().filter(|&&pa| pa >= 1 << 32).count();
    let rsvd: u64 = stats
        .faults
        .iter()
        .filter(|(k, _)| hex(&k[2..]).is_ok_and(|c| c & 8 != 0))
        .map(|(_, n)| n)
        .sum();
    let count = |code: &str| stats.faults.get(code).copied().unwrap_or(0);
    let wp = count("0x3");
    let cpl3_protection = count("0x5") + count("0x7");
    json!({
        "mode": mode,
        "seed": a.seed,
        "probes": d.probes.len(),
        "loads": stats.loads,
        "stores": stats.stores,
        "fetches": stats.fetches,
        "fetches_translated": stats.fetches_translated,
        "translated": stats.translated,
        "faulted": d.probes.len() as u64 - stats.translated,
        "faults": stats.faults,
        "write_protect_faults": wp,
        "cpl3_protection_faults": cpl3_protection,
        "cpl3_probes": stats.user,
        "cpl3_translated": stats.user_translated,
        "reserved_bit_faults": rsvd,
        "large_page_translations": stats.large,
        "above_4g_translations": stats.above_4g,
        "table_pages": d.pages.len(),
        "table_pages_above_4g": high_tables,
        "table_entries": d.entries.len(),
        "pages_compared_at_end": d.fin.len(),
        "pde_accessed_on_fault_allowed": stats.tolerated,
        "qemu_rsvd_without_p": stats.qemu_rsvd_without_p,
        "qemu_pdptes_with_a_at_dump": stats.qemu_pdpte_a,
        "qemu_pdptes_with_a_at_end": stats.qemu_pdpte_a_end,
        "mismatches": stats.mismatches.len(),
        "mismatch_details": stats.mismatches.iter().take(50).collect::<Vec<_>>(),
        "qemu_seconds": (seconds * 100.0).round() / 100.0,
        "kernel": d.end,
    })
}

/// Print the text report of one mode from its JSON object.
pub(super) fn print_mode(j: &Value) {
    println!(
        "{}: {} probes ({} loads, {} stores, {} fetches; {} at CPL 3) in {} s of QEMU: {} translated ({} through large pages, {} above 4 GB), {} faulted",
        j["mode"].as_str().unwrap_or("?"),
        j["probes"],
        j["loads"],
        j["stores"],
        j["fetches"],
        j["cpl3_probes"],
        j["qemu_seconds"],
        j["translated"],
        j["large_page_translations"],
        j["above_4g_translations"],
        j["faulted"]
    );
    if let Some(f) = j["faults"].as_object() {
        for (code, n) in f {
            let c = hex(&code[2..]).unwrap_or_default() as u32;
            let name = PageFaultErrorCode::from_bits_retain(c);
            println!("  #PF error {code} {name:?}: {n}");
        }
    }
    println!(
        "  {} table pages ({} above 4 GB), {} entries; {} pages compared after the probes; {} faulting walks where QEMU set the PDE's A flag (allowed, SDM 4.8)",
        j["table_pages"],
        j["table_pages_above_4g"],
        j["table_entries"],
        j["pages_compared_at_end"],
        j["pde_accessed_on_fault_allowed"]
    );
    println!(
        "  QEMU's departures from the SDM: {} reserved-bit faults without P in the error code; PDPTEs with bit 5 (A) set: {} when dumped, {} at the end",
        j["qemu_rsvd_without_p"], j["qemu_pdptes_with_a_at_dump"], j["qemu_pdptes_with_a_at_end"]
    );
    println!("  mismatches: {}", j["mismatches"]);
    if let Some(m) = j["mismatch_details"].as_array() {
        for d in m {
            println!("    {}", d.as_str().unwrap_or_default());
        }
    }
}
