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
//!
//! The stages: the boot log's banner (`log`), the kernel page tables (`tables`), mem_map's
//! place, paging on, mem_map and the zones with the reserved frames marked and the rest
//! freed, the zero page, the rest of the boot log.

mod log;
mod profile;
mod tables;

use crate::counters::Counters;
use crate::highmem::Highmem;
use crate::kernel::{Kernel, KernelOptions};
use crate::page_alloc::allocator::{PageAllocator, ZoneRules};
use crate::page_alloc::{MemMap, PageFlags, PageOwner, Zone, ZoneType};
use crate::pgtable::alloc::PtAllocState;
use crate::platform::Platform;
use crate::sync::SpinLock;
use alloc::format;
use core::cell::{Cell, RefCell};
use core::fmt;
use core::marker::PhantomData;
use highpte_arch::layout::PAGE_OFFSET;
use highpte_arch::size::DisplaySize;
use highpte_arch::{
    Config, KernelLayout, KernelProfile, PagingMode, Pfn, RamMap, VirtAddr, PAGE_SIZE,
};
use log::{banner, log_memory_layout};
use tables::{build_kernel_tables, BootMem};

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

/// Where boot put its reservations in low memory, in page frames.
pub(super) struct BootReservations {
    /// First frame of the kernel image (at `kernel_load_addr`).
    pub(super) image_start: u64,
    /// Frames of the kernel image.
    pub(super) image_pages: u64,
    /// First frame of the kernel page tables.
    pub(super) tables_start: u64,
    /// One past the last frame of the kernel page tables.
    pub(super) tables_end: u64,
    /// First frame of mem_map.
    pub(super) mem_map_start: u64,
    /// Frames of mem_map.
    pub(super) mem_map_pages: u64,
    /// The profile's other boot reservations, after mem_map: what they are and their frames.
    pub(super) extra: profile::Extra,
    /// One past the last reserved frame (the end of the other reservations).
    pub(super) reserved_end: u64,
}

impl BootReservations {
    /// The reserved frame ranges `[start, end)` with their owners, ascending.
    fn ranges(&self) -> [(u64, u64, PageOwner); 5] {
        let first_mb = FIRST_MB / PAGE_SIZE;
        let mem_map_end = self.mem_map_start + self.mem_map_pages;
        [
            (0, first_mb.min(self.image_start), PageOwner::BootReserved),
            (
                self.image_start,
                self.image_start + self.image_pages,
                PageOwner::KernelImage,
            ),
            (self.tables_start, self.tables_end, PageOwner::BootReserved),
            (self.mem_map_start, mem_map_end, PageOwner::MemMap),
            (mem_map_end, self.reserved_end, PageOwner::BootReserved),
        ]
    }
}

/// The first megabyte: BIOS data, the ISA hole; never given to the allocator.
const FIRST_MB: u64 = 1 << 20;

