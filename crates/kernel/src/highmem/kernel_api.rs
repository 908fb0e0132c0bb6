//! The kernel's highmem entry points (`kmap`, the pkmap and slot reports): each hands the
//! `Highmem` subsystem the layout and counters it needs and forwards. The `kmap_atomic`
//! entry points are at the end of `atomic.rs`.

use super::pkmap::TryKmap;
use super::{HighmemEnv, HighmemLockStats, PkmapHolder, SlotUse};
use crate::ctx::{Ctx, SleepCtx};
use crate::kernel::Kernel;
use crate::page_alloc::ZoneType;
use crate::platform::{Platform, TaskId};
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use highpte_arch::layout::fix_to_virt;
use highpte_arch::{KmType, PagingMode, Pfn, VirtAddr};

impl<M: PagingMode> Kernel<M> {
    /// What the highmem subsystem borrows from the kernel for one call.
    pub(super) fn highmem_env(&self) -> HighmemEnv<'_> {
        HighmemEnv {
            layout: &self.layout,
            counters: &self.counters,
        }
    }

    /// The lock counters of `kmap_lock` and the zone locks (for "kmap_atomic takes no lock").
    pub fn highmem_lock_stats(&self) -> HighmemLockStats {
        HighmemLockStats {
            kmap_lock: self.highmem.kmap_lock_stats(),
            zones: ZoneType::ALL.map(|z| self.page_alloc.zone_lock_stats(z)),
        }
    }

    /// `kmap(page)`: map a page into the persistent window (its direct-map address for a low
    /// page). May sleep until an entry is free.
    pub fn kmap<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        pfn: Pfn,
        place: &'static str,
    ) -> VirtAddr {
        self.highmem.kmap(self.highmem_env(), cx, pfn, place)
    }

    /// One attempt at `kmap` that never sleeps: maps the page, or reports that every entry is
    /// in use. Used by the persistent pte strategy, which must drop the page-table lock
    /// before it may wait.
    pub(crate) fn kmap_try<P: Platform>(
        &self,
        cx: &Ctx<'_, P>,
        pfn: Pfn,
        place: &'static str,
    ) -> TryKmap {
        self.highmem.kmap_try(self.highmem_env(), cx, pfn, place)
    }

    /// `kunmap(page)`: drop one use of a persistent mapping, waking a waiter if the entry
    /// became reusable.
    pub fn kunmap<P: Platform>(&self, cx: &Ctx<'_, P>, pfn: Pfn, place: &'static str) {
        self.highmem.kunmap(self.highmem_env(), cx, pfn, place)
    }

    /// The use count of every pkmap entry (`pkmap_count`: 0 free, 1 unused but maybe cached
    /// in a TLB, n = n-1 users) and `last_pkmap_nr`, taken under `kmap_lock`.
    pub fn pkmap_counts<P: Platform>(&self, p: &P) -> (Vec<u32>, u32) {
        self.highmem.pkmap_counts(p)
    }

    /// Persistent kmaps currently held by each task (for deadlock and exit reports).
    pub fn pkmap_holders<P: Platform>(&self, p: &P) -> BTreeMap<TaskId, Vec<PkmapHolder>> {
        self.highmem.pkmap_holders(p)
    }

    /// Persistent kmaps held by each task, read after the simulation stopped (deadlock
    /// reports).
    ///
    /// # Safety
    /// The machine must be stopped: no simulated task may run while this reads.
    pub unsafe fn pkmap_holders_stopped(&self) -> BTreeMap<TaskId, Vec<PkmapHolder>> {
        // SAFETY: forwarded to the caller.
        unsafe { self.highmem.pkmap_holders_stopped() }
    }

    /// Check that `task` holds no persistent kmap (at exit).
    pub fn check_no_pkmaps<P: Platform>(&self, p: &P, task: TaskId) {
        self.highmem.check_no_pkmaps(p, task)
    }

    /// The slots held by `task` (for "scheduling with KM_TYPE held" and reports).
    pub fn atomic_slots_held_by(&self, task: TaskId) -> Vec<(u32, KmType, SlotUse)> {
        self.highmem.atomic_slots_held_by(task)
    }

    /// Describe a kernel address for an oops report: which kmap_atomic slot (or guard) it is
    /// and who mapped or last released it.
    ///
    /// Also explains an address past the end of the direct map (`high_memory`) below the
    /// vmalloc area: the would-be direct-map address of a high page, which has none, and an
    /// address in the persistent-kmap window. Reads no simulated memory and takes no lock (it
    /// runs inside the oops path).
    pub fn describe_kernel_address(&self, va: VirtAddr) -> Option<String> {
        self.highmem.describe_kernel_address(&self.layout, va)
    }

    /// Check that `task` holds no kmap_atomic slot (called when the scheduler switches it
    /// out: "scheduling with KM_TYPE held").
    pub fn check_no_atomic_slots<P: Platform>(&self, p: &P, task: TaskId, place: &'static str) {
        self.highmem.check_no_atomic_slots(p, task, place)
    }

    /// The first fixmap address (for `kmap_atomic_slot_of` lookups by callers).
    pub fn fixmap_top(&self) -> VirtAddr {
        fix_to_virt(0)
    }
}
