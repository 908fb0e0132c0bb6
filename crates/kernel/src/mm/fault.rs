//! The page-fault handler (`do_page_fault`, `handle_mm_fault`, `do_anonymous_page`,
//! `do_wp_page`, the shared-page fault).
//!
//! Every handler that must allocate drops its pte mapping and the page-table lock first (the
//! allocation may sleep), then retakes the lock, remaps the pte and re-checks that it did not
//! change meanwhile (`pte_same`); if it did, someone else handled the fault and the new page
//! is given back. The common case, a write to a never-touched private anonymous page, takes
//! its page before the first mapping instead (see `do_page_fault`), so it maps the pte page
//! once.

use crate::counters::Counter;
use crate::ctx::{Ctx, SleepCtx};
use crate::errno::Signal;
use crate::kernel::Kernel;
use crate::mm::shm::ObjSlot;
use crate::mm::tlb::PendingFlush;
use crate::mm::vma::{Backing, Vma};
use crate::mm::{Mm, PROT_WRITE};
use crate::page_alloc::{PageFlags, PageOwner, GFP_HIGHUSER};
use crate::pgtable::{PteCursor, PteMap};
use crate::platform::{KernelEvent, Platform, TaskId};
use highpte_arch::{Entry, EntryFlags, PageFaultErrorCode, PagingMode, Pfn, SwapEntry, VirtAddr};

/// How a page fault ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultOutcome {
    /// The page is there now: retry the access.
    Handled,
    /// Deliver a signal to the task.
    Signal(Signal),
}

/// A fault attempt could not get memory (it gave back what it held): the OOM path.
struct NoMemory;

/// How many times one fault waits for an OOM victim to exit and tries again before the
/// faulting task is killed itself (see `fault_oom`).
const OOM_FAULT_WAITS: u32 = 4;

enum Step {
    Done,
    /// The handler needs a new page (it dropped its locks): allocate at this site and retry.
    NeedPage(&'static str),
    /// The pte holds a swap entry whose page is not at hand: read it in (or find it in the
    /// swap cache) with nothing held, then retry.
    SwapIn(SwapEntry),
    /// Page `idx` of the VMA's shared object is on swap: read it in with nothing held.
    ShmSwapIn(u32, SwapEntry),
    /// A file mapping needs this page of its file read in (`filemap_nopage`) with nothing
    /// held, then a retry.
    FileRead(u32),
    /// Try again at once (a private file page was mapped read-only for a write: now copy).
    Retry,
    Oom,
    Sigbus,
}

impl<M: PagingMode> Kernel<M> {
    /// `do_page_fault`: the machine calls this for a user-mode page fault of task `pid` at
    /// `addr` with the hardware error code. An attempt that finds no memory goes to the OOM
    /// killer (`fault_oom`), and the fault is tried again only if another task was killed.
    pub fn do_page_fault<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        pid: TaskId,
        addr: VirtAddr,
        code: PageFaultErrorCode,
    ) -> FaultOutcome {
        let p = cx.p();
        p.charge(KernelEvent::Fault);
        self.counters.inc(Counter::Faults);
        // waits of this fault for an OOM victim to exit
        let mut oom_waits = 0;
        loop {
            match self.fault_attempt(cx, pid, addr, code) {
                Ok(out) => return out,
                Err(NoMemory) => {
                    if let Some(out) = self.fault_oom(cx, pid, &mut oom_waits) {
                        return out;
                    }
                }
            }
        }
    }

