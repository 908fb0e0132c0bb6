//! The page-table cursor: the one way into a process's ptes.
//!
//! [`Kernel::lock_ptes`] takes the address space's page-table lock and returns a
//! [`PteCursor`] that owns the guard. Every pmd the cursor acts on is read *by the cursor,
//! under that lock*, so no caller can map a pte page through a pmd copy taken before the lock
//! (which another CPU may have cleared and freed meanwhile). The cursor hands out at most one
//! mapping at a time ([`PteCursor::map`], [`PteCursor::alloc_map`], [`PteCursor::map_phys`]),
//! each borrowing it mutably; a mapping offers a nested second one for copy and move
//! ([`PteMap::map_nested`], KM_PTE1). The range walkers (zap, change protection, the reclaim
//! scan, swapoff, the invariant checker) all go through [`PteCursor::walk`], written once.
//!
//! The cursor borrows the context it was made from mutably, and hands back only the atomic
//! part of it ([`Ctx`]): nothing that may sleep can run while the page-table lock is held.
//! A cursor made from a [`SleepCtx`] additionally offers [`PteCursor::alloc_map`], which may
//! drop the lock to allocate a pte page and re-reads the pmd when it retakes it.

use crate::ctx::{Ctx, SleepCtx};
use crate::kernel::Kernel;
use crate::mm::Mm;
use crate::pgtable::alloc::PtKind;
use crate::pgtable::pte::{map_page, map_phys, PteByPhys, PteMap};
use crate::pgtable::OutOfMemory;
use crate::platform::Platform;
use crate::sync::SpinGuard;
use core::marker::PhantomData;
use highpte_arch::{KmType, PagingMode, Pfn, VirtAddr};

mod sealed {
    pub trait Sealed {}
    impl<P: crate::platform::Platform> Sealed for crate::ctx::Ctx<'_, P> {}
    impl<P: crate::platform::Platform> Sealed for crate::ctx::SleepCtx<'_, P> {}
}

/// A context a cursor can be made from: [`Ctx`] (atomic) or [`SleepCtx`]. Sealed; the cursor
/// uses it only to reach the atomic part.
pub trait WalkCtx<'p, P: Platform>: sealed::Sealed {
    /// The atomic context.
    fn atomic(&mut self) -> &mut Ctx<'p, P>;
    /// The atomic context, shared.
    fn atomic_ref(&self) -> &Ctx<'p, P>;
}

impl<'p, P: Platform> WalkCtx<'p, P> for Ctx<'p, P> {
    #[inline(always)]
    fn atomic(&mut self) -> &mut Ctx<'p, P> {
        self
    }
    #[inline(always)]
    fn atomic_ref(&self) -> &Ctx<'p, P> {
        self
    }
}

impl<'p, P: Platform> WalkCtx<'p, P> for SleepCtx<'p, P> {
    #[inline(always)]
    fn atomic(&mut self) -> &mut Ctx<'p, P> {
        self
    }
    #[inline(always)]
    fn atomic_ref(&self) -> &Ctx<'p, P> {
        self
    }
}

/// An address space's page tables, locked (`spin_lock(&mm->page_table_lock)`). Unlocked when
/// dropped or by [`PteCursor::unlock`].
pub struct PteCursor<'a, 'p, P: Platform, M: PagingMode, C: WalkCtx<'p, P>> {
    k: &'a Kernel<M>,
    mm: &'a Mm,
    cx: &'a mut C,
    guard: SpinGuard<'a, (), P>,
    _p: PhantomData<&'p P>,
}

impl<M: PagingMode> Kernel<M> {
    /// Take `mm`'s page-table lock and return the cursor that reaches its ptes.
    pub fn lock_ptes<'a, 'p: 'a, P: Platform, C: WalkCtx<'p, P>>(
        &'a self,
        cx: &'a mut C,
        mm: &'a Mm,
    ) -> PteCursor<'a, 'p, P, M, C> {
        let guard = mm.page_table_lock.lock(cx.atomic_ref().p());
        PteCursor {
            k: self,
            mm,
            cx,
            guard,
            _p: PhantomData,
        }
    }

    /// [`Kernel::lock_ptes`] if the lock is free now (`spin_trylock`), else `None`: reclaim
    /// must not spin on a lock whose holder may be waiting for memory.
    pub fn try_lock_ptes<'a, 'p: 'a, P: Platform, C: WalkCtx<'p, P>>(
        &'a self,
        cx: &'a mut C,
        mm: &'a Mm,
    ) -> Option<PteCursor<'a, 'p, P, M, C>> {
        let guard = mm.page_table_lock.try_lock(cx.atomic_ref().p())?;
        Some(PteCursor {
            k: self,
            mm,
            cx,
            guard,
            _p: PhantomData,
        })
    }
}

