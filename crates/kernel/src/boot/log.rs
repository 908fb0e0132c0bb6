//! The boot log: the kernel, the RAM it found and what it cannot use, the zones, the boot
//! reservations and the virtual memory layout, as Linux prints them at boot.

use super::BootReservations;
use crate::kernel::KernelOptions;
use crate::page_alloc::Zone;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use highpte_arch::layout::PAGE_OFFSET;
use highpte_arch::size::DisplaySize;
use highpte_arch::{Config, KernelLayout, PagingMode, PAGE_SIZE};

/// The boot log's first lines: the kernel, the BIOS RAM map, and what of the RAM this
/// kernel cannot use.
pub(super) fn banner<M: PagingMode>(cfg: &Config) -> Vec<String> {
    let mut log: Vec<String> = Vec::new();
    let usable = cfg.usable_ram();
    log.push(format!(
        "highpte kernel: {} ({} paging), {} CPU(s), preempt {}",
        cfg.kernel_name(),
        M::NAME,
        cfg.cpus,
        if cfg.preempt { "on" } else { "off" }
    ));
    log.push("BIOS-provided physical RAM map:".into());
    for (s, e) in cfg.kernel.ram_map(cfg.ram_bytes).ranges() {
        log.push(format!(" BIOS-e820: {s:016x} - {e:016x} (usable)"));
    }
    if cfg.ram_bytes > cfg.variant.max_usable_ram() {
        let msg = match cfg.variant {
            highpte_arch::MemoryVariant::NoHighmem => format!(
                "Warning: only {} of {} will be used: a NOHIGHMEM kernel ignores RAM above 896M. Use a HIGHMEM enabled kernel.",
                DisplaySize(usable),
                DisplaySize(cfg.ram_bytes)
            ),
            _ => format!(
                "Warning: only {} of {} will be used: without PAE RAM above 4G is ignored. Use a PAE (64g) enabled kernel.",
                DisplaySize(usable),
                DisplaySize(cfg.ram_bytes)
            ),
        };
        log.push(msg);
    }
    if let Some(h) = cfg.highmem_limit {
        if cfg.ram_bytes.min(cfg.variant.max_usable_ram()) > usable {
            log.push(format!(
                "highmem={}: HighMem limited to {}",
                DisplaySize(h),
                DisplaySize(cfg.highmem_bytes())
            ));
        }
    }
    log.push(format!(
        "{}MB HIGHMEM available.",
        cfg.highmem_bytes() >> 20
    ));
    log.push(format!("{}MB LOWMEM available.", cfg.lowmem_bytes() >> 20));
    log
}

/// The boot log's lines on the zones, the boot reservations, free memory and the kernel's
/// virtual memory layout.
pub(super) fn log_memory_layout(
    log: &mut Vec<String>,
    cfg: &Config,
    opts: &KernelOptions,
    layout: &KernelLayout,
    zones: &[Zone; 3],
    res: &BootReservations,
) {
    let usable = cfg.usable_ram();
    let max_pfn = cfg.phys_end() / PAGE_SIZE;
    log.push(format!("On node 0 totalpages: {}", max_pfn));
    for z in zones.iter() {
        log.push(format!(
            "zone({}) {:<8} pfn {:#09x}-{:#09x}: {} pages, {} managed, watermarks min {} low {} high {}",
            z.ty() as usize,
            z.ty().name(),
            z.start_pfn().0,
            z.end_pfn().0,
            z.present_pages(),
            z.managed_pages(),
            z.watermarks().min,
            z.watermarks().low,
            z.watermarks().high
        ));
    }
    log.push(format!(
        "Kernel image: {} at {:#010x}; kernel page tables: {} pages at {:#010x}",
        DisplaySize(res.image_pages * PAGE_SIZE),
        res.image_start * PAGE_SIZE,
        res.tables_end - res.tables_start,
        res.tables_start * PAGE_SIZE
    ));
    log.push(format!(
        "mem_map: {} descriptors x {} bytes = {} of low memory at {:#010x}",
        max_pfn,
        opts.struct_page_bytes,
        DisplaySize(res.mem_map_pages * PAGE_SIZE),
        res.mem_map_start * PAGE_SIZE
    ));
    for (what, pages) in res.extra.items() {
        log.push(format!(
            "Reserved: {} ({})",
            what,
            DisplaySize(pages * PAGE_SIZE)
        ));
    }
    let free: u64 = zones.iter().map(|z| z.free_pages()).sum();
    log.push(format!(
        "Memory: {}k/{}k available ({}k reserved, {}k highmem)",
        free * 4,
        usable / 1024,
        res.reserved_end * 4,
        cfg.highmem_bytes() / 1024
    ));
    log_virtual_layout(log, layout, cfg.lowmem_bytes());
    log.push(format!(
        "Page tables: user pte pages {}, page-table allocator {}, debug helpers {}",
        match opts.strategy {
            crate::kernel::PteStrategy::Lowmem => "in low memory (direct map)",
            crate::kernel::PteStrategy::Atomic => "in high memory via kmap_atomic (highpte)",
            crate::kernel::PteStrategy::Persistent => "in high memory via persistent kmap",
        },
        opts.pt_alloc,
        if opts.debug { "on" } else { "off" }
    ));
}

/// The boot log's "virtual kernel memory layout" table.
fn log_virtual_layout(log: &mut Vec<String>, layout: &KernelLayout, lowmem: u64) {
    log.push("virtual kernel memory layout:".into());
    log.push(format!(
        "    fixmap  : {:#010x} - {:#010x}   ({:>6} kB)",
        layout.fixaddr_start().as_u32(),
        layout.fixaddr_top().as_u32() + PAGE_SIZE as u32,
        (layout.fixaddr_top().as_u64() + PAGE_SIZE - layout.fixaddr_start().as_u64()) / 1024
    ));
    log.push(format!(
        "    pkmap   : {:#010x} - {:#010x}   ({:>6} kB)",
        layout.pkmap_base().as_u32(),
        layout.pkmap_end().as_u32(),
        (layout.pkmap_end().as_u64() - layout.pkmap_base().as_u64()) / 1024
    ));
    log.push(format!(
        "    vmalloc : {:#010x} - {:#010x}   ({:>6} MB)",
        layout.vmalloc_start().as_u32(),
        layout.vmalloc_end().as_u32(),
        (layout.vmalloc_end().as_u64() - layout.vmalloc_start().as_u64()) >> 20
    ));
    log.push(format!(
        "    lowmem  : {:#010x} - {:#010x}   ({:>6} MB)",
        PAGE_OFFSET,
        layout.high_memory().as_u32(),
        lowmem >> 20
    ));
}
