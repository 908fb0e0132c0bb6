//! Rule 6: a `PteMap` borrows the page-table lock guard, so the lock cannot be released (the
//! guard dropped, or `unlocked(..)` around some work) while a pte is mapped: "keeping a pte
//! across a lock drop" cannot be written.
//!
//! Linux mistake it stops: `spin_unlock(&mm->page_table_lock)` with the pte still mapped, then
//! using the pte (or relocking and trusting the old pointer and value). Another thread of the
//! mm (or kswapd, or munmap freeing the pte page) may change or free the table meanwhile; the
//! fault handlers must `pte_unmap`, unlock, do the work, relock, remap and re-check
//! (`pte_same`).
#![allow(dead_code)]

use highpte_arch::{PagingMode, VirtAddr};
use highpte_kernel::pgtable::{pte_offset_map, UserPgd};
use highpte_kernel::{Kernel, Platform, SleepCtx, SpinLock};

/// Drop the guard (`spin_unlock`) while the pte is still mapped.
fn unlock_while_mapped<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    pgd: &UserPgd,
    ptl: &SpinLock<()>,
    addr: VirtAddr,
) {
    let pmd = k.pmd_offset(cx.p(), pgd, addr);
    let mut guard = ptl.lock(cx.p());
    let mut map = pte_offset_map(k, cx, &mut guard, &pmd, addr);
    let old = map.get(addr);
    drop(guard); // spin_unlock(&mm->page_table_lock)
    map.set(addr, old);
}

/// `spin_unlock; ...; spin_lock` around work, with the pte still mapped.
fn unlocked_while_mapped<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    pgd: &UserPgd,
    ptl: &SpinLock<()>,
    addr: VirtAddr,
) {
    let pmd = k.pmd_offset(cx.p(), pgd, addr);
    let mut guard = ptl.lock(cx.p());
    let mut map = pte_offset_map(k, cx, &mut guard, &pmd, addr);
    let old = map.get(addr);
    guard.unlocked(|| ());
    map.set(addr, old);
}

fn main() {}
