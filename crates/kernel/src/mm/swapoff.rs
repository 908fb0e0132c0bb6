//! `swapoff` and `swapon`: taking the swap device out brings every swapped page back
//! (`try_to_unuse`): a walk of every process's page tables through the pte API, and of every
//! shared-memory object's index.
//!
//! The walk never reads a page with a pte mapped: it collects the swap entries of one pte
//! page, unmaps, reads them into the swap cache (sleeping), then maps the pte page again and
//! replaces each pte that still holds its entry (`unuse_pte`). Pages a fork or a racing fault
//! moved meanwhile are found by the next pass; the device is off only when no slot is used.

use crate::ctx::SleepCtx;
use crate::errno::Errno;
use crate::kernel::Kernel;
use crate::mm::shm::ObjSlot;
use crate::mm::vma::Backing;
use crate::mm::Mm;
use crate::page_alloc::{PageFlags, PageOwner, GFP_HIGHUSER};
use crate::platform::{Platform, TaskId};
use alloc::rc::Rc;
use alloc::vec::Vec;
use highpte_arch::{Entry, EntryFlags, PagingMode, Pfn, SwapEntry, VirtAddr};

/// Passes over all page tables before swapoff gives up (pages keep moving).
const UNUSE_PASSES: u32 = 8;

impl<M: PagingMode> Kernel<M> {
    /// `swapoff`: bring every page back from swap and turn the device off. ENOMEM (the
    /// device stays on) when memory cannot hold them; EINVAL when no swap is on.
    pub fn sys_swapoff<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        pid: TaskId,
    ) -> Result<(), Errno> {
        let p = cx.p();
        self.syscall_enter(p, "sys_swapoff");
        let _ = pid;
        if !self.swap.lock(p).active {
            return Err(Errno::EINVAL);
        }
        // no new slot from now on
        self.swap.lock(p).active = false;
        for _ in 0..UNUSE_PASSES {
            if let Err(e) = self.try_to_unuse(cx) {
                self.swap.lock(p).active = true;
                return Err(e);
            }
            if self.swap.lock(p).inuse() == 0 {
                return Ok(());
            }
        }
        self.swap.lock(p).active = true;
        Err(Errno::ENOMEM)
    }

    /// `swapon` of the (one) swap device configured at boot.
    pub fn sys_swapon<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        pid: TaskId,
    ) -> Result<(), Errno> {
        let p = cx.p();
        self.syscall_enter(p, "sys_swapon");
        let _ = pid;
        let mut s = self.swap.lock(p);
        if s.active {
            return Err(Errno::EBUSY);
        }
        if s.total() == 0 {
            return Err(Errno::EINVAL);
        }
        s.active = true;
        Ok(())
    }

    /// One pass: every mm, every shared object, then the swap cache.
    fn try_to_unuse<P: Platform>(&self, cx: &mut SleepCtx<'_, P>) -> Result<(), Errno> {
        for mm in self.live_mms() {
            if !mm.dead.get() {
                self.unuse_mm(cx, &mm)?;
            }
        }
        self.unuse_shared(cx)?;
        // pages left in the swap cache with no other user of their slot leave it
        let cached: Vec<Pfn> = {
            let s = self.swap.lock(cx.p());
            s.cache_entries().map(|(_, pfn)| pfn).collect()
        };
        for pfn in cached {
            let Some(e) = self.page_swap_entry(pfn) else {
                continue;
            };
            let d = self.mem_map.desc(pfn);
            if self.swap_count(cx.p(), e) == 1 && !d.test_flag(PageFlags::LOCKED) {
                d.set_flag(PageFlags::DIRTY);
                if self.delete_from_swap_cache(cx.p(), pfn) == 0 {
                    self.free_pages(cx, pfn, 0);
                }
            }
        }
        Ok(())
    }

    fn unuse_mm<P: Platform>(&self, cx: &mut SleepCtx<'_, P>, mm: &Rc<Mm>) -> Result<(), Errno> {
        let vmas = mm.mmap_sem.read(cx, "try_to_unuse");
        let ranges: Vec<(u32, u32, bool)> = vmas
            .iter()
            .filter(|v| matches!(v.backing, Backing::Anon))
            .map(|v| (v.start, v.end, v.writable()))
            .collect();
        for (start, end, writable) in ranges {
            let mut a = start as u64;
            while a < end as u64 {
                let va = VirtAddr::new(a as u32);
                let next = M::pmd_end(va).min(end as u64);
                self.unuse_pmd(cx, mm, va, next, writable)?;
                a = next;
            }
        }
        drop(vmas);
        Ok(())
    }

    /// `unuse_pmd`: the swap ptes of `[start, end)` (inside one pte page).
    fn unuse_pmd<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        mm: &Mm,
        start: VirtAddr,
        end: u64,
        writable: bool,
    ) -> Result<(), Errno> {
        let p = cx.p();
        // an unlocked look first; the cursor reads the pmd again under the lock
        if self.user_pte_page(p, mm, start).is_none() {
            return Ok(());
        }
        // collect with the pte page mapped...
        let mut found: Vec<(VirtAddr, SwapEntry)> = Vec::new();
        if let Some(mut map) = self.lock_ptes(cx, mm).map(start) {
            map.for_each(start, end, |va, pte| {
                if let Some(e) = SwapEntry::from_pte(pte, M::PAE) {
                    found.push((va, e));
                }
                None
            });
        }
        if found.is_empty() {
            return Ok(());
        }
        // ...read with nothing mapped...
        let mut pages: Vec<(VirtAddr, SwapEntry, Pfn)> = Vec::new();
        for (va, e) in found {
            match self.swapin_page(cx, e, "try_to_unuse") {
                Some(Some(pfn)) => pages.push((va, e, pfn)),
                Some(None) => {}
                None => {
                    for (_, _, pfn) in pages {
                        self.put_user_page(cx, pfn);
                    }
                    return Err(Errno::ENOMEM);
                }
            }
        }
        // ...and replace the ptes that still hold their entries (the pmd is read again, under
        // the lock: the pte page may have gone while we slept)
        let mut leftover: Vec<Pfn> = Vec::new();
        if self.rmap_reserve(cx, pages.len() as u64).is_err() {
            for (_, _, pfn) in pages {
                self.put_user_page(cx, pfn);
            }
            return Err(Errno::ENOMEM);
        }
        let mut cur = self.lock_ptes(cx, mm);
        let mapped = cur.map(start).map(|mut map| {
            let mut mapped = 0;
            for &(va, e, pfn) in &pages {
                if map.get(va) != e.to_pte(M::PAE) || self.page_swap_entry(pfn) != Some(e) {
                    leftover.push(pfn);
                    continue;
                }
                self.swap_free(p, e);
                let d = self.mem_map.desc(pfn);
                d.inc_mapcount();
                self.page_add_rmap(pfn, map.pte_phys(va), mm, va.as_u32());
                let mut f = EntryFlags::PRESENT | EntryFlags::USER;
                if self.reuse_swap_page(p, pfn) && writable {
                    f |= EntryFlags::RW | EntryFlags::DIRTY;
                }
                map.set(va, Entry::new(pfn, f));
                mapped += 1;
            }
            mapped
        });
        cur.unlock();
        match mapped {
            Some(n) => mm.rss.set(mm.rss.get() + n),
            None => leftover.extend(pages.iter().map(|x| x.2)),
        }
        for pfn in leftover {
            self.put_user_page(cx, pfn);
        }
        Ok(())
    }

    /// Bring every swapped page of every shared-memory object back.
    fn unuse_shared<P: Platform>(&self, cx: &mut SleepCtx<'_, P>) -> Result<(), Errno> {
        let objs = self.shm.objects();
        for w in objs {
            let mut idx = 0;
            loop {
                // find the next swapped page, holding the object only while looking
                let next = {
                    let Some(obj) = w.upgrade() else { break };
                    let mut found = None;
                    while idx < obj.nr_pages() {
                        if let ObjSlot::Swapped(e) = obj.slot(idx) {
                            found = Some((idx, e));
                            break;
                        }
                        idx += 1;
                    }
                    found
                };
                let Some((at, e)) = next else { break };
                idx = at + 1;
                let new = self
                    .alloc_pages(cx, GFP_HIGHUSER, 0, PageOwner::User, "try_to_unuse")
                    .ok_or(Errno::ENOMEM)?;
                self.swap_readpage(cx, new, e);
                match w.upgrade() {
                    Some(obj) if obj.slot(at) == ObjSlot::Swapped(e) => {
                        self.mem_map.desc(new).set_flag(PageFlags::SHARED);
                        obj.set_page(at, new);
                        drop(obj);
                        self.swap_free(cx.p(), e);
                    }
                    _ => self.free_pages(cx, new, 0),
                }
            }
        }
        Ok(())
    }
}
