//! `populate_range`: fault in a whole range one pte page at a time (`MAP_POPULATE`,
//! `make_pages_present`, a database pre-paging its SGA).
//!
//! The range helper of the pte API at work: each pte page is mapped once (KM_PTE0) and every
//! empty entry of it filled. Pages that must be allocated are counted first; then the mapping
//! and the page-table lock are dropped, the pages are allocated (which may sleep), and the walk
//! of that pte page starts again and re-checks every entry, as the fault handlers do.

use crate::counters::Counter;
use crate::ctx::SleepCtx;
use crate::errno::Errno;
use crate::errno::Signal;
use crate::kernel::Kernel;
use crate::mm::fault::FaultOutcome;
use crate::mm::shm::ObjSlot;
use crate::mm::user_pte;
use crate::mm::vma::{Backing, Vma};
use crate::mm::{Mm, PROT_WRITE};
use crate::page_alloc::{PageFlags, PageOwner, GFP_HIGHUSER};
use crate::pgtable::pte::pte_phys;
use crate::platform::{Platform, TaskId};
use alloc::vec::Vec;
use highpte_arch::{Entry, PageFaultErrorCode, PagingMode, Pfn, VirtAddr, PAGE_SHIFT, PAGE_SIZE};

impl<M: PagingMode> Kernel<M> {
    /// Fault in `[start, start + len)` of task `pid` for reading or writing. Returns the number
    /// of ptes filled; ENOMEM when memory runs out (what was filled stays), EFAULT when part of
    /// the range is not mapped or does not allow the access.
    pub fn populate_range<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        pid: TaskId,
        start: u32,
        len: u64,
        write: bool,
    ) -> Result<u64, Errno> {
        let p = cx.p();
        self.syscall_enter(p, "populate_range");
        let mm = self.mm_of(pid).ok_or(Errno::ESRCH)?;
        let end = start as u64 + len;
        let mut reserve: Vec<Pfn> = Vec::new();
        // file mappings are faulted in after the walk, page by page (their pages may have to
        // be read from the disk, with nothing held)
        let mut file_ranges: Vec<(u64, u64)> = Vec::new();
        let (mut filled, mut result) =
            self.populate_vmas(cx, &mm, start, end, write, &mut reserve, &mut file_ranges);
        for pfn in reserve {
            self.free_pages(cx, pfn, 0);
        }
        if let Err(e) = self.populate_file_ranges(cx, pid, &file_ranges, write, &mut filled) {
            result = Err(e);
        }
        self.counters.add(Counter::PopulatedPtes, filled);
        result.map(|_| filled)
    }

    /// Fill the anonymous and shared-object VMAs of `[start, end)` pte page by pte page,
    /// under `mmap_sem`. A file VMA's part of the range is left for faults: pushed to
    /// `file_ranges`. Returns the ptes filled and how the walk ended (the pages left in
    /// `reserve` are the caller's to free).
    #[allow(clippy::too_many_arguments)]
    fn populate_vmas<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        mm: &Mm,
        start: u32,
        end: u64,
        write: bool,
        reserve: &mut Vec<Pfn>,
        file_ranges: &mut Vec<(u64, u64)>,
    ) -> (u64, Result<(), Errno>) {
        let vmas = mm.mmap_sem.read(cx, "populate_range");
        let list: Vec<_> = vmas.overlapping(start, end).cloned().collect();
        let mut cur = start as u64;
        let mut filled = 0u64;
        for vma in &list {
            if (vma.start as u64) > cur || (write && !vma.writable()) || !vma.readable() {
                return (filled, Err(Errno::EFAULT));
            }
            let stop = end.min(vma.end as u64);
            if matches!(vma.backing, Backing::File { .. }) {
                file_ranges.push((cur, stop));
                cur = stop;
                continue;
            }
            while cur < stop {
                let next = M::pmd_end(VirtAddr::new(cur as u32)).min(stop);
                match self.populate_pte_page(cx, mm, vma, cur, next, write, reserve) {
                    Ok(added) => filled += added,
                    Err(e) => return (filled, Err(e)),
                }
                cur = next;
            }
        }
        if cur < end {
            return (filled, Err(Errno::EFAULT));
        }
        (filled, Ok(()))
    }

    /// Fill the empty ptes of `vma` for `[cur, next)`, a range inside one pte page. The pages
    /// that must be allocated are counted first and taken into `reserve` with the lock
    /// dropped; then the pte page is walked again. Returns the ptes filled.
    #[allow(clippy::too_many_arguments)]
    fn populate_pte_page<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        mm: &Mm,
        vma: &Vma,
        cur: u64,
        next: u64,
        write: bool,
        reserve: &mut Vec<Pfn>,
    ) -> Result<u64, Errno> {
        let a = VirtAddr::new(cur as u32);
        loop {
            // room for the reverse-map entries (rmap reclaim only)
            if self.rmap_reserve(cx, (next - cur) >> PAGE_SHIFT).is_err() {
                return Err(Errno::ENOMEM);
            }
            let mut ptes = self.lock_ptes(cx, mm);
            let Ok(mut map) = ptes.alloc_map(a) else {
                return Err(Errno::ENOMEM);
            };
            // how many new pages does this pte page need? For a shared object the object's
            // own page index answers without reading the ptes (a missing object page can only
            // have an empty pte); private memory must look at the ptes.
            let mut need = 0usize;
            match &vma.backing {
                Backing::Shared { obj, pgoff, .. } => {
                    let first = pgoff + ((cur as u32 - vma.start) >> PAGE_SHIFT);
                    let last = (pgoff + ((next - vma.start as u64) >> PAGE_SHIFT) as u32)
                        .min(obj.nr_pages());
                    need = (first..last)
                        .filter(|i| obj.slot(*i) == ObjSlot::Empty)
                        .count();
                }
                Backing::Anon if write => {
                    map.for_each(a, next, |_, pte| {
                        need += usize::from(pte.is_none());
                        None
                    });
                }
                Backing::Anon | Backing::File { .. } => {}
            }
            if need > reserve.len() {
                drop(map);
                ptes.unlock();
                self.populate_reserve(cx, need, reserve)?;
                continue; // re-walk: the entries may have changed
            }
            let mut added = 0u64;
            let ptp = map.page();
            map.for_each(a, next, |va, old| {
                if !old.is_none() {
                    return None;
                }
                let pte = self.populate_pte(mm, vma, ptp, va, write, reserve);
                if pte.is_some() {
                    added += 1;
                }
                pte
            });
            drop(map);
            ptes.unlock();
            mm.rss.set(mm.rss.get() + added);
            return Ok(added);
        }
    }

    /// Allocate zeroed user pages into `reserve` until it holds `need` (may sleep: nothing
    /// is mapped and no lock held).
    fn populate_reserve<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        need: usize,
        reserve: &mut Vec<Pfn>,
    ) -> Result<(), Errno> {
        while reserve.len() < need {
            let pfn = self
                .alloc_pages(cx, GFP_HIGHUSER, 0, PageOwner::User, "populate_range")
                .ok_or(Errno::ENOMEM)?;
            self.clear_highpage(cx, pfn);
            reserve.push(pfn);
        }
        Ok(())
    }

    /// The new value of the empty pte for `va` of `vma` (in pte page `ptp`), taking a page from
    /// `reserve` where one is needed; `None` leaves it empty (a file page, a shared page on
    /// swap or past the object's end, or no page at hand).
    fn populate_pte(
        &self,
        mm: &Mm,
        vma: &Vma,
        ptp: Pfn,
        va: VirtAddr,
        write: bool,
        reserve: &mut Vec<Pfn>,
    ) -> Option<Entry> {
        match &vma.backing {
            Backing::Anon if !write => Some(user_pte(self.zero_page, false, false)),
            Backing::Anon => reserve.pop().map(|new| {
                let d = self.mem_map.desc(new);
                d.set_flag(PageFlags::ANON);
                d.inc_mapcount();
                self.page_add_rmap(new, pte_phys::<M>(ptp, va), mm, va.as_u32());
                user_pte(new, true, true)
            }),
            Backing::File { .. } => None,
            Backing::Shared { obj, pgoff, .. } => {
                let idx = pgoff + ((va.as_u32() - vma.start) >> PAGE_SHIFT);
                if idx >= obj.nr_pages() {
                    return None;
                }
                let page = match obj.slot(idx) {
                    ObjSlot::Page(pg) => Some(pg),
                    // on swap: left for a fault to read in
                    ObjSlot::Swapped(_) => None,
                    ObjSlot::Empty => reserve.pop().inspect(|new| {
                        self.mem_map.desc(*new).set_flag(PageFlags::SHARED);
                        obj.set_page(idx, *new);
                    }),
                };
                page.map(|pg| {
                    let d = self.mem_map.desc(pg);
                    d.get_page();
                    d.inc_mapcount();
                    self.page_add_rmap(pg, pte_phys::<M>(ptp, va), mm, va.as_u32());
                    user_pte(pg, vma.prot & PROT_WRITE != 0, write)
                })
            }
        }
    }

    /// Fault in the file-mapped ranges page by page, with nothing held (their pages may have
    /// to be read from the disk), counting the pages into `filled`. Stops at the first fault
    /// that fails: EFAULT for SIGBUS (past the file's end), ENOMEM otherwise.
    fn populate_file_ranges<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        pid: TaskId,
        file_ranges: &[(u64, u64)],
        write: bool,
        filled: &mut u64,
    ) -> Result<(), Errno> {
        let code = PageFaultErrorCode::USER
            | if write {
                PageFaultErrorCode::WRITE
            } else {
                PageFaultErrorCode::empty()
            };
        for &(s, e) in file_ranges {
            let mut a = s;
            while a < e {
                match self.do_page_fault(cx, pid, VirtAddr::new(a as u32), code) {
                    FaultOutcome::Handled => *filled += 1,
                    FaultOutcome::Signal(Signal::Sigbus) => return Err(Errno::EFAULT),
                    FaultOutcome::Signal(_) => return Err(Errno::ENOMEM),
                }
                a += PAGE_SIZE;
            }
        }
        Ok(())
    }
}
