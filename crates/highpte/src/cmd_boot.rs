//! `highpte boot`: bring up one configuration and print what a kernel engineer expects to see.

use crate::args::BootArgs;
use crate::report;
use highpte_arch::size::GB;
use highpte_arch::{MemoryVariant, Pae, PagingMode, TwoLevel};
use highpte_kernel::page_alloc::ZoneType;
use highpte_machine::{MachineOptions, System};
use serde_json::json;
use std::time::Instant;

pub fn run(a: &BootArgs) -> anyhow::Result<u8> {
    let cfg = a
        .machine
        .config(MemoryVariant::Highmem64gHighpte, 32 * GB, 1, true)?;
    if cfg.variant.pae() {
        boot::<Pae>(a, cfg)
    } else {
        boot::<TwoLevel>(a, cfg)
    }
}

fn boot<M: PagingMode>(a: &BootArgs, cfg: highpte_arch::Config) -> anyhow::Result<u8> {
    let kopts = a.machine.kernel_options(&cfg);
    a.machine
        .swap_file
        .require_swap(kopts.swap_pages > 0, "give --swap SIZE (more than 0)")?;
    if let Some(note) = crate::args::ram_note(cfg.variant, cfg.ram_bytes) {
        eprintln!("highpte: note: {note}");
    }
    let mut mopts = MachineOptions {
        swap_file: a.machine.swap_file.single()?,
        ..MachineOptions::default()
    };
    if let Some(cost) = a.machine.cost_model()? {
        mopts.cost = cost;
    }
    let t0 = Instant::now();
    let mut sys = System::<M>::boot(cfg, kopts, mopts).map_err(|e| anyhow::anyhow!("{e}"))?;
    let boot_seconds = t0.elapsed().as_secs_f64();
    let cycles = sys.machine.elapsed_cycles();
    let (mi, zones, owners) = sys
        .inspect(|h, k| (k.meminfo(h), k.zone_report(h), k.lowmem_by_owner()))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let k = sys.kernel();
    let l = k.layout();
    let layout = json!({
        "PAGE_OFFSET": format!("{:#010x}", l.page_offset().as_u32()),
        "high_memory": format!("{:#010x}", l.high_memory().as_u32()),
        "VMALLOC_START": format!("{:#010x}", l.vmalloc_start().as_u32()),
        "VMALLOC_END": format!("{:#010x}", l.vmalloc_end().as_u32()),
        "PKMAP_BASE": format!("{:#010x}", l.pkmap_base().as_u32()),
        "LAST_PKMAP": l.last_pkmap,
        "FIXADDR_START": format!("{:#010x}", l.fixaddr_start().as_u32()),
        "FIXADDR_TOP": format!("{:#010x}", l.fixaddr_top().as_u32()),
    });
    if a.json {
        let z: Vec<_> = zones
            .iter()
            .map(|(t, s, e, present, managed, free)| {
                json!({"name": t.name(), "start_pfn": s, "end_pfn": e, "present_pages": present, "managed_pages": managed, "free_pages": free})
            })
            .collect();
        let o: serde_json::Map<String, serde_json::Value> = owners
            .iter()
            .map(|(o, n)| (o.name().to_string(), json!(n * 4)))
            .collect();
        let v = json!({
            "config": cfg.variant.name(),
            "kernel": cfg.kernel.name(),
            "ram_bytes": cfg.ram_bytes,
            "usable_ram_bytes": cfg.usable_ram(),
            "cpus": cfg.cpus,
            "preempt": cfg.preempt,
            "paging": M::NAME,
            "strategy": k.options().strategy.name(),
            "pt_alloc": k.options().pt_alloc.name(),
            "zones": z,
            "meminfo": report::meminfo_json(&mi),
            "lowmem_by_owner_kb": o,
            "layout": layout,
            "boot_log": k.boot_log(),
            "boot_cycles": cycles,
            "host_seconds": boot_seconds,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    for line in k.boot_log() {
        println!("[boot] {line}");
    }
    println!();
    println!("meminfo:");
    for line in report::meminfo_lines(&mi) {
        println!("  {line}");
    }
    println!();
    println!("low memory by owner:");
    for (o, n) in &owners {
        if *n > 0 {
            println!("  {:<16}{:>12}", o.name(), report::mb(n * 4));
        }
    }
    let free_low: u64 = zones
        .iter()
        .filter(|z| z.0 != ZoneType::HighMem)
        .map(|z| z.5)
        .sum();
    println!("  {:<16}{:>12}", "free", report::mb(free_low * 4));
    println!();
    println!(
        "booted in {:.3} s host time, {} simulated cycles",
        boot_seconds, cycles
    );
    Ok(0)
}
