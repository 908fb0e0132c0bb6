//! The page-table walkers, each through the pte API and each mapping a pte page once per
//! range: `zap_page_range` and `free_pgtables` (munmap, exit), `copy_page_range` (fork, with
//! the nested mapping), `change_protection` (mprotect), `move_page_tables` (mremap, nested),
//! `follow_page`, and `exit_mmap`.

use crate::ctx::{Ctx, SleepCtx};
use crate::kernel::Kernel;
use crate::mm::vma::Vma;
use crate::mm::{pte_maps_page, Mm, PROT_WRITE, PTE_PROTNONE, TASK_SIZE};
use crate::page_alloc::PageOwner;
use crate::pgtable::alloc::PtKind;
use crate::pgtable::{pte_alloc_map, pte_offset_map, OutOfMemory};
use crate::platform::Platform;
use alloc::vec::Vec;
use highpte_arch::{Entry, EntryFlags, PagingMode, Pfn, SwapEntry, VirtAddr};

/// Pages unmapped whose last reference must be dropped after the TLB flush (`mmu_gather`):
/// freeing a frame before every CPU forgot it would let a stale translation reach it.
#[derive(Default)]
pub struct Gather {
    pages: Vec<Pfn>,
    /// Swap entries cleared from ptes (their slots are released with the pages).
    swap: Vec<SwapEntry>,
}

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

    /// `zap_page_range`: clear every pte of `[start, end)`, dropping the pages' map counts
    /// and collecting them for release after the TLB flush.
    pub(crate) fn zap_page_range<P: Platform>(
        &self,
        cx: &mut Ctx<'_, P>,
        mm: &Mm,
        start: u32,
        end: u64,
        gather: &mut Gather,
    ) {
        let p = cx.p();
        let mut g = mm.page_table_lock.lock(p);
        let mut addr = start as u64;
        while addr < end {
            let a = VirtAddr::new(addr as u32);
            let next = M::pmd_end(a).min(end);
            let pmd = self.pmd_offset(p, &mm.pgd, a);
            if pmd.is_present() {
                let mut map = pte_offset_map(self, cx, &mut g, &pmd, a);
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
                drop(map);
                mm.rss.set(mm.rss.get() - freed_rss);
            }
            addr = next;
        }
    }

    /// Drop the references collected by a gather (after the TLB flush).
    pub(crate) fn gather_finish<P: Platform>(&self, cx: &Ctx<'_, P>, gather: Gather) {
        for pfn in gather.pages {
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
        cx: &Ctx<'_, P>,
        mm: &Mm,
        vmas: &crate::mm::VmaSet,
        start: u32,
        end: u64,
    ) -> u64 {
        let p = cx.p();
        let span = M::PTE_PAGE_SPAN as u64;
        let mut base = M::pmd_base(VirtAddr::new(start)).as_u64();
        let mut freed = 0;
        while base < end {
            let top = (base + span).min(TASK_SIZE as u64);
            if !vmas.any_overlap(base as u32, top) {
                let pmd = self.pmd_offset(p, &mm.pgd, VirtAddr::new(base as u32));
                if pmd.is_present() {
                    let g = mm.page_table_lock.lock(p);
                    let page = self.pmd_clear(p, &pmd);
                    drop(g);
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
        let mut gather = Gather::default();
        self.zap_page_range(cx, mm, start, end, &mut gather);
        self.flush_tlb_range(cx, mm, start, end);
        self.gather_finish(cx, gather);
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
            let src_pmd = self.pmd_offset(p, &src.pgd, a);
            if !src_pmd.is_present() {
                addr = next;
                continue;
            }
            let dst_pmd = self.pmd_offset(p, &dst.pgd, a);
            // room for the child's reverse-map entries (rmap reclaim only)
            self.rmap_reserve(cx, (next - addr) >> 12)?;
            let mut dg = dst.page_table_lock.lock(p);
            let mut dmap = pte_alloc_map(self, cx, &mut dg, &dst_pmd, a, &dst.nr_ptes)?;
            // Map the source pte page first, then take the source's lock: a persistent kmap
            // may sleep, and may drop only the lock the mapping was made under (the
            // destination's). The source pte page cannot go away meanwhile: mmap_sem is held.
            let mut nested = dmap.map_nested(&src_pmd, a);
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
                x += 4096;
            }
            drop(nested);
            drop(sg);
            drop(dmap);
            drop(dg);
            dst.rss.set(dst.rss.get() + copied);
            addr = next;
        }
        Ok(())
    }

    /// `change_protection`: apply `vma`'s new protection to the ptes of `[start, end)`.
    pub(crate) fn change_protection<P: Platform>(
        &self,
        cx: &mut Ctx<'_, P>,
        mm: &Mm,
        start: u32,
        end: u32,
        vma: &Vma,
    ) {
        let p = cx.p();
        let flags = Self::vma_pte_flags(vma);
        let none = vma.prot == crate::mm::PROT_NONE;
        let mut g = mm.page_table_lock.lock(p);
        let mut addr = start as u64;
        while addr < end as u64 {
            let a = VirtAddr::new(addr as u32);
            let next = M::pmd_end(a).min(end as u64);
            let pmd = self.pmd_offset(p, &mm.pgd, a);
            if pmd.is_present() {
                let mut map = pte_offset_map(self, cx, &mut g, &pmd, a);
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
            }
            addr = next;
        }
        drop(g);
        self.flush_tlb_range(cx, mm, start, end as u64);
    }

    /// `move_page_tables`: move the ptes of `[old, old+len)` to `[new, new+len)`. The new
    /// location's pte page is mapped with KM_PTE0 (allocated first if needed), the old one
    /// with KM_PTE1 nested inside it, once per piece that lies in a single pte page at both
    /// ends.
    pub(crate) fn move_page_tables<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        mm: &Mm,
        old: u32,
        new: u32,
        len: u32,
    ) -> Result<(), OutOfMemory> {
        let p = cx.p();
        let mut done: u64 = 0;
        while done < len as u64 {
            let o = VirtAddr::new((old as u64 + done) as u32);
            let n = VirtAddr::new((new as u64 + done) as u32);
            let step = (M::pmd_end(o) - o.as_u64())
                .min(M::pmd_end(n) - n.as_u64())
                .min(len as u64 - done);
            let src_pmd = self.pmd_offset(p, &mm.pgd, o);
            if src_pmd.is_present() {
                let dst_pmd = self.pmd_offset(p, &mm.pgd, n);
                let mut g = mm.page_table_lock.lock(p);
                let mut dmap = pte_alloc_map(self, cx, &mut g, &dst_pmd, n, &mm.nr_ptes)?;
                // the source pmd may have been re-read after the lock was dropped
                let src_pmd = self.pmd_reread(p, &src_pmd);
                let mut nested = dmap.map_nested(&src_pmd, o);
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
                    off += 4096;
                }
            }
            done += step;
        }
        self.flush_tlb_range(cx, mm, old, old as u64 + len as u64);
        Ok(())
    }

    /// `follow_page`: the pte that maps `addr` in `mm`, if any.
    pub fn follow_page<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        mm: &Mm,
        addr: u32,
    ) -> Option<Entry> {
        let p = cx.p();
        let a = VirtAddr::new(addr);
        let pmd = self.pmd_offset(p, &mm.pgd, a);
        if !pmd.is_present() {
            return None;
        }
        let mut g = mm.page_table_lock.lock(p);
        let map = pte_offset_map(self, cx, &mut g, &pmd, a);
        let pte = map.get(a);
        drop(map);
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
            p.load_cr3(self.swapper_pgd.addr());
            mask.remove(cpu);
            mm.cpu_vm_mask.set(mask);
        }
        p.preempt_enable();
        self.pgd_free(cx, &mm.pgd);
        let _ = PageOwner::PageTable;
    }
}

/// Physical address of the pte for `va` in pte page `ptp`.
#[inline(always)]
pub(crate) fn pte_phys<M: PagingMode>(ptp: Pfn, va: VirtAddr) -> u64 {
    ptp.addr().as_u64() + (M::pte_index(va) * M::ENTRY_BYTES) as u64
}
