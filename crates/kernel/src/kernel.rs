//! The kernel: everything booted, shared by every task.

use crate::counters::Counters;
use crate::page_alloc::{MemMap, PageOwner, ZoneType};
use crate::pgtable::alloc::PtAllocState;
use crate::platform::Platform;
use crate::sync::SpinLock;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::fmt;
use core::marker::PhantomData;
use highpte_arch::{Config, Entry, KernelLayout, PagingMode, Pfn, VirtAddr, PAGE_SHIFT};

/// How user pte pages are placed and reached: the three designs the seed compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PteStrategy {
    /// pte pages in low memory, reached through the direct map (2.4, and 2.5 without HIGHPTE).
    Lowmem,
    /// pte pages in high memory, mapped with `kmap_atomic` per CPU (the seed's design).
    Atomic,
    /// pte pages in high memory, mapped with persistent `kmap()` under the global kmap lock,
    /// dropping the page-table lock around a blocking kmap (Andrea Arcangeli's pte-highmem).
    Persistent,
}

impl PteStrategy {
    /// All three.
    pub const ALL: [PteStrategy; 3] = [
        PteStrategy::Lowmem,
        PteStrategy::Atomic,
        PteStrategy::Persistent,
    ];
    /// The command-line name.
    pub const fn name(self) -> &'static str {
        match self {
            PteStrategy::Lowmem => "lowmem",
            PteStrategy::Atomic => "atomic",
            PteStrategy::Persistent => "persistent",
        }
    }
    /// Parse a command-line name.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.name() == s)
    }
    /// True if user pte pages go to high memory.
    pub const fn highmem_ptes(self) -> bool {
        !matches!(self, PteStrategy::Lowmem)
    }
    /// The default for a memory configuration: `-highpte` configs use the seed's atomic
    /// mappings, the others keep pte pages in low memory.
    pub fn default_for(cfg: &Config) -> Self {
        if cfg.variant.highpte() {
            PteStrategy::Atomic
        } else {
            PteStrategy::Lowmem
        }
    }
}

impl fmt::Display for PteStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where page-table pages come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PtAllocKind {
    /// The seed's proposal: a bounded per-CPU pool of page-table pages, refilled and drained
    /// in batches from the buddy allocator.
    Pool,
    /// 2.4's per-CPU quicklists of pgd, pmd and pte pages (unbounded).
    Quicklist,
    /// Straight from the buddy allocator every time.
    Buddy,
}

impl PtAllocKind {
    /// All three.
    pub const ALL: [PtAllocKind; 3] = [
        PtAllocKind::Pool,
        PtAllocKind::Quicklist,
        PtAllocKind::Buddy,
    ];
    /// The command-line name.
    pub const fn name(self) -> &'static str {
        match self {
            PtAllocKind::Pool => "pool",
            PtAllocKind::Quicklist => "quicklist",
            PtAllocKind::Buddy => "buddy",
        }
    }
    /// Parse a command-line name.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.name() == s)
    }
}

impl fmt::Display for PtAllocKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Boot-time choices beyond the machine configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelOptions {
    /// How user pte pages are placed and mapped.
    pub strategy: PteStrategy,
    /// Where page-table pages come from.
    pub pt_alloc: PtAllocKind,
    /// The debugging helpers (`CONFIG_DEBUG_HIGHMEM` and more): slot checks, cleared slots,
    /// guard slots, exit checks.
    pub debug: bool,
    /// Simulated size of one page descriptor (`struct page`), charged to low memory.
    pub struct_page_bytes: u64,
    /// Simulated size of the kernel image (text, data, bss), reserved at `kernel_load_addr`.
    pub kernel_image_bytes: u64,
    /// Physical address the kernel image is loaded at (`CONFIG_PHYSICAL_START`).
    pub kernel_load_addr: u64,
    /// Per-CPU page-table pool: pages moved per refill or drain.
    pub pool_batch: u32,
    /// Per-CPU page-table pool: most pages kept per CPU and per zone class.
    pub pool_high: u32,
    /// Persistent kmap entries to use (a power of two, at most LAST_PKMAP); `None` = all of
    /// them. A small window makes the persistent strategy's hazards show quickly.
    pub pkmap_entries: Option<u32>,
    /// `vm.max_map_count`: most VMAs per address space (mmap, shmat and splits fail with
    /// ENOMEM beyond it).
    pub max_map_count: usize,
    /// `kernel.threads-max`: most processes; fork fails with EAGAIN beyond it.
    pub max_processes: usize,
    /// `kernel.shmmni`: most SysV segments; shmget fails with ENOSPC beyond it.
    pub shmmni: usize,
    /// Size of the swap device in 4 KB pages (0: no swap).
    pub swap_pages: u64,
    /// How memory is reclaimed when it runs out.
    pub reclaim: crate::mm::reclaim::ReclaimKind,
}