/// The zone a boot-reserved frame lies in.
fn boot_zone(pfn: u64, max_low_pfn: u64) -> usize {
    if pfn < max_low_pfn {
        if pfn < (crate::page_alloc::zone::DMA_ZONE_BYTES / PAGE_SIZE) {
            0
        } else {
            1
        }
    } else {
        2
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
        let mut log = banner::<M>(&cfg);
        let lowmem = cfg.lowmem_bytes();
        let max_pfn = cfg.phys_end() / PAGE_SIZE;
        let max_low_pfn = lowmem / PAGE_SIZE;
        let layout = KernelLayout::new(lowmem, cfg.cpus, M::LAST_PKMAP, opts.debug);
        // boot-time bump allocator after the kernel image
        let image_pages = opts.kernel_image_bytes.div_ceil(PAGE_SIZE);
        let image_start = opts.kernel_load_addr / PAGE_SIZE;
        let mut bm = BootMem {
            next: image_start + image_pages,
        };
        let tables = build_kernel_tables::<M, P>(p, &mut bm, lowmem, &layout);
        let mem_map_pages = (max_pfn * opts.struct_page_bytes).div_ceil(PAGE_SIZE);
        let extra = profile::Extra::for_config(&cfg);
        let mem_map_start = place_mem_map(bm.next, mem_map_pages + extra.pages(), lowmem)?;
        let res = BootReservations {
            image_start,
            image_pages,
            tables_start: tables.start,
            tables_end: tables.end,
            mem_map_start,
            mem_map_pages,
            reserved_end: mem_map_start + mem_map_pages + extra.pages(),
            extra,
        };
        p.boot_mem_map_reserved(
            highpte_arch::PhysAddr::new_checked(mem_map_start * PAGE_SIZE),
            mem_map_pages * PAGE_SIZE,
        );
        let pkmap_pte_base = VirtAddr::new(PAGE_OFFSET + tables.pkmap_pt.addr().as_u64() as u32);
        // SAFETY: once, at boot; swapper_pg_dir now maps all of low memory, the fixmap and the
        // pkmap window in this paging mode.
        unsafe { p.enable_paging(M::PAE, tables.pgd.addr()) };

        let mem_map = MemMap::new(max_pfn as usize);
        let mut zones = Zone::zones_for(&cfg);
        let ram = cfg.ram_map();
        let owner_pages = reserve_boot_pages(&mem_map, &res, &ram, max_pfn, max_low_pfn);
        free_boot_memory(&mut zones, &mem_map, &res, &ram);
        if cfg.kernel == KernelProfile::Linux61 {
            crate::page_alloc::watermarks61::setup(&mut zones, M::PAE);
        }
        let zero_page = alloc_boot_page(&mut zones, &mem_map, &owner_pages).ok_or(
            BootError::LowMemoryTooSmall {
                needed: (res.reserved_end + 1024) * PAGE_SIZE,
                lowmem,
            },
        )?;
        let boot_kb = profile::boot_allocations_kb(&cfg);
        if boot_kb > 0 {
            for _ in 0..boot_kb / 4 {
                alloc_boot_page(&mut zones, &mem_map, &owner_pages).ok_or(
                    BootError::LowMemoryTooSmall {
                        needed: (res.reserved_end + boot_kb / 4 + 1024) * PAGE_SIZE,
                        lowmem,
                    },
                )?;
            }
            log.push(format!(
                "Kernel allocations during boot: {} (slab, stacks, per-CPU lists, vmalloc, hash tables)",
                DisplaySize(boot_kb << 10)
            ));
        }
        log_memory_layout(&mut log, &cfg, &opts, &layout, &zones, &res);
        Ok(Kernel {
            cfg,
            opts,
            layout,
            mem_map,
            page_alloc: PageAllocator::new(
                zones,
                owner_pages,
                match cfg.kernel {
                    KernelProfile::Linux25 => ZoneRules::Cumulative,
                    KernelProfile::Linux61 => ZoneRules::LowmemReserve,
                },
            ),
            max_low_pfn,
            max_pfn,
            init_mm: crate::pgtable::init_mm::InitMm::new(tables.pgd, tables.kernel_pmd),
            highmem: Highmem::new(
                cfg.cpus,
                tables.fixmap_ptes,
                pkmap_pte_base,
                pkmap_entries::<M>(&opts),
                opts.debug,
            ),
            pt_alloc: PtAllocState::new(cfg.cpus),
            counters: Counters::default(),
            tasks: crate::mm::task_table::TaskTable::default(),
            shm: crate::mm::shm::ShmState::new(),
            zero_page,
            kobj: crate::kobj::KobjState::default(),
            boot_log: RefCell::new(log),
            swap: SpinLock::new(
                "swap_lock",
                crate::mm::swap::SwapState::new(opts.swap_pages),
            ),
            reclaim: Default::default(),
            rmap: Default::default(),
            fs: crate::fs::FsState::new(),
            _mode: PhantomData,
        })
    }
}

/// Place mem_map (`mem_map_pages` frames) after the boot allocations that end at frame
/// `next`, like `alloc_bootmem` above the 16 MB of ISA DMA when low memory has room. Returns
/// its first frame; fails if it and the boot reservations leave less than 4 MB of low
/// memory for the running kernel.
fn place_mem_map(next: u64, mem_map_pages: u64, lowmem: u64) -> Result<u64, BootError> {
    let max_low_pfn = lowmem / PAGE_SIZE;
    let dma_end = crate::page_alloc::zone::DMA_ZONE_BYTES / PAGE_SIZE;
    let mem_map_start = if dma_end + mem_map_pages + 1024 <= max_low_pfn {
        next.max(dma_end)
    } else {
        next
    };
    let reserved_end = mem_map_start + mem_map_pages;
    if reserved_end + 1024 > max_low_pfn {
        return Err(BootError::LowMemoryTooSmall {
            needed: (reserved_end + 1024) * PAGE_SIZE,
            lowmem,
        });
    }
    Ok(mem_map_start)
}

