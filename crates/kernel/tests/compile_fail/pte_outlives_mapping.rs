//! Rule 2: a mapping is a guard; no view of the pte page (a `PteSlot`, a `&PtePage`) can
//! outlive it, because dropping the `PteMap` unmaps the page.
//!
//! Linux mistake it stops: keeping a `pte_t *` after `pte_unmap()` (or returning it from the
//! function that mapped it). With HIGHPTE the pointer is a kmap_atomic slot address that the
//! next `pte_offset_map` on this CPU reuses for another pte page, so the stale pointer
//! silently reads or corrupts someone else's page table (CONFIG_DEBUG_HIGHMEM only turns it
//! into an oops, and only if the slot was not remapped meanwhile).
#![allow(dead_code)]

use highpte_arch::{Entry, PagingMode, VirtAddr};
use highpte_kernel::pgtable::{pte_offset_map, PtePage, PteSlot, UserPgd};
use highpte_kernel::{Kernel, Platform, SleepCtx, SpinLock};

/// A slot kept past the end of the mapping's scope.
fn slot_outlives_scope<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    pgd: &UserPgd,
    ptl: &SpinLock<()>,
    addr: VirtAddr,
) {
    let pmd = k.pmd_offset(cx.p(), pgd, addr);
    let mut guard = ptl.lock(cx.p());
    let mut slot;
    {
        let mut map = pte_offset_map(k, cx, &mut guard, &pmd, addr);
        slot = map.slot(addr);
    } // pte_unmap
    slot.set(Entry::NONE);
}

/// A slot used after an explicit unmap.
fn slot_after_unmap<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    pgd: &UserPgd,
    ptl: &SpinLock<()>,
    addr: VirtAddr,
) {
    let pmd = k.pmd_offset(cx.p(), pgd, addr);
    let mut guard = ptl.lock(cx.p());
    let mut map = pte_offset_map(k, cx, &mut guard, &pmd, addr);
    let slot = map.slot(addr);
    drop(map); // pte_unmap
    let _ = slot.get();
}

/// A `&PtePage` used after an explicit unmap.
fn page_after_unmap<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    pgd: &UserPgd,
    ptl: &SpinLock<()>,
    addr: VirtAddr,
) {
    let pmd = k.pmd_offset(cx.p(), pgd, addr);
    let mut guard = ptl.lock(cx.p());
    let map = pte_offset_map(k, cx, &mut guard, &pmd, addr);
    let page: &PtePage<'_, '_, P, M> = &map;
    drop(map); // pte_unmap
    let _ = page.get(addr);
}

/// A slot returned from the function that mapped (and, on return, unmapped) it.
fn slot_escapes<'k, P: Platform, M: PagingMode>(
    k: &'k Kernel<M>,
    cx: &'k mut SleepCtx<'_, P>,
    pgd: &UserPgd,
    ptl: &'k SpinLock<()>,
    addr: VirtAddr,
) -> PteSlot<'k, P, M> {
    let pmd = k.pmd_offset(cx.p(), pgd, addr);
    let mut guard = ptl.lock(cx.p());
    let mut map = pte_offset_map(k, cx, &mut guard, &pmd, addr);
    map.slot(addr)
}

fn main() {}
