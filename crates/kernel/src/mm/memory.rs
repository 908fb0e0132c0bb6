//! The page-table walkers, each through the pte API and each mapping a pte page once per
//! range: `zap_page_range` and `free_pgtables` (munmap, exit), `copy_page_range` (fork, with
//! the nested mapping), `change_protection` (mprotect), `move_page_tables` (mremap, nested),
//! `follow_page`, and `exit_mmap`.

use crate::ctx::{Ctx, SleepCtx};
use crate::kernel::Kernel;
use crate::mm::tlb::{FlushedGather, Gather, PendingFlush};
use crate::mm::vma::Vma;
use crate::mm::{pte_maps_page, Mm, PROT_WRITE, PTE_PROTNONE, TASK_SIZE};
use crate::page_alloc::PageOwner;
use crate::pgtable::alloc::PtKind;
use crate::pgtable::pte::pte_phys;
use crate::pgtable::OutOfMemory;
use crate::platform::Platform;
use highpte_arch::{
    Entry, EntryFlags, PagingMode, Pfn, SwapEntry, VirtAddr, PAGE_SHIFT, PAGE_SIZE,
};

impl<M: PagingMode> Kernel<M> {
    /// The pte flags for a user page of a VMA: present, user, accessed; writable only for a
    /// shared writable mapping (private ones get write access at fault time, copy-on-write).
    pub(crate) fn vma_pte_flags(vma: &Vma) -> EntryFlags {
        let mut f = EntryFlags::PRESENT | EntryFlags::USER | EntryFlags::ACCESSED;
        if vma.backing.is_shared() && vma.prot & PROT_WRITE != 0 {
            f |= EntryFlags::RW;
        }
        f
    }

    /// True if `pfn` is the shared zero page (never freed, never counted).
    #[inline(always)]
    pub fn is_zero_page(&self, pfn: Pfn) -> bool {
        pfn == self.zero_page
    }