impl<'a, 'p: 'a, P: Platform, M: PagingMode, C: WalkCtx<'p, P>> PteCursor<'a, 'p, P, M, C> {
    /// The atomic context: what may run while the page-table lock is held.
    #[inline(always)]
    pub fn cx(&self) -> &Ctx<'p, P> {
        self.cx.atomic_ref()
    }

    /// The atomic context, mutably (for a raw `kmap_atomic` while the lock is held).
    #[inline(always)]
    pub fn cx_mut(&mut self) -> &mut Ctx<'p, P> {
        self.cx.atomic()
    }

    /// The address space whose lock this is.
    pub fn mm(&self) -> &'a Mm {
        self.mm
    }

    /// The frame of the pte page that maps `addr`, if its pmd is present (read now, under the
    /// lock). A frame number, not an address: reaching the page still needs [`Self::map`].
    pub fn pte_page(&self, addr: VirtAddr) -> Option<Pfn> {
        let pmd = self.k.pmd_offset(self.cx().p(), &self.mm.pgd, addr);
        pmd.is_present().then_some(pmd.val.pfn())
    }

    /// `pte_offset_map`: map the pte page covering `addr` (KM_PTE0 under the atomic
    /// strategy), its pmd read now under the lock; `None` if the pmd maps no pte page.
    #[inline]
    pub fn map(&mut self, addr: VirtAddr) -> Option<PteMap<'_, 'p, P, M>> {
        let pmd = self.k.pmd_offset(self.cx().p(), &self.mm.pgd, addr);
        if !pmd.is_present() {
            return None;
        }
        let ptl = self.guard.lock_ref();
        let cx = self.cx.atomic();
        let page = map_page(self.k, cx, ptl, &pmd, addr, KmType::Pte0, "pte_offset_map");
        Some(PteMap::new(page, cx, ptl, self.mm))
    }

    /// Visit every pte page of `[start, end)` that exists, in address order, each mapped once:
    /// `f(map, from, to)` with `[from, to)` the part of the range inside that page.
    #[inline]
    pub fn walk(
        &mut self,
        start: u32,
        end: u64,
        mut f: impl FnMut(&mut PteMap<'_, 'p, P, M>, VirtAddr, u64),
    ) {
        let mut addr = u64::from(start);
        while addr < end {
            let a = VirtAddr::new(addr as u32);
            let next = M::pmd_end(a).min(end);
            if let Some(mut map) = self.map(a) {
                f(&mut map, a, next);
            }
            addr = next;
        }
    }

    /// `pmd_clear`: detach the pte page that maps `addr` from the tables, returning it (to be
    /// freed once the lock is dropped and no CPU can walk to it), or `None` if there is none.
    pub fn clear_pmd(&mut self, addr: VirtAddr) -> Option<Pfn> {
        let p = self.cx().p();
        let pmd = self.k.pmd_offset(p, &self.mm.pgd, addr);
        pmd.is_present().then(|| self.k.pmd_clear(p, &pmd))
    }

    /// Map the pte at physical address `pte_pa` (a reverse-map entry of this address space),
    /// with KM_PTE2 for a high pte page.
    pub fn map_phys(&mut self, pte_pa: u64) -> PteByPhys<'_, 'p, P, M> {
        map_phys(self.k, self.cx.atomic(), pte_pa)
    }

    /// `spin_unlock(&mm->page_table_lock)` (dropping the cursor does the same).
    pub fn unlock(self) {}
}

impl<'a, 'p: 'a, P: Platform, M: PagingMode> PteCursor<'a, 'p, P, M, SleepCtx<'p, P>> {
    /// `pte_alloc_map`: if the pmd of `addr` is empty, drop the lock, allocate a pte page (may
    /// sleep), retake the lock and re-read the pmd (if another thread of the mm populated it
    /// meanwhile, the new page goes back); then map the pte page as [`Self::map`] does.
    pub fn alloc_map(&mut self, addr: VirtAddr) -> Result<PteMap<'_, 'p, P, M>, OutOfMemory> {
        let (k, mm) = (self.k, self.mm);
        let mut pmd = k.pmd_offset(self.cx().p(), &mm.pgd, addr);
        if pmd.is_none() {
            let cx = &mut *self.cx;
            let new = self.guard.unlocked(|| {
                cx.p().might_sleep("pte_alloc_map");
                k.pt_alloc_page(cx, PtKind::Pte)
            });
            let new = new.ok_or(OutOfMemory)?;
            let p = self.cx().p();
            pmd = k.pmd_reread(p, &pmd);
            if pmd.is_none() {
                k.pmd_populate(p, &pmd, new);
                mm.nr_ptes.set(mm.nr_ptes.get() + 1);
                pmd = k.pmd_reread(p, &pmd);
            } else {
                // raced with another thread of the mm: use its page, give ours back
                k.pt_free_page(self.cx(), new, PtKind::Pte);
            }
        }
        let ptl = self.guard.lock_ref();
        let cx = self.cx.atomic();
        let page = map_page(k, cx, ptl, &pmd, addr, KmType::Pte0, "pte_offset_map");
        Ok(PteMap::new(page, cx, ptl, mm))
    }
}
