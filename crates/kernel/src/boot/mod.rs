//! Boot: zones, mem_map, the kernel page tables, paging on, free memory to the buddy.
//!
//! Physical layout of low memory after boot, from address 0:
//! - 0 - 1 MB: BIOS data, the ISA hole (reserved);
//! - 1 MB: the kernel image ([`KernelOptions::kernel_image_bytes`], 4 MB by default);
//! - then, allocated by the boot-time bump allocator: swapper_pg_dir (with PAE: its PDPT page
//!   and the kernel pmd page), the kernel pte pages for a low-memory tail that is not a
//!   whole large page, the pkmap pte page and the fixmap pte pages;
//! - then mem_map: one descriptor of `struct_page_bytes` per usable page frame;
//! - everything after it goes to the buddy allocators.
//!
//! The direct map of low memory uses large pages (4 MB, or 2 MB with PAE), global, as Linux
//! does with PSE.

use crate::counters::Counters;
use crate::highmem::Pkmap;
use crate::kernel::{Kernel, KernelOptions, KERNEL_LOAD_ADDR};
use crate::page_alloc::{MemMap, PageFlags, PageOwner, Zone, ZoneType};
use crate::pgtable::alloc::PtAllocState;
use crate::platform::Platform;
use crate::sync::SpinLock;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::fmt;
use core::marker::PhantomData;
use highpte_arch::layout::{fix_to_virt, PAGE_OFFSET};
use highpte_arch::size::DisplaySize;
use highpte_arch::{
    Config, Entry, EntryFlags, KernelLayout, PagingMode, Pfn, PhysAddr, VirtAddr, PAGE_SIZE,
};

/// Why the kernel could not boot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BootError {
    /// The kernel was built for the other paging mode than the configuration needs.
    ModeMismatch {
        /// The configuration's variant.
        variant: &'static str,
        /// The kernel's paging mode.
        mode: &'static str,
    },
    /// mem_map and the boot reservations do not fit in low memory.
    LowMemoryTooSmall {
        /// Bytes the boot reservations need.
        needed: u64,
        /// Bytes of low memory.
        lowmem: u64,
    },
}

impl fmt::Display for BootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootError::ModeMismatch { variant, mode } => write!(f, "configuration {variant} cannot boot a kernel built for {mode} paging"),
            BootError::LowMemoryTooSmall { needed, lowmem } => write!(
                f,
                "boot reservations (kernel image, page tables, mem_map) need {} but low memory is only {}: use less RAM or a smaller struct page",
                DisplaySize(*needed),
                DisplaySize(*lowmem)
            ),
        }
    }
}

struct BootMem {
    next: u64,
}

impl BootMem {
    fn alloc<P: Platform>(&mut self, p: &P) -> Pfn {
        let pfn = Pfn(self.next);
        self.next += 1;
        p.boot_phys_clear_page(pfn.addr());
        pfn
    }
}

fn write_entry_phys<M: PagingMode, P: Platform>(p: &P, table: Pfn, index: u32, e: Entry) {
    let pa = PhysAddr::new_checked(table.addr().as_u64() + (index * M::ENTRY_BYTES) as u64);
    if M::PAE {
        p.boot_phys_write_u64(pa, e.bits());
    } else {
        p.boot_phys_write_u32(pa, e.low());
    }
}