    /// `zap_page_range`: clear every pte of `[start, end)`, dropping the pages' map counts.
    /// The pages come back in a [`Gather`], to be released after the TLB flush.
    pub fn zap_page_range<'m, P: Platform>(
        &self,
        cx: &mut Ctx<'_, P>,
        mm: &'m Mm,
        start: u32,
        end: u64,
    ) -> Gather<'m> {
        let p = cx.p();
        let mut gather = Gather::new(mm, start, end);
        let mut cur = self.lock_ptes(cx, mm);
        cur.walk(start, end, |map, a, next| {
            let ptp = map.page();
            let mut freed_rss = 0;
            map.for_each(a, next, |va, pte| {
                if pte.is_none() {
                    return None;
                }
                if pte_maps_page(pte) {
                    let pfn = pte.pfn();
                    if pfn != self.zero_page {
                        self.page_remove_rmap(p, pfn, pte_phys::<M>(ptp, va));
                        if pte.has(EntryFlags::DIRTY) {
                            // a written file page must reach the disk
                            self.set_page_dirty(pfn);
                        }
                        self.mem_map.desc(pfn).dec_mapcount();
                        gather.pages.push(pfn);
                    }
                    freed_rss += 1;
                } else if let Some(e) = SwapEntry::from_pte(pte, M::PAE) {
                    gather.swap.push(e);
                }
                Some(Entry::NONE)
            });
            mm.rss.set(mm.rss.get() - freed_rss);
        });
        gather
    }

    /// Drop the references collected by a gather, once its TLB flush is done.
    pub fn gather_finish<P: Platform>(&self, cx: &Ctx<'_, P>, gather: FlushedGather) {
        for pfn in gather.pages.iter() {
            self.put_user_page(cx, pfn);
        }
        for e in gather.swap {
            self.free_swap_and_cache(cx, e);
        }
        self.rmap_trim(cx);
    }

    /// `free_pgtables`: free the pte pages of every pmd range that `[start, end)` touches and
    /// that no VMA covers any more. Returns the number of pte pages freed.
    pub(crate) fn free_pgtables<P: Platform>(
        &self,
        cx: &mut Ctx<'_, P>,
        mm: &Mm,
        vmas: &crate::mm::VmaSet,
        start: u32,
        end: u64,
    ) -> u64 {
        let span = M::PTE_PAGE_SPAN as u64;
        let mut base = M::pmd_base(VirtAddr::new(start)).as_u64();
        let mut freed = 0;
        while base < end {
            let top = (base + span).min(TASK_SIZE as u64);
            let a = VirtAddr::new(base as u32);
            // an unlocked look first (most of an exiting address space has no pte pages);
            // the cursor reads the pmd again under the lock before clearing it
            if !vmas.any_overlap(base as u32, top) && self.user_pte_page(cx.p(), mm, a).is_some() {
                let mut cur = self.lock_ptes(cx, mm);
                let page = cur.clear_pmd(a);
                cur.unlock();
                if let Some(page) = page {
                    self.pt_free_page(cx, page, PtKind::Pte);
                    mm.nr_ptes.set(mm.nr_ptes.get() - 1);
                    freed += 1;
                }
            }
            base += span;
        }
        freed
    }

    /// Unmap `[start, end)` of an mm whose VMAs were already removed: zap, flush, release,
    /// free empty page tables (`unmap_region`).
    pub(crate) fn unmap_region<P: Platform>(
        &self,
        cx: &mut Ctx<'_, P>,
        mm: &Mm,
        vmas: &crate::mm::VmaSet,
        start: u32,
        end: u64,
    ) {
        let gather = self.zap_page_range(cx, mm, start, end);
        let done = gather.flush(self, cx);
        self.gather_finish(cx, done);
        self.free_pgtables(cx, mm, vmas, start, end);
    }

    /// `copy_page_range`: copy `vma`'s page tables from `src` to `dst` for fork. The
    /// destination pte page is mapped with KM_PTE0 (through `pte_alloc_map`), the source with
    /// KM_PTE1 nested inside it; each pair is mapped once for its whole range. Private
    /// writable pages become read-only in both (copy-on-write).
    pub(crate) fn copy_page_range<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        dst: &Mm,
        src: &Mm,
        vma: &Vma,
    ) -> Result<(), OutOfMemory> {
        let p = cx.p();
        let cow = !vma.backing.is_shared();
        let mut addr = vma.start as u64;
        let end = vma.end as u64;
        while addr < end {
            let a = VirtAddr::new(addr as u32);
            let next = M::pmd_end(a).min(end);
            // the source's pmds cannot change: its mmap_sem is held for writing
            if self.user_pte_page(p, src, a).is_none() {
                addr = next;
                continue;
            }
            // room for the child's reverse-map entries (rmap reclaim only)
            self.rmap_reserve(cx, (next - addr) >> PAGE_SHIFT)?;
            let mut cur = self.lock_ptes(cx, dst);
            let mut dmap = cur.alloc_map(a)?;
            // Map the source pte page first, then take the source's lock: a persistent kmap
            // may sleep, and may drop only the lock the mapping was made under (the
            // destination's). The source pte page cannot go away meanwhile: mmap_sem is held.
            let Some(mut nested) = dmap.map_nested_from(src, a) else {
                addr = next;
                continue;
            };
            let sg = src.page_table_lock.lock(p);
            let (mut d, mut s) = nested.both();
            let mut copied = 0;
            let mut x = addr;
            while x < next {
                let va = VirtAddr::new(x as u32);
                let mut pte = s.get(va);
                if !pte.is_none() {
                    if pte_maps_page(pte) {
                        let pfn = pte.pfn();
                        if pfn != self.zero_page {
                            let desc = self.mem_map.desc(pfn);
                            desc.get_page();
                            desc.inc_mapcount();
                            self.page_add_rmap(pfn, d.pte_phys(va), dst, va.as_u32());
                        }
                        if cow && pte.has(EntryFlags::RW) {
                            pte = pte.without(EntryFlags::RW);
                            s.set(va, pte);
                        }
                        copied += 1;
                        d.set(va, pte.without(EntryFlags::ACCESSED));
                    } else if let Some(e) = SwapEntry::from_pte(pte, M::PAE) {
                        // the child shares the slot (`swap_duplicate`)
                        self.swap_duplicate(p, e);
                        d.set(va, pte);
                    } else {
                        d.set(va, pte);
                    }
                }
                x += PAGE_SIZE;
            }
            drop(nested);
            drop(sg);
            drop(dmap);
            cur.unlock();
            dst.rss.set(dst.rss.get() + copied);
            addr = next;
        }
        Ok(())
    }

    /// `change_protection`: apply `vma`'s new protection to the ptes of `[start, end)`.
    /// Returns the TLB flush owed for the range.
    pub(crate) fn change_protection<'m, P: Platform>(
        &self,
        cx: &mut Ctx<'_, P>,
        mm: &'m Mm,
        start: u32,
        end: u32,
        vma: &Vma,
    ) -> PendingFlush<'m> {
        let flags = Self::vma_pte_flags(vma);
        let none = vma.prot == crate::mm::PROT_NONE;
        let mut cur = self.lock_ptes(cx, mm);
        cur.walk(start, u64::from(end), |map, a, next| {
            map.for_each(a, next, |_, pte| {
                if !pte_maps_page(pte) {
                    return None;
                }
                let keep = pte.flags() & (EntryFlags::ACCESSED | EntryFlags::DIRTY);
                // private pages keep write access only if they had it (exclusively owned)
                let rw = if flags.contains(EntryFlags::RW)
                    || (vma.prot & PROT_WRITE != 0 && pte.has(EntryFlags::RW))
                {
                    EntryFlags::RW
                } else {
                    EntryFlags::empty()
                };
                let new = if none {
                    Entry::new(pte.pfn(), PTE_PROTNONE | EntryFlags::USER | keep)
                } else {
                    Entry::new(pte.pfn(), flags | rw | keep)
                };
                Some(new)
            });
        });
        cur.unlock();
        PendingFlush::range(mm, start, u64::from(end))
    }

    /// `move_page_tables`: move the ptes of `[old, old+len)` to `[new, new+len)`. The new
    /// location's pte page is mapped with KM_PTE0 (allocated first if needed), the old one
    /// with KM_PTE1 nested inside it, once per piece that lies in a single pte page at both
    /// ends.
    pub(crate) fn move_page_tables<'m, P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        mm: &'m Mm,
        old: u32,
        new: u32,
        len: u32,
    ) -> Result<PendingFlush<'m>, OutOfMemory> {
        let mut done: u64 = 0;
        while done < len as u64 {
            let o = VirtAddr::new((old as u64 + done) as u32);
            let n = VirtAddr::new((new as u64 + done) as u32);
            let step = (M::pmd_end(o) - o.as_u64())
                .min(M::pmd_end(n) - n.as_u64())
                .min(len as u64 - done);
            // an unlocked look first: mmap_sem (held for writing) keeps the pmds in place
            if self.user_pte_page(cx.p(), mm, o).is_some() {
                let mut cur = self.lock_ptes(cx, mm);
                let mut dmap = cur.alloc_map(n)?;
                // the source pmd is read now, under the lock alloc_map may have dropped
                let Some(mut nested) = dmap.map_nested(o) else {
                    done += step;
                    continue;
                };
                let (mut d, mut s) = nested.both();
                let mut off = 0u64;
                while off < step {
                    let so = VirtAddr::new((o.as_u64() + off) as u32);
                    let pte = s.clear(so);
                    if !pte.is_none() {
                        let dn = VirtAddr::new((n.as_u64() + off) as u32);
                        if pte_maps_page(pte) {
                            self.page_move_rmap(
                                pte.pfn(),
                                s.pte_phys(so),
                                d.pte_phys(dn),
                                dn.as_u32(),
                            );
                        }
                        d.set(dn, pte);
                    }
                    off += PAGE_SIZE;
                }
            }
            done += step;
        }
        Ok(PendingFlush::range(
            mm,
            old,
            u64::from(old) + u64::from(len),
        ))
    }

    /// `follow_page`: the pte that maps `addr` in `mm`, if any.
    pub fn follow_page<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        mm: &Mm,
        addr: u32,
    ) -> Option<Entry> {
        let a = VirtAddr::new(addr);
        // an unlocked look first, as the walk down to the pmd is in Linux
        self.user_pte_page(cx.p(), mm, a)?;
        let mut cur = self.lock_ptes(cx, mm);
        let pte = cur.map(a)?.get(a);
        (!pte.is_none()).then_some(pte)
    }

    /// `exit_mmap`: unmap every VMA, free all page tables and the root.
    pub(crate) fn exit_mmap<P: Platform>(&self, cx: &mut SleepCtx<'_, P>, mm: &Mm) {
        let p = cx.p();
        let removed = {
            let mut vmas = mm.mmap_sem.write(cx, "exit_mmap");
            let removed = vmas.remove_range(0, TASK_SIZE);
            let empty = vmas.clone();
            drop(vmas);
            self.unmap_region(cx, mm, &empty, 0, TASK_SIZE as u64);
            removed
        };
        self.release_vmas(cx, removed);
        let n = mm.charged_vmas.get();
        for _ in 0..n {
            self.kobj_uncharge(cx, crate::kobj::KObj::Vma, 0);
        }
        mm.charged_vmas.set(0);
        mm.dead.set(true);
        // no CPU may keep using the page tables we free: switch away where it is loaded
        self.flush_tlb_mm(cx, mm);
        // the exiting task still runs on these tables: move this CPU to swapper_pg_dir
        // before the root is freed (it may be handed out again at once)
        p.preempt_disable();
        let cpu = p.cpu();
        let mut mask = mm.cpu_vm_mask.get();
        if mask.contains(cpu) {
            // SAFETY: swapper_pg_dir lives as long as the kernel.
            unsafe { p.load_cr3(self.init_mm.pgd().addr()) };
            mask.remove(cpu);
            mm.cpu_vm_mask.set(mask);
        }
        p.preempt_enable();
        self.pgd_free(cx, &mm.pgd);
        let _ = PageOwner::PageTable;
    }
}
