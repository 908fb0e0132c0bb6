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
use crate::mm::vma::Backing;
use crate::mm::PROT_WRITE;
use crate::page_alloc::{PageFlags, PageOwner, GFP_HIGHUSER};
use crate::pgtable::pte::pte_phys;
use crate::platform::{Platform, TaskId};
use alloc::vec::Vec;
use highpte_arch::{Entry, EntryFlags, PageFaultErrorCode, PagingMode, Pfn, VirtAddr};

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
        let vmas = mm.mmap_sem.read(cx, "populate_range");
        let list: Vec<_> = vmas.overlapping(start, end).cloned().collect();
        let mut cur = start as u64;
        let mut filled = 0u64;
        let mut reserve: Vec<Pfn> = Vec::new();
        let mut result = Ok(());
        // file mappings are faulted in after the walk, page by page (their pages may have to
        // be read from the disk, with nothing held)
        let mut file_ranges: Vec<(u64, u64)> = Vec::new();
        'vmas: for vma in &list {
            if (vma.start as u64) > cur || (write && !vma.writable()) || !vma.readable() {
                result = Err(Errno::EFAULT);
                break;
            }
            let stop = end.min(vma.end as u64);
            if matches!(vma.backing, Backing::File { .. }) {
                file_ranges.push((cur, stop));
                cur = stop;
                continue;
            }
            while cur < stop {
                let a = VirtAddr::new(cur as u32);
                let next = M::pmd_end(a).min(stop);
                loop {
                    // room for the reverse-map entries (rmap reclaim only)
                    if self.rmap_reserve(cx, (next - cur) >> 12).is_err() {
                        result = Err(Errno::ENOMEM);
                        break 'vmas;
                    }
                    let mut ptes = self.lock_ptes(cx, &mm);
                    let Ok(mut map) = ptes.alloc_map(a) else {
                        result = Err(Errno::ENOMEM);
                        break 'vmas;
                    };
                    // how many new pages does this pte page need? For a shared object the
                    // object's own page index answers without reading the ptes (a missing object
                    // page can only have an empty pte); private memory must look at the ptes.
                    let mut need = 0usize;
                    match &vma.backing {
                        Backing::Shared { obj, pgoff, .. } => {
                            let first = pgoff + ((cur as u32 - vma.start) >> 12);
                            let last = (pgoff + ((next - vma.start as u64) >> 12) as u32)
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
                        while reserve.len() < need {
                            match self.alloc_pages(
                                cx,
                                GFP_HIGHUSER,
                                0,
                                PageOwner::User,
                                "populate_range",
                            ) {
                                Some(pfn) => {
                                    self.clear_highpage(cx, pfn);
                                    reserve.push(pfn);
                                }
                                None => {
                                    result = Err(Errno::ENOMEM);
                                    break 'vmas;
                                }
                            }
                        }
                        continue; // re-walk: the entries may have changed
                    }
                    let mut added = 0u64;
                    let ptp = map.page();
                    map.for_each(a, next, |va, old| {
                        if !old.is_none() {
                            return None;
                        }
                        let pte = match &vma.backing {
                            Backing::Anon if !write => Some(Entry::new(
                                self.zero_page,
                                EntryFlags::PRESENT | EntryFlags::USER | EntryFlags::ACCESSED,
                            )),
                            Backing::Anon => reserve.pop().map(|new| {
                                let d = self.mem_map.desc(new);
                                d.set_flag(PageFlags::ANON);
                                d.inc_mapcount();
                                self.page_add_rmap(new, pte_phys::<M>(ptp, va), &mm, va.as_u32());
                                Entry::new(
                                    new,
                                    EntryFlags::PRESENT
                                        | EntryFlags::USER
                                        | EntryFlags::RW
                                        | EntryFlags::ACCESSED
                                        | EntryFlags::DIRTY,
                                )
                            }),
                            Backing::File { .. } => None,
                            Backing::Shared { obj, pgoff, .. } => {
                                let idx = pgoff + ((va.as_u32() - vma.start) >> 12);
                                if idx >= obj.nr_pages() {
                                    None
                                } else {
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
                                        self.page_add_rmap(
                                            pg,
                                            pte_phys::<M>(ptp, va),
                                            &mm,
                                            va.as_u32(),
                                        );
                                        let mut f = EntryFlags::PRESENT
                                            | EntryFlags::USER
                                            | EntryFlags::ACCESSED;
                                        if vma.prot & PROT_WRITE != 0 {
                                            f |= EntryFlags::RW;
                                            if write {
                                                f |= EntryFlags::DIRTY;
                                            }
                                        }
                                        Entry::new(pg, f)
                                    })
                                }
                            }
                        };
                        if pte.is_some() {
                            added += 1;
                        }
                        pte
                    });
                    drop(map);
                    ptes.unlock();
                    mm.rss.set(mm.rss.get() + added);
                    filled += added;
                    break;
                }
                cur = next;
            }
        }
        if result.is_ok() && cur < end {
            result = Err(Errno::EFAULT);
        }
        drop(vmas);
        for pfn in reserve {
            self.free_pages(cx, pfn, 0);
        }
        let code = PageFaultErrorCode::USER
            | if write {
                PageFaultErrorCode::WRITE
            } else {
                PageFaultErrorCode::empty()
            };
        'files: for (s, e) in file_ranges {
            let mut a = s;
            while a < e {
                match self.do_page_fault(cx, pid, VirtAddr::new(a as u32), code) {
                    FaultOutcome::Handled => filled += 1,
                    FaultOutcome::Signal(Signal::Sigbus) => {
                        result = Err(Errno::EFAULT);
                        break 'files;
                    }
                    FaultOutcome::Signal(_) => {
                        result = Err(Errno::ENOMEM);
                        break 'files;
                    }
                }
                a += 4096;
            }
        }
        self.counters.add(Counter::PopulatedPtes, filled);
        result.map(|_| filled)
    }
}