    /// One attempt at a fault, from the VMA lookup on. `Err(NoMemory)`: an allocation failed;
    /// everything the attempt took is given back and nothing is held (no lock, no mapping, no
    /// mmap_sem): the caller takes the OOM path.
    fn fault_attempt<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        pid: TaskId,
        addr: VirtAddr,
        code: PageFaultErrorCode,
    ) -> Result<FaultOutcome, NoMemory> {
        let p = cx.p();
        p.set_where("do_page_fault");
        let Some(mm) = self.mm_of(pid) else {
            return Ok(FaultOutcome::Signal(Signal::Sigsegv));
        };
        let write = code.contains(PageFaultErrorCode::WRITE);
        let fetch = code.contains(PageFaultErrorCode::INSTR);
        let vmas = mm.mmap_sem.read(cx, "do_page_fault");
        let Some(vma) = vmas.containing(addr.as_u32()).cloned() else {
            self.counters.inc(Counter::FaultsSigsegv);
            return Ok(FaultOutcome::Signal(Signal::Sigsegv));
        };
        let allowed = if write {
            vma.writable()
        } else if fetch {
            vma.prot & crate::mm::PROT_EXEC != 0
        } else {
            vma.readable()
        };
        if !allowed || code.contains(PageFaultErrorCode::RSVD) {
            self.counters.inc(Counter::FaultsSigsegv);
            return Ok(FaultOutcome::Signal(Signal::Sigsegv));
        }
        // room for the reverse-map entry this fault may add (rmap reclaim only)
        if self.rmap_reserve(cx, 1).is_err() {
            drop(vmas);
            return Err(NoMemory);
        }
        // do_anonymous_page, page first: a write that found no translation (P clear in the
        // error code) in a private anonymous VMA whose pte page exists will, unless it raced
        // or finds a swap entry, need a new zeroed page. Allocate and clear it now, while
        // nothing is mapped and no spinlock is held (it may sleep), so the handler maps the pte
        // page once: map, see pte_none, install. Without this it maps, finds pte_none, drops
        // everything to allocate, and maps again. A present pte (P set: copy-on-write, or a
        // spurious fault) is left to the handler, which often reuses the old page and would
        // waste this one; if the pte changed meanwhile, the page is given back at the end.
        let mut new_page: Option<Pfn> = None;
        if write
            && !code.contains(PageFaultErrorCode::PRESENT)
            && matches!(vma.backing, Backing::Anon)
            && self.pmd_offset(cx.p(), &mm.pgd, addr).is_present()
        {
            match self.alloc_zeroed_user_page(cx, "do_anonymous_page") {
                Some(pfn) => new_page = Some(pfn),
                None => {
                    drop(vmas);
                    return Err(NoMemory);
                }
            }
        }
        let mut swapped: Option<(SwapEntry, Pfn)> = None;
        // a page of a mapped file read in by an earlier attempt (with a reference)
        let mut file_page: Option<(u32, Pfn)> = None;
        loop {
            let step = self.handle_mm_fault(
                cx,
                &mm,
                &vma,
                addr,
                write,
                &mut new_page,
                &mut swapped,
                &mut file_page,
            );
            if !matches!(step, Step::FileRead(_) | Step::Retry | Step::Done) {
                if let Some((_, pfn)) = file_page.take() {
                    self.page_cache_release(cx, pfn);
                }
            }
            match step {
                Step::Done => break,
                Step::ShmSwapIn(idx, e) => {
                    let Backing::Shared { obj, .. } = &vma.backing else {
                        unreachable!("a shared-object fault outside a shared VMA");
                    };
                    let Some(new) =
                        self.alloc_pages(cx, GFP_HIGHUSER, 0, PageOwner::User, "shmem_getpage")
                    else {
                        drop(vmas);
                        self.fault_release(cx, &mut new_page, &mut swapped, &mut file_page);
                        return Err(NoMemory);
                    };
                    if obj.slot(idx) == ObjSlot::Swapped(e) {
                        self.swap_readpage(cx, new, e);
                        self.counters.inc(Counter::FaultsMajor);
                    }
                    // the read slept: install only if nobody did meanwhile (no yield between
                    // the check and the install)
                    if obj.slot(idx) == ObjSlot::Swapped(e) {
                        self.mem_map.desc(new).set_flag(PageFlags::SHARED);
                        obj.set_page(idx, new);
                        self.swap_free(cx.p(), e);
                    } else {
                        self.free_pages(cx, new, 0);
                    }
                }
                Step::Retry => {}
                Step::FileRead(idx) => {
                    // filemap_nopage's read: nothing mapped, no spinlock held
                    if let Some((_, old)) = file_page.take() {
                        self.page_cache_release(cx, old);
                    }
                    match self.filemap_nopage(cx, &vma, idx) {
                        Ok(pfn) => file_page = Some((idx, pfn)),
                        Err(crate::mm::filemap::NoPage::Sigbus) => {
                            self.fault_release(cx, &mut new_page, &mut swapped, &mut file_page);
                            self.counters.inc(Counter::FaultsSigbus);
                            return Ok(FaultOutcome::Signal(Signal::Sigbus));
                        }
                        Err(crate::mm::filemap::NoPage::Oom) => {
                            drop(vmas);
                            self.fault_release(cx, &mut new_page, &mut swapped, &mut file_page);
                            return Err(NoMemory);
                        }
                    }
                }
                Step::SwapIn(e) => {
                    // do_swap_page's read: nothing mapped, no spinlock held. A page allocated
                    // up front for a demand-zero fault is not needed: give it back before the
                    // read sleeps, rather than hold it through the I/O.
                    self.fault_release(cx, &mut new_page, &mut swapped, &mut file_page);
                    match self.swapin_page(cx, e, "do_swap_page") {
                        Some(Some(pfn)) => swapped = Some((e, pfn)),
                        Some(None) => {} // the slot went away: the pte changed, retry
                        None => {
                            drop(vmas);
                            return Err(NoMemory);
                        }
                    }
                }
                Step::NeedPage(site) => {
                    // may sleep: no pte mapped, no spinlock held
                    match self.alloc_zeroed_user_page(cx, site) {
                        Some(pfn) => new_page = Some(pfn),
                        None => {
                            drop(vmas);
                            self.fault_release(cx, &mut new_page, &mut swapped, &mut file_page);
                            return Err(NoMemory);
                        }
                    }
                }
                Step::Oom => {
                    drop(vmas);
                    self.fault_release(cx, &mut new_page, &mut swapped, &mut file_page);
                    return Err(NoMemory);
                }
                Step::Sigbus => {
                    self.fault_release(cx, &mut new_page, &mut swapped, &mut file_page);
                    self.counters.inc(Counter::FaultsSigbus);
                    return Ok(FaultOutcome::Signal(Signal::Sigbus));
                }
            }
        }
        // raced: someone else populated the pte
        self.fault_release(cx, &mut new_page, &mut swapped, &mut file_page);
        Ok(FaultOutcome::Handled)
    }

    /// Give back what the attempts of one fault held and did not use: a page allocated for a
    /// demand-zero or copy-on-write fault, a page read in from swap, a page-cache page.
    fn fault_release<P: Platform>(
        &self,
        cx: &Ctx<'_, P>,
        new_page: &mut Option<Pfn>,
        swapped: &mut Option<(SwapEntry, Pfn)>,
        file_page: &mut Option<(u32, Pfn)>,
    ) {
        if let Some(pfn) = new_page.take() {
            self.free_pages(cx, pfn, 0);
        }
        if let Some((_, pfn)) = swapped.take() {
            self.put_user_page(cx, pfn);
        }
        if let Some((_, pfn)) = file_page.take() {
            self.page_cache_release(cx, pfn);
        }
    }

    /// A new user page, zeroed (`alloc_page(GFP_HIGHUSER)` + `clear_user_highpage`). May
    /// sleep: the caller holds no spinlock and has no pte mapped (the `&mut SleepCtx` proves
    /// the second).
    fn alloc_zeroed_user_page<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        site: &'static str,
    ) -> Option<Pfn> {
        let pfn = self.alloc_pages(cx, GFP_HIGHUSER, 0, PageOwner::User, site)?;
        self.clear_highpage(cx, pfn);
        Some(pfn)
    }

    /// A fault found no memory (nothing held: no lock, no mapping, no mmap_sem). The OOM
    /// killer picks a victim; if that is this task it dies. Otherwise this task waits until
    /// the victim has exited and given its memory back, and the fault is tried again (`None`):
    /// a bystander that faults while memory is exhausted is not killed with the hog.
    ///
    /// The memory a victim gives back is not kept for the tasks that wait for it: other tasks
    /// that are running meanwhile may take all of it before a waiter runs again, and its next
    /// attempt fail as well, victim after victim (each kill then frees memory only for others).
    /// So after `OOM_FAULT_WAITS` fruitless waits the faulting task is the victim itself, as
    /// 2.5's `do_page_fault` kills the task whose fault returned VM_FAULT_OOM: the fault
    /// either succeeds or the task is killed, it never loops.
    fn fault_oom<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        pid: TaskId,
        waits: &mut u32,
    ) -> Option<FaultOutcome> {
        let p = cx.p();
        if let Some(s) = self.pending_kill(pid) {
            // already killed (by an OOM kill meanwhile): die rather than kill another
            return Some(FaultOutcome::Signal(s));
        }
        if *waits >= OOM_FAULT_WAITS {
            self.oom_kill_process(p, pid, pid);
            return Some(FaultOutcome::Signal(Signal::Sigkill));
        }
        match self.out_of_memory(p, pid) {
            Some(v) if v != pid => {
                *waits += 1;
                let key = crate::platform::WaitQueueKey(
                    crate::mm::process::OOM_EXIT_KEY_BASE + v.0 as u64,
                );
                let token = p.prepare_to_wait(key);
                if self.process(v).is_some() {
                    cx.sleep_on(key, token, "OOM victim to exit", "out_of_memory");
                }
                // killed meanwhile: die rather than try again
                self.pending_kill(pid).map(FaultOutcome::Signal)
            }
            // this task is the victim, or there is nothing else to kill
            _ => Some(FaultOutcome::Signal(Signal::Sigkill)),
        }
    }

    /// `handle_mm_fault` for one attempt. `new_page` is a page allocated by a previous attempt
    /// (consumed if used).
    #[allow(clippy::too_many_arguments)]
    fn handle_mm_fault<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        mm: &Mm,
        vma: &Vma,
        addr: VirtAddr,
        write: bool,
        new_page: &mut Option<Pfn>,
        swapped: &mut Option<(SwapEntry, Pfn)>,
        file_page: &mut Option<(u32, Pfn)>,
    ) -> Step {
        let p = cx.p();
        let mut cur = self.lock_ptes(cx, mm);
        let Ok(mut map) = cur.alloc_map(addr) else {
            return Step::Oom;
        };
        let pte = map.get(addr);
        if pte.is_present() {
            if write && !pte.has(EntryFlags::RW) {
                // do_wp_page
                if !self.wp_reuse(&mut map, vma, addr, pte) {
                    let Some(new) = new_page.take() else {
                        return Step::NeedPage("do_wp_page");
                    };
                    drop(map);
                    let Some(old) = self.wp_copy(cur, addr, pte, new, new_page) else {
                        return Step::Done;
                    };
                    PendingFlush::page(mm, addr).flush(self, cx);
                    if old != self.zero_page {
                        self.mem_map.desc(old).dec_mapcount();
                        self.put_user_page(cx, old);
                    }
                    self.counters.inc(Counter::FaultsCow);
                    return Step::Done;
                }
            }
            // made writable in place, or spurious (a stale TLB entry or a racing fault
            // already fixed it): only the TLBs need telling
            drop(map);
            cur.unlock();
            PendingFlush::page(mm, addr).flush(self, cx);
            return Step::Done;
        }
        if let Some(e) = SwapEntry::from_pte(pte, M::PAE) {
            return self.do_swap_page(p, mm, vma, addr, write, e, map, swapped);
        }
        if !pte.is_none() {
            // PROT_NONE pte under an accessible vma cannot happen (mprotect rewrites them)
            return Step::Sigbus;
        }
        match &vma.backing {
            Backing::Anon => {
                if !write {
                    // read of a never-written private page: map the zero page read-only
                    map.set(
                        addr,
                        Entry::new(
                            self.zero_page,
                            EntryFlags::PRESENT | EntryFlags::USER | EntryFlags::ACCESSED,
                        ),
                    );
                    mm.rss.set(mm.rss.get() + 1);
                    self.counters.inc(Counter::FaultsAnon);
                    return Step::Done;
                }
                let Some(new) = new_page.take() else {
                    return Step::NeedPage("do_anonymous_page");
                };
                self.mem_map.desc(new).set_flag(PageFlags::ANON);
                self.mem_map.desc(new).inc_mapcount();
                self.page_add_rmap(new, map.pte_phys(addr), mm, addr.as_u32());
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
                mm.rss.set(mm.rss.get() + 1);
                self.counters.inc(Counter::FaultsAnon);
                Step::Done
            }
            Backing::Shared { obj, pgoff, .. } => {
                let idx = pgoff + ((addr.as_u32() - vma.start) >> 12);
                if idx >= obj.nr_pages() {
                    return Step::Sigbus;
                }
                let page = match obj.slot(idx) {
                    ObjSlot::Page(pg) => pg,
                    ObjSlot::Swapped(e) => return Step::ShmSwapIn(idx, e),
                    ObjSlot::Empty => {
                        let Some(new) = new_page.take() else {
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
                let mut f = EntryFlags::PRESENT | EntryFlags::USER | EntryFlags::ACCESSED;
                if vma.prot & PROT_WRITE != 0 {
                    f |= EntryFlags::RW;
                    if write {
                        f |= EntryFlags::DIRTY;
                    }
                }
                self.page_add_rmap(page, map.pte_phys(addr), mm, addr.as_u32());
                map.set(addr, Entry::new(page, f));
                mm.rss.set(mm.rss.get() + 1);
                self.counters.inc(Counter::FaultsShared);
                Step::Done
            }
            Backing::File { .. } => {
                use crate::mm::filemap::FileFault;
                match self.filemap_fault_pte(p, &mut map, mm, vma, addr, write, file_page) {
                    FileFault::Done => Step::Done,
                    FileFault::Retry => Step::Retry,
                    FileFault::Read(idx) => Step::FileRead(idx),
                    FileFault::Sigbus => Step::Sigbus,
                }
            }
        }
    }

    /// `do_wp_page`'s first half: a write to a present read-only pte whose page may be made
    /// writable in place (a private page only this pte maps, or a shared writable mapping).
    /// Returns false if the page must be copied.
    fn wp_reuse<P: Platform>(
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
    fn wp_copy<'a, 'p: 'a, P: Platform>(
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
    fn do_swap_page<P: Platform>(
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
        let mut f = EntryFlags::PRESENT | EntryFlags::USER | EntryFlags::ACCESSED;
        // exclusive (only this pte and the cache use it): take it out of the cache
        // Keep a clean copy in the cache on a read (freeing it later costs no write) unless
        // swap is more than half full (`vm_swap_full`).
        let (total, used, _) = self.swap_usage(p);
        if (write || used * 2 > total) && self.reuse_swap_page(p, pfn) && vma.writable() {
            f |= EntryFlags::RW;
            if write {
                f |= EntryFlags::DIRTY;
            }
        }
        self.page_add_rmap(pfn, map.pte_phys(addr), mm, addr.as_u32());
        map.set(addr, Entry::new(pfn, f));
        drop(map);
        mm.rss.set(mm.rss.get() + 1);
        self.counters.inc(Counter::FaultsSwapCache);
        Step::Done
    }
}
