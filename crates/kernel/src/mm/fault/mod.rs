//! The page-fault handler (`do_page_fault`, `handle_mm_fault`, `do_anonymous_page`,
//! `do_wp_page`, the shared-page fault).
//!
//! Every handler that must allocate drops its pte mapping and the page-table lock first (the
//! allocation may sleep), then retakes the lock, remaps the pte and re-checks that it did not
//! change meanwhile (`pte_same`); if it did, someone else handled the fault and the new page
//! is given back. The common case, a write to a never-touched private anonymous page, takes
//! its page before the first mapping instead (see `do_page_fault`), so it maps the pte page
//! once.

mod handlers;

use crate::counters::Counter;
use crate::ctx::{Ctx, SleepCtx};
use crate::errno::Signal;
use crate::kernel::Kernel;
use crate::mm::shm::ObjSlot;
use crate::mm::tlb::PendingFlush;
use crate::mm::vma::{Backing, Vma};
use crate::mm::Mm;
use crate::page_alloc::{PageFlags, PageOwner, GFP_HIGHUSER};
use crate::platform::{KernelEvent, Platform, TaskId, TracePoint};
use highpte_arch::{EntryFlags, PageFaultErrorCode, PagingMode, Pfn, SwapEntry, VirtAddr};

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

/// What ends a fault attempt before its handler is done: no memory (the OOM path), or
/// SIGBUS.
enum AttemptEnd {
    NoMemory,
    Sigbus,
}

/// What the attempts of one fault hold between them, given back at the end if unused.
#[derive(Default)]
struct FaultHeld {
    /// A zeroed page for a demand-zero, copy-on-write or shared-object fault.
    new_page: Option<Pfn>,
    /// A page read in from this swap entry.
    swapped: Option<(SwapEntry, Pfn)>,
    /// A page-cache page (with a reference) of the file mapping at this index.
    file_page: Option<(u32, Pfn)>,
}

/// Whether the VMA allows the access the error code reports (and the entry had no reserved
/// bit set).
fn fault_allowed(vma: &Vma, code: PageFaultErrorCode) -> bool {
    let allowed = if code.contains(PageFaultErrorCode::WRITE) {
        vma.writable()
    } else if code.contains(PageFaultErrorCode::INSTR) {
        vma.prot & crate::mm::PROT_EXEC != 0
    } else {
        vma.readable()
    };
    allowed && !code.contains(PageFaultErrorCode::RSVD)
}

/// How many times one fault waits for an OOM victim to exit and tries again before the
/// faulting task is killed itself (see `fault_oom`).
const OOM_FAULT_WAITS: u32 = 4;

