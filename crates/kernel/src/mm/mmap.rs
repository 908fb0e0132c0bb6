//! `mmap`, `munmap`, `mprotect`, `brk` with Linux's semantics and error numbers.

use crate::counters::Counter;
use crate::ctx::SleepCtx;
use crate::errno::Errno;
use crate::kernel::Kernel;
use crate::kobj::KObj;
use crate::mm::fault::FaultOutcome;
use crate::mm::shm::ShmObject;
use crate::mm::vma::{Backing, Vma};
use crate::mm::*;
use crate::platform::{KernelEvent, Platform, TaskId};
use alloc::rc::Rc;
use highpte_arch::{PageFaultErrorCode, PagingMode, VirtAddr, PAGE_SHIFT, PAGE_SIZE};

/// `PROT_SEM`: accepted by `mprotect` (the memory may hold atomic semaphores); no effect.
pub const PROT_SEM: u32 = 0x8;
/// `PROT_GROWSDOWN`: `mprotect` extends the change down to the start of a `VM_GROWSDOWN`
/// VMA (there are none here: EINVAL where Linux would find a VMA without the flag).
pub const PROT_GROWSDOWN: u32 = 0x0100_0000;
/// `PROT_GROWSUP`: the same upwards (no VMA grows up on i386: EINVAL).
pub const PROT_GROWSUP: u32 = 0x0200_0000;

/// Round up to a page; saturates (an overflowing length stays too big rather than wrapping
/// to a small one, as Linux's `PAGE_ALIGN(len) == 0` check catches).
fn page_align(len: u64) -> u64 {
    len.div_ceil(PAGE_SIZE).saturating_mul(PAGE_SIZE)
}

/// An `mmap` request that passed `do_mmap_pgoff`'s checks.
struct MmapRequest {
    /// The length, page aligned.
    len: u64,
    /// `PROT_READ | PROT_WRITE | PROT_EXEC` of the requested protection.
    prot: u32,
    /// `MAP_FIXED`.
    fixed: bool,
    /// `MAP_SHARED` (else `MAP_PRIVATE`).
    shared: bool,
    /// False for a shared mapping of a file not open for writing: `mprotect` may never add
    /// `PROT_WRITE`.
    may_write: bool,
}

/// `do_mmap_pgoff`'s checks of an `mmap` request, in Linux's order, after the offset's
/// alignment and `fget`; `file` is the open file's (readable, writable) for a file mapping.
fn mmap_check(
    addr: u32,
    len: u64,
    prot: u32,
    flags: u32,
    offset: u64,
    file: Option<(bool, bool)>,
) -> Result<MmapRequest, Errno> {
    if len == 0 {
        return Err(Errno::EINVAL);
    }
    let len = page_align(len);
    if len > TASK_SIZE as u64 {
        return Err(Errno::ENOMEM);
    }
    // prot bits other than R/W/X are ignored, as Linux's calc_vm_prot_bits does
    let prot = prot & (PROT_READ | PROT_WRITE | PROT_EXEC);
    let fixed = flags & MAP_FIXED != 0;
    if fixed && addr as u64 + len > TASK_SIZE as u64 {
        return Err(Errno::ENOMEM);
    }
    if fixed && (addr as u64 & (PAGE_SIZE - 1) != 0) {
        return Err(Errno::EINVAL);
    }
    // MAP_TYPE is the low nibble: exactly MAP_SHARED or MAP_PRIVATE
    let kind = flags & 0x0f;
    if kind != MAP_SHARED && kind != MAP_PRIVATE {
        return Err(Errno::EINVAL);
    }
    let mut may_write = true;
    if let Some((readable, writable)) = file {
        // do_mmap_pgoff: the page offset must not wrap; a shared writable mapping needs
        // a descriptor open for writing, every file mapping one open for reading
        if (offset >> PAGE_SHIFT) + (len >> PAGE_SHIFT) > u32::MAX as u64 {
            return Err(Errno::EOVERFLOW);
        }
        if kind == MAP_SHARED && !writable {
            if prot & PROT_WRITE != 0 {
                return Err(Errno::EACCES);
            }
            may_write = false;
        }
        if !readable {
            return Err(Errno::EACCES);
        }
    }
    Ok(MmapRequest {
        len,
        prot,
        fixed,
        shared: kind == MAP_SHARED,
        may_write,
    })
}