impl KernelOptions {
    /// The defaults for a configuration: strategy from the variant, debug helpers off; with
    /// the 2.5 profile the seed's page-table pool, a 48-byte `struct page` and a 4 MB kernel image
    /// at 1 MB, with the 6.1 profile page tables from the buddy allocator and that kernel's
    /// 40-byte `struct page` and 14,391 KB image at 16 MB.
    pub fn defaults_for(cfg: &Config) -> Self {
        let linux61 = cfg.kernel == highpte_arch::KernelProfile::Linux61;
        Self {
            strategy: PteStrategy::default_for(cfg),
            // the seed's per-CPU pool is 2.5's proposal; 6.1 takes page tables from the buddy
            pt_alloc: if linux61 {
                PtAllocKind::Buddy
            } else {
                PtAllocKind::Pool
            },
            debug: false,
            struct_page_bytes: if linux61 {
                LINUX61_STRUCT_PAGE_BYTES
            } else {
                crate::page_alloc::DEFAULT_STRUCT_PAGE_BYTES
            },
            kernel_image_bytes: if linux61 {
                LINUX61_KERNEL_IMAGE_BYTES
            } else {
                DEFAULT_KERNEL_IMAGE_BYTES
            },
            kernel_load_addr: if linux61 {
                LINUX61_KERNEL_LOAD_ADDR
            } else {
                KERNEL_LOAD_ADDR
            },
            pool_batch: 16,
            pool_high: 64,
            pkmap_entries: None,
            max_map_count: crate::mm::MAX_MAP_COUNT,
            max_processes: crate::mm::process::MAX_PROCESSES,
            shmmni: crate::mm::shm::SHMMNI,
            swap_pages: 0,
            reclaim: crate::mm::reclaim::ReclaimKind::Scan,
        }
    }
}

/// Simulated size of the kernel image: a 2.5-era i386 kernel's text, data and bss, rounded.
pub const DEFAULT_KERNEL_IMAGE_BYTES: u64 = 4 << 20;
/// Physical address where the kernel image is loaded (below it: BIOS data, the ISA hole).
pub const KERNEL_LOAD_ADDR: u64 = 1 << 20;
/// `struct page` of the 6.1 686-pae kernel: 36 bytes aligned to 8 (its boot log's mem_map
/// of 92,160 KB for 2,359,296 page frames).
pub const LINUX61_STRUCT_PAGE_BYTES: u64 = 40;
/// The 6.1 686-pae kernel's image as its boot log gives it once init memory is freed: 9,458K
/// code, 1,265K rwdata, 3,192K rodata, 476K bss.
pub const LINUX61_KERNEL_IMAGE_BYTES: u64 = 14_391 << 10;
/// Debian's i386 kernels are built with `CONFIG_PHYSICAL_START=0x1000000`.
pub const LINUX61_KERNEL_LOAD_ADDR: u64 = 16 << 20;