/// What one `handle_mm_fault` call asks its attempt to do next.
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
        let write = code.contains(PageFaultErrorCode::WRITE);
        if p.tracing() {
            p.trace(TracePoint::FaultEnter { addr, write });
        }
        // waits of this fault for an OOM victim to exit
        let mut oom_waits = 0;
        let out = loop {
            match self.fault_attempt(cx, pid, addr, code) {
                Ok(out) => break out,
                Err(NoMemory) => {
                    if let Some(out) = self.fault_oom(cx, pid, &mut oom_waits) {
                        break out;
                    }
                }
            }
        };
        let p = cx.p();
        if p.tracing() {
            let signal = match out {
                FaultOutcome::Handled => None,
                FaultOutcome::Signal(s) => Some(s),
            };
            p.trace(TracePoint::FaultExit { signal });
        }
        out
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
        let vmas = mm.mmap_sem.read(cx, "do_page_fault");
        let Some(vma) = vmas.containing(addr.as_u32()).cloned() else {
            self.counters.inc(Counter::FaultsSigsegv);
            return Ok(FaultOutcome::Signal(Signal::Sigsegv));
        };
        if !fault_allowed(&vma, code) {
            self.counters.inc(Counter::FaultsSigsegv);
            return Ok(FaultOutcome::Signal(Signal::Sigsegv));
        }
        // room for the reverse-map entry this fault may add (rmap reclaim only)
        if self.rmap_reserve(cx, 1).is_err() {
            drop(vmas);
            return Err(NoMemory);
        }
        let mut held = FaultHeld::default();
        match self.fault_prealloc(cx, &mm, &vma, addr, code) {
            Ok(page) => held.new_page = page,
            Err(NoMemory) => {
                drop(vmas);
                return Err(NoMemory);
            }
        }
        loop {
            let step = self.handle_mm_fault(cx, &mm, &vma, addr, write, &mut held);
            if !matches!(step, Step::FileRead(_) | Step::Retry | Step::Done) {
                if let Some((_, pfn)) = held.file_page.take() {
                    self.page_cache_release(cx, pfn);
                }
            }
            match self.fault_step(cx, &vma, step, &mut held) {
                Ok(true) => break,
                Ok(false) => {}
                Err(AttemptEnd::NoMemory) => {
                    drop(vmas);
                    self.fault_release(cx, &mut held);
                    return Err(NoMemory);
                }
                Err(AttemptEnd::Sigbus) => {
                    self.fault_release(cx, &mut held);
                    self.counters.inc(Counter::FaultsSigbus);
                    return Ok(FaultOutcome::Signal(Signal::Sigbus));
                }
            }
        }
        // raced: someone else populated the pte
        self.fault_release(cx, &mut held);
        Ok(FaultOutcome::Handled)
    }

    /// `do_anonymous_page`, page first: a write that found no translation (P clear in the
    /// error code) in a private anonymous VMA whose pte page exists will, unless it raced or
    /// finds a swap entry, need a new zeroed page. Allocate and clear it now, while nothing is
    /// mapped and no spinlock is held (it may sleep), so the handler maps the pte page once:
    /// map, see pte_none, install. Without this it maps, finds pte_none, drops everything to
    /// allocate, and maps again. A present pte (P set: copy-on-write, or a spurious fault) is
    /// left to the handler, which often reuses the old page and would waste this one; if the
    /// pte changed meanwhile, the page is given back at the end.
    fn fault_prealloc<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        mm: &Mm,
        vma: &Vma,
        addr: VirtAddr,
        code: PageFaultErrorCode,
    ) -> Result<Option<Pfn>, NoMemory> {
        if code.contains(PageFaultErrorCode::WRITE)
            && !code.contains(PageFaultErrorCode::PRESENT)
            && matches!(vma.backing, Backing::Anon)
            && self.pmd_offset(cx.p(), &mm.pgd, addr).is_present()
        {
            return match self.alloc_zeroed_user_page(cx, "do_anonymous_page") {
                Some(pfn) => Ok(Some(pfn)),
                None => Err(NoMemory),
            };
        }
        Ok(None)
    }

    /// Do what `handle_mm_fault` asked for before it is called again: read a page in (from
    /// swap, a shared object's swap or the file) or allocate one, with nothing mapped and no
    /// spinlock held. `Ok(true)`: the fault is done; `Ok(false)`: try again. On `Err` the
    /// caller gives back what `held` holds.
    fn fault_step<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        vma: &Vma,
        step: Step,
        held: &mut FaultHeld,
    ) -> Result<bool, AttemptEnd> {
        match step {
            Step::Done => return Ok(true),
            Step::ShmSwapIn(idx, e) => self.shm_swapin(cx, vma, idx, e)?,
            Step::Retry => {}
            Step::FileRead(idx) => {
                // filemap_nopage's read: nothing mapped, no spinlock held
                if let Some((_, old)) = held.file_page.take() {
                    self.page_cache_release(cx, old);
                }
                match self.filemap_nopage(cx, vma, idx) {
                    Ok(pfn) => held.file_page = Some((idx, pfn)),
                    Err(crate::mm::filemap::NoPage::Sigbus) => return Err(AttemptEnd::Sigbus),
                    Err(crate::mm::filemap::NoPage::Oom) => return Err(AttemptEnd::NoMemory),
                }
            }
            Step::SwapIn(e) => {
                // do_swap_page's read: nothing mapped, no spinlock held. A page allocated
                // up front for a demand-zero fault is not needed: give it back before the
                // read sleeps, rather than hold it through the I/O.
                self.fault_release(cx, held);
                match self.swapin_page(cx, e, "do_swap_page") {
                    Some(Some(pfn)) => held.swapped = Some((e, pfn)),
                    Some(None) => {} // the slot went away: the pte changed, retry
                    None => return Err(AttemptEnd::NoMemory),
                }
            }
            Step::NeedPage(site) => {
                // may sleep: no pte mapped, no spinlock held
                match self.alloc_zeroed_user_page(cx, site) {
                    Some(pfn) => held.new_page = Some(pfn),
                    None => return Err(AttemptEnd::NoMemory),
                }
            }
            Step::Oom => return Err(AttemptEnd::NoMemory),
            Step::Sigbus => return Err(AttemptEnd::Sigbus),
        }
        Ok(false)
    }

    /// `shmem_getpage`'s read: page `idx` of the VMA's shared object is on swap at `e`; read
    /// it into a new page with nothing held and install it in the object.
    fn shm_swapin<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        vma: &Vma,
        idx: u32,
        e: SwapEntry,
    ) -> Result<(), AttemptEnd> {
        let Backing::Shared { obj, .. } = &vma.backing else {
            unreachable!("a shared-object fault outside a shared VMA");
        };
        let Some(new) = self.alloc_pages(cx, GFP_HIGHUSER, 0, PageOwner::User, "shmem_getpage")
        else {
            return Err(AttemptEnd::NoMemory);
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
        Ok(())
    }

    /// Give back what the attempts of one fault held and did not use: a page allocated for a
    /// demand-zero or copy-on-write fault, a page read in from swap, a page-cache page.
    fn fault_release<P: Platform>(&self, cx: &Ctx<'_, P>, held: &mut FaultHeld) {
        if let Some(pfn) = held.new_page.take() {
            self.free_pages(cx, pfn, 0);
        }
        if let Some((_, pfn)) = held.swapped.take() {
            self.put_user_page(cx, pfn);
        }
        if let Some((_, pfn)) = held.file_page.take() {
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

    /// `handle_mm_fault` for one attempt. `held.new_page` is a page allocated by a previous
    /// attempt (consumed if used).
    fn handle_mm_fault<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        mm: &Mm,
        vma: &Vma,
        addr: VirtAddr,
        write: bool,
        held: &mut FaultHeld,
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
                    let Some(new) = held.new_page.take() else {
                        return Step::NeedPage("do_wp_page");
                    };
                    drop(map);
                    let Some(old) = self.wp_copy(cur, addr, pte, new, &mut held.new_page) else {
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
            return self.do_swap_page(p, mm, vma, addr, write, e, map, &mut held.swapped);
        }
        if !pte.is_none() {
            // PROT_NONE pte under an accessible vma cannot happen (mprotect rewrites them)
            return Step::Sigbus;
        }
        match &vma.backing {
            Backing::Anon => self.do_anonymous_page(&mut map, mm, addr, write, held),
            Backing::Shared { .. } => self.do_shared_page(&mut map, mm, vma, addr, write, held),
            Backing::File { .. } => {
                use crate::mm::filemap::FileFault;
                let file_page = &mut held.file_page;
                match self.filemap_fault_pte(p, &mut map, mm, vma, addr, write, file_page) {
                    FileFault::Done => Step::Done,
                    FileFault::Retry => Step::Retry,
                    FileFault::Read(idx) => Step::FileRead(idx),
                    FileFault::Sigbus => Step::Sigbus,
                }
            }
        }
    }
}
