//! Reaching high memory: per-CPU atomic mappings and the persistent kmap pool.
//!
//! A high page has no permanent kernel address. [`atomic`] maps it into a per-CPU fixmap slot
//! for a short, non-blocking section (`kmap_atomic`: the seed's choice for ptes); [`pkmap`]
//! maps it into the shared persistent window under one global lock, and may sleep
//! (`kmap`: what the seed keeps for "clear, high-level cases such as read()").

pub mod atomic;
pub mod pkmap;

pub use atomic::{KmapAtomic, KmapAtomicPair, SlotUse};
pub use pkmap::{Pkmap, PkmapHolder, PKMAP_WAIT};

use crate::kernel::Kernel;
use crate::sync::LockStats;
use highpte_arch::PagingMode;

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

impl<M: PagingMode> Kernel<M> {
    /// The lock counters of `kmap_lock` and the zone locks (for "kmap_atomic takes no lock").
    pub fn highmem_lock_stats(&self) -> HighmemLockStats {
        HighmemLockStats {
            kmap_lock: self.pkmap.stats(),
            zones: core::array::from_fn(|i| self.zones[i].stats()),
        }
    }
}