impl<M: PagingMode> Kernel<M> {
    /// Account a system call entered from outside the kernel crate's own entry points.
    pub fn syscall_stats_enter<P: Platform>(&self, p: &P, name: &'static str) {
        self.syscall_enter(p, name);
    }

    pub(crate) fn syscall_enter<P: Platform>(&self, p: &P, name: &'static str) {
        p.charge(KernelEvent::Syscall);
        p.set_where(name);
        self.counters.inc(Counter::Syscalls);
        if p.tracing() {
            p.trace(crate::platform::TracePoint::SyscallEnter { name });
        }
    }

    /// Charge kernel memory for up to `n` more VMAs before changing the set, so a change that
    /// splits VMAs can fail cleanly with ENOMEM.
    pub(crate) fn vma_precharge_n<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        mm: &Mm,
        n: usize,
    ) -> Result<(), Errno> {
        for _ in 0..n {
            self.kobj_charge(cx, KObj::Vma, 0)
                .map_err(|_| Errno::ENOMEM)?;
            mm.charged_vmas.set(mm.charged_vmas.get() + 1);
        }
        Ok(())
    }

    /// [`Kernel::vma_precharge_n`] for the worst case of one change (two splits).
    pub(crate) fn vma_precharge<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        mm: &Mm,
    ) -> Result<(), Errno> {
        self.vma_precharge_extra(cx, mm, 2)
    }

    /// Charge for the VMAs there are plus `extra` more (a change adding up to `extra`).
    pub(crate) fn vma_precharge_extra<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        mm: &Mm,
        extra: usize,
    ) -> Result<(), Errno> {
        let have = mm.charged_vmas.get();
        let len = mm.mmap_sem.read(cx, "vma_precharge").len();
        let want = len + extra;
        if want > have {
            self.vma_precharge_n(cx, mm, want - have)?;
        }
        Ok(())
    }

    /// Bring the VMA charge to the actual count.
    pub(crate) fn vma_settle<P: Platform>(&self, cx: &SleepCtx<'_, P>, mm: &Mm, count: usize) {
        while mm.charged_vmas.get() > count {
            self.kobj_uncharge(cx, KObj::Vma, 0);
            mm.charged_vmas.set(mm.charged_vmas.get() - 1);
        }
    }

    /// After a system call failed: give back the VMA charge taken in advance for a change that
    /// did not happen (the charge follows the number of VMAs exactly).
    pub(crate) fn vma_resettle<P: Platform>(&self, cx: &mut SleepCtx<'_, P>, pid: TaskId) {
        if let Some(mm) = self.mm_of(pid) {
            let n = mm.mmap_sem.read(cx, "vma_settle").len();
            self.vma_settle(cx, &mm, n);
        }
    }

    /// `mmap(addr, len, prot, flags, fd, offset)`: anonymous memory (`MAP_ANONYMOUS`, `fd`
    /// ignored) or a file mapping of the open file `fd` from byte `offset`.
    #[allow(clippy::too_many_arguments)]
    pub fn sys_mmap<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        pid: TaskId,
        addr: u32,
        len: u64,
        prot: u32,
        flags: u32,
        fd: i32,
        offset: u64,
    ) -> Result<u32, Errno> {
        let r = self.mmap_inner(cx, pid, addr, len, prot, flags, fd, offset);
        if r.is_err() {
            self.vma_resettle(cx, pid);
        }
        r
    }

    #[allow(clippy::too_many_arguments)]
    fn mmap_inner<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        pid: TaskId,
        addr: u32,
        len: u64,
        prot: u32,
        flags: u32,
        fd: i32,
        offset: u64,
    ) -> Result<u32, Errno> {
        let p = cx.p();
        self.syscall_enter(p, "sys_mmap");
        // the checks in Linux's order: old_mmap's offset, fget, do_mmap, get_unmapped_area,
        // then the mapping type
        if offset & (PAGE_SIZE - 1) != 0 {
            return Err(Errno::EINVAL);
        }
        // a file mapping: the open file's inode and access mode (fget)
        let file = if flags & MAP_ANONYMOUS == 0 {
            let f = self.fget(pid, fd)?;
            let r = (f.inode.clone(), f.readable, f.writable);
            self.fput(cx, f);
            Some(r)
        } else {
            None
        };
        let access = file.as_ref().map(|(_, r, w)| (*r, *w));
        let req = mmap_check(addr, len, prot, flags, offset, access)?;
        let mm = self.mm_of(pid).ok_or(Errno::ESRCH)?;
        self.vma_precharge(cx, &mm)?;
        let backing = self.mmap_backing(cx, file.map(|(inode, ..)| inode), &req, offset)?;
        let mut vmas = mm.mmap_sem.write(cx, "sys_mmap");
        if vmas.len() >= self.opts.max_map_count {
            drop(vmas);
            self.release_backing(cx, backing);
            return Err(Errno::ENOMEM);
        }
        let Some(start) = self.mmap_place(cx, &mm, &mut vmas, addr, &req) else {
            drop(vmas);
            self.release_backing(cx, backing);
            return Err(Errno::ENOMEM);
        };
        vmas.insert(Vma {
            start,
            end: (start as u64 + req.len) as u32,
            prot: req.prot,
            backing,
            heap: false,
            may_write: req.may_write,
        });
        let n = vmas.len();
        drop(vmas);
        self.vma_settle(cx, &mm, n);
        if flags & MAP_POPULATE != 0 {
            self.populate(cx, pid, start, req.len, req.prot & PROT_WRITE != 0);
        }
        Ok(start)
    }

    /// What a new mapping maps: the file from `offset`, a new shared object (charged as
    /// kernel memory) for `MAP_SHARED | MAP_ANONYMOUS`, or private anonymous memory.
    fn mmap_backing<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        file: Option<Rc<crate::fs::Inode>>,
        req: &MmapRequest,
        offset: u64,
    ) -> Result<Backing, Errno> {
        Ok(if let Some(inode) = file {
            Backing::File {
                file: inode,
                pgoff: (offset >> PAGE_SHIFT) as u32,
                shared: req.shared,
            }
        } else if req.shared {
            self.kobj_charge(cx, KObj::ShmSeg, req.len / PAGE_SIZE * 8)
                .map_err(|_| Errno::ENOMEM)?;
            let obj = Rc::new(ShmObject::new(0, req.len));
            self.register_shared_object(&obj);
            Backing::Shared {
                obj,
                pgoff: 0,
                shmid: None,
            }
        } else {
            Backing::Anon
        })
    }

    /// `get_unmapped_area`: where the new mapping goes. `MAP_FIXED` takes `addr` and unmaps
    /// whatever was there; otherwise the page-aligned hint if it is free, else the first free
    /// area from `TASK_UNMAPPED_BASE`. `None`: no room.
    fn mmap_place<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        mm: &Mm,
        vmas: &mut VmaSet,
        addr: u32,
        req: &MmapRequest,
    ) -> Option<u32> {
        let len = req.len;
        if req.fixed {
            // MAP_FIXED replaces whatever was there
            let old = vmas.remove_range(addr, (addr as u64 + len) as u32);
            if !old.is_empty() {
                self.unmap_region(cx, mm, vmas, addr, addr as u64 + len);
                self.release_vmas(cx, old);
            }
            return Some(addr);
        }
        let hint = (addr as u64).div_ceil(PAGE_SIZE) * PAGE_SIZE;
        if hint != 0 && hint + len <= TASK_SIZE as u64 && !vmas.any_overlap(hint as u32, hint + len)
        {
            return Some(hint as u32);
        }
        vmas.free_area(TASK_UNMAPPED_BASE, len as u32, TASK_SIZE)
    }

    fn release_backing<P: Platform>(&self, cx: &crate::ctx::Ctx<'_, P>, b: Backing) {
        match b {
            Backing::Shared { obj, .. } => self.shm_release(cx, obj),
            Backing::File { file, .. } => self.iput(cx, file),
            Backing::Anon => {}
        }
    }

    /// Drop VMAs taken out of an address space, releasing the shared objects they were the
    /// last users of.
    pub(crate) fn release_vmas<P: Platform>(
        &self,
        cx: &crate::ctx::Ctx<'_, P>,
        vmas: alloc::vec::Vec<crate::mm::Vma>,
    ) {
        for v in vmas {
            self.release_backing(cx, v.backing);
        }
    }

    /// `MAP_POPULATE` / `make_pages_present`: fault in every page (stops at the first failure,
    /// as Linux does: the mapping stays).
    pub fn populate<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        pid: TaskId,
        start: u32,
        len: u64,
        write: bool,
    ) {
        let code = PageFaultErrorCode::USER
            | if write {
                PageFaultErrorCode::WRITE
            } else {
                PageFaultErrorCode::empty()
            };
        let mut a = start as u64;
        while a < start as u64 + len {
            if self.do_page_fault(cx, pid, VirtAddr::new(a as u32), code) != FaultOutcome::Handled {
                break;
            }
            a += PAGE_SIZE;
        }
    }

    /// The VMAs of a process as `(start, end, prot)`, in order (for reports and tests).
    pub fn vma_list<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        pid: TaskId,
    ) -> alloc::vec::Vec<(u32, u32, u32)> {
        let Some(mm) = self.mm_of(pid) else {
            return alloc::vec::Vec::new();
        };
        let vmas = mm.mmap_sem.read(cx, "vma_list");
        vmas.iter().map(|v| (v.start, v.end, v.prot)).collect()
    }

    /// The current break of a process.
    pub fn brk_of<P: Platform>(&self, cx: &mut SleepCtx<'_, P>, pid: TaskId) -> Option<u32> {
        let mm = self.mm_of(pid)?;
        let b = mm.mmap_sem.read(cx, "brk_of").brk;
        Some(b)
    }

    /// `munmap(addr, len)`.
    pub fn sys_munmap<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        pid: TaskId,
        addr: u32,
        len: u64,
    ) -> Result<(), Errno> {
        let r = self.munmap_inner(cx, pid, addr, len);
        if r.is_err() {
            self.vma_resettle(cx, pid);
        }
        r
    }

    fn munmap_inner<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        pid: TaskId,
        addr: u32,
        len: u64,
    ) -> Result<(), Errno> {
        let p = cx.p();
        self.syscall_enter(p, "sys_munmap");
        if addr as u64 & (PAGE_SIZE - 1) != 0 || len == 0 {
            return Err(Errno::EINVAL);
        }
        let len = page_align(len);
        if len > TASK_SIZE as u64 || addr as u64 + len > TASK_SIZE as u64 {
            return Err(Errno::EINVAL);
        }
        let mm = self.mm_of(pid).ok_or(Errno::ESRCH)?;
        self.vma_precharge(cx, &mm)?;
        self.do_munmap(cx, &mm, addr, (addr as u64 + len) as u32);
        Ok(())
    }

    /// `do_munmap`: remove `[start, end)` (which may hold holes) from an mm.
    pub(crate) fn do_munmap<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        mm: &Mm,
        start: u32,
        end: u32,
    ) {
        let mut vmas = mm.mmap_sem.write(cx, "do_munmap");
        let removed = vmas.remove_range(start, end);
        if !removed.is_empty() {
            self.unmap_region(cx, mm, &vmas, start, end as u64);
        }
        let n = vmas.len();
        drop(vmas);
        self.release_vmas(cx, removed);
        self.vma_settle(cx, mm, n);
    }

    /// `mprotect(addr, len, prot)`.
    pub fn sys_mprotect<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        pid: TaskId,
        addr: u32,
        len: u64,
        prot: u32,
    ) -> Result<(), Errno> {
        let r = self.mprotect_inner(cx, pid, addr, len, prot);
        if r.is_err() {
            self.vma_resettle(cx, pid);
        }
        r
    }

    fn mprotect_inner<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        pid: TaskId,
        addr: u32,
        len: u64,
        prot: u32,
    ) -> Result<(), Errno> {
        let p = cx.p();
        self.syscall_enter(p, "sys_mprotect");
        // Linux's order: both growth flags, alignment, zero length, end wrapping around,
        // prot bits; then the VMA at the start and the growth flags
        let grows = prot & (PROT_GROWSDOWN | PROT_GROWSUP);
        if grows == PROT_GROWSDOWN | PROT_GROWSUP {
            return Err(Errno::EINVAL);
        }
        if addr as u64 & (PAGE_SIZE - 1) != 0 {
            return Err(Errno::EINVAL);
        }
        if len == 0 {
            return Ok(());
        }
        let len = page_align(len);
        // on i386 the end is 32 bits: reaching 4 GB wraps it to 0 (or below the start)
        let end = (addr as u64).saturating_add(len);
        if end >= 1 << 32 {
            return Err(Errno::ENOMEM);
        }
        let prot = prot & !grows;
        if prot & !(PROT_READ | PROT_WRITE | PROT_EXEC | PROT_SEM) != 0 {
            return Err(Errno::EINVAL);
        }
        // PROT_SEM is accepted and means nothing here
        let prot = prot & (PROT_READ | PROT_WRITE | PROT_EXEC);
        let mm = self.mm_of(pid).ok_or(Errno::ESRCH)?;
        self.vma_precharge(cx, &mm)?;
        let mut vmas = mm.mmap_sem.write(cx, "sys_mprotect");
        // the first VMA ending above the start
        let Some(first) = vmas.find(addr).map(|v| v.start) else {
            return Err(Errno::ENOMEM);
        };
        if grows == PROT_GROWSDOWN {
            // the range would be extended down to the start of a VM_GROWSDOWN VMA; there
            // are none here (no MAP_GROWSDOWN), so a VMA reaching into the range is EINVAL
            return Err(if first as u64 >= end {
                Errno::ENOMEM
            } else {
                Errno::EINVAL
            });
        }
        if first > addr {
            return Err(Errno::ENOMEM);
        }
        if grows == PROT_GROWSUP {
            // VM_GROWSUP does not exist on i386: never a growing-up VMA
            return Err(Errno::EINVAL);
        }
        // walk the range VMA by VMA, as Linux does: each is changed in turn, so when a hole
        // (ENOMEM) or a VMA that may not be made writable (EACCES, SHM_RDONLY) stops the
        // walk, everything before it has been changed already
        let mut done = addr as u64;
        let mut err = None;
        for v in vmas.overlapping(addr, end) {
            if (v.start as u64) > done {
                err = Some(Errno::ENOMEM);
                break;
            }
            if prot & PROT_WRITE != 0 && !v.may_write {
                err = Some(Errno::EACCES);
                break;
            }
            done = (v.end as u64).min(end);
        }
        if err.is_none() && done < end {
            err = Some(Errno::ENOMEM);
        }
        if done > addr as u64 {
            let pieces = vmas.remove_range(addr, done as u32);
            for mut v in pieces {
                v.prot = prot;
                self.change_protection(cx, &mm, v.start, v.end, &v)
                    .flush(self, cx);
                vmas.insert(v);
            }
        }
        let n = vmas.len();
        drop(vmas);
        self.vma_settle(cx, &mm, n);
        match err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// `brk(addr)`: returns the new break, or the current one if the request fails or is 0.
    pub fn sys_brk<P: Platform>(&self, cx: &mut SleepCtx<'_, P>, pid: TaskId, addr: u32) -> u32 {
        let p = cx.p();
        self.syscall_enter(p, "sys_brk");
        let Some(mm) = self.mm_of(pid) else { return 0 };
        if self.vma_precharge(cx, &mm).is_err() {
            self.vma_resettle(cx, pid);
            return mm.mmap_sem.read(cx, "sys_brk").brk;
        }
        let mut vmas = mm.mmap_sem.write(cx, "sys_brk");
        let cur = vmas.brk;
        if addr < vmas.start_brk || addr as u64 > TASK_SIZE as u64 {
            drop(vmas);
            self.vma_resettle(cx, pid);
            return cur;
        }
        let new_end = (addr as u64).div_ceil(PAGE_SIZE) * PAGE_SIZE;
        let old_end = (cur as u64).div_ceil(PAGE_SIZE) * PAGE_SIZE;
        let mut removed = alloc::vec::Vec::new();
        if new_end < old_end {
            // (what is mapped there goes, shared mappings placed in the heap included)
            removed = vmas.remove_range(new_end as u32, old_end as u32);
            if !removed.is_empty() {
                self.unmap_region(cx, &mm, &vmas, new_end as u32, old_end);
            }
        } else if new_end > old_end {
            // Linux keeps a page free between the heap and the next mapping
            // (find_vma_intersection(oldbrk, newbrk + PAGE_SIZE))
            if vmas.any_overlap(old_end as u32, new_end + PAGE_SIZE) {
                drop(vmas);
                self.vma_resettle(cx, pid);
                return cur;
            }
            vmas.insert(Vma {
                start: old_end as u32,
                end: new_end as u32,
                prot: PROT_READ | PROT_WRITE,
                backing: Backing::Anon,
                heap: true,
                may_write: true,
            });
        }
        vmas.brk = addr;
        let n = vmas.len();
        drop(vmas);
        for v in removed {
            self.release_backing(cx, v.backing);
        }
        self.vma_settle(cx, &mm, n);
        addr
    }
}
