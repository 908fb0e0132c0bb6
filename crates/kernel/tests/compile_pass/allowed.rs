//! The legal patterns of the pte access API compile: the compile-fail cases fail because of
//! the rule they break, not because the API is unusable.
//!
//! - map, read, write, unmap (drop), then sleep (allocate, kmap, cond_resched), then retake
//!   and re-check: the fault handlers' order;
//! - a nested mapping (KM_PTE1) inside a first one, both pages at once (copy_page_range,
//!   move_one_page), and a second nested mapping after the first is dropped;
//! - `pte_offset_map` on a kernel pmd (allowed: a kernel table is low memory);
//! - `pte_offset_kernel` on a kernel pmd;
//! - atomic work while mapped: `alloc_pages_atomic` with the mapping's `cx()`;
//! - `pte_alloc_map`, then unmap, unlock and sleep;
//! - a sleeping lock (`RwSem::read`) after the unmap, and pte work under its guard.
#![allow(dead_code)]

use core::cell::Cell;
use highpte_arch::{Entry, PagingMode, VirtAddr};
use highpte_kernel::page_alloc::{PageOwner, GFP_ATOMIC, GFP_KERNEL};
use highpte_kernel::pgtable::{pte_alloc_map, pte_offset_kernel, pte_offset_map, UserPgd};
use highpte_kernel::{Kernel, Platform, SleepCtx, SpinLock};

/// map, read, set, unmap, then sleep; then relock, remap and re-check (`pte_same`).
fn map_unmap_then_sleep<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    pgd: &UserPgd,
    ptl: &SpinLock<()>,
    addr: VirtAddr,
) {
    let pmd = k.pmd_offset(cx.p(), pgd, addr);
    let mut guard = ptl.lock(cx.p());
    let orig = {
        let mut map = pte_offset_map(k, cx, &mut guard, &pmd, addr);
        let orig = map.get(addr);
        map.set(addr, orig);
        let mut slot = map.slot(addr);
        slot.set(slot.get());
        map.for_each(addr, addr.as_u32() as u64 + 4096, |_, pte| Some(pte));
        orig
    }; // pte_unmap
    guard.unlocked(|| ()); // spin_unlock ... spin_lock, nothing mapped
    drop(guard); // spin_unlock

    // may sleep now
    let page = k.alloc_pages(cx, GFP_KERNEL, 0, PageOwner::User, "do_anonymous_page");
    if let Some(pfn) = page {
        let _va = k.kmap(cx, pfn, "allowed");
        k.kunmap(cx, pfn, "allowed");
    }
    cx.cond_resched();

    // retake, remap, re-check
    let mut guard = ptl.lock(cx.p());
    let pmd = k.pmd_reread(cx.p(), &pmd);
    let mut map = pte_offset_map(k, cx, &mut guard, &pmd, addr);
    if map.get(addr) == orig {
        map.set(addr, Entry::NONE);
    }
    drop(map);
    drop(guard);
}

/// copy_page_range: destination mapped (KM_PTE0), source nested (KM_PTE1), both at once.
fn nested_both<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    pgd: &UserPgd,
    ptl: &SpinLock<()>,
    addr: VirtAddr,
) {
    let pmd = k.pmd_offset(cx.p(), pgd, addr);
    let mut guard = ptl.lock(cx.p());
    let mut dst = pte_offset_map(k, cx, &mut guard, &pmd, addr);
    {
        let mut src = dst.map_nested(&pmd, addr);
        let (mut outer, nested) = src.both();
        outer.set(addr, nested.get(addr));
        let _ = src.outer().get(addr);
        let _ = src.get(addr);
        // atomic allocation with the nested mapping live
        let _ = k.alloc_pages_atomic(src.cx(), GFP_ATOMIC, 0, PageOwner::User, "copy");
    } // pte_unmap_nested
      // a second nested mapping after the first is gone
    let src = dst.map_nested(&pmd, addr);
    drop(src);
    drop(dst);
}

/// A kernel pmd may be mapped too (a kernel table is low memory: a direct map), or reached
/// without a mapping through `pte_offset_kernel`.
fn kernel_tables<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    _pgd: &UserPgd,
    ptl: &SpinLock<()>,
    addr: VirtAddr,
) {
    let kpmd = k.pmd_offset_k(cx.p(), addr);
    let kpte = pte_offset_kernel(k, cx.p(), &kpmd, addr);
    let _ = kpte.get(cx.p());
    let mut guard = ptl.lock(cx.p());
    let map = pte_offset_map(k, cx, &mut guard, &kpmd, addr);
    let _ = map.get(addr);
}

/// Atomic work while mapped: `alloc_pages_atomic` with the mapping's context.
fn atomic_alloc_while_mapped<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    pgd: &UserPgd,
    ptl: &SpinLock<()>,
    addr: VirtAddr,
) {
    let pmd = k.pmd_offset(cx.p(), pgd, addr);
    let mut guard = ptl.lock(cx.p());
    let mut map = pte_offset_map(k, cx, &mut guard, &pmd, addr);
    if let Some(pfn) = k.alloc_pages_atomic(map.cx(), GFP_ATOMIC, 0, PageOwner::User, "x") {
        k.clear_highpage(map.cx(), pfn);
        let pte = map.get(addr);
        map.set(addr, pte);
        k.free_pages(map.cx(), pfn, 0);
    }
}

/// `pte_alloc_map`, use, unmap, unlock, then sleep.
fn alloc_map_then_sleep<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    pgd: &UserPgd,
    ptl: &SpinLock<()>,
    addr: VirtAddr,
) {
    let nr_ptes = Cell::new(0);
    let pmd = k.pmd_offset(cx.p(), pgd, addr);
    let mut guard = ptl.lock(cx.p());
    if let Ok(mut map) = pte_alloc_map(k, cx, &mut guard, &pmd, addr, &nr_ptes) {
        map.set(addr, Entry::NONE);
    }
    drop(guard);
    cx.cond_resched();
}

fn main() {}

/// A sleeping lock taken after the pte is unmapped and the spinlock dropped; its guard does
/// not keep the context borrowed, so pte work can follow under it.
#[allow(dead_code)]
fn sleeping_lock_after_unmap<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    pgd: &UserPgd,
    ptl: &SpinLock<()>,
    sem: &highpte_kernel::RwSem<u32>,
    addr: VirtAddr,
) {
    let pmd = k.pmd_offset(cx.p(), pgd, addr);
    {
        let mut guard = ptl.lock(cx.p());
        let map = pte_offset_map(k, cx, &mut guard, &pmd, addr);
        let _ = map.get(addr);
    }
    let vmas = sem.read(cx, "mmap_sem");
    let mut guard = ptl.lock(cx.p());
    let map = pte_offset_map(k, cx, &mut guard, &pmd, addr);
    let _ = (map.get(addr), *vmas);
}