/// Mark the frames boot reserved (the first megabyte, the kernel image, the kernel tables,
/// mem_map, the profile's other reservations) in mem_map and count them per zone and owner:
/// the kernel's `owner_pages`. Frames that are not RAM (the firmware's holes) are marked
/// reserved too but counted nowhere: they are not present in any zone.
fn reserve_boot_pages(
    mem_map: &MemMap,
    res: &BootReservations,
    ram: &RamMap,
    max_pfn: u64,
    max_low_pfn: u64,
) -> [[Cell<u64>; PageOwner::COUNT]; 3] {
    let owner_pages: [[Cell<u64>; PageOwner::COUNT]; 3] =
        core::array::from_fn(|_| core::array::from_fn(|_| Cell::new(0)));
    let is_ram = |pfn: u64| ram.bytes_in(pfn * PAGE_SIZE, (pfn + 1) * PAGE_SIZE) == PAGE_SIZE;
    for (start, end, owner) in res.ranges() {
        for pfn in start..end.min(max_pfn) {
            let d = mem_map.desc(Pfn(pfn));
            d.set_flag(PageFlags::RESERVED);
            d.set_owner(owner);
            if is_ram(pfn) {
                let c = &owner_pages[boot_zone(pfn, max_low_pfn)][owner as usize];
                c.set(c.get() + 1);
            }
        }
    }
    // the holes between and above the RAM ranges
    let mut next = 0;
    for &(s, e) in ram
        .ranges()
        .iter()
        .chain(core::iter::once(&(max_pfn * PAGE_SIZE, 0)))
    {
        for pfn in next..(s / PAGE_SIZE).min(max_pfn) {
            let d = mem_map.desc(Pfn(pfn));
            d.set_flag(PageFlags::RESERVED);
            d.set_owner(PageOwner::BootReserved);
        }
        next = e / PAGE_SIZE;
    }
    owner_pages
}

/// Free every RAM frame boot did not reserve to the zones' buddy allocators.
fn free_boot_memory(zones: &mut [Zone; 3], mem_map: &MemMap, res: &BootReservations, ram: &RamMap) {
    let reserved = res.ranges();
    for &(rs, re) in ram.ranges() {
        // walk the RAM range, skipping the reserved ranges (ascending, disjoint)
        let mut at = rs / PAGE_SIZE;
        let end = re / PAGE_SIZE;
        for (s, e, _) in
            reserved
                .iter()
                .copied()
                .chain(core::iter::once((end, end, PageOwner::Free)))
        {
            let stop = s.clamp(at, end);
            free_in_zones(zones, mem_map, at, stop);
            at = at.max(e.min(end));
        }
    }
}

/// Hand `[start, end)` to the zones it lies in.
fn free_in_zones(zones: &mut [Zone; 3], mem_map: &MemMap, start: u64, end: u64) {
    for z in zones.iter_mut() {
        let s = z.start_pfn().0.max(start);
        let e = z.end_pfn().0.min(end);
        if s < e {
            // The ranges are inside the zone and disjoint: cannot fail.
            let _ = z.free_range_at_boot(mem_map, Pfn(s), Pfn(e));
        }
    }
}

/// One low page taken for boot's own use (owner "boot reserved"): the zero page, and the 6.1
/// profile's allocations during boot, page by page. `None` if low memory has no free page
/// left.
fn alloc_boot_page(
    zones: &mut [Zone; 3],
    mem_map: &MemMap,
    owner_pages: &[[Cell<u64>; PageOwner::COUNT]; 3],
) -> Option<Pfn> {
    let zero_zone = if zones[ZoneType::Normal as usize].managed_pages() > 0 {
        ZoneType::Normal
    } else {
        ZoneType::Dma
    };
    let zero_page = zones[zero_zone as usize]
        .alloc(mem_map, 0, crate::page_alloc::Watermark::Ignore)
        .ok()?;
    mem_map.desc(zero_page).set_owner(PageOwner::BootReserved);
    let c = &owner_pages[zero_zone as usize][PageOwner::BootReserved as usize];
    c.set(c.get() + 1);
    Some(zero_page)
}

/// How many pkmap entries the kernel uses: the option, a power of two in `2..=LAST_PKMAP`.
fn pkmap_entries<M: PagingMode>(opts: &KernelOptions) -> u32 {
    opts.pkmap_entries
        .map(|n| {
            n.clamp(2, M::LAST_PKMAP)
                .next_power_of_two()
                .min(M::LAST_PKMAP)
        })
        .unwrap_or(M::LAST_PKMAP)
}
