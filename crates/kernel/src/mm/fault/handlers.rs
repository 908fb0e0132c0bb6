//! What `handle_mm_fault` does with the pte mapped and the page-table lock held, by the kind
//! of fault: `do_anonymous_page`, the shared-page fault, `do_wp_page` (reuse or copy) and
//! `do_swap_page`. Each returns the `Step` the attempt takes next.

use super::{FaultHeld, Step};
use crate::counters::Counter;
use crate::ctx::SleepCtx;
use crate::kernel::Kernel;
use crate::mm::shm::ObjSlot;
use crate::mm::user_pte;
use crate::mm::vma::{Backing, Vma};
use crate::mm::{Mm, PROT_WRITE};
use crate::page_alloc::PageFlags;
use crate::pgtable::{PteCursor, PteMap};
use crate::platform::Platform;
use highpte_arch::{Entry, EntryFlags, PagingMode, Pfn, SwapEntry, VirtAddr, PAGE_SHIFT};

impl<M: PagingMode> Kernel<M> {
    /// `do_anonymous_page`: an empty pte of a private anonymous VMA. A read maps the zero page
    /// read-only; a write installs `held.new_page` (or asks for one).
    pub(super) fn do_anonymous_page<P: Platform>(
        &self,
        map: &mut PteMap<'_, '_, P, M>,
        mm: &Mm,
        addr: VirtAddr,
        write: bool,
        held: &mut FaultHeld,
    ) -> Step {
        if !write {
            // read of a never-written private page: map the zero page read-only
            map.set(addr, user_pte(self.zero_page, false, false));
            mm.rss.set(mm.rss.get() + 1);
            self.counters.inc(Counter::FaultsAnon);
            return Step::Done;
        }
        let Some(new) = held.new_page.take() else {
            return Step::NeedPage("do_anonymous_page");
        };
        self.mem_map.desc(new).set_flag(PageFlags::ANON);
        self.mem_map.desc(new).inc_mapcount();
        self.page_add_rmap(new, map.pte_phys(addr), mm, addr.as_u32());
        map.set(addr, user_pte(new, true, true));
        mm.rss.set(mm.rss.get() + 1);
        self.counters.inc(Counter::FaultsAnon);
        Step::Done
    }

    /// The shared-page fault (`shmem_nopage`): an empty pte of a shared-object VMA maps the
    /// object's page at its index, taking `held.new_page` for a page the object never had;
    /// a page on swap is read in first (`Step::ShmSwapIn`).
    pub(super) fn do_shared_page<P: Platform>(
        &self,
        map: &mut PteMap<'_, '_, P, M>,
        mm: &Mm,
        vma: &Vma,
        addr: VirtAddr,
        write: bool,
        held: &mut FaultHeld,
    ) -> Step {
        let Backing::Shared { obj, pgoff, .. } = &vma.backing else {
            unreachable!("a shared-object fault outside a shared VMA");
        };
        let idx = pgoff + ((addr.as_u32() - vma.start) >> PAGE_SHIFT);
        if idx >= obj.nr_pages() {
            return Step::Sigbus;
        }
        let page = match obj.slot(idx) {
            ObjSlot::Page(pg) => pg,
            ObjSlot::Swapped(e) => return Step::ShmSwapIn(idx, e),
            ObjSlot::Empty => {
                let Some(new) = held.new_page.take() else {
                    return Step::NeedPage("shmem_getpage");
                };
                self.mem_map.desc(new).set_flag(PageFlags::SHARED);
                obj.set_page(idx, new);
                new
            }
        };
        let desc = self.mem_map.desc(page);
        desc.get_page();
        desc.inc_mapcount();
        self.page_add_rmap(page, map.pte_phys(addr), mm, addr.as_u32());
        map.set(addr, user_pte(page, vma.prot & PROT_WRITE != 0, write));
        mm.rss.set(mm.rss.get() + 1);
        self.counters.inc(Counter::FaultsShared);
        Step::Done
    }

