//! File-backed mappings: the fault hook (`filemap_nopage`), `msync`, and the unmapping of a
//! truncated range from every mapping (`vmtruncate`'s `zap_page_range`).
//!
//! A `MAP_SHARED` mapping maps the page-cache page itself (writable if the mapping is); the
//! hardware's dirty bit in the pte reaches `PG_dirty` when the pte is zapped, scanned by
//! reclaim, or synced by `msync`. A `MAP_PRIVATE` mapping maps the page-cache page
//! read-only; the first write copies it into an anonymous page (`do_wp_page`), which swap
//! then handles as any anonymous page. A fault at or past the end of the file is SIGBUS.
//!
//! The fault follows the rule of every handler: the page is read in with nothing held (no pte
//! mapped, no page-table lock), then the handler retakes the lock, remaps the pte and checks
//! again that it is empty and that the page is still the cache's page at that index (a
//! truncate may have run meanwhile) before mapping it.

use crate::counters::Counter;
use crate::ctx::SleepCtx;
use crate::errno::Errno;
use crate::fs::Inode;
use crate::kernel::Kernel;
use crate::mm::tlb::PendingFlush;
use crate::mm::user_pte;
use crate::mm::vma::{Backing, Vma};
use crate::mm::{Mm, PROT_WRITE};
use crate::page_alloc::PageOwner;
use crate::pgtable::PteMap;
use crate::platform::{Platform, TaskId};
use alloc::rc::Rc;
use alloc::vec::Vec;
use highpte_arch::{EntryFlags, PagingMode, Pfn, VirtAddr, PAGE_SHIFT, PAGE_SIZE};

/// `MS_ASYNC`.
pub const MS_ASYNC: u32 = 1;
/// `MS_INVALIDATE`.
pub const MS_INVALIDATE: u32 = 2;
/// `MS_SYNC`.
pub const MS_SYNC: u32 = 4;

/// What the file fault hook did with an empty pte.
pub(crate) enum FileFault {
    /// The page is mapped.
    Done,
    /// Mapped read-only for a write to a private mapping: fault again to copy it.
    Retry,
    /// The page at this index must be read in first (nothing may be held for that).
    Read(u32),
    /// At or past the end of the file.
    Sigbus,
}

/// Why `filemap_nopage` could not provide a page.
pub(crate) enum NoPage {
    /// Past the end of the file: SIGBUS.
    Sigbus,
    /// No memory for the page: the OOM path.
    Oom,
}

