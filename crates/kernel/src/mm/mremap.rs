//! `mremap`: grow or shrink in place, or move the page tables (`move_page_tables`, with two
//! ptes mapped at once) when `MREMAP_MAYMOVE` allows it.

use crate::ctx::SleepCtx;
use crate::errno::Errno;
use crate::kernel::Kernel;
use crate::mm::*;
use crate::platform::{Platform, TaskId};
use highpte_arch::{PagingMode, PAGE_SIZE};

/// `sys_mremap`'s checks of its arguments, in Linux's order, before any VMA is looked at.
/// Returns the lengths rounded up to pages (saturating: an overflowing length stays too big)
/// and whether `MREMAP_FIXED` was asked for.
fn mremap_check(
    old: u32,
    old_len: u64,
    new_len: u64,
    flags: u32,
    new_addr: u32,
) -> Result<(u64, u64, bool), Errno> {
    if flags & !(MREMAP_MAYMOVE | MREMAP_FIXED) != 0 || old as u64 & (PAGE_SIZE - 1) != 0 {
        return Err(Errno::EINVAL);
    }
    if flags & MREMAP_FIXED != 0 && flags & MREMAP_MAYMOVE == 0 {
        return Err(Errno::EINVAL);
    }
    // saturating: an overflowing length stays too big
    let old_len = old_len.div_ceil(PAGE_SIZE).saturating_mul(PAGE_SIZE);
    let new_len = new_len.div_ceil(PAGE_SIZE).saturating_mul(PAGE_SIZE);
    // old_len 0 asks for a second mapping of the same pages of a shared mapping; that
    // is not implemented: EINVAL (Linux's answer for a private mapping, and without
    // MREMAP_MAYMOVE)
    if new_len == 0 || old_len == 0 {
        return Err(Errno::EINVAL);
    }
    let fixed = flags & MREMAP_FIXED != 0;
    // the new range of MREMAP_FIXED is checked before the old one, as in Linux
    if fixed {
        if new_addr as u64 & (PAGE_SIZE - 1) != 0 {
            return Err(Errno::EINVAL);
        }
        if (new_addr as u64).saturating_add(new_len) > TASK_SIZE as u64 {
            return Err(Errno::EINVAL);
        }
        let (a, b) = (new_addr as u64, new_addr as u64 + new_len);
        if a < (old as u64).saturating_add(old_len) && (old as u64) < b {
            return Err(Errno::EINVAL);
        }
    }
    Ok((old_len, new_len, fixed))
}

