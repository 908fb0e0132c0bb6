//! Address spaces: mm, VMAs, the system calls that change them, faults, fork and exit.

pub mod fault;
pub mod filemap;
pub mod memory;
pub mod mmap;
pub mod mremap;
pub mod page_runs;
pub mod populate;
pub mod process;
pub mod procfs;
pub mod reclaim;
pub mod rmap;
pub mod shm;
pub mod swap;
pub mod swapoff;
pub(crate) mod task_table;
pub mod tlb;
pub mod vma;

/// A pte that maps a page: present, or PROT_NONE (not present to the hardware, but still
/// holding its page).
pub fn pte_maps_page(e: highpte_arch::Entry) -> bool {
    e.is_present() || e.has(PTE_PROTNONE)
}

/// The pte that maps user page `pfn` after a fault or a populate: present, user, accessed;
/// `writable` adds RW, and then `dirty` (the access was a write) adds DIRTY.
pub(crate) fn user_pte(pfn: highpte_arch::Pfn, writable: bool, dirty: bool) -> highpte_arch::Entry {
    use highpte_arch::EntryFlags;
    let mut f = EntryFlags::PRESENT | EntryFlags::USER | EntryFlags::ACCESSED;
    if writable {
        f |= EntryFlags::RW;
        if dirty {
            f |= EntryFlags::DIRTY;
        }
    }
    highpte_arch::Entry::new(pfn, f)
}

/// Software bit marking a PROT_NONE pte (`_PAGE_PROTNONE`, bit 7 as in 2.5 i386: the PAT bit,
/// which the hardware ignores while P is clear): P clear, page kept. A non-present pte
/// without it and not empty is a swap entry ([`highpte_arch::SwapEntry`]).
pub const PTE_PROTNONE: highpte_arch::EntryFlags = highpte_arch::EntryFlags::PS;

pub use process::{ForkError, Process};
pub use tlb::{FlushedGather, Gather, PendingFlush};
pub use vma::{Backing, Vma, VmaSet};

use crate::pgtable::{PageTableLock, UserPgd};
use crate::platform::CpuMask;
use crate::sync::RwSem;
use core::cell::Cell;

/// `TASK_SIZE`: user addresses are below the 3 GB split.
pub const TASK_SIZE: u32 = highpte_arch::layout::PAGE_OFFSET;
/// `TASK_UNMAPPED_BASE`: where mmap starts looking for free space (TASK_SIZE / 3).
pub const TASK_UNMAPPED_BASE: u32 = TASK_SIZE / 3;
/// Start of every process's heap (the brk area): after a small program image.
pub const START_BRK: u32 = 0x0a00_0000;
/// `sysctl_max_map_count`.
pub const MAX_MAP_COUNT: usize = 65536;

/// `PROT_READ`.
pub const PROT_READ: u32 = 0x1;
/// `PROT_WRITE`.
pub const PROT_WRITE: u32 = 0x2;
/// `PROT_EXEC`.
pub const PROT_EXEC: u32 = 0x4;
/// `PROT_NONE`.
pub const PROT_NONE: u32 = 0x0;
/// `MAP_SHARED`.
pub const MAP_SHARED: u32 = 0x01;
/// `MAP_PRIVATE`.
pub const MAP_PRIVATE: u32 = 0x02;
/// `MAP_FIXED`.
pub const MAP_FIXED: u32 = 0x10;
/// `MAP_ANONYMOUS`.
pub const MAP_ANONYMOUS: u32 = 0x20;
/// `MAP_NORESERVE` (accepted, no effect: there is no overcommit accounting).
pub const MAP_NORESERVE: u32 = 0x4000;
/// `MAP_POPULATE`: prefault the whole mapping.
pub const MAP_POPULATE: u32 = 0x8000;
/// `MREMAP_MAYMOVE`.
pub const MREMAP_MAYMOVE: u32 = 1;
/// `MREMAP_FIXED`.
pub const MREMAP_FIXED: u32 = 2;

/// An address space (`struct mm_struct`).
pub struct Mm {
    /// The page-table root; freed when the last user exits (then `dead` is set).
    pub(crate) pgd: UserPgd,
    pub(crate) dead: Cell<bool>,
    pub(crate) cr3: u64,
    /// `mmap_sem`: protects the VMA set.
    pub(crate) mmap_sem: RwSem<VmaSet>,
    /// `page_table_lock`: protects the page tables and the counters below.
    pub(crate) page_table_lock: PageTableLock,
    /// Resident pages (`rss`).
    pub(crate) rss: Cell<u64>,
    /// Pte pages (`VmPTE`, in pages).
    pub(crate) nr_ptes: Cell<u64>,
    /// CPUs that may hold translations of this mm (`cpu_vm_mask`).
    pub(crate) cpu_vm_mask: Cell<CpuMask>,
    /// Tasks using this mm (`mm_users`).
    pub(crate) users: Cell<u32>,
    /// VMAs charged to kernel-object memory.
    pub(crate) charged_vmas: Cell<usize>,
    /// Where the reclaim scan resumes in this address space (`swap_address`).
    pub(crate) swap_address: Cell<u32>,
}

impl Mm {
    /// Resident pages.
    pub fn rss(&self) -> u64 {
        self.rss.get()
    }
    /// Pte pages (VmPTE).
    pub fn nr_ptes(&self) -> u64 {
        self.nr_ptes.get()
    }
    /// The CR3 value of this address space.
    pub fn cr3(&self) -> u64 {
        self.cr3
    }
    /// CPUs that may cache translations of this mm.
    pub fn cpu_vm_mask(&self) -> CpuMask {
        self.cpu_vm_mask.get()
    }
    /// Tasks using this mm.
    pub fn users(&self) -> u32 {
        self.users.get()
    }
}