/// The booted kernel. One per simulated machine; every task reaches it by shared reference.
pub struct Kernel<M: PagingMode> {
    pub(crate) cfg: Config,
    pub(crate) opts: KernelOptions,
    pub(crate) layout: KernelLayout,
    pub(crate) mem_map: MemMap,
    /// The page allocator: zones, owner accounting, fault injection.
    pub(crate) page_alloc: crate::page_alloc::allocator::PageAllocator,
    /// First pfn above low memory (`max_low_pfn`).
    pub(crate) max_low_pfn: u64,
    /// All usable pfns are below this (`max_pfn`).
    pub(crate) max_pfn: u64,
    /// The kernel's own page tables (`init_mm`).
    pub(crate) init_mm: crate::pgtable::init_mm::InitMm,
    /// The kmap_atomic slots and the persistent kmap window.
    pub(crate) highmem: crate::highmem::Highmem<M>,
    pub(crate) pt_alloc: PtAllocState,
    pub(crate) counters: Counters,
    /// The process table (live processes and unreaped zombies).
    pub(crate) tasks: crate::mm::task_table::TaskTable,
    /// Shared memory: the SysV ids and every shared-memory object.
    pub(crate) shm: crate::mm::shm::ShmState,
    /// The shared zero page mapped by read faults on private anonymous memory.
    pub(crate) zero_page: Pfn,
    /// Kernel objects charged to low memory.
    pub(crate) kobj: crate::kobj::KobjState,
    pub(crate) boot_log: RefCell<Vec<String>>,
    /// `swap_lock`: the swap device's slot map and the swap cache.
    pub(crate) swap: SpinLock<crate::mm::swap::SwapState>,
    /// Reclaim's cursors and statistics.
    pub(crate) reclaim: crate::mm::reclaim::ReclaimState,
    /// Reverse maps (rmap reclaim only).
    pub(crate) rmap: crate::mm::rmap::RmapState,
    /// The simulated file system and the page cache.
    pub(crate) fs: crate::fs::FsState,
    pub(crate) _mode: PhantomData<M>,
}

impl<M: PagingMode> Kernel<M> {
    /// The machine configuration booted.
    pub fn config(&self) -> &Config {
        &self.cfg
    }
    /// The boot options.
    pub fn options(&self) -> &KernelOptions {
        &self.opts
    }
    /// The kernel virtual layout.
    pub fn layout(&self) -> &KernelLayout {
        &self.layout
    }
    /// The page descriptors.
    pub fn mem_map(&self) -> &MemMap {
        &self.mem_map
    }
    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }
    /// The boot log (dmesg at boot).
    pub fn boot_log(&self) -> Vec<String> {
        self.boot_log.borrow().clone()
    }
    /// `max_low_pfn`.
    pub fn max_low_pfn(&self) -> u64 {
        self.max_low_pfn
    }
    /// `max_pfn`.
    pub fn max_pfn(&self) -> u64 {
        self.max_pfn
    }
    /// Physical address of swapper_pg_dir.
    pub fn swapper_pg_dir(&self) -> Pfn {
        self.init_mm.pgd()
    }
    /// True if the page is in high memory (has no permanent kernel address).
    #[inline(always)]
    pub fn is_highmem(&self, pfn: Pfn) -> bool {
        pfn.0 >= self.max_low_pfn
    }
    /// The zone a page belongs to.
    pub fn page_zone(&self, pfn: Pfn) -> ZoneType {
        if pfn.0 >= self.max_low_pfn {
            ZoneType::HighMem
        } else if pfn.0 < crate::page_alloc::zone::DMA_ZONE_BYTES >> PAGE_SHIFT {
            ZoneType::Dma
        } else {
            ZoneType::Normal
        }
    }
    /// The direct-map address of a low page.
    #[inline(always)]
    pub fn page_address(&self, pfn: Pfn) -> Option<VirtAddr> {
        self.layout.phys_to_virt(pfn.addr().as_u64())
    }
    /// Pages of `owner` in `zone`.
    pub fn owner_pages(&self, zone: ZoneType, owner: PageOwner) -> u64 {
        self.page_alloc.owner_pages(zone, owner)
    }
    pub(crate) fn account(&self, pfn: Pfn, owner: PageOwner, pages: u64, add: bool) {
        self.page_alloc
            .account(self.page_zone(pfn), owner, pages, add)
    }

    /// Read a paging-structure entry of this mode at a kernel address.
    ///
    /// # Safety
    /// As `entry_io::read_entry`.
    #[inline(always)]
    pub(crate) unsafe fn read_entry<P: Platform>(&self, p: &P, va: VirtAddr) -> u64 {
        // SAFETY: forwarded to the caller.
        unsafe { crate::pgtable::entry_io::read_entry::<M, P>(p, va) }
    }

    /// Write a paging-structure entry of this mode at a kernel address (high half first when
    /// it becomes present with PAE).
    ///
    /// # Safety
    /// As `entry_io::read_entry`.
    #[inline(always)]
    pub(crate) unsafe fn write_entry<P: Platform>(&self, p: &P, va: VirtAddr, e: Entry) {
        // SAFETY: forwarded to the caller.
        unsafe { crate::pgtable::entry_io::write_entry::<M, P>(p, va, e) }
    }
}