impl<M: PagingMode> Kernel<M> {
    /// `mremap(old, old_len, new_len, flags, new_addr)`.
    #[allow(clippy::too_many_arguments)]
    pub fn sys_mremap<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        pid: TaskId,
        old: u32,
        old_len: u64,
        new_len: u64,
        flags: u32,
        new_addr: u32,
    ) -> Result<u32, Errno> {
        let r = self.mremap_inner(cx, pid, old, old_len, new_len, flags, new_addr);
        if r.is_err() {
            self.vma_resettle(cx, pid);
        }
        r
    }

    #[allow(clippy::too_many_arguments)]
    fn mremap_inner<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        pid: TaskId,
        old: u32,
        old_len: u64,
        new_len: u64,
        flags: u32,
        new_addr: u32,
    ) -> Result<u32, Errno> {
        let p = cx.p();
        self.syscall_enter(p, "sys_mremap");
        let (old_len, new_len, fixed) = mremap_check(old, old_len, new_len, flags, new_addr)?;
        let mm = self.mm_of(pid).ok_or(Errno::ESRCH)?;
        // worst case: the target and the tail unmapped in the middle of VMAs, the moved
        // range split out of its VMA and landing between two others
        self.vma_precharge_extra(cx, &mm, 4)?;
        let mut vmas = mm.mmap_sem.write(cx, "sys_mremap");
        let mut removed = alloc::vec::Vec::new();
        if fixed {
            // the target goes first, before the old range is looked at (as in Linux 2.6:
            // a later EFAULT leaves it unmapped)
            let b = new_addr as u64 + new_len;
            let r = vmas.remove_range(new_addr, b as u32);
            if !r.is_empty() {
                self.unmap_region(cx, &mm, &vmas, new_addr, b);
            }
            removed.extend(r);
        }
        let mut old_len = old_len;
        if new_len <= old_len {
            // shrinking needs no VMA: the tail is unmapped (with munmap's range check), and
            // without MREMAP_FIXED that is all; equal lengths do nothing at all
            if new_len < old_len {
                let s = old as u64 + new_len;
                let e = (old as u64).saturating_add(old_len);
                if e > TASK_SIZE as u64 {
                    drop(vmas);
                    self.release_vmas(cx, removed);
                    return self.mremap_done(cx, &mm, Err(Errno::EINVAL));
                }
                let r = vmas.remove_range(s as u32, e as u32);
                if !r.is_empty() {
                    self.unmap_region(cx, &mm, &vmas, s as u32, e);
                }
                removed.extend(r);
            }
            if !fixed {
                drop(vmas);
                self.release_vmas(cx, removed);
                return self.mremap_done(cx, &mm, Ok(old));
            }
            old_len = new_len;
        }
        // growing or moving: the old range must lie in one VMA (a range past TASK_SIZE is
        // in none: EFAULT, as in Linux)
        let vma = vmas.containing(old).cloned();
        let vma = match vma {
            Some(v) if (old as u64).saturating_add(old_len) <= v.end as u64 => v,
            _ => {
                drop(vmas);
                self.release_vmas(cx, removed);
                return self.mremap_done(cx, &mm, Err(Errno::EFAULT));
            }
        };
        if fixed {
            drop(vmas);
            self.release_vmas(cx, removed);
            let r = self.move_vma(cx, &mm, old, old_len, new_len, new_addr);
            return self.mremap_done(cx, &mm, r);
        }
        debug_assert!(removed.is_empty());
        // grow: in place if the range is the end of its vma and the space after it is free
        let grow_end = (old as u64).saturating_add(new_len);
        if old as u64 + old_len == vma.end as u64
            && grow_end <= TASK_SIZE as u64
            && !vmas.any_overlap(vma.end, grow_end)
        {
            let mut ext = vma.split_off(vma.end);
            ext.start = vma.end;
            ext.end = grow_end as u32;
            vmas.insert(ext);
            drop(vmas);
            return self.mremap_done(cx, &mm, Ok(old));
        }
        if flags & MREMAP_MAYMOVE == 0 {
            return Err(Errno::ENOMEM);
        }
        // get_unmapped_area: longer than the user space is ENOMEM
        if new_len > TASK_SIZE as u64 {
            return Err(Errno::ENOMEM);
        }
        let Some(dest) = vmas.free_area(TASK_UNMAPPED_BASE, new_len as u32, TASK_SIZE) else {
            return Err(Errno::ENOMEM);
        };
        drop(vmas);
        let r = self.move_vma(cx, &mm, old, old_len, new_len, dest);
        self.mremap_done(cx, &mm, r)
    }

    fn mremap_done<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        mm: &Mm,
        r: Result<u32, Errno>,
    ) -> Result<u32, Errno> {
        let n = mm.mmap_sem.read(cx, "mremap").len();
        self.vma_settle(cx, mm, n);
        r
    }

    /// `move_vma`: move `[old, old+old_len)` to `dest` with length `new_len`.
    fn move_vma<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        mm: &Mm,
        old: u32,
        old_len: u64,
        new_len: u64,
        dest: u32,
    ) -> Result<u32, Errno> {
        let mut old_len = old_len;
        if new_len < old_len {
            // moving and shrinking: drop the tail first
            self.do_munmap(
                cx,
                mm,
                (old as u64 + new_len) as u32,
                (old as u64 + old_len) as u32,
            );
            old_len = new_len;
        }
        let mut vmas = mm.mmap_sem.write(cx, "move_vma");
        let moved = vmas.remove_range(old, (old as u64 + old_len) as u32);
        // page tables first, with the VMAs out of the way (nobody can fault: we hold mmap_sem)
        let len = old_len.min(new_len) as u32;
        match self.move_page_tables(cx, mm, old, dest, len) {
            Ok(flush) => flush.flush(self, cx),
            Err(_) => {
                // put things back where they were (moved ptes stay valid where they went: move
                // them back)
                if let Ok(flush) = self.move_page_tables(cx, mm, dest, old, len) {
                    flush.flush(self, cx);
                }
                for v in moved {
                    vmas.insert(v);
                }
                let empty = vmas.clone();
                self.free_pgtables(cx, mm, &empty, dest, dest as u64 + new_len);
                return Err(Errno::ENOMEM);
            }
        }
        let mut off = 0u32;
        let mut tail_end = dest;
        for mut v in moved {
            let l = v.end - v.start;
            let s = dest + off;
            v.start = s;
            v.end = s + l;
            off += l;
            tail_end = v.end;
            vmas.insert(v);
        }
        if new_len > old_len {
            // the grown part is like the last piece
            if let Some(last) = vmas.containing(tail_end - 1).cloned() {
                let mut ext = last.split_off(last.end);
                ext.start = tail_end;
                ext.end = (dest as u64 + new_len) as u32;
                vmas.insert(ext);
            }
        }
        let empty = vmas.clone();
        self.free_pgtables(cx, mm, &empty, old, old as u64 + old_len);
        Ok(dest)
    }
}
