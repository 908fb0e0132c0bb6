//! The scan design of reclaim (2.4 and 2.5 before rmap, `swap_out`): walk the page tables of
//! every process in turn, pte page by pte page, ageing referenced pages and unmapping the
//! others (an anonymous page to a swap slot and the swap cache, a shared page's pte just
//! cleared). `mm::reclaim` describes both designs and runs them.

use super::{bump, ZoneMask};
use crate::counters::Counter;
use crate::ctx::SleepCtx;
use crate::kernel::Kernel;
use crate::mm::tlb::Gather;
use crate::mm::Mm;
use crate::page_alloc::{PageFlags, PageOwner};
use crate::platform::{Platform, TaskId};
use alloc::rc::Rc;
use alloc::vec::Vec;
use highpte_arch::{Entry, EntryFlags, PagingMode, VirtAddr};

impl<M: PagingMode> Kernel<M> {
    /// `swap_out`: visit processes round robin and unmap up to `want` pages of `zones` from
    /// their page tables. Returns the pages unmapped.
    ///
    /// Without swap room (and no page in the swap cache) an anonymous page cannot be
    /// unmapped (2.5's `add_to_swap` fails), nor can a shared-memory page be swapped once
    /// unmapped: the scan then walks only the file mappings, whose pages the page cache can
    /// drop once unmapped, and skips every other VMA without looking at its page tables.
    pub(super) fn swap_out<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        zones: ZoneMask,
        want: u64,
    ) -> u64 {
        // distinct mms, starting at the cursor
        let order: Vec<(TaskId, Rc<Mm>)> = {
            let mut v: Vec<(TaskId, Rc<Mm>)> = Vec::new();
            self.tasks
                .for_each_from(TaskId(self.reclaim.next_mm.get()), |pr| {
                    if !v.iter().any(|(_, m)| Rc::ptr_eq(m, &pr.mm)) {
                        v.push((pr.pid, pr.mm.clone()));
                    }
                });
            v
        };
        let mut unmapped = 0;
        // two rounds: the first may only age pages that were referenced
        for _ in 0..2 {
            for (t, mm) in &order {
                if unmapped >= want {
                    return unmapped;
                }
                self.reclaim.next_mm.set(t.0 + 1);
                if mm.dead.get() {
                    continue;
                }
                unmapped += self.swap_out_mm(cx, mm, zones, want - unmapped);
                if !self.scan_can_help(cx.p(), zones) {
                    return unmapped;
                }
            }
        }
        unmapped
    }

    /// Scan one address space from where the last visit stopped (`mm->swap_address`).
    fn swap_out_mm<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        mm: &Mm,
        zones: ZoneMask,
        want: u64,
    ) -> u64 {
        let p = cx.p();
        let Some(vmas) = mm.mmap_sem.try_read(p) else {
            return 0;
        };
        let mut unmapped = 0;
        let mut addr = mm.swap_address.get();
        let anon_ok = self.anon_reclaimable(p);
        let ranges: Vec<(u32, u32, bool, Option<u32>)> = vmas
            .iter()
            .filter(|v| v.end > addr)
            // without swap only the pages of file mappings can be let go
            .filter(|v| anon_ok || matches!(v.backing, crate::mm::vma::Backing::File { .. }))
            .map(|v| {
                let ino = match &v.backing {
                    crate::mm::vma::Backing::File { file, .. } => Some(file.ino),
                    _ => None,
                };
                (v.start, v.end, v.backing.has_anon_pages(), ino)
            })
            .collect();
        for (start, end, anon, ino) in ranges {
            let mut a = (start.max(addr)) as u64;
            while a < end as u64 {
                let va = VirtAddr::new(a as u32);
                let next = M::pmd_end(va).min(end as u64);
                unmapped +=
                    self.swap_out_pmd(cx, mm, va, next, (anon, ino, zones), want - unmapped);
                a = next;
                mm.swap_address.set(next as u32);
                if unmapped >= want {
                    return unmapped;
                }
                if !self.scan_can_help(p, zones) {
                    return unmapped;
                }
            }
            addr = end;
        }
        // the whole address space was visited: start over next time
        mm.swap_address.set(0);
        drop(vmas);
        unmapped
    }

    /// Scan the ptes of `[start, end)` (inside one pte page) through one mapping
    /// (`swap_out_pmd` around `try_to_swap_out`). `anon`: the VMA may hold anonymous pages
    /// (which go to swap); `ino`: the file it maps, whose unreferenced pages are unmapped and
    /// queued for `shrink_page_cache`; `zones`: only pages there are unmapped (2.4's
    /// `memclass` test in `try_to_swap_out`), though any page's accessed bit is aged.
    fn swap_out_pmd<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        mm: &Mm,
        start: VirtAddr,
        end: u64,
        (anon, ino, zones): (bool, Option<u32>, ZoneMask),
        want: u64,
    ) -> u64 {
        let p = cx.p();
        // an unlocked look first; the cursor reads the pmd again under the lock
        if self.user_pte_page(p, mm, start).is_none() {
            return 0;
        }
        let anon_ok = self.anon_reclaimable(p);
        let mut gather = Gather::new(mm, start.as_u32(), end);
        let batch = &mut gather.pages;
        let mut rss_dropped = 0;
        {
            let mut cur = self.lock_ptes(cx, mm);
            let Some(mut map) = cur.map(start) else {
                return 0;
            };
            map.for_each(start, end, |_, pte| {
                if (batch.len() as u64) >= want || !pte.is_present() {
                    return None;
                }
                let pfn = pte.pfn();
                if pfn == self.zero_page {
                    return None;
                }
                let d = self.mem_map.desc(pfn);
                if d.is_reserved() || d.test_flag(PageFlags::LOCKED) {
                    return None;
                }
                bump(&self.reclaim.scanned[self.page_zone(pfn) as usize]);
                self.counters.inc(Counter::PgScan);
                if pte.has(EntryFlags::ACCESSED) {
                    // referenced since the last pass: age it
                    return Some(pte.without(EntryFlags::ACCESSED));
                }
                if !zones.contains(self.page_zone(pfn)) {
                    // don't bother replenishing zones not under pressure
                    return None;
                }
                if d.owner() == PageOwner::PageCache {
                    // a file page: just unmap it (the cache keeps it, shrink_page_cache
                    // writes it back and frees it)
                    if pte.has(EntryFlags::DIRTY) {
                        self.set_page_dirty(pfn);
                    }
                    if let Some(ino) = ino {
                        // next in line for shrink_page_cache (the inactive end)
                        self.lru_of(pfn)
                            .borrow_mut()
                            .push_front((ino, d.private(), pfn));
                    }
                    d.dec_mapcount();
                    batch.push(pfn);
                    rss_dropped += 1;
                    return Some(highpte_arch::Entry::NONE);
                }
                if !anon || !anon_ok || !d.test_flag(PageFlags::ANON) {
                    // a shared object's page: drop the pte; the object keeps the page, which
                    // shrink_shared can swap once nobody maps it
                    if !d.test_flag(PageFlags::SHARED) || !anon_ok {
                        return None;
                    }
                    d.dec_mapcount();
                    batch.push(pfn);
                    rss_dropped += 1;
                    return Some(Entry::NONE);
                }
                let e = match self.page_swap_entry(pfn) {
                    Some(e) => e,
                    None => {
                        let e = self.get_swap_page(p)?;
                        self.add_to_swap_cache(p, pfn, e);
                        // the slot holds nothing yet
                        d.set_flag(PageFlags::DIRTY);
                        // the slot's first reference (get_swap_page's) is the cache's now
                        self.swap_free(p, e);
                        e
                    }
                };
                if pte.has(EntryFlags::DIRTY) {
                    d.set_flag(PageFlags::DIRTY);
                }
                self.swap_duplicate(p, e);
                d.dec_mapcount();
                batch.push(pfn);
                rss_dropped += 1;
                Some(e.to_pte(M::PAE))
            });
        }
        let n = gather.pages.len() as u64;
        if n == 0 {
            return 0;
        }
        mm.rss.set(mm.rss.get() - rss_dropped);
        // no CPU may keep using the old translations before the pages can go
        let done = gather.flush(self, cx);
        for pfn in done.pages.iter() {
            self.put_user_page(cx, pfn);
        }
        self.counters.add(Counter::PgUnmapped, n);
        n
    }
}