impl<M: PagingMode> Kernel<M> {
    /// Boot the kernel on the machine behind `p`: build the kernel page tables in simulated
    /// low memory, turn paging on, set up zones and mem_map, free memory to the buddy.
    pub fn boot<P: Platform>(p: &P, cfg: Config, opts: KernelOptions) -> Result<Self, BootError> {
        if M::PAE != cfg.variant.pae() {
            return Err(BootError::ModeMismatch {
                variant: cfg.variant.name(),
                mode: M::NAME,
            });
        }
        let mut log: Vec<String> = Vec::new();
        let usable = cfg.usable_ram();
        let lowmem = cfg.lowmem_bytes();
        log.push(format!(
            "highpte kernel: {} ({} paging), {} CPU(s), preempt {}",
            cfg.kernel_name(),
            M::NAME,
            cfg.cpus,
            if cfg.preempt { "on" } else { "off" }
        ));
        log.push(format!(
            "BIOS-provided physical RAM map: 0000000000000000 - {:016x} (usable)",
            cfg.ram_bytes
        ));
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
        let max_pfn = usable / PAGE_SIZE;
        let max_low_pfn = lowmem / PAGE_SIZE;
        let layout = KernelLayout::new(lowmem, cfg.cpus, M::LAST_PKMAP, opts.debug);
        log.push(format!(
            "{}MB HIGHMEM available.",
            cfg.highmem_bytes() >> 20
        ));
        log.push(format!("{}MB LOWMEM available.", lowmem >> 20));

        // boot-time bump allocator after the kernel image
        let image_pages = opts.kernel_image_bytes.div_ceil(PAGE_SIZE);
        let image_start = KERNEL_LOAD_ADDR / PAGE_SIZE;
        let mut bm = BootMem {
            next: image_start + image_pages,
        };
        let tables_start = bm.next;
        let pgd = bm.alloc(p);
        let large = M::LARGE_PAGE_SIZE as u64;
        let kernel_pmd = if M::PAE { Some(bm.alloc(p)) } else { None };
        // the table that holds pmd entries for kernel addresses
        let kdir = kernel_pmd.unwrap_or(pgd);
        let kdir_index =
            |va: u32| -> u32 { (va >> M::PMD_SHIFT) & (if M::PAE { 511 } else { 1023 }) };
        if let Some(kpmd) = kernel_pmd {
            write_entry_phys::<M, P>(p, pgd, 3, Entry::new(kpmd, EntryFlags::PRESENT));
        }
        // direct map: large pages, then 4 KB pages for a tail
        let big = lowmem / large;
        let dm_flags = EntryFlags::KERNEL | EntryFlags::PS | EntryFlags::GLOBAL;
        for i in 0..big {
            let va = PAGE_OFFSET + (i * large) as u32;
            write_entry_phys::<M, P>(
                p,
                kdir,
                kdir_index(va),
                Entry::new(Pfn(i * large / PAGE_SIZE), dm_flags),
            );
        }
        let tail = lowmem - big * large;
        if tail > 0 {
            let pt = bm.alloc(p);
            let base = big * large;
            for j in 0..tail / PAGE_SIZE {
                write_entry_phys::<M, P>(
                    p,
                    pt,
                    j as u32,
                    Entry::new(
                        Pfn(base / PAGE_SIZE + j),
                        EntryFlags::KERNEL | EntryFlags::GLOBAL,
                    ),
                );
            }
            write_entry_phys::<M, P>(
                p,
                kdir,
                kdir_index(PAGE_OFFSET + base as u32),
                Entry::new(pt, EntryFlags::KERNPG_TABLE),
            );
        }
        // pkmap: one pte page covers the whole window in both modes
        let pkmap_pt = bm.alloc(p);
        write_entry_phys::<M, P>(
            p,
            kdir,
            kdir_index(layout.pkmap_base().as_u32()),
            Entry::new(pkmap_pt, EntryFlags::KERNPG_TABLE),
        );
        // fixmap: pte pages for every pmd region from FIXADDR_START to FIXADDR_TOP
        let end_fix = layout.end_of_fixed_addresses();
        let mut fix_tables: Vec<(u32, Pfn)> = Vec::new();
        let mut fixmap_ptes = vec![VirtAddr::new(0); end_fix as usize];
        for idx in 0..end_fix {
            let va = fix_to_virt(idx).as_u32();
            let region = va >> M::PMD_SHIFT;
            let pt = match fix_tables.iter().find(|(r, _)| *r == region) {
                Some((_, pt)) => *pt,
                None => {
                    let pt = bm.alloc(p);
                    write_entry_phys::<M, P>(
                        p,
                        kdir,
                        kdir_index(va),
                        Entry::new(pt, EntryFlags::KERNPG_TABLE),
                    );
                    fix_tables.push((region, pt));
                    pt
                }
            };
            let pte_pa =
                pt.addr().as_u64() + (M::pte_index(VirtAddr::new(va)) * M::ENTRY_BYTES) as u64;
            fixmap_ptes[idx as usize] = VirtAddr::new(PAGE_OFFSET + pte_pa as u32);
        }
        let tables_end = bm.next;
        // mem_map
        let mem_map_bytes = max_pfn * opts.struct_page_bytes;
        let mem_map_pages = mem_map_bytes.div_ceil(PAGE_SIZE);
        // like alloc_bootmem, prefer memory above the 16 MB of ISA DMA
        let dma_end = crate::page_alloc::zone::DMA_ZONE_BYTES / PAGE_SIZE;
        let mem_map_start = if dma_end + mem_map_pages + 1024 <= max_low_pfn {
            bm.next.max(dma_end)
        } else {
            bm.next
        };
        let reserved_end = mem_map_start + mem_map_pages;
        // keep at least 4 MB of low memory for the running kernel
        if reserved_end + 1024 > max_low_pfn {
            return Err(BootError::LowMemoryTooSmall {
                needed: (reserved_end + 1024) * PAGE_SIZE,
                lowmem,
            });
        }
        let pkmap_pte_base = VirtAddr::new(PAGE_OFFSET + pkmap_pt.addr().as_u64() as u32);
        p.enable_paging(M::PAE, pgd.addr());

        let mem_map = MemMap::new(max_pfn as usize);
        let mut zones = Zone::zones_for(&cfg);
        let owner_pages: [[Cell<u64>; PageOwner::COUNT]; 3] =
            core::array::from_fn(|_| core::array::from_fn(|_| Cell::new(0)));
        let mark = |start: u64, end: u64, owner: PageOwner| {
            for pfn in start..end.min(max_pfn) {
                let d = mem_map.desc(Pfn(pfn));
                d.set_flag(PageFlags::RESERVED);
                d.set_owner(owner);
                let z = if pfn < max_low_pfn {
                    if pfn < (crate::page_alloc::zone::DMA_ZONE_BYTES / PAGE_SIZE) {
                        0
                    } else {
                        1
                    }
                } else {
                    2
                };
                let c = &owner_pages[z][owner as usize];
                c.set(c.get() + 1);
            }
        };
        mark(0, image_start, PageOwner::BootReserved);
        mark(
            image_start,
            image_start + image_pages,
            PageOwner::KernelImage,
        );
        mark(tables_start, tables_end, PageOwner::BootReserved);
        mark(mem_map_start, reserved_end, PageOwner::MemMap);
        // free everything not reserved: the gap below mem_map (if it went above DMA) and all
        // after it
        let free_ranges = [(tables_end, mem_map_start), (reserved_end, max_pfn)];
        for z in zones.iter_mut() {
            for (fs, fe) in free_ranges {
                let start = z.start_pfn().0.max(fs);
                let end = z.end_pfn().0.min(fe);
                if start < end {
                    // The ranges are inside the zone and disjoint: cannot fail.
                    let _ = z.free_range_at_boot(&mem_map, Pfn(start), Pfn(end));
                }
            }
        }
        // the zero page: a low page nobody writes
        let zero_zone = if zones[ZoneType::Normal as usize].managed_pages() > 0 {
            ZoneType::Normal
        } else {
            ZoneType::Dma
        };
        let zero_page = match zones[zero_zone as usize].alloc(
            &mem_map,
            0,
            crate::page_alloc::Watermark::Ignore,
        ) {
            Ok(pfn) => pfn,
            Err(_) => {
                return Err(BootError::LowMemoryTooSmall {
                    needed: (reserved_end + 1024) * PAGE_SIZE,
                    lowmem,
                })
            }
        };
        mem_map.desc(zero_page).set_owner(PageOwner::BootReserved);
        {
            let c = &owner_pages[zero_zone as usize][PageOwner::BootReserved as usize];
            c.set(c.get() + 1);
        }
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
            DisplaySize(image_pages * PAGE_SIZE),
            image_start * PAGE_SIZE,
            tables_end - tables_start,
            tables_start * PAGE_SIZE
        ));
        log.push(format!(
            "mem_map: {} descriptors x {} bytes = {} of low memory at {:#010x}",
            max_pfn,
            opts.struct_page_bytes,
            DisplaySize(mem_map_pages * PAGE_SIZE),
            mem_map_start * PAGE_SIZE
        ));
        let free: u64 = zones.iter().map(|z| z.free_pages()).sum();
        log.push(format!(
            "Memory: {}k/{}k available ({}k reserved, {}k highmem)",
            free * 4,
            usable / 1024,
            reserved_end * 4,
            cfg.highmem_bytes() / 1024
        ));
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
        let slots = (cfg.cpus * highpte_arch::KmType::NR) as usize;
        let k = Kernel {
            cfg,
            opts,
            layout,
            mem_map,
            zones: zones.map(|z| SpinLock::new(zone_lock_name(z.ty()), z)),
            max_low_pfn,
            max_pfn,
            swapper_pgd: pgd,
            kernel_pmd,
            fixmap_ptes,
            pkmap_pte_base,
            pkmap: SpinLock::new(
                "kmap_lock",
                Pkmap::new(
                    opts.pkmap_entries
                        .map(|n| {
                            n.clamp(2, M::LAST_PKMAP)
                                .next_power_of_two()
                                .min(M::LAST_PKMAP)
                        })
                        .unwrap_or(M::LAST_PKMAP),
                ),
            ),
            atomic_slots: (0..slots).map(|_| Cell::new(None)).collect(),
            atomic_last_use: (0..slots).map(|_| Cell::new(None)).collect(),
            owner_pages,
            pt_alloc: PtAllocState::new(cfg.cpus),
            counters: Counters::default(),
            init_mm_ptl: SpinLock::new("init_mm.page_table_lock", ()),
            procs: RefCell::new(alloc::collections::BTreeMap::new()),
            zombies: RefCell::new(alloc::collections::BTreeMap::new()),
            shm_ids: crate::sync::Mutex::new("shm_ids.sem", crate::mm::shm::ShmIds::default()),
            zero_page,
            kobj: crate::kobj::KobjState::default(),
            boot_log: RefCell::new(log),
            fail_allocs: Default::default(),
            swap: SpinLock::new(
                "swap_lock",
                crate::mm::swap::SwapState::new(opts.swap_pages),
            ),
            reclaim: Default::default(),
            rmap: Default::default(),
            shared_objects: RefCell::new(Vec::new()),
            fs: crate::fs::FsState::new(),
            _mode: PhantomData,
        };
        Ok(k)
    }
}

fn zone_lock_name(t: ZoneType) -> &'static str {
    match t {
        ZoneType::Dma => "zone DMA lock",
        ZoneType::Normal => "zone Normal lock",
        ZoneType::HighMem => "zone HighMem lock",
    }
}
