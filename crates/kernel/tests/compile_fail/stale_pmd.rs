//! Door 2 of issue 14: the lock and the pmd are tied to the mapping. There is no way to map a
//! pte page through a pmd read before the page-table lock was taken: `pte_offset_map`,
//! `pte_alloc_map` and `pte_map_phys` (which took any `SpinGuard` and a `Copy` `PmdEntry`)
//! are gone; `PteMap` can be made only by a `PteCursor`, which reads the pmd itself under the
//! lock it owns (its constructor is private); and a mapping cannot be kept across
//! `PteCursor::unlock` to be used after the lock is retaken.
//!
//! Linux mistake it stops: reading the pmd, dropping (or not yet taking) the page-table lock,
//! doing something that may sleep, then mapping through the old pmd value: munmap or
//! `free_pgtables` may have cleared the pmd and freed the pte page meanwhile, so the map
//! reaches a freed (or reused) page. The seed's swapoff did this before this change (a pmd
//! read before an `rmap_reserve` that may sleep). With the old API the sequence below
//! compiled: `pte_offset_map(k, cx, &mut guard, &pmd, addr)` accepted any guard and a pmd
//! copied before it.
#![allow(dead_code)]

use highpte_arch::{PagingMode, VirtAddr};
use highpte_kernel::mm::Mm;
use highpte_kernel::page_alloc::{PageOwner, GFP_KERNEL};
use highpte_kernel::pgtable::PteMap;
use highpte_kernel::{Kernel, Platform, SleepCtx};

/// The old API, a pmd read before the lock: the mapping functions no longer exist.
fn old_api<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    mm: &Mm,
    addr: VirtAddr,
) {
    let pmd = k.pmd_offset(cx.p(), mm.pgd(), addr);
    let _page = k.alloc_pages(cx, GFP_KERNEL, 0, PageOwner::User, "rmap_reserve");
    let mut guard = mm.page_table_lock().lock(cx.p());
    let _map = highpte_kernel::pgtable::pte_offset_map(k, cx, &mut guard, &pmd, addr);
    let _phys = highpte_kernel::pgtable::pte_map_phys(k, cx, &guard, 0);
}

/// Building a `PteMap` by hand around a stale page: its constructor is private to the crate.
fn forge_map<'a, 'p, P: Platform, M: PagingMode>(
    cx: &'a mut SleepCtx<'p, P>,
    mm: &'a Mm,
) -> PteMap<'a, 'p, P, M> {
    PteMap::new(todo!(), cx, mm.page_table_lock(), mm)
}

/// A mapping kept across `unlock` (to be used after the lock is retaken).
fn map_across_unlock<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    mm: &Mm,
    addr: VirtAddr,
) {
    let mut cur = k.lock_ptes(cx, mm);
    let Some(mut map) = cur.map(addr) else { return };
    cur.unlock();
    let _cur = k.lock_ptes(cx, mm);
    map.set(addr, highpte_arch::Entry::NONE);
}

fn main() {}