    /// `do_wp_page`'s first half: a write to a present read-only pte whose page may be made
    /// writable in place (a private page only this pte maps, or a shared writable mapping).
    /// Returns false if the page must be copied.
    pub(super) fn wp_reuse<P: Platform>(
        &self,
        map: &mut PteMap<'_, '_, P, M>,
        vma: &Vma,
        addr: VirtAddr,
        pte: Entry,
    ) -> bool {
        let p = map.cx().p();
        let old = pte.pfn();
        let desc = self.mem_map.desc(old);
        let shared_vma = vma.backing.is_shared();
        // a shared writable vma always maps writable; a read-only shm attach cannot get here
        // (the vma check refused the write)
        let reuse = shared_vma
            || (old != self.zero_page
                && desc.mapcount() == 1
                && (desc.count() == 1 || self.reuse_swap_page(p, old)));
        if reuse {
            map.set(
                addr,
                pte.with(EntryFlags::RW | EntryFlags::DIRTY | EntryFlags::ACCESSED),
            );
            if !shared_vma {
                self.counters.inc(Counter::FaultsCow);
            }
        }
        reuse
    }

    /// `do_wp_page`'s second half: copy the page into `new` and point the pte at the copy,
    /// unless the pte changed while it was unmapped (then `new` goes back to `new_page` and
    /// this returns `None`). Returns the old page, to be released after the TLB flush.
    pub(super) fn wp_copy<'a, 'p: 'a, P: Platform>(
        &self,
        mut cur: PteCursor<'a, 'p, P, M, SleepCtx<'p, P>>,
        addr: VirtAddr,
        pte: Entry,
        new: Pfn,
        new_page: &mut Option<Pfn>,
    ) -> Option<Pfn> {
        let p = cur.cx().p();
        let mm = cur.mm();
        let old = pte.pfn();
        // copy while the old page cannot go away: we hold the ptl and its pte
        self.copy_highpage(cur.cx_mut(), new, old);
        let Some(mut map) = cur.map(addr).filter(|m| m.get(addr) == pte) else {
            *new_page = Some(new);
            return None;
        };
        self.mem_map.desc(new).set_flag(PageFlags::ANON);
        self.mem_map.desc(new).inc_mapcount();
        let pa = map.pte_phys(addr);
        map.set(
            addr,
            Entry::new(
                new,
                EntryFlags::PRESENT
                    | EntryFlags::USER
                    | EntryFlags::RW
                    | EntryFlags::ACCESSED
                    | EntryFlags::DIRTY,
            ),
        );
        drop(map);
        self.page_remove_rmap(p, old, pa);
        self.page_add_rmap(new, pa, mm, addr.as_u32());
        Some(old)
    }

    /// `do_swap_page` with the pte mapped and the page-table lock held (through `map`): map
    /// the page read in for `e`, if it is at hand and the pte still holds `e`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn do_swap_page<P: Platform>(
        &self,
        p: &P,
        mm: &Mm,
        vma: &Vma,
        addr: VirtAddr,
        write: bool,
        e: SwapEntry,
        mut map: crate::pgtable::PteMap<'_, '_, P, M>,
        swapped: &mut Option<(SwapEntry, Pfn)>,
    ) -> Step {
        let pfn = match *swapped {
            Some((se, pfn)) if se == e => pfn,
            _ => return Step::SwapIn(e),
        };
        if self.page_swap_entry(pfn) != Some(e) {
            // the page left the swap cache while we slept (swapoff, or the slot was freed
            // and reused): the caller drops it and looks again
            return Step::SwapIn(e);
        }
        *swapped = None;
        let d = self.mem_map.desc(pfn);
        // the pte's slot reference goes; our page reference becomes the pte's
        self.swap_free(p, e);
        d.inc_mapcount();
        // exclusive (only this pte and the cache use it): take it out of the cache
        // Keep a clean copy in the cache on a read (freeing it later costs no write) unless
        // swap is more than half full (`vm_swap_full`).
        let (total, used, _) = self.swap_usage(p);
        let writable =
            (write || used * 2 > total) && self.reuse_swap_page(p, pfn) && vma.writable();
        self.page_add_rmap(pfn, map.pte_phys(addr), mm, addr.as_u32());
        map.set(addr, user_pte(pfn, writable, write));
        drop(map);
        mm.rss.set(mm.rss.get() + 1);
        self.counters.inc(Counter::FaultsSwapCache);
        Step::Done
    }
}
