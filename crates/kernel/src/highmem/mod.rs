//! Reaching high memory: per-CPU atomic mappings and the persistent kmap pool.
//!
//! A high page has no permanent kernel address. [`atomic`] maps it into a per-CPU fixmap slot
//! for a short, non-blocking section (`kmap_atomic`: the seed's choice for ptes); [`pkmap`]
//! maps it into the shared persistent window under one global lock, and may sleep
//! (`kmap`: what the seed keeps for "clear, high-level cases such as read()").
//!
//! `Highmem` owns all of that state (the slots, the window, where their ptes live); its
//! fields are private to this module. It reaches nothing else of the kernel: what it needs
//! (the virtual layout, the counters) comes in a `HighmemEnv` on each call. The public
//! `Kernel::kmap*` entry points in `kernel_api` only forward to it.

pub mod atomic;
mod kernel_api;
pub mod pkmap;

pub use atomic::{KmapAtomic, KmapAtomicPair, SlotUse};
pub use pkmap::{Pkmap, PkmapHolder, PKMAP_WAIT};

use crate::counters::Counters;
use crate::sync::{LockStats, SpinLock};
use alloc::vec::Vec;
use core::cell::Cell;
use core::marker::PhantomData;
use highpte_arch::{EntryFlags, KernelLayout, KmType, PagingMode, VirtAddr};

/// Acquisition counters of the locks a highmem mapping could take: `kmap_lock` (the persistent
/// pool) and each zone's lock (DMA, Normal, HighMem). `kmap_atomic` must take none of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HighmemLockStats {
    /// `kmap_lock`.
    pub kmap_lock: LockStats,
    /// The zone locks, indexed by `ZoneType as usize`.
    pub zones: [LockStats; 3],
}

impl HighmemLockStats {
    /// Acquisitions of all these locks together.
    pub fn acquisitions(&self) -> u64 {
        self.kmap_lock.acquisitions + self.zones.iter().map(|z| z.acquisitions).sum::<u64>()
    }
}

/// What a highmem mapping borrows from the rest of the kernel for one call: the virtual
/// layout (the direct map, the pkmap window, the fixmap) and the event counters.
#[derive(Clone, Copy)]
pub(crate) struct HighmemEnv<'a> {
    /// The kernel virtual layout.
    pub(crate) layout: &'a KernelLayout,
    /// The event counters.
    pub(crate) counters: &'a Counters,
}

/// The highmem mapping subsystem: the per-CPU `kmap_atomic` slots and the persistent kmap
/// window, with the kernel addresses of the ptes that map them.
pub(crate) struct Highmem<M: PagingMode> {
    /// Kernel address of the pte of every fixmap index (`kmap_pte - idx`), in low memory.
    fixmap_ptes: Vec<VirtAddr>,
    /// Kernel address of the pkmap pte page (`pkmap_page_table`).
    pkmap_pte_base: VirtAddr,
    /// The persistent window, under `kmap_lock`.
    pkmap: SpinLock<Pkmap>,
    /// Holder of each (cpu, type) kmap_atomic slot.
    atomic_slots: Vec<Cell<Option<SlotUse>>>,
    /// Last holder of each slot, remembered after unmap to explain stale accesses.
    atomic_last_use: Vec<Cell<Option<SlotUse>>>,
    /// The debugging helpers (`CONFIG_DEBUG_HIGHMEM`): slot checks, cleared slots, holder
    /// checks at `kunmap`.
    debug: bool,
    _mode: PhantomData<M>,
}

impl<M: PagingMode> Highmem<M> {
    /// The state at boot: every slot and pkmap entry free. `fixmap_ptes` and `pkmap_pte_base`
    /// are the kernel addresses of the ptes boot set up for the fixmap and the pkmap window.
    pub(crate) fn new(
        cpus: u32,
        fixmap_ptes: Vec<VirtAddr>,
        pkmap_pte_base: VirtAddr,
        pkmap_entries: u32,
        debug: bool,
    ) -> Self {
        let slots = (cpus * KmType::NR) as usize;
        Self {
            fixmap_ptes,
            pkmap_pte_base,
            pkmap: SpinLock::new("kmap_lock", Pkmap::new(pkmap_entries)),
            atomic_slots: (0..slots).map(|_| Cell::new(None)).collect(),
            atomic_last_use: (0..slots).map(|_| Cell::new(None)).collect(),
            debug,
            _mode: PhantomData,
        }
    }

    /// The acquisition counters of `kmap_lock`.
    pub(crate) fn kmap_lock_stats(&self) -> LockStats {
        self.pkmap.stats()
    }
}

/// The flags of a kernel mapping of a data page (`PAGE_KERNEL`, global with PGE).
pub(crate) fn kernel_page_flags() -> EntryFlags {
    EntryFlags::KERNEL | EntryFlags::GLOBAL
}