impl<M: PagingMode> Kernel<M> {
    /// The fault hook for an empty pte in a file VMA, with the pte mapped and the page-table
    /// lock held (through `map`). `file_page` is the page a previous attempt read in for this
    /// fault (with a reference, which becomes the pte's if it is mapped).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn filemap_fault_pte<P: Platform>(
        &self,
        p: &P,
        map: &mut PteMap<'_, '_, P, M>,
        mm: &Mm,
        vma: &Vma,
        addr: VirtAddr,
        write: bool,
        file_page: &mut Option<(u32, Pfn)>,
    ) -> FileFault {
        let Backing::File {
            file,
            pgoff,
            shared,
        } = &vma.backing
        else {
            return FileFault::Sigbus;
        };
        let idx = pgoff + ((addr.as_u32() - vma.start) >> PAGE_SHIFT);
        if idx as u64 >= file.size_pages() {
            return FileFault::Sigbus;
        }
        let pfn = match *file_page {
            Some((i, pfn)) if i == idx => pfn,
            _ => return FileFault::Read(idx),
        };
        if self.cache_page(p, file, idx) != Some(pfn) {
            // truncated (and perhaps read in again) while we slept
            return FileFault::Read(idx);
        }
        *file_page = None;
        self.mem_map.desc(pfn).inc_mapcount();
        self.page_add_rmap(pfn, map.pte_phys(addr), mm, addr.as_u32());
        map.set(
            addr,
            user_pte(pfn, *shared && vma.prot & PROT_WRITE != 0, write),
        );
        mm.rss.set(mm.rss.get() + 1);
        self.counters.inc(Counter::FaultsFile);
        if write && !*shared {
            FileFault::Retry
        } else {
            FileFault::Done
        }
    }

    /// `filemap_nopage`'s read, with nothing held: the page at `idx` of the VMA's file, up to
    /// date, with a reference. May sleep.
    pub(crate) fn filemap_nopage<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        vma: &Vma,
        idx: u32,
    ) -> Result<Pfn, NoPage> {
        let Backing::File { file, .. } = &vma.backing else {
            return Err(NoPage::Sigbus);
        };
        if idx as u64 >= file.size_pages() {
            return Err(NoPage::Sigbus);
        }
        self.read_cache_page(cx, file, idx).map_err(|_| NoPage::Oom)
    }

    /// Unmap pages `first..` of `inode` from every address space that maps them (shared
    /// pages and private copies alike, as `vmtruncate` does).
    pub(crate) fn unmap_file_range<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        inode: &Rc<Inode>,
        first: u32,
    ) {
        for mm in self.live_mms() {
            if mm.dead.get() {
                continue;
            }
            let vmas = mm.mmap_sem.read(cx, "vmtruncate");
            let ranges: Vec<(u32, u32)> = vmas
                .iter()
                .filter_map(|v| match &v.backing {
                    Backing::File { file, pgoff, .. } if Rc::ptr_eq(file, inode) => {
                        let s = if first > *pgoff {
                            v.start as u64 + ((first - pgoff) as u64) * PAGE_SIZE
                        } else {
                            v.start as u64
                        };
                        (s < v.end as u64).then_some((s as u32, v.end))
                    }
                    _ => None,
                })
                .collect();
            for (s, e) in ranges {
                let gather = self.zap_page_range(cx, &mm, s, u64::from(e));
                let done = gather.flush(self, cx);
                self.gather_finish(cx, done);
            }
            drop(vmas);
        }
    }

    /// `filemap_sync`: move the dirty bits of the ptes of `[start, end)` to their page-cache
    /// pages (`PG_dirty`), then flush the TLBs so the next write sets the bit again.
    fn filemap_sync<P: Platform>(&self, cx: &mut SleepCtx<'_, P>, mm: &Mm, start: u32, end: u64) {
        let mut moved = false;
        let mut cur = self.lock_ptes(cx, mm);
        cur.walk(start, end, |map, a, next| {
            map.for_each(a, next, |_, pte| {
                if !pte.is_present() || !pte.has(EntryFlags::DIRTY) {
                    return None;
                }
                let pfn = pte.pfn();
                if self.mem_map.desc(pfn).owner() != PageOwner::PageCache {
                    return None;
                }
                self.set_page_dirty(pfn);
                moved = true;
                Some(pte.without(EntryFlags::DIRTY))
            });
        });
        cur.unlock();
        if moved {
            PendingFlush::range(mm, start, end).flush(self, cx);
        }
    }

    /// `msync(addr, len, flags)`: move the dirty bits of shared file mappings in the range
    /// to their pages; with `MS_SYNC` write those pages to the disk before returning.
    /// `MS_ASYNC` leaves the writing to reclaim and `fsync` (as Linux 2.6 does);
    /// `MS_INVALIDATE` has nothing to do (the page cache is the only copy a mapping sees).
    /// ENOMEM if part of the range is not mapped (the mapped parts are still synced).
    pub fn sys_msync<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        pid: TaskId,
        addr: u32,
        len: u64,
        flags: u32,
    ) -> Result<(), Errno> {
        let p = cx.p();
        self.syscall_enter(p, "sys_msync");
        if flags & !(MS_ASYNC | MS_INVALIDATE | MS_SYNC) != 0 || addr & 0xfff != 0 {
            return Err(Errno::EINVAL);
        }
        if flags & MS_ASYNC != 0 && flags & MS_SYNC != 0 {
            return Err(Errno::EINVAL);
        }
        let len = len.div_ceil(PAGE_SIZE).saturating_mul(PAGE_SIZE);
        let end = addr as u64 + len;
        if end > 1 << 32 {
            return Err(Errno::ENOMEM);
        }
        if len == 0 {
            return Ok(());
        }
        let mm = self.mm_of(pid).ok_or(Errno::ESRCH)?;
        let vmas = mm.mmap_sem.read(cx, "sys_msync");
        let mut err = None;
        let mut cur = addr as u64;
        let mut work: Vec<(u32, u32, Rc<Inode>, u32)> = Vec::new();
        for v in vmas.overlapping(addr, end) {
            if v.start as u64 > cur {
                err = Some(Errno::ENOMEM);
            }
            let s = (v.start as u64).max(cur) as u32;
            let e = (v.end as u64).min(end);
            if let Backing::File {
                file,
                pgoff,
                shared: true,
            } = &v.backing
            {
                let first = pgoff + ((s - v.start) >> PAGE_SHIFT);
                work.push((s, e as u32, file.clone(), first));
            }
            cur = e;
        }
        if cur < end {
            err = Some(Errno::ENOMEM);
        }
        for (s, e, _, _) in &work {
            self.filemap_sync(cx, &mm, *s, *e as u64);
        }
        drop(vmas);
        for (s, e, file, first) in work {
            if flags & MS_SYNC != 0 {
                let last = first + ((e - s) >> PAGE_SHIFT) - 1;
                self.filemap_fdatawrite(cx, &file, first, last);
            }
            self.iput(cx, file);
        }
        match err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
